"""`ballast traffic`: what the local platform's synthetic traffic exporter injects into a WebApp's (fake) requests.

    ballast traffic set shop/web --error-rate 0.1 --latency-ms 300    10 % of requests fail, each takes 300 ms
    ballast traffic reset shop/web                                    no injected errors, default latency and rate
    ballast traffic show                                              every WebApp's replicas, faults and counters

The exporter (`ballast.local.traffic`) runs with `ballast up`, which writes its URL to `<state-dir>/traffic-url`;
`--url` or BALLAST_TRAFFIC_URL name another. The traffic is synthetic: it exists only on the local platform.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

URL_ENV = "BALLAST_TRAFFIC_URL"
URL_FILE = "traffic-url"  # in `ballast up`'s state directory


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    traffic = commands.add_parser("traffic", help="inject errors and latency into the local platform's fake traffic")
    actions = traffic.add_subparsers(dest="traffic_command", required=True)
    set_cmd = actions.add_parser("set", help="set a WebApp's error rate, latency or request rate")
    reset = actions.add_parser("reset", help="back to no injected errors and the default latency and rate")
    show = actions.add_parser("show", help="every WebApp the exporter knows")
    for parser in (set_cmd, reset):
        parser.add_argument("webapp", metavar="NAMESPACE/WEBAPP")
    set_cmd.add_argument("--error-rate", type=float, metavar="0..1", help="share of requests that fail (code 500)")
    set_cmd.add_argument("--latency-ms", type=float, help="how long every request takes")
    set_cmd.add_argument("--rps", type=float, help="requests per second the WebApp gets")
    for parser in (set_cmd, reset, show):
        parser.add_argument("--url", help=f"the exporter (default: {URL_ENV}, else <state-dir>/{URL_FILE})")
        parser.add_argument("--state-dir", default=".ballast/platform", help="the state directory of `ballast up`")


def exporter_url(url: str | None, state_dir: str) -> str:
    if url:
        return url
    if os.environ.get(URL_ENV):
        return os.environ[URL_ENV]
    path = Path(state_dir) / URL_FILE
    if not path.is_file():
        raise LookupError(f"no traffic exporter found: {path} is missing (is `ballast up` running?); pass --url")
    return path.read_text().strip()


def _call(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _webapp(text: str) -> str:
    namespace, _, name = text.partition("/")
    if not namespace or not name or "/" in name:
        raise ValueError(f"{text!r} is not NAMESPACE/WEBAPP")
    return f"{namespace}/{name}"


def _line(webapp: dict[str, Any]) -> str:
    requests = webapp["requests"]
    total = sum(requests.values())
    failed = total - requests.get("200", 0.0)
    ratio = f"{failed / total:.2%}" if total else "-"
    return (
        f"{webapp['namespace']}/{webapp['webapp']}: ready {webapp['readyReplicas']}/{webapp['desiredReplicas']}, "
        f"error rate {webapp['errorRate']:g}, latency {webapp['latencyMs']:g} ms, {webapp['requestsPerSecond']:g} rps; "
        f"{total:.0f} requests so far, {ratio} failed"
    )


def run(args: argparse.Namespace) -> int:
    try:
        base = exporter_url(args.url, args.state_dir)
        if args.traffic_command == "show":
            webapps = _call("GET", f"{base}/webapps")
            print("\n".join(_line(w) for w in webapps) or "no WebApps yet")
            return 0
        path = f"{base}/webapps/{_webapp(args.webapp)}"
        if args.traffic_command == "reset":
            print(_line(_call("DELETE", path)))
            return 0
        changes = {"errorRate": args.error_rate, "latencyMs": args.latency_ms, "requestsPerSecond": args.rps}
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            print("ballast traffic set: give --error-rate, --latency-ms or --rps", file=sys.stderr)
            return 2
        print(_line(_call("PUT", path, changes)))
        return 0
    except urllib.error.HTTPError as error:  # the exporter says what it refused and why
        print(f"ballast traffic: {error.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except (LookupError, ValueError, urllib.error.URLError) as error:
        print(f"ballast traffic: {error}", file=sys.stderr)
        return 1
