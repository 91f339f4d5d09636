"""Pure scoring logic: no I/O, no clock of its own; unit-tested without a database."""
