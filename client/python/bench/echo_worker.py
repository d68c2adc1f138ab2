"""The Python echo worker of the throughput benchmark: `Bench.Echo(value)`
answers `value` at once.

    python bench/echo_worker.py --endpoints A,B,C --concurrency 16 [--sync]
"""

from __future__ import annotations

import argparse
import sys

import lexum


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sync", action="store_true", help="a plain `def` handler (run in a thread)")
    args = parser.parse_args()
    client = lexum.Client(args.endpoints)
    worker = lexum.Worker(client, worker_id="py-echo", concurrency=args.concurrency)
    if args.sync:

        @worker.effect("Bench.Echo")
        def echo_sync(task: lexum.Task) -> int:
            return task.int_arg("value")

    else:

        @worker.effect("Bench.Echo")
        async def echo(task: lexum.Task) -> int:
            return task.int_arg("value")

    stats = worker.run_forever()
    print(f"echo worker: {stats.tasks} tasks, {stats.failed} failed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
