"""The feedback loop: sales outcomes label leads, a retrain registers and promotes a model,
live leads then get a probability and reasons; models are promoted, rolled back and
uploaded through the API."""

from __future__ import annotations

import json
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from leadpact.events import DealClosed, LeadAccepted, LeadCreated, LeadRejected, LeadSource
from tests.fixtures.system import EmbeddedSystem, SystemFactory
from tests.fixtures.waiting import eventually

TITLES = {"CEO": 0.8, "Director of Ops": 0.6, "Office Manager": 0.25, "Intern": 0.05}


@pytest.fixture
async def scoring(system_factory: SystemFactory, monkeypatch: pytest.MonkeyPatch) -> EmbeddedSystem:
    monkeypatch.setenv("LEADPACT_SCORING_MIN_LABELS", "40")
    monkeypatch.setenv("LEADPACT_SCORING_RETRAIN_POLL_SECONDS", "3600")  # the test triggers
    return await system_factory(only=["scoring"])


async def feed_outcomes(system: EmbeddedSystem, n: int) -> None:
    rng = np.random.default_rng(5)
    for i in range(n):
        title = list(TITLES)[i % len(TITLES)]
        lead = LeadCreated(
            lead_id=str(uuid.uuid4()),
            email=f"p{i}@acme.example",
            title=title,
            company_size=int(rng.integers(1, 500)),
            source=LeadSource(platform="typeform"),
            created_at=system.clock.now(),
        )
        await system.publish(lead)
        if rng.random() < TITLES[title]:
            await system.publish(LeadAccepted(lead_id=lead.lead_id, accepted_at=system.clock.now()))
            if i % 3 == 0:
                await system.publish(
                    DealClosed(lead_id=lead.lead_id, won=True, closed_at=system.clock.now())
                )
        else:
            reason = "no_response" if i % 10 == 0 else "no_authority"
            await system.publish(
                LeadRejected(lead_id=lead.lead_id, reason=reason, rejected_at=system.clock.now())
            )
        system.clock.advance(600)


def consumed(text: str, topic: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'leadpact_events_consumed_total{{topic="{topic}"}}'):
            return float(line.split()[-1])
    return 0.0


async def test_outcomes_train_a_champion_that_scores_live_leads(scoring: EmbeddedSystem) -> None:
    client = scoring["scoring"]
    assert (await client.post("/v1/models/retrain")).json() is None  # no labels yet
    await feed_outcomes(scoring, 160)

    async def all_handled() -> bool:
        return consumed((await client.get("/metrics")).text, "lead.created") >= 160

    await eventually(all_handled, timeout=60)  # type: ignore[arg-type]
    await eventually(partial(_labels_done, client), timeout=30)  # type: ignore[arg-type]
    trained = (await client.post("/v1/models/retrain")).json()
    assert trained["status"] == "champion" and trained["origin"] == "retrain"
    assert trained["metrics"]["auc"] > 0.6
    assert {f["name"] for f in trained["feature_schema"]} >= {"title_seniority", "company_size"}

    lead = LeadCreated(
        lead_id=str(uuid.uuid4()),
        email="boss@acme.example",
        title="CEO",
        company_size=300,
        created_at=scoring.clock.now(),
    )
    await scoring.publish(lead)
    events = await eventually(
        lambda: [e for e in scoring.events("lead.scored") if e.data.lead_id == lead.lead_id]
    )
    data = events[0].data
    assert data.model_version == trained["version"]
    assert data.probability is not None and data.probability > 0.4
    assert any("title_seniority: c_level" in r for r in data.reasons)

    second = (await client.post("/v1/models/retrain")).json()
    listed = (await client.get("/v1/models")).json()
    assert [m["status"] for m in listed].count("champion") == 1
    if second["status"] == "challenger":  # not better: promote it by hand, then roll back
        assert (await client.post(f"/v1/models/{second['version']}/promote")).status_code == 200
    back = await client.post("/v1/models/rollback")
    assert back.status_code == 200 and back.json()["version"] == trained["version"]
    assert (await client.post("/v1/models/nope/promote")).status_code == 404


async def _labels_done(client: Any) -> bool:
    text = (await client.get("/metrics")).text
    return consumed(text, "lead.accepted") + consumed(text, "lead.rejected") >= 160


async def test_a_model_trained_offline_is_uploaded_and_promoted(
    scoring: EmbeddedSystem, tmp_path: Path
) -> None:
    from scoring.model.calibrated import fit
    from scoring.model.schema import infer_schema

    rng = np.random.default_rng(1)
    rows = [{"industry": rng.choice(["saas", "retail"])} for _ in range(400)]
    y = np.array([int(r["industry"] == "saas" and rng.random() < 0.7) for r in rows])
    schema = infer_schema(rows, ["industry"])
    model = fit(schema, schema.encode(rows), y)
    model.version = "crm-export-1"
    model.save(tmp_path)
    body = {
        "manifest": json.loads((tmp_path / "model.json").read_text()),
        "booster": (tmp_path / "booster.txt").read_text(),
    }
    client = scoring["scoring"]
    made = await client.post("/v1/models", json=body)
    assert made.status_code == 201 and made.json()["status"] == "challenger"
    assert (await client.post("/v1/models", json=body)).status_code == 409
    bad = await client.post("/v1/models", json={"manifest": {}, "booster": "x"})
    assert bad.status_code == 422 and "manifest" in bad.text
    assert (await client.post("/v1/models/crm-export-1/promote")).json()["status"] == "champion"
    assert (await client.post("/v1/models/rollback")).status_code == 409  # nothing before it

    lead = LeadCreated(lead_id=str(uuid.uuid4()), industry="saas", created_at=scoring.clock.now())
    await scoring.publish(lead)
    events = await eventually(
        lambda: [e for e in scoring.events("lead.scored") if e.data.lead_id == lead.lead_id]
    )
    assert events[0].data.model_version == "crm-export-1"
    assert events[0].data.probability is not None


async def test_enough_new_labels_retrain_in_the_background(
    system_factory: SystemFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"MIN_LABELS": "40", "RETRAIN_MIN_NEW_LABELS": "40"}.items():
        monkeypatch.setenv(f"LEADPACT_SCORING_{name}", value)
    monkeypatch.setenv("LEADPACT_SCORING_RETRAIN_POLL_SECONDS", "0.05")
    system = await system_factory(only=["scoring"])
    await feed_outcomes(system, 120)

    async def champion() -> list[Any]:
        listed = (await system["scoring"].get("/v1/models")).json()
        return [m for m in listed if m["status"] == "champion"]

    found: list[Any] = await eventually(champion, timeout=60)  # type: ignore[arg-type]
    assert found[0]["origin"] == "retrain"
    assert found[0]["metrics"]["n"] > 0  # holdout size
