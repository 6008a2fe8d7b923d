"""`/incident` as people type it, parsed into what they asked for (pure: no Slack, no desk).

/incident declare <service> [critical|high|medium|low] <title…>
/incident ack <incident>            /incident mitigate <incident>       /incident resolve <incident>
/incident severity <incident> <critical|high|medium|low>
/incident role <incident> <commander|communications|operations|scribe> <@person>
/incident status [<incident>]       (no id: every open incident)
/incident postmortem <incident>
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ballast.events.contracts.incident import IncidentRole, Severity
from ballast.incident_bot.slack.cards import slack_actor

DEFAULT_SEVERITY = Severity.MEDIUM

USAGE = (
    "Usage: `/incident declare <service> [critical|high|medium|low] <title>` · `/incident ack <id>` · "
    "`/incident mitigate <id>` · `/incident resolve <id>` · `/incident severity <id> <severity>` · "
    "`/incident role <id> <commander|communications|operations|scribe> <@person>` · "
    "`/incident status [<id>]` · `/incident postmortem <id>`"
)


class CommandError(ValueError):
    """The text is not a command the bot knows; the message says what is wrong and how to type it."""


@dataclass(frozen=True)
class Declare:
    service: str
    severity: Severity
    title: str


@dataclass(frozen=True)
class Acknowledge:
    incident_id: str


@dataclass(frozen=True)
class Mitigate:
    incident_id: str


@dataclass(frozen=True)
class Resolve:
    incident_id: str


@dataclass(frozen=True)
class SetSeverity:
    incident_id: str
    severity: Severity


@dataclass(frozen=True)
class AssignRole:
    incident_id: str
    role: IncidentRole
    to: str  # slack:<user id> for a mention, else the name as typed


@dataclass(frozen=True)
class Status:
    incident_id: str | None  # None: every open incident


@dataclass(frozen=True)
class WritePostmortem:
    incident_id: str


@dataclass(frozen=True)
class Help:
    pass


Command = Declare | Acknowledge | Mitigate | Resolve | SetSeverity | AssignRole | Status | WritePostmortem | Help

# A user mention as Slack sends it in a slash command's text (`<@U0BOB|bob>`, or `<@U0BOB>`).
_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")

_ONE_ID: dict[str, type[Acknowledge | Mitigate | Resolve]] = {
    "ack": Acknowledge,
    "acknowledge": Acknowledge,
    "mitigate": Mitigate,
    "resolve": Resolve,
}


def parse(text: str) -> Command:
    words = text.split()
    if not words or words[0].lower() == "help":
        return Help()
    verb, rest = words[0].lower(), words[1:]
    if verb == "declare":
        return _declare(rest)
    if verb in _ONE_ID:
        return _ONE_ID[verb](_one_id(verb, rest))
    if verb == "severity":
        if len(rest) != 2:
            raise CommandError(f"`severity` takes an incident and a severity. {USAGE}")
        return SetSeverity(rest[0], _severity(rest[1]))
    if verb == "role":
        if len(rest) != 3:
            raise CommandError(f"`role` takes an incident, a role and a person. {USAGE}")
        return AssignRole(rest[0], _role(rest[1]), _person(rest[2]))
    if verb == "status":
        if len(rest) > 1:
            raise CommandError(f"`status` takes at most one incident. {USAGE}")
        return Status(rest[0] if rest else None)
    if verb == "postmortem":
        return WritePostmortem(_one_id(verb, rest))
    raise CommandError(f"Unknown subcommand `{verb}`. {USAGE}")


def _declare(words: list[str]) -> Declare:
    if not words:
        raise CommandError(f"`declare` needs a service and a title. {USAGE}")
    service, rest = words[0], words[1:]
    severity = DEFAULT_SEVERITY
    if rest and rest[0].lower() in {s.value for s in Severity}:
        severity, rest = Severity(rest[0].lower()), rest[1:]
    if not rest:
        raise CommandError(f"`declare` needs a title after the service. {USAGE}")
    return Declare(service, severity, " ".join(rest))


def _one_id(verb: str, words: list[str]) -> str:
    if len(words) != 1:
        raise CommandError(f"`{verb}` takes exactly one incident id. {USAGE}")
    return words[0]


def _role(word: str) -> IncidentRole:
    try:
        return IncidentRole(word.lower())
    except ValueError:
        raise CommandError(f"`{word}` is not a role: use one of {', '.join(r.value for r in IncidentRole)}.") from None


def _person(word: str) -> str:
    mention = _MENTION.fullmatch(word)
    if mention is not None:
        return slack_actor(mention.group(1))
    return word.removeprefix("@")


def _severity(word: str) -> Severity:
    try:
        return Severity(word.lower())
    except ValueError:
        raise CommandError(f"`{word}` is not a severity: use one of {', '.join(s.value for s in Severity)}.") from None
