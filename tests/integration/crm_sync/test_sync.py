"""Outbound sync: customer changes pushed to a CRM and a billing system over real HTTP, with
retries on the clock, one idempotency key per change, and a sync log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tests.fixtures.waiting import eventually
from tests.integration.crm_sync.conftest import CrmFactory, Target, post_stripe, stripe_customer

Targets = Callable[[], Awaitable[Target]]


async def sync_log(system: Any, **params: Any) -> list[dict[str, Any]]:
    answer = await system["crm-sync"].get("/v1/sync", params=params)
    assert answer.status_code == 200, answer.text
    return list(answer.json())


async def test_changes_are_pushed_and_retried_with_one_idempotency_key(
    crm_factory: CrmFactory, http_targets: Targets
) -> None:
    crm, billing = await http_targets(), await http_targets()
    crm.answers = [503, 502]
    system = await crm_factory(
        crm_push_url=crm.url,
        billing_push_url=billing.url,
        push_token="s3cret",
        push_backoff_seconds=10,
        push_poll_seconds=0.05,
    )
    answer = await post_stripe(system, stripe_customer("evt_1"))
    customer_id = answer.json()["customer_id"]
    (change,) = await eventually(lambda: system.events("customer.updated"))
    await eventually(lambda: len(billing.requests) == 1 and len(crm.requests) == 1)
    headers, body = billing.requests[0]
    assert headers["idempotency-key"] == change.id
    assert headers["authorization"] == "Bearer s3cret"
    assert body["customer_id"] == customer_id
    assert body["fields"]["email"] == "ana.garcia@acme.example"

    async def crm_row() -> dict[str, Any] | None:
        rows = await sync_log(system, customer_id=customer_id)
        found = [r for r in rows if r["target"] == "crm" and r["attempts"] == 1]
        return found[0] if found else None

    row = await eventually(crm_row)
    assert row["status"] == "pending" and row["last_status"] == 503
    system.clock.advance(10)  # first retry: 502 again, the delay doubles
    await eventually(lambda: len(crm.requests) == 2)
    system.clock.advance(10)
    assert len(crm.requests) == 2
    system.clock.advance(10)
    await eventually(lambda: len(crm.requests) == 3)
    assert {h["idempotency-key"] for h, _ in crm.requests} == {change.id}

    async def all_sent() -> bool:
        rows = await sync_log(system, customer_id=customer_id)
        return [r["status"] for r in rows] == ["sent", "sent"]

    await eventually(all_sent)
    metrics = (await system["crm-sync"].get("/metrics")).text
    assert 'leadpact_crm_sync_pushes_total{result="retry",target="crm"} 2.0' in metrics


async def test_a_refused_push_fails_for_good_and_is_logged(
    crm_factory: CrmFactory, http_targets: Targets
) -> None:
    crm = await http_targets()
    crm.answers = [422]
    system = await crm_factory(crm_push_url=crm.url, push_poll_seconds=0.05)
    await post_stripe(system, stripe_customer("evt_1"))

    async def failed() -> list[dict[str, Any]]:
        return await sync_log(system, status="failed")

    (row,) = await eventually(failed)
    assert row["attempts"] == 1 and row["last_status"] == 422
    assert "HTTP 422" in row["last_error"]


async def test_a_down_target_is_retried_until_the_last_attempt(
    crm_factory: CrmFactory, http_targets: Targets
) -> None:
    crm = await http_targets()
    crm.answers = [500, 500, 500]
    system = await crm_factory(
        crm_push_url=crm.url, push_max_attempts=3, push_backoff_seconds=1, push_poll_seconds=0.05
    )
    await post_stripe(system, stripe_customer("evt_1"))
    for expected in (1, 2, 3):
        await eventually(lambda n=expected: len(crm.requests) == n)  # type: ignore[misc]
        system.clock.advance(60)

    async def failed() -> list[dict[str, Any]]:
        return await sync_log(system, status="failed")

    (row,) = await eventually(failed)
    assert row["attempts"] == 3


async def test_a_newer_change_supersedes_a_pending_push(
    crm_factory: CrmFactory, http_targets: Targets
) -> None:
    crm = await http_targets()
    crm.answers = [503]
    system = await crm_factory(
        crm_push_url=crm.url, push_backoff_seconds=30, push_poll_seconds=0.05
    )
    await post_stripe(system, stripe_customer("evt_1"))
    await eventually(lambda: len(crm.requests) == 1)
    await post_stripe(
        system,
        stripe_customer(
            "evt_2", kind="customer.updated", created=1793620000, name="Ana García López"
        ),
    )
    await eventually(lambda: len(crm.requests) == 2)
    assert crm.requests[1][1]["fields"]["last_name"] == "García López"

    async def statuses() -> bool:
        return sorted(r["status"] for r in await sync_log(system)) == ["sent", "superseded"]

    await eventually(statuses)
    bad = await system["crm-sync"].get("/v1/sync", params={"status": "lost"})
    assert bad.status_code == 422 and "status" in bad.text
