"""privacy.erased in feedback: nothing in its tables names the person, their events still in
the outbox go out without free text, and the funnel counts stay."""

from __future__ import annotations

from pathlib import Path

from feedback.store import Base
from leadpact.events import LeadCreated, LeadSource, PrivacyErased
from leadpact.messaging import MESSAGING
from tests.fixtures.erasure_scan import dump_database, mentions_of
from tests.fixtures.system import SystemFactory
from tests.fixtures.waiting import eventually
from tests.integration.feedback.helpers import SERVICE, events_of, make_mql, post

PERSONAL = ("ana.garcia", "612345678", "Zubizarreta", "Head of Operations", "her mobile")


async def test_an_erased_person_is_named_nowhere_in_feedback(
    system_factory: SystemFactory, tmp_path: Path
) -> None:
    system = await system_factory(only=[SERVICE])
    now = system.clock.now()
    lead = await make_mql(system, "L1")
    await system.publish(
        LeadCreated(
            lead_id="L1",
            email="ana.garcia@acme.example",
            phone="+34612345678",
            first_name="Ana",
            last_name="Zubizarreta",
            title="Head of Operations",
            source=LeadSource(platform="website", campaign="q4-demo"),
            attributes={"notes": "call her mobile"},
            created_at=now,
        )
    )
    contact = {"type": "contacted", "lead_id": lead, "channel": "phone", "outcome": "connected"}
    assert (await post(system, {**contact, "owner": "rep-1"})).status_code == 202
    await eventually(lambda: events_of(system, "lead.contacted", lead))

    # The broker is away (the relay stopped): the rejection waits in the outbox, with a note
    # a sales rep wrote about the person.
    relay = system.apps[SERVICE].state.ctx.relay
    await relay.stop()
    rejection = {
        "type": "rejected",
        "lead_id": lead,
        "reason": "other",
        "note": "Ana Zubizarreta wants a call on her mobile",
        "owner": "rep-1",
    }
    assert (await post(system, rejection)).status_code == 202, "rejection refused"
    url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'feedback.db'}"
    before = await dump_database(url, [Base.metadata, MESSAGING])
    assert mentions_of(before, PERSONAL)  # only the waiting event names her
    assert all(m.startswith("outbox:") for m in mentions_of(before, PERSONAL))
    funnel_before = (await system[SERVICE].get(f"/v1/leads/{lead}")).json()

    erasure = await system.publish(
        PrivacyErased(
            subject_hash="0" * 64, lead_ids=[lead], customer_id="C1", erased_at=system.clock.now()
        )
    )

    async def handled() -> dict[str, list[str]]:
        dump = await dump_database(url, [Base.metadata, MESSAGING])
        return dump if any(erasure in row for row in dump["inbox"]) else {}

    after = await eventually(handled)
    assert mentions_of(after, PERSONAL) == []
    assert len(after["outbox"]) == 1  # rewritten, not dropped: the rejection still counts

    relay.start()
    published = await eventually(lambda: events_of(system, "lead.rejected", lead))
    assert published[0].data.note is None and published[0].data.reason == "other"
    funnel_after = (await system[SERVICE].get(f"/v1/leads/{lead}")).json()
    assert funnel_after["mql_at"] == funnel_before["mql_at"]
    assert funnel_after["first_contact_at"] == funnel_before["first_contact_at"]
    after = await dump_database(url, [Base.metadata, MESSAGING])
    assert mentions_of(after, PERSONAL) == []
