"""Measurement and verification (IPMVP Option B): the statistics behind a savings claim.

Pure functions on NumPy arrays and small frozen dataclasses; no I/O, no config objects,
no clock. The service records the intervals and calls these; the report renders them.

- ``stats``: OLS, Guideline 14 fit statistics, coverage, autocorrelation, the Student t
  quantile and the fractional savings uncertainty.
- ``baseline``: the design matrix of a baseline model, fitting and predicting it, and the
  avoided energy of a reporting period with its 68 % and 90 % intervals.
- ``abtest``: the randomized block schedule and the A/B estimate with a strategy indicator.
- ``uncertainty``: the fit's uncertainty combined with the declared accuracy of the drive's
  power reading, and CO2 and money bounds from energy bounds.
- ``report``: the auditor's self-contained HTML page.
"""
