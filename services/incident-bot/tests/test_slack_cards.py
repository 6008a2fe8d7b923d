"""The incident card is written as Block Kit dicts (built for every incident and change, it must be cheap); parsed
back through slack_sdk's typed block classes, which check Slack's limits, every card of every status comes out the
same."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from slack_fixtures import incident
from slack_sdk.models.blocks import Block

from ballast.events.contracts.incident import IncidentRole, IncidentStatus, Severity
from ballast.incident_bot.slack.cards import ACKNOWLEDGE, MITIGATE, RESOLVE, card_blocks

BUTTONS = {
    IncidentStatus.OPEN: [ACKNOWLEDGE, MITIGATE, RESOLVE],
    IncidentStatus.ACKNOWLEDGED: [MITIGATE, RESOLVE],
    IncidentStatus.MITIGATED: [RESOLVE],
    IncidentStatus.RESOLVED: [],
    IncidentStatus.CLOSED: [],
}


@pytest.mark.parametrize("status", list(IncidentStatus))
@pytest.mark.parametrize("severity", list(Severity))
def test_every_card_passes_slack_sdks_block_kit_checks(status: IncidentStatus, severity: Severity) -> None:
    record = incident(
        status=status,
        severity=severity,
        title="Checkout failing " * 20,  # longer than a header may be: cut, not refused
        group_key='{}/{severity="page"}:{alertname="HighErrorRate", service="checkout"}',
        commander="slack:U0ALICE",
        roles={IncidentRole.SCRIBE: "slack:U0CARL", IncidentRole.OPERATIONS: "dana"},
        opened_at=datetime(2026, 12, 1, 9, tzinfo=UTC),
    )
    blocks = card_blocks(record)
    assert "*Operations* dana · *Scribe* <@U0CARL>" in json.dumps(blocks, ensure_ascii=False)
    parsed = [Block.parse(block) for block in blocks]
    assert [block.to_dict() if block is not None else None for block in parsed] == blocks  # to_dict checks limits
    assert len(blocks[0]["text"]["text"]) == 150
    actions = [block for block in blocks if block["type"] == "actions"]
    assert [button["action_id"] for block in actions for button in block["elements"]] == BUTTONS[status]
