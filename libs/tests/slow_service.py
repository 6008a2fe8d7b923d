"""A service built on the runtime whose handler takes a while, for the SIGTERM-drain test.

Handled event ids are recorded in the KV bucket named by SLOW_SERVICE_BUCKET; each handler takes
SLOW_SERVICE_WORK_SECONDS.
"""

from __future__ import annotations

import asyncio
import os

from ballast.bus import Delivery
from ballast.events.catalogue import ConsumerSpec
from ballast.runtime import ServiceApp, ServiceSettings, run_service


def build(settings: ServiceSettings) -> ServiceApp:
    app = ServiceApp("slow-service", settings)
    durable = os.environ["SLOW_SERVICE_DURABLE"]
    work = float(os.environ["SLOW_SERVICE_WORK_SECONDS"])
    spec = ConsumerSpec(
        durable=durable,
        stream="K8S_EVENTS",
        filter_subjects=(f"evt.k8s.{durable}.>",),
        description="drain test",
        backoff=(1.0,),
        max_deliver=5,
    )

    async def handle(delivery: Delivery) -> None:
        await asyncio.sleep(work)  # the work itself
        assert app.bus is not None
        kv = await app.bus.js.key_value(os.environ["SLOW_SERVICE_BUCKET"])
        await kv.put(delivery.event.id.replace(":", "_"), b"done")

    app.consume(spec, handle, concurrency=4, batch=4)
    return app


if __name__ == "__main__":
    run_service("slow-service", ServiceSettings, build)
