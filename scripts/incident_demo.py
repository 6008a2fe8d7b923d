"""`make incident-demo`: an SLO burns on the local platform and the incident-bot takes it from there, narrated live.

The platform (`ballast up`: NATS, a control plane on kwok, the reconciler, the slo-engine, the incident-bot,
Prometheus and Alertmanager) runs with a local Slack (the fake Web API the tests use, on 127.0.0.1) as the bot's
Slack. A WebApp gets an availability SLO; the demo injects 10 % errors into its synthetic traffic. Then:

- the slo-engine reports the burn on the bus (`evt.slo`), and Prometheus's SLO alert goes through Alertmanager to
  the bot's webhook: two sources, one incident (the bot's signal counters show the second one joining);
- Slack shows it: the incident's channel and its card (every Web API call the bot made is recorded and printed);
- nobody acknowledges it, so the demo's escalation policy (20 s, then 40 s) escalates it, on the bus and in Slack;
- the errors stop; once both sources say it is over, someone resolves it (`ballast incident resolve`);
- the postmortem, written from the event log, is posted in the channel and printed (`ballast incident postmortem`).

So that it takes minutes, the SLO's period is 1h with alert windows of 5s to 1m (as `make slo-demo`). Every step has
a deadline: one that does not happen in time ends the demo with exit status 1. Everything listens on 127.0.0.1 and
stops at the end. Each run starts from an empty state directory (the previous run's is wiped).

    python scripts/incident_demo.py [--state-dir .ballast/incident-demo]      (make incident-demo)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from ballast.cli import platform
from ballast.cli.main import main as ballast
from ballast.cli.traffic import URL_FILE
from ballast.local.demo import availability_slo, fresh_state_dir, until
from ballast.testing.slack import SlackApi

MANAGER = "ballast-incident-demo"
NAMESPACE = "shop"
WEBAPP = "web"
ESCALATION = """\
policies:
  default:
    levels:
      - {after: 20s, notify: [oncall-secondary]}
      - {after: 40s, notify: [eng-manager]}
"""
SLO = availability_slo(NAMESPACE, WEBAPP)


def _say(message: str) -> None:
    print(f"[incident-demo] {message}", flush=True)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bytes(response.read()).decode()


def _traffic(url: str, method: str, body: dict[str, Any] | None = None) -> None:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10):
        pass


async def _ballast(*args: str) -> int:
    """A `ballast` command, as a person would type it (in a thread: the CLI runs its own event loop)."""
    _say(f"  $ ballast {' '.join(args)}")
    return await asyncio.to_thread(ballast, list(args))


class LocalSlack:
    """The fake Slack Web API (`ballast.testing.slack`) on 127.0.0.1, served from a thread of its own: `ballast up`
    is synchronous, and the bot must find Slack from its first incident on."""

    def __init__(self) -> None:
        self.api: SlackApi | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), name="local-slack", daemon=True)

    async def _serve(self) -> None:
        async with SlackApi() as api:
            self.api, self._loop, self._stop = api, asyncio.get_running_loop(), asyncio.Event()
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> SlackApi:
        self._thread.start()
        if not self._ready.wait(10) or self.api is None:
            raise RuntimeError("the local Slack did not start")
        return self.api

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def _signals(metrics_text: str) -> dict[tuple[str, str], float]:
    """The bot's `ballast_incident_signals_total` by (source, outcome)."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "ballast_incident_signals":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    found[(sample.labels["source"], sample.labels["outcome"])] = sample.value
    return found


