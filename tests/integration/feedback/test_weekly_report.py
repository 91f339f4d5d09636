"""The weekly report renders in headless Chromium (Debian ``chromium``): the screenshot is
not blank and the numbers on the page are the API's; the CSV says the same."""

from __future__ import annotations

import asyncio
import csv
import html
import io
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.fixtures.system import EmbeddedSystem, SystemFactory
from tests.fixtures.waiting import eventually
from tests.integration.feedback.helpers import SERVICE
from tests.integration.feedback.traffic import events, generate

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WEEK, FROM, TO = "2026-W46", "2026-11-09", "2026-11-16"


async def chromium(*args: str, timeout: float = 60) -> bytes:
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out


async def load(system: EmbeddedSystem, count: int) -> None:
    published = 0
    for lead in generate(count, seed=3):
        for data in events(lead):
            await system.publish(data)
            published += 1

    async def all_in() -> bool:
        text = (await system[SERVICE].get("/metrics")).text
        return (
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("leadpact_events_consumed_total{")
            )
            >= published
        )

    await eventually(all_in, timeout=60)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def read_image(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def expected(value: Any, key: str) -> str:
    return "" if value is None else str(value)


async def test_weekly_report_in_chromium_matches_the_api(
    system_factory: SystemFactory, tmp_path: Path
) -> None:
    assert shutil.which(CHROMIUM), "chromium missing: run `make system-deps`"
    system = await system_factory(only=[SERVICE])
    await load(system, 60)
    kpis = (await system[SERVICE].get("/v1/kpis", params={"from": FROM, "to": TO})).json()
    totals = kpis["totals"]
    assert totals["mqls"] > 3

    page = await system[SERVICE].get("/reports/weekly", params={"week": WEEK})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    file = write(tmp_path / "weekly.html", page.text)
    profile = tmp_path / "profile"
    shot = tmp_path / "weekly.png"
    await chromium(
        f"--user-data-dir={profile}",
        f"--screenshot={shot}",
        "--window-size=1100,1000",
        "--hide-scrollbars",
        file.as_uri(),
    )
    image = read_image(shot)
    assert image.size == (1100, 1000)
    colours = image.getcolors(maxcolors=1_000_000) or []
    background = max(colours)[0]
    assert len(colours) > 20, "the screenshot is blank"
    assert background / (image.size[0] * image.size[1]) < 0.97, "the screenshot is blank"
    # the chart colours are on screen: MQL blue and SQL green bars
    pixels = {c for _, c in colours}
    assert (0x25, 0x63, 0xEB) in pixels and (0x16, 0xA3, 0x4A) in pixels

    dom = (await chromium(f"--user-data-dir={profile}", "--dump-dom", file.as_uri())).decode()
    shown = {
        m[1]: html.unescape(m[2]) for m in re.finditer(r'data-kpi="(\w+)" data-raw="([^"]*)"', dom)
    }
    for key in ("mqls", "sqls", "customers", "mql_to_sql", "mql_to_customer", "sla_compliance"):
        assert shown[key] == expected(totals[key], key), key
    reasons = dict(re.findall(r'data-reason="(\w+)">(\d+)<', dom))
    assert {k: int(v) for k, v in reasons.items()} == totals["rejection_reasons"]
    assert "<svg" in dom and 'id="daily-chart"' in dom

    csv_answer = await system[SERVICE].get(
        "/reports/weekly", params={"week": WEEK, "format": "csv"}
    )
    assert csv_answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(csv_answer.text)))
    kpi_rows = {key: value for section, key, value in rows[1:] if section == "kpi"}
    assert kpi_rows["mqls"] == str(totals["mqls"])
    assert kpi_rows["mql_to_customer"] == expected(totals["mql_to_customer"], "")
    day_mqls = sum(int(v) for s, _, v in rows if s == "day_mqls")
    assert day_mqls == totals["mqls"]


@pytest.mark.parametrize("week", ["2026-47", "2026-W54", "W47"])
async def test_a_bad_week_names_the_field(system_factory: SystemFactory, week: str) -> None:
    system = await system_factory(only=[SERVICE])
    answer = await system[SERVICE].get("/reports/weekly", params={"week": week})
    assert answer.status_code == 422 and "week" in answer.text
