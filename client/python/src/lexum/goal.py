"""A goal and its status, as `Client.goals` and `Client.explain` return it."""

from __future__ import annotations

from dataclasses import dataclass

from lexum.v1 import client_pb2


@dataclass(frozen=True)
class Goal:
    """A goal and its status."""

    domain: str
    goal: str
    #: `critical` .. `background`.
    priority: str
    #: `SATISFIED`, `VIOLATED`, `REPAIRING`, `FAILED`, `DOMINATED`, `TRAPPED`, `CONTESTED`.
    status: str
    #: Diagnostic code (`E005`, `E010`), if any.
    code: str | None
    #: Why (trap evidence, last error), if any.
    evidence: str | None
    #: Log index at which the status began.
    since_index: int
    #: Repair cycles run.
    cycles: int

    @property
    def name(self) -> str:
        """`Domain.Goal`."""
        return f"{self.domain}.{self.goal}"


def goal_from_wire(g: client_pb2.GoalInfo) -> Goal:
    """A goal from the wire."""
    return Goal(
        domain=g.domain,
        goal=g.goal,
        priority=g.priority,
        status=g.status,
        code=g.code or None,
        evidence=g.evidence or None,
        since_index=g.since_index,
        cycles=g.cycles,
    )
