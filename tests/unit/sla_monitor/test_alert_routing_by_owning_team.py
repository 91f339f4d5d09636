"""A breach's `team` is the lead's owning team where routing assigned one (enterprise,
smb, ...), not only `sales`: Alertmanager must still send those SLA alerts to the sales
managers, and only `team="sre"` to SRE. Checked with amtool's own routing."""

from __future__ import annotations

import pytest

from tests.unit.sla_monitor.test_observability_config import DEPLOY, run, tool

CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=SlaBreachRateHigh", "team=sales", "severity=warning"], "sales-managers"),
        (["alertname=SlaBreachRateHigh", "team=enterprise", "severity=warning"], "sales-managers"),
        (["alertname=SlaBreachRateHigh", "team=smb", "severity=warning"], "sales-managers"),
        (["alertname=SlaDetectionLagHigh", "team=sre", "severity=warning"], "sre"),
        (["alertname=ServiceDown", "team=sre", "severity=critical"], "sre-pager"),
        (["alertname=Unlabelled"], "sre"),
    ],
)
def test_sla_alerts_of_any_sales_team_reach_the_sales_managers(
    labels: list[str], receiver: str
) -> None:
    routed = run(tool("amtool"), "config", "routes", "test", f"--config.file={CONFIG}", *labels)
    assert routed.strip() == receiver
