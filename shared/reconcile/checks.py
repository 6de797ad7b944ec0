"""Inbound checks over the journal: MSH-13 sequence gaps and repeats, hourly volume against last week."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared import journal as j
from shared.reconcile.model import Action, Category, Interface, Item
from shared.reconcile.scan import Trail, item_id


@dataclass(frozen=True, slots=True)
class VolumeRule:
    """An hour is anomalous when the busier of (this hour, same hour last week) has at least
    ``min_messages`` and this hour is below ``low`` or above ``high`` times last week's."""

    min_messages: int = 20
    low: float = 0.5
    high: float = 2.0


def sequence_items(trails: Iterable[Trail], *, since: datetime, until: datetime, now: datetime) -> list[Item]:
    """Per sender and transport, in arrival order: a number more than one above the previous one is a gap
    (the numbers in between never arrived); the same number on another control id is a repeat. A number
    lower than the previous one is a reset (the sender restarted its counter): counting starts again."""
    streams: dict[tuple[str, str], list[tuple[datetime, int, str, str, Interface]]] = defaultdict(list)
    for trail in trails:
        if not trail.stages or not since <= trail.first < until:
            continue
        for at, stage, attrs in trail.stages:
            if stage != j.ACKNOWLEDGED or not attrs.get("sequence"):
                continue
            if str(attrs.get("code")) not in ("AA", "CA", "AE", "CE"):
                continue  # rejected: the sender resends it under the same number
            iface = trail.inbound()
            streams[(iface.party, iface.transport)].append(
                (
                    at,
                    int(str(attrs["sequence"])),
                    str(attrs.get("control_id") or ""),
                    trail.correlation_id,
                    iface,
                )
            )
            break
    items: list[Item] = []
    for stream in streams.values():
        stream.sort(key=lambda s: (s[0], s[1]))
        previous: tuple[datetime, int, str, str, Interface] | None = None
        for current in stream:
            at, number, control_id, corr, iface = current
            if previous is not None:
                _, last, last_control, _, _ = previous
                age = max(0, int((now - at).total_seconds()))
                if number == last and control_id != last_control:
                    items.append(
                        Item(
                            iface,
                            Category.SEQUENCE_GAP,
                            item_id(Category.SEQUENCE_GAP, iface, f"repeat\x1f{number}\x1f{control_id}"),
                            corr,
                            {
                                "sequence": str(number),
                                "controlId": control_id,
                                "previousControlId": last_control,
                            },
                            age,
                            Action.CHASE_SENDER,
                            f"sequence number {number} repeated on another message",
                        )
                    )
                elif number > last + 1:
                    missing = f"{last + 1}" if number == last + 2 else f"{last + 1}-{number - 1}"
                    items.append(
                        Item(
                            iface,
                            Category.SEQUENCE_GAP,
                            item_id(Category.SEQUENCE_GAP, iface, f"gap\x1f{last}\x1f{number}"),
                            corr,
                            {"missing": missing, "controlId": control_id},
                            age,
                            Action.CHASE_SENDER,
                            f"sequence numbers {missing} never arrived (before control id {control_id})",
                        )
                    )
            if previous is None or number != previous[1] or control_id != previous[2]:
                previous = current
    return items


def volume_items(
    hourly: Mapping[tuple[Interface, datetime], int],
    last_week: Mapping[tuple[Interface, datetime], int],
    *,
    since: datetime,
    until: datetime,
    now: datetime,
    rule: VolumeRule,
) -> list[Item]:
    """One item per inbound interface and whole hour of the window whose count is out of line with the
    same hour a week earlier (an interface that went silent included)."""
    items: list[Item] = []
    start = since.replace(minute=0, second=0, microsecond=0)
    if start < since:
        start += timedelta(hours=1)
    # Only hours with traffic in either week can be out of line (0 against 0 never is), and only on an
    # interface with a baseline (traffic a week earlier): a new interface is not an anomaly.
    baseline = {iface for iface, _ in last_week}
    keys = sorted(
        k
        for k in {*hourly, *last_week}
        if k[0] in baseline and start <= k[1] and k[1] + timedelta(hours=1) <= until
    )
    for iface, hour in keys:
        count, before = hourly.get((iface, hour), 0), last_week.get((iface, hour), 0)
        if max(count, before) >= rule.min_messages and not (before * rule.low <= count <= before * rule.high):
            items.append(
                Item(
                    iface,
                    Category.VOLUME,
                    item_id(Category.VOLUME, iface, hour.isoformat()),
                    None,
                    {"hour": hour.isoformat(), "count": str(count), "sameHourLastWeek": str(before)},
                    max(0, int((now - hour).total_seconds())),
                    Action.INVESTIGATE,
                    f"{count} messages in the hour from {hour.isoformat()}, {before} a week earlier",
                )
            )
    return items
