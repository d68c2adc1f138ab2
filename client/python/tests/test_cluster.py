"""The SDK against real three-node clusters of `lexumd` processes on
loopback (`lexum.testing.LocalCluster`). Every wait is bounded."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import lexum
from lexum.testing import LocalCluster

from .conftest import ClusterFactory

REPO = Path(__file__).resolve().parents[3]

JOB = """
effect Slow.Op(n: int) -> int

domain Job {
  state {
    done: int = 0
    want: int = 0
  }
  goal Done { done >= want }
  transition Run for Done retry 5 backoff 100ms..200ms {
    slice call { emit Slow.Op(n: want) -> r }
    slice record { done = r }
  }
}
"""


async def wait_until(what: str, check: Callable[[], Awaitable[bool]], seconds: float) -> None:
    """Polls `check` every 0.2 s until it holds; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {seconds}s")


async def all_satisfied(client: lexum.Client, expected: int) -> bool:
    goals = await client.goals()
    return len(goals) == expected and all(g.status == "SATISFIED" for g in goals)


def test_the_fleet_example_converges_with_the_python_worker(cluster: LocalCluster) -> None:
    worker_log = cluster.dir / "py-worker.log"
    with worker_log.open("wb") as log:
        # The example as a user runs it; it waits for the program to arrive.
        worker = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "examples" / "python" / "fleet_worker.py"),
                "--endpoints",
                ",".join(cluster.endpoints),
                "--delay-ms",
                "20",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def main() -> None:
        async with lexum.Client(cluster.endpoints) as client:
            await client.submit_source("fleet.lxm", (REPO / "examples" / "fleet.lxm").read_text())
            await client.create_instances("Pool", {"web": {"want": 3}, "db": {"want": 2}, "cache": {"want": 4}})
            await wait_until("every goal SATISFIED", lambda: all_satisfied(client, 4), 60)
            for pool, want in (("web", 3), ("db", 2), ("cache", 4)):
                assert (await client.get(f"Pool[{pool}]"))["nodes"] == want
            assert len(await client.goals("Pool", status="SATISFIED")) == 3
            with pytest.raises(lexum.RejectedError, match="unknown status `Satisfied`"):
                await client.goals(status="Satisfied")
            # A new want is repaired too, and the write of `nodes` names
            # the effect the worker observed (caused_by).
            await client.set("Pool[web]", "want", 7)
            await wait_until("Pool[web] resized", lambda: all_satisfied(client, 4), 30)
            writes = await client.why("Pool[web]", "nodes")
            observed = [w for w in writes if isinstance(w.cause, lexum.ClientCause) and w.new == 7]
            assert observed, writes
            cause = observed[-1].cause
            assert isinstance(cause, lexum.ClientCause)
            assert cause.observed and cause.observed[0].effect == "Cloud.SetNodeCount"
            assert cause.observed[0].worker == f"py-fleet-worker-{worker.pid}"
            assert cause.caused_by == [cause.observed[0].idempotency_key]
            # The history is typed: Pool[web]'s last converged cycle took
            # nodes to 7 and left Pool[web].Sized holding.
            cycles = [
                c for c in await client.history(limit=100) if c.domain == "Pool[web]" and c.verdict == "converged"
            ]
            assert cycles, await client.history(limit=100)
            last = cycles[-1]
            assert (last.goal, last.transition, last.priority, last.code) == ("Sized", "Resize", "normal", None)
            assert lexum.GoalAfter("Pool[web].Sized", True) in last.goals_after, last
            nodes = [d for d in last.deltas if d.field == "Pool[web].nodes"]
            before = nodes[0].before if nodes else None
            assert isinstance(before, int) and nodes[0].after == 7 and nodes[0].delta == 7 - before, last
            assert last.start_index <= last.end_index

    try:
        asyncio.run(main())
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=20)
    # SIGTERM is a graceful stop: exit code 0 and the closing line.
    assert code == 0, worker_log.read_text()
    assert "stopped after" in worker_log.read_text()


