"""A worker for `examples/fleet.lxm`, in Python: a simulated cloud of node
pools and firewall rules (the twin of `client/examples/fleet_worker.rs`).

    python examples/python/fleet_worker.py --endpoints 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103

Each handler remembers the idempotency keys it has executed and does not
apply one twice (a retried or re-dispatched task only re-reports), writes
what the simulated cloud now holds with `task.observe` (so the cluster
attributes the write to the cycle that issued the effect), then answers
with the value the program records. SIGTERM or Ctrl-C stops it gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import lexum


class Cloud:
    """The simulated cloud: pool sizes, firewall rules, executed keys."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.pools: dict[str, int] = {}
        self.firewall: list[str] = []
        self.executed: set[str] = set()

    async def set_node_count(self, task: lexum.Task) -> int:
        """`Cloud.SetNodeCount(pool, count) -> int`: resize, then report `Pool[pool].nodes`."""
        pool = task.str_arg("pool")
        count = task.int_arg("count")
        if not 0 <= count <= 1000:
            raise lexum.EffectError(f"the cloud refuses {count} nodes")
        await asyncio.sleep(self.delay)
        if task.idempotency_key not in self.executed:
            self.executed.add(task.idempotency_key)
            self.pools[pool] = count
        nodes = self.pools.get(pool, count)
        print(f"pool {pool}: {nodes} nodes (task {task.effect_id} attempt {task.attempt})", flush=True)
        # Pools are instances of the kind `Pool`, keyed by the pool's name.
        await task.observe({f"Pool[{pool}].nodes": nodes})
        return nodes

    async def apply_rule(self, task: lexum.Task) -> bool:
        """`Firewall.Apply(rule) -> bool`: add the rule, then report `Firewall.applied`."""
        rule = task.str_arg("rule")
        await asyncio.sleep(self.delay)
        if task.idempotency_key not in self.executed:
            self.executed.add(task.idempotency_key)
            if rule not in self.firewall:
                self.firewall.append(rule)
        applied: list[lexum.Value] = list(self.firewall)
        print(f"firewall: applied {rule!r} ({len(applied)} rules)", flush=True)
        await task.observe({"Firewall.applied": applied})
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A Python worker for examples/fleet.lxm (a simulated cloud)")
    parser.add_argument(
        "--endpoints",
        default=os.environ.get("LEXUM_ENDPOINTS", ",".join(lexum.DEFAULT_ENDPOINTS)),
        help="comma-separated node addresses (or LEXUM_ENDPOINTS)",
    )
    parser.add_argument("--token", default=os.environ.get("LEXUM_TOKEN") or None, help="bearer token (or LEXUM_TOKEN)")
    parser.add_argument("--delay-ms", type=int, default=200, help="time each cloud call takes")
    parser.add_argument("--concurrency", type=int, default=4, help="tasks run at once")
    args = parser.parse_args(argv)

    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    client = lexum.Client(endpoints, config=lexum.ClientConfig(token=args.token))
    worker = lexum.Worker(client, worker_id=f"py-fleet-worker-{os.getpid()}", concurrency=args.concurrency)
    cloud = Cloud(args.delay_ms / 1000)
    worker.handle("Cloud.SetNodeCount", cloud.set_node_count)
    worker.handle("Firewall.Apply", cloud.apply_rule)

    print("fleet worker serving Cloud.SetNodeCount and Firewall.Apply; Ctrl-C to stop", flush=True)
    try:
        stats = worker.run_forever()
    except lexum.LexumError as e:
        print(f"fleet_worker: {e}", file=sys.stderr)
        return 1 if e.user_error else 2
    print(f"stopped after {stats.tasks} tasks ({stats.succeeded} ok, {stats.failed} failed)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
