"""bench-incident: the incident-bot under an Alertmanager alert storm (its ingest, dedup and the way to Slack),
against a trivial webhook receiver taking the same webhooks in the same run.

    python tests/bench/bench_incident.py [--alerts N] [--rate R] [--per-group A] [--notifications S]

Workload, the same for both receivers: G = N / (A*S) alert groups, one per service (`svc-<g>`, grouped by alertname
and service as an Alertmanager route would group them), each of A alerts with fingerprints of their own. Every group
is notified S times, as Alertmanager re-sends a group every group_interval: each notification is one version-4
webhook carrying the whole group (A firing alerts). A group's notifications come about a second apart, interleaved
with the other groups'. The webhooks are posted over HTTPS (TLS, bearer token) by a sender process at a fixed offered
rate of R alerts/s (R/A webhooks/s), open loop: each at its scheduled time whatever the answers before it, and every
latency counts from that schedule, so a receiver that falls behind shows it. A 503 is retried after 0.5 s (up to 5
times), as Alertmanager retries.

The bot: `python -m ballast.incident_bot` in its own process, as it runs in production, on a real nats-server (its
`incidents` bucket and claims, its events on the bus, its Slack consumer), with its Slack bot pointed at the local
Slack Web API (`ballast.testing.slack`, in this process), which opens a channel and posts a card per incident.

Baseline: the same webhooks from the same sender at the same rate, to a trivial receiver in its own process, with the
same TLS and token check: it validates the body with the bot's own payload model (`AmWebhook`), publishes each alert
raw to a JetStream stream (one message per alert, the webhook's publishes awaited) and answers 200. That is the
intake without the incident state machine; ingest_ratio and ack_p99_ratio compare the bot with it.

Figures (the last line):
- alerts: alert instances posted (N rounded to whole groups; repeats included);
- ingest_per_s: alerts answered 200 / (last answer - first scheduled send);
- alert_to_slack_p99_ms: per alert, from its webhook's scheduled send until both the bot answered for it and the card
  of the incident it landed in (the answer names it) was posted to Slack (chat.postMessage recorded at the local
  Slack); p99 over every alert. A group's first notification waits for its card; later ones, whose card is up, for
  the answer;
- dedup_ratio: alerts / incidents opened (distinct incident ids in the answers): A*S when each group is one incident;
- lost: alerts never answered 200 with an incident, or whose incident's card did not reach Slack within DRAIN seconds
  of the last answer.
Timestamps are CLOCK_MONOTONIC, which is system-wide on Linux: the sender and the local Slack are two processes.
Each receiver's line also gives its CPU per alert and host_cpu_steal_pct, the share of the host's CPU time the
hypervisor gave to other guests during its run: on a shared virtual machine that share, not the code, moves the p99.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import signal
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import nats
import orjson
import uvloop
from aiohttp import web
from nats.js.api import StorageType, StreamConfig
from pydantic import ValidationError

from ballast.incident_bot.alertmanager import AmWebhook
from ballast.incident_bot.slack.cards import CARD_EVENT_TYPE
from ballast.local.nats_server import free_port
from ballast.local.policy_webhook import write_certificate
from ballast.runtime import collector
from ballast.testing import NatsServer, ServiceProcess
from ballast.testing.host import CpuTimes
from ballast.testing.slack import SlackApi

TOKEN = "bench-incident-token"
SIGNING_SECRET = "bench-incident-signing-secret"
CLUSTER = "bench"
PATH = "/alertmanager"
CONNECTIONS = 64  # the sender's connection pool: Alertmanager sends each group's notification on its own
RETRIES = 5
DRAIN = 60.0
STARTS_AT = "2026-12-01T09:00:00Z"
NEVER = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of a firing alert


# --- the workload ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    alerts: int
    rate: float  # alerts per second offered
    per_group: int
    notifications: int

    @property
    def groups(self) -> int:
        return max(1, self.alerts // (self.per_group * self.notifications))

    @property
    def total(self) -> int:
        return self.groups * self.per_group * self.notifications

    def order(self) -> list[int]:
        """The group of each webhook, in sending order: a group's notifications about a second apart."""
        gap = max(1, round(self.rate / self.per_group))  # webhooks per second
        sends = sorted((g + n * gap, n, g) for g in range(self.groups) for n in range(self.notifications))
        return [g for _, _, g in sends]

    def body(self, group: int) -> bytes:
        service = f"svc-{group}"
        group_labels = {"alertname": "HighErrorRate", "service": service}
        alerts = []
        for a in range(self.per_group):
            labels = {**group_labels, "namespace": "shop", "instance": f"{service}-{a}", "severity": "critical"}
            alerts.append(
                {
                    "status": "firing",
                    "labels": labels,
                    "annotations": {"summary": f"5xx above 5% on {service}-{a}"},
                    "startsAt": STARTS_AT,
                    "endsAt": NEVER,
                    "generatorURL": "http://prometheus.bench:9090/graph?g0.expr=errors",
                    "fingerprint": hashlib.sha256(f"{group}/{a}".encode()).hexdigest()[:16],
                }
            )
        return orjson.dumps(
            {
                "version": "4",
                "groupKey": '{}:{alertname="HighErrorRate", service="' + service + '"}',
                "truncatedAlerts": 0,
                "status": "firing",
                "receiver": "incident-bot",
                "groupLabels": group_labels,
                "commonLabels": {**group_labels, "namespace": "shop", "severity": "critical"},
                "commonAnnotations": {},
                "externalURL": "http://alertmanager.bench:9093",
                "alerts": alerts,
            }
        )


