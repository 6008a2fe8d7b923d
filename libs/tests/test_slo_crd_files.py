"""ServiceLevelObjective objects in files (the slo-engine's own CRD, deploy/crds): `ballast slo validate` checks them
without a cluster, naming the file, the document and the field, and `ballast slo generate` writes their rules. (That
the models hold exactly the CRD's fields is services/slo-engine/tests/test_slo_api.py's.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ballast.cli.main import main
from ballast.slo.crd import RULES_NOT_CHECKED

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "deploy" / "crds" / "servicelevelobjectives.platform.example.com.yaml"
SAMPLES = REPO / "deploy" / "samples" / "slos.yaml"


def test_the_sample_slos_validate_and_generate_as_prometheus_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["slo", "validate", "-i", str(SAMPLES)]) == 0
    assert (
        "valid (1 files, 3 rule groups; 1 measured from the cluster's facts, without rules)" in capsys.readouterr().out
    )
    out = tmp_path / "rules.yaml"
    assert main(["slo", "generate", "-i", str(SAMPLES), "-o", str(out)]) == 0
    assert "storefront-availability: no rules (webAppAvailability is measured" in capsys.readouterr().err
    (rule,) = [d for d in yaml.safe_load_all(out.read_text()) if d]
    assert (rule["kind"], rule["metadata"]["name"], rule["metadata"]["namespace"]) == (
        "PrometheusRule",
        "checkout-requests",
        "shop",
    )
    records = [r for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r]
    # As the slo-engine labels an object's rules: two SLOs of one name in two namespaces stay apart.
    assert records
    assert {r["labels"]["namespace"] for r in records if "sloth_window" in r.get("labels", {})} == {"shop"}
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert [(a["alert"], a["labels"]["severity"]) for a in alerts] == [("CheckoutErrors", "critical")]


BROKEN = """
apiVersion: platform.example.com/v1
kind: ServiceLevelObjective
metadata: {name: typo, namespace: shop}
spec:
  service: shop
  objectve: 99.9
  window: {duration: 30d}
  sli: {webAppAvailability: {webApp: shop, namspace: shop}}
---
apiVersion: platform.example.com/v1
kind: ServiceLevelObjective
metadata: {name: perfect}
spec:
  service: shop
  objective: 100
  window: {duration: 30d}
  sli: {webAppAvailability: {webApp: shop}}
---
apiVersion: platform.example.com/v1
kind: ServiceLevelObjective
metadata: {namespace: shop}
spec: {service: shop, objective: 99, window: {duration: 30d}, sli: {webAppAvailability: {webApp: shop}}}
---
apiVersion: platform.example.com/v1
kind: ServiceLevelObjective
metadata: {name: sliced}
spec:
  service: shop
  objective: 99
  window: {duration: 30d}
  budgetingMethod: Timeslices
  sli: {webAppAvailability: {webApp: shop}}
---
apiVersion: platform.example.com/v1
kind: ServiceLevelObjective
metadata: {name: rolling}
spec:
  service: shop
  objective: 99
  window: {duration: 7d, timeZone: Europe/Berlin}
  sli: {eventRatio: {errorQuery: 'sum(rate(errors[5m]))', totalQuery: 'sum(rate(requests[{{.window}}]))'}}
  alerting: {name: shop errors}
---
apiVersion: platform.example.com/v1
kind: ServiceLevelObjective
metadata: {name: nameless-service}
spec: {objective: 99, window: {duration: 7d, timeZone: UTC}, sli: {webAppAvailability: {webApp: shop}}}
"""


def test_a_broken_object_is_refused_naming_the_file_the_document_and_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "slos.yaml"
    path.write_text(BROKEN)
    assert main(["slo", "validate", "-i", str(path)]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert errors == [
        f"{path}: document 1: spec.objectve: not a field of the CRD",
        f"{path}: document 1: spec.sli.webAppAvailability.namspace: not a field of the CRD",
        f"{path}: document 2: spec.objective: Input should be less than 100",
        f"{path}: document 3: metadata.name: a ServiceLevelObjective needs a name",
        f"{path}: document 4: spec.timeSlices: Timeslices and RatioTimeslices budgeting need timeSlices.window",
        # the CRD's CEL rules, as the API server words them
        f"{path}: document 5: spec.alerting.name: String should match pattern '^[a-zA-Z_][a-zA-Z0-9_]*$'",
        f"{path}: document 5: spec.window.timeZone: only a Calendar window has a time zone",
        f"{path}: document 5: spec.sli.eventRatio.errorQuery: must contain the {{{{.window}}}} placeholder",
        # a missing field stops the CEL rules on the API server: the time zone is not judged
        f"{path}: document 6: spec.service: Field required",
        f"{path}: document 6: {RULES_NOT_CHECKED}",
    ]
