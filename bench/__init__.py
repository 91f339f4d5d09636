"""Benchmarks: each ``bench/<name>/`` is runnable as ``python -m bench.<name>``, prints its
figures and records them with :func:`bench.record.record` in ``bench/results/<name>.json``.
``python -m bench`` (``make bench``) runs them all and prints one summary table against the
results recorded before the run."""
