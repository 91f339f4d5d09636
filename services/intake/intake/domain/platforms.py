"""Each platform's payload mapped to the fields of :class:`~intake.domain.lead.LeadIn`.

The functions return plain dicts so that validation (and its field-naming 4xx) happens in one
place. What a platform sends that we have no field for goes to ``attributes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from intake.domain.cleaning import split_full_name

LEAD_FIELDS = frozenset(
    {
        "email",
        "phone",
        "first_name",
        "last_name",
        "company",
        "title",
        "company_size",
        "industry",
        "country",
        "landing_url",
    }
)


@dataclass(frozen=True)
class Mapped:
    """A platform submission turned into our lead's fields, with its natural key
    (``external_ref``) so that a platform's retry never becomes a second lead."""

    lead: dict[str, Any]
    external_ref: str
    is_test: bool = False
    notes: dict[str, Any] = field(default_factory=dict)


# ---- Meta Lead Ads --------------------------------------------------------------------

META_FIELDS = {
    "email": "email",
    "work_email": "email",
    "phone_number": "phone",
    "work_phone_number": "phone",
    "first_name": "first_name",
    "last_name": "last_name",
    "full_name": "full_name",
    "company_name": "company",
    "job_title": "title",
    "country": "country",
}


@dataclass(frozen=True)
class LeadgenChange:
    """One ``leadgen`` change of a Meta webhook notification: only ids, no personal data."""

    leadgen_id: str
    form_id: str | None
    page_id: str | None
    ad_id: str | None


def meta_leadgen_changes(notification: dict[str, Any]) -> list[LeadgenChange]:
    """Every ``leadgen`` change in a ``page`` notification; raises ValueError naming the
    field when the shape is wrong."""
    if notification.get("object") != "page":
        raise ValueError("object: expected 'page'")
    entries = notification.get("entry")
    if not isinstance(entries, list):
        raise ValueError("entry: expected a list")
    changes: list[LeadgenChange] = []
    for i, entry in enumerate(entries):
        for j, change in enumerate(_list(entry, "changes", f"entry[{i}]")):
            if not isinstance(change, dict) or change.get("field") != "leadgen":
                continue
            value = change.get("value")
            if not isinstance(value, dict) or not value.get("leadgen_id"):
                raise ValueError(f"entry[{i}].changes[{j}].value.leadgen_id: required")
            where = f"entry[{i}].changes[{j}].value"
            changes.append(
                LeadgenChange(
                    leadgen_id=_ident(value["leadgen_id"], f"{where}.leadgen_id"),
                    form_id=_ident_or_none(value.get("form_id"), f"{where}.form_id"),
                    page_id=_ident_or_none(value.get("page_id"), f"{where}.page_id"),
                    ad_id=_ident_or_none(value.get("ad_id"), f"{where}.ad_id"),
                )
            )
    return changes


def meta_lead(graph_lead: dict[str, Any], change: LeadgenChange) -> Mapped:
    """A Graph API lead (``{"id", "created_time", "field_data": [{"name", "values"}]}``)."""
    answers = {
        str(item.get("name")): _first(item.get("values"))
        for item in _list(graph_lead, "field_data", "")
        if isinstance(item, dict)
    }
    lead = _by_table(answers, META_FIELDS)
    lead["source"] = {
        "platform": "meta",
        "form": change.form_id or _str_or_none(graph_lead.get("form_id")),
        "ad": change.ad_id or _str_or_none(graph_lead.get("ad_id")),
        "campaign": _str_or_none(graph_lead.get("campaign_id")),
    }
    return Mapped(lead, f"meta:{change.leadgen_id}", notes={"page_id": change.page_id})


# ---- Google Ads lead forms ------------------------------------------------------------

GOOGLE_COLUMNS = {
    "EMAIL": "email",
    "WORK_EMAIL": "email",
    "PHONE_NUMBER": "phone",
    "WORK_PHONE": "phone",
    "FIRST_NAME": "first_name",
    "LAST_NAME": "last_name",
    "FULL_NAME": "full_name",
    "COMPANY_NAME": "company",
    "JOB_TITLE": "title",
    "COUNTRY": "country",
}


def google_lead(payload: dict[str, Any]) -> Mapped:
    """A Google Ads lead form webhook body; ``user_column_data`` is read by ``column_id``."""
    if not payload.get("lead_id"):
        raise ValueError("lead_id: required")
    lead_id = _ident(payload["lead_id"], "lead_id", 200)
    answers = {
        str(col.get("column_id")): col.get("string_value")
        for col in _list(payload, "user_column_data", "")
        if isinstance(col, dict) and col.get("column_id")
    }
    lead = _by_table(answers, GOOGLE_COLUMNS, lower_unknown=True)
    lead["source"] = {
        "platform": "google_ads",
        "form": _str_or_none(payload.get("form_id")),
        "campaign": _str_or_none(payload.get("campaign_id")),
        "ad": _str_or_none(payload.get("creative_id")),
    }
    for key in ("gcl_id", "adgroup_id", "asset_group_id"):
        if payload.get(key) is not None:
            lead.setdefault("attributes", {})[key] = payload[key]
    return Mapped(lead, f"google:{lead_id}", is_test=payload.get("is_test") is True)


