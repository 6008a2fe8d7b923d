"""Wiring of the policy-gate service: its settings, the bus check and the admission webhook it serves."""

from __future__ import annotations

from typing import Any, Self, cast

from pydantic import DirectoryPath, Field, FilePath, model_validator

from ballast.bus import Bus
from ballast.events.contracts.policy import POLICY_CHECK, PolicyCheckRequest
from ballast.policy_gate.admission import admission_routes
from ballast.policy_gate.gate import Gate
from ballast.runtime import PORTS, HttpsSettings, ServiceApp

NAME = "policy-gate"


class PolicyGateSettings(HttpsSettings):
    http_port: int = Field(default=PORTS[NAME].health, ge=0, le=65535)
    https_port: int = Field(
        default=cast(int, PORTS[NAME].webhook),  # the gate's entry there has one
        ge=0,
        le=65535,
        description="the admission webhook; 0 picks a free port",
    )
    opa_binary: FilePath | None = Field(default=None, description="the opa the gate runs itself on 127.0.0.1")
    opa_url: str | None = Field(default=None, pattern=r"^https?://", description="an OPA run beside the gate")
    policy_dir: DirectoryPath | None = Field(
        default=None, description="ConstraintTemplates, constraints and ExpansionTemplates (YAML/JSON, recursively)"
    )

    @model_validator(mode="after")
    def _one_opa(self) -> Self:
        if (self.opa_binary is None) == (self.opa_url is None):
            raise ValueError("set exactly one of BALLAST_OPA_BINARY (run OPA here) and BALLAST_OPA_URL (use that OPA)")
        return self


def build(settings: PolicyGateSettings) -> ServiceApp:
    app = ServiceApp(NAME, settings)

    async def open_gate(bus: Bus) -> Gate:
        return await Gate.open(
            bus,
            cluster=settings.cluster,
            opa_binary=settings.opa_binary,
            opa_url=settings.opa_url,
            policy_dir=settings.policy_dir,
            wait=settings.connect_wait,
        )

    gate = app.lifespan("gate", open_gate, Gate.close)
    app.readiness("opa", lambda: gate.value.readiness() if gate.is_open else None)

    async def check(request: Any) -> Any:
        return await gate.value.check(cast(PolicyCheckRequest, request))

    app.serve(POLICY_CHECK, check)
    app.https(admission_routes(lambda: gate.value))
    app.background(lambda bus, stop: gate.value.supervise(bus, stop))
    return app
