"""`Client`: typed, async calls to a Lexum cluster with leader discovery,
follow-the-redirect, retries with backoff, deadlines, TLS and a token.

The semantics are the Rust SDK's (`client/src/client.rs`): every call is
bounded by at most `RetryPolicy.max_attempts` attempts and at most
`ClientConfig.deadline` seconds in total, each attempt at most
`ClientConfig.request_timeout`. Writes and linearizable reads go to the
leader, learned from the `lexum-leader` metadata of a follower's
`FAILED_PRECONDITION`; `status`, `watch` and `node_info` go to any node.

Retrying a write after a lost response is safe for observations (`mutate`
sets absolute values), `release` and `retry`; a retried `submit_source` may
install the same program as two versions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import grpc
import grpc.aio

from lexum import history, provenance
from lexum.errors import (
    LEADER_METADATA_KEY,
    ConfigError,
    TlsFailures,
    UnavailableError,
    describe,
    from_rpc_error,
    is_transient,
    retry_after,
    status_metadata,
    tls_failure,
)
from lexum.goal import Goal, goal_from_wire
from lexum.v1 import client_pb2, client_pb2_grpc, types_pb2
from lexum.values import Value, named_from_wire, to_wire

#: The three nodes of the local cluster (`deploy/local-cluster.sh`).
DEFAULT_ENDPOINTS = ("127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103")
#: Largest message a node accepts, in bytes.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

R = TypeVar("R")
Metadata = tuple[tuple[str, str], ...]
if TYPE_CHECKING:
    Stub = client_pb2_grpc.LexumAsyncStub


@dataclass(frozen=True)
class TlsOptions:
    """TLS settings (PEM bytes)."""

    #: CA certificate that signs the nodes' certificates.
    ca_pem: bytes
    #: Name to verify in the nodes' certificates (default: the endpoint host).
    domain: str | None = None
    #: Client certificate and key, for mutual TLS.
    cert_pem: bytes | None = None
    key_pem: bytes | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """How failed attempts are retried (seconds)."""

    #: Pause after the first transient failure.
    initial_backoff: float = 0.05
    #: Largest pause (the pause doubles up to this).
    max_backoff: float = 1.0
    #: Attempts per call, redirects included.
    max_attempts: int = 12


@dataclass
class ClientConfig:
    """Everything a `Client` (or `Worker`) needs to reach a cluster."""

    #: Node addresses, `host:port` or `http(s)://host:port`.
    endpoints: Sequence[str] = DEFAULT_ENDPOINTS
    #: Bearer token sent as `authorization: Bearer <token>`.
    token: str | None = None
    #: TLS; None for plain HTTP/2.
    tls: TlsOptions | None = None
    #: Seconds allowed for one attempt.
    request_timeout: float = 5.0
    #: Seconds allowed for a whole call, retries included; also how long a
    #: watch keeps trying to reconnect before giving up.
    deadline: float = 15.0
    #: Retry behaviour.
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: A name added to the authenticated identity in the cause of every
    #: write (`lexumctl --as hpa-bridge`).
    as_name: str | None = None


@dataclass(frozen=True)
class Submitted:
    """Result of installing a program."""

    index: int
    version: int
    program_hash: str
    warnings: list[str]


@dataclass(frozen=True)
class FieldWrite:
    """One field write of a mutation: `domain.field = value`."""

    domain: str
    field: str
    value: Value


@dataclass(frozen=True)
class DomainState:
    """A domain's state as read from the cluster."""

    #: Applied index the read reflects.
    index: int
    #: Fields in declaration order.
    fields: dict[str, Value]

    def __getitem__(self, name: str) -> Value:
        return self.fields[name]


@dataclass(frozen=True)
class GoalPage:
    """One page of goals."""

    goals: list[Goal]
    #: How many goals match the filter in all.
    total: int


