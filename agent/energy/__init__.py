"""Energy: what each drive drew and saved, made durable, and reported.

================  =========================================================================
``account``       per drive: energy, baseline, savings by basis, CO2, money, per hour
``baseline``      what the load would draw without the VFD
``counter``       the drive's energy counter, turned into trustworthy steps
``ledger``        the SQLite ledger: hours, totals, hand-backs; schema migrations
``bookkeeping``   flushes the accounts to the ledger on a schedule, restores the totals
``report``        ``vfd-agent report``: per-drive and site totals from the ledger
================  =========================================================================

The package imports nothing itself; import from the modules.
"""
