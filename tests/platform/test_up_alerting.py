"""`ballast up` wires alerting end to end: an alert a Prometheus rule fires goes to the platform's real Alertmanager,
which sends it to the incident-bot's webhook (HTTPS, bearer token), where it opens an incident; when the rule stops
firing, Prometheus's resolution travels the same way and resolves it. Everything stops with the platform."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from ballast.local.nats_server import free_port

# Run in a process of its own: `up` takes over SIGINT and SIGTERM. `then` fires an alert from a rule file and
# follows it to the bot over `svc.incident.list`, then takes the rule away.
PROGRAM = """
import asyncio, json, sys, urllib.request
from pathlib import Path
from prometheus_client import CollectorRegistry
from ballast.bus import Bus
from ballast.cli import platform
from ballast.events.contracts.incident import INCIDENT_LIST, IncidentQuery
from ballast.telemetry.metrics import BusMetrics
from ballast.testing import eventually

RULE = '''groups:
- name: probe
  rules:
  - alert: CheckoutDown
    expr: EXPR
    labels: {service: checkout, namespace: shop, severity: critical}
    annotations: {summary: checkout answers 503}
'''

def api(url, path):
    with urllib.request.urlopen(url + path, timeout=5) as response:
        return json.load(response)["data"]

async def check(up, state):
    bus = await Bus.connect(up.nats_url, name="test", metrics=BusMetrics(CollectorRegistry()))
    rules = state / "prometheus" / "rules" / "probe.yaml"
    try:
        targets = api(up.prometheus_url, "/api/v1/alertmanagers")["activeAlertmanagers"]
        print("alertmanagers:", json.dumps([t["url"] for t in targets]), flush=True)
        print("alertmanager:", up.alertmanager_url, flush=True)
        rules.write_text(RULE.replace("EXPR", "vector(1)"))

        async def incidents(status):
            listed = await bus.request(INCIDENT_LIST, IncidentQuery(include_resolved=True), timeout=5)
            found = [i for i in listed.incidents if i.status.value == status]
            return found or None

        opened = await eventually(lambda: incidents("open"), timeout=90, interval=0.5, what="the alert at the bot")
        print("opened:", json.dumps([i.model_dump(mode="json") for i in opened]), flush=True)
        # The same rule, its expression now empty: the alert resolves and Prometheus says so at once (a rule
        # removed only lets its alerts run out at their endsAt, minutes later).
        rules.write_text(RULE.replace("EXPR", "vector(1) > 1"))
        resolved = await eventually(lambda: incidents("resolved"), timeout=90, interval=0.5, what="its resolution")
        print("resolved:", json.dumps([i.incident_id for i in resolved]), flush=True)
    finally:
        await bus.close()

def then(up):
    asyncio.run(check(up, Path(sys.argv[2])))
    return 0

sys.exit(platform.up(nodes=0, with_cluster=False, nats_port=int(sys.argv[1]), state_dir=sys.argv[2],
                     only=("incident-bot",), then=then, http_port_base=int(sys.argv[3])))
"""


def _line(stdout: str, prefix: str) -> str:
    return next(line.removeprefix(prefix) for line in stdout.splitlines() if line.startswith(prefix))


def test_up_sends_prometheus_alerts_through_alertmanager_to_the_incident_bot(tmp_path: Path) -> None:
    state = tmp_path / "state"
    args = [str(free_port()), str(state), str(free_port())]
    env = dict(os.environ, BALLAST_RESOLVE_HOLD="0")  # resolve as soon as the alert does
    env.pop("BALLAST_WEBHOOK_TOKEN", None)  # `up` makes one
    done = subprocess.run([sys.executable, "-c", PROGRAM, *args], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    alertmanager = _line(done.stdout, "alertmanager: ")
    assert json.loads(_line(done.stdout, "alertmanagers: ")) == [f"{alertmanager}/api/v2/alerts"]
    assert f"[ballast up] Alertmanager {alertmanager}: Prometheus's alerts to https://127.0.0.1:" in done.stdout
    (incident,) = json.loads(_line(done.stdout, "opened: "))
    assert incident["source"] == "alertmanager"
    assert (incident["namespace"], incident["service"]) == ("shop", "checkout")
    assert incident["severity"] == "critical"
    assert incident["title"] == "checkout: CheckoutDown: checkout answers 503"
    assert 'alertname="CheckoutDown"' in incident["group_key"]
    assert json.loads(_line(done.stdout, "resolved: ")) == [incident["incident_id"]]
    assert done.stdout.rstrip().endswith("[ballast up] stopped")
    port = int(alertmanager.rsplit(":", 1)[1])
    try:  # stopped with the platform: nothing listens any more
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError(f"Alertmanager still listens on {port}")
    token = (state / "alertmanager" / "webhook-token").stat()
    assert oct(token.st_mode & 0o777) == "0o600"  # the bearer token is ours to read only
