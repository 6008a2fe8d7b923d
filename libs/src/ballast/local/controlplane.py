"""A local Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver (RBAC), kube-controller-manager,
kube-scheduler and kwok with fake nodes, run from the binaries `make tools` builds.

Start and stop are synchronous (subprocesses and blocking HTTP probes), so a session-scoped pytest fixture, the
`cluster up` CLI and the benchmark can all drive it without sharing an event loop. Every process gets its own
session: the CLI leaves them running after it exits, and a Ctrl-C in the terminal does not kill them half-way
through a test run's teardown.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from ballast.local.kubeconfig import token_kubeconfig, write_kubeconfig
from ballast.local.tools import kwok_stages, tool

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
PORTS = ("etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
FAKE_NODE_LABELS = {"type": "kwok"}  # the label kwok's docs select fake nodes by
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
HEALTH_PATHS = "/healthz,/readyz,/livez,/metrics"
# Our own kwok stages: images from registry.invalid fail to pull, tags ending in -crashloop crash-loop.
FAILURE_STAGES = Path(__file__).with_name("kwok-failures.yaml")
FAILING_IMAGE = '.spec.containers.[] | .image | (startswith("registry.invalid/") or endswith("-crashloop"))'

_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = ballast
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[serving]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1, IP:10.96.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, \
DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
"""


class ControlPlaneError(RuntimeError):
    """A component exited or did not become ready; the message carries the tail of its log."""


def _start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (/proc/<pid>/stat field 22); None if there is no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields from its closing one.
    return int(stat.rsplit(")", 1)[1].split()[19])


def _executable(pid: int) -> str | None:
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:  # gone, a zombie, or not ours to inspect
        return None
    return exe.removesuffix(" (deleted)")  # the binary was rebuilt while it ran: still the same program


class ProcessRecord(BaseModel):
    """Enough to recognise a started process later, from another command: a reused pid has another start time,
    and a pid reused within the same clock tick would still have to run the same binary."""

    model_config = ConfigDict(frozen=True)

    name: str
    pid: int
    binary: str
    start_ticks: int

    @classmethod
    def of(cls, name: str, pid: int, binary: Path) -> ProcessRecord:
        ticks = _start_ticks(pid)
        if ticks is None:
            raise ControlPlaneError(f"{name} (pid {pid}) vanished right after it was started")
        return cls(name=name, pid=pid, binary=os.path.realpath(binary), start_ticks=ticks)

    def running(self) -> bool:
        return _start_ticks(self.pid) == self.start_ticks and _executable(self.pid) == self.binary


def _alive(record: ProcessRecord, child: subprocess.Popen[bytes] | None) -> bool:
    return child.poll() is None if child is not None else record.running()


def stop_processes(
    records: Sequence[ProcessRecord],
    *,
    children: Mapping[int, subprocess.Popen[bytes]] | None = None,
    timeout: float = 15.0,
) -> list[ProcessRecord]:
    """Stops the recorded processes that are still those processes, last started first (clients before the
    apiserver, the apiserver before etcd): SIGTERM, then SIGKILL after `timeout`. Returns the ones signalled.

    A process that is our own unreaped child (in `children`) is ours by definition: its pid cannot be reused yet."""
    signalled = []
    for record in reversed(records):
        child = (children or {}).get(record.pid)
        if not _alive(record, child):
            continue
        os.kill(record.pid, signal.SIGTERM)
        signalled.append(record)
        deadline = time.monotonic() + timeout
        while _alive(record, child):
            if time.monotonic() >= deadline:
                os.kill(record.pid, signal.SIGKILL)
                deadline = float("inf")  # SIGKILL cannot be refused; wait for the kernel to finish it
            time.sleep(0.02)
    return signalled


class ControlPlaneState(BaseModel):
    """What a later command needs to reach or stop a running control plane."""

    data_dir: Path
    kubeconfig: Path
    server: str
    nodes: int
    ports: dict[str, int]
    processes: list[ProcessRecord]

    def running(self) -> list[ProcessRecord]:
        return [record for record in self.processes if record.running()]


