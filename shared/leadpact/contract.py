"""The SLA contract: a versioned YAML file people edit, loaded into validated pydantic models.

Errors name the key path and the line in the file, e.g.
``contracts/q4.yaml:14: response.first_contact_within: '60 minutes' is not a duration``.
"""

from __future__ import annotations

import re
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedBase, CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")


def parse_duration(value: Any) -> timedelta:
    """``90d``, ``60m``, ``1h30m``, ``45s`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match or not any(match.groups()):
        raise ValueError(f"{value!r} is not a duration (use e.g. 60m, 10d, 1h30m, 45s)")
    d, h, m, s = (int(g or 0) for g in match.groups())
    return timedelta(days=d, hours=h, minutes=m, seconds=s)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldRule(_Strict):
    """A condition on one lead field; exactly one operator."""

    field: str
    matches: str | None = None
    gte: float | None = None
    lte: float | None = None
    equals: Any = None
    in_: list[Any] | None = Field(None, alias="in")
    in_list: str | None = None
    points: int = 0

    @model_validator(mode="after")
    def _one_operator(self) -> FieldRule:
        ops = [
            k
            for k in ("matches", "gte", "lte", "equals", "in_", "in_list")
            if getattr(self, k) is not None
        ]
        if not ops:
            raise ValueError("needs one of matches, gte, lte, equals, in, in_list")
        if self.matches is not None:
            try:
                re.compile(self.matches)
            except re.error as exc:
                raise ValueError(f"matches: bad regular expression: {exc}") from exc
        return self


class ActivityRule(_Strict):
    activity: str
    points: int
    max: int | None = None
    half_life: timedelta | None = None

    _dur = field_validator("half_life", mode="before")(
        lambda v: None if v is None else parse_duration(v)
    )


class Mql(_Strict):
    points: list[FieldRule | ActivityRule] = Field(default_factory=list)
    disqualify: list[FieldRule] = Field(default_factory=list)
    threshold_points: int
    min_probability: float | None = Field(None, ge=0, le=1)


class Volume(_Strict):
    monthly_mql_target: int = Field(ge=0)


class BusinessHours(_Strict):
    timezone: str
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]]
    from_: time = Field(alias="from")
    to: time
    holidays: list[date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {v!r}") from exc
        return v

    @model_validator(mode="after")
    def _order(self) -> BusinessHours:
        if self.to <= self.from_:
            raise ValueError("'to' must be after 'from'")
        return self


class Response(_Strict):
    first_contact_within: timedelta
    business_hours: BusinessHours | None = None
    at_risk_at: float = Field(0.8, gt=0, lt=1)

    _dur = field_validator("first_contact_within", mode="before")(parse_duration)


class Attempts(_Strict):
    min_attempts: int = Field(ge=1)
    min_channels: int = Field(1, ge=1)
    within: timedelta

    _dur = field_validator("within", mode="before")(parse_duration)


class OutcomeClause(_Strict):
    decide_within: timedelta

    _dur = field_validator("decide_within", mode="before")(parse_duration)


class RejectionReason(_Strict):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: dict[str, str]
    needs_text: bool = False


class Recycle(_Strict):
    reasons: list[str] = Field(default_factory=list)
    after: timedelta

    _dur = field_validator("after", mode="before")(parse_duration)


class Revenue(_Strict):
    marketing_share_target: float = Field(ge=0, le=1)
    bonus_rate: float = Field(ge=0, le=1)
    attribution: Literal["first_touch", "last_touch", "linear", "u_shaped", "w_shaped"] = "w_shaped"


# ---- routing: who owns an MQL --------------------------------------------------------

_WEEKDAY = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WORKWEEK: tuple[_WEEKDAY, ...] = ("mon", "tue", "wed", "thu", "fri")
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.@+-]*$"


def _known_timezone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {v!r}") from exc
    return v


class WorkingHours(_Strict):
    """A member's working window, in the member's own timezone."""

    days: list[_WEEKDAY] = Field(default_factory=lambda: [*_WORKWEEK], min_length=1)
    from_: time = Field(alias="from")
    to: time

    @model_validator(mode="after")
    def _order(self) -> WorkingHours:
        if self.to <= self.from_:
            raise ValueError("'to' must be after 'from'")
        return self


class RoutingMember(_Strict):
    """A salesperson who can own leads. ``share`` weighs the round-robin; ``capacity``
    caps the leads they hold open at once."""

    id: str = Field(pattern=_ID, max_length=100)
    name: str | None = None
    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+$")
    slack: str | None = Field(None, description="Slack user id, mentioned as <@id>")
    share: float = Field(1.0, gt=0, le=1000)
    timezone: str = "UTC"
    hours: WorkingHours | None = Field(None, description="none: always available")
    capacity: int | None = Field(None, ge=1)

    _tz = field_validator("timezone")(_known_timezone)


class TeamManager(_Strict):
    name: str
    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+$")
    slack: str | None = None


class RoutingTeam(_Strict):
    id: str = Field(pattern=_ID, max_length=100)
    name: str | None = None
    manager: TeamManager | None = None
    members: list[RoutingMember] = Field(min_length=1)


class Band(_Strict):
    """A numeric band: ``gte`` and/or ``lte``."""

    gte: float | None = None
    lte: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Band:
        if self.gte is None and self.lte is None:
            raise ValueError("needs gte, lte or both")
        if self.gte is not None and self.lte is not None and self.lte < self.gte:
            raise ValueError("lte must not be below gte")
        return self

    def contains(self, value: float | None) -> bool:
        if value is None:
            return False
        return (self.gte is None or value >= self.gte) and (self.lte is None or value <= self.lte)


class RoutingMatch(_Strict):
    """Conditions on the lead, all of which must hold; an empty match takes every lead.
    Text values compare case-insensitively."""

    country: list[str] | None = Field(None, min_length=1, description="ISO 3166 alpha-2 codes")
    region: list[str] | None = Field(None, min_length=1, description="names under regions")
    company_size: Band | None = None
    industry: list[str] | None = Field(None, min_length=1)
    source: list[str] | None = Field(None, min_length=1, description="lead source platform")
    tier: list[Literal["mql", "nurture", "disqualified"]] | None = Field(None, min_length=1)
    probability: Band | None = None


class RoutingRule(_Strict):
    name: str = Field(pattern=_ID, max_length=100)
    match: RoutingMatch = Field(default_factory=RoutingMatch)
    team: str


class Escalation(_Strict):
    """What happens as a first-contact deadline runs down."""

    remind_at_risk: bool = Field(True, description="remind the owner at sla.at_risk")
    notify_manager: bool = Field(True, description="tell the team manager at sla.breached")
    reassign: bool = Field(
        False,
        description="at a first-contact breach, hand the lead to the next available "
        "member of the team with a fresh deadline",
    )
    max_reassignments: int = Field(
        2,
        ge=0,
        le=20,
        description="reassignments by escalation per lead; after the last one the lead "
        "stays with its owner and the team manager is told",
    )


class Routing(_Strict):
    regions: dict[str, list[str]] = Field(
        default_factory=dict, description="named groups of country codes, used by rules"
    )
    teams: list[RoutingTeam] = Field(min_length=1)
    rules: list[RoutingRule] = Field(default_factory=list, description="first match wins")
    fallback_team: str
    escalation: Escalation = Field(default_factory=Escalation)

    @model_validator(mode="after")
    def _references(self) -> Routing:
        team_ids = [t.id for t in self.teams]
        if len(set(team_ids)) != len(team_ids):
            raise ValueError(f"teams: duplicate team id in {team_ids}")
        member_ids = [m.id for t in self.teams for m in t.members]
        dupes = sorted({m for m in member_ids if member_ids.count(m) > 1})
        if dupes:
            raise ValueError(f"teams: member ids must be unique across teams, repeated {dupes}")
        if self.fallback_team not in team_ids:
            raise ValueError(f"fallback_team: {self.fallback_team!r} is not a team id")
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError("rules: duplicate rule name")
        for i, rule in enumerate(self.rules):
            if rule.team not in team_ids:
                raise ValueError(f"rules[{i}] ({rule.name}): team {rule.team!r} is not a team id")
            for region in rule.match.region or []:
                if region not in self.regions:
                    raise ValueError(
                        f"rules[{i}] ({rule.name}): region {region!r} is not defined under regions"
                    )
        return self

    def team(self, team_id: str) -> RoutingTeam | None:
        return next((t for t in self.teams if t.id == team_id), None)

    def member(self, member_id: str) -> tuple[RoutingTeam, RoutingMember] | None:
        for team in self.teams:
            for member in team.members:
                if member.id == member_id:
                    return team, member
        return None


class Contract(_Strict):
    version: str
    effective_from: date
    lists: dict[str, list[str]] = Field(default_factory=dict)
    mql: Mql
    volume: Volume | None = None
    response: Response
    attempts: Attempts | None = None
    outcome: OutcomeClause | None = None
    rejection_reasons: list[RejectionReason] = Field(min_length=1)
    recycle: Recycle | None = None
    revenue: Revenue | None = None
    routing: Routing | None = None

    @model_validator(mode="after")
    def _references(self) -> Contract:
        codes = [r.code for r in self.rejection_reasons]
        if len(set(codes)) != len(codes):
            raise ValueError("rejection_reasons: duplicate code")
        for rule in [*self.mql.points, *self.mql.disqualify]:
            if isinstance(rule, FieldRule) and rule.in_list and rule.in_list not in self.lists:
                raise ValueError(f"mql: in_list {rule.in_list!r} is not defined under lists")
        if self.recycle:
            unknown = set(self.recycle.reasons) - set(codes)
            if unknown:
                raise ValueError(f"recycle.reasons: unknown codes {sorted(unknown)}")
        return self

    def reason(self, code: str) -> RejectionReason | None:
        return next((r for r in self.rejection_reasons if r.code == code), None)


class ContractError(ValueError):
    """A contract file that cannot be used; the message names the file, line and key."""


def _line_of(doc: Any, loc: tuple[int | str, ...]) -> int | None:
    node, line = doc, None
    for part in loc:
        key: int | str = part
        if isinstance(node, CommentedMap):
            key = "in" if part == "in_" else "from" if part == "from_" else part
            if key not in node:
                break
            line = node.lc.key(key)[0] + 1
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
            line = node.lc.item(key)[0] + 1
        else:
            break
        node = node[key]
    if line is None and isinstance(doc, CommentedBase):
        line = doc.lc.line + 1
    return line


def parse_contract(text: str, origin: str = "<contract>") -> Contract:
    try:
        doc = YAML(typ="rt").load(text)
    except YAMLError as exc:
        raise ContractError(f"{origin}: not valid YAML: {exc}") from exc
    if not isinstance(doc, CommentedMap):
        raise ContractError(f"{origin}: the contract must be a YAML mapping")
    try:
        return Contract.model_validate(_plain(doc))
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
            where = ".".join(str(p).rstrip("_") for p in loc) or "(top level)"
            line = _line_of(doc, loc)
            lines.append(f"{origin}:{line or '?'}: {where}: {err['msg']}")
        raise ContractError("\n".join(lines)) from exc


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def load_contract(path: Path) -> Contract:
    return parse_contract(path.read_text(encoding="utf-8"), str(path))


class ContractBook:
    """Every contract version known; a lead is judged by the version in force when it
    became an MQL, so old versions stay loadable by name."""

    def __init__(self, contracts: list[Contract]) -> None:
        if not contracts:
            raise ContractError("no contract loaded")
        self._by_version = {c.version: c for c in contracts}
        self._ordered = sorted(contracts, key=lambda c: c.effective_from)

    @classmethod
    def load(cls, path: Path) -> ContractBook:
        """A file holds one version; a folder holds one version per ``*.yaml`` file."""
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        if not files:
            raise ContractError(f"{path}: no *.yaml contract files")
        return cls([load_contract(f) for f in files])

    def current(self, on: date | None = None) -> Contract:
        """The latest version whose ``effective_from`` is on or before ``on``."""
        if on is None:
            return self._ordered[-1]
        eligible = [c for c in self._ordered if c.effective_from <= on]
        return eligible[-1] if eligible else self._ordered[0]

    def get(self, version: str | None) -> Contract:
        if version is None or version not in self._by_version:
            return self._ordered[-1]
        return self._by_version[version]

    @property
    def versions(self) -> list[str]:
        return [c.version for c in self._ordered]
