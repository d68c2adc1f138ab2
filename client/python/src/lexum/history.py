"""Judged repair cycles, as `Client.history` returns them: the evidence
behind a verdict (what a cycle changed and which goals held after it)."""

from __future__ import annotations

from dataclasses import dataclass

from lexum.v1 import client_pb2
from lexum.values import Value, from_wire


@dataclass(frozen=True)
class FieldDelta:
    """A field a cycle changed, from before its first write to when it was judged."""

    #: `Domain.field`.
    field: str
    before: Value
    after: Value
    #: Signed change, for `int` fields.
    delta: int | None


@dataclass(frozen=True)
class GoalAfter:
    """Whether a goal held after a cycle."""

    #: `Domain.Goal`.
    goal: str
    holds: bool


@dataclass(frozen=True)
class Cycle:
    """One judged (or cut short) repair cycle."""

    cycle: int
    #: `Pool`, `Pool[web]`.
    domain: str
    #: The goal it repaired.
    goal: str
    transition: str
    #: `critical` .. `background`.
    priority: str
    #: Log index at which it was armed.
    start_index: int
    #: Log index at which it was judged.
    end_index: int
    deltas: list[FieldDelta]
    #: Its goal and every goal it touched, and whether each held afterwards.
    goals_after: list[GoalAfter]
    #: `converged`, `progress`, `no_progress`, `tug_of_war`, `trapped`,
    #: `failed`, `cancelled`, `deleted` or `dropped`.
    verdict: str
    #: Diagnostic code attached to the verdict (`E005`), if any.
    code: str | None


def cycle_from_wire(c: client_pb2.Cycle) -> Cycle:
    """A cycle from the wire."""
    return Cycle(
        cycle=c.cycle,
        domain=c.domain,
        goal=c.goal,
        transition=c.transition,
        priority=c.priority,
        start_index=c.start_index,
        end_index=c.end_index,
        deltas=[
            FieldDelta(d.field, from_wire(d.before), from_wire(d.after), d.delta if d.HasField("delta") else None)
            for d in c.deltas
        ],
        goals_after=[GoalAfter(g.goal, g.holds) for g in c.goals_after],
        verdict=c.verdict,
        code=c.code or None,
    )