async def _script(where: platform.Platform, state_dir: Path, slack: SlackApi, bot_metrics: str) -> None:
    import nats
    from nats.js.api import DeliverPolicy
    from prometheus_client import CollectorRegistry

    from ballast.bus import Bus
    from ballast.events.contracts.incident import INCIDENT_LIST, IncidentList, IncidentQuery
    from ballast.kube.apply import apply, delete, get
    from ballast.kube.client import api_client
    from ballast.kube.resource import DEPLOYMENT, Resource
    from ballast.kube.resource import WEBAPP as WEBAPPS
    from ballast.telemetry.metrics import BusMetrics

    if where.kubeconfig is None or where.prometheus_url is None or where.alertmanager_url is None:
        raise RuntimeError("the demo needs the cluster, Prometheus and Alertmanager (make tools builds them)")
    prometheus, alertmanager = where.prometheus_url, where.alertmanager_url
    traffic_url = (state_dir / URL_FILE).read_text().strip()
    slos = Resource("platform.example.com", "v1", "servicelevelobjectives", "ServiceLevelObjective")
    api = await api_client(str(where.kubeconfig))
    bus = await Bus.connect(where.nats_url, name="incident-demo", metrics=BusMetrics(CollectorRegistry()))
    nc = await nats.connect(where.nats_url)
    seen: list[tuple[str, dict[str, Any]]] = []  # (event name, data) of evt.slo and evt.incident, as they come

    async def on_event(msg: Any) -> None:
        name = msg.subject.rsplit(".", 1)[1]
        data = json.loads(msg.data)
        seen.append((name, data))
        if msg.subject.startswith("evt.slo."):
            left = data.get("budget_remaining")
            figure = f", budget left {left:.0%}" if isinstance(left, float) else ""
            _say(f"  bus: evt.slo {name} ({data.get('slo', {}).get('service', '?')}{figure})")
        elif name == "escalated":
            _say(f"  bus: evt.incident escalated {data['incident_id']} level {data['level']} → {data['notified']}")
        elif name == "updated":
            _say(f"  bus: evt.incident updated {data['incident_id']}: severity {data['severity']}")
        elif name != "postmortem_published":
            _say(f"  bus: evt.incident {name} {data.get('incident_id')} ({data.get('severity')}) {data.get('title')}")

    js = nc.jetstream()
    for subject in ("evt.slo.>", "evt.incident.>"):
        await js.subscribe(subject, cb=on_event, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW)

    async def incidents(include_resolved: bool = False) -> list[Any]:
        query = IncidentQuery(include_resolved=include_resolved, service=WEBAPP)
        answer = await bus.request(INCIDENT_LIST, query, timeout=5)
        assert isinstance(answer, IncidentList)
        return [i for i in answer.incidents if i.namespace == NAMESPACE]

    async def am_alerts() -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"filter": f'namespace="{NAMESPACE}"', "active": "true"})
        found: list[dict[str, Any]] = await asyncio.to_thread(_get_json, f"{alertmanager}/api/v2/alerts?{query}")
        return found

    async def prometheus_alerts() -> list[str]:
        query = urllib.parse.urlencode({"query": f'ALERTS{{alertstate="firing",namespace="{NAMESPACE}"}}'})
        found = await asyncio.to_thread(_get_json, f"{prometheus}/api/v1/query?{query}")
        return sorted({r["metric"].get("sloth_severity", "?") for r in found["data"]["result"]})

    async with api:
        _say(f"1/7 WebApp {NAMESPACE}/{WEBAPP} with 3 replicas (on kwok's fake nodes)")
        await apply(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
                    field_manager=MANAGER)  # fmt: skip
        webapp = {
            "apiVersion": "platform.example.com/v1",
            "kind": "WebApp",
            "metadata": {"name": WEBAPP, "namespace": NAMESPACE},
            "spec": {"image": "registry.example.com/shop/web:1.0.0", "replicas": 3},
        }
        await apply(api, webapp, field_manager=MANAGER, resource=WEBAPPS)

        async def three_ready() -> bool:
            deployment = await get(api, DEPLOYMENT, NAMESPACE, WEBAPP) or {}
            return (deployment.get("status") or {}).get("readyReplicas") == 3

        await until(three_ready, "the WebApp's 3 replicas ready", timeout=120)
        _say(f"    3/3 ready; synthetic traffic at {traffic_url}")

        _say("2/7 SLO availability: 99 % of requests not 5xx over 1h (alert windows 5s..1m)")
        await apply(api, SLO, field_manager=MANAGER, resource=slos)

        async def rules_loaded() -> list[str]:
            groups = (await asyncio.to_thread(_get_json, f"{prometheus}/api/v1/rules"))["data"]["groups"]
            return [g["name"] for g in groups if "availability" in g["name"]]

        groups = await until(rules_loaded, "the slo-engine's rules loaded by Prometheus", timeout=90)
        _say(f"    the slo-engine wrote its rules; Prometheus {prometheus} loaded {', '.join(groups)}")
        _say(f"    Prometheus sends its alerts to Alertmanager {alertmanager}, which sends them to the incident-bot")
        _say("    (the budget's period so far is only as long as this Prometheus has run: errors overspend it at once)")

        _say(f"3/7 inject 10 % errors: ballast traffic set {NAMESPACE}/{WEBAPP} --error-rate 0.1")
        await asyncio.to_thread(_traffic, f"{traffic_url}/webapps/{NAMESPACE}/{WEBAPP}", "PUT", {"errorRate": 0.1})
        started = time.monotonic()

        async def burn_on_bus() -> bool:
            return any(name.endswith("_burn_firing") for name, _ in seen)

        async def in_alertmanager() -> list[dict[str, Any]]:
            return [a for a in await am_alerts() if a["labels"].get("sloth_service") == WEBAPP]

        async def both_sources_at_the_bot() -> dict[tuple[str, str], float]:
            counted = _signals(await asyncio.to_thread(_get_text, bot_metrics))
            sources = {source for source, outcome in counted if outcome != "ignored"}
            return counted if {"slo", "alertmanager"} <= sources else {}

        await until(burn_on_bus, "the slo-engine's burn event on the bus", timeout=180)
        _say(f"    the slo-engine reported the burn on the bus after {time.monotonic() - started:.0f}s")
        held = await until(in_alertmanager, "the SLO alert in Alertmanager", timeout=180)
        names = ", ".join(sorted({f"{a['labels']['alertname']} ({a['labels'].get('sloth_severity')})" for a in held}))
        _say(f"    Alertmanager holds {names} after {time.monotonic() - started:.0f}s")
        counted = await until(both_sources_at_the_bot, "both sources' signals at the bot", timeout=120)
        opened = await until(incidents, "the incident", timeout=30)
        if len(opened) != 1:
            raise RuntimeError(f"expected one incident for {NAMESPACE}/{WEBAPP}, found {len(opened)}")
        incident = opened[0]
        by_source = ", ".join(
            f"{source} {outcome} x{int(n)}" for (source, outcome), n in sorted(counted.items()) if outcome != "ignored"
        )
        _say(f"4/7 ONE incident {incident.incident_id} from two sources (the bot's signals: {by_source})")
        _say(f"    opened from {incident.source.value}; the other source joined it by service {NAMESPACE}/{WEBAPP}")
        await _ballast("incident", "list", "--service", WEBAPP, "--nats-url", where.nats_url)

        channel_name = f"{incident.incident_id.lower()}-{WEBAPP}"

        async def card_in_slack() -> Any:
            channel = slack.channel_named(channel_name)
            return channel if channel is not None and channel.messages else None

        channel = await until(card_in_slack, f"the Slack channel #{channel_name} with its card", timeout=60)
        _say(f"    Slack (local, {slack.base_url}): channel #{channel.name}, card: {channel.messages[0]['text']}")

        _say("5/7 nobody acknowledges: the demo's policy escalates after 20s, then 40s")

        def escalations() -> list[str]:
            return [m["text"] for m in channel.messages if "escalated to level" in m.get("text", "")]

        async def escalated_twice() -> bool:
            on_bus = {d["level"] for n, d in seen if n == "escalated" and d["incident_id"] == incident.incident_id}
            return {1, 2} <= on_bus and len(escalations()) >= 2

        await until(escalated_twice, "both escalation levels, on the bus and in Slack", timeout=120)
        for text in escalations():
            _say(f"    Slack #{channel.name}: {text}")

        _say(f"6/7 the errors stop: ballast traffic reset {NAMESPACE}/{WEBAPP}; both sources clear")
        await asyncio.to_thread(_traffic, f"{traffic_url}/webapps/{NAMESPACE}/{WEBAPP}", "DELETE")
        started = time.monotonic()

        async def cleared() -> bool:
            return not await prometheus_alerts() and not await in_alertmanager()

        await until(cleared, "the burn alerts cleared", timeout=180)
        _say(f"    Prometheus and Alertmanager clear after {time.monotonic() - started:.0f}s; a person resolves it")
        if await _ballast("incident", "resolve", incident.incident_id, "--by", "ana", "--nats-url", where.nats_url):
            raise RuntimeError(f"ballast incident resolve {incident.incident_id} failed")

        _say("7/7 the postmortem, written from the event log: posted in Slack at the resolution, and on demand")

        async def postmortem_in_slack() -> bool:
            return any(m.get("text", "").startswith("Postmortem") for m in channel.messages)

        await until(postmortem_in_slack, "the postmortem in Slack", timeout=60)
        if await _ballast("incident", "postmortem", incident.incident_id, "--nats-url", where.nats_url):
            raise RuntimeError(f"ballast incident postmortem {incident.incident_id} failed")

        calls = Counter(call.method for call in slack.calls)
        _say(f"Slack recorded {len(slack.calls)} Web API calls: "
             + ", ".join(f"{method} x{n}" for method, n in sorted(calls.items())))  # fmt: skip
        for message in channel.messages:
            _say(f"    #{channel.name}: {message.get('text', '').splitlines()[0][:150]}")
        after = await incidents(include_resolved=True)
        _say(f"incidents about {NAMESPACE}/{WEBAPP}: {', '.join(f'{i.incident_id} {i.status.value}' for i in after)}")
        if [i.incident_id for i in after] != [incident.incident_id]:
            raise RuntimeError("the burn should have made exactly one incident")

        _say("clean up: the SLO and the WebApp")
        await delete(api, slos, NAMESPACE, "availability")
        await delete(api, WEBAPPS, NAMESPACE, WEBAPP)
    await nc.drain()
    await bus.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/incident_demo.py", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", default=".ballast/incident-demo")
    parser.add_argument("--nats-port", type=int, default=4226)
    parser.add_argument("--http-port-base", type=int, default=8131, help="first of the services' HTTP ports")
    args = parser.parse_args(argv)
    state_dir = Path(args.state_dir).resolve()
    if fresh_state_dir(state_dir, "incident-demo") is None:
        _say(f"{state_dir} is not empty and not this demo's: choose another --state-dir")
        return 2
    (state_dir / "escalation.yaml").write_text(ESCALATION)
    bot = next(service for service in platform.SERVICES if service.name == platform.BOT)
    bot_metrics = f"http://127.0.0.1:{bot.health_port(args.http_port_base)}/metrics"

    with LocalSlack() as slack:
        os.environ.update(
            {
                "BALLAST_SLO_WINDOWS_DIR": str(state_dir / "alert-windows"),
                "BALLAST_EVALUATION_INTERVAL": "2",
                "BALLAST_DEFAULT_SLO": "false",  # only the demo's SLO: one story to follow
                "BALLAST_ESCALATION_FILE": str(state_dir / "escalation.yaml"),
                "BALLAST_SLACK_BOT_TOKEN": slack.bot_token,
                "BALLAST_SLACK_SIGNING_SECRET": secrets.token_hex(16),
                "BALLAST_SLACK_API_URL": slack.base_url,
            }
        )

        def run(where: platform.Platform) -> int:
            try:
                asyncio.run(_script(where, state_dir, slack, bot_metrics))
            except (TimeoutError, RuntimeError) as exc:
                _say(f"FAILED: {exc}")
                return 1
            _say("done: one burn, two sources, one incident, in Slack, escalated, resolved, postmortem written")
            return 0

        return platform.up(
            nodes=2,
            with_cluster=True,
            nats_port=args.nats_port,
            state_dir=str(state_dir),
            only=("reconciler", "slo-engine", "incident-bot"),
            then=run,
            http_port_base=args.http_port_base,
        )


if __name__ == "__main__":
    sys.exit(main())
