"""Intake asks crm-sync whether a lead is already a customer; crm-sync being down never
stops a lead, it only leaves the check pending until a retry answers it. The lookups that
arrive while one request is out go together in the next request."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
import uvicorn

from intake.customers import CustomerAnswer, CustomerDirectory
from leadpact.clock import ManualClock
from leadpact.events import LeadCreated
from tests.fixtures.asgi import read_body
from tests.fixtures.system import SystemFactory
from tests.fixtures.waiting import eventually
from tests.integration.intake.conftest import IntakeFactory

CUSTOMER = {"customer_id": "cus_1", "email": "boss@bigco.example", "name": "Big Co"}
COOLDOWN = timedelta(seconds=60)


class CrmSync:
    """crm-sync's batch lookup as a real HTTP server in the test's event loop: one answer
    per person (boss@bigco is a customer, anyone else unknown). It records each request's
    people; ``gate`` holds requests while cleared; ``delay`` (seconds) makes every answer
    slow; ``down`` answers 503."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, str]]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.delay = 0.0
        self.down = False
        self.url = ""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if (scope["method"], scope["path"]) != ("POST", "/v1/customers/lookups"):
            await self._answer(send, 404, {"detail": "not found"})
            return
        people = orjson.loads(body)["people"]
        self.batches.append(people)
        await self.gate.wait()
        await asyncio.sleep(self.delay)
        if self.down:
            await self._answer(send, 503, {"error": "unavailable"})
        else:
            await self._answer(send, 200, [self._lookup(p) for p in people])

    @staticmethod
    def _lookup(person: dict[str, str]) -> dict[str, Any]:
        if person.get("email") == CUSTOMER["email"]:
            return {"customer": CUSTOMER, "is_customer": True}
        return {"customer": None, "is_customer": False}

    @staticmethod
    async def _answer(send: Any, code: int, body: object) -> None:
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": orjson.dumps(body)})


