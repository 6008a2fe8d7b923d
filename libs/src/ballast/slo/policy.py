"""What the platform does as the budget burns: the SLO's error-budget policy (SRE Workbook, "Error Budget Policy")."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ErrorBudgetPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    freeze_deploys_below_percent: float | None = Field(
        default=None,
        ge=0,
        lt=100,  # at 100 every spent drop would freeze: an always-on freeze is no budget policy
        description="non-hotfix deploys are frozen while at most this % of the budget is left; None never freezes",
    )
    pause_chaos_while_paging: bool = Field(default=False, description="no chaos experiment runs while a page fires")
    exclude_chaos_burn: bool = Field(
        default=False,
        description="budget consumed while a chaos run was going on is kept out of the budget (still reported)",
    )
