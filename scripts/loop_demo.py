"""`make loop-demo`: the platform's loop end to end on the local platform — every service running as a process,
nothing published by the demo itself except what a user would do — narrated as it happens.

1. A WebApp (3 replicas on kwok) and its availability SLO over the synthetic traffic, evaluated by the slo-engine
   against the platform's real Prometheus; a chaos experiment deleting a pod every 30 s.
2. The demo injects 50 % errors (`ballast traffic set`). The slo-engine pages on `evt.slo`; the chaos-runner aborts
   the experiment; the incident-bot opens one incident (and holds chaos off the service); the budget runs out and
   the policy-gate freezes deploys: a new image is refused at admission, a hotfix goes through.
3. The errors stop (`ballast traffic reset`): the page resolves, the incident resolves by itself.
4. The postmortem is written from the event log (`ballast incident postmortem`), and a candidate policy is run over
   the recorded decisions (`ballast events shadow policy`): what it would have refused.

So that it takes minutes, the SLO's period is 1h with Sloth-format AlertWindows of 5s to 1m (as `make slo-demo`).
Every wait has a deadline; a step that does not happen fails the demo (exit 1), with the services' logs in
<state-dir>/logs.

    python scripts/loop_demo.py [--state-dir .ballast/loop-demo]      (make loop-demo)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ballast.cli import platform
from ballast.local.demo import availability_slo, fresh_state_dir, traffic_selector, until

NAMESPACE = "shop"
WEBAPP = "web"
CLUSTER = "local"
WHERE = traffic_selector(NAMESPACE, WEBAPP)
SLO = availability_slo(
    NAMESPACE, WEBAPP, extra_spec={"budgetPolicy": {"freezeDeploysBelowPercent": 50, "pauseChaosWhilePaging": True}}
)
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
EXPERIMENT_NAME = "web-pod-delete"
EXPERIMENT = {
    "apiVersion": "platform.example.com/v1",
    "kind": "ChaosExperiment",
    "metadata": {"name": EXPERIMENT_NAME, "namespace": NAMESPACE},
    "spec": {
        "target": {"webApp": WEBAPP},
        "fault": {"kind": "PodDelete", "force": True},
        "duration": "10m",
        "interval": "30s",
        "hypothesis": {"minReadyReplicas": 1},
        "abort": {"onBurnTiers": ["page"]},
    },
}
# A policy the platform team is considering: every WebApp names its owning team. Run over what was recorded, it shows
# which of today's admitted writes it would have refused.
CANDIDATE_TEMPLATE = """\
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata: {name: webappowner}
spec:
  crd: {spec: {names: {kind: WebAppOwner}}}
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package webappowner
        violation[{"msg": msg}] {
          not input.review.object.metadata.labels.team
          msg := sprintf("WebApp %v names no owning team (label team)", [input.review.object.metadata.name])
        }
"""
CANDIDATE_CONSTRAINT = """\
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: WebAppOwner
metadata: {name: webapps-name-a-team}
spec:
  match: {kinds: [{apiGroups: [platform.example.com], kinds: [WebApp]}]}
"""


def _say(message: str) -> None:
    print(f"[loop-demo] {message}", flush=True)


def _query(prometheus: str, expr: str) -> list[Any]:
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        result: list[Any] = json.load(response)["data"]["result"]
    return result


async def _ballast(*argv: str, capture: bool = False) -> str:
    """A `ballast` command as a user would type it; its output shown (or returned, with `capture`). Run without
    blocking the loop, which meanwhile keeps receiving the services' events."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from ballast.cli.main import main; sys.exit(main())",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()
        raise
    stdout, stderr = out.decode(), err.decode()
    if proc.returncode != 0:
        raise RuntimeError(f"ballast {' '.join(argv)} exited with {proc.returncode}: {stderr.strip()[-800:]}")
    if not capture:
        for line in stdout.rstrip().splitlines():
            _say(f"   | {line}")
    return stdout


