"""The distributed benchmark's CPU report: what it reads from /proc is a process's own CPU
(a busy one grows, an idle one does not), and how the figures per lead are made of it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.cluster import process_cpu
from bench.e2e.__main__ import cpu_report

# Burns 0.5 s of its own CPU (however busy the machine), says so, then waits to be ended.
BURN = """
import sys, time
print("started", flush=True)
sys.stdin.readline()
start = time.process_time()
while time.process_time() - start < 0.5:
    pass
print("burnt", flush=True)
time.sleep(60)
"""


def test_a_busy_process_is_charged_its_cpu_and_an_idle_one_nothing() -> None:
    busy = subprocess.Popen(
        [sys.executable, "-c", BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert busy.stdout is not None and busy.stdin is not None
        assert busy.stdout.readline().strip() == "started"
        busy_before, idle_before = process_cpu(busy.pid), process_cpu(idle.pid)
        busy.stdin.write("go\n")
        busy.stdin.flush()
        assert busy.stdout.readline().strip() == "burnt"
        busy_after, idle_after = process_cpu(busy.pid), process_cpu(idle.pid)
    finally:
        for process in (busy, idle):
            process.kill()
            process.wait(10)
    assert busy_before is not None and busy_after is not None
    assert idle_before is not None and idle_after is not None
    assert busy_after - busy_before >= 0.45
    assert idle_after - idle_before <= 0.05


def test_a_process_that_is_gone_has_no_figure() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(10)  # reaped: its /proc entry is gone
    assert process_cpu(gone.pid) is None


def test_the_pipeline_figure_leaves_out_the_load_client_and_the_bench() -> None:
    spent = {"tansu": 1.0, "intake": 2.0, "postgres": 1.0, "postgres:intake": 1.0, "load": 5.0}
    spent["bench"] = 3.0
    report = cpu_report(spent, idle={"tansu": 0.1, "intake": 0.05}, window=4.0, leads=100)
    assert report["cpu_ms_per_lead"] == pytest.approx(40.0)  # tansu + intake + postgres
    assert report["cpu_ms_per_lead_load"] == pytest.approx(50.0)
    assert report["cpu_ms_per_lead_postgres:intake"] == pytest.approx(10.0)
    # 0.15 s of idle CPU per second over the 4 s window is not the leads'.
    assert report["cpu_ms_per_lead_net"] == pytest.approx(34.0)
    assert report["idle_cpu_ms_per_s_tansu"] == pytest.approx(100.0)
