"""Run every benchmark and print one summary table against the previously recorded results.

Usage: ``python -m bench [name ...]``. Exits 1 when a figure regressed by more than 10 %.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.record import change, load

HERE = Path(__file__).parent


def discover() -> list[str]:
    return sorted(p.parent.name for p in HERE.glob("*/__main__.py"))


def main(argv: list[str]) -> int:
    names = argv or discover()
    before = {name: load(name) for name in names}
    failed: list[str] = []
    for name in names:
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}"], check=False).returncode:
            failed.append(name)
    rows: list[tuple[str, str, str, str, str]] = []
    regressions = 0
    for name in names:
        for figure, after in load(name).items():
            verdict = change(before[name].get(figure), after)
            regressions += "REGRESSION" in verdict
            prev = before[name].get(figure)
            rows.append(
                (
                    name,
                    figure,
                    f"{after['value']:.4g} {after['unit']}",
                    f"{prev['value']:.4g}" if prev else "-",
                    verdict,
                )
            )
    print()
    print(f"{'benchmark':<18} {'figure':<34} {'now':>20} {'before':>10}  change")
    for row in rows:
        print(f"{row[0]:<18} {row[1]:<34} {row[2]:>20} {row[3]:>10}  {row[4]}")
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed or regressions else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
