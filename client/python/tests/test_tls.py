"""The SDK against real three-node clusters that serve TLS (and talk to each
other over it) with a test CA made by `openssl` (the `tls_files` fixture),
as `token_and_mutual_tls_guard_every_call` in `client/tests/cli_cluster.rs`
does for `lexumctl`. Every wait is bounded."""

from __future__ import annotations

import asyncio
import time

import pytest

import lexum
from lexum.testing import LocalCluster, TlsFiles

from .conftest import ClusterFactory
from .test_cluster import JOB, all_satisfied, wait_until

ADMIN = "ops-secret-0123456789"
WORKER = "worker-secret-0123456789"
TOKENS = {"ops": ("admin", ADMIN), "fleet": ("worker", WORKER)}


def mutual_tls_cluster(start_cluster: ClusterFactory, tls_files: TlsFiles) -> LocalCluster:
    """Nodes that demand a token and a client certificate signed by the CA."""
    return start_cluster(tokens=TOKENS, tls=tls_files)


def client(cluster: LocalCluster, token: str = ADMIN) -> lexum.Client:
    """A client with the cluster's CA, client identity and `token`."""
    return lexum.Client(cluster.endpoints, config=lexum.ClientConfig(token=token, tls=cluster.tls_options()))


def test_a_client_with_the_ca_a_certificate_and_a_token_sets_gets_lists_goals_and_watches(
    start_cluster: ClusterFactory, tls_files: TlsFiles
) -> None:
    cluster = mutual_tls_cluster(start_cluster, tls_files)
    tls = cluster.tls_options()
    assert tls is not None and tls.cert_pem is not None and tls.key_pem is not None

    async def main() -> None:
        async with client(cluster) as c:
            submitted = await c.submit_source("job.lxm", JOB)
            events: list[lexum.Event] = []

            async def follow() -> None:
                async for event in c.watch(from_index=submitted.index):
                    events.append(event)

            watching = asyncio.ensure_future(follow())
            try:
                index = await c.set("Job", "want", 3)
                state = await c.get("Job")
                assert state["want"] == 3 and state.index >= index
                goals = await c.goals("Job")
                assert [(g.domain, g.goal) for g in goals] == [("Job", "Done")]
                assert goals[0].status != "SATISFIED", goals

                async def watched_the_write() -> bool:
                    return any(e.index == index and e.kind == "mutation" for e in events)

                await wait_until("the watch over TLS saw the write", watched_the_write, 20)

                # The leader reaches every member over the peers' mutual TLS.
                async def members_agree() -> bool:
                    status = await c.status()
                    hashes = {m.state_hash for m in status.members}
                    return len(status.members) == 3 and all(m.reachable for m in status.members) and len(hashes) == 1

                await wait_until("every member reachable with one state hash", members_agree, 20)
            finally:
                watching.cancel()
                await asyncio.gather(watching, return_exceptions=True)

        # A host the certificate does not name, with the name it does.
        by_name = [e.replace("127.0.0.1", "localhost") for e in cluster.endpoints]
        override = lexum.TlsOptions(ca_pem=tls.ca_pem, cert_pem=tls.cert_pem, key_pem=tls.key_pem, domain="127.0.0.1")
        async with lexum.Client(by_name, config=lexum.ClientConfig(token=ADMIN, tls=override)) as c:
            assert (await c.get("Job"))["want"] == 3
        # An https:// endpoint asks for TLS too.
        https = [f"https://{e}" for e in cluster.endpoints]
        async with lexum.Client(https, config=lexum.ClientConfig(token=ADMIN, tls=tls)) as c:
            assert (await c.get("Job"))["want"] == 3

    asyncio.run(main())


def test_a_worker_attaches_over_mutual_tls_and_repairs_a_goal(
    start_cluster: ClusterFactory, tls_files: TlsFiles
) -> None:
    cluster = mutual_tls_cluster(start_cluster, tls_files)

    async def main() -> None:
        async with client(cluster) as c:
            await c.submit_source("job.lxm", JOB)
            worker_client = client(cluster, token=WORKER)
            worker = lexum.Worker(worker_client, worker_id="py-tls", concurrency=2)
            seen: list[int] = []

            @worker.effect("Slow.Op")
            async def op(task: lexum.Task) -> int:
                seen.append(task.int_arg("n"))
                return task.int_arg("n")

            running = asyncio.ensure_future(worker.run())
            try:
                await c.set("Job", "want", 4)
                await wait_until("Job.Done repaired by a worker over TLS", lambda: all_satisfied(c, 1), 30)
                assert (await c.get("Job"))["done"] == 4
                assert seen and seen[-1] == 4
                assert worker.stats.sessions >= 1
            finally:
                worker.stop()
                await asyncio.wait_for(running, 20)
                await worker_client.close()

    asyncio.run(main())


