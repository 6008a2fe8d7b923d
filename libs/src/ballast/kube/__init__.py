"""What services use at run time to talk to Kubernetes, one concept per module as controller-runtime splits them:

- `resource` (one `Resource` type names a kind everywhere), `rest` (the only module that talks to the API server,
  behind the typed `KubeApi` seam) and `errors` (Ballast's own API errors), `client` (making the API client);
- `informer` (list-then-watch caches with indexes: the sources), `handler` (map functions), `predicate`,
  `workqueue` and `controller` (the reconcile contract), `memory` (per-key records);
- `apply` (server-side apply, get, delete: imported from the module, whose name the function shares),
  `conditions`, `finalizers`, `recorder` (Kubernetes Events), `leader` (Lease election), and `install` (CRDs and
  admission policies, for installers and fixtures).

Local tooling (the control plane built from source, `make cluster-up`) lives in `ballast.local`, which nothing
here imports. Nothing here imports kubernetes-asyncio's generated models: services call `client.lean_import()`.
"""

from ballast.kube.client import api_client, lean_import
from ballast.kube.conditions import Condition, find_condition, is_true, set_condition
from ballast.kube.controller import Controller, ControllerMetrics, Result, TerminalError
from ballast.kube.errors import ApiError, Conflict, Forbidden, Gone, Invalid, NotFound
from ballast.kube.finalizers import add_finalizer, finalize, remove_finalizer
from ballast.kube.informer import Informer, ObjectKey, WatchEvent, object_key
from ballast.kube.leader import LeaderElector, LeaseTimings
from ballast.kube.memory import Memory
from ballast.kube.recorder import EventRecorder, Regarding
from ballast.kube.resource import Resource, resource_for
from ballast.kube.rest import KubeApi

__all__ = [
    "ApiError",
    "Condition",
    "Conflict",
    "Controller",
    "ControllerMetrics",
    "EventRecorder",
    "Forbidden",
    "Gone",
    "Informer",
    "Invalid",
    "KubeApi",
    "LeaderElector",
    "LeaseTimings",
    "Memory",
    "NotFound",
    "ObjectKey",
    "Regarding",
    "Resource",
    "Result",
    "TerminalError",
    "WatchEvent",
    "add_finalizer",
    "api_client",
    "finalize",
    "find_condition",
    "is_true",
    "lean_import",
    "object_key",
    "remove_finalizer",
    "resource_for",
    "set_condition",
]