@dataclass(frozen=True)
class Event:
    """An engine event from `Client.watch`."""

    index: int
    #: As the engine names it (`mutation`, `goal_status`, `trap`, ...).
    kind: str
    domain: str | None
    goal: str | None
    code: str | None
    #: On `goal_status`: the goal's new status (`SATISFIED`, `TRAPPED`, ...).
    status: str | None
    #: On `cycle`: how it ended (`converged`, `tug_of_war`, `trapped`, ...).
    verdict: str | None
    #: On `effect_*` events: the effect's name (`Cloud.SetNodeCount`).
    effect: str | None
    #: On `effect_*` events: the key its worker receives (`Task.idempotency_key`)
    #: and an observer names in `caused_by`.
    idempotency_key: str | None
    #: On `effect_*` events: the attempt (0 while none was dispatched).
    attempt: int
    #: On `mutation`: who wrote.
    principal: str | None
    #: On `mutation`: the fields written (`Pool[web].want`).
    fields: tuple[str, ...]
    #: For people; match on the fields above, not on this text.
    message: str


@dataclass(frozen=True)
class MemberStatus:
    """One member's view, from `Client.status`."""

    id: int
    address: str
    #: `leader`, `follower`, `learner`, `candidate` or `unreachable`.
    role: str
    applied_index: int
    state_hash: str
    reachable: bool


@dataclass(frozen=True)
class ClusterStatus:
    """Cluster status."""

    #: Leader's id, 0 when unknown.
    leader: int
    term: int
    commit_index: int
    members: list[MemberStatus]
    program_hash: str
    program_version: int


@dataclass(frozen=True)
class Member:
    """A cluster member."""

    id: int
    address: str
    voter: bool


@dataclass(frozen=True)
class Membership:
    """Membership and leader (0 when unknown)."""

    members: list[Member]
    leader: int


@dataclass(frozen=True)
class NodeInfo:
    """One node's own view."""

    id: int
    role: str
    term: int
    leader: int
    commit_index: int
    applied_index: int
    state_hash: str


def _non_empty(text: str) -> str | None:
    return text or None


def _target(address: str) -> tuple[str, bool | None]:
    """gRPC target of an endpoint and whether its scheme asks for TLS."""
    for scheme, tls in (("http://", False), ("https://", True)):
        if address.startswith(scheme):
            return address[len(scheme) :].rstrip("/"), tls
    if "://" in address:
        raise ConfigError(f"bad endpoint `{address}`: only http:// and https:// are understood")
    return address, None


def _validate_endpoint(address: str) -> None:
    host_port, _ = _target(address)
    host, sep, port = host_port.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c.isspace() for c in host):
        raise ConfigError(f"bad endpoint `{address}`: expected host:port")


def _writes_from(writes: Mapping[str, Value] | Iterable[FieldWrite]) -> list[FieldWrite]:
    from lexum.values import split_target

    if isinstance(writes, Mapping):
        out = []
        for target, value in writes.items():
            domain, name = split_target(target)
            out.append(FieldWrite(domain, name, value))
        return out
    return list(writes)


