"""A kubernetes-asyncio ApiClient configured once, for services that send thousands of requests.

kubernetes-asyncio opens its aiohttp session with `trust_env=True`, and aiohttp then reads ~/.netrc and the proxy
variables again on every request, each time in a worker thread: a profile of the reconciler under load showed about a
tenth of its CPU there. Here the environment is read once, when the client is made: an `HTTPS_PROXY` that applies to
the API server (not excluded by `NO_PROXY`) becomes the client's proxy, and the session stops looking per request.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
import urllib.request
from typing import Any
from urllib.parse import urlsplit


def lean_import() -> None:
    """Loads kubernetes-asyncio's ApiClient, Configuration, errors and config loaders without the ~700 generated
    models and API classes its packages import on the way (about 80 MB resident, most of an idle service).

    For service processes that speak to the API server only through `ballast.kube.rest` (plain JSON, nothing
    deserialised into models). Call it before anything imports kubernetes_asyncio; afterwards typed APIs
    (`client.CoreV1Api`) and models are not available in the process, and asking for one says so.
    """
    if "kubernetes_asyncio" in sys.modules:
        return
    spec = importlib.util.find_spec("kubernetes_asyncio")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("kubernetes_asyncio is not installed")
    root = next(iter(spec.submodule_search_locations))

    def namespace(name: str, path: str) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__path__ = [path]
        sys.modules[name] = module
        return module

    package = namespace("kubernetes_asyncio", root)
    client = namespace("kubernetes_asyncio.client", os.path.join(root, "client"))
    models = namespace("kubernetes_asyncio.client.models", os.path.join(root, "client", "models"))

    def no_model(name: str) -> Any:
        raise AttributeError(f"kubernetes_asyncio model {name!r} is not loaded (ballast.kube.client.lean_import)")

    models.__getattr__ = no_model  # type: ignore[method-assign]
    package.client = client  # type: ignore[attr-defined]
    client.models = models  # type: ignore[attr-defined]
    for name in ("exceptions", "configuration", "rest", "api_client"):
        setattr(client, name, importlib.import_module(f"kubernetes_asyncio.client.{name}"))
    client.ApiException = client.exceptions.ApiException  # type: ignore[attr-defined]
    client.Configuration = client.configuration.Configuration  # type: ignore[attr-defined]
    client.ApiClient = client.api_client.ApiClient  # type: ignore[attr-defined]
    package.config = importlib.import_module("kubernetes_asyncio.config")  # type: ignore[attr-defined]


class NoKubeConfig(RuntimeError):
    """No kubeconfig given or found, and not running inside a cluster."""


def env_proxy_for(server: str) -> str | None:
    """The proxy the environment names for `server` (the API server's URL), or None to connect directly."""
    parts = urlsplit(server)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme or "https")


async def api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An ApiClient for `kubeconfig`, else $KUBECONFIG, else the pod's service account (in-cluster)."""
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path:
        await config.load_kube_config(
            config_file=path, context=context, client_configuration=configuration, persist_config=False
        )
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException as exc:
            raise NoKubeConfig(
                "no Kubernetes configuration: set BALLAST_KUBECONFIG or KUBECONFIG, or run inside a cluster"
            ) from exc
    if not configuration.proxy:  # a kubeconfig's proxy-url wins over the environment, as with kubectl
        configuration.proxy = env_proxy_for(configuration.host or "")
    api = client.ApiClient(configuration)
    # aiohttp has no public setter; the attribute has carried this meaning since aiohttp 3.0.
    api.rest_client.pool_manager._trust_env = False
    return api
