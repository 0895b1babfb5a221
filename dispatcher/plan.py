"""`dispatcher plan`: what a config change would do, on recorded traffic, before it ships.

Each recorded event is decided under the running partner config and under the new one, at one
moment for both (so `too_old` is judged alike); the decisions that differ are counted per cell
(partner, destination, event, from, to) with a few event ids, the rest counted as unchanged.

Pure: no Kafka, no network, no clock. `Planner.add` takes decoded events, `plan_records` takes
records as read from Kafka (anything with `.topic`, `.timestamp` in ms, `.value`, `.headers`);
the command (`dispatcher/cli.py`) reads them with `dispatcher.postback_log.read_topics`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TextIO, cast

from dispatcher.config_loader import PartnerSet, load_partners, load_settings
from dispatcher.inputs import BadInput
from dispatcher.partners import PartnerAdapter, PostbackContent, adapter_for
from dispatcher.rules import Decision, Send, SkipReason, decide
from schemas.config import PartnerConfig
from schemas.dead_letter import REPLAY_PARTNER_HEADER
from schemas.events import Event, EventType

SEND = "send"
# The side of a partner that has no file in one of the two configs.
NOT_CONFIGURED = "skip:not_configured"
MAX_EXAMPLES = 5
# A decision as the report names it: `send` or `skip:<reason>`.
_SKIP_LABELS: Mapping[SkipReason, str] = {reason: f"skip:{reason.value}" for reason in SkipReason}
COLUMNS = ("partner", "destination", "event", "from -> to", "count", "examples")


class Cell(NamedTuple):
    """Where a changed decision is counted."""

    partner: str
    destination: str
    event: str  # the SDK event name; `install` for installs
    before: str  # `send` or `skip:<reason>` under the running config
    after: str  # the same under the new one


@dataclass
class Change:
    """How many decisions of a cell change, and the first few event ids."""

    count: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """What was read and decided so far."""

    changes: dict[Cell, Change] = field(default_factory=dict)
    unchanged: int = 0  # decisions (event x partner) that stay the same
    events: int = 0  # events decided
    bad_input: int = 0  # records that are no event (the worker dead-letters them)
    first_ms: int | None = None  # the Kafka timestamps of the earliest and latest record read
    last_ms: int | None = None

    @property
    def records(self) -> int:
        """Records read in the range: events and bad input."""
        return self.events + self.bad_input

    @property
    def changed(self) -> int:
        """Decisions that change."""
        return sum(change.count for change in self.changes.values())

    def rows(self) -> list[tuple[Cell, Change]]:
        """The changed cells by partner, destination, event, then the most changes first."""
        return sorted(
            self.changes.items(),
            key=lambda item: (item[0].partner, item[0].destination, item[0].event,
                              -item[1].count, item[0].before, item[0].after),
        )  # fmt: skip


class _Compared(NamedTuple):
    name: str
    adapter: PartnerAdapter
    before: PartnerConfig | None
    after: PartnerConfig | None


class Planner:
    """Decides events under both configs at `now_s` and counts what changes.

    A partner whose config is the same in both (field for field) decides alike: its decisions
    are counted unchanged without deciding. A partner in one config alone is `skip:not_configured`
    on the other side.
    """

    def __init__(
        self,
        before: Sequence[PartnerConfig],
        after: Sequence[PartnerConfig],
        now_s: float,
        plan: Plan | None = None,
    ) -> None:
        self.now_s = now_s
        self.plan = plan or Plan()
        old = {partner.name: partner for partner in before}
        new = {partner.name: partner for partner in after}
        self._same: set[str] = set()
        self._compared: list[_Compared] = []
        for name in sorted(old.keys() | new.keys()):
            was, will = old.get(name), new.get(name)
            if was is not None and will is not None and _same_config(was, will):
                self._same.add(name)
            else:
                self._compared.append(_Compared(name, _decide_only(name), was, will))

    def add(self, event: Event, only_partner: str | None = None) -> None:
        """Decide `event` for every partner (for `only_partner` alone: a dead letter replayed
        for one partner, as the worker decides it) under both configs."""
        plan = self.plan
        plan.events += 1
        compared = self._compared
        if only_partner is None:
            plan.unchanged += len(self._same)
        else:
            plan.unchanged += only_partner in self._same
            compared = [c for c in compared if c.name == only_partner]
        now_s = self.now_s
        for name, adapter, was, will in compared:
            old = None if was is None else decide(event, was, adapter, now_s)
            new = None if will is None else decide(event, will, adapter, now_s)
            if old is not None and new is not None:
                if type(old) is Send:
                    if type(new) is Send and new.destination == old.destination:
                        plan.unchanged += 1
                        continue
                elif type(new) is not Send and new.reason is old.reason:
                    plan.unchanged += 1
                    continue
            # a change: the cell is built only here
            if will is not None and new is not None:
                destination = _destination(new, will, event)
            elif was is not None and old is not None:
                destination = _destination(old, was, event)
            else:  # never: a partner is in one config at least
                continue
            cell = Cell(
                name,
                destination,
                event.event_name if event.is_in_app else "install",
                _label(old),
                _label(new),
            )
            change = plan.changes.get(cell)
            if change is None:
                change = plan.changes[cell] = Change()
            change.count += 1
            if len(change.examples) < MAX_EXAMPLES:
                change.examples.append(event.event_id)


class _DecideOnly:
    """A partner's adapter as the rules read it, but building no payload: a plan needs the
    decision alone, and a payload of a whole AppsFlyer record costs as much as the rules."""

    def __init__(self, adapter: PartnerAdapter) -> None:
        self._adapter = adapter
        # what `decide` reads per event, as plain attributes
        self.click_id_parameter = adapter.click_id_parameter
        self.requires_click_id = adapter.requires_click_id
        self.revenue_currencies = adapter.revenue_currencies

    def build_event(self, content: PostbackContent) -> dict[str, Any]:
        return {}

    def __getattr__(self, name: str) -> Any:  # anything else: the adapter's own
        return getattr(self._adapter, name)


def _decide_only(name: str) -> PartnerAdapter:
    return cast(PartnerAdapter, _DecideOnly(adapter_for(name)))


def _same_config(before: PartnerConfig, after: PartnerConfig) -> bool:
    return type(before) is type(after) and before.model_dump() == after.model_dump()


def _label(decision: Decision | None) -> str:
    if decision is None:
        return NOT_CONFIGURED
    if isinstance(decision, Send):
        return SEND
    return _SKIP_LABELS[decision.reason]


def _destination(decision: Decision, partner: PartnerConfig, event: Event) -> str:
    """Where the postback goes (a send), or would go (a skip of a configured app); the
    AppsFlyer app id for an app the partner does not configure."""
    if isinstance(decision, Send):
        return decision.destination
    return partner.destination_of(event.app_id)


Decode = Callable[[bytes | None, EventType], Event | BadInput]


def plan_records(
    planner: Planner,
    records: Iterable[Any],
    topics: Mapping[str, tuple[EventType, Decode]],
    since_ms: int,
    until_ms: int,
) -> None:
    """Decode and add the records whose Kafka timestamp is in [since_ms, until_ms] (the others
    are passed over); `topics`: each source topic's event type and decoder, as the worker
    reads it."""
    plan = planner.plan
    add = planner.add
    first_ms, last_ms = plan.first_ms, plan.last_ms
    try:
        for record in records:
            timestamp = record.timestamp
            if timestamp < since_ms or timestamp > until_ms:
                continue
            event_type, decode = topics[record.topic]
            event = decode(record.value, event_type)
            if first_ms is None or timestamp < first_ms:
                first_ms = timestamp
            if last_ms is None or timestamp > last_ms:
                last_ms = timestamp
            if isinstance(event, BadInput):
                plan.bad_input += 1
                continue
            headers = record.headers
            add(event, _replay_partner(headers) if headers else None)
    finally:
        plan.first_ms, plan.last_ms = first_ms, last_ms


def _replay_partner(headers: Iterable[tuple[str, bytes]]) -> str | None:
    for name, value in headers:
        if name == REPLAY_PARTNER_HEADER:
            return value.decode("utf-8", "replace")
    return None


def load_new_partners(path: Path, environ: Mapping[str, str]) -> PartnerSet:
    """The partners of the new config: a directory of partner files, or a dispatcher.yaml (its
    `partners_dir`'s files; a directory holding a dispatcher.yaml is read as that file).
    ConfigError as `check-config` reports it (no secret required)."""
    if path.is_dir() and (path / "dispatcher.yaml").is_file():
        path = path / "dispatcher.yaml"
    if path.is_dir():
        return load_partners(path, environ, require_secrets=False)
    return load_settings(path, environ, require_secrets=False).partners


# --- output -----------------------------------------------------------------------------------


def json_lines(plan: Plan) -> Iterable[str]:
    """One JSON object per changed cell."""
    for cell, change in plan.rows():
        yield json.dumps({
            "partner": cell.partner, "destination": cell.destination, "event": cell.event,
            "from": cell.before, "to": cell.after, "count": change.count,
            "examples": change.examples,
        })  # fmt: skip


def write_json(plan: Plan, out: TextIO) -> None:
    """The changed cells as JSON lines."""
    for line in json_lines(plan):
        out.write(line + "\n")


def write_table(plan: Plan, out: TextIO) -> None:
    """The changed cells as an aligned table (or a line saying there are none)."""
    rows = [
        (cell.partner, cell.destination, cell.event, f"{cell.before} -> {cell.after}",
         f"{change.count:,}", ", ".join(change.examples))
        for cell, change in plan.rows()
    ]  # fmt: skip
    if not rows:
        out.write("no decision changes\n")
        return
    widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS) - 1)]
    for row in [COLUMNS, *rows]:
        cells = [
            value.rjust(width) if i == 4 else value.ljust(width)  # the count to the right
            for i, (value, width) in enumerate(zip(row, widths, strict=False))
        ]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")


def summary(plan: Plan, since: str, until: str) -> str:
    """What stays the same, in one line."""
    return (
        f"unchanged: {plan.unchanged:,} decisions ({plan.events:,} events read from {since} to "
        f"{until}, {plan.bad_input:,} bad input)"
    )