def test_a_client_without_the_ca_or_with_a_wrong_one_fails_at_once_with_a_tls_error(
    start_cluster: ClusterFactory, tls_files: TlsFiles, other_tls_files: TlsFiles
) -> None:
    cluster = mutual_tls_cluster(start_cluster, tls_files)
    ca, cert, key = (tls_files.ca.read_bytes(), tls_files.cert.read_bytes(), tls_files.key.read_bytes())
    other_ca, other_cert, other_key = (
        other_tls_files.ca.read_bytes(),
        other_tls_files.cert.read_bytes(),
        other_tls_files.key.read_bytes(),
    )
    https = [f"https://{e}" for e in cluster.endpoints]
    cases: list[tuple[str, list[str], lexum.TlsOptions | None, str]] = [
        # https:// without TlsOptions: the system's CAs, which do not sign the nodes'.
        ("no CA", https, None, "not signed by TlsOptions.ca_pem"),
        ("a wrong CA", cluster.endpoints, lexum.TlsOptions(other_ca, cert_pem=cert, key_pem=key), "not signed"),
        ("no client certificate", cluster.endpoints, lexum.TlsOptions(ca), "client certificate"),
        (
            "a client certificate of another CA",
            cluster.endpoints,
            lexum.TlsOptions(ca, cert_pem=other_cert, key_pem=other_key),
            "client certificate",
        ),
        ("a wrong name", cluster.endpoints, lexum.TlsOptions(ca, "lexum.invalid", cert, key), "TlsOptions.domain"),
    ]

    async def main() -> None:
        for label, endpoints, tls, says in cases:
            # The default deadline is 15 s: the error must come long before.
            config = lexum.ClientConfig(token=ADMIN, tls=tls)
            started = time.monotonic()
            async with lexum.Client(endpoints, config=config) as bad:
                with pytest.raises(lexum.TlsError) as raised:
                    await asyncio.wait_for(bad.get("Job"), 10)
            assert time.monotonic() - started < 5, f"{label}: took {time.monotonic() - started:.1f}s"
            assert says in raised.value.message, f"{label}: {raised.value.message}"
            assert isinstance(raised.value, lexum.ConfigError) and raised.value.user_error, label

        wrong_ca = lexum.ClientConfig(token=ADMIN, tls=lexum.TlsOptions(other_ca, cert_pem=cert, key_pem=key))
        async with lexum.Client(cluster.endpoints, config=wrong_ca) as bad:
            with pytest.raises(lexum.TlsError):
                await asyncio.wait_for(anext(aiter(bad.watch())), 10)
            worker = lexum.Worker(bad, worker_id="py-wrong-ca")
            worker.handle("Slow.Op", lambda task: None)
            started = time.monotonic()
            with pytest.raises(lexum.TlsError):
                # Its reconnect window is 60 s: the error must come long before.
                await asyncio.wait_for(worker.run(), 10)
            assert time.monotonic() - started < 5

        # A plain-text client gets a closed socket, which a restarting node
        # gives too: it stays unavailable, within its deadline.
        async with lexum.Client(cluster.endpoints, config=lexum.ClientConfig(token=ADMIN, deadline=1.5)) as plain:
            started = time.monotonic()
            with pytest.raises(lexum.UnavailableError):
                await asyncio.wait_for(plain.get("Job"), 10)
            assert time.monotonic() - started < 5

        # And the right settings still work on the same cluster.
        async with client(cluster) as good:
            await good.node_info()

    asyncio.run(main())


def test_without_client_auth_the_ca_alone_is_enough(start_cluster: ClusterFactory, tls_files: TlsFiles) -> None:
    cluster = start_cluster(tokens=TOKENS, tls=tls_files, client_auth=False)
    tls = cluster.tls_options()
    assert tls is not None and tls.cert_pem is None

    async def main() -> None:
        async with client(cluster) as c:
            await c.submit_source("job.lxm", JOB)
            index = await c.set("Job", "want", 2)
            assert (await c.get("Job")).index >= index

    asyncio.run(main())
