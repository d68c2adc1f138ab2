"""`Worker`: serve effects for the cluster, in Python.

The semantics are the Rust SDK's (`client/src/worker.rs`). A worker opens
one stream to the leader (following `Redirect`s from followers), says which
effects it serves and how many tasks it runs at once, runs the registered
handler for each task and sends the result back. When the leader changes,
the old leader closes the stream; the worker reconnects and continues.
Handlers keep running across a lost stream and their results go to the next
leader, which accepts them while their fencing token is current.

A handler runs at most until its task's deadline: the effect timeout the
cluster sent, counted from the moment the task arrived (waiting for a free
slot included). At the deadline, and when the worker stops, an `async def`
handler is cancelled (`asyncio.CancelledError` at its next `await`). The
leader hands an attempt to another worker only after the same timeout plus
a margin, counted from before it sent the task, so two workers never run one
effect at once. A plain `def` handler runs in a thread, which Python cannot
cancel: it should return before `task.deadline` or poll `task.cancelled`,
which turns true at the deadline (its late result is not sent).

Three rules keep one effect from running on two workers at once after this
process was frozen (SIGSTOP, a paused VM) past the effect timeout, as in the
Rust SDK. A `FreezeClock` notices the freeze, and a task read right after it
counts its deadline from when the freeze began (it may have waited in the
socket since then). A task whose deadline passed while it waited for a slot
never starts. A newer attempt of an effect (same idempotency key, higher
attempt) cancels an older one still running here and starts once that one
has stopped (an `async def` handler may clean up first; a thread running a
plain `def` cannot be stopped and only sees `task.cancelled`), and a task
older than an attempt already running here is refused with an error.

Graceful stop (`Worker.stop`, SIGTERM or SIGINT under `run_forever`): tasks
already running finish (within `shutdown_grace` seconds) and their results
are sent; tasks that arrive after the stop began are answered with an error
so the leader hands them to another worker at once.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import grpc
import grpc.aio

from lexum.client import Client, FieldWrite
from lexum.errors import (
    ConfigError,
    TlsFailures,
    UnavailableError,
    describe,
    from_rpc_error,
    is_transient,
    tls_failure,
)
from lexum.v1 import worker_pb2, worker_pb2_grpc
from lexum.values import Value, named_from_wire, to_wire

#: What a handler returns: the effect's value, or None for effects that
#: return nothing.
Result = Value | None
AsyncHandler = Callable[["Task"], Awaitable[Result]]
SyncHandler = Callable[["Task"], Result]
Handler = AsyncHandler | SyncHandler

#: Results a worker holds while no stream to the leader is open; older ones
#: are dropped first (the leader has given up on them long before).
RESULT_BACKLOG = 1024

#: Seconds between ticks of the `FreezeClock`.
FREEZE_TICK = 0.05
#: A gap between ticks longer than this (seconds) is taken for a freeze
#: (SIGSTOP, a paused VM, a starved event loop).
FREEZE_GAP = 0.25


class FreezeClock:
    """Notices when this process was frozen. A task read from the stream right
    after a freeze may have waited in the socket since the freeze began, so
    its arrival is taken to be then: the leader counts its timeout from before
    it sent the task, and a late-read task must not outlive it. Times are
    `time.monotonic()` seconds, passed in (a test can fake them)."""

    def __init__(self, now: float | None = None) -> None:
        #: When the clock last ticked.
        self.last_tick = time.monotonic() if now is None else now
        #: The latest freeze seen: when it began and when it ended.
        self.freeze: tuple[float, float] | None = None

    def tick(self, now: float) -> None:
        """Records that the process ran at `now` (every `FREEZE_TICK`)."""
        if now - self.last_tick > FREEZE_GAP:
            self.freeze = (self.last_tick, now)
        self.last_tick = max(self.last_tick, now)

    def arrival(self, now: float) -> float:
        """The earliest moment a task read at `now` may have arrived."""
        if now - self.last_tick > FREEZE_GAP:
            return self.last_tick
        if self.freeze is not None and now - self.freeze[1] < FREEZE_GAP:
            return self.freeze[0]
        return now


class EffectError(Exception):
    """A failed effect; the cluster retries it with backoff. Raise it from a
    handler; its message is what the cluster records."""


@dataclass
class Task:
    """One effect execution handed to a handler."""

    #: Effect instance id (unique in the cluster).
    effect_id: int
    #: Effect name, `Namespace.Name`.
    effect: str
    #: Stays the same across retries and failovers: pass it to the real
    #: operation to make it idempotent.
    idempotency_key: str
    #: Attempt number, from 1.
    attempt: int
    #: Named arguments, in declaration order.
    args: dict[str, Value]
    #: Fencing token the result carries (handled by the SDK).
    fencing_token: int
    #: Seconds the cluster waits for this attempt, if it said.
    timeout: float | None
    #: When the handler is cancelled (`time.monotonic()`): `timeout` after
    #: the task arrived (after a freeze: after the freeze began); None
    #: without a timeout.
    deadline: float | None
    _client: Client | None = field(default=None, repr=False, compare=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False, compare=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @staticmethod
    def from_wire(
        task: worker_pb2.Task,
        client: Client | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        arrived: float | None = None,
    ) -> Task:
        """A task from the wire; the deadline counts from `arrived` (now)."""
        timeout = task.timeout_ms / 1000 if task.timeout_ms > 0 else None
        start = time.monotonic() if arrived is None else arrived
        return Task(
            effect_id=task.effect_id,
            effect=task.effect,
            idempotency_key=task.idempotency_key,
            attempt=task.attempt,
            args=named_from_wire(task.args),
            fencing_token=task.fencing_token,
            timeout=timeout,
            deadline=None if timeout is None else start + timeout,
            _client=client,
            _loop=loop,
        )

    def arg(self, name: str) -> Value:
        """An argument by name; `EffectError` when it is missing."""
        try:
            return self.args[name]
        except KeyError:
            raise EffectError(f"missing argument `{name}`") from None

    def int_arg(self, name: str) -> int:
        """An `int` argument; `EffectError` when missing or of another type."""
        value = self.arg(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise EffectError(f"missing int argument `{name}`")
        return value

    def str_arg(self, name: str) -> str:
        """A `string` argument; `EffectError` when missing or of another type."""
        value = self.arg(name)
        if not isinstance(value, str):
            raise EffectError(f"missing string argument `{name}`")
        return value

    def bool_arg(self, name: str) -> bool:
        """A `bool` argument; `EffectError` when missing or of another type."""
        value = self.arg(name)
        if not isinstance(value, bool):
            raise EffectError(f"missing bool argument `{name}`")
        return value

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative); None without one."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    @property
    def cancelled(self) -> bool:
        """True once the deadline passed or the worker stopped: a plain `def`
        handler should give up (its result is no longer sent)."""
        return self._cancel.is_set()

    async def observe(self, writes: Mapping[str, Value] | Iterable[FieldWrite], *, as_name: str | None = None) -> int:
        """Writes what the handler observed in the world, naming this task's
        effect as the cause (`caused_by` its idempotency key): the cluster
        then attributes the writes to the cycle that issued the effect.
        `writes` maps `Domain.field` (or `Kind[key].field`) to values.
        Returns the log index."""
        if self._client is None:
            raise ConfigError("this task has no client to write observations with")
        return await self._client.mutate(writes, as_name=as_name, caused_by=[self.idempotency_key])

    def observe_sync(self, writes: Mapping[str, Value] | Iterable[FieldWrite], *, as_name: str | None = None) -> int:
        """`observe` for a plain `def` handler (it runs in a worker thread)."""
        loop = self._loop
        if loop is None:
            raise ConfigError("this task has no event loop to write observations on")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("observe_sync would block the event loop: use `await task.observe(...)`")
        future = asyncio.run_coroutine_threadsafe(self.observe(writes, as_name=as_name), loop)
        return future.result(timeout=self.remaining())


@dataclass
class WorkerStats:
    """Counters of a worker run."""

    #: Tasks received.
    tasks: int = 0
    #: Handler successes.
    succeeded: int = 0
    #: Handler failures (errors, exceptions and timeouts).
    failed: int = 0
    #: Results the leader refused (stale fencing token or unknown task).
    refused: int = 0
    #: Streams opened to a leader.
    sessions: int = 0


@dataclass(frozen=True)
class _Shutdown:
    pass


@dataclass(frozen=True)
class _Redirect:
    leader: str


@dataclass(frozen=True)
class _Lost:
    served: bool
    error: str
    #: What went wrong when the TLS handshake failed (`tls_failure`).
    tls: str | None = None


_SessionEnd = _Shutdown | _Redirect | _Lost
if TYPE_CHECKING:
    _Call = grpc.aio.StreamStreamCall[worker_pb2.WorkerMessage, worker_pb2.WorkerCommand]


def result_message(
    effect_id: int, fencing_token: int, value: Result = None, error: str | None = None
) -> worker_pb2.WorkerMessage:
    """The wire message of a task's outcome: an error, or success with a value
    (absent for None)."""
    if error is not None:
        result = worker_pb2.TaskResult(effect_id=effect_id, fencing_token=fencing_token, error=error)
    elif value is None:
        result = worker_pb2.TaskResult(effect_id=effect_id, fencing_token=fencing_token, ok=worker_pb2.Success())
    else:
        ok = worker_pb2.Success(value=to_wire(value))
        result = worker_pb2.TaskResult(effect_id=effect_id, fencing_token=fencing_token, ok=ok)
    return worker_pb2.WorkerMessage(result=result)


async def _settled(call: _Call, raised: grpc.aio.AioRpcError) -> grpc.aio.AioRpcError:
    """The call's own final status when it differs from what a write or read
    raised: a node that refuses a stream (bad token) while the hello is being
    written can surface as INTERNAL from the write, UNAUTHENTICATED on the call."""
    try:
        code = await asyncio.wait_for(call.code(), 1.0)
        if code == raised.code():
            return raised
        details = await call.details()
        trailers = await call.trailing_metadata()
    except (asyncio.TimeoutError, grpc.aio.AioRpcError, asyncio.CancelledError):
        return raised
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailers, details)


class Worker:
    """A worker: handlers per effect plus a connection to the cluster.

    ```python
    client = lexum.Client(["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"])
    worker = lexum.Worker(client, concurrency=8)

    @worker.effect("Cloud.SetNodeCount")
    async def set_node_count(task: lexum.Task) -> int:
        count = task.int_arg("count")
        # Call the cloud API here, passing task.idempotency_key along.
        await task.observe({f"Pool[{task.str_arg('pool')}].nodes": count})
        return count

    worker.run_forever()  # until SIGTERM or Ctrl-C
    ```
    """

    def __init__(
        self,
        client: Client,
        *,
        worker_id: str | None = None,
        concurrency: int = 4,
        shutdown_grace: float = 10.0,
        reconnect_window: float = 60.0,
    ) -> None:
        self.client = client
        #: Name shown in the cluster's logs.
        self.worker_id = worker_id or f"py-worker-{os.getpid()}"
        #: Tasks run at once (declared to the leader and enforced here).
        self.concurrency = max(1, concurrency)
        #: Seconds running tasks may take to finish after a stop.
        self.shutdown_grace = shutdown_grace
        #: Seconds to keep trying to reach a leader before giving up.
        self.reconnect_window = reconnect_window
        self.stats = WorkerStats()
        self._handlers: dict[str, tuple[Handler, bool]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._results: collections.deque[worker_pb2.WorkerMessage] = collections.deque(maxlen=RESULT_BACKLOG)
        self._results_ready: asyncio.Event | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._slots: asyncio.Semaphore | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._clock = FreezeClock()
        self._ticker: asyncio.Task[None] | None = None
        #: The latest attempt received per idempotency key, while it runs:
        #: its number, its asyncio task and the task handed to the handler.
        self._latest: dict[str, tuple[int, asyncio.Task[None], Task]] = {}

    # -- registration ------------------------------------------------------

    def handle(self, effect: str, handler: Handler) -> None:
        """Registers the handler of one effect (`Namespace.Name`): an `async
        def` (run on the event loop) or a plain `def` (run in a thread)."""
        namespace, dot, name = effect.partition(".")
        if not dot or not namespace.isidentifier() or not name.isidentifier():
            raise ConfigError(f"effect `{effect}` is not Namespace.Name")
        # An object whose __call__ is `async def` is an async handler too.
        call = None if inspect.isroutine(handler) else type(handler).__call__
        is_async = inspect.iscoroutinefunction(handler) or (call is not None and inspect.iscoroutinefunction(call))
        self._handlers[effect] = (handler, is_async)

    def effect(self, effect: str) -> Callable[[Handler], Handler]:
        """Decorator form of `handle`: `@worker.effect("Cloud.SetNodeCount")`."""

        def register(handler: Handler) -> Handler:
            self.handle(effect, handler)
            return handler

        return register

    @property
    def effects(self) -> list[str]:
        """The effects served, sorted."""
        return sorted(self._handlers)

    # -- running -----------------------------------------------------------

    def stop(self) -> None:
        """Begins a graceful stop; safe to call from any thread or a signal handler."""
        self._stop_requested = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)

    def run_forever(self, signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)) -> WorkerStats:
        """Serves in a new event loop until one of `signals` arrives (then stops
        gracefully) or no leader is reachable for `reconnect_window`."""

        async def main() -> WorkerStats:
            loop = asyncio.get_running_loop()
            installed = []
            for sig in signals:
                try:
                    loop.add_signal_handler(sig, self.stop)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass
            try:
                return await self.run()
            finally:
                for sig in installed:
                    loop.remove_signal_handler(sig)

        return asyncio.run(main())

    async def run(self, shutdown: Awaitable[object] | None = None) -> WorkerStats:
        """Serves until `stop()` is called or `shutdown` completes, then
        finishes running tasks and returns the counters. Raises `ConfigError`
        without handlers, the classified error of a non-transient failure (bad
        token), `TlsError` when no node's TLS handshake succeeds, or
        `UnavailableError` when no leader can be reached for
        `reconnect_window` seconds."""
        if not self._handlers:
            raise ConfigError("a worker needs at least one effect handler")
        executor = self._prepare()
        watcher: asyncio.Task[None] | None = None
        if shutdown is not None:
            watcher = asyncio.ensure_future(self._stop_after(shutdown))
        try:
            return await self._serve()
        finally:
            if watcher is not None:
                watcher.cancel()
            await self._cancel_running()
            if self._ticker is not None:
                self._ticker.cancel()
                self._ticker = None
            executor.shutdown(wait=False, cancel_futures=True)
            self._loop = None
            self._stop_requested = False

    def _prepare(self) -> ThreadPoolExecutor:
        """Binds the worker to the running loop: events, slots, handler threads."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        self._results_ready = asyncio.Event()
        self._slots = asyncio.Semaphore(self.concurrency)
        self._executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="lexum-handler")
        self._latest.clear()
        self._clock = FreezeClock()
        if self._ticker is not None:
            self._ticker.cancel()
        self._ticker = asyncio.ensure_future(self._tick())
        return self._executor

    async def _tick(self) -> None:
        """Ticks the freeze clock while the event loop runs."""
        while True:
            await asyncio.sleep(FREEZE_TICK)
            self._clock.tick(time.monotonic())

    async def _stop_after(self, shutdown: Awaitable[object]) -> None:
        await shutdown
        self.stop()

    async def _serve(self) -> WorkerStats:
        assert self._stop is not None
        retry = self.client.config.retry
        cursor = 0
        backoff = retry.initial_backoff
        failing_since: float | None = None
        last_error = "no attempt made"
        tls_failures = TlsFailures(self.client.config.endpoints)
        while True:
            if failing_since is not None and time.monotonic() - failing_since > self.reconnect_window:
                raise UnavailableError(
                    f"cluster unavailable: no leader reachable within {self.reconnect_window}s; "
                    f"last error: {last_error}"
                )
            address = self.client.pick(True, cursor)
            end = await self._session(address)
            if isinstance(end, _Shutdown):
                return self.stats
            if isinstance(end, _Redirect):
                tls_failures.note(address, None)
                last_error = f"{address}: redirected to `{end.leader}`"
                if not self.client.follow_redirect(address, end.leader):
                    cursor += 1
                if failing_since is None:
                    failing_since = time.monotonic()
                if await self._sleep_or_stop(retry.initial_backoff):
                    return self.stats
                continue
            last_error = f"{address}: {end.error}"
            if end.served:
                tls_failures.clear()
            tls_error = tls_failures.note(address, end.tls)
            if tls_error is not None:
                raise tls_error from None
            if end.served:
                failing_since = None
                backoff = retry.initial_backoff
            if failing_since is None:
                failing_since = time.monotonic()
            self.client.follow_redirect(address, "")
            cursor += 1
            if await self._sleep_or_stop(backoff):
                return self.stats
            backoff = min(backoff * 2, retry.max_backoff)

    async def _sleep_or_stop(self, seconds: float) -> bool:
        """Sleeps; returns True when a stop came first."""
        assert self._stop is not None
        if self._stop.is_set():
            return True
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
            return True
        except asyncio.TimeoutError:
            return False

    async def _session(self, address: str) -> _SessionEnd:
        """One stream to one node."""
        assert self._stop is not None and self._results_ready is not None
        config = self.client.config
        stub = worker_pb2_grpc.WorkerStub(self.client.channel(address))
        hello = worker_pb2.Hello(worker_id=self.worker_id, effects=self.effects, concurrency=self.concurrency)
        call: _Call = stub.Attach(metadata=self.client.metadata)
        stop_task = asyncio.ensure_future(self._stop.wait())
        read_task: asyncio.Future[Any] | None = None
        ready_task: asyncio.Future[Any] | None = None
        try:
            try:
                await call.write(worker_pb2.WorkerMessage(hello=hello))
                opened = asyncio.ensure_future(asyncio.wait_for(call.initial_metadata(), config.request_timeout))
                await asyncio.wait({opened, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                if not opened.done():
                    opened.cancel()
                    return _Shutdown()
                opened.result()
            except grpc.aio.AioRpcError as raised:
                error = await _settled(call, raised)
                if not is_transient(error):
                    raise from_rpc_error(error) from None
                return _Lost(False, describe(error), tls_failure(error))
            except (asyncio.TimeoutError, asyncio.InvalidStateError):
                return _Lost(False, "no answer to hello")
            served = False
            while True:
                if not await self._flush(call):
                    return _Lost(served, "stream broke while sending results")
                if read_task is None:
                    read_task = asyncio.ensure_future(call.read())
                if ready_task is None:
                    ready_task = asyncio.ensure_future(self._results_ready.wait())
                done, _ = await asyncio.wait({read_task, ready_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                if ready_task in done:
                    self._results_ready.clear()
                    ready_task = None
                if stop_task in done:
                    break
                if read_task not in done:
                    continue
                finished, read_task = read_task, None
                try:
                    message = finished.result()
                except grpc.aio.AioRpcError as raised:
                    error = await _settled(call, raised)
                    if not is_transient(error) and not served:
                        raise from_rpc_error(error) from None
                    return _Lost(served, describe(error))
                if not isinstance(message, worker_pb2.WorkerCommand):
                    return _Lost(served, "stream closed by the node")
                kind = message.WhichOneof("kind")
                if kind == "redirect":
                    return _Redirect(message.redirect.leader)
                if kind == "task":
                    if not served:
                        served = True
                        self.stats.sessions += 1
                    self.stats.tasks += 1
                    self._start(message.task)
                elif kind == "ack" and not message.ack.accepted:
                    self.stats.refused += 1
            await self._drain(call, read_task)
            read_task = None
            return _Shutdown()
        finally:
            for pending in (stop_task, read_task, ready_task):
                if pending is not None and not pending.done():
                    pending.cancel()
            call.cancel()

    async def _flush(self, call: _Call) -> bool:
        """Sends every queued result; False (results kept) when the stream broke."""
        while self._results:
            message = self._results[0]
            try:
                await call.write(message)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                return False
            if self._results and self._results[0] is message:
                self._results.popleft()
        return True

    async def _drain(self, call: _Call, read_task: asyncio.Future[Any] | None) -> None:
        """After a stop: finish running tasks and send their results, answer
        new ones with an error, read acks, then close the stream. Bounded by
        the shutdown grace; handlers still running then are cancelled."""
        assert self._results_ready is not None
        loop = asyncio.get_running_loop()
        grace_end = loop.time() + self.shutdown_grace
        linger_end: float | None = None
        ready_task: asyncio.Future[Any] | None = None
        try:
            while True:
                if linger_end is None:
                    if not await self._flush(call):
                        return
                    if not self._running and not self._results:
                        try:
                            await call.done_writing()
                        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                            return
                        # Acks of the last results may still be on their way.
                        linger_end = min(loop.time() + 0.2, max(grace_end, loop.time()))
                timeout = (grace_end if linger_end is None else linger_end) - loop.time()
                if timeout <= 0:
                    return
                if read_task is None:
                    read_task = asyncio.ensure_future(call.read())
                waiting: set[asyncio.Future[Any]] = {read_task}
                if linger_end is None:
                    if ready_task is None:
                        ready_task = asyncio.ensure_future(self._results_ready.wait())
                    waiting.add(ready_task)
                done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if ready_task is not None and ready_task in done:
                    self._results_ready.clear()
                    ready_task = None
                if read_task not in done:
                    continue
                finished, read_task = read_task, None
                try:
                    message = finished.result()
                except grpc.aio.AioRpcError:
                    return
                if not isinstance(message, worker_pb2.WorkerCommand):
                    return
                kind = message.WhichOneof("kind")
                if kind == "task" and linger_end is None:
                    task = message.task
                    self._results.append(
                        result_message(task.effect_id, task.fencing_token, error="worker is shutting down")
                    )
                elif kind == "ack" and not message.ack.accepted:
                    self.stats.refused += 1
        finally:
            for pending in (read_task, ready_task):
                if pending is not None and not pending.done():
                    pending.cancel()

    def _start(self, wire: worker_pb2.Task) -> None:
        """Runs one task in the background (see `_execute`). After a freeze
        the task may have waited in the socket since the freeze began: its
        deadline counts from then. A task older than an attempt of the same
        effect running here is refused; a newer one cancels the older."""
        assert self._results_ready is not None
        arrived = self._clock.arrival(time.monotonic())
        task = Task.from_wire(wire, self.client, self._loop, arrived)
        self._latest = {key: entry for key, entry in self._latest.items() if not entry[1].done()}
        latest = self._latest.get(task.idempotency_key)
        if latest is not None and latest[0] > task.attempt:
            refused = "a newer attempt of this effect runs here"
            self._results.append(result_message(task.effect_id, task.fencing_token, error=refused))
            self._results_ready.set()
            return
        older: asyncio.Task[None] | None = None
        if latest is not None:
            # The leader sends a new attempt only after giving up on the old
            # one (whose result it would refuse), so the two must not run at
            # once. This happens when a worker was frozen with both delivered.
            # The newer one waits until the cancelled one has stopped.
            _, older, older_task = latest
            older_task._cancel.set()
            older.cancel()
        running = asyncio.ensure_future(self._execute(task, after=older))
        self._running.add(running)
        running.add_done_callback(self._running.discard)
        self._latest[task.idempotency_key] = (task.attempt, running, task)

    async def _execute(self, task: Task, after: asyncio.Task[None] | None = None) -> None:
        """Runs one task in a free slot until its deadline, once `after` (an
        older attempt it cancelled) has stopped, and queues its result for
        whichever stream to the leader is open."""
        assert self._slots is not None and self._results_ready is not None
        value: Result = None
        error: str | None = None
        try:
            entry = self._handlers.get(task.effect)
            if entry is None:
                raise EffectError(f"this worker has no handler for `{task.effect}`")
            handler, is_async = entry
            run = self._run_in_slot(handler, is_async, task, after)
            remaining = task.remaining()
            if remaining is None:
                value = await run
            else:
                value = await asyncio.wait_for(run, remaining)
            if value is not None:
                to_wire(value)  # a value Lexum cannot carry fails the task here
        except asyncio.TimeoutError:
            error = "handler timed out"
        except asyncio.CancelledError:
            # The worker stopped and its grace ran out, or a newer attempt
            # of this effect arrived: no result.
            task._cancel.set()
            raise
        except EffectError as e:
            error = str(e) or type(e).__name__
        except (TypeError, ValueError) as e:
            error = f"handler failed: {type(e).__name__}: {e}"
        except Exception as e:
            error = f"handler raised {type(e).__name__}: {e}"
        finally:
            task._cancel.set()
        if error is None:
            self.stats.succeeded += 1
        else:
            self.stats.failed += 1
        current = asyncio.current_task()
        if current is not None:
            self._running.discard(cast("asyncio.Task[None]", current))
        self._results.append(result_message(task.effect_id, task.fencing_token, value, error))
        self._results_ready.set()

    async def _run_in_slot(
        self, handler: Handler, is_async: bool, task: Task, after: asyncio.Task[None] | None = None
    ) -> Result:
        assert self._slots is not None
        if after is not None and not after.done():
            # An `async def` handler may still clean up after its cancel.
            await asyncio.wait({after})
        async with self._slots:
            # A task whose deadline passed while it waited never starts.
            if task.deadline is not None and time.monotonic() >= task.deadline:
                raise EffectError("handler timed out")
            if is_async:
                return await cast(AsyncHandler, handler)(task)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, cast(SyncHandler, handler), task)

    async def _cancel_running(self) -> None:
        running = list(self._running)
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        self._running.clear()
