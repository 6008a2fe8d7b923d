"""The incident-bot's Slack bot: a channel and a live card per incident, buttons and `/incident`, postmortems posted.

`wire_slack(app, settings, desk, cluster=...)` puts it in the service; `build_slack_app` and `IncidentChannels` are
the parts, usable on their own (tests drive them against a local Slack).
"""

from ballast.incident_bot.slack.bolt import COMMAND, build_slack_app
from ballast.incident_bot.slack.channels import IncidentChannels, SlackThread
from ballast.incident_bot.slack.service import SlackBot, SlackSettings, wire_slack
from ballast.incident_bot.slack.transport import DEFAULT_PATH, run_socket_mode, slack_routes

__all__ = [
    "COMMAND",
    "DEFAULT_PATH",
    "IncidentChannels",
    "SlackBot",
    "SlackSettings",
    "SlackThread",
    "build_slack_app",
    "run_socket_mode",
    "slack_routes",
    "wire_slack",
]
