"""leadpact intake service: leads in, durably stored, ``lead.created`` out."""
