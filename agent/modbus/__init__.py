"""Modbus I/O: the only place that talks to drives on the wire.

==============  ===========================================================================
``client``      ``BusClient``: one connection or serial line per bus; the only pymodbus importer
``codec``       register words to numbers and back (types, word and byte order, scale)
``readplan``    the fewest block reads for a drive's points, by the line's frame-time cost
``rtu``         RTU line timing (t1.5, t3.5, frame sizes) and the CRC
``bus_url``     ``tcp://``, ``rtu://`` and ``rtu+tcp://`` bus URLs of the command line
``probe``       commissioning: ``vfd-agent probe`` and ``scan``
==============  ===========================================================================

The package imports nothing itself, so the config can use ``codec`` without loading pymodbus.
"""
