"""The SDK without a cluster: values, error classification, tasks and the
worker's handling of one task (deadline, cancellation, errors)."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import grpc.aio
import pytest

import lexum
from lexum import values
from lexum.errors import TlsFailures, from_rpc_error, is_transient, retry_after, tls_failure
from lexum.v1 import types_pb2, worker_pb2
from lexum.worker import FREEZE_GAP, FREEZE_TICK, FreezeClock, result_message


def status(code: grpc.StatusCode, details: str, trailers: tuple[tuple[str, str], ...] = ()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), details)


@pytest.mark.parametrize(
    ("value", "kind"),
    [(5, "int"), (-3, "int"), (True, "bool"), (False, "bool"), ("web", "str"), ([1, [2, "x"]], "list"), ([], "list")],
)
def test_values_round_trip_with_their_kind(value: lexum.Value, kind: str) -> None:
    wire = values.to_wire(value)
    assert wire.WhichOneof("kind") == kind
    assert values.from_wire(wire) == value
    assert type(values.from_wire(wire)) is type(value)


def test_values_lexum_cannot_carry_are_refused() -> None:
    with pytest.raises(TypeError):
        values.to_wire(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        values.to_wire(2**63)
    deep: lexum.Value = 1
    for _ in range(10):
        deep = [deep]
    with pytest.raises(ValueError):
        values.to_wire(deep)


@pytest.mark.parametrize(
    ("target", "split"),
    [("Pool.nodes", ("Pool", "nodes")), ("Pool[web].want", ("Pool[web]", "want")), ("Pool[a.b].x", ("Pool[a.b]", "x"))],
)
def test_targets_split_after_the_domain(target: str, split: tuple[str, str]) -> None:
    assert values.split_target(target) == split


@pytest.mark.parametrize("target", ["Pool", "Pool.", "Pool[web]", "Pool[web]x", ".x"])
def test_malformed_targets_are_refused(target: str) -> None:
    with pytest.raises(ValueError):
        values.split_target(target)


@pytest.mark.parametrize(
    ("code", "details", "kind", "diagnostic", "user"),
    [
        (
            grpc.StatusCode.INVALID_ARGUMENT,
            "E011: invariant Bounded would be violated",
            lexum.RejectedError,
            "E011",
            True,
        ),
        (grpc.StatusCode.NOT_FOUND, "E002: unknown domain `Nope`", lexum.NotFoundError, "E002", True),
        (grpc.StatusCode.UNAVAILABLE, "no quorum", lexum.UnavailableError, None, False),
        (grpc.StatusCode.UNAUTHENTICATED, "invalid token", lexum.UnauthenticatedError, None, True),
        (grpc.StatusCode.FAILED_PRECONDITION, "E010: goal is not FAILED", lexum.RejectedError, "E010", True),
        (grpc.StatusCode.FAILED_PRECONDITION, "not the leader", lexum.UnavailableError, None, False),
        (grpc.StatusCode.INTERNAL, "boom", lexum.RpcError, None, False),
        (grpc.StatusCode.INVALID_ARGUMENT, "Error: something", lexum.RejectedError, None, True),
    ],
)
def test_status_codes_map_to_typed_errors(
    code: grpc.StatusCode, details: str, kind: type[lexum.LexumError], diagnostic: str | None, user: bool
) -> None:
    error = from_rpc_error(status(code, details))
    assert type(error) is kind
    assert error.code == diagnostic
    assert error.user_error is user


def test_the_code_metadata_wins_over_the_message() -> None:
    error = from_rpc_error(status(grpc.StatusCode.INVALID_ARGUMENT, "bad", (("lexum-code", "E003"),)))
    assert error.code == "E003"


def test_transient_statuses_are_retried_and_others_are_not() -> None:
    assert is_transient(status(grpc.StatusCode.UNAVAILABLE, "down"))
    assert is_transient(status(grpc.StatusCode.FAILED_PRECONDITION, "not the leader; leader is 2"))
    assert not is_transient(status(grpc.StatusCode.FAILED_PRECONDITION, "E010"))
    assert not is_transient(status(grpc.StatusCode.INVALID_ARGUMENT, "E011"))


def test_a_limit_with_a_hint_is_retried_after_it() -> None:
    hinted = status(grpc.StatusCode.RESOURCE_EXHAUSTED, "over the write rate", (("retry-after-ms", "250"),))
    assert retry_after(hinted) == 0.25
    assert is_transient(hinted)
    bare = status(grpc.StatusCode.RESOURCE_EXHAUSTED, "message too large")
    assert retry_after(bare) is None
    assert not is_transient(bare)
    huge = status(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", (("retry-after-ms", "99999999"),))
    assert retry_after(huge) == 30.0
    assert retry_after(status(grpc.StatusCode.INVALID_ARGUMENT, "bad", (("retry-after-ms", "5"),))) is None
    assert retry_after(status(grpc.StatusCode.RESOURCE_EXHAUSTED, "x", (("retry-after-ms", "soon"),))) is None


def test_a_call_over_a_limit_waits_for_the_hint_and_succeeds_on_the_same_node() -> None:
    client = lexum.Client(["127.0.0.1:1", "127.0.0.1:2"], config=lexum.ClientConfig(deadline=5.0))
    calls: list[float] = []

    async def rpc(stub: object, timeout: float, metadata: object) -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise status(grpc.StatusCode.RESOURCE_EXHAUSTED, "over the write rate", (("retry-after-ms", "100"),))
        return "done"

    assert asyncio.run(client._call(True, rpc)) == "done"
    assert len(calls) == 3
    assert calls[2] - calls[0] >= 0.19, "waited the hint twice"
    assert client.pick(True, 0) == "127.0.0.1:1", "the busy node was not forgotten"


def test_a_hint_past_the_deadline_fails_at_once() -> None:
    client = lexum.Client(["127.0.0.1:1"], config=lexum.ClientConfig(deadline=0.5))

    async def rpc(stub: object, timeout: float, metadata: object) -> str:
        raise status(grpc.StatusCode.RESOURCE_EXHAUSTED, "over the write rate", (("retry-after-ms", "5000"),))

    started = time.monotonic()
    with pytest.raises(lexum.LexumError):
        asyncio.run(client._call(True, rpc))
    assert time.monotonic() - started < 0.4


def test_client_configuration_is_validated() -> None:
    with pytest.raises(lexum.ConfigError):
        lexum.Client([])
    with pytest.raises(lexum.ConfigError):
        lexum.Client(["bad host:1"])
    with pytest.raises(lexum.ConfigError):
        lexum.Client(["ftp://127.0.0.1:1"])
    with pytest.raises(lexum.ConfigError):
        lexum.Client(["127.0.0.1:1"], config=lexum.ClientConfig(token="a\nb"))
    assert lexum.Client("127.0.0.1:1,https://127.0.0.1:2").config.endpoints == ["127.0.0.1:1", "https://127.0.0.1:2"]


def test_redirects_move_the_leader_hint() -> None:
    client = lexum.Client(list(lexum.DEFAULT_ENDPOINTS))
    assert client.follow_redirect("127.0.0.1:7101", "127.0.0.1:7102")
    assert client.pick(True, 0) == "127.0.0.1:7102"
    assert not client.follow_redirect("127.0.0.1:7102", "")
    assert client.leader_hint is None
    assert client.pick(True, 2) == "127.0.0.1:7103"


def test_failed_tls_handshakes_are_told_apart_and_fatal_once_every_endpoint_failed() -> None:
    # What gRPC says for an untrusted node certificate, a node certificate
    # without the host's name, and a node that wants a client certificate.
    prefix = "failed to connect to all addresses; last error: "
    untrusted = status(
        grpc.StatusCode.UNAVAILABLE,
        prefix + "UNKNOWN: ipv4:127.0.0.1:1: Tls handshake failed (TSI_PROTOCOL_FAILURE): "
        "SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: "
        "unable to get local issuer certificate",
    )
    misnamed = status(
        grpc.StatusCode.UNAVAILABLE,
        prefix + "UNKNOWN: ipv4:127.0.0.1:1: Custom verification check failed with error: UNAUTHENTICATED: "
        "Hostname Verification Check failed.",
    )
    no_certificate = status(
        grpc.StatusCode.UNAVAILABLE, prefix + "UNAVAILABLE: ipv4:127.0.0.1:1: Unwrap failed (TSI_DATA_CORRUPTED)"
    )
    assert "not signed by TlsOptions.ca_pem" in (tls_failure(untrusted) or "")
    assert "CERTIFICATE_VERIFY_FAILED" in (tls_failure(untrusted) or "")
    assert "TlsOptions.domain" in (tls_failure(misnamed) or "")
    assert "client certificate" in (tls_failure(no_certificate) or "")
    assert (
        tls_failure(status(grpc.StatusCode.UNAVAILABLE, prefix + "UNAVAILABLE: ipv4:127.0.0.1:1: Socket closed"))
        is None
    )
    assert tls_failure(status(grpc.StatusCode.UNAVAILABLE, "no quorum")) is None

    failures = TlsFailures(["a:1", "b:1"])
    assert failures.note("a:1", tls_failure(untrusted)) is None
    assert failures.note("b:1", None) is None  # b answered otherwise: not a TLS setting (yet)
    error = failures.note("b:1", tls_failure(untrusted))
    assert isinstance(error, lexum.TlsError) and isinstance(error, lexum.ConfigError) and error.user_error
    assert "a:1, b:1" in error.message and "CERTIFICATE_VERIFY_FAILED" in error.message
    failures.clear()
    assert failures.note("a:1", tls_failure(untrusted)) is None


def test_an_unreachable_cluster_is_unavailable_within_the_deadline() -> None:
    config = lexum.ClientConfig(deadline=0.5)
    client = lexum.Client(["127.0.0.1:1"], config=config)
    started = time.monotonic()
    with pytest.raises(lexum.UnavailableError):
        asyncio.run(client.goals())
    assert time.monotonic() - started < 3


def wire_task(effect: str = "Slow.Op", timeout_ms: int = 0, **args: lexum.Value) -> worker_pb2.Task:
    return worker_pb2.Task(
        effect_id=7,
        effect=effect,
        idempotency_key="k",
        attempt=1,
        args=values.named_to_wire(args),
        fencing_token=3,
        timeout_ms=timeout_ms,
    )


def test_task_arguments_are_typed() -> None:
    task = lexum.Task.from_wire(wire_task(pool="web", count=5, on=True))
    assert task.int_arg("count") == 5
    assert task.str_arg("pool") == "web"
    assert task.bool_arg("on") is True
    assert task.timeout is None and task.deadline is None and task.remaining() is None
    with pytest.raises(lexum.EffectError, match="missing int argument `pool`"):
        task.int_arg("pool")
    with pytest.raises(lexum.EffectError, match="missing argument `nope`"):
        task.arg("nope")
    timed = lexum.Task.from_wire(wire_task(timeout_ms=1500), arrived=100.0)
    assert timed.timeout == 1.5 and timed.deadline == 101.5


def test_result_messages_carry_the_fencing_token_and_the_outcome() -> None:
    ok = result_message(7, 3, 5).result
    assert (ok.effect_id, ok.fencing_token, ok.WhichOneof("outcome")) == (7, 3, "ok")
    assert ok.ok.value == types_pb2.Value(int=5)
    assert not result_message(7, 3, None).result.ok.HasField("value")
    assert result_message(7, 3, error="no").result.error == "no"


def test_handlers_register_by_decorator_and_effect_names_are_checked() -> None:
    worker = lexum.Worker(lexum.Client(["127.0.0.1:1"]))

    @worker.effect("Cloud.SetNodeCount")
    async def resize(task: lexum.Task) -> int:
        return task.int_arg("count")

    @worker.effect("Firewall.Apply")
    def apply(task: lexum.Task) -> bool:
        return True

    assert worker.effects == ["Cloud.SetNodeCount", "Firewall.Apply"]
    with pytest.raises(lexum.ConfigError):
        worker.handle("NoDot", apply)


def test_a_worker_without_handlers_is_refused() -> None:
    worker = lexum.Worker(lexum.Client(["127.0.0.1:1"]))
    with pytest.raises(lexum.ConfigError):
        asyncio.run(worker.run())


def test_a_stop_ends_a_worker_that_cannot_connect() -> None:
    worker = lexum.Worker(lexum.Client(["127.0.0.1:1"]))
    worker.handle("A.B", lambda task: None)
    started = time.monotonic()
    stats = asyncio.run(worker.run(asyncio.sleep(0.3)))
    assert stats.tasks == 0
    assert time.monotonic() - started < 5


async def run_one(worker: lexum.Worker, task: worker_pb2.Task, concurrency_taken: int = 0) -> worker_pb2.TaskResult:
    """Runs one task through the worker's machinery (no cluster) and returns its result."""
    worker._prepare()
    assert worker._slots is not None and worker._results_ready is not None
    for _ in range(concurrency_taken):
        await worker._slots.acquire()
    worker._start(task)
    await asyncio.wait_for(worker._results_ready.wait(), 10)
    return worker._results.popleft().result


