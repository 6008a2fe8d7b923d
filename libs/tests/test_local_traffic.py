"""The synthetic traffic model: missing replicas and injected errors fail their exact share of requests, a change
counts the time before it at the old figures, and the histogram and /metrics text agree with the counters."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ballast.local.prometheus import ScrapeTarget, prometheus_config
from ballast.local.traffic import Faults, TrafficModel, _Collector, replicas_of, webapp_of

WEB = ("shop", "web")


class Clock:
    """Seconds that pass when the test says so: the model's integration is checked to the request."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_missing_replicas_then_injected_errors_fail_their_share_from_the_moment_they_change() -> None:
    clock = Clock()
    model = TrafficModel(clock)
    model.replicas(WEB, desired=4, ready=4)
    clock.now += 10  # 10 s at 10 rps, all good
    model.replicas(WEB, desired=4, ready=3)  # a pod deleted: a quarter of requests find no replica
    clock.now += 10
    model.set_faults(WEB, Faults(error_rate=0.1))
    clock.now += 10  # still 3 of 4 ready: 25 % 503, then 10 % of the rest 500
    model.replicas(WEB, desired=4, ready=4)
    model.advance()

    requests = model.webapps[WEB].requests
    assert requests["503"] == pytest.approx(25 + 25)
    assert requests["500"] == pytest.approx(7.5)
    assert requests["200"] == pytest.approx(100 + 75 + 67.5)
    assert sum(requests.values()) == pytest.approx(300)


def test_scaled_to_zero_serves_nothing_and_a_gone_deployment_keeps_its_counters() -> None:
    clock = Clock()
    model = TrafficModel(clock)
    model.replicas(WEB, desired=0, ready=0)
    clock.now += 60
    model.advance()
    assert sum(model.webapps[WEB].requests.values()) == 0
    model.replicas(WEB, desired=1, ready=1)
    clock.now += 1
    model.gone(WEB)
    clock.now += 60
    model.advance()
    assert model.webapps[WEB].requests["200"] == pytest.approx(10)  # counters never go back


def test_faults_are_checked() -> None:
    with pytest.raises(ValueError, match="less than or equal to 1"):
        Faults.model_validate({"errorRate": 1.5})
    with pytest.raises(ValueError, match="latencyMs"):
        Faults.model_validate({"latencyMs": -1})


def test_metrics_text_counts_requests_and_latency_per_webapp() -> None:
    clock = Clock()
    model = TrafficModel(clock)
    model.replicas(WEB, desired=2, ready=2)
    model.set_faults(WEB, Faults(error_rate=0.5, latency_ms=300, requests_per_second=2))
    clock.now += 5
    registry = CollectorRegistry()
    registry.register(_Collector(model))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    labels = (("namespace", "shop"), ("webapp", "web"))
    assert samples[("http_requests_total", (("code", "500"), *labels))] == pytest.approx(5)
    assert samples[("http_requests_total", (("code", "200"), *labels))] == pytest.approx(5)
    assert samples[("http_request_duration_seconds_bucket", (("le", "0.25"), *labels))] == 0  # all take 300 ms
    assert samples[("http_request_duration_seconds_bucket", (("le", "0.5"), *labels))] == pytest.approx(10)
    assert samples[("http_request_duration_seconds_bucket", (("le", "+Inf"), *labels))] == pytest.approx(10)
    assert samples[("http_request_duration_seconds_sum", labels)] == pytest.approx(3)


def test_a_deployment_counts_for_the_webapp_that_controls_it() -> None:
    owned = {
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "ownerReferences": [
                {"apiVersion": "platform.example.com/v1", "kind": "WebApp", "name": "web", "controller": True}
            ],
        },
        "spec": {"replicas": 3},
        "status": {"readyReplicas": 2},
    }
    assert webapp_of(owned) == WEB
    assert replicas_of(owned) == (3, 2)
    assert webapp_of({"metadata": {"name": "x", "namespace": "shop"}}) is None
    assert replicas_of({"metadata": {}, "spec": {}, "status": {}}) == (1, 0)  # the API's default, none ready yet


def test_prometheus_config_scrapes_each_target_under_its_job_and_loads_the_rules_directory(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    config = prometheus_config(
        [ScrapeTarget("slo-engine", "127.0.0.1:8082"), ScrapeTarget("synthetic-traffic", "127.0.0.1:9464")],
        rules,
        timedelta(seconds=1),
        timedelta(seconds=2),
    )
    assert config["global"] == {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "2s"}
    assert config["rule_files"] == [str(rules / "*.yaml"), str(rules / "*.yml")]
    assert [(c["job_name"], c["static_configs"]) for c in config["scrape_configs"]] == [
        ("slo-engine", [{"targets": ["127.0.0.1:8082"]}]),
        ("synthetic-traffic", [{"targets": ["127.0.0.1:9464"]}]),
    ]
