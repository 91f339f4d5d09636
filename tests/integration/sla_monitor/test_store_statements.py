"""The deadline statements the handlers run are built once (per dialect, per variant) and
executed with parameters: each variant must still do only its own thing, on SQLite and
PostgreSQL alike. Arming several clauses in one statement says which were new."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from leadpact.db import Database
from sla_monitor import store
from tests.fixtures.schema import database_with

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def test_statements_on_sqlite(tmp_path: Path) -> None:
    async with database_with(f"sqlite+aiosqlite:///{tmp_path}/sla.db", store.Base.metadata) as db:
        await _check(db)


async def test_statements_on_postgres(pg_database: Callable[[str], Awaitable[str]]) -> None:
    async with database_with(await pg_database("sla_statements"), store.Base.metadata) as db:
        await _check(db)


def _deadline(lead_id: str, clause: str, partition: int | None, **extra: Any) -> dict[str, Any]:
    return {
        "lead_id": lead_id,
        "clause": clause,
        "started_at": T0,
        "armed_at": T0,
        "due_at": T0 + timedelta(hours=1),
        "at_risk_at": None,
        "owner": "ana",
        "source": "web",
        "contract_version": "v1",
        "partition": partition,
        **extra,
    }


async def _rows(db: Database, lead_id: str) -> dict[str, store.DeadlineRow]:
    async with db.session() as session:
        return {r.clause: r for r in await store.lead_deadlines(session, lead_id)}


async def _check(db: Database) -> None:
    async with db.session() as session, session.begin():
        clauses = ["first_contact", "attempts", "outcome"]
        fresh = await store.arm_all(session, [_deadline("a", c, 3) for c in clauses])
        assert fresh == set(clauses)
        # Armed again (a redelivery, a second scoring): only the new clause is fresh.
        again = await store.arm_all(session, [_deadline("a", c, 3) for c in [*clauses, "extra"]])
        assert again == {"extra"}
        assert await store.arm_all(session, []) == set()
        # Without a partition: the lead's existing one, clause by clause.
        assert await store.arm_all(session, [_deadline("a", "late", None)]) == {"late"}
        assert await store.arm_all(session, [_deadline("b", "outcome", None)]) == {"outcome"}
        for clause in clauses:
            await store.arm(session, _deadline("c", clause, 1))
    rows = await _rows(db, "a")
    assert {c: r.partition for c, r in rows.items()} == dict.fromkeys(
        [*clauses, "extra", "late"], 3
    )
    assert all(r.status == store.OPEN and r.round == 0 for r in rows.values())
    assert (await _rows(db, "b"))["outcome"].partition is None

    async with db.session() as session, session.begin():
        # First contact without an owner keeps the owner; with one, sets it. Once only.
        late = T0 + timedelta(hours=2)
        assert await store.record_first_contact(session, "a", late, None) == T0
        assert await store.record_first_contact(session, "a", late, "bo") is None
        assert await store.record_first_contact(session, "c", T0, "cy") == T0
        assert await store.record_first_contact(session, "zz", T0, None) is None
        # On time only: a late contact does not meet it; without the rule it does.
        assert not await store.mark_met(session, "a", "first_contact", late)
        assert await store.mark_met(session, "a", "attempts", late, on_time_only=False)
        assert not await store.mark_met(session, "a", "attempts", late, on_time_only=False)
        assert await store.mark_met(session, "c", "outcome", T0 + timedelta(minutes=5))
        await store.record_attempt(session, "a", "phone", T0)
        await store.record_attempt(session, "a", "phone", T0)  # the same attempt once
        await store.record_attempt(session, "a", "email", late)
        assert sorted(await store.attempts_of(session, "a")) == [("email", late), ("phone", T0)]
        assert await store.attempts_of(session, "c") == []
        latest = await store.deadline(session, "a", "attempts")
        assert latest is not None and latest.status == store.MET
        assert await store.deadline(session, "a", "nothing") is None
    a, c = await _rows(db, "a"), await _rows(db, "c")
    assert (a["first_contact"].owner, a["first_contact"].contacted_at) == ("ana", late)
    assert a["first_contact"].status == store.OPEN
    assert (a["attempts"].status, a["attempts"].resolved_at) == (store.MET, late)
    assert a["outcome"].status == store.OPEN
    assert (c["first_contact"].owner, c["first_contact"].contacted_at) == ("cy", T0)
    assert c["attempts"].owner == "ana"  # only the first-contact clause names the contact
    assert (c["outcome"].status, c["outcome"].resolved_at) == (
        store.MET,
        T0 + timedelta(minutes=5),
    )