def test_sync_async_failing_and_unknown_handlers_report_their_outcome() -> None:
    worker = lexum.Worker(lexum.Client(["127.0.0.1:1"]))
    worker.handle("A.Async", lambda_async_double)
    worker.handle("A.Sync", lambda task: threading.current_thread().name.startswith("lexum-handler"))
    worker.handle("A.Fail", failing)
    worker.handle("A.Raise", raising)

    async def main() -> list[worker_pb2.TaskResult]:
        return [
            await run_one(worker, wire_task(effect, n=4))
            for effect in ("A.Async", "A.Sync", "A.Fail", "A.Raise", "A.None")
        ]

    async_ok, sync_ok, failed, raised, unknown = asyncio.run(main())
    assert async_ok.ok.value.int == 8
    # A plain `def` handler runs in one of the worker's threads, not on the loop.
    assert sync_ok.ok.value == types_pb2.Value(bool=True)
    assert failed.error == "the cloud said no"
    assert raised.error == "handler raised RuntimeError: boom"
    assert unknown.error == "this worker has no handler for `A.None`"
    assert worker.stats.succeeded == 2 and worker.stats.failed == 3


async def lambda_async_double(task: lexum.Task) -> int:
    return task.int_arg("n") * 2


def failing(task: lexum.Task) -> None:
    raise lexum.EffectError("the cloud said no")


