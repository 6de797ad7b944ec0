"""Tolerant matching of a message's segment sequence against a message structure tree.

The matcher walks the structure greedily, the way HL7 receivers do (HAPI's message iterator works the same
way): each segment is placed in the first slot, at or after the current position, that can take it,
repeating a slot or group while its cardinality allows. Problems are reported, never raised:

* ``missing``: a required segment (or required group, reported by its first required segment) was not sent;
* ``too_many``: a segment repeats more often than its slot allows;
* ``out_of_order``: a segment the structure knows cannot be placed anywhere from the current position on.
  It is skipped and matching resumes *at the same position*, so one stray segment produces one problem
  rather than a cascade. Consecutive stray segments with the same ID are reported once, with a count;
* ``unexpected``: a segment ID that occurs nowhere in the structure (Z-segments, or standard segments from
  another version or profile). These are tolerated and skipped, and reported as warnings (consecutive
  ones with the same ID folded into one problem, like stray segments).

A required group that has not started yet is entered by any segment it contains, even one that cannot
start it (e.g. OBX after PID with no OBR in an ORU^R01): the group's missing leading segment is then
reported once, instead of every later segment being out of order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

from shared.hl7v2.structures.structures import GroupRef, Node, SegmentRef

__all__ = ["ProblemKind", "StructureProblem", "match_structure"]

ProblemKind = Literal["missing", "too_many", "out_of_order", "unexpected"]


@dataclass(frozen=True, slots=True)
class StructureProblem:
    """One structural finding. ``index`` is the 0-based position of the offending segment in the input
    (``None`` for ``missing``, where ``expected_at`` gives the input position where it was due).
    ``count`` > 1 when consecutive identical out-of-order segments were folded together."""

    kind: ProblemKind
    segment: str
    index: int | None
    expected_at: int | None = None
    count: int = 1
    group: str | None = None

    @property
    def is_error(self) -> bool:
        return self.kind != "unexpected"


@cache
def _nullable(node: Node) -> bool:
    if isinstance(node, SegmentRef):
        return node.min == 0
    if node.min == 0:
        return True
    if node.kind == "choice":
        return any(_nullable(c) for c in node.children)
    return all(_nullable(c) for c in node.children)


@cache
def _first(node: Node) -> frozenset[str]:
    """Segment IDs that can start an instance of ``node``."""
    if isinstance(node, SegmentRef):
        return frozenset({node.name})
    out: set[str] = set()
    if node.kind == "choice":
        for child in node.children:
            out |= _first(child)
        return frozenset(out)
    for child in node.children:
        out |= _first(child)
        if not _nullable(child):
            break
    return frozenset(out)


@cache
def _all(node: Node) -> frozenset[str]:
    """Every segment ID occurring anywhere inside ``node``."""
    if isinstance(node, SegmentRef):
        return frozenset({node.name})
    out: set[str] = set()
    for child in node.children:
        out |= _all(child)
    return frozenset(out)


def _first_required(node: Node) -> str:
    """The segment ID to name when a required node is absent."""
    if isinstance(node, SegmentRef):
        return node.name
    for child in node.children:
        if not _nullable(child):
            return _first_required(child)
    return _first_required(node.children[0])


class _Matcher:
    def __init__(self, root: GroupRef, names: Sequence[str]) -> None:
        self.names = names
        self.pos = 0
        self.known = _all(root)
        self.problems: list[StructureProblem] = []

    # -- input helpers ------------------------------------------------------------------------------

    def _skip_unknown(self) -> str | None:
        """Skip (and report) segments the structure does not know; return the next known ID or None."""
        while self.pos < len(self.names):
            name = self.names[self.pos]
            if name in self.known:
                return name
            self._stray(name, "unexpected", None)
        return None

    def _stray(self, name: str, kind: ProblemKind, group: str | None) -> None:
        """Record a segment that is skipped, folding it into the previous problem when that was the same
        kind of problem for the same segment ID immediately before it."""
        last = self.problems[-1] if self.problems else None
        if (
            last is not None
            and last.kind == kind
            and last.segment == name
            and last.index is not None
            and last.index + last.count == self.pos
        ):
            self.problems[-1] = StructureProblem(kind, name, last.index, None, last.count + 1, last.group)
        else:
            self.problems.append(StructureProblem(kind, name, self.pos, group=group))
        self.pos += 1

    # -- structure walk -----------------------------------------------------------------------------

    def match_group(self, group: GroupRef, follow: frozenset[str]) -> None:
        """Match one instance of ``group``; ``follow`` = IDs an enclosing context accepts afterwards."""
        if group.kind == "choice":
            self._match_choice(group, follow)
            return
        children = group.children
        for i, child in enumerate(children):
            later: set[str] = set(follow)
            for sibling in children[i + 1 :]:
                # A required group that has not started can be entered by any segment it contains.
                later |= (
                    _all(sibling)
                    if isinstance(sibling, GroupRef) and not _nullable(sibling)
                    else _first(sibling)
                )
            count = 0
            while True:
                name = self._skip_unknown()
                if name is None:
                    break
                room = child.max is None or count < child.max
                if room and name in _first(child):
                    self._consume(child, count, frozenset(later))
                    count += 1
                    continue
                if (
                    room
                    and count == 0
                    and isinstance(child, GroupRef)
                    and child.min >= 1
                    and name in _all(child)
                ):
                    before = self.pos
                    self.match_group(child, frozenset(later))
                    count += 1
                    if self.pos == before:  # pragma: no cover - defensive: forced entry consumed nothing
                        break
                    continue
                if name in later:
                    break
                too_many = not room and name in _first(child) and isinstance(child, SegmentRef)
                self._stray(name, "too_many" if too_many else "out_of_order", group.name)
            if count < child.min and not _nullable(child):
                self.problems.append(
                    StructureProblem("missing", _first_required(child), None, self.pos, group=group.name)
                )

    def _consume(self, child: Node, count: int, later: frozenset[str]) -> None:
        if isinstance(child, SegmentRef):
            self.pos += 1
            return
        repeat = child.max is None or count + 1 < child.max
        follow = later | _first(child) if repeat else later
        before = self.pos
        self.match_group(child, follow)
        if self.pos == before:  # pragma: no cover - defensive: _first guarantees progress
            self.pos += 1

    def _match_choice(self, group: GroupRef, follow: frozenset[str]) -> None:
        name = self._skip_unknown()
        if name is not None:
            for alternative in group.children:
                if name in _first(alternative):
                    self._consume(alternative, 0, follow)
                    return
        if not _nullable(group):
            self.problems.append(
                StructureProblem("missing", _first_required(group), None, self.pos, group=group.name)
            )


def match_structure(root: GroupRef, names: Sequence[str]) -> list[StructureProblem]:
    """Match segment IDs ``names`` (in message order, MSH first) against ``root``; return the problems."""
    matcher = _Matcher(root, names)
    matcher.match_group(root, frozenset())
    # Anything left over after the root sequence is complete.
    while matcher.pos < len(names):
        name = matcher._skip_unknown()
        if name is None:
            break
        matcher._stray(name, "out_of_order", root.name)
    return matcher.problems
