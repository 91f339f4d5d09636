"""Pure logic of feedback: no I/O, unit-tested in ``tests/unit/feedback``."""
