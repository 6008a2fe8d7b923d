# Ballast developer entry points. Everything installs what it needs: a fresh machine with Python 3.11 and Go
# (the CI image) needs nothing else.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.8
# Trust the machine's certificate store (where site or proxy CAs are installed), as pip and go do here.
export UV_SYSTEM_CERTS ?= true
PYTHON ?= python3.11
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(HOME)/.local/bin/uv
endif
VENV := .venv
RUN := $(VENV)/bin
SERVICES := reconciler slo-engine chaos-runner policy-gate incident-bot
N ?= 20000
WEBAPPS ?= 1000
DEPLOYMENTS ?= 500
EXPERIMENTS ?= 20
REPLAY_EVENTS ?= 100000

.PHONY: help dev tools test lint types asyncapi demo start-platform deploy-samples cluster-up cluster-down \
	bench-bus bench-operator bench-arrival bench-cluster bench-replay clean $(addprefix test-,$(SERVICES)) test-libs test-controlplane

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 22

$(UV):
	$(PYTHON) -m pip install --user --quiet "uv==$(UV_VERSION)"

dev: $(UV) ## create the development environment from uv.lock (Python deps, nats-server)
	$(UV) sync --locked --all-packages --python $(PYTHON) --compile-bytecode

tools: ## build kube-apiserver, etcd, kwok, opa, helm, promtool, prometheus from the Go module proxy (cached)
	scripts/build-tools.sh

test: dev tools ## lint, type-check and run every suite (the CI command)
	$(RUN)/tox run

$(addprefix test-,$(SERVICES)) test-libs test-controlplane: test-%: dev
	$(RUN)/tox run -e $*

lint: dev ## ruff lint and format check, import layers (import-linter)
	$(RUN)/tox run -e lint

types: dev ## mypy --strict
	$(RUN)/tox run -e types

asyncapi: dev ## regenerate docs/asyncapi.yaml from the catalogue
	$(RUN)/python -m ballast.events.asyncapi > docs/asyncapi.yaml

demo: dev tools ## the operator lifecycle end to end on a local platform, narrated (then everything stops)
	$(RUN)/ballast demo

.PHONY: slo-demo
slo-demo: dev tools ## an SLO with a real Prometheus: errors injected, page fires, budget falls, recovery (narrated)
	$(RUN)/python scripts/slo_demo.py

.PHONY: incident-demo loop-demo
incident-demo: dev tools ## an SLO burns: Alertmanager and the bus report it, one incident, Slack (local), escalation, resolve, postmortem (narrated)
	$(RUN)/python scripts/incident_demo.py

loop-demo: dev tools ## the whole loop, every service: burn -> page -> chaos stops, one incident, deploys frozen -> recovery -> postmortem, what-if
	$(RUN)/python scripts/loop_demo.py

start-platform: dev tools ## run NATS, a local control plane and every service (Ctrl-C stops)
	$(RUN)/ballast up

deploy-samples: dev ## apply deploy/samples (two tenants, four WebApps) to the platform of start-platform
	$(RUN)/ballast apply deploy/samples/tenants.yaml deploy/samples/webapps.yaml

cluster-up: dev tools ## start a local control plane in the background and print its kubeconfig
	$(RUN)/python -m ballast.local.cluster up

cluster-down: dev ## stop the control plane started by cluster-up
	$(RUN)/python -m ballast.local.cluster down

bench-bus: dev ## bus vs raw nats-py throughput, publish->handled latency at 1000 events/s
	$(RUN)/python tests/bench/bench_bus.py --events $(N)

bench-operator: dev tools ## N (or WEBAPPS) WebApps through the reconciler vs the same Deployments+Services (1000)
	$(RUN)/python tests/bench/bench_operator.py --webapps $(if $(filter command line,$(origin N)),$(N),$(WEBAPPS))

bench-arrival: dev tools ## N (or DEPLOYMENTS) Deployments+Services (500) at once vs at 10/s: the control plane's CPU
	$(RUN)/python tests/bench/bench_arrival.py --deployments $(if $(filter command line,$(origin N)),$(N),$(DEPLOYMENTS))

bench-cluster: dev tools ## control plane start-up, 10-replica deployment readiness, memory
	$(RUN)/python tests/bench/bench_cluster.py

.PHONY: bench-policy
bench-policy: dev tools ## N (or 2000) policy-gate decisions on the bus and at admission vs the same queries to raw OPA
	$(RUN)/python tests/bench/bench_policy.py --decisions $(if $(filter command line,$(origin N)),$(N),2000)

.PHONY: bench-chaos chaos-demo
bench-chaos: dev tools ## N (or EXPERIMENTS) chaos runs (20): recovery, abort-on-burn and kill-switch latencies
	$(RUN)/python tests/bench/bench_chaos.py --experiments $(if $(filter command line,$(origin N)),$(N),$(EXPERIMENTS))

chaos-demo: dev tools ## the chaos-runner end to end on a local platform, narrated: run, recover, abort, kill switch
	$(RUN)/python services/chaos-runner/demo/chaos_demo.py

bench-replay: dev ## N (or REPLAY_EVENTS) events (100000): export, import, shadow copy vs raw nats-py read
	$(RUN)/python tests/bench/bench_replay.py --events $(if $(filter command line,$(origin N)),$(N),$(REPLAY_EVENTS))

ALERTS ?= 10000
.PHONY: bench-incident
bench-incident: dev ## N (or ALERTS) Alertmanager alerts (10000) at 1000/s: webhook -> incidents -> Slack vs a raw intake
	$(RUN)/python tests/bench/bench_incident.py --alerts $(if $(filter command line,$(origin N)),$(N),$(ALERTS))

.PHONY: bench-slo
bench-slo: dev tools ## N (or 10000) SLOs: one evaluation cycle against Prometheus, fact ingest vs raw, svc.slo.status p99
	$(RUN)/python tests/bench/bench_slo.py --slos $(if $(filter command line,$(origin N)),$(N),10000)

clean: ## remove the environment, tox envs and local state (not the tool cache)
	rm -rf $(VENV) .tox .ballast .mypy_cache .ruff_cache .pytest_cache
