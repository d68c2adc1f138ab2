"""A local cluster of real `lexumd` processes on loopback, for tests and
benchmarks of workers (the Python twin of `jepsen/src/cluster.rs`).

```python
with LocalCluster(ClusterOptions(effect_timeout_ms=2000)) as cluster:
    client = lexum.Client(cluster.endpoints)
    ...
    cluster.kill(cluster.leader())
```

The binary is `$LEXUMD_BIN`, else `$CARGO_TARGET_DIR/debug/lexumd` (the
target directory defaults to `$HOME/.cache/lexum/target`). Ports come from
below the kernel's ephemeral range, like `jepsen/src/ports.rs`, so no
outgoing connection takes one between choosing it and the node binding it.
Every wait is bounded; leaving the `with` block kills every process.

With `ClusterOptions(tls=generate_tls(directory))` the nodes serve (and
talk to each other over) TLS with a test CA made by `openssl`, and demand a
client certificate signed by it unless `client_auth=False`;
`LocalCluster.tls_options()` is what a `Client` needs to reach them.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import grpc

from lexum.client import TlsOptions
from lexum.v1 import client_pb2, client_pb2_grpc

#: Lowest port handed out: above well-known ports and the local cluster's 7101-7103.
FIRST_PORT = 20_000
_taken = itertools.count()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def loopback_port() -> int:
    """A loopback port outside the ephemeral range that was free just now and
    that this process has not handed out before."""
    end = min(max(_ephemeral_start(), FIRST_PORT + 1_000), 65_536)
    span = end - FIRST_PORT
    # Offset differently from the Rust harness so the two rarely meet.
    offset = (os.getpid() * 7_927 + 4_099) % span
    for _ in range(span):
        port = FIRST_PORT + (offset + next(_taken)) % span
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free loopback port in {FIRST_PORT}..{end}")


def lexumd_binary() -> Path:
    """Where the `lexumd` binary is; raises when it is not built."""
    explicit = os.environ.get("LEXUMD_BIN")
    if explicit:
        return Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path.home() / ".cache" / "lexum" / "target")
    path = Path(target) / "debug" / "lexumd"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; build it first (cargo build --workspace --all-targets)")
    return path


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a test CA and of one identity it signed (as `TlsFiles` in Rust)."""

    #: The CA certificate.
    ca: Path
    #: The identity's certificate (server and client auth, for 127.0.0.1).
    cert: Path
    #: The identity's private key.
    key: Path


def generate_tls(directory: Path, name: str = "node", ca_name: str = "lexum-test-ca") -> TlsFiles:
    """Makes a test CA and one identity it signs, for IP 127.0.0.1 and valid
    for server and client auth, with the `openssl` command (as
    `deploy/credentials.sh` does): `ca.pem`, `<name>.pem` and `<name>.key`
    in `directory`. Each call makes a new CA."""
    if shutil.which("openssl") is None:
        raise FileNotFoundError("the openssl command is needed to make test certificates (deploy/setup.sh installs it)")
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(ca=directory / "ca.pem", cert=directory / f"{name}.pem", key=directory / f"{name}.key")
    ca_key, csr, ext = directory / "ca.key", directory / f"{name}.csr", directory / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        ["req", "-x509", *new_key, "-keyout", ca_key, "-out", files.ca, "-days", "2", "-subj", f"/CN={ca_name}"],
        ["req", *new_key, "-keyout", files.key, "-out", csr, "-subj", f"/CN=lexum-{name}"],
        [
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            files.ca,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            files.cert,
            "-days",
            "2",
            "-extfile",
            ext,
        ],
    ]
    for step in steps:
        args = ["openssl", *(str(a) for a in step)]
        done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return files


@dataclass
class ClusterOptions:
    """How a test cluster is configured (as `ClusterOptions` in Rust)."""

    nodes: int = 3
    snapshot_logs: int = 5000
    keep_logs: int = 1000
    oscillation_threshold: int = 10
    #: Per-attempt deadline for workers, in milliseconds.
    effect_timeout_ms: int = 10_000
    #: Legacy single token (an admin token that is also the peer token).
    token: str | None = None
    #: Named tokens (`[[auth.tokens]]`): name -> (role, secret), with roles
    #: `read`, `write`, `worker` or `admin`; `peer_token` is what nodes send
    #: each other (required with `tokens`).
    tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    peer_token: str | None = None
    #: Serve clients and peers over TLS with these files (`[tls]`).
    tls: TlsFiles | None = None
    #: With `tls`: demand a client certificate signed by the CA (mutual TLS).
    client_auth: bool = True


@dataclass
class NodeProcess:
    """One node's process and addresses."""

    id: int
    addr: str
    http_addr: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)