def _free_ports(count: int) -> list[int]:
    """Distinct free ports on 127.0.0.1: all sockets stay bound until every port is chosen."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass(frozen=True)
class _Check:
    component: str  # whose log explains a failure
    what: str
    problem: Callable[[], str | None]  # None once satisfied, else what is still wrong


class ControlPlane:
    def __init__(self, nodes: int = 1, data_dir: Path | None = None) -> None:
        if nodes < 0:
            raise ValueError(f"nodes must be >= 0, got {nodes}")
        self.nodes = nodes
        self._own_dir = data_dir is None
        self.data_dir = (data_dir or Path(tempfile.mkdtemp(prefix="ballast-kube-"))).resolve()
        self.ports = dict(zip(PORTS, _free_ports(len(PORTS)), strict=True))
        self.token = secrets.token_urlsafe(24)
        self.records: list[ProcessRecord] = []
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._opener: urllib.request.OpenerDirector | None = None

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['kube-apiserver']}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.data_dir / "kubeconfig"

    @property
    def ca_path(self) -> Path:
        return self.data_dir / "pki" / "ca.crt"

    def log_path(self, component: str) -> Path:
        return self.data_dir / "logs" / f"{component}.log"

    def fake_node_names(self) -> list[str]:
        return [f"kwok-node-{i}" for i in range(self.nodes)]

    def state(self) -> ControlPlaneState:
        return ControlPlaneState(
            data_dir=self.data_dir,
            kubeconfig=self.kubeconfig_path,
            server=self.server,
            nodes=self.nodes,
            ports=self.ports,
            processes=self.records,
        )

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> ControlPlane:
        """Starts every component and returns once all are ready: the apiserver's /readyz passes, the controllers
        have created the default ServiceAccount, the scheduler is ready and kwok reports every fake node Ready.
        On failure everything started so far is stopped and the error carries the failing component's log tail."""
        deadline = time.monotonic() + timeout
        try:
            binaries = {name: tool(name) for name in COMPONENTS}  # a missing binary fails before anything runs
            stages = self._write_kwok_stages(kwok_stages())
            # Every start is a fresh cluster, also in a data dir reused from an earlier run: the CA and signing
            # keys are new, so objects kept from before would carry credentials nothing accepts any more.
            shutil.rmtree(self.data_dir / "etcd", ignore_errors=True)
            self._write_credentials()
            self._spawn("etcd", binaries["etcd"], self._etcd_args())
            self._wait(deadline, [_Check("etcd", "GET /health", self._etcd_problem)])
            self._spawn("kube-apiserver", binaries["kube-apiserver"], self._apiserver_args())
            self._wait(deadline, [_Check("kube-apiserver", "GET /readyz", self._apiserver_problem)])
            write_kubeconfig(
                self.kubeconfig_path,
                token_kubeconfig("ballast-local", self.server, self.ca_path.read_bytes(), self.token),
            )
            self._spawn("kube-controller-manager", binaries["kube-controller-manager"], self._controller_args())
            self._spawn("kube-scheduler", binaries["kube-scheduler"], self._scheduler_args())
            self._spawn("kwok", binaries["kwok"], self._kwok_args(stages))
            self._create_fake_nodes()
            self._wait(
                deadline,
                [
                    _Check("kube-controller-manager", "GET /healthz", self._serving_problem("kube-controller-manager")),
                    _Check("kube-controller-manager", "ServiceAccount default/default", self._default_sa_problem),
                    _Check("kube-scheduler", "GET /readyz", self._serving_problem("kube-scheduler", "/readyz")),
                    _Check("kwok", "GET /healthz", self._kwok_problem),
                    _Check("kwok", f"{self.nodes} fake nodes Ready", self._nodes_problem),
                ],
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stops exactly the processes this control plane started; removes the data dir if it made it."""
        stop_processes(self.records, children=self._children)
        for child in self._children.values():
            child.wait()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- processes and readiness -------------------------------------------------------------------------------

    def _spawn(self, name: str, binary: Path, args: list[str]) -> None:
        log = self.log_path(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:  # a tail on failure must not show an earlier run's lines
            child = subprocess.Popen(
                [str(binary), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        self._children[child.pid] = child
        self.records.append(ProcessRecord.of(name, child.pid, binary))

    def log_tail(self, component: str, lines: int = 30) -> str:
        path = self.log_path(component)
        if not path.exists():
            return f"(no log at {path})"
        tail = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return f"--- last {lines} lines of {path} ---\n{tail}"

    def _wait(self, deadline: float, checks: list[_Check]) -> None:
        pending = list(checks)
        problems: dict[str, str] = {}
        budget = deadline - time.monotonic()
        while True:
            for record in self.records:
                child = self._children[record.pid]
                if child.poll() is not None:
                    raise ControlPlaneError(
                        f"{record.name} exited with code {child.returncode} during start-up\n"
                        f"{self.log_tail(record.name)}"
                    )
            for check in list(pending):
                problem = check.problem()
                if problem is None:
                    pending.remove(check)
                else:
                    problems[check.what] = problem
            if not pending:
                return
            if time.monotonic() >= deadline:
                first = pending[0]
                raise ControlPlaneError(
                    f"{first.component} not ready within {budget:.0f}s ({first.what}: {problems[first.what]})\n"
                    f"{self.log_tail(first.component)}"
                )
            time.sleep(0.05)

    def _request(self, method: str, url: str, body: object = None, *, token: bool = True) -> tuple[int, bytes]:
        """(status, body); status 0 with the reason when nothing answered. Proxies from the environment are
        ignored: everything here is on loopback."""
        if self._opener is None:
            tls = ssl.create_default_context(cafile=str(self.ca_path))
            self._opener = urllib.request.build_opener(
                urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=tls)
            )
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=5) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            return 0, str(getattr(exc, "reason", exc)).encode()

    def _api(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        status, raw = self._request(method, self.server + path, body)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    @staticmethod
    def _describe(status: int, body: bytes) -> str:
        text = body.decode(errors="replace").strip()
        # /readyz lists its checks; the failing ones are the interesting part.
        failing = [line for line in text.splitlines() if line.startswith("[-]")]
        return f"HTTP {status}: {'; '.join(failing) or text[:300]}" if status else text[:300]

    def _etcd_problem(self) -> str | None:
        status, body = self._request("GET", f"http://127.0.0.1:{self.ports['etcd']}/health", token=False)
        return None if status == 200 and b'"true"' in body else self._describe(status, body)

    def _apiserver_problem(self) -> str | None:
        # With the admin token: during RBAC bootstrap an anonymous probe gets 403 rather than the checks' state.
        status, body = self._request("GET", f"{self.server}/readyz?verbose")
        return None if status == 200 else self._describe(status, body)

    def _serving_problem(self, component: str, path: str = "/healthz") -> Callable[[], str | None]:
        def problem() -> str | None:
            status, body = self._request("GET", f"https://127.0.0.1:{self.ports[component]}{path}", token=False)
            return None if status == 200 else self._describe(status, body)

        return problem

    def _kwok_problem(self) -> str | None:
        status, body = self._request("GET", f"http://127.0.0.1:{self.ports['kwok']}/healthz", token=False)
        return None if status == 200 else self._describe(status, body)

    def _default_sa_problem(self) -> str | None:
        status, _ = self._api("GET", "/api/v1/namespaces/default/serviceaccounts/default")
        return None if status == 200 else f"HTTP {status}: the serviceaccount controller has not created it yet"

    def _nodes_problem(self) -> str | None:
        status, nodes = self._api("GET", "/api/v1/nodes?labelSelector=type%3Dkwok")
        if status != 200:
            return f"HTTP {status}: {nodes}"
        ready = [
            node["metadata"]["name"]
            for node in nodes["items"]
            if any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))
        ]
        return None if len(ready) == self.nodes else f"{len(ready)} of {self.nodes} Ready"

    def _create_fake_nodes(self) -> None:
        # kwok does not create nodes, it only plays the kubelet of those it manages: the annotation selects them.
        resources = {"cpu": "32", "memory": "256Gi", "pods": "110"}
        for name in self.fake_node_names():
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {FAKE_NODE_ANNOTATION: "fake"},
                    "labels": {
                        **FAKE_NODE_LABELS,
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                    },
                },
                "status": {"capacity": resources, "allocatable": resources},
            }
            status, body = self._api("POST", "/api/v1/nodes", node)
            if status != 201:
                raise ControlPlaneError(f"creating fake node {name} failed: HTTP {status}: {body}")

    # -- configuration -----------------------------------------------------------------------------------------

    def _write_credentials(self) -> None:
        pki = self.ca_path.parent
        pki.mkdir(parents=True, exist_ok=True)
        config = pki / "openssl.cnf"
        config.write_text(_OPENSSL_CONFIG)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650"]
        req = ["openssl", "req", "-x509", "-config", str(config), *ec]
        serving = ["-extensions", "serving", "-subj", "/CN=ballast-local-serving", "-CA", "ca.crt", "-CAkey", "ca.key"]
        steps = [
            [*req, "-extensions", "ca", "-subj", "/CN=ballast-local-ca", "-keyout", "ca.key", "-out", "ca.crt"],
            [*req, *serving, "-keyout", "serving.key", "-out", "serving.crt"],
            ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "sa.key"],
            ["openssl", "pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"],
        ]
        for step in steps:
            done = subprocess.run(step, cwd=pki, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise ControlPlaneError(f"{' '.join(step)} failed ({done.returncode}):\n{done.stderr}")
        tokens = self.data_dir / "tokens.csv"
        tokens.write_text(f'{self.token},ballast-admin,ballast-admin,"system:masters"\n')
        tokens.chmod(0o600)

    def _etcd_args(self) -> list[str]:
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        return [
            "--name=default",
            f"--data-dir={self.data_dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            # Explicit peer URLs: the default localhost:2380 collides between parallel runs.
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--unsafe-no-fsync=true",  # throwaway data: durability costs seconds per test run
            "--log-level=warn",
        ]

    def _apiserver_args(self) -> list[str]:
        pki = self.ca_path.parent
        return [
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1",
            # Without it the apiserver advertises the default-route address, and fails when there is none.
            "--advertise-address=127.0.0.1",
            # ...and the `kubernetes` Service's endpoint reconciler refuses a loopback address: the fake pods
            # never dial the apiserver through that Service, so it has no endpoints.
            "--endpoint-reconciler-type=none",
            f"--secure-port={self.ports['kube-apiserver']}",
            f"--tls-cert-file={pki / 'serving.crt'}",
            f"--tls-private-key-file={pki / 'serving.key'}",
            f"--cert-dir={pki}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--authorization-mode=RBAC",
            f"--token-auth-file={self.data_dir / 'tokens.csv'}",
            "--allow-privileged=true",
            "--profiling=false",
        ]

    def _client_args(self, component: str) -> list[str]:
        pki = self.ca_path.parent
        return [
            f"--kubeconfig={self.kubeconfig_path}",
            "--leader-elect=false",  # one instance: waiting for a lease only slows start-up
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports[component]}",
            f"--tls-cert-file={pki / 'serving.crt'}",
            f"--tls-private-key-file={pki / 'serving.key'}",
            f"--authorization-always-allow-paths={HEALTH_PATHS}",
            # The default client rate (20 QPS) makes a local cluster take minutes for a thousand Deployments;
            # nothing else shares this API server, so let the controllers and the scheduler go at its pace.
            "--kube-api-qps=1000",
            "--kube-api-burst=2000",
        ]

    def _controller_args(self) -> list[str]:
        pki = self.ca_path.parent
        return [
            *self._client_args("kube-controller-manager"),
            f"--root-ca-file={self.ca_path}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            "--concurrent-deployment-syncs=20",
            "--concurrent-replicaset-syncs=20",
            # kwok renews every fake node's lease from one process, through the same busy API server; with thousands
            # of pods it falls minutes behind (5 min measured at 5000 pods), and the node lifecycle controller would
            # then mark every pod on the "unreachable" node not ready for good (kwok only makes Pending pods ready).
            # Fake nodes never fail, so their heartbeats only have to arrive within the hour.
            "--node-monitor-grace-period=1h",
        ]

    def _scheduler_args(self) -> list[str]:
        return self._client_args("kube-scheduler")

    def _write_kwok_stages(self, built: Path) -> Path:
        """kwok's own stages plus ours, with kwok's pod-ready stage kept off the pods ours make fail (kwok would
        otherwise alternate between the two for a pod that stays Pending)."""
        stages = [doc for doc in yaml.safe_load_all(built.read_text()) if doc]
        for stage in stages:
            if stage.get("kind") == "Stage" and (stage.get("metadata") or {}).get("name") == "pod-ready":
                expressions = stage["spec"].setdefault("selector", {}).setdefault("matchExpressions", [])
                expressions.append({"key": FAILING_IMAGE, "operator": "NotIn", "values": ["true"]})
        stages += [doc for doc in yaml.safe_load_all(FAILURE_STAGES.read_text()) if doc]
        path = self.data_dir / "kwok-stages.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(stages, sort_keys=False))
        return path

    def _kwok_args(self, stages: Path) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig_path}",
            f"--config={stages}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
            f"--cidr={POD_CIDR}",  # kwok's default pod range overlaps the service range
            "--node-ip=127.0.0.1",
            # Without an explicit address kwok's server would listen on 0.0.0.0.
            f"--server-address=127.0.0.1:{self.ports['kwok']}",
        ]
