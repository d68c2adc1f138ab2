"""Fixtures: a real three-node cluster of `lexumd` processes on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from lexum.testing import ClusterOptions, LocalCluster, TlsFiles, generate_tls

ClusterFactory = Callable[..., LocalCluster]


@pytest.fixture
def start_cluster() -> Iterator[ClusterFactory]:
    """Starts clusters (`start_cluster(effect_timeout_ms=1500)`); every one
    is killed when the test ends, and its node logs are printed on failure."""
    clusters: list[LocalCluster] = []

    def start(
        effect_timeout_ms: int = 10_000,
        tokens: dict[str, tuple[str, str]] | None = None,
        tls: TlsFiles | None = None,
        client_auth: bool = True,
    ) -> LocalCluster:
        options = ClusterOptions(effect_timeout_ms=effect_timeout_ms, tls=tls, client_auth=client_auth)
        if tokens:
            options.tokens, options.peer_token = tokens, "peer-secret-0123456789"
        cluster = LocalCluster(options)
        clusters.append(cluster)
        cluster.start()
        return cluster

    yield start
    for cluster in clusters:
        cluster.stop()


@pytest.fixture
def cluster(start_cluster: ClusterFactory) -> LocalCluster:
    """A three-node cluster with the default settings."""
    return start_cluster()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A test CA and one identity it signed (127.0.0.1, server and client
    auth), made once per session with `openssl`."""
    return generate_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def other_tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """Another CA and identity, that the nodes of `tls_files` do not trust."""
    return generate_tls(tmp_path_factory.mktemp("other-tls"), ca_name="lexum-other-ca")
