"""Fixtures: a real three-node cluster of `lexumd` processes on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from lexum.testing import ClusterOptions, LocalCluster

ClusterFactory = Callable[..., LocalCluster]


@pytest.fixture
def start_cluster() -> Iterator[ClusterFactory]:
    """Starts clusters (`start_cluster(effect_timeout_ms=1500)`); every one
    is killed when the test ends, and its node logs are printed on failure."""
    clusters: list[LocalCluster] = []

    def start(effect_timeout_ms: int = 10_000, tokens: dict[str, tuple[str, str]] | None = None) -> LocalCluster:
        options = ClusterOptions(effect_timeout_ms=effect_timeout_ms)
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
