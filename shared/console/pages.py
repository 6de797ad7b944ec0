"""Server-rendered HTML for the console: every value escaped, no inline script or style, no patient data.

Pages work without JavaScript (forms post, links navigate); ``console.js`` only refreshes the dashboard.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from shared.console.identity import Operator, describe_roles
from shared.console.readmodels import Estate, Found, Journey, Traffic

NAV = (
    ("", "Dashboard"),
    ("/messages", "Find a message"),
    ("/deadletters", "Dead letters"),
    ("/health", "Health"),
)


def e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def link(base: str, path: str) -> str:
    return e(base + path)


def message_path(correlation_id: str) -> str:
    return "/messages/" + quote(correlation_id, safe="")


def layout(base: str, title: str, active: str, operator: Operator, body: str, *, page: str = "") -> str:
    current = ' aria-current="page"'
    nav = "".join(
        f'<li><a href="{link(base, path or "/")}"{current if path == active else ""}>{e(label)}</a></li>'
        for path, label in NAV
    )
    banner = (
        '<div class="banner banner-local" role="note"><strong>Local operator.</strong> '
        "This console runs on the local host with a local-only operator identity "
        f"({e(operator.id)}), not a signed-in user: anyone who can reach this port can operate it.</div>"
        if operator.local
        else ""
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en-GB"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} - TIE operations console</title>"
        f'<link rel="stylesheet" href="{link(base, "/static/console.css")}">'
        f'<script src="{link(base, "/static/console.js")}" defer></script>'
        f'</head><body data-page="{e(page)}">'
        '<a class="skip-link" href="#main">Skip to main content</a>'
        '<header class="header"><div class="container">'
        f'<a class="service" href="{link(base, "/")}">TIE operations console</a>'
        f'<span class="who">Signed in as {e(operator.id)} (roles: {e(describe_roles(operator.roles))})</span>'
        f'<nav aria-label="Console"><ul class="nav">{nav}</ul></nav></div></header>'
        f"{banner}"
        f'<main id="main" class="container" tabindex="-1"><h1>{e(title)}</h1>{body}</main>'
        "</body></html>"
    )


def table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "") -> str:
    """``rows`` hold already-escaped HTML cells."""
    head = "".join(f'<th scope="col">{e(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}">None.</td></tr>'
    return (
        f'<table class="{e(cls)}"><caption>{e(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def tile(label: str, value: Any, *, alert: bool, ident: str) -> str:
    state = "tile-alert" if alert else "tile-ok"
    return (
        f'<div class="tile {state}" id="{e(ident)}"><span class="tile-value">{e(value)}</span>'
        f'<span class="tile-label">{e(label)}</span></div>'
    )


def _age(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "-"
    seconds = int((now - then).total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def chart(t: Traffic) -> str:
    """Messages received per minute as an SVG bar chart (no script), with a text summary."""
    width, height, gap = 600, 120, 2
    n = len(t.per_minute)
    peak = max(t.per_minute) if t.per_minute else 0
    bar = (width - gap * n) / max(n, 1)
    bars = []
    for i, count in enumerate(t.per_minute):
        h = 0 if not peak else max(1.0, (height - 20) * count / peak) if count else 0
        x = i * (bar + gap)
        bars.append(
            f'<rect class="bar" x="{x:.1f}" y="{height - h:.1f}" width="{bar:.1f}" height="{h:.1f}">'
            f"<title>{e(count)} received, minute {i + 1 - n}</title></rect>"
        )
    summary = f"{t.received} message(s) received in the last hour; peak {peak} per minute" + (
        " (journal read was cut short)" if t.truncated else ""
    )
    latency = (
        f"p50 {e(t.latency_p50_ms)} ms, p95 {e(t.latency_p95_ms)} ms over {e(t.finished)} finished message(s)"
        if t.finished
        else "no message finished in the last hour"
    )
    acks = ", ".join(f"{e(k)} {e(v)}" for k, v in sorted(t.acks.items())) or "none"
    return (
        f'<figure class="chart"><svg viewBox="0 0 {width} {height}" role="img" preserveAspectRatio="none"'
        ' aria-labelledby="traffic-title" id="traffic-chart">'
        f'<title id="traffic-title">{e(summary)}</title>{"".join(bars)}</svg>'
        f'<figcaption id="traffic-summary">{e(summary)}.</figcaption></figure>'
        f'<dl class="summary"><dt>ACK codes</dt><dd id="traffic-acks">{acks}</dd>'
        f'<dt>End-to-end latency</dt><dd id="traffic-latency">{latency}</dd></dl>'
    )


def dashboard(base: str, estate: Estate) -> str:
    tiles = (
        '<div class="tiles" id="estate-tiles">'
        + tile("in flight", estate.inflight, alert=False, ident="tile-inflight")
        + tile(
            f"stuck (> {int(estate.stuck_after.total_seconds())} s)",
            estate.stuck,
            alert=estate.stuck > 0,
            ident="tile-stuck",
        )
        + tile("dead letters", estate.dead_letters, alert=estate.dead_letters > 0, ident="tile-deadletters")
        + tile(
            "breakers open",
            sum(1 for d in estate.downstreams if d.state != "closed"),
            alert=any(d.state != "closed" for d in estate.downstreams),
            ident="tile-breakers",
        )
        + "</div>"
    )
    subs = table(
        "Subscriptions: backlog and dead letters",
        ["Topic", "Subscription", "Active", "Dead letters", "Stuck"],
        (
            [
                e(s.topic),
                e(s.subscription),
                e(s.active),
                f'<a href="{link(base, "/deadletters")}">{e(s.dead_letter)}</a>' if s.dead_letter else "0",
                e(estate.stuck_by_subscriber.get(s.subscription, 0)),
            ]
            for s in estate.subscriptions
        ),
        cls="numeric",
    )
    stuck = ""
    if estate.oldest_stuck:
        stuck = "<h2>Stuck messages</h2>" + table(
            f"Oldest {len(estate.oldest_stuck)} of {estate.stuck} stuck message(s)",
            ["Correlation id", "Waiting for", "Since", "Age"],
            (
                [
                    f'<a href="{link(base, message_path(x.correlation_id))}">{e(x.correlation_id)}</a>',
                    e(", ".join(sorted(x.waiting))),
                    e(x.since.isoformat()),
                    e(_age(estate.at, x.since)),
                ]
                for x in estate.oldest_stuck
            ),
        )
    downs = table(
        "Downstreams: circuit breakers and parked work",
        ["Downstream", "Breaker", "Failures", "Trips", "Open until", "Last error", "Parked"],
        (
            [
                e(d.name),
                f'<span class="state state-{e(d.state)}">{e(d.state)}</span>',
                e(d.failures),
                e(d.trips),
                e(d.open_until.isoformat() if d.open_until else "-"),
                e(d.last_error or "-"),
                e(d.parked),
            ]
            for d in estate.downstreams
        ),
    )
    if estate.certificates is None:
        certs = "<p>No certificate inventory is configured.</p>"
    else:
        certs = table(
            "Certificates: days left",
            ["Certificate", "Days left", "Band"],
            (
                [e(c.name), e("-" if c.days_left is None else c.days_left), e(c.band or c.error or "-")]
                for c in estate.certificates
            ),
        )
    if "certificates" in estate.unavailable:
        certs = f'<p class="warning">Certificates unavailable ({e(estate.unavailable["certificates"])}).</p>'
    if estate.reconciliation is None:
        recon = '<p id="reconciliation">No reconciliation has run (or none is configured).</p>'
    else:
        at, variances = estate.reconciliation
        recon = f'<p id="reconciliation">Last run {e(at.isoformat())}.</p>' + table(
            "Reconciliation variances",
            ["Check", "Count", "Detail"],
            ([e(v.check), e(v.count), e(v.detail)] for v in variances),
        )
    return (
        '<div id="estate" data-refresh="15">'
        f'<p class="meta">As of {e(estate.at.isoformat(timespec="seconds"))}'
        f' <span class="meta-js" hidden>(refreshes every 15 s)</span></p>'
        f"{tiles}{'<h2>Last hour</h2>' + chart(estate.traffic) if estate.traffic else ''}"
        f"{stuck}<h2>Subscriptions</h2>{subs}<h2>Downstreams</h2>{downs}"
        f"<h2>Certificates</h2>{certs}<h2>Reconciliation</h2>{recon}</div>"
    )


def search_form(
    base: str, csrf: str, *, correlation_id: str = "", control_id: str = "", error: str = ""
) -> str:
    err = f'<p class="error" role="alert" id="search-error">{e(error)}</p>' if error else ""
    return (
        f'{err}<form method="post" action="{link(base, "/messages")}" class="search">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        '<div class="field"><label for="correlation_id">Correlation id</label>'
        '<input id="correlation_id" name="correlation_id" autocomplete="off"'
        f' value="{e(correlation_id)}"></div>'
        '<p class="or">or</p>'
        '<div class="field"><label for="control_id">Sender and control id (<code>SENDER:ID</code>, '
        "e.g. PAS:SAMPLE0001 or PAS/RGT01:SAMPLE0001)</label>"
        f'<input id="control_id" name="control_id" autocomplete="off" value="{e(control_id)}"></div>'
        '<button type="submit">Find</button></form>'
        '<p class="hint">Searches are sent in the request body, never in the address, and are audited.</p>'
    )


def results(base: str, found: Sequence[Found]) -> str:
    if not found:
        return '<p id="results" role="status">No message matches.</p>'
    return (
        '<div id="results" role="status">'
        + table(
            f"{len(found)} message(s)",
            ["Correlation id", "Sender", "Control id", "ACK", "Outcome", "At"],
            (
                [
                    f'<a href="{link(base, message_path(f.correlation_id))}">{e(f.correlation_id)}</a>',
                    e(f.sender or "-"),
                    e(f.control_id or "-"),
                    e(f.ack or "-"),
                    e(f.outcome or "-"),
                    e(f.at or "-"),
                ]
                for f in found
            ),
        )
        + "</div>"
    )


def _attrs(attributes: Mapping[str, Any]) -> str:
    return " ".join(
        f"{k}={v}" for k, v in attributes.items() if v is not None and k not in ("subscriber", "subscription")
    )


def journey_page(base: str, j: Journey, now: datetime) -> str:
    summary = (
        '<dl class="summary">'
        f"<dt>Correlation id</dt><dd>{e(j.correlation_id)}</dd>"
        f"<dt>ACK</dt><dd>{e(j.ack or '-')}</dd>"
        f'<dt>Status</dt><dd id="journey-status">{"finished" if j.finished else "in flight"}</dd>'
        "</dl>"
    )
    stages = table(
        "Stages",
        ["At", "+ms", "Stage", "Who", "Details"],
        (
            [
                e(s.at.isoformat()),
                e(s.offset_ms),
                f'<span class="stage">{e(s.stage)}</span>',
                e(s.who or "-"),
                e(_attrs(s.attributes)),
            ]
            for s in j.stages
        ),
        cls="stages",
    )
    waiting = table(
        "Still waiting for",
        ["Subscriber", "Since", "Age"],
        ([e(n), e(at.isoformat()), e(_age(now, at))] for n, at in sorted(j.waiting.items())),
    )
    outcomes = table(
        "Outcome per downstream subscriber",
        ["Subscriber", "Last stage", "At", "Details"],
        (
            [
                e(n),
                e(o.get("stage")),
                e(o.get("at")),
                e(" ".join(f"{k}={v}" for k, v in o.items() if k not in ("stage", "at"))),
            ]
            for n, o in sorted(j.outcomes.items())
        ),
    )
    ledger = table(
        "Event ledger verdicts (duplicate, superseded, conflict)",
        ["Subscriber", "Verdict", "At"],
        ([e(s.who or "-"), e(s.stage), e(s.at.isoformat())] for s in j.ledger),
    )
    return (
        summary
        + stages
        + outcomes
        + ledger
        + waiting
        + f'<p><a href="{link(base, "/messages")}">Find another message</a></p>'
    )


def deadletters_page(
    base: str,
    letters: Sequence[Mapping[str, Any]],
    csrf: str,
    now: datetime,
    *,
    may_operate: bool,
    notice: str = "",
) -> str:
    note = f'<p class="notice" role="status" id="notice">{e(notice)}</p>' if notice else ""
    rows = []
    for i, d in enumerate(letters):
        ident = f"dl-{i}"
        value = f"{d['topic']}|{d['subscription']}|{d['sequence']}"
        pick = (
            f'<input type="checkbox" id="{ident}" name="letter" value="{e(value)}">'
            f'<label for="{ident}" class="visually-hidden">'
            f"Select dead letter {e(d['sequence'])} of {e(d['subscription'])}</label>"
            if may_operate
            else ""
        )
        dead_at = d.get("deadLettered") or d.get("enqueued")
        corr = d.get("correlationId")
        rows.append(
            [
                pick,
                e(f"{d['topic']}/{d['subscription']}"),
                e(d["sequence"]),
                f'<a href="{link(base, message_path(str(corr)))}">{e(corr)}</a>' if corr else "-",
                e(d.get("reason") or "-"),
                e(d.get("lastErrorCode") or "-"),
                e(d.get("deliveryCount")),
                e(d.get("replayCount")),
                e(_age(now, datetime.fromisoformat(str(dead_at))) if dead_at else "-"),
            ]
        )
    listing = table(
        f"{len(letters)} dead letter(s)",
        [
            "Select",
            "Subscription",
            "Sequence",
            "Correlation id",
            "Reason",
            "Last error",
            "Deliveries",
            "Replays",
            "Age",
        ],
        rows,
        cls="deadletters",
    )
    if not may_operate:
        return note + listing + "<p>Replaying and purging need the Operate role.</p>"
    purge = (
        f'<h2>Purge</h2><form method="post" action="{link(base, "/deadletters/purge")}" class="purge">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        '<div class="field"><label for="older_than_days">Delete dead letters older than (days)</label>'
        '<input id="older_than_days" name="older_than_days" type="number" min="1" max="3650" value="30"'
        ' inputmode="numeric"></div>'
        '<button type="submit" id="purge">Purge</button></form>'
    )
    return (
        f'{note}<form method="post" action="{link(base, "/deadletters/replay")}">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">{listing}'
        '<button type="submit" id="replay-selected">Replay selected</button></form>'
        f"{purge}"
    )


def confirm_purge_page(base: str, days: int, count: int, csrf: str) -> str:
    return (
        f'<p id="confirm-text">Delete {count} dead letter(s) older than {days} day(s) for good? '
        "They cannot be replayed afterwards.</p>"
        f'<form method="post" action="{link(base, "/deadletters/purge")}">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        '<input type="hidden" name="confirm" value="yes">'
        f'<input type="hidden" name="older_than_days" value="{days}">'
        '<button type="submit" id="confirm-purge" class="warning-button">Yes, purge</button> '
        f'<a href="{link(base, "/deadletters")}">Cancel</a></form>'
    )


def confirm_replay_page(base: str, chosen: Sequence[tuple[str, str, int]], csrf: str) -> str:
    hidden = "".join(f'<input type="hidden" name="letter" value="{e(f"{t}|{s}|{n}")}">' for t, s, n in chosen)
    items = "".join(f"<li>{e(t)}/{e(s)} sequence {e(n)}</li>" for t, s, n in chosen)
    return (
        f'<p id="confirm-text">Replay {len(chosen)} dead letter(s) to their subscription? '
        "Effects are idempotent: anything already applied is answered from the store, not applied twice.</p>"
        f"<ul>{items}</ul>"
        f'<form method="post" action="{link(base, "/deadletters/replay")}">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        f'<input type="hidden" name="confirm" value="yes">{hidden}'
        '<button type="submit" id="confirm-replay">Yes, replay</button> '
        f'<a href="{link(base, "/deadletters")}">Cancel</a></form>'
    )


def health_page(report: Mapping[str, Any]) -> str:
    checks = report.get("checks") or {}
    return (
        f'<p id="health-status" class="status-{e(report.get("status"))}">'
        f"Overall: {e(report.get('status'))}</p>"
        + table(
            "Dependencies",
            ["Check", "Status", "Backend", "Duration (ms)", "Detail"],
            (
                [
                    e(name),
                    e(c.get("status")),
                    e(c.get("backend")),
                    e(c.get("durationMs")),
                    e(c.get("detail") or "-"),
                ]
                for name, c in checks.items()
            ),
        )
    )


def message_page(text: str) -> str:
    return f'<p role="alert">{e(text)}</p>'
