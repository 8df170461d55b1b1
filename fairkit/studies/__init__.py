"""The chapters' studies: experiments and tables that one chapter tells, one module each.

``bias`` is chapter 2 (how bias enters), ``spare`` chapter 3 (SPARE against the baselines).
They use the experiment layer and the methods; no method imports them.
"""
