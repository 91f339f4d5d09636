"""leadpact sla-monitor: the deadlines sales promised in the SLA contract, watched."""