async def raising(task: lexum.Task) -> None:
    raise RuntimeError("boom")


def test_an_async_handler_past_its_deadline_is_cancelled_not_left_running() -> None:
    worker = lexum.Worker(lexum.Client(["127.0.0.1:1"]))
    events: list[str] = []

    @worker.effect("Slow.Op")
    async def slow(task: lexum.Task) -> None:
        events.append("started")
        try:
            await asyncio.sleep(0.3)
            events.append("finished")
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def main() -> worker_pb2.TaskResult:
        result = await run_one(worker, wire_task(timeout_ms=50))
        await asyncio.sleep(0.4)
        return result

    result = asyncio.run(main())
    assert result.error == "handler timed out"
    assert events == ["started", "cancelled"]


def test_the_deadline_counts_from_arrival_including_the_wait_for_a_slot() -> None:
    worker = lexum.Worker(lexum.Client(["127.0.0.1:1"]), concurrency=1)
    ran: list[bool] = []

    @worker.effect("Slow.Op")
    async def quick(task: lexum.Task) -> None:
        ran.append(True)

    async def main() -> worker_pb2.TaskResult:
        # The only slot is taken, so the task waits for it past its deadline.
        return await run_one(worker, wire_task(timeout_ms=100), concurrency_taken=1)

    assert asyncio.run(main()).error == "handler timed out"
    assert ran == []


