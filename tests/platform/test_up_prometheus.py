"""`ballast up` runs a real Prometheus: it scrapes the services and the synthetic traffic exporter, picks up a rule
file written into its rules directory by itself, `ballast traffic` finds the exporter, and everything stops with
the platform."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ballast.local.nats_server import free_port

pytestmark = pytest.mark.cluster

# Run in a process of its own: `up` takes over SIGINT and SIGTERM. `then` checks the running Prometheus and prints
# what it found.
PROGRAM = """
import asyncio, json, sys, urllib.request
from pathlib import Path
from ballast.cli import platform
from ballast.cli.main import main as ballast
from ballast.testing import eventually

def api(url, path):
    with urllib.request.urlopen(url + path, timeout=5) as response:
        return json.load(response)["data"]

async def check(up, state):
    async def scraped():
        targets = api(up.prometheus_url, "/api/v1/targets")["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        return health if health and all(h == "up" for h in health.values()) else None

    print("targets:", json.dumps(await eventually(scraped, timeout=60, interval=0.5, what="targets up")), flush=True)
    rules = state / "prometheus" / "rules"
    (rules / "probe.yaml").write_text("groups: [{name: probe, rules: [{record: probe:up, expr: vector(1)}]}]")

    async def loaded():
        return [g["name"] for g in api(up.prometheus_url, "/api/v1/rules")["groups"]]

    print("rule groups:", await eventually(loaded, timeout=30, interval=0.5, what="the rule file loaded"), flush=True)

def then(up):
    state = Path(sys.argv[2])
    asyncio.run(check(up, state))
    print("traffic show exit:", ballast(["traffic", "show", "--state-dir", str(state)]), flush=True)
    print("prometheus:", up.prometheus_url, flush=True)
    return 0

sys.exit(platform.up(nodes=1, with_cluster=True, nats_port=int(sys.argv[1]), state_dir=sys.argv[2],
                     only=("slo-engine",), then=then, http_port_base=int(sys.argv[3])))
"""


def test_up_runs_prometheus_scraping_the_services_and_the_synthetic_traffic_and_loading_rule_files(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    args = [str(free_port()), str(state), str(free_port())]
    done = subprocess.run([sys.executable, "-c", PROGRAM, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert 'targets: {"slo-engine": "up", "synthetic-traffic": "up"}' in done.stdout, done.stdout
    assert f"rules from {state.resolve() / 'prometheus' / 'rules'}" in done.stdout
    assert "rule groups: ['probe']" in done.stdout
    assert "no WebApps yet" in done.stdout  # `ballast traffic show` reached the exporter through the state dir
    assert "traffic show exit: 0" in done.stdout
    assert done.stdout.rstrip().endswith("[ballast up] stopped")
    assert not (state / "traffic-url").exists()
    url = next(line.split(" ", 1)[1] for line in done.stdout.splitlines() if line.startswith("prometheus: "))
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):  # stopped with the platform: nothing listens any more
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
