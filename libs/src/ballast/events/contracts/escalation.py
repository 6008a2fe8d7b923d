"""The incident-bot's escalation policies as data: who is told, and when, while nobody acknowledges an incident.

Shared by the incident-bot (which runs them) and the replay tooling (which runs a candidate over recorded incidents:
`ballast events shadow incident`), so it lives with the contracts.

A policy is a list of levels, each `after` a time unacknowledged (counted from the opening) with the targets it
notifies; the last level may repeat (`repeat_every`, up to `repeats` times), each repeat a level of its own so that
its event has its own id. Policies are chosen by the first route whose severity and service match, else `default`.

    {"policies": {"default": {"levels": [{"after": "5m", "notify": ["oncall-secondary"]},
                                         {"after": "15m", "notify": ["eng-manager"], "repeat_every": "15m",
                                          "repeats": 4}]}},
     "routes": [{"severity": ["critical"], "policy": "default"}]}

A file of it (YAML or JSON) loads with `load_escalation`; a bad one is refused naming the field.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Self

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from ballast.events.contracts.incident import Severity
from ballast.slo.durations import parse_duration

DEFAULT_POLICY = "default"


def _prometheus_duration(value: object) -> object:
    """`5m`, `1h30m` as Prometheus writes them; numbers (seconds) and ISO 8601 (`PT5M`) are left to pydantic."""
    if isinstance(value, str) and not value.upper().startswith("P"):
        return parse_duration(value)
    return value


Duration = Annotated[timedelta, BeforeValidator(_prometheus_duration)]


class EscalationLevel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    after: Duration = Field(gt=timedelta(0), description="unacknowledged this long since opening: notify")
    notify: tuple[str, ...] = Field(min_length=1, description="targets: users, schedules, channels")
    repeat_every: Duration | None = Field(default=None, gt=timedelta(0), description="re-notify this level")
    repeats: int = Field(default=0, ge=0, description="how many times repeat_every re-notifies")


class EscalationPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    levels: tuple[EscalationLevel, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _levels_in_order(self) -> Self:
        afters = [level.after for level in self.levels]
        if afters != sorted(afters) or len(set(afters)) != len(afters):
            raise ValueError("levels must come in strictly increasing `after` order")
        if any(level.repeat_every is not None for level in self.levels[:-1]):
            raise ValueError("only the last level repeats (repeat_every)")
        return self

    def schedule(self) -> tuple[tuple[timedelta, tuple[str, ...]], ...]:
        """Every notification in order: (unacknowledged for, targets); level n is the n-th entry."""
        steps = [(level.after, level.notify) for level in self.levels]
        last = self.levels[-1]
        if last.repeat_every is not None:
            steps += [(last.after + last.repeat_every * n, last.notify) for n in range(1, last.repeats + 1)]
        return tuple(steps)


class EscalationRoute(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: str
    severity: tuple[Severity, ...] = ()  # empty: any
    service: tuple[str, ...] = ()  # empty: any


class EscalationConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    policies: dict[str, EscalationPolicy] = Field(min_length=1)
    routes: tuple[EscalationRoute, ...] = ()

    @model_validator(mode="after")
    def _routes_name_policies(self) -> Self:
        for index, route in enumerate(self.routes):
            if route.policy not in self.policies:
                raise ValueError(f"routes.{index}.policy: no policy named {route.policy!r}")
        if DEFAULT_POLICY not in self.policies:
            raise ValueError(f"policies: a {DEFAULT_POLICY!r} policy is needed for incidents no route matches")
        return self

    def policy_for(self, severity: Severity, service: str) -> str:
        for route in self.routes:
            if (not route.severity or severity in route.severity) and (not route.service or service in route.service):
                return route.policy
        return DEFAULT_POLICY


DEFAULT_ESCALATION = EscalationConfig(
    policies={
        DEFAULT_POLICY: EscalationPolicy(
            levels=(
                EscalationLevel(after=timedelta(minutes=5), notify=("oncall-secondary",)),
                EscalationLevel(
                    after=timedelta(minutes=15),
                    notify=("incident-managers",),
                    repeat_every=timedelta(minutes=15),
                    repeats=4,
                ),
            )
        )
    }
)


class EscalationConfigError(ValueError):
    """The escalation file does not load; the message names the file and the field."""


def load_escalation(path: Path | None) -> EscalationConfig:
    if path is None:
        return DEFAULT_ESCALATION
    try:
        raw = yaml.safe_load(path.read_text())
        return EscalationConfig.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise EscalationConfigError(f"{path}: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise EscalationConfigError(f"{path}: {problems}") from exc