class LocalCluster:
    """A running test cluster; a context manager that kills it on exit."""

    def __init__(self, options: ClusterOptions | None = None, *, keep_dir: bool = False) -> None:
        self.options = options or ClusterOptions()
        self.binary = lexumd_binary()
        self.dir = Path(tempfile.mkdtemp(prefix="lexum-py-cluster-"))
        self._keep_dir = keep_dir
        self.nodes: dict[int, NodeProcess] = {}
        for node_id in range(1, self.options.nodes + 1):
            self.nodes[node_id] = NodeProcess(node_id, f"127.0.0.1:{loopback_port()}", f"127.0.0.1:{loopback_port()}")
        peers = "".join(f'{n.id} = "{n.addr}"\n' for n in self.nodes.values())
        for node in self.nodes.values():
            self._write_config(node, peers)

    def _write_config(self, node: NodeProcess, peers: str) -> None:
        o = self.options
        token = f'token = "{o.token}"\n' if o.token else ""
        config = (
            f'{token}id = {node.id}\nlisten = "{node.addr}"\nmetrics_listen = "{node.http_addr}"\n'
            f'data_dir = "{self.dir / f"node{node.id}"}"\n'
            f"[peers]\n{peers}\n[raft]\nheartbeat_ms = 100\nelection_timeout_min_ms = 500\n"
            f"election_timeout_max_ms = 1000\nsnapshot_logs = {o.snapshot_logs}\nkeep_logs = {o.keep_logs}\n"
            f"[engine]\noscillation_threshold = {o.oscillation_threshold}\neffect_timeout_ms = {o.effect_timeout_ms}\n"
        )
        if o.tokens:
            config += f'[auth]\npeer_token = "{o.peer_token}"\n' + "".join(
                f'[[auth.tokens]]\nname = "{name}"\nrole = "{role}"\ntoken = "{secret}"\n'
                for name, (role, secret) in o.tokens.items()
            )
        if o.tls is not None:
            config += (
                f'[tls]\ncert = "{o.tls.cert}"\nkey = "{o.tls.key}"\nca = "{o.tls.ca}"\n'
                f"client_auth = {'true' if o.client_auth else 'false'}\n"
            )
        (self.dir / f"node{node.id}.toml").write_text(config)

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def harness_token(self) -> str | None:
        """The token the harness's own calls send: the legacy token, else an admin one."""
        if self.options.token:
            return self.options.token
        return next((secret for role, secret in self.options.tokens.values() if role == "admin"), None)

    def tls_options(self) -> TlsOptions | None:
        """What a client needs to reach the nodes: the CA, and the identity
        when they demand a client certificate; None without TLS."""
        tls = self.options.tls
        if tls is None:
            return None
        if not self.options.client_auth:
            return TlsOptions(ca_pem=tls.ca.read_bytes())
        return TlsOptions(ca_pem=tls.ca.read_bytes(), cert_pem=tls.cert.read_bytes(), key_pem=tls.key.read_bytes())

    def _channel(self, address: str) -> grpc.Channel:
        tls = self.tls_options()
        if tls is None:
            return grpc.insecure_channel(address)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.ca_pem, private_key=tls.key_pem, certificate_chain=tls.cert_pem
        )
        return grpc.secure_channel(address, credentials)

    @property
    def endpoints(self) -> list[str]:
        """Every node's gRPC address."""
        return [n.addr for n in self.nodes.values()]

    def start(self, timeout: float = 30.0) -> None:
        """Starts every node and waits (bounded) for a leader."""
        for node_id in self.nodes:
            self.spawn(node_id)
        self.wait_for_leader(timeout=timeout)

    def spawn(self, node_id: int) -> None:
        """Starts (or restarts) one node from its data directory."""
        node = self.nodes[node_id]
        log = (self.dir / f"node{node_id}.log").open("ab")
        env = dict(os.environ, LEXUM_LOG="info,openraft=warn")
        node.process = subprocess.Popen(
            [str(self.binary), "--config", str(self.dir / f"node{node_id}.toml")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
        )
        log.close()

    def kill(self, node_id: int) -> None:
        """`kill -9` a node."""
        node = self.nodes[node_id]
        if node.process is not None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(timeout=10)
            node.process = None

    def restart(self, node_id: int) -> None:
        """Restarts a node from its data directory."""
        self.kill(node_id)
        self.spawn(node_id)

    def stop(self) -> None:
        """Kills every node and deletes the scratch directory."""
        for node_id in self.nodes:
            self.kill(node_id)
        if not self._keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def node_info(self, node_id: int, timeout: float = 1.0) -> client_pb2.NodeInfoResponse | None:
        """A running node's own view, or None when it does not answer in time."""
        node = self.nodes[node_id]
        if node.process is None:
            return None
        metadata = (("authorization", f"Bearer {self.harness_token}"),) if self.harness_token else ()
        with self._channel(node.addr) as channel:
            try:
                info: client_pb2.NodeInfoResponse = client_pb2_grpc.LexumStub(channel).NodeInfo(
                    client_pb2.NodeInfoRequest(), timeout=timeout, metadata=metadata
                )
                return info
            except grpc.RpcError:
                return None

    def leader(self) -> int | None:
        """The id of a running node that says it leads, if any."""
        for node_id in self.nodes:
            info = self.node_info(node_id)
            if info is not None and info.role == "leader":
                return node_id
        return None

    def wait_for_leader(self, other_than: int | None = None, timeout: float = 30.0) -> int:
        """Waits (bounded) for a leader that is not `other_than`; returns its id."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes.values():
                if node.process is not None and node.process.poll() is not None:
                    raise RuntimeError(f"lexumd {node.id} exited: {self.log(node.id)[-2000:]}")
            leader = self.leader()
            if leader is not None and leader != other_than:
                return leader
            time.sleep(0.1)
        raise TimeoutError(f"no leader within {timeout}s; logs in {self.dir}")

    def log(self, node_id: int) -> str:
        """A node's log so far."""
        path = self.dir / f"node{node_id}.log"
        return path.read_text(errors="replace") if path.exists() else ""