def test_a_sync_handler_sees_cancelled_at_its_deadline() -> None:
    worker = lexum.Worker(lexum.Client(["127.0.0.1:1"]))
    saw_cancel = threading.Event()

    @worker.effect("Slow.Op")
    def polling(task: lexum.Task) -> None:
        for _ in range(200):
            if task.cancelled:
                saw_cancel.set()
                return
            time.sleep(0.01)

    result = asyncio.run(run_one(worker, wire_task(timeout_ms=100)))
    assert result.error == "handler timed out"
    assert saw_cancel.wait(2), "the sync handler never saw task.cancelled"


def test_a_task_read_right_after_a_freeze_counts_from_the_freeze() -> None:
    start = 1000.0
    clock = FreezeClock(start)
    clock.tick(start + 0.05)
    assert clock.arrival(start + 0.06) == start + 0.06, "no freeze"
    # Frozen from 50 ms to 3 s; a task read before the ticker ran again:
    assert clock.arrival(start + 3.0) == start + 0.05
    # The ticker saw the gap; a task read just after it still counts from 50 ms.
    clock.tick(start + 3.0)
    assert clock.arrival(start + 3.1) == start + 0.05
    # Long after the freeze, arrival is now again.
    for ms in range(3050, 3401, 50):
        clock.tick(start + ms / 1000)
    later = start + 3.41
    assert clock.arrival(later) == later
    assert FREEZE_TICK < FREEZE_GAP


