"""`make chaos-demo`: the chaos-runner end to end on the local platform (NATS, control plane, reconciler,
chaos-runner), narrated.

1. a namespace opted in to chaos and a 3-replica WebApp;
2. a pod-delete experiment run with `ballast chaos run`: it completes with a verdict and a recovery time;
3. a scale-down experiment aborted by a page-tier burn event for the service: the Deployment is back to 3;
4. the kill switch (`ballast chaos stop --all`): a running experiment is aborted and a new run refused, until lifted;
5. a namespace without the opt-in label: the run is refused.
Every evt.chaos event is printed as it arrives. Every wait has a deadline; a step that does not converge fails.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ballast.cli import chaos as chaos_cli
from ballast.cli.platform import Platform, up

NS = "chaos-demo"
OUTSIDE = "chaos-demo-closed"
EXPERIMENTS = "/apis/platform.example.com/v1/namespaces/{ns}/chaosexperiments"


def _say(message: str) -> None:
    print(f"[chaos-demo] {message}", flush=True)


async def _until(probe: Callable[[], Awaitable[Any]], what: str, timeout: float = 90.0) -> Any:
    started = time.monotonic()
    while not (found := await probe()):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        await asyncio.sleep(0.1)
    return found


async def _script(platform: Platform) -> None:
    import nats
    from nats.js.api import DeliverPolicy

    from ballast.events.contracts.chaos import ChaosCommand
    from ballast.events.contracts.slo import (
        AlertState,
        BurnAlert,
        BurnTier,
        SloRef,
        WindowBurn,
        burn_event,
        slo_event_type,
        slo_subject,
    )
    from ballast.kube.apply import get
    from ballast.kube.client import api_client
    from ballast.kube.resource import DEPLOYMENT, NAMESPACE, WEBAPP
    from ballast.kube.rest import send_json

    assert platform.kubeconfig is not None
    api = await api_client(str(platform.kubeconfig))
    nc = await nats.connect(platform.nats_url)
    seen: list[dict[str, Any]] = []

    async def show(msg: Any) -> None:
        data = json.loads(msg.data)
        kind = (msg.headers or {}).get("ce-type", "?").split(".")[3]
        seen.append({"kind": kind, **data})
        extra = data.get("reason") or data.get("verdict") or ""
        if data.get("check"):
            extra = f"{data['check']} ({data['stage']}): {'held' if data['passed'] else 'FAILED'}, {data['observed']}"
        if data.get("recovery_seconds") is not None:
            extra += f", recovered in {data['recovery_seconds']:.2f}s"
        _say(f"  evt.chaos {kind:<10} {data['experiment']['name']:<14} {extra} {data.get('detail', '')}")

    await nc.jetstream().subscribe("evt.chaos.>", cb=show, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW)

    def event(kind: str, name: str, count: int = 1) -> Callable[[], Awaitable[dict[str, Any] | None]]:
        async def probe() -> dict[str, Any] | None:
            found = [e for e in seen if e["kind"] == kind and e["experiment"]["name"] == name]
            return found[count - 1] if len(found) >= count else None

        return probe

    async def send(command: ChaosCommand, payload: Any) -> None:
        await chaos_cli.send(platform.nats_url, command, payload)

    def args(*argv: str) -> Any:
        import argparse

        parser = argparse.ArgumentParser()
        commands = parser.add_subparsers(dest="command")
        chaos_cli.add_parser(commands)
        return parser.parse_args(["chaos", "--by", "demo", *argv])

    async def run(name: str, namespace: str = NS) -> None:
        await send(*chaos_cli.command_for(args("run", f"{namespace}/{name}")))

    async def replicas(name: str) -> int:
        found = await get(api, DEPLOYMENT, NS, name)
        return int((found or {}).get("spec", {}).get("replicas", 0))

    async def ready(name: str) -> bool:
        found = await get(api, DEPLOYMENT, NS, name)
        return bool(found) and (found or {}).get("status", {}).get("readyReplicas") == 3

    async with api:
        _say(f"1/5 namespace {NS} labelled chaos.platform.example.com/enabled=true, WebApp shop with 3 replicas")
        for name, labels in ((NS, {"chaos.platform.example.com/enabled": "true"}), (OUTSIDE, {})):
            await send_json(api, "POST", NAMESPACE.collection(), body={"metadata": {"name": name, "labels": labels}})
        webapp = {"apiVersion": WEBAPP.api_version, "kind": "WebApp", "metadata": {"name": "shop"}}
        await send_json(
            api,
            "POST",
            WEBAPP.collection(NS),
            body=webapp | {"spec": {"image": "registry.example.com/shop/web:1.2.3", "replicas": 3}},
        )
        await _until(lambda: ready("shop"), "shop Ready")
        experiments: dict[str, dict[str, Any]] = {
            "shop-kill": {"fault": {"kind": "PodDelete", "force": True}, "duration": "3s"},
            "shop-scale": {"fault": {"kind": "ScaleDown", "replicas": 2}, "duration": "10m"},
        }
        for name, spec in experiments.items():
            body = {
                "apiVersion": "platform.example.com/v1",
                "kind": "ChaosExperiment",
                "metadata": {"name": name},
                "spec": {"target": {"webApp": "shop"}, "hypothesis": {"minReadyReplicas": 2}, **spec},
            }
            await send_json(api, "POST", EXPERIMENTS.format(ns=NS), body=body)
        outside = {
            "apiVersion": "platform.example.com/v1",
            "kind": "ChaosExperiment",
            "metadata": {"name": "closed-kill"},
            "spec": {"target": {"webApp": "shop"}, "fault": {"kind": "PodDelete"}, "duration": "3s"},
        }
        await send_json(api, "POST", EXPERIMENTS.format(ns=OUTSIDE), body=outside)

        _say("2/5 ballast chaos run chaos-demo/shop-kill: one pod deleted, the WebApp recovers")
        await run("shop-kill")
        done = await _until(event("completed", "shop-kill"), "shop-kill completed")
        _say(f"   verdict {done['verdict']}, recovery {done['recovery_seconds']:.2f}s")

        _say("3/5 shop-scale runs (3 -> 2 replicas); a page-tier burn event for shop aborts it")
        await run("shop-scale")
        await _until(event("injected", "shop-scale"), "shop-scale injected")
        # The reconciler's drift repair puts a WebApp's Deployment back at once; the run still counts as a fault.
        _say(f"   shop's Deployment wants {await replicas('shop')} replicas (the reconciler repairs drift too)")
        alert = BurnAlert(
            cluster="local",
            slo=SloRef(namespace=NS, name="shop-availability", service="shop"),
            tier=BurnTier.PAGE,
            state=AlertState.FIRING,
            since=datetime.now(UTC),
            objective=99.9,
            period=timedelta(days=30),
            windows=(
                WindowBurn(
                    short_window=timedelta(minutes=5),
                    long_window=timedelta(hours=1),
                    factor=14.4,
                    short_burn_rate=18,
                    long_burn_rate=15,
                ),
            ),
            budget_remaining=0.7,
            time_to_exhaustion=None,
        )
        from ballast.events import encode, new_event

        for state in (AlertState.FIRING, AlertState.RESOLVED):
            if state is AlertState.RESOLVED:
                aborted = await _until(event("aborted", "shop-scale"), "shop-scale aborted", timeout=10)
                _say(f"   aborted ({aborted['reason']}), shop back to {await replicas('shop')} replicas")
            kind = burn_event(alert.tier, state)
            burn_headers, burn_body = encode(
                new_event(slo_event_type(kind), "chaos-demo", alert.model_copy(update={"state": state}))
            )
            await nc.jetstream().publish(slo_subject("local", NS, kind), burn_body, headers=burn_headers)

        _say("4/5 ballast chaos stop --all: the kill switch")

        async def no_hold() -> bool:
            return not any(k.startswith("hold.") for k in await chaos_cli.snapshot(platform.nats_url))

        await _until(no_hold, "the burn hold lifted by the resolved event")
        await run("shop-scale")
        await _until(event("injected", "shop-scale", 2), "shop-scale injected again")
        await send(*chaos_cli.command_for(args("stop", "--all", "--reason", "demo kill switch")))
        await _until(event("aborted", "shop-scale", 2), "shop-scale aborted by the kill switch", timeout=10)
        await run("shop-kill")
        refused = await _until(event("aborted", "shop-kill"), "shop-kill refused")
        _say(f"   a new run is refused: {refused['detail']}")
        for line in chaos_cli.render(await chaos_cli.snapshot(platform.nats_url))[:3]:
            _say(f"   ballast chaos list: {line}")
        await send(*chaos_cli.command_for(args("pause", "--resume", "--reason", "demo over")))

        _say(f"5/5 {OUTSIDE} has no opt-in label: a run there is refused")
        await run("closed-kill", OUTSIDE)
        refused = await _until(event("aborted", "closed-kill"), "closed-kill refused")
        _say(f"   {refused['reason']}: {refused['detail']}")
    await nc.close()


def main() -> int:
    def script(platform: Platform) -> int:
        try:
            asyncio.run(_script(platform))
        except (TimeoutError, RuntimeError) as exc:
            _say(f"FAILED: {exc}")
            return 1
        _say("done: run, recover, abort on burn, kill switch, namespace allow-list")
        return 0

    return up(
        nodes=3,
        with_cluster=True,
        nats_port=4224,
        state_dir=f".ballast/chaos-demo-{uuid.uuid4().hex[:6]}",
        only=("reconciler", "chaos-runner"),
        then=script,
        http_port_base=8101,
    )


if __name__ == "__main__":
    sys.exit(main())