@contextlib.asynccontextmanager
async def served(app: Any, port: int = 0) -> AsyncIterator[str]:
    """``app`` over TCP on 127.0.0.1 (a free port unless given); yields its URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or task.done(), 10)
        if task.done():
            task.result()
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def crm() -> AsyncIterator[CrmSync]:
    stub = CrmSync()
    async with served(stub) as url:
        stub.url = url
        yield stub
        stub.gate.set()  # nothing stays held when the server stops


@pytest.fixture
async def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def directory(crm: CrmSync, clock: ManualClock) -> AsyncIterator[CustomerDirectory]:
    found = CustomerDirectory(crm.url, timeout=5, clock=clock, cooldown=COOLDOWN, max_batch=3)
    yield found
    await found.close()


async def started(*lookups: Any) -> list[asyncio.Task[CustomerAnswer | None]]:
    """The lookups as tasks, each run until it waits for its answer."""
    tasks = [asyncio.create_task(lookup) for lookup in lookups]
    await asyncio.sleep(0)
    return tasks


def flags(answers: list[CustomerAnswer | None]) -> list[bool | None]:
    return [None if a is None else a.is_customer for a in answers]


async def test_lookups_that_arrive_while_one_is_out_go_together_in_the_next_request(
    crm: CrmSync, directory: CustomerDirectory
) -> None:
    crm.gate.clear()
    first = await started(directory.lookup("a@x.example", None))  # alone: sent at once
    await eventually(lambda: len(crm.batches) == 1)
    waiting = await started(
        directory.lookup("boss@bigco.example", "+34600000001"),
        directory.lookup(None, "+34600000002"),
        directory.lookup("boss@bigco.example", "+34600000001"),  # asked twice, sent once
        directory.lookup("c@x.example", None),
        directory.lookup("boss@bigco.example", None),
    )
    assert len(crm.batches) == 1  # they wait for the request that is out
    crm.gate.set()
    answers = await asyncio.gather(*first, *waiting)
    assert flags(answers) == [False, True, False, True, False, True]
    assert answers[1] == answers[3] == CustomerAnswer(True, CUSTOMER)
    assert crm.batches == [
        [{"email": "a@x.example"}],
        [  # at most max_batch (3) people a request; the rest in the next one
            {"email": "boss@bigco.example", "phone": "+34600000001"},
            {"phone": "+34600000002"},
        ],
        [{"email": "c@x.example"}, {"email": "boss@bigco.example"}],
    ]


async def test_a_failure_answers_none_to_every_waiting_caller_then_the_cooldown_holds(
    crm: CrmSync, directory: CustomerDirectory, clock: ManualClock
) -> None:
    crm.gate.clear()
    crm.down = True
    first = await started(directory.lookup("a@x.example", None))
    await eventually(lambda: len(crm.batches) == 1)
    waiting = await started(*(directory.lookup(f"{n}@x.example", None) for n in "bcdef"))
    crm.gate.set()
    assert await asyncio.gather(*first, *waiting) == [None] * 6
    assert len(crm.batches) == 1  # the callers who waited were not sent after the failure

    crm.down = False
    assert await directory.lookup("boss@bigco.example", None) is None  # cooling down
    clock.advance(COOLDOWN - timedelta(seconds=1))
    assert await directory.lookup("boss@bigco.example", None) is None
    assert len(crm.batches) == 1
    clock.advance(timedelta(seconds=1))
    assert await directory.lookup("boss@bigco.example", None) == CustomerAnswer(True, CUSTOMER)
    assert len(crm.batches) == 2


async def test_each_caller_waits_at_most_the_timeout(crm: CrmSync, clock: ManualClock) -> None:
    """A caller queued behind a request that hangs gets None within its own timeout, as
    the one whose request it is."""
    directory = CustomerDirectory(crm.url, timeout=0.3, clock=clock, cooldown=COOLDOWN)
    try:
        crm.gate.clear()
        begun = time.monotonic()
        first = await started(directory.lookup("a@x.example", None))
        await eventually(lambda: len(crm.batches) == 1)
        queued = await started(directory.lookup("b@x.example", None))
        assert await asyncio.gather(*first, *queued) == [None, None]
        assert time.monotonic() - begun < 2  # 0.3 s each, with room for a loaded machine
        assert len(crm.batches) == 1
    finally:
        crm.gate.set()
        await directory.close()


async def test_a_caller_behind_a_slow_request_still_waits_at_most_its_timeout(
    crm: CrmSync, clock: ManualClock
) -> None:
    """Each request takes 0.6 s of a 1 s timeout: the first caller gets its answer; the one
    queued behind it would only have it after 1.2 s, so it gets None at 1 s instead. That
    request still succeeded: no cooldown follows."""
    crm.delay = 0.6
    directory = CustomerDirectory(crm.url, timeout=1, clock=clock, cooldown=COOLDOWN)
    try:
        first = await started(directory.lookup("boss@bigco.example", None))
        await eventually(lambda: len(crm.batches) == 1)
        queued = await started(directory.lookup("b@x.example", None))
        assert flags(await asyncio.gather(*first, *queued)) == [True, None]
        await eventually(lambda: len(crm.batches) == 2)
        crm.delay = 0
        assert await directory.lookup("boss@bigco.example", None) is not None
    finally:
        await directory.close()


async def test_a_lookup_without_email_or_phone_asks_nobody(
    crm: CrmSync, directory: CustomerDirectory
) -> None:
    assert await directory.lookup(None, None) is None
    assert await directory.lookup("", "") is None
    assert crm.batches == []
    assert await directory.lookup("boss@bigco.example", None) == CustomerAnswer(True, CUSTOMER)


async def test_close_answers_the_callers_still_waiting(crm: CrmSync, clock: ManualClock) -> None:
    directory = CustomerDirectory(crm.url, timeout=5, clock=clock, cooldown=COOLDOWN)
    crm.gate.clear()
    waiting = await started(*(directory.lookup(f"{n}@x.example", None) for n in "ab"))
    await eventually(lambda: len(crm.batches) == 1)
    begun = time.monotonic()
    await directory.close()
    assert await asyncio.gather(*waiting) == [None, None]
    assert time.monotonic() - begun < 2  # at once, not after their 5 s timeout


async def test_the_real_crm_sync_answers_each_caller(system_factory: SystemFactory) -> None:
    """Against crm-sync's own app over TCP: a known person (by email, or by phone alone)
    and an unknown one, asked at once, in two requests (the first alone, then the rest)."""
    system = await system_factory(only=["crm-sync"])
    await system.publish(
        LeadCreated(
            lead_id="L1",
            email="ana@acme.example",
            phone="+34612345678",
            created_at=system.clock.now(),
        )
    )
    client = system["crm-sync"]

    async def known() -> bool:
        answer = await client.get("/v1/customers/lookup", params={"email": "ana@acme.example"})
        return bool(answer.json()["customer"])

    await eventually(known)
    async with served(system.apps["crm-sync"]) as url:
        directory = CustomerDirectory(url, timeout=5, clock=system.clock, cooldown=COOLDOWN)
        try:
            answers = await asyncio.gather(
                directory.lookup("ana@acme.example", None),
                directory.lookup("nobody@nowhere.example", None),
                directory.lookup(None, "+34612345678"),
            )
        finally:
            await directory.close()
    assert all(a is not None for a in answers)
    customers = [a.customer and a.customer["lead_ids"] for a in answers if a is not None]
    assert customers == [["L1"], None, ["L1"]]
    assert flags(list(answers)) == [False, False, False]  # a lead, not (yet) a paying customer


async def test_a_lead_of_an_existing_customer_is_flagged(
    intake_factory: IntakeFactory, crm: CrmSync
) -> None:
    system = await intake_factory(crm_sync_url=crm.url)
    await system["intake"].post("/v1/leads", json={"email": "Boss@BigCo.example"})
    await system["intake"].post("/v1/leads", json={"email": "new@startup.example"})
    created = await eventually(lambda: len(system.events("lead.created")) == 2)
    assert created
    flags = {e.data.email: e.data.existing_customer for e in system.events("lead.created")}
    assert flags == {"boss@bigco.example": True, "new@startup.example": False}
    assert {"email": "boss@bigco.example"} in [p for b in crm.batches for p in b]


async def test_crm_sync_down_leaves_the_check_pending_then_a_retry_answers(
    intake_factory: IntakeFactory, crm: CrmSync
) -> None:
    crm.down = True
    system = await intake_factory(crm_sync_url=crm.url, customer_check_retry_seconds=30)
    answer = await system["intake"].post("/v1/leads", json={"email": "boss@bigco.example"})
    assert answer.status_code == 202
    lead_id = answer.json()["lead_id"]
    created = (await eventually(lambda: system.events("lead.created")))[0].data
    assert created.existing_customer is None
    stored = (await system["intake"].get(f"/v1/leads/{lead_id}")).json()
    assert stored["customer_check"] == "pending"

    crm.down = False

    def later() -> list[Any]:
        system.clock.advance(10)
        return system.events("lead.activity")

    activity = (await eventually(later))[0].data
    assert activity.activity == "customer_check"
    assert activity.detail == {"existing_customer": True, "customer_id": "cus_1"}
    stored = (await system["intake"].get(f"/v1/leads/{lead_id}")).json()
    assert (stored["customer_check"], stored["existing_customer"]) == ("done", True)
    system.clock.advance(600)
    assert len(system.events("lead.activity")) == 1


async def test_the_pending_checks_are_asked_again_in_one_request(
    intake_factory: IntakeFactory, crm: CrmSync
) -> None:
    crm.down = True
    system = await intake_factory(crm_sync_url=crm.url, customer_check_retry_seconds=30)
    for who in ("boss@bigco.example", "ana@startup.example", "li@startup.example"):
        assert (await system["intake"].post("/v1/leads", json={"email": who})).status_code == 202
    await eventually(lambda: len(system.events("lead.created")) == 3)
    crm.down = False
    asked_before = len(crm.batches)

    def later() -> list[Any]:
        system.clock.advance(10)
        return system.events("lead.activity")

    await eventually(lambda: len(later()) == 3)
    assert [len(people) for people in crm.batches[asked_before:]] == [3]
