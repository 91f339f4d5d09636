"""Intake's rules, pure: what a clean lead is, how each platform's payload maps to it, how
signatures are checked, when a submission is a resubmission. No I/O here."""
