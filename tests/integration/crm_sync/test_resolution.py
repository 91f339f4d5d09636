"""Entity resolution end to end: a lead who later pays under a slightly different name and
address is one customer; unsure pairs wait in the review queue; merges can be undone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from leadpact.events import LeadContacted, LeadCreated
from tests.fixtures.waiting import eventually
from tests.integration.crm_sync.conftest import (
    CrmFactory,
    post_stripe,
    stripe_customer,
    stripe_invoice,
)

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def lead(lead_id: str, **fields: Any) -> LeadCreated:
    base: dict[str, Any] = {
        "email": "ana.garcia@gmail.example",
        "first_name": "Ana",
        "last_name": "García López",
        "company": "Acme Robotics",
        "title": "Head of Operations",
        "phone": "+34 612 34 56 78",
    }
    return LeadCreated(lead_id=lead_id, created_at=NOW, **{**base, **fields})


async def get(system: Any, path: str, **params: Any) -> Any:
    answer = await system["crm-sync"].get(path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def customer_of(system: Any, email: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        return (await get(system, "/v1/customers/lookup", email=email))["customer"]  # type: ignore[no-any-return]

    return await eventually(found)


async def test_a_lead_who_pays_under_another_name_and_address_is_one_customer(
    crm_factory: CrmFactory,
) -> None:
    system = await crm_factory()
    await system.publish(lead("L1"))
    before = await customer_of(system, "ana.garcia@gmail.example")
    # Billing knows her by her work email, without the second surname, at the company's
    # legal name; no phone: only the probabilistic matcher can tell it is her.
    answer = await post_stripe(
        system,
        stripe_customer(
            "evt_1",
            email="a.garcia@acme-robotics.example",
            name="Ana Garcia",
            metadata={"company": "ACME Robotics, S.L."},
        ),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["customer_id"] == before["customer_id"]
    await post_stripe(
        system, stripe_invoice("evt_2", customer_email="a.garcia@acme-robotics.example")
    )
    after = await customer_of(system, "a.garcia@acme-robotics.example")
    assert after["customer_id"] == before["customer_id"]
    assert after["status"] == "customer" and after["lead_ids"] == ["L1"]
    assert after["source_records"] == ["stripe:cus_1"]
    # billing's verified email is the newest verified one; sales keeps the title and phone
    assert after["email"] == "a.garcia@acme-robotics.example"
    assert after["title"] == "Head of Operations" and after["phone"] == "+34612345678"
    assert after["billing_address"] == "Calle Mayor 1, 28013 Madrid, ES"
    assert {"email", "last_name", "company"} <= set(after["conflicts"])
    timeline = await get(system, f"/v1/customers/{after['customer_id']}/timeline")
    assert [t["kind"] for t in timeline] == ["lead.created", "customer.created", "invoice.paid"]
    # both emails still find her (intake's returning-customer check)
    assert (await customer_of(system, "ana.garcia@gmail.example"))["customer_id"] == after[
        "customer_id"
    ]
    conflicts = await get(system, "/v1/conflicts", customer_id=after["customer_id"], field="email")
    assert conflicts[0]["chosen"] == "a.garcia@acme-robotics.example"
    assert sorted(v["value"] for v in conflicts[0]["values"]) == [
        "a.garcia@acme-robotics.example",
        "ana.garcia@gmail.example",
    ]
    merges = await get(system, f"/v1/customers/{after['customer_id']}/merges")
    assert [m["kind"] for m in merges] == ["auto"]
    metrics = (await system["crm-sync"].get("/metrics")).text
    assert "# HELP leadpact_crm_match_decisions_total" in metrics
    assert 'leadpact_crm_match_decisions_total{decision="match"} 1.0' in metrics
    assert 'leadpact_crm_merges_total{kind="auto"} 1.0' in metrics


async def test_an_unsure_pair_waits_for_review_and_a_merge_can_be_undone(
    crm_factory: CrmFactory,
) -> None:
    system = await crm_factory()
    await system.publish(lead("L1", last_name="García"))
    first = await customer_of(system, "ana.garcia@gmail.example")
    # same name, but another company: the uncertain band
    answer = await post_stripe(
        system,
        stripe_customer(
            "evt_1", email="ana@globex.example", name="Ana Garcia", metadata={"company": "Globex"}
        ),
    )
    second_id = answer.json()["customer_id"]
    assert second_id != first["customer_id"]
    reviews = await get(system, "/v1/reviews")
    assert len(reviews) == 1
    review = reviews[0]
    assert review["customer"]["customer_id"] == second_id
    assert review["candidate"]["customer_id"] == first["customer_id"]
    assert review["detail"]["company"]["level"] == 2
    client = system["crm-sync"]
    bad = await client.post(f"/v1/reviews/{review['review_id']}", json={"decision": "maybe"})
    assert bad.status_code == 422 and "decision" in bad.text
    missing = await client.post("/v1/reviews/nope", json={"decision": "accept"})
    assert missing.status_code == 404 and "review_id" in missing.text
    accepted = await client.post(
        f"/v1/reviews/{review['review_id']}", json={"decision": "accept", "by": "maria"}
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted"
    again = await client.post(f"/v1/reviews/{review['review_id']}", json={"decision": "reject"})
    assert again.status_code == 409
    merged = await customer_of(system, "ana@globex.example")
    assert merged["customer_id"] == first["customer_id"]
    assert (await get(system, f"/v1/customers/{second_id}"))["customer_id"] == first["customer_id"]
    assert await get(system, "/v1/reviews") == []

    merge_id = accepted.json()["merge_id"]
    undone = await client.post(f"/v1/merges/{merge_id}/undo")
    assert undone.status_code == 200, undone.text
    assert (await client.post(f"/v1/merges/{merge_id}/undo")).status_code == 409
    apart = await customer_of(system, "ana@globex.example")
    assert apart["customer_id"] == second_id
    assert apart["source_records"] == ["stripe:cus_1"] and apart["lead_ids"] == []
    original = await get(system, f"/v1/customers/{first['customer_id']}")
    assert original["email"] == "ana.garcia@gmail.example" and original["source_records"] == []
    history = await get(system, f"/v1/customers/{first['customer_id']}/merges")
    assert [(m["kind"], m["undone_at"] is not None) for m in history] == [("review", True)]
    updates = {e.subject for e in system.events("customer.updated")}
    assert {first["customer_id"], second_id} <= updates


async def test_a_rejected_pair_is_not_proposed_again(crm_factory: CrmFactory) -> None:
    system = await crm_factory()
    await system.publish(lead("L1", last_name="García"))
    await customer_of(system, "ana.garcia@gmail.example")
    await post_stripe(
        system,
        stripe_customer(
            "evt_1", email="ana@globex.example", name="Ana Garcia", metadata={"company": "Globex"}
        ),
    )
    (review,) = await get(system, "/v1/reviews")
    answer = await system["crm-sync"].post(
        f"/v1/reviews/{review['review_id']}", json={"decision": "reject"}
    )
    assert answer.json()["status"] == "rejected"
    await post_stripe(
        system,
        stripe_customer(
            "evt_2",
            kind="customer.updated",
            email="ana@globex.example",
            name="Ana Garcia",
            metadata={"company": "Globex"},
        ),
    )
    assert await get(system, "/v1/reviews") == []
    assert len(await get(system, "/v1/reviews", status="rejected")) == 1
    bad = await system["crm-sync"].get("/v1/reviews", params={"status": "pending"})
    assert bad.status_code == 422 and "status" in bad.text
    bad = await system["crm-sync"].get("/v1/conflicts", params={"field": "shoe_size"})
    assert bad.status_code == 422 and "field" in bad.text


async def test_a_placeholder_record_joins_the_record_holding_its_email(
    crm_factory: CrmFactory,
) -> None:
    """lead.contacted overtakes lead.created (a placeholder), billing meanwhile creates the
    person by email; lead.created then finds both: they are merged into one."""
    system = await crm_factory()
    await system.publish(
        LeadContacted(lead_id="L7", channel="email", outcome="replied", contacted_at=NOW)
    )

    async def consumed() -> bool:
        text = (await system["crm-sync"].get("/metrics")).text
        return 'leadpact_events_consumed_total{topic="lead.contacted"} 1.0' in text

    await eventually(consumed)
    answer = await post_stripe(system, stripe_customer("evt_1"))
    await system.publish(lead("L7", email="ana.garcia@acme.example"))

    async def joined() -> dict[str, Any] | None:
        found = await customer_of(system, "ana.garcia@acme.example")
        return found if found["lead_ids"] == ["L7"] else None

    customer = await eventually(joined)
    assert customer["source_records"] == ["stripe:cus_1"]
    timeline = await get(system, f"/v1/customers/{customer['customer_id']}/timeline")
    assert sorted(t["kind"] for t in timeline) == [
        "customer.created",
        "lead.contacted",
        "lead.created",
    ]
    merges = await get(system, f"/v1/customers/{customer['customer_id']}/merges")
    assert [m["kind"] for m in merges] == ["key"]
    assert answer.json()["customer_id"] in {merges[0]["survivor_id"], merges[0]["absorbed_id"]}


async def test_two_form_fills_of_the_same_name_are_reviewed_not_merged(
    crm_factory: CrmFactory,
) -> None:
    """Leads alone (different emails and phones, same name and company) never merge on the
    score: a person decides. The same pair with a billing record would."""
    system = await crm_factory()
    await system.publish(lead("L1", last_name="García", email="ana.1@acme.example"))
    first = await customer_of(system, "ana.1@acme.example")
    await system.publish(
        lead("L2", last_name="García", email="ana.2@acme.example", phone="+34 699 00 00 00")
    )
    second = await customer_of(system, "ana.2@acme.example")
    assert second["customer_id"] != first["customer_id"]
    assert (first["lead_ids"], second["lead_ids"]) == (["L1"], ["L2"])
    (review,) = await eventually(lambda: get(system, "/v1/reviews"))
    assert review["score"] >= 14
    assert {review["customer"]["customer_id"], review["candidate"]["customer_id"]} == {
        first["customer_id"],
        second["customer_id"],
    }


async def test_erasing_one_side_of_an_open_review_closes_it(crm_factory: CrmFactory) -> None:
    system = await crm_factory()
    await system.publish(lead("L1", last_name="García"))
    await customer_of(system, "ana.garcia@gmail.example")
    await post_stripe(
        system,
        stripe_customer(
            "evt_1", email="ana@globex.example", name="Ana Garcia", metadata={"company": "Globex"}
        ),
    )
    assert len(await get(system, "/v1/reviews")) == 1
    erased = await system["crm-sync"].delete("/v1/subjects", params={"email": "ana@globex.example"})
    assert erased.status_code == 200, erased.text
    assert await get(system, "/v1/reviews") == []
    (closed,) = await get(system, "/v1/reviews", status="rejected")
    assert closed["decided_by"] == "erasure" and closed["detail"] == {}


async def test_an_email_outranks_a_phone_another_customer_holds(crm_factory: CrmFactory) -> None:
    """The deterministic keys are tried in order (email, then phone, then tax id) — in one
    query since issue 9, so the order is what this guards — and the event announcing the
    change carries the conflicts the store holds."""
    system = await crm_factory()
    await system.publish(lead("L1"))
    ana = await customer_of(system, "ana.garcia@gmail.example")
    other = {"first_name": "Luis", "last_name": "Pérez", "company": "Globex"}
    await system.publish(lead("L2", email="luis@globex.example", phone="+34 699 11 22 33", **other))
    luis = await customer_of(system, "luis@globex.example")
    assert luis["customer_id"] != ana["customer_id"]
    # her email, his phone (a shared office line), a day later: she is who the email says
    later = lead("L3", phone="+34 699 11 22 33", title="CEO")
    await system.publish(later.model_copy(update={"created_at": NOW + timedelta(days=1)}))

    async def joined() -> dict[str, Any] | None:
        found = await customer_of(system, "ana.garcia@gmail.example")
        return found if found["lead_ids"] == ["L1", "L3"] else None

    after = await eventually(joined)
    assert after["customer_id"] == ana["customer_id"]
    assert (await customer_of(system, "luis@globex.example"))["lead_ids"] == ["L2"]
    stored = await get(system, "/v1/conflicts", customer_id=ana["customer_id"])
    assert {c["field"] for c in stored} == {"phone", "title"}

    async def announced() -> list[list[dict[str, Any]]] | None:
        mine = [
            e.data.conflicts
            for e in system.events("customer.updated")
            if e.data.customer_id == ana["customer_id"]
        ]
        return mine if len(mine) == 2 else None

    _, conflicts = await eventually(announced)
    assert [(c["field"], c["chosen"], c["values"]) for c in conflicts] == [
        (c["field"], c["chosen"], c["values"]) for c in sorted(stored, key=lambda c: c["field"])
    ]
