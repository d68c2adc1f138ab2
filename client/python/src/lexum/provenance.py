"""Causes of writes and explanations of goals, as `Client.why` and
`Client.explain` return them (SPEC section 3.7)."""

from __future__ import annotations

from dataclasses import dataclass

from lexum.goal import Goal, goal_from_wire
from lexum.v1 import client_pb2
from lexum.values import Value, from_wire


@dataclass(frozen=True)
class CycleRef:
    """A cycle as a cause names it."""

    cycle: int
    #: `Domain.Goal` the cycle repairs.
    goal: str
    #: Log index at which it was armed.
    started_at: int


@dataclass(frozen=True)
class ObservedEffect:
    """An effect whose outcome a client write observed."""

    idempotency_key: str
    #: `Namespace.Name`.
    effect: str
    #: The cycle that issued it.
    cycle: CycleRef
    #: The worker of its last dispatched attempt.
    worker: str | None


@dataclass(frozen=True)
class CycleCause:
    """A cycle's slice (`step` is the slice) or the handler of a message it
    sent (`step` is `Domain.Handler`)."""

    cycle: CycleRef
    step: str


@dataclass(frozen=True)
class ClientCause:
    """A client mutation."""

    #: Authenticated identity, with the name the client added.
    principal: str
    #: Effect keys the client said it observed.
    caused_by: list[str]
    #: Those the cluster knew, with their cycles.
    observed: list[ObservedEffect]


@dataclass(frozen=True)
class HandlerCause:
    """The handler (`Domain.Handler`) of a message no cycle is known for."""

    handler: str


Cause = CycleCause | ClientCause | HandlerCause


@dataclass(frozen=True)
class WriteRecord:
    """One committed write of a field."""

    index: int
    #: `Domain.field`.
    field: str
    old: Value
    new: Value
    cause: Cause


@dataclass(frozen=True)
class Waiting:
    """What a violated goal's repair waits for."""

    #: nothing, trap, failure, damping, dominance, backoff, cycle, domain, no_transition.
    kind: str
    #: damping: the principal; dominance: the higher goal; domain: the goal being repaired there.
    detail: str
    #: cycle: its id, transition, next slice (0-based), effects awaited, whether suspended.
    cycle: int
    transition: str
    next_slice: int
    effects: list[str]
    suspended: bool
    #: backoff: the armed delay in milliseconds.
    delay_ms: int


@dataclass(frozen=True)
class Contention:
    """Outside contention on a goal (E016)."""

    principal: str
    undos: int
    fields: list[str]
    penalty: int
    suppressing: bool
    last_index: int


@dataclass(frozen=True)
class VectorEntry:
    """One signed change of an oscillation vector."""

    field: str
    #: `Domain.Goal` whose cycle wrote.
    writer: str
    delta: int
    index: int


@dataclass(frozen=True)
class Explanation:
    """Why a goal is in its status and what its repair waits for."""

    index: int
    goal: Goal
    #: The latest writes of the goal's inputs, oldest first.
    writes: list[WriteRecord]
    #: The transition that would run now, if any.
    armed_transition: str | None
    waiting: Waiting
    contention: list[Contention]
    vector: list[VectorEntry]
    dominated_by: list[str]


def _cycle(c: client_pb2.CycleRef) -> CycleRef:
    return CycleRef(c.cycle, c.goal, c.started_at)


def cause_from_wire(c: client_pb2.Cause) -> Cause:
    """A cause from the wire (an unset cause reads as an empty handler)."""
    kind = c.WhichOneof("kind")
    if kind == "cycle":
        return CycleCause(_cycle(c.cycle.cycle), c.cycle.step)
    if kind == "client":
        observed = [
            ObservedEffect(o.idempotency_key, o.effect, _cycle(o.cycle), o.worker or None) for o in c.client.observed
        ]
        return ClientCause(c.client.principal, list(c.client.caused_by), observed)
    return HandlerCause(c.handler)


def write_from_wire(w: client_pb2.WriteRecord) -> WriteRecord:
    """A write record from the wire."""
    return WriteRecord(w.index, w.field, from_wire(w.old), from_wire(w.new), cause_from_wire(w.cause))


def explanation_from_wire(r: client_pb2.ExplainResponse) -> Explanation:
    """An explanation from the wire."""
    w = r.waiting
    waiting = Waiting(w.kind, w.detail, w.cycle, w.transition, w.next_slice, list(w.effects), w.suspended, w.delay_ms)
    return Explanation(
        index=r.index,
        goal=goal_from_wire(r.goal),
        writes=[write_from_wire(x) for x in r.writes],
        armed_transition=r.armed_transition or None,
        waiting=waiting,
        contention=[
            Contention(c.principal, c.undos, list(c.fields), c.penalty, c.suppressing, c.last_index)
            for c in r.contention
        ],
        vector=[VectorEntry(v.field, v.writer, v.delta, v.index) for v in r.vector],
        dominated_by=list(r.dominated_by),
    )