# --- the sender (its own process) ------------------------------------------------------------------------------------


async def send(plan: Plan, url: str, ca_file: Path, label: str) -> dict[str, Any]:
    """Posts the plan's webhooks at the offered rate: [group, due, answered, status, incidents] per webhook."""
    order = plan.order()
    bodies = {g: plan.body(g) for g in range(plan.groups)}
    interval = plan.per_group / plan.rate
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    context = ssl.create_default_context(cafile=str(ca_file))
    results: list[list[Any]] = [[] for _ in order]
    answered = 0
    retried = 0

    async def post(session: aiohttp.ClientSession, k: int, group: int, due: float) -> None:
        nonlocal answered, retried
        status, incidents = 0, []
        for attempt in range(RETRIES + 1):
            try:
                async with session.post(url, data=bodies[group], headers=headers) as response:
                    status, body = response.status, await response.read()
            except (aiohttp.ClientError, TimeoutError):
                status, body = 0, b""
            if status not in (0, 503) or attempt == RETRIES:
                break
            retried += 1
            await asyncio.sleep(0.5)  # Alertmanager's retry backoff, not a synchronisation
        if status == 200:
            incidents = [alert.get("incident") for alert in json.loads(body)["alerts"]]
        results[k] = [group, due, time.monotonic(), status, incidents]
        answered += 1

    async def progress(start: float) -> None:
        while True:
            await asyncio.sleep(2)
            print(
                f"bench-incident: {label}: {time.monotonic() - start:5.1f} s, "
                f"{answered}/{len(order)} webhooks answered",
                flush=True,
            )

    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context, limit=CONNECTIONS), timeout=timeout
    ) as session:
        start = time.monotonic() + 0.2
        reporter = asyncio.create_task(progress(start))
        posts = []
        for k, group in enumerate(order):
            due = start + k * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the offered load
            posts.append(asyncio.create_task(post(session, k, group, due)))
        await asyncio.gather(*posts)
        reporter.cancel()
    print(f"bench-incident: {label}: sender cpu {time.process_time():.1f} s", flush=True)
    return {"start": start, "retried": retried, "webhooks": results}


async def run_sender(plan: Plan, url: str, ca_file: Path, work: Path, label: str) -> dict[str, Any]:
    out = work / f"{label}.json"
    sender = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--send", url, str(ca_file), str(out), label,
        "--alerts", str(plan.alerts), "--rate", str(plan.rate), "--per-group", str(plan.per_group),
        "--notifications", str(plan.notifications),
    )  # fmt: skip
    if await sender.wait() != 0:
        sys.exit(f"bench-incident: the {label} sender failed")
    result: dict[str, Any] = json.loads(await asyncio.to_thread(out.read_text))
    return result