def test_client_and_worker_follow_the_leader_across_a_leader_kill(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    addresses = {node.id: node.addr for node in cluster.nodes.values()}
    # Followers first: the first write must be redirected.
    order = [addresses[i] for i in sorted(addresses, key=lambda i: i == leader)]

    async def main() -> None:
        client = lexum.Client(order, config=lexum.ClientConfig(deadline=30))
        await client.submit_source("job.lxm", JOB)
        assert client.leader_hint == addresses[leader]
        await client.set("Job", "want", 0)
        seen: list[int] = []
        worker = lexum.Worker(client, worker_id="py-failover", concurrency=2)

        received: set[str] = set()

        @worker.effect("Slow.Op")
        async def op(task: lexum.Task) -> int:
            seen.append(task.int_arg("n"))
            received.add(task.idempotency_key)
            return task.int_arg("n")

        # A watch on the leader, which is about to die: it must resume elsewhere.
        watch_client = lexum.Client([addresses[leader], *[a for i, a in addresses.items() if i != leader]])
        events: list[lexum.Event] = []

        async def follow() -> None:
            async for event in watch_client.watch(from_index=1):
                events.append(event)

        watching = asyncio.ensure_future(follow())
        running = asyncio.ensure_future(worker.run())
        try:
            await client.set("Job", "want", 1)
            await wait_until("Job.Done repaired", lambda: all_satisfied(client, 1), 30)
            before = len(events)
            assert before > 0

            cluster.kill(leader)
            new_leader = cluster.wait_for_leader(other_than=leader, timeout=30)
            index = await client.set("Job", "want", 2)
            assert client.leader_hint == addresses[new_leader]
            assert (await client.get("Job"))["want"] == 2
            # The worker reconnected to the new leader and repaired the goal.
            await wait_until("Job.Done repaired after the kill", lambda: all_satisfied(client, 1), 40)
            assert 2 in seen
            assert worker.stats.sessions >= 2

            async def watched_past_the_kill() -> bool:
                return any(e.index >= index for e in events)

            await wait_until("the watch resumed on another node", watched_past_the_kill, 30)
            keys = [(e.index, e.kind, e.domain, e.goal, e.message) for e in events]
            assert len(keys) == len(set(keys)), "the resumed watch delivered an event twice"
            assert [e.index for e in events] == sorted(e.index for e in events)
            # Statuses and verdicts are fields of their events, not text to parse.
            assert any(e.kind == "goal_status" and e.domain == "Job" and e.status == "SATISFIED" for e in events)
            assert all((e.kind == "goal_status") == (e.status is not None) for e in events)
            assert any(e.kind == "cycle" and e.verdict == "converged" for e in events)
            assert all((e.kind == "cycle") == (e.verdict is not None) for e in events)
            assert all(e.kind.startswith("effect_") == (e.idempotency_key is not None) for e in events)
            assert any(e.kind == "mutation" and e.index == index and e.fields == ("Job.want",) for e in events)
            assert all((e.kind == "mutation") == (e.principal is not None) for e in events)

            async def watched_every_dispatch() -> bool:
                dispatched = {e.idempotency_key for e in events if e.kind == "effect_dispatched" and e.attempt >= 1}
                return bool(received) and received <= dispatched

            await wait_until("the watch showed each task's dispatch by its key", watched_every_dispatch, 30)
        finally:
            worker.stop()
            await asyncio.wait_for(running, 20)
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
            await client.close()
            await watch_client.close()

    asyncio.run(main())


def test_a_handler_past_its_deadline_is_cancelled_and_redispatched_without_overlap(
    start_cluster: ClusterFactory,
) -> None:
    cluster = start_cluster(effect_timeout_ms=1500)

    async def main() -> None:
        client = lexum.Client(cluster.endpoints)
        await client.submit_source("job.lxm", JOB)
        # (worker, attempt, key, started, ended, how) of every execution.
        runs: list[tuple[str, int, str, float, float, str]] = []
        workers = []
        for name in ("py-slow-a", "py-slow-b"):
            worker = lexum.Worker(client, worker_id=name, concurrency=1)

            async def op(task: lexum.Task, name: str = name) -> int:
                started = time.monotonic()
                how = "returned"
                try:
                    # The first attempt outlives its 1.5 s deadline by far.
                    await asyncio.sleep(30 if task.attempt == 1 else 0.05)
                    return task.int_arg("n")
                except asyncio.CancelledError:
                    how = "cancelled"
                    raise
                finally:
                    runs.append((name, task.attempt, task.idempotency_key, started, time.monotonic(), how))

            worker.handle("Slow.Op", op)
            workers.append(worker)
        running = [asyncio.ensure_future(w.run()) for w in workers]
        try:
            await asyncio.sleep(0.5)  # both attached
            await client.set("Job", "want", 3)
            await wait_until("Job.Done repaired by a second attempt", lambda: all_satisfied(client, 1), 40)
            assert (await client.get("Job"))["done"] == 3
        finally:
            for w in workers:
                w.stop()
            await asyncio.wait_for(asyncio.gather(*running), 20)
            await client.close()

        print("executions:", *runs, sep="\n  ")
        first = [r for r in runs if r[1] == 1]
        later = [r for r in runs if r[1] > 1]
        assert len(first) == 1 and first[0][5] == "cancelled", runs
        assert 1.3 < first[0][4] - first[0][3] < 3.0, f"cancelled after {first[0][4] - first[0][3]:.2f}s"
        assert later and later[-1][5] == "returned", runs
        assert {r[2] for r in runs} == {first[0][2]}, "a retry carries the same idempotency key"
        ordered = sorted(runs, key=lambda r: r[3])
        for a, b in itertools.pairwise(ordered):
            assert a[4] <= b[3], f"two executions of one effect overlapped: {a} and {b}"

    asyncio.run(main())


def test_the_tests_import_the_installed_package_not_the_source_tree() -> None:
    # deploy/test.sh runs `pip install ./client/python` first.
    assert "site-packages" in lexum.__file__, lexum.__file__


def test_a_token_is_sent_and_a_wrong_one_is_a_typed_error(start_cluster: ClusterFactory) -> None:
    cluster = start_cluster(
        tokens={"ops": ("admin", "ops-secret-0123456789"), "fleet": ("worker", "worker-secret-0123456789")}
    )

    async def main() -> None:
        async with lexum.Client(cluster.endpoints, config=lexum.ClientConfig(token="wrong")) as bad:
            try:
                await bad.goals()
                raise AssertionError("a wrong token was accepted")
            except lexum.UnauthenticatedError as e:
                assert e.user_error
        async with lexum.Client(cluster.endpoints, config=lexum.ClientConfig(token="ops-secret-0123456789")) as client:
            await client.submit_source("job.lxm", JOB)
            worker_client = lexum.Client(cluster.endpoints, config=lexum.ClientConfig(token="worker-secret-0123456789"))
            worker = lexum.Worker(worker_client, worker_id="py-token")
            worker.handle("Slow.Op", lambda task: task.int_arg("n"))
            running = asyncio.ensure_future(worker.run())
            try:
                await client.set("Job", "want", 4)
                await wait_until("Job.Done repaired by a worker with the token", lambda: all_satisfied(client, 1), 30)
            finally:
                worker.stop()
                await asyncio.wait_for(running, 20)
            with_bad_token = lexum.Worker(lexum.Client(cluster.endpoints, config=lexum.ClientConfig(token="wrong")))
            with_bad_token.handle("Slow.Op", lambda task: None)
            try:
                await asyncio.wait_for(with_bad_token.run(), 20)
                raise AssertionError("a worker with a wrong token ran")
            except lexum.UnauthenticatedError:
                pass

    asyncio.run(main())
