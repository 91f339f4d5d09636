"""The contract's optional routing section: validated with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadpact.contract import ContractError, load_contract, parse_contract
from leadpact.settings import DEFAULT_CONTRACT

ROOT = Path(__file__).resolve().parents[3]
ROUTING_TEST = ROOT / "tests" / "integration" / "sla_monitor" / "contracts" / "routing.yaml"


def test_default_and_test_contracts_load() -> None:
    default = load_contract(DEFAULT_CONTRACT)
    assert default.routing is not None
    assert default.routing.fallback_team == "smb"
    assert load_contract(ROUTING_TEST).routing is not None
    for old in (ROOT / "tests" / "fixtures" / "contracts").glob("*.yaml"):
        assert load_contract(old).routing is None  # optional: contracts without it load


def with_routing(routing: str) -> str:
    base = DEFAULT_CONTRACT.read_text(encoding="utf-8").split("routing:")[0]
    return base + "routing:\n" + routing


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        (
            "  teams: [{id: a, members: [{id: x, timezone: Mars/Base}]}]\n  fallback_team: a\n",
            "routing.teams.0.members.0.timezone: Value error, unknown timezone 'Mars/Base'",
        ),
        (
            "  teams: [{id: a, members: [{id: x, share: 0}]}]\n  fallback_team: a\n",
            "routing.teams.0.members.0.share: Input should be greater than 0",
        ),
        (
            "  teams: [{id: a, members: [{id: x}]}]\n  fallback_team: b\n",
            "fallback_team: 'b' is not a team id",
        ),
        (
            "  teams: [{id: a, members: [{id: x}]}]\n  fallback_team: a\n"
            "  rules: [{name: r, match: {region: [emea]}, team: a}]\n",
            "rules[0] (r): region 'emea' is not defined under regions",
        ),
        (
            "  teams: [{id: a, members: [{id: x}]}, {id: b, members: [{id: x}]}]\n"
            "  fallback_team: a\n",
            "member ids must be unique across teams",
        ),
        (
            "  teams: [{id: a, members: [{id: x, hours: {from: '18:00', to: '09:00'}}]}]\n"
            "  fallback_team: a\n",
            "routing.teams.0.members.0.hours: Value error, 'to' must be after 'from'",
        ),
        (
            "  teams: [{id: a, members: []}]\n  fallback_team: a\n",
            "routing.teams.0.members: List should have at least 1 item",
        ),
        (
            "  teams: [{id: a, members: [{id: x}]}]\n  fallback_team: a\n"
            "  rules: [{name: r, match: {company_size: {}}, team: a}]\n",
            "routing.rules.0.match.company_size: Value error, needs gte, lte or both",
        ),
        (
            "  teams: [{id: a, members: [{id: x}]}]\n  fallback_team: a\n"
            "  escalation: {reassign: maybe}\n",
            "routing.escalation.reassign: Input should be a valid boolean",
        ),
        (
            "  teams: [{id: a, members: [{id: x}]}]\n  fallback_team: a\n"
            "  escalation: {reassign: true, max_reassignments: -1}\n",
            "routing.escalation.max_reassignments: Input should be greater than or equal to 0",
        ),
    ],
)
def test_bad_routing_is_named_with_its_line(routing: str, message: str) -> None:
    text = with_routing(routing)
    with pytest.raises(ContractError) as caught:
        parse_contract(text, "q4.yaml")
    error = str(caught.value)
    assert message in error, error
    first_routing_line = text.splitlines().index("routing:") + 1
    line = int(error.split(":")[1])
    assert line >= first_routing_line


def test_escalation_rounds_are_capped_by_default() -> None:
    routing = load_contract(ROUTING_TEST).routing
    assert routing is not None
    assert routing.escalation.max_reassignments == 2
