"""Intake asks crm-sync whether a lead is already a customer; crm-sync being down never
stops a lead, it only leaves the check pending until a retry answers it."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from tests.fixtures.waiting import eventually
from tests.integration.intake.conftest import IntakeFactory
from tests.integration.intake.stubs import http_stub

CUSTOMER = {"customer_id": "cus_1", "email": "boss@bigco.example", "name": "Big Co"}


def crm_sync(request: Request) -> tuple[int, Any]:
    if request.url.path != "/v1/customers/lookup":
        return 404, {"detail": "not found"}
    if request.query_params.get("email") == "boss@bigco.example":
        return 200, {"customer": CUSTOMER, "is_customer": True}
    return 200, {"customer": None, "is_customer": False}


async def test_a_lead_of_an_existing_customer_is_flagged(intake_factory: IntakeFactory) -> None:
    async with http_stub(crm_sync) as crm:
        system = await intake_factory(crm_sync_url=crm.url)
        await system["intake"].post("/v1/leads", json={"email": "Boss@BigCo.example"})
        await system["intake"].post("/v1/leads", json={"email": "new@startup.example"})
        created = await eventually(lambda: len(system.events("lead.created")) == 2)
        assert created
        flags = {e.data.email: e.data.existing_customer for e in system.events("lead.created")}
        assert flags == {"boss@bigco.example": True, "new@startup.example": False}
        assert crm.requests[0].query_params["email"] == "boss@bigco.example"


async def test_crm_sync_down_leaves_the_check_pending_then_a_retry_answers(
    intake_factory: IntakeFactory,
) -> None:
    async with http_stub(crm_sync) as crm:
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
