"""The Lexum Python SDK: a client for a Lexum cluster and workers that
execute its effects.

```python
import lexum

client = lexum.Client(["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"])
worker = lexum.Worker(client, concurrency=8)

@worker.effect("Cloud.SetNodeCount")
async def set_node_count(task: lexum.Task) -> int:
    count = task.int_arg("count")
    await task.observe({f"Pool[{task.str_arg('pool')}].nodes": count})
    return count

worker.run_forever()
```

`docs/python-worker.md` in the repository is the guide.
"""

from lexum.client import (
    DEFAULT_ENDPOINTS,
    Client,
    ClientConfig,
    ClusterStatus,
    DomainState,
    Event,
    FieldWrite,
    GoalPage,
    Member,
    Membership,
    MemberStatus,
    NodeInfo,
    RetryPolicy,
    Submitted,
    TlsOptions,
)
from lexum.errors import (
    ConfigError,
    LexumError,
    NotFoundError,
    RejectedError,
    RpcError,
    TlsError,
    UnauthenticatedError,
    UnavailableError,
)
from lexum.goal import Goal
from lexum.history import Cycle, FieldDelta, GoalAfter
from lexum.provenance import (
    ClientCause,
    CycleCause,
    CycleRef,
    Explanation,
    HandlerCause,
    ObservedEffect,
    Waiting,
    WriteRecord,
)
from lexum.values import Value
from lexum.worker import EffectError, Task, Worker, WorkerStats

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ENDPOINTS",
    "Client",
    "ClientCause",
    "ClientConfig",
    "ClusterStatus",
    "ConfigError",
    "Cycle",
    "CycleCause",
    "CycleRef",
    "DomainState",
    "EffectError",
    "Event",
    "Explanation",
    "FieldDelta",
    "FieldWrite",
    "Goal",
    "GoalAfter",
    "GoalPage",
    "HandlerCause",
    "LexumError",
    "Member",
    "MemberStatus",
    "Membership",
    "NodeInfo",
    "NotFoundError",
    "ObservedEffect",
    "RejectedError",
    "RetryPolicy",
    "RpcError",
    "Submitted",
    "Task",
    "TlsError",
    "TlsOptions",
    "UnauthenticatedError",
    "UnavailableError",
    "Value",
    "Waiting",
    "Worker",
    "WorkerStats",
    "WriteRecord",
]
