"""leadpact scoring service: ``lead.created`` and activity in, a tier and ``lead.scored`` out."""
