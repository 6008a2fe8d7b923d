"""The apiserver is the version `make tools` built, and RBAC is enforced for identities it authenticates."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from ballast.local.controlplane import ControlPlane
from ballast.testing.kube import api_status
from ballast.testing.waiting import eventually

pytestmark = pytest.mark.cluster


@asynccontextmanager
async def bearer_client(admin: client.ApiClient, token: str) -> AsyncIterator[client.ApiClient]:
    """A client for the same cluster as `admin` that authenticates with `token` only."""
    configuration = client.Configuration(host=admin.configuration.host)
    configuration.ssl_ca_cert = admin.configuration.ssl_ca_cert
    configuration.verify_ssl = admin.configuration.verify_ssl
    configuration.api_key = {"BearerToken": f"Bearer {token}"}
    api = client.ApiClient(configuration)
    try:
        yield api
    finally:
        await api.close()


async def test_apiserver_reports_the_built_version(
    control_plane: ControlPlane | None, kube_api: client.ApiClient
) -> None:
    if control_plane is None:
        pytest.skip("an existing cluster runs whatever version it runs")
    info = await client.VersionApi(kube_api).get_code()
    assert (info.major, info.minor) == ("1", "37")
    assert info.git_version.startswith("v1.37."), info.git_version


async def test_rbac_refuses_a_service_account_until_a_role_binding_grants_it(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    await core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    issued = await core.create_namespaced_service_account_token(
        "reader",
        namespace,
        # No audiences: the apiserver's own, as for a token a pod would mount.
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)),
    )

    async with bearer_client(kube_api, issued.status.token) as as_reader:
        # Authenticated as the ServiceAccount: a refusal below is authorization at work, not a bad token.
        review = await client.AuthenticationV1Api(as_reader).create_self_subject_review(client.V1SelfSubjectReview())
        assert review.status.user_info.username == f"system:serviceaccount:{namespace}:reader"

        reader_core = client.CoreV1Api(as_reader)
        with pytest.raises(ApiException) as refused:
            await reader_core.list_namespaced_config_map(namespace)
        assert refused.value.status == 403
        assert (
            f'User "system:serviceaccount:{namespace}:reader" cannot list resource "configmaps"'
            in (api_status(refused.value)["message"])
        )

        rbac = client.RbacAuthorizationV1Api(kube_api)
        await rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="configmap-reader"),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["list"])],
            ),
        )
        await rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="reader-reads-configmaps"),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)],
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="configmap-reader"),
            ),
        )

        async def may_list_configmaps() -> bool:
            try:
                await reader_core.list_namespaced_config_map(namespace)
            except ApiException as exc:
                if exc.status == 403:
                    return False
                raise
            return True

        await eventually(may_list_configmaps, timeout=15, interval=0.1, what="the RoleBinding to take effect")

        # The grant is exactly what the Role says: other resources stay refused.
        with pytest.raises(ApiException) as still_refused:
            await reader_core.list_namespaced_secret(namespace)
        assert still_refused.value.status == 403
