"""Settings of a service that leads by a Lease (`ServiceApp.lead`): where the Lease is, who this replica is, and
client-go's timings, checked as client-go checks them, and the elector they make."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from ballast.kube.leader import LeaderElector, LeaseTimings, default_identity
from ballast.kube.rest import KubeApi
from ballast.runtime.config import ServiceSettings


class LeaseSettings(ServiceSettings):
    """The service sets the `lease_name` default (one Lease per service)."""

    lease_namespace: str = "kube-system"
    lease_name: str = Field(min_length=1)
    identity: str = Field(default_factory=default_identity, description="this replica, as the Lease names holders")
    lease_duration: float = Field(default=15.0, gt=0, description="seconds a standby waits on an unrenewed Lease")
    renew_deadline: float = Field(default=10.0, gt=0, description="seconds the leader tries to renew before it quits")
    retry_period: float = Field(default=2.0, gt=0, description="seconds between attempts")

    @model_validator(mode="after")
    def _timings_nest(self) -> Self:
        # Otherwise two replicas can lead at once: a leader must give up before a standby may take over.
        if not self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "BALLAST_RETRY_PERIOD < BALLAST_RENEW_DEADLINE < BALLAST_LEASE_DURATION must hold (got "
                f"{self.retry_period}, {self.renew_deadline}, {self.lease_duration})"
            )
        return self

    def elector(self, api: KubeApi) -> LeaderElector:
        timings = LeaseTimings(self.lease_duration, self.renew_deadline, self.retry_period)
        return LeaderElector(
            api, namespace=self.lease_namespace, name=self.lease_name, identity=self.identity, timings=timings
        )
