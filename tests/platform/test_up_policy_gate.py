"""`ballast up` with a policy directory: the policy-gate's admission webhook is registered on the local control plane,
so the API server refuses what the policies deny; the platform still stops cleanly after removing it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ballast.local.nats_server import free_port

pytestmark = pytest.mark.cluster

# Run in a process of its own: `up` takes over SIGINT and SIGTERM. `then` creates a Deployment breaking the policy
# (dry run) and reports what the API server answered.
PROGRAM = """
import asyncio, sys
from ballast.cli import platform
from ballast.kube.client import api_client
from ballast.kube.errors import ApiError
from ballast.kube.rest import send_json
from ballast.testing import eventually

async def create(kubeconfig):
    api = await api_client(str(kubeconfig))
    async with api:
        deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bare"},
                      "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "bare"}},
                               "template": {"metadata": {"labels": {"app": "bare"}},
                                            "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}
        async def refused():  # the API server takes a new webhook up a moment later
            try:
                await send_json(api, "POST", "/apis/apps/v1/namespaces/default/deployments", body=deployment,
                                query=[("dryRun", "All")])
            except ApiError as exc:
                return f"{exc.status} {exc.message}"
            return None

        return await eventually(refused, timeout=30, what="the webhook refusing")

def then(up):
    print("answer:", asyncio.run(create(up.kubeconfig)), flush=True)
    return 0

sys.exit(platform.up(nodes=1, with_cluster=True, nats_port=int(sys.argv[1]), state_dir=sys.argv[2],
                     only=("policy-gate",), then=then, http_port_base=int(sys.argv[3])))
"""


def test_up_registers_the_gates_webhook_when_the_gate_has_policies(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    rego = (
        'package owner\nviolation[{"msg": "deployments need an owner label"}] {\n'
        "  not input.review.object.metadata.labels.owner\n}\n"
    )
    template = {
        "apiVersion": "templates.gatekeeper.sh/v1",
        "kind": "ConstraintTemplate",
        "metadata": {"name": "owner"},
        "spec": {
            "crd": {"spec": {"names": {"kind": "Owner"}}},
            "targets": [{"target": "admission.k8s.gatekeeper.sh", "rego": rego}],
        },
    }
    constraint = {
        "apiVersion": "constraints.gatekeeper.sh/v1beta1",
        "kind": "Owner",
        "metadata": {"name": "need-owner"},
        "spec": {"match": {"kinds": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}]}},
    }
    (policies / "policies.yaml").write_text(yaml.safe_dump_all([template, constraint]))
    args = [str(free_port()), str(tmp_path / "state"), str(free_port())]
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BALLAST_POLICY_DIR": str(policies)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "admission webhook ballast-policy-gate calls the policy-gate at https://127.0.0.1:" in done.stdout
    assert (
        'answer: 403 admission webhook "validate.policy-gate.ballast.io" denied the request: '
        "[need-owner] deployments need an owner label"
    ) in done.stdout, done.stdout
    assert "not removed" not in done.stdout
    assert done.stdout.rstrip().endswith("[ballast up] stopped")
