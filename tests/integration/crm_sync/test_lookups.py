"""crm-sync's batch lookup (``POST /v1/customers/lookups``): the single lookup's answer for
each person, in the order asked, from a fixed number of queries whatever the batch size."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from crm_sync import store
from leadpact.apikeys import new_key
from leadpact.events import DealClosed, LeadCreated
from tests.fixtures.system import EmbeddedSystem, SystemFactory
from tests.fixtures.waiting import eventually

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
PAYING = {"email": "ana@acme.example", "phone": "+34612345678"}
PROSPECT = {"email": "bea@beta.example", "phone": "+34600000002"}
ROUTE = "/v1/customers/lookups"


async def with_a_customer_and_a_prospect(system: EmbeddedSystem) -> None:
    """Ana won a deal (a paying customer); Bea only sent a lead (known, not paying)."""
    for lead_id, person in (("L1", PAYING), ("L2", PROSPECT)):
        await system.publish(LeadCreated(lead_id=lead_id, created_at=NOW, **person))
    await system.publish(DealClosed(lead_id="L1", won=True, amount=Decimal(900), closed_at=NOW))
    client = system["crm-sync"]

    async def ready() -> bool:
        answers = (await client.post(ROUTE, json={"people": [PAYING, PROSPECT]})).json()
        return [a["is_customer"] for a in answers] == [True, False] and bool(answers[1]["customer"])

    await eventually(ready)


async def single(client: httpx.AsyncClient, person: dict[str, str]) -> dict[str, Any]:
    answer = await client.get("/v1/customers/lookup", params=person)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_each_person_gets_the_single_lookups_answer_in_order(
    system_factory: SystemFactory,
) -> None:
    system = await system_factory(only=["crm-sync"])
    await with_a_customer_and_a_prospect(system)
    client = system["crm-sync"]
    people = [
        {"email": "nobody@nowhere.example"},  # unknown
        {"phone": "+34 600 00 00 02"},  # the prospect, by phone alone (another format)
        {"email": "Ana@ACME.example"},  # the paying customer, by email
        {"email": "nobody@nowhere.example", "phone": "+34612345678"},  # email unknown: phone
        {"email": "no-at-sign", "phone": "+34600000002"},  # an invalid email is skipped
        {"email": "ana@acme.example"},  # the same person twice in one batch
    ]
    answer = await client.post(ROUTE, json={"people": people})
    assert answer.status_code == 200, answer.text
    answers = answer.json()
    assert [await single(client, p) for p in people] == answers
    emails = [a["customer"] and a["customer"]["email"] for a in answers]
    ana, bea = PAYING["email"], PROSPECT["email"]
    assert emails == [None, bea, ana, ana, bea, ana]
    assert [a["is_customer"] for a in answers] == [False, False, True, True, False, True]
    assert answers[2]["customer"]["lead_ids"] == ["L1"]
    assert answers[2]["customer"]["lifetime_value"] == "900.00"


async def test_a_batch_costs_a_fixed_number_of_queries(system_factory: SystemFactory) -> None:
    """Two lookups (emails, then the phones of those not found) and two for what the
    answers show (source values; leads and records), whether 2 people or 40 are asked."""
    system = await system_factory(only=["crm-sync"])
    await with_a_customer_and_a_prospect(system)
    engine = system.apps["crm-sync"].state.ctx.db.engine.sync_engine
    statements: list[str] = []

    def count(*args: object) -> None:
        sql = str(args[2])
        if "customer" in sql:  # not the outbox relay's polls, which run meanwhile
            statements.append(sql)

    event.listen(engine, "before_cursor_execute", count)
    try:
        for people in (
            [PAYING, {"phone": PROSPECT["phone"]}],
            [PAYING, {"phone": PROSPECT["phone"]}] * 10
            + [{"email": f"n{i}@x.example", "phone": f"+3461100{i:04d}"} for i in range(20)],
        ):
            statements.clear()
            answer = await system["crm-sync"].post(ROUTE, json={"people": people})
            assert answer.status_code == 200, answer.text
            assert len(answer.json()) == len(people)
            assert len(statements) == 4, statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


@pytest.mark.parametrize(
    ("people", "named"),
    [
        ([PAYING, PAYING, PAYING, {"email": "x" * 321}], "people.3.email"),
        ([PAYING, {"phone": "+34 6" + "0" * 40}], "people.1.phone"),
        ([PAYING, PAYING, {"name": "Ana"}], "people.2.name"),
        ([PAYING, {"email": "a\x00@acme.example"}], "people.1.email"),
        ([], "people"),
        ([PAYING] * 257, "people"),
    ],
    ids=["email-too-long", "phone-too-long", "unknown-field", "nul", "empty", "too-many"],
)
async def test_a_malformed_person_is_a_422_naming_the_field(
    people: list[dict[str, str]], named: str, system_factory: SystemFactory
) -> None:
    system = await system_factory(only=["crm-sync"])
    answer = await system["crm-sync"].post(ROUTE, json={"people": people})
    assert answer.status_code == 422, answer.text
    where = [".".join(str(p) for p in e["loc"][1:]) for e in answer.json()["detail"]]
    assert named in where, answer.text


@pytest.mark.parametrize(
    "person",
    [{}, {"email": "no-at-sign"}, {"phone": "12"}, {"email": None, "phone": None}],
    ids=["nothing", "bad-email", "bad-phone", "nulls"],
)
async def test_a_person_without_a_usable_email_or_phone_is_a_422_naming_them(
    person: dict[str, str | None], system_factory: SystemFactory
) -> None:
    system = await system_factory(only=["crm-sync"])
    answer = await system["crm-sync"].post(ROUTE, json={"people": [PAYING, PAYING, person]})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("people[2].email, people[2].phone: "), answer.text


async def test_a_nul_character_is_a_422_on_the_single_route_too(
    system_factory: SystemFactory,
) -> None:
    """PostgreSQL refuses NUL in text: without the check it was a 500 there."""
    system = await system_factory(only=["crm-sync"])
    for params in ({"email": "a\x00@acme.example"}, {"phone": "+34\x00612345678"}):
        answer = await system["crm-sync"].get("/v1/customers/lookup", params=params)
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"][0]["loc"] == ["query", next(iter(params))]


async def test_not_a_list_of_people_is_a_422(system_factory: SystemFactory) -> None:
    system = await system_factory(only=["crm-sync"])
    client = system["crm-sync"]
    for body in ([PAYING], {"people": PAYING}, {"people": [PAYING], "more": 1}):
        assert (await client.post(ROUTE, json=body)).status_code == 422, body


async def test_the_batch_lookup_needs_customers_read_as_the_single_one(
    system_factory: SystemFactory,
) -> None:
    reader, reading = new_key("bi", ["customers:read"])
    writer, writing = new_key("crm", ["customers:write"])
    system = await system_factory(
        only=["crm-sync"], require_api_key=True, api_keys=[reading, writing]
    )
    client = system["crm-sync"]
    body = {"people": [PAYING]}
    for method, url, kwargs in (
        ("POST", ROUTE, {"json": body}),
        ("GET", "/v1/customers/lookup", {"params": PAYING}),
    ):
        for key, expected in ((None, 401), ("lpk_made-up", 401), (writer, 403), (reader, 200)):
            headers = {"X-API-Key": key} if key else {}
            answer = await client.request(method, url, headers=headers, **kwargs)
            assert answer.status_code == expected, (url, key and key[:8], answer.text)


async def test_a_hit_on_a_merged_record_answers_its_survivor(
    system_factory: SystemFactory,
) -> None:
    """A merge moves the emails and phones to the survivor, so a lookup should never land
    on an absorbed record; if one does (a record written by an older version), the answer
    is the end of its ``merged_into`` chain, and a broken chain is no hit (then the phone)."""
    system = await system_factory(only=["crm-sync"])
    rows = [  # (id, email, phone, merged_into)
        ("c-old", "old@acme.example", None, "c-mid"),
        ("c-mid", "mid@acme.example", None, "c-end"),
        ("c-end", "end@acme.example", None, None),
        ("c-lost", "lost@acme.example", None, "c-gone"),
        ("c-phone", None, "+34600000009", None),
    ]
    await written(system, [customer(*row) for row in rows])
    people = [
        {"email": "old@acme.example"},
        {"email": "mid@acme.example"},
        {"email": "lost@acme.example", "phone": "+34600000009"},
        {"email": "lost@acme.example"},
    ]
    answer = await system["crm-sync"].post(ROUTE, json={"people": people})
    assert answer.status_code == 200, answer.text
    found = [a["customer"] and a["customer"]["customer_id"] for a in answer.json()]
    assert found == ["c-end", "c-end", "c-phone", None]


def customer(
    customer_id: str,
    email: str | None,
    phone: str | None,
    merged_into: str | None = None,
    created_at: datetime = NOW,
) -> store.Customer:
    return store.Customer(
        id=customer_id,
        email=email,
        phone=phone,
        merged_into=merged_into,
        status="merged" if merged_into else "customer",
        created_at=created_at,
        updated_at=created_at,
    )


def attribute(customer_id: str, field: str, value: str) -> store.Attribute:
    return store.Attribute(
        customer_id=customer_id,
        field=field,
        value=value,
        system="crm",
        ref=f"crm:{customer_id}",
        observed_at=NOW,
    )


async def written(system: EmbeddedSystem, rows: list[object]) -> None:
    """Rows as an older version (or a direct fix in the database) may have left them."""
    async with system.apps["crm-sync"].state.ctx.db.session() as session:
        session.add_all(rows)
        await session.commit()


async def test_the_golden_column_comes_before_a_sources_value_then_the_oldest(
    system_factory: SystemFactory,
) -> None:
    """As the single lookups did: the record whose golden email (phone) it is, else the
    oldest record a source gave it to; for phones, merged records are passed over."""
    system = await system_factory(only=["crm-sync"])
    older = NOW - timedelta(days=1)
    await written(
        system,
        [
            customer("c-golden", "g@acme.example", None),
            customer("c-source", None, None, created_at=older),
            customer("c-new", None, "+34600000011"),
            customer("c-old", None, "+34600000011", created_at=older),
            customer(
                "c-merged", None, "+34600000011", "c-new", created_at=older - timedelta(days=1)
            ),
            customer("c-valued-new", None, None),
            customer("c-valued-old", None, None, created_at=older),
        ],
    )
    await written(
        system,
        [
            attribute("c-source", "email", "g@acme.example"),
            attribute("c-valued-new", "email", "v@acme.example"),
            attribute("c-valued-old", "email", "v@acme.example"),
        ],
    )
    people = [{"email": "g@acme.example"}, {"phone": "+34600000011"}, {"email": "v@acme.example"}]
    answer = await system["crm-sync"].post(ROUTE, json={"people": people})
    assert answer.status_code == 200, answer.text
    found = [a["customer"] and a["customer"]["customer_id"] for a in answer.json()]
    assert found == ["c-golden", "c-old", "c-valued-old"]