# ---- Typeform -------------------------------------------------------------------------

TYPEFORM_BY_TYPE = {"email": "email", "phone_number": "phone"}


def typeform_lead(payload: dict[str, Any], field_maps: dict[str, dict[str, str]]) -> Mapped:
    """A Typeform ``form_response`` webhook. Answers are mapped by field ref (or id) through
    the form's field map; email and phone answers map by type when the map says nothing."""
    response = payload.get("form_response")
    if not isinstance(response, dict):
        raise ValueError("form_response: required object")
    if not response.get("form_id"):
        raise ValueError("form_response.form_id: required")
    form_id = _ident(response["form_id"], "form_response.form_id", 64)
    if not response.get("token"):
        raise ValueError("form_response.token: required")
    token = _ident(response["token"], "form_response.token", 128)
    mapping = field_maps.get(form_id, {})
    answers: dict[str, Any] = {}
    for answer in _list(response, "answers", "form_response"):
        if not isinstance(answer, dict):
            continue
        question = answer.get("field")
        question = question if isinstance(question, dict) else {}
        ref = str(question.get("ref") or question.get("id") or "")
        target = mapping.get(ref) or mapping.get(str(question.get("id"))) or ""
        target = target or TYPEFORM_BY_TYPE.get(str(answer.get("type")), ref)
        answers[target] = _typeform_value(answer)
    lead = _by_table(answers, {f: f for f in LEAD_FIELDS | {"full_name"}})
    hidden = response.get("hidden")
    if isinstance(hidden, dict):
        lead.setdefault("attributes", {}).update({f"hidden_{k}": v for k, v in hidden.items()})
    lead["source"] = {"platform": "typeform", "form": form_id}
    return Mapped(lead, f"typeform:{form_id}:{token}")


def _typeform_value(answer: dict[str, Any]) -> Any:
    kind = answer.get("type")
    value = answer.get(str(kind)) if kind else None
    if kind == "choice" and isinstance(value, dict):
        return value.get("label") or value.get("other")
    if kind == "choices" and isinstance(value, dict):
        return value.get("labels")
    return value


# ---- Website forms --------------------------------------------------------------------

WEBSITE_ALIASES = {
    "name": "full_name",
    "full_name": "full_name",
    "company_name": "company",
    "job_title": "title",
    "phone_number": "phone",
    "tel": "phone",
    "page_url": "landing_url",
}


def website_lead(fields: dict[str, Any], body_fingerprint: str) -> Mapped:
    """A website form (urlencoded or JSON). A ticked ``consent`` box with its
    ``consent_text`` becomes consent evidence; other fields go to attributes. Forms have no
    submission id, so the body's fingerprint is the key: a double click is one lead."""
    form = {k: v for k, v in fields.items() if k not in ("consent", "consent_text", "form")}
    lead = _by_table(form, {f: f for f in LEAD_FIELDS} | WEBSITE_ALIASES)
    if "consent" in fields:
        ticked = str(fields["consent"]).strip().lower() in ("on", "true", "1", "yes")
        lead["consent"] = {"marketing": ticked, "text": fields.get("consent_text")}
    lead["source"] = {"platform": "website", "form": _str_or_none(fields.get("form"))}
    return Mapped(lead, f"website:{body_fingerprint}")


# ---- shared ---------------------------------------------------------------------------


def _by_table(
    answers: dict[str, Any], table: dict[str, str], *, lower_unknown: bool = False
) -> dict[str, Any]:
    lead: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for name, value in answers.items():
        target = table.get(name)
        if target is None:
            attributes[name.lower() if lower_unknown else name] = value
        elif target == "full_name":
            first, last = split_full_name(str(value or ""))
            lead.setdefault("first_name", first)
            lead.setdefault("last_name", last)
        elif target == "company_size":
            lead[target] = _int_or_keep(value, attributes, name)
        else:
            lead.setdefault(target, None if value is None else str(value))
    if attributes:
        lead["attributes"] = attributes
    return lead


def _int_or_keep(value: Any, attributes: dict[str, Any], name: str) -> int | None:
    """Forms send "50-200" as company size: keep what is not a number instead of failing."""
    try:
        return int(str(value).strip())
    except ValueError:
        attributes[name] = value
        return None


def _list(doc: Any, key: str, where: str) -> list[Any]:
    value = doc.get(key) if isinstance(doc, dict) else None
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{where + '.' if where else ''}{key}: expected a list")
    return value


def _first(values: Any) -> Any:
    return values[0] if isinstance(values, list) and values else None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _ident(value: Any, where: str, max_length: int = 64) -> str:
    """A platform's id: a short printable string or number (it becomes part of a key)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{where}: expected a string or number")
    text = str(value)
    if not text or len(text) > max_length or not text.isprintable():
        raise ValueError(f"{where}: expected 1 to {max_length} printable characters")
    return text


def _ident_or_none(value: Any, where: str) -> str | None:
    return None if value is None else _ident(value, where)
