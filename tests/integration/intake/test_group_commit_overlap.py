"""Against real PostgreSQL: the next batch of leads is prepared while the previous one is
being written, and must neither miss the people of that batch nor keep what it staged when
that write fails.

Batch N's write is held back by a lock on ``leads`` that the test takes (reads are not
blocked by it), so batch N+1 is deterministically prepared while N is uncommitted; the
test waits on PostgreSQL's own view of the sessions, never on time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import httpx
import orjson
import pytest
from sqlalchemy.engine import make_url

from intake.domain.lead import fingerprint
from leadpact.bus.memory import MemoryBus
from tests.fixtures.waiting import eventually
from tests.integration.intake.test_postgres import intake_on

PERSON = {"email": "overlap@acme.example", "company": "Acme", "first_name": "Ana"}
AGAIN = {"email": "overlap@acme.example", "title": "CEO"}
OTHER = {"email": "someone.else@acme.example", "company": "Acme"}


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No customer check; and a batch of one lead is prepared beside a write (by default
    only from 12, which a test posting one lead at a time never reaches)."""
    monkeypatch.setenv("LEADPACT_INTAKE_CUSTOMER_CHECK", "false")
    monkeypatch.setenv("LEADPACT_INTAKE_GROUP_COMMIT_OVERLAP_FROM", "1")


@asynccontextmanager
async def database(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own to intake's database."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        yield connection
    finally:
        await connection.close()


async def write_blocked(db: asyncpg.Connection) -> bool:
    """A session of intake waits for the test's lock: batch N is being written."""
    return bool(
        await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE 'WITH t0 AS (INSERT INTO%'"
        )
    )


async def next_batch_read(db: asyncpg.Connection) -> bool:
    """A second session of intake has read people and is done with it: batch N+1 (the
    first one read batch N's and stays with N until N is written)."""
    return (
        await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'idle' AND query LIKE 'SELECT email, phone, id, created_at%'"
        )
    ) >= 2


async def lead_ids(db: asyncpg.Connection, person: dict[str, str] = PERSON) -> list[str]:
    query = "SELECT id FROM leads WHERE email = $1"
    return [r["id"] for r in await db.fetch(query, person["email"])]


def post(
    client: httpx.AsyncClient, body: dict[str, str], **headers: str
) -> asyncio.Task[httpx.Response]:
    return asyncio.create_task(client.post("/v1/leads", json=body, headers=headers))


async def test_a_person_of_the_batch_being_written_is_known_to_the_next_batch(
    pg_database: Callable[[str], Awaitable[str]],
) -> None:
    """The same person twice, the second time while the first is not committed yet: one
    lead and one ``lead.activity`` on it, not two leads (the next batch's read cannot see
    the uncommitted lead; it is carried over from the batch being written)."""
    url = await pg_database("intake")
    bus = MemoryBus(partitions=3)
    async with intake_on(url, bus) as client, database(url) as db, database(url) as lock:
        async with lock.transaction():
            await lock.execute("LOCK TABLE leads IN EXCLUSIVE MODE")
            first = post(client, PERSON)
            await eventually(lambda: write_blocked(db))
            second = post(client, AGAIN)
            await eventually(lambda: next_batch_read(db))
            assert not first.done() and not second.done()  # nothing answered before commit
        first_answer, second_answer = (await first).json(), (await second).json()
        assert first_answer["status"] == "accepted"
        assert second_answer == {"lead_id": first_answer["lead_id"], "status": "resubmitted"}
        assert await lead_ids(db) == [first_answer["lead_id"]]
        activity = await eventually(lambda: bus.messages("lead.activity"))
        assert [m.key for m in activity] == [first_answer["lead_id"]]
        assert [m.key for m in bus.messages("lead.created")] == [first_answer["lead_id"]]


async def test_a_failed_batch_does_not_lend_its_staged_lead_to_the_next_batch(
    pg_database: Callable[[str], Awaitable[str]],
) -> None:
    """Batch N fails (its Idempotency-Key was taken meanwhile by a concurrent request) while
    batch N+1, prepared meanwhile, resubmits N's person. N's lead never got written, so N+1
    must not become an activity on it: it is prepared again and makes the person's one
    lead, announced once; the other new person of N+1 is stored and announced once too."""
    url = await pg_database("intake")
    bus = MemoryBus(partitions=3)
    async with intake_on(url, bus) as client, database(url) as db, database(url) as lock:
        async with lock.transaction():
            await lock.execute("LOCK TABLE leads IN EXCLUSIVE MODE")
            first = post(client, PERSON, **{"Idempotency-Key": "taken"})
            await eventually(lambda: write_blocked(db))
            # The key is taken by another request while N waits: N's write will fail.
            answer = {"lead_id": "lead-of-the-other-request", "status": "accepted"}
            await db.execute(
                "INSERT INTO idempotency_keys (key, fingerprint, lead_id, created_at, "
                "status_code, response) VALUES ($1, $2, $3, now(), 202, $4)",
                "-:taken",
                fingerprint(PERSON),
                answer["lead_id"],
                orjson.dumps(answer).decode(),
            )
            second, third = post(client, AGAIN), post(client, OTHER)
            await eventually(lambda: next_batch_read(db))
        first_response, second_response = await first, await second
        other = (await third).json()
        assert first_response.status_code == 202
        assert first_response.json() == answer  # the stored answer of the key's owner
        made = second_response.json()
        assert second_response.status_code == 202 and made["status"] == "accepted"
        assert await lead_ids(db) == [made["lead_id"]]
        assert other["status"] == "accepted"
        assert await lead_ids(db, OTHER) == [other["lead_id"]]
        await eventually(lambda: len(bus.messages("lead.created")) >= 2)
        created = sorted(m.key for m in bus.messages("lead.created"))
        assert created == sorted([made["lead_id"], other["lead_id"]])
        assert bus.messages("lead.activity") == []