class EventLog:
    """What the services publish on evt.>, as it arrives: shown as one line each, kept for the probes."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []  # (subject, payload)

    async def on_message(self, msg: Any) -> None:
        if msg.subject.startswith("evt.k8s."):
            return
        try:
            data = json.loads(msg.data)
        except ValueError:
            return
        self.events.append((msg.subject, data))
        line = _describe(msg.subject, data)
        if line:
            _say(f"   {msg.subject:<44} {line}")

    def find(self, pattern: str, where: Callable[[dict[str, Any]], bool] = lambda _: True) -> list[dict[str, Any]]:
        parts = pattern.split(".")
        return [data for subject, data in self.events if _matches(subject.split("."), parts) and where(data)]

    def probe(
        self, pattern: str, where: Callable[[dict[str, Any]], bool] = lambda _: True
    ) -> Callable[[], Awaitable[Any]]:
        async def found() -> dict[str, Any] | None:
            matches = self.find(pattern, where)
            return matches[0] if matches else None

        return found


def _matches(subject: list[str], pattern: list[str]) -> bool:
    for i, part in enumerate(pattern):
        if part == ">":
            return len(subject) > i
        if i >= len(subject) or (part != "*" and part != subject[i]):
            return False
    return len(subject) == len(pattern)


def _describe(subject: str, data: dict[str, Any]) -> str | None:
    """One line for the events the loop is about; None for the rest (reconcile progress, routine decisions)."""
    area = subject.split(".")[1]
    kind = subject.split(".")[-1]
    if area == "slo":
        tier = data.get("tier", "")
        budget = data.get("budget_remaining")
        left = f", budget left {budget:.0%}" if isinstance(budget, float) else ""
        return f"{data.get('slo', {}).get('name', '')} {tier} {kind}{left}"
    if area == "chaos":
        extra = data.get("reason") or data.get("verdict") or ""
        return f"{data.get('experiment', {}).get('name', '')} {kind} {extra}".rstrip()
    if area == "incident":
        return f"{data.get('incident_id', '')} {data.get('status', kind)}: {data.get('title', '')}"
    if area == "policy" and (kind == "denied" or data.get("override_reason")):
        verdict = f"hotfix override ({data['override_reason']})" if data.get("override_reason") else "denied"
        return f"{data['object']['kind']} {data['object']['name']} {verdict}: {_first_message(data)}"
    return None


def _first_message(decision: dict[str, Any]) -> str:
    return "; ".join(str(c.get("message", "")) for c in decision.get("constraints") or [])[:200]


async def _script(where: platform.Platform, state_dir: Path) -> None:
    import nats

    from ballast.kube.client import api_client
    from ballast.kube.errors import ApiError
    from ballast.kube.resource import DEPLOYMENT, Resource
    from ballast.kube.resource import NAMESPACE as NAMESPACES
    from ballast.kube.resource import WEBAPP as WEBAPPS
    from ballast.kube.rest import send_json

    if where.kubeconfig is None or where.prometheus_url is None:
        raise RuntimeError("the demo needs the cluster and Prometheus (make tools builds them)")
    prometheus = where.prometheus_url
    nats_url = ["--nats-url", where.nats_url]
    slos = Resource("platform.example.com", "v1", "servicelevelobjectives", "ServiceLevelObjective")
    experiments = Resource("platform.example.com", "v1", "chaosexperiments", "ChaosExperiment")
    log = EventLog()
    nc = await nats.connect(where.nats_url)
    # A plain subscription: what is published to the streams from now on (one JetStream consumer cannot span both
    # event streams); the cluster's own events (evt.k8s) are left out.
    await nc.subscribe("evt.>", cb=log.on_message)
    api = await api_client(str(where.kubeconfig))
    async with api:

        async def ready() -> bool:
            found = await send_json(api, "GET", f"{DEPLOYMENT.collection(NAMESPACE)}/{WEBAPP}")
            return bool(found.get("status", {}).get("readyReplicas") == 3)

        async def deployment_ready() -> bool:
            try:
                return await ready()
            except ApiError:
                return False

        _say(
            f"1/6 namespace {NAMESPACE} (opted in to chaos), WebApp {WEBAPP} with 3 replicas, SLO availability 99 % "
            "over the synthetic traffic (period 1h, alert windows 5s..1m), freeze below 50 % budget left"
        )
        labels = {"chaos.platform.example.com/enabled": "true"}
        await send_json(api, "POST", NAMESPACES.collection(), body={"metadata": {"name": NAMESPACE, "labels": labels}})
        webapp = {
            "apiVersion": WEBAPPS.api_version,
            "kind": "WebApp",
            "metadata": {"name": WEBAPP, "annotations": {"platform.example.com/default-slo": "false"}},
            "spec": {"image": "registry.example.com/shop/web:1.0.0", "replicas": 3},
        }
        await send_json(api, "POST", WEBAPPS.collection(NAMESPACE), body=webapp)
        took = time.monotonic()
        await until(deployment_ready, f"{WEBAPP} Ready")
        _say(f"   {WEBAPP} ready in {time.monotonic() - took:.1f}s")
        # The SLO once the WebApp serves cleanly: its rules record from then on, and the period's ratio is the mean of
        # its shortest window's, so a start-up (replicas not ready, which the synthetic traffic counts as failed
        # requests) still inside that window would weigh on a budget with only seconds of history.
        clean = (
            f'sum(increase(http_requests_total{{{WHERE},code=~"5.."}}[10s])) == 0'
            f" and sum(rate(http_requests_total{{{WHERE}}}[10s])) > 0"
        )

        async def serving_cleanly() -> bool:
            return bool(await asyncio.to_thread(_query, prometheus, clean))

        await until(serving_cleanly, f"{WEBAPP} serving without errors for 10s (Prometheus)", timeout=60)
        await send_json(api, "POST", slos.collection(NAMESPACE), body=SLO)
        await send_json(api, "POST", experiments.collection(NAMESPACE), body=EXPERIMENT)

        async def measured_and_healthy() -> bool:
            out = json.loads(await _ballast("slo", "status", "-n", NAMESPACE, "-o", "json", *nats_url, capture=True))
            return any(state["burn_rates"] and state["budget_remaining"] > 0.9 for state in out)

        await until(measured_and_healthy, "the SLO measured by the slo-engine", timeout=120)
        await _ballast("slo", "status", "-n", NAMESPACE, *nats_url)

        _say(f"2/6 ballast chaos run {NAMESPACE}/{EXPERIMENT_NAME}: a pod deleted every 30s")
        await _ballast("chaos", *nats_url, "run", f"{NAMESPACE}/{EXPERIMENT_NAME}")
        await until(log.probe("evt.chaos.*.*.injected"), "the first injection")

        _say(f"3/6 ballast traffic set {NAMESPACE}/{WEBAPP} --error-rate 0.5: the service fails half its requests")
        burn_started = time.monotonic()
        await _ballast("traffic", "set", f"{NAMESPACE}/{WEBAPP}", "--error-rate", "0.5", "--state-dir", str(state_dir))
        page = await until(log.probe("evt.slo.*.*.page_burn_firing"), "the slo-engine paging", timeout=120)
        _say(f"   paged {time.monotonic() - burn_started:.1f}s after the errors began (tier {page.get('tier')})")
        aborted = await until(log.probe("evt.chaos.*.*.aborted"), "the chaos run aborted", timeout=60)
        _say(f"   chaos aborted: {aborted.get('reason')} {aborted.get('detail', '')}".rstrip())
        opened = await until(log.probe("evt.incident.*.*.opened"), "an incident opened", timeout=60)
        incident_id = opened["incident_id"]
        _say(f"   incident {incident_id} opened: {opened.get('title')}")
        await until(log.probe("evt.slo.*.*.budget_exhausted"), "the budget exhausted", timeout=180)
        # Sloth's definition, which the engine reads from the recorded series: the period's error ratio so far, as if
        # the whole period went like it. An SLO minutes old swings far below zero after a burst; a month-old one
        # does not.
        _say("   budget figures: the period's error ratio so far, as if the whole hour went like it (Sloth's), so a")
        _say("   minutes-old SLO reads far below zero after one burst")

        _say("4/6 the budget is spent: a deploy is frozen, a hotfix goes through")
        path = f"{WEBAPPS.collection(NAMESPACE)}/{WEBAPP}"
        patch = {"spec": {"image": "registry.example.com/shop/web:1.1.0"}}

        async def refused() -> str | None:
            try:
                await send_json(
                    api,
                    "PATCH",
                    path,
                    body=patch,
                    headers=MERGE_PATCH,
                    query=[("dryRun", "All")],
                )
            except ApiError as exc:
                return f"{exc.status} {exc.message}"
            return None

        refusal = await until(refused, "the deploy refused by the freeze", timeout=60)
        _say(f"   new image refused at admission: {refusal[:300]}")
        hotfix = {
            "metadata": {"annotations": {"platform.example.com/hotfix-reason": f"{incident_id}: roll forward"}},
            "spec": {"image": "registry.example.com/shop/web:1.0.1"},
        }
        await send_json(api, "PATCH", path, body=hotfix, headers=MERGE_PATCH)
        _say("   hotfix 1.0.1 with platform.example.com/hotfix-reason admitted")
        await _ballast("incident", "list", *nats_url)

        _say(f"5/6 ballast traffic reset {NAMESPACE}/{WEBAPP}: the errors stop")
        await _ballast("traffic", "reset", f"{NAMESPACE}/{WEBAPP}", "--state-dir", str(state_dir))
        await until(log.probe("evt.slo.*.*.page_burn_resolved"), "the page resolved", timeout=180)
        resolved = await until(
            log.probe("evt.incident.*.*.resolved", lambda e: e.get("incident_id") == incident_id),
            f"{incident_id} resolved",
            timeout=240,  # every alert that joined it over (the ticket tier's 1m window, Alertmanager's resolved)
        )
        _say(f"   {incident_id} resolved by itself, time to resolve {resolved.get('time_to_resolve')}")
        await _ballast("incident", "list", "--all", *nats_url)
        # The bus's burn event and Prometheus's alert through Alertmanager, whichever came first, are one incident.
        burn_incidents = {e["incident_id"] for e in log.find("evt.incident.*.*.opened")}
        if len(burn_incidents) != 1:
            raise RuntimeError(f"one burn, {len(burn_incidents)} incidents: {sorted(burn_incidents)}")

        _say(f"6/6 the postmortem of {incident_id}, written from the event log")
        await _ballast("incident", "postmortem", incident_id, *nats_url)
        candidate = state_dir / "candidate-policy"
        candidate.mkdir(parents=True, exist_ok=True)
        (candidate / "template.yaml").write_text(CANDIDATE_TEMPLATE)
        (candidate / "constraint.yaml").write_text(CANDIDATE_CONSTRAINT)
        _say("   what-if: a policy requiring a team label on WebApps, over the decisions recorded during the demo")
        await _ballast("events", "shadow", "policy", "--policy", str(candidate), *nats_url)
    await nc.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/loop_demo.py", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", default=".ballast/loop-demo")
    parser.add_argument("--nats-port", type=int, default=4225)
    parser.add_argument("--http-port-base", type=int, default=8121, help="first of the services' HTTP ports")
    args = parser.parse_args(argv)
    state_dir = Path(args.state_dir).resolve()
    windows = fresh_state_dir(state_dir, "loop-demo")
    if windows is None:
        _say(f"{state_dir} is not empty and not this demo's: choose another --state-dir")
        return 2
    policies = state_dir / "policies"  # no policies of its own: the gate judges the error-budget freeze only
    policies.mkdir()
    os.environ |= {
        "BALLAST_SLO_WINDOWS_DIR": str(windows),
        "BALLAST_EVALUATION_INTERVAL": "2",
        "BALLAST_DEFAULT_SLO": "false",
        "BALLAST_RESOLVE_HOLD": "5",
        "BALLAST_POLICY_DIR": str(policies),
    }

    def run(where: platform.Platform) -> int:
        try:
            asyncio.run(_script(where, state_dir))
        except (TimeoutError, RuntimeError) as exc:
            _say(f"FAILED: {exc}; the services' logs are in {state_dir / 'logs'}")
            return 1
        _say("done: burn -> page -> chaos stopped, one incident, deploys frozen -> recovery -> postmortem, what-if")
        return 0

    return platform.up(
        nodes=2,
        with_cluster=True,
        nats_port=args.nats_port,
        state_dir=str(state_dir),
        then=run,
        http_port_base=args.http_port_base,
    )


if __name__ == "__main__":
    sys.exit(main())