def test_a_task_read_after_a_freeze_longer_than_its_timeout_never_starts() -> None:
    worker = lexum.Worker(lexum.Client(["127.0.0.1:1"]))
    ran: list[bool] = []

    @worker.effect("Slow.Op")
    async def quick(task: lexum.Task) -> None:
        ran.append(True)

    async def main() -> worker_pb2.TaskResult:
        worker._prepare()
        assert worker._results_ready is not None
        # The clock last ticked 3 s ago: the process was frozen since then.
        worker._clock = FreezeClock(time.monotonic() - 3)
        worker._start(wire_task(timeout_ms=1000))
        await asyncio.wait_for(worker._results_ready.wait(), 10)
        return worker._results.popleft().result

    assert asyncio.run(main()).error == "handler timed out"
    assert ran == []
    assert worker.stats.failed == 1


def test_a_task_whose_deadline_passed_while_it_waited_for_a_slot_never_starts() -> None:
    worker = lexum.Worker(lexum.Client(["127.0.0.1:1"]), concurrency=1)
    ran: list[bool] = []

    async def quick(task: lexum.Task) -> None:
        ran.append(True)

    async def main() -> None:
        worker._prepare()
        # The slot comes free only after the deadline.
        task = lexum.Task.from_wire(wire_task(timeout_ms=100), arrived=time.monotonic() - 1)
        with pytest.raises(lexum.EffectError, match="handler timed out"):
            await worker._run_in_slot(quick, True, task)

    asyncio.run(main())
    assert ran == []


def test_a_newer_attempt_of_an_effect_cancels_the_older_one_running_here() -> None:
    # Both attempts delivered at once, as to a worker resumed after a SIGSTOP
    # longer than the effect timeout: only the newer may run.
    worker = lexum.Worker(lexum.Client(["127.0.0.1:1"]))
    events: list[str] = []
    sync_cancelled = threading.Event()

    @worker.effect("Slow.Op")
    async def slow(task: lexum.Task) -> int:
        events.append(f"started {task.attempt}")
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            events.append(f"cancelled {task.attempt}")
            # Cleaning up takes a while: the newer attempt must wait for it.
            await asyncio.sleep(0.05)
            events.append(f"cleaned up {task.attempt}")
            raise
        events.append(f"finished {task.attempt}")
        return task.attempt

    @worker.effect("Sync.Op")
    def polling(task: lexum.Task) -> int:
        for _ in range(30 if task.attempt == 1 else 0):
            if task.cancelled:
                sync_cancelled.set()
                break
            time.sleep(0.01)
        return task.attempt

    def attempt(n: int, effect: str = "Slow.Op") -> worker_pb2.Task:
        wire = wire_task(effect=effect, timeout_ms=5000)
        wire.attempt = n
        wire.effect_id = (10 if effect == "Slow.Op" else 20) + n
        wire.idempotency_key = effect
        return wire

    async def main() -> list[worker_pb2.TaskResult]:
        worker._prepare()
        assert worker._results_ready is not None
        worker._start(attempt(1))
        worker._start(attempt(1, "Sync.Op"))
        await asyncio.sleep(0.02)
        worker._start(attempt(2))
        worker._start(attempt(2, "Sync.Op"))
        worker._start(attempt(1))  # late: older than the attempt running here
        while worker._running:
            await asyncio.gather(*worker._running, return_exceptions=True)
        return [message.result for message in worker._results]

    results = asyncio.run(main())
    assert events == ["started 1", "cancelled 1", "cleaned up 1", "started 2", "finished 2"], (
        "only attempt 2 ran to its end, and only once attempt 1 had stopped"
    )
    assert sync_cancelled.is_set(), "the older sync attempt never saw task.cancelled"
    by_id = {result.effect_id: result for result in results}
    assert by_id[11].error == "a newer attempt of this effect runs here"
    assert by_id[12].ok.value.int == 2 and by_id[22].ok.value.int == 2
    assert len(results) == 3, "the cancelled attempts report nothing"
    assert worker.stats.succeeded == 2