class Client:
    """A connection pool to one cluster; async, for one event loop at a time.

    ```python
    async with lexum.Client(["127.0.0.1:7101", "127.0.0.1:7102"]) as client:
        await client.set("Pool[web]", "want", 7)
        for goal in await client.goals(status="VIOLATED"):
            print(goal.name, goal.status)
    ```
    """

    def __init__(self, endpoints: Sequence[str] | None = None, *, config: ClientConfig | None = None) -> None:
        if config is None:
            config = ClientConfig()
        if endpoints is not None:
            if isinstance(endpoints, str):
                endpoints = [e.strip() for e in endpoints.split(",") if e.strip()]
            config = ClientConfig(
                endpoints=list(endpoints),
                token=config.token,
                tls=config.tls,
                request_timeout=config.request_timeout,
                deadline=config.deadline,
                retry=config.retry,
                as_name=config.as_name,
            )
        if not config.endpoints:
            raise ConfigError("no endpoints given")
        for address in config.endpoints:
            _validate_endpoint(address)
        if config.token is not None and any(c in config.token for c in "\r\n\0"):
            raise ConfigError("the token has characters not allowed in a header")
        self._config = config
        self._metadata: Metadata = (("authorization", f"Bearer {config.token}"),) if config.token else ()
        self._credentials: grpc.ChannelCredentials | None = None
        if config.tls is not None:
            self._credentials = grpc.ssl_channel_credentials(
                root_certificates=config.tls.ca_pem,
                private_key=config.tls.key_pem,
                certificate_chain=config.tls.cert_pem,
            )
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._leader: str | None = None

    @property
    def config(self) -> ClientConfig:
        """The configuration this client was built with."""
        return self._config

    @property
    def leader_hint(self) -> str | None:
        """The address currently believed to be the leader's."""
        return self._leader

    @property
    def metadata(self) -> Metadata:
        """Request metadata every call carries (the token)."""
        return self._metadata

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes every connection (the client can be used again afterwards)."""
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close()

    def only(self, address: str) -> Client:
        """A client bound to one node only (for per-node calls)."""
        c = self._config
        return Client(
            [address],
            config=ClientConfig(
                token=c.token,
                tls=c.tls,
                request_timeout=c.request_timeout,
                deadline=c.deadline,
                retry=c.retry,
                as_name=c.as_name,
            ),
        )

    # -- connections and the leader hint --------------------------------

    def channel(self, address: str) -> grpc.aio.Channel:
        """A (lazily connecting) channel to one node, on the running loop."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # grpc.aio channels belong to the loop they were made on.
            self._channels = {}
            self._loop = loop
        channel = self._channels.get(address)
        if channel is not None:
            return channel
        target, scheme_tls = _target(address)
        options: list[tuple[str, str | int]] = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # A restarted node is tried again soon (the default backoff grows
            # to two minutes).
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            ("grpc.enable_retries", 0),
        ]
        tls = self._credentials is not None if scheme_tls is None else scheme_tls
        if tls:
            if self._config.tls is not None and self._config.tls.domain:
                options.append(("grpc.ssl_target_name_override", self._config.tls.domain))
            credentials = self._credentials or grpc.ssl_channel_credentials()
            channel = grpc.aio.secure_channel(target, credentials, options=options)
        else:
            channel = grpc.aio.insecure_channel(target, options=options)
        self._channels[address] = channel
        return channel

    def pick(self, leader_first: bool, cursor: int) -> str:
        """The address to try at attempt `cursor`."""
        if leader_first and self._leader is not None:
            return self._leader
        endpoints = self._config.endpoints
        return endpoints[cursor % len(endpoints)]

    def follow_redirect(self, source: str, leader: str) -> bool:
        """Notes a leader redirect; returns whether there is somewhere new to go."""
        if not leader or leader == source:
            self.forget_leader(source)
            return False
        self._leader = leader
        return True

    def forget_leader(self, address: str) -> None:
        """Drops the leader hint if it is `address`."""
        if self._leader == address:
            self._leader = None

    async def _call(self, leader: bool, rpc: Callable[[Stub, float, Metadata], Awaitable[R]]) -> R:
        """Runs one RPC with redirects, retries and the deadline."""
        config = self._config
        started = time.monotonic()
        backoff = config.retry.initial_backoff
        cursor = 0
        last_error = "no attempt made"
        tls_failures = TlsFailures(config.endpoints)
        for _ in range(max(1, config.retry.max_attempts)):
            remaining = config.deadline - (time.monotonic() - started)
            if remaining <= 0:
                break
            address = self.pick(leader, cursor)
            timeout = min(config.request_timeout, remaining)
            stub = client_pb2_grpc.LexumStub(self.channel(address))
            try:
                response = await rpc(stub, timeout, self._metadata)
            except grpc.aio.AioRpcError as error:
                last_error = f"{address}: {describe(error)}"
                if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    redirect = status_metadata(error, LEADER_METADATA_KEY) or ""
                    if self.follow_redirect(address, redirect):
                        continue
                if not is_transient(error):
                    raise from_rpc_error(error) from None
                # Every node refusing the handshake is a setting to fix.
                tls_error = tls_failures.note(address, tls_failure(error))
                if tls_error is not None:
                    raise tls_error from None
                wait = retry_after(error)
                if wait is not None:
                    # The node is up but over a limit: wait as it asks, then
                    # try it again (it refused the call before running it).
                    if wait > config.deadline - (time.monotonic() - started):
                        raise from_rpc_error(error) from None
                    await asyncio.sleep(wait)
                    continue
            else:
                if leader:
                    # Only the leader answers these: remember it.
                    self._leader = address
                return response
            self.forget_leader(address)
            cursor += 1
            pause = min(backoff, max(0.0, config.deadline - (time.monotonic() - started)))
            await asyncio.sleep(pause)
            backoff = min(backoff * 2, config.retry.max_backoff)
        elapsed = min(config.deadline, max(time.monotonic() - started, 0.001))
        raise UnavailableError(
            f"cluster unavailable: no node of {','.join(config.endpoints)} answered within "
            f"{elapsed:.1f}s; last error: {last_error}"
        )

    async def discover_leader(self) -> str | None:
        """Finds the leader by asking the nodes for the membership."""
        membership = await self.members()
        for member in membership.members:
            if member.id == membership.leader:
                self._leader = member.address
                return member.address
        return None

    # -- programs and writes ---------------------------------------------

    async def submit_source(self, file_name: str, source: str) -> Submitted:
        """Compiles (on the node) and installs a program from source."""
        request = client_pb2.SubmitProgramRequest(source=source, file_name=file_name)
        r = await self._call(True, lambda s, t, m: s.SubmitProgram(request, timeout=t, metadata=m))
        return Submitted(r.index, r.version, r.program_hash, list(r.warnings))

    async def mutate(
        self,
        writes: Mapping[str, Value] | Iterable[FieldWrite],
        *,
        as_name: str | None = None,
        caused_by: Sequence[str] = (),
    ) -> int:
        """Writes observations atomically; returns the log index of the entry
        that carried them. `writes` maps `Domain.field` (or `Kind[key].field`)
        to values, or is a list of `FieldWrite`s. `as_name` is added to this
        client's identity; `caused_by` names the effects (idempotency keys)
        whose outcome the writes observe."""
        wire = [
            client_pb2.FieldWrite(domain=w.domain, field=w.field, value=to_wire(w.value)) for w in _writes_from(writes)
        ]
        name = as_name if as_name is not None else (self._config.as_name or "")
        request = client_pb2.MutateRequest(writes=wire, as_name=name, caused_by=list(caused_by))
        r = await self._call(True, lambda s, t, m: s.Mutate(request, timeout=t, metadata=m))
        return r.index

    async def set(
        self, domain: str, field: str, value: Value, *, as_name: str | None = None, caused_by: Sequence[str] = ()
    ) -> int:
        """Writes one observation (`set("Pool[web]", "want", 7)`); returns the log index."""
        return await self.mutate([FieldWrite(domain, field, value)], as_name=as_name, caused_by=caused_by)

    async def create_instances(
        self, kind: str, instances: Mapping[str, Mapping[str, Value]], *, upsert: bool = False
    ) -> int:
        """Creates instances of a kind, each with initial values (all or none):
        `create_instances("Pool", {"web": {"want": 3}})`. With `upsert`,
        writes the values of those that exist instead. Returns the log index."""
        specs = [
            client_pb2.InstanceSpec(
                key=key, values=[types_pb2.NamedValue(name=n, value=to_wire(v)) for n, v in values.items()]
            )
            for key, values in instances.items()
        ]
        request = client_pb2.CreateInstancesRequest(
            kind=kind, instances=specs, upsert=upsert, as_name=self._config.as_name or ""
        )
        r = await self._call(True, lambda s, t, m: s.CreateInstances(request, timeout=t, metadata=m))
        return r.index

    async def delete_instances(self, kind: str, keys: Iterable[str]) -> int:
        """Deletes instances of a kind: their work is cancelled, their history kept."""
        request = client_pb2.DeleteInstancesRequest(kind=kind, keys=list(keys))
        r = await self._call(True, lambda s, t, m: s.DeleteInstances(request, timeout=t, metadata=m))
        return r.index

    async def release(self, domain: str, goal: str | None = None) -> int:
        """Clears a TRAPPED goal, or every trapped goal of `domain`."""
        request = client_pb2.ReleaseRequest(domain=domain, goal=goal or "")
        r = await self._call(True, lambda s, t, m: s.Release(request, timeout=t, metadata=m))
        return r.index

    async def retry(self, domain: str, goal: str) -> int:
        """Re-arms a FAILED goal."""
        request = client_pb2.RetryRequest(domain=domain, goal=goal)
        r = await self._call(True, lambda s, t, m: s.Retry(request, timeout=t, metadata=m))
        return r.index

    # -- reads -----------------------------------------------------------

    async def get(self, domain: str) -> DomainState:
        """Linearizable read of a domain's state."""
        request = client_pb2.ReadRequest(domain=domain)
        r = await self._call(True, lambda s, t, m: s.Read(request, timeout=t, metadata=m))
        return DomainState(r.index, named_from_wire(r.fields))

    async def goals_page(
        self, domain: str | None = None, status: str | None = None, *, limit: int = 0, offset: int = 0
    ) -> GoalPage:
        """One page of the goals a filter selects (linearizable): `domain` is
        a singleton, a kind (every instance) or an instance (`Pool[web]`);
        `status` one status (`VIOLATED`; an unknown one raises `RejectedError`);
        at most `limit` goals (0: all) after `offset`."""
        request = client_pb2.ListGoalsRequest(domain=domain or "", status=status or "", limit=limit, offset=offset)
        r = await self._call(True, lambda s, t, m: s.ListGoals(request, timeout=t, metadata=m))
        return GoalPage([goal_from_wire(g) for g in r.goals], r.total)

    async def goals(self, domain: str | None = None, status: str | None = None) -> list[Goal]:
        """Every goal the filter selects, with its status (linearizable)."""
        return (await self.goals_page(domain, status)).goals

    async def iter_goals(
        self, domain: str | None = None, status: str | None = None, *, page_size: int = 500
    ) -> AsyncIterator[Goal]:
        """The goals a filter selects, fetched a page at a time."""
        offset = 0
        while True:
            page = await self.goals_page(domain, status, limit=page_size, offset=offset)
            for goal in page.goals:
                yield goal
            offset += len(page.goals)
            if not page.goals or offset >= page.total:
                return

    async def history(self, limit: int = 0) -> list[history.Cycle]:
        """The last `limit` judged cycles (0: the node's default), oldest first."""
        request = client_pb2.HistoryRequest(limit=limit)
        r = await self._call(True, lambda s, t, m: s.History(request, timeout=t, metadata=m))
        return [history.cycle_from_wire(c) for c in r.cycles]

    async def why(self, domain: str, field: str, last: int = 0) -> list[provenance.WriteRecord]:
        """The latest `last` writes of `domain.field` with their causes, oldest
        first (0: every write the cluster keeps)."""
        request = client_pb2.WhyRequest(domain=domain, field=field, last=last)
        r = await self._call(True, lambda s, t, m: s.Why(request, timeout=t, metadata=m))
        return [provenance.write_from_wire(w) for w in r.writes]

    async def explain(self, domain: str, goal: str) -> provenance.Explanation:
        """Why `domain.goal` is in its status and what its repair waits for."""
        request = client_pb2.ExplainRequest(domain=domain, goal=goal)
        r = await self._call(True, lambda s, t, m: s.Explain(request, timeout=t, metadata=m))
        return provenance.explanation_from_wire(r)

    async def status(self) -> ClusterStatus:
        """Cluster status as seen by the first node that answers."""
        request = client_pb2.StatusRequest()
        r = await self._call(False, lambda s, t, m: s.Status(request, timeout=t, metadata=m))
        members = [MemberStatus(m.id, m.address, m.role, m.applied_index, m.state_hash, m.reachable) for m in r.members]
        return ClusterStatus(r.leader, r.term, r.commit_index, members, r.program_hash, r.program_version)

    async def node_info(self) -> NodeInfo:
        """The first answering node's own view."""
        request = client_pb2.NodeInfoRequest()
        r = await self._call(False, lambda s, t, m: s.NodeInfo(request, timeout=t, metadata=m))
        return NodeInfo(r.id, r.role, r.term, r.leader, r.commit_index, r.applied_index, r.state_hash)

    async def members(self) -> Membership:
        """Current membership."""
        request = client_pb2.MembersRequest()
        r = await self._call(False, lambda s, t, m: s.Members(request, timeout=t, metadata=m))
        return Membership([Member(m.id, m.address, m.voter) for m in r.members], r.leader)

    # -- events ------------------------------------------------------------

    async def watch(self, from_index: int = 0) -> AsyncIterator[Event]:
        """Engine events from log index `from_index` on (0: only new ones).

        The iterator reconnects (to any node) when its node goes away and
        resumes after the last event it delivered, without duplicates. It
        raises `UnavailableError` after `ClientConfig.deadline` seconds of
        failed reconnects, or the classified error of a non-transient
        failure (bad token), or `TlsError` when no node's TLS handshake
        succeeds. Closing it (`aclose`, or leaving `async for`)
        ends the stream.
        """
        config = self._config
        resume = from_index
        skip_at_resume = 0
        last_delivered: tuple[int, int] | None = None
        failing_since: float | None = None
        backoff = config.retry.initial_backoff
        cursor = 0
        last_error = ""
        tls_failures = TlsFailures(config.endpoints)
        while True:
            if failing_since is not None and time.monotonic() - failing_since > config.deadline:
                raise UnavailableError(
                    f"cluster unavailable: watch could not reconnect within {config.deadline}s; "
                    f"last error: {last_error}"
                )
            address = self.pick(False, cursor)
            cursor += 1
            stub = client_pb2_grpc.LexumStub(self.channel(address))
            delivered = False
            call: grpc.aio.UnaryStreamCall[client_pb2.WatchRequest, client_pb2.Event] | None = None
            try:
                if resume == 0:
                    info = await stub.NodeInfo(
                        client_pb2.NodeInfoRequest(), timeout=config.request_timeout, metadata=self._metadata
                    )
                    resume = info.applied_index + 1
                    skip_at_resume = 0
                call = stub.Watch(client_pb2.WatchRequest(from_index=resume), metadata=self._metadata)
                await asyncio.wait_for(call.initial_metadata(), config.request_timeout)
                skip = skip_at_resume
                async for wire in call:
                    if wire.index < resume:
                        continue
                    if wire.index == resume and skip > 0:
                        skip -= 1
                        continue
                    count = last_delivered[1] + 1 if last_delivered and last_delivered[0] == wire.index else 1
                    last_delivered = (wire.index, count)
                    resume, skip_at_resume, skip = wire.index, count, 0
                    delivered = True
                    yield Event(
                        wire.index,
                        wire.kind,
                        _non_empty(wire.domain),
                        _non_empty(wire.goal),
                        _non_empty(wire.code),
                        _non_empty(wire.status),
                        _non_empty(wire.verdict),
                        _non_empty(wire.effect),
                        _non_empty(wire.idempotency_key),
                        wire.attempt,
                        _non_empty(wire.principal),
                        tuple(wire.fields),
                        wire.message,
                    )
                last_error = f"{address}: stream ended"
            except grpc.aio.AioRpcError as error:
                if not is_transient(error) and not delivered:
                    raise from_rpc_error(error) from None
                tls_error = tls_failures.note(address, None if delivered else tls_failure(error))
                if tls_error is not None:
                    raise tls_error from None
                last_error = f"{address}: {describe(error)}"
                hinted = retry_after(error)
                if hinted is not None and not delivered:
                    if failing_since is None:
                        failing_since = time.monotonic()
                    await asyncio.sleep(hinted)
                    continue
            except asyncio.TimeoutError:
                last_error = f"{address}: watch did not start"
            finally:
                if call is not None:
                    call.cancel()
            if delivered:
                tls_failures.clear()
                failing_since = None
                backoff = config.retry.initial_backoff
            if failing_since is None:
                failing_since = time.monotonic()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, config.retry.max_backoff)
