"""`ballast demo`: the operator's lifecycle end to end on the local platform, narrated.

Tenants and WebApps from deploy/samples are applied; then the demo breaks things and watches them heal, scales,
rolls out a new image, shows the admission policy refusing a privileged WebApp, and cleans up. Reconcile outcomes
published on NATS are printed as they arrive. Every wait has a deadline; a step that does not converge fails the demo.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import yaml

from ballast.cli.platform import DEPLOY, Platform

MANAGER = "ballast-demo"
WEBAPPS = "/apis/platform.example.com/v1"


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


async def _until(probe: Callable[[], Awaitable[Any]], what: str, timeout: float = 90.0) -> float:
    """Polls `probe` until truthy; returns the seconds it took, or fails naming `what`."""
    started = time.monotonic()
    while not await probe():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def _script(platform: Platform) -> None:
    import nats
    from nats.js.api import DeliverPolicy

    from ballast.kube.apply import apply, delete, get
    from ballast.kube.client import api_client
    from ballast.kube.errors import ApiError
    from ballast.kube.resource import DEPLOYMENT, NAMESPACE, SERVICE, WEBAPP
    from ballast.kube.rest import send_json

    assert platform.kubeconfig is not None
    api = await api_client(str(platform.kubeconfig))
    nc = await nats.connect(platform.nats_url)

    async def show_event(msg: Any) -> None:
        headers = msg.headers or {}
        data = json.loads(msg.data)
        detail = ", ".join(data.get("repaired", [])) or data.get("reason", "")
        _say(f"  event {headers.get('ce-type', '?'):<40} {headers.get('ce-subject', '')} {detail}")

    # From the stream, not the subject: what the platform keeps, each event once however often it was sent.
    await nc.jetstream().subscribe(
        "evt.reconcile.>", cb=show_event, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
    )

    async def webapp(namespace: str, name: str) -> dict[str, Any]:
        return await get(api, WEBAPP, namespace, name) or {}

    async def ready(namespace: str, name: str) -> bool:
        conditions = (await webapp(namespace, name)).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    async with api:
        samples = {
            kind: [
                d
                for f in sorted((DEPLOY / "samples").glob("*.yaml"))
                for d in yaml.safe_load_all(f.read_text())
                if d and d["kind"] == kind
            ]
            for kind in ("Tenant", "WebApp")
        }
        _say("1/8 tenants: " + ", ".join(t["metadata"]["name"] for t in samples["Tenant"]))
        for tenant in samples["Tenant"]:
            await apply(api, tenant, field_manager=MANAGER)
        namespaces = [ns for t in samples["Tenant"] for ns in t["spec"]["namespaces"]]

        async def labelled() -> bool:
            for ns in namespaces:
                found = await get(api, NAMESPACE, None, ns)
                if not found or "platform.example.com/max-pod-security" not in found["metadata"].get("labels", {}):
                    return False
            return True

        took = await _until(labelled, "tenant namespaces labelled")
        _say(f"    namespaces {', '.join(namespaces)} created with quota, limits, default-deny and PSA ({took:.1f}s)")

        _say(
            "2/8 webapps: "
            + ", ".join(f"{w['metadata']['namespace']}/{w['metadata']['name']}" for w in samples["WebApp"])
        )
        for app in samples["WebApp"]:
            await apply(api, app, field_manager=MANAGER)
        keys = [(w["metadata"]["namespace"], w["metadata"]["name"]) for w in samples["WebApp"]]

        async def all_ready() -> bool:
            return all([await ready(ns, name) for ns, name in keys])

        took = await _until(all_ready, "sample WebApps Ready", timeout=120)
        _say(f"    all Ready in {took:.1f}s:")
        for ns, name in keys:
            status = (await webapp(ns, name)).get("status", {})
            _say(f"      {ns + '/' + name:<28} ready {status.get('readyReplicas')}/{status.get('replicas')}")

        ns, name = keys[0]
        _say(f"3/8 self-healing: delete the Service {ns}/{name}")
        old = await get(api, SERVICE, ns, name) or {}
        await delete(api, SERVICE, ns, name)

        async def service_back() -> bool:
            svc = await get(api, SERVICE, ns, name)
            return bool(svc and svc["metadata"]["uid"] != old.get("metadata", {}).get("uid"))

        _say(f"    Service back in {await _until(service_back, 'Service restored'):.2f}s")

        plain = next(w for w in samples["WebApp"] if not w["spec"].get("autoscaling", {}).get("enabled"))
        pns, pname = plain["metadata"]["namespace"], plain["metadata"]["name"]
        _say(f"4/8 drift: someone scales the Deployment {pns}/{pname} to 7 by hand")
        await send_json(
            api,
            "PATCH",
            f"/apis/apps/v1/namespaces/{pns}/deployments/{pname}",
            headers={"Content-Type": "application/merge-patch+json"},
            body={"spec": {"replicas": 7}},
        )
        wanted = plain["spec"].get("replicas", 1)

        async def replicas_back() -> bool:
            deployment = await get(api, DEPLOYMENT, pns, pname) or {}
            return bool(deployment.get("spec", {}).get("replicas") == wanted)

        _say(f"    back to {wanted} in {await _until(replicas_back, 'replicas restored'):.2f}s")

        _say(f"5/8 scale {pns}/{pname} to 3 through the scale subresource (kubectl scale wa/{pname} --replicas 3)")
        await send_json(
            api,
            "PATCH",
            f"{WEBAPPS}/namespaces/{pns}/webapps/{pname}/scale",
            headers={"Content-Type": "application/merge-patch+json"},
            body={"spec": {"replicas": 3}},
        )

        async def three_ready() -> bool:
            status = (await webapp(pns, pname)).get("status", {})
            return bool(status.get("readyReplicas") == 3 and await ready(pns, pname))

        _say(f"    3/3 ready in {await _until(three_ready, 'scaled to 3'):.1f}s")

        image = plain["spec"]["image"].rsplit(":", 1)[0] + ":next"
        _say(f"6/8 rolling update of {pns}/{pname} to {image}")
        await send_json(
            api,
            "PATCH",
            f"{WEBAPPS}/namespaces/{pns}/webapps/{pname}",
            headers={"Content-Type": "application/merge-patch+json"},
            body={"spec": {"image": image}},
        )

        async def rolled() -> bool:
            deployment = await get(api, DEPLOYMENT, pns, pname) or {}
            containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])
            return containers[0].get("image") == image and await ready(pns, pname)

        _say(f"    rolled out and Ready in {await _until(rolled, 'rollout'):.1f}s")

        restricted = next(t for t in samples["Tenant"] if t["spec"].get("maxPodSecurity", "restricted") == "restricted")
        rns = restricted["spec"]["namespaces"][0]
        _say(f"7/8 policy: a privileged WebApp in {rns} (tenant {restricted['metadata']['name']} allows restricted)")
        try:
            await apply(
                api,
                {
                    "apiVersion": "platform.example.com/v1",
                    "kind": "WebApp",
                    "metadata": {"name": "rooted", "namespace": rns},
                    "spec": {"image": "registry.example.com/x:1", "security": {"podSecurityStandard": "privileged"}},
                },
                field_manager=MANAGER,
            )
            raise RuntimeError("the privileged WebApp was admitted")
        except ApiError as exc:
            _say(f"    refused by the API server ({exc.status}): {exc.message}")

        _say("8/8 clean up: delete every WebApp; garbage collection takes the children")
        for ns, name in keys:
            await delete(api, WEBAPP, ns, name)

        async def children_gone() -> bool:
            return all([await get(api, DEPLOYMENT, ns, name) is None for ns, name in keys])

        _say(f"    all Deployments gone in {await _until(children_gone, 'garbage collection'):.1f}s")
    await nc.drain()


def run(platform: Platform) -> int:
    try:
        asyncio.run(_script(platform))
    except (TimeoutError, RuntimeError) as exc:
        _say(f"FAILED: {exc}")
        return 1
    _say("done: deploy, reconcile, self-heal, drift repair, scale, update, policy, clean up")
    return 0
