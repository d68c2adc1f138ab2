"""Worker throughput: effects a worker completes per second, and the CPU
time its process spends per task, for the Python SDK's worker and the Rust
SDK's worker, measured the same way.

    python bench/worker_throughput.py [--instances 256] [--rounds 5] [--concurrency 16]

A local three-node cluster (release binaries when built, else debug)
installs a kind `Echo[name]` whose goal `have == want` is repaired by the
effect `Bench.Echo(value: want) -> got`. Each round writes a new `want` to
every instance in one mutation and times until every goal is SATISFIED
again: each instance costs one effect on the worker and four commits in
the cluster. The worker is a separate process: `bench/echo_worker.py`
(Python, async and sync handlers) or `lexumctl worker --effect Bench.Echo
--delay 0ms` (Rust SDK, which also prints a line per task). Prints numbers
and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import lexum
from lexum.testing import ClusterOptions, LocalCluster

HERE = Path(__file__).resolve().parent

PROGRAM = """
effect Bench.Echo(value: int) -> int

domain Echo[name] {
  state {
    want: int = 0
    have: int = 0
  }
  goal Caught { have == want }
  transition Catch for Caught retry 5 backoff 100ms..1s {
    slice call { emit Bench.Echo(value: want) -> got }
    slice record { have = got }
  }
}
"""


def bin_dir() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "lexum" / "target")
    release = target / "release"
    return release if (release / "lexumd").exists() and (release / "lexumctl").exists() else target / "debug"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def satisfied(client: lexum.Client) -> int:
    return (await client.goals_page("Echo", "SATISFIED", limit=1)).total


async def measure(cluster: LocalCluster, worker: subprocess.Popen[bytes], args: argparse.Namespace, base: int) -> None:
    client = lexum.Client(cluster.endpoints, config=lexum.ClientConfig(deadline=60))
    n = args.instances
    # Warm-up round: the worker attaches and every instance runs once.
    rates: list[float] = []
    cpu_start = 0.0
    for round_no in range(args.rounds + 1):
        if round_no == 1:
            cpu_start = cpu_seconds(worker.pid)
        value = base + round_no + 1
        started = time.monotonic()
        await client.mutate({f"Echo[i{i}].want": value for i in range(n)})
        deadline = started + args.timeout
        while await satisfied(client) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"round {round_no}: not converged within {args.timeout}s")
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        if round_no > 0:
            rates.append(n / elapsed)
    cpu = cpu_seconds(worker.pid) - cpu_start
    tasks = n * args.rounds
    print(
        f"  {statistics.median(rates):8.0f} effects/s median ({min(rates):.0f}-{max(rates):.0f} over {args.rounds} "
        f"rounds of {n}); worker CPU {cpu / tasks * 1e6:.0f} us/task"
    )
    await client.close()


def run_worker(cluster: LocalCluster, command: list[str], args: argparse.Namespace, base: int) -> None:
    worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        asyncio.run(measure(cluster, worker, args, base))
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=256, help="effects per round (1..=2000)")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per worker (1..=50)")
    parser.add_argument("--concurrency", type=int, default=16, help="tasks each worker runs at once")
    parser.add_argument("--timeout", type=float, default=120, help="seconds a round may take")
    args = parser.parse_args()
    if not 1 <= args.instances <= 2000 or not 1 <= args.rounds <= 50 or not 1 <= args.concurrency <= 256:
        raise SystemExit("--instances 1..=2000, --rounds 1..=50, --concurrency 1..=256")
    bins = bin_dir()
    os.environ.setdefault("LEXUMD_BIN", str(bins / "lexumd"))
    print(f"binaries: {bins}; {args.instances} effects a round, concurrency {args.concurrency}")
    with LocalCluster(ClusterOptions()) as cluster:

        async def install() -> None:
            async with lexum.Client(cluster.endpoints) as client:
                await client.submit_source("echo.lxm", PROGRAM)
                await client.create_instances("Echo", {f"i{i}": {} for i in range(args.instances)})

        asyncio.run(install())
        endpoints = ",".join(cluster.endpoints)
        conc = str(args.concurrency)
        workers = [
            (
                "Rust SDK (lexumctl worker)",
                [
                    str(bins / "lexumctl"),
                    "--endpoints",
                    endpoints,
                    "worker",
                    "--effect",
                    "Bench.Echo",
                    "--delay",
                    "0ms",
                    "--concurrency",
                    conc,
                ],
            ),
            (
                "Python SDK, async def handler",
                [sys.executable, str(HERE / "echo_worker.py"), "--endpoints", endpoints, "--concurrency", conc],
            ),
            (
                "Python SDK, def handler (thread)",
                [
                    sys.executable,
                    str(HERE / "echo_worker.py"),
                    "--endpoints",
                    endpoints,
                    "--concurrency",
                    conc,
                    "--sync",
                ],
            ),
        ]
        for index, (name, command) in enumerate(workers):
            print(name)
            run_worker(cluster, command, args, base=index * 1000)


if __name__ == "__main__":
    main()
