"""``feedback import FILE``: historical CloudEvents (NDJSON) load into feedback's database
once each; the service then reports the same KPIs as an independent computation."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from leadpact.events import CustomerUpdated, envelope
from tests.fixtures.system import TEST_CONTRACT, SystemFactory
from tests.integration.feedback.helpers import SERVICE
from tests.integration.feedback.test_kpis import assert_block, expected_block
from tests.integration.feedback.traffic import events, generate

FEEDBACK = Path(sys.executable).parent / "feedback"


def history(path: Path) -> list[dict[str, object]]:
    leads = generate(40, seed=5)
    lines = []
    for lead in leads:
        for data in events(lead):
            at = getattr(data, "created_at", None) or lead["created_at"]
            lines.append(envelope(data, source="crm-export", time=at).to_json().decode())
    lines.append(lines[0])  # a duplicate: imported once
    customer = CustomerUpdated(customer_id="c1", fields={"name": "Acme"})
    lines.append(envelope(customer, source="x", time=leads[0]["created_at"]).to_json().decode())
    lines.append('{"type": "io.leadpact.lead.created.v1", "data": {}}')  # invalid
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return leads


async def run_import(file: Path, database: Path) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "LEADPACT_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "LEADPACT_CONTRACT_PATH": str(TEST_CONTRACT),
        "LEADPACT_LOG_JSON": "false",
        # Rich wraps errors at the terminal width: a long tmp path broke the message apart.
        "COLUMNS": "1000",
    }
    process = await asyncio.create_subprocess_exec(
        str(FEEDBACK),
        "import",
        str(file),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(), err.decode()


async def test_import_history_then_serve_its_kpis(
    system_factory: SystemFactory, tmp_path: Path
) -> None:
    file = tmp_path / "history.ndjson"
    leads = await asyncio.to_thread(history, file)
    published = sum(len(events(lead)) for lead in leads)
    database = tmp_path / "var" / "feedback.db"  # where the embedded service will look
    code, out, err = await run_import(file, database)
    assert code == 1, (out, err)  # one invalid line
    assert (
        f"imported {published} event(s), 1 duplicate(s), 1 not funnel events, 1 invalid" in out
    ), err[-3000:]
    assert f"line {published + 3}: source: Field required" in err
    code, out, _ = await run_import(file, database)  # again: nothing new
    assert f"imported 0 event(s), {published + 1} duplicate(s)" in out

    system = await system_factory(only=[SERVICE])
    kpis = await system[SERVICE].get("/v1/kpis", params={"from": "2026-11-01", "to": "2026-12-01"})
    assert_block(kpis.json()["totals"], expected_block(leads, [], None, "all"))
    assert system.events("lead.recycled") == []  # history schedules no recycles by default


async def test_import_refuses_a_missing_file(tmp_path: Path) -> None:
    code, _, err = await run_import(tmp_path / "nope.ndjson", tmp_path / "db.sqlite")
    assert code == 2 and "no such file" in err
