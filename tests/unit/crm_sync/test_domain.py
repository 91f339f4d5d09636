"""How crm-sync recognises a person and which values survive."""

from crm_sync.domain import email_key, merge_from_lead, phone_key


def test_emails_match_whatever_their_case_and_blanks() -> None:
    assert email_key("  Ana.Garcia@ACME.example ") == "ana.garcia@acme.example"
    assert email_key("not an email") is None


def test_phones_match_in_e164_whatever_their_spacing() -> None:
    assert phone_key("+34 612 34 56 78") == phone_key("+34612345678") == "+34612345678"
    assert phone_key("612 34 56 78", "ES") == "+34612345678"
    assert phone_key("call me") is None


def test_a_lead_fills_blanks_but_does_not_overwrite_a_known_value() -> None:
    current = {"email": "ana@acme.example", "company": "Acme", "title": None}
    changes = merge_from_lead(current, {"company": "ACME Corp", "title": "CTO"})
    assert [(c.field, c.new) for c in changes] == [("title", "CTO")]
