"""The API client reads proxy settings once, and honours them as kubectl does."""

from __future__ import annotations

from pathlib import Path

import pytest

from ballast.kube.client import NoKubeConfig, api_client, env_proxy_for
from ballast.local.kubeconfig import token_kubeconfig, write_kubeconfig
from ballast.testing.webhook import certificates

SERVER = "https://api.cluster.example:6443"


def test_proxy_from_environment_applies_unless_no_proxy_excludes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert env_proxy_for(SERVER) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert env_proxy_for(SERVER) == "http://proxy.example:3128"
    monkeypatch.setenv("NO_PROXY", ".cluster.example")
    assert env_proxy_for(SERVER) is None


async def test_client_resolves_the_proxy_once_and_stops_reading_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig", token_kubeconfig("c", SERVER, certificates(tmp_path)[2], "t0ken")
    )
    api = await api_client(str(kubeconfig))
    try:
        assert api.configuration.host == SERVER
        assert api.rest_client.proxy == "http://proxy.example:3128"
        assert api.rest_client.pool_manager.trust_env is False
    finally:
        await api.close()


async def test_no_configuration_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(NoKubeConfig, match="BALLAST_KUBECONFIG or KUBECONFIG"):
        await api_client(None)