# --- the baseline receiver (its own process) -------------------------------------------------------------------------


async def serve_baseline() -> None:
    """Checks the token, validates the webhook with the bot's model, publishes each alert raw to JetStream, acks."""
    nc = await nats.connect(os.environ["BALLAST_NATS_URL"], name="bench-incident-baseline")
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="BENCH_ALERTS", subjects=["bench.alerts.>"], storage=StorageType.FILE))
    expected = f"Bearer {TOKEN}".encode()

    async def alertmanager(request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
            return web.json_response({"error": "unauthorized"}, status=401)
        try:
            webhook = AmWebhook.model_validate_json(await request.read())
        except ValidationError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        acks = [
            await js.publish_async(f"bench.alerts.{alert.fingerprint}", alert.model_dump_json(by_alias=True).encode())
            for alert in webhook.alerts
        ]
        await asyncio.gather(*acks)
        alerts = [{"fingerprint": a.fingerprint, "outcome": "published", "incident": None} for a in webhook.alerts]
        return web.json_response({"status": "ok", "alerts": alerts})

    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(os.environ["BENCH_TLS_CERT"], os.environ["BENCH_TLS_KEY"])
    https = web.Application(client_max_size=1024 * 1024)
    https.router.add_post(PATH, alertmanager)
    probes = web.Application()
    probes.router.add_get("/readyz", ready)
    runners = [web.AppRunner(https, access_log=None), web.AppRunner(probes, access_log=None)]
    for runner in runners:
        await runner.setup()
    await web.TCPSite(runners[0], "127.0.0.1", int(os.environ["BENCH_HTTPS_PORT"]), ssl_context=context).start()
    await web.TCPSite(runners[1], "127.0.0.1", int(os.environ["BALLAST_HTTP_PORT"])).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for runner in runners:
        await runner.cleanup()
    await nc.close()


# --- the local Slack, stamping cards ---------------------------------------------------------------------------------


class StampedSlack(SlackApi):
    """The local Slack Web API, noting when each incident's card is posted (its message metadata names it)."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, float] = {}
        self.card_posted = asyncio.Event()

    async def _chat_postMessage(self, args: dict[str, Any]) -> web.Response:
        response = await super()._chat_postMessage(args)
        metadata = args.get("metadata")
        if isinstance(metadata, dict) and metadata.get("event_type") == CARD_EVENT_TYPE:
            incident_id = str(metadata.get("event_payload", {}).get("incident_id"))
            self.cards.setdefault(incident_id, time.monotonic())
            self.card_posted.set()
        return response


# --- the runs --------------------------------------------------------------------------------------------------------


def cpu_seconds(process: ServiceProcess) -> float:
    """The process's user and system CPU so far (/proc/<pid>/stat, in clock ticks)."""
    assert process.proc is not None
    fields = Path(f"/proc/{process.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass(frozen=True)
class Intake:
    alerts: int
    accepted: int
    ingest_per_s: float
    ack_ms: list[float]  # per alert: scheduled send -> answer
    retried: int
    cpu_s: float  # the receiver's CPU seconds from ready to the end of its run (cards in Slack, for the bot)
    steal_pct: float  # the host's CPU time given to other guests by the hypervisor meanwhile (see ballast.testing.host)


def intake(plan: Plan, result: dict[str, Any], cpu_s: float, steal_pct: float) -> Intake:
    webhooks = result["webhooks"]
    accepted = sum(plan.per_group for w in webhooks if w[3] == 200)
    last = max(w[2] for w in webhooks)
    ack_ms = [(w[2] - w[1]) * 1000 for w in webhooks if w[3] == 200 for _ in range(plan.per_group)]
    return Intake(
        plan.total, accepted, accepted / (last - result["start"]), ack_ms, result["retried"], cpu_s, steal_pct
    )


def intake_line(label: str, figures: Intake) -> str:
    return (
        f"bench-incident: {label}: accepted={figures.accepted}/{figures.alerts} "
        f"ingest_per_s={figures.ingest_per_s:.0f} ack_p50_ms={percentile(figures.ack_ms, 0.5):.1f} "
        f"ack_p99_ms={percentile(figures.ack_ms, 0.99):.1f} retried={figures.retried} "
        f"cpu_ms_per_alert={figures.cpu_s * 1000 / figures.alerts:.2f} host_cpu_steal_pct={figures.steal_pct:.1f}"
    )


async def baseline_run(plan: Plan, nats_url: str, tls: Any, work: Path) -> Intake:
    port = free_port()
    receiver = ServiceProcess(
        [__file__, "--serve-baseline"],
        nats_url=nats_url,
        BENCH_HTTPS_PORT=str(port),
        BENCH_TLS_CERT=str(tls.cert),
        BENCH_TLS_KEY=str(tls.key),
    ).start()
    try:
        await receiver.wait_status("/readyz", 200, timeout=60)
        ready_cpu_s, host = cpu_seconds(receiver), CpuTimes.now()
        result = await run_sender(plan, f"https://127.0.0.1:{port}{PATH}", work / "ca.pem", work, "baseline")
        cpu_s, steal_pct = cpu_seconds(receiver) - ready_cpu_s, CpuTimes.now().steal_pct_since(host)
    finally:
        await receiver.stop()
    figures = intake(plan, result, cpu_s, steal_pct)
    print(intake_line("baseline (parse, publish raw, ack)", figures), flush=True)
    return figures


@dataclass(frozen=True)
class ToSlack:
    latency_ms: list[float]  # every alert: scheduled send -> answered and its incident's card in Slack
    first_ms: list[float]  # the alerts of each group's first notification (they wait for the card)
    incidents: int  # distinct incidents the answers named
    lost: int
    split: int  # groups that landed in more than one incident


async def bot_run(plan: Plan, nats_url: str, tls: Any, work: Path) -> tuple[Intake, ToSlack]:
    port = free_port()
    async with StampedSlack() as slack:
        # BENCH_INCIDENT_PROFILE=<file>: the bot runs under cProfile, its stats written there when it stops.
        profile = os.environ.get("BENCH_INCIDENT_PROFILE")
        bot = ServiceProcess(
            ["-m", "cProfile", "-o", profile, "-m", "ballast.incident_bot"]
            if profile
            else ["-m", "ballast.incident_bot"],
            nats_url=nats_url,
            BALLAST_CLUSTER=CLUSTER,
            BALLAST_HTTPS_PORT=str(port),
            BALLAST_TLS_CERT_FILE=str(tls.cert),
            BALLAST_TLS_KEY_FILE=str(tls.key),
            BALLAST_WEBHOOK_TOKEN=TOKEN,
            BALLAST_SLACK_BOT_TOKEN=slack.bot_token,
            BALLAST_SLACK_SIGNING_SECRET=SIGNING_SECRET,
            BALLAST_SLACK_API_URL=slack.base_url,
            BALLAST_LOG_LEVEL="WARNING",
        ).start()
        try:
            await bot.wait_status("/readyz", 200, timeout=120)
            ready_cpu_s, host = cpu_seconds(bot), CpuTimes.now()
            result = await run_sender(plan, f"https://127.0.0.1:{port}{PATH}", work / "ca.pem", work, "bot")
            webhooks = result["webhooks"]
            incidents = {i for w in webhooks if w[3] == 200 for i in w[4] if i is not None}
            print(
                f"bench-incident: bot: {len(incidents)} incidents answered; waiting for their cards in Slack",
                flush=True,
            )
            deadline = time.monotonic() + DRAIN
            while not incidents <= slack.cards.keys() and time.monotonic() < deadline:
                slack.card_posted.clear()
                try:
                    await asyncio.wait_for(slack.card_posted.wait(), deadline - time.monotonic())
                except TimeoutError:
                    break
            cards = dict(slack.cards)
            cpu_s, steal_pct = cpu_seconds(bot) - ready_cpu_s, CpuTimes.now().steal_pct_since(host)
        finally:
            await bot.stop()
    figures = intake(plan, result, cpu_s, steal_pct)
    print(intake_line("bot (incidents, Slack)", figures), flush=True)
    return figures, to_slack(plan, webhooks, cards)


def to_slack(plan: Plan, webhooks: list[list[Any]], cards: dict[str, float]) -> ToSlack:
    latency_ms: list[float] = []
    first_ms: list[float] = []
    lost = 0
    incidents_of: dict[int, set[str]] = {}
    for group, due, answered, status, answer in webhooks:  # in sending order
        first = group not in incidents_of
        landed = incidents_of.setdefault(group, set())
        if status != 200:
            lost += plan.per_group
            continue
        for incident_id in answer:
            if incident_id is None or incident_id not in cards:
                lost += 1
                continue
            landed.add(incident_id)
            latency = (max(answered, cards[incident_id]) - due) * 1000
            latency_ms.append(latency)
            if first:
                first_ms.append(latency)
    answered_ids = {i for w in webhooks if w[3] == 200 for i in w[4] if i is not None}
    split = sum(1 for ids in incidents_of.values() if len(ids) > 1)
    return ToSlack(latency_ms, first_ms, len(answered_ids), lost, split)


async def main(plan: Plan) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-incident-"))
    tls = write_certificate(work / "tls")
    (work / "ca.pem").write_bytes(tls.ca_pem)
    print(
        f"bench-incident: {plan.total} alerts in {plan.groups} groups of {plan.per_group}, each notified "
        f"{plan.notifications} times, offered at {plan.rate:.0f} alerts/s",
        flush=True,
    )
    with NatsServer() as nats_server:
        baseline = await baseline_run(plan, nats_server.url, tls, work)
        bot, slack = await bot_run(plan, nats_server.url, tls, work)
    dedup = plan.total / slack.incidents if slack.incidents else float("nan")
    print(
        f"bench-incident: bot/baseline ingest_ratio={bot.ingest_per_s / baseline.ingest_per_s:.2f} "
        f"ack_p99_ratio={percentile(bot.ack_ms, 0.99) / percentile(baseline.ack_ms, 0.99):.2f} "
        f"cpu_ratio={bot.cpu_s / baseline.cpu_s:.2f} "
        f"(baseline ingest_per_s={baseline.ingest_per_s:.0f} ack_p99_ms={percentile(baseline.ack_ms, 0.99):.1f})"
    )
    print(
        f"bench-incident: alert->Slack p50_ms={percentile(slack.latency_ms, 0.5):.1f} "
        f"first_notification_p99_ms={percentile(slack.first_ms, 0.99):.1f} "
        f"max_ms={max(slack.latency_ms, default=float('nan')):.1f} "
        f"mean_ms={statistics.fmean(slack.latency_ms) if slack.latency_ms else float('nan'):.1f} "
        f"incidents={slack.incidents} groups={plan.groups} groups_split={slack.split}"
    )
    print(
        f"bench-incident: alerts={plan.total} ingest_per_s={bot.ingest_per_s:.0f} "
        f"alert_to_slack_p99_ms={percentile(slack.latency_ms, 0.99):.1f} dedup_ratio={dedup:.1f} lost={slack.lost}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=10000)
    parser.add_argument("--rate", type=float, default=1000.0, help="alerts per second offered")
    parser.add_argument("--per-group", type=int, default=5, help="alerts in each group (webhook)")
    parser.add_argument("--notifications", type=int, default=4, help="times each group is sent")
    parser.add_argument("--send", nargs=4, metavar=("URL", "CA", "OUT", "LABEL"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    plan = Plan(args.alerts, args.rate, args.per_group, args.notifications)
    # Every process of the run on uvloop and with the bot's collector settings (run_service, ServiceApp): the
    # baseline receiver does its work under the same conditions, and the sender and the local Slack, which a real
    # deployment does not run on the bot's machine, take as little of this one's two cores from it as they can and
    # add no pauses of their own to the latencies (a full collection in this process had held a card's stamp 90 ms).
    collector.settle(collector.BUSY_SERVICE)
    if args.serve_baseline:
        uvloop.run(serve_baseline())
    elif args.send:
        url, ca, out, label = args.send
        Path(out).write_text(json.dumps(uvloop.run(send(plan, url, Path(ca), label))))
    else:
        uvloop.run(main(plan))
