"""Kubernetes Events for violations, as Gatekeeper's `--emit-admission-events` and `--emit-audit-events` write them:
`kubectl get events` shows what the gate refused, warned about or let through in dry run at admission, and what the
audit found in the cluster.

Reasons are Gatekeeper's: `FailedAdmission` (deny), `WarningAdmission` (warn), `DryrunViolation` (dryrun) and
`AuditViolation`; every Event is a Warning about the object, naming the constraint and its message. They are written
in the gate's own namespace (`BALLAST_EVENTS_NAMESPACE`, the lease namespace by default), or, with
`BALLAST_EVENTS_INVOLVED_NAMESPACE`, in the object's (a cluster-scoped object's still go to the gate's). The API
server keeps an Event in the namespace of the object it regards, so where an Event is written away from the object's
namespace it regards the object under the Event's namespace and says the object's own in its note, as Gatekeeper's
do. The decision log on `evt.policy` stays the complete record: Events expire (an hour, by default) and a repeat
within ten minutes is counted on the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ballast.events.contracts.common import ManifestRef
from ballast.events.contracts.policy import EnforcementAction, Operation
from ballast.kube.recorder import EventRecorder, Regarding
from ballast.policy import Violation

REPORTING_CONTROLLER = "platform.example.com/policy-gate"  # who wrote an Event, as `kubectl events` shows it
ADMISSION_REASONS = {
    EnforcementAction.DENY: "FailedAdmission",
    EnforcementAction.WARN: "WarningAdmission",
    EnforcementAction.DRYRUN: "DryrunViolation",
}
AUDIT_REASON = "AuditViolation"


class ViolationEvents:
    def __init__(self, recorder: EventRecorder, namespace: str, *, involved_namespace: bool = False) -> None:
        self.recorder = recorder
        self.namespace = namespace
        self.involved_namespace = involved_namespace

    def _where(self, namespace: str | None) -> str:
        """The namespace an Event about an object in `namespace` (None: cluster-scoped) is written in."""
        return namespace if self.involved_namespace and namespace else self.namespace

    def admission(
        self, ref: ManifestRef, operation: Operation, requested_by: str, violations: Sequence[Violation]
    ) -> None:
        """An Event per violation of an admission request's object (the object need not exist: no uid)."""
        where = self._where(ref.namespace)
        regarding = Regarding(ref.api_version, ref.kind, where, ref.name, "")
        shown = f"{ref.kind} {ref.namespace}/{ref.name}" if ref.namespace else f"{ref.kind} {ref.name}"
        for violation in violations:
            reason = ADMISSION_REASONS[violation.enforcement_action]
            note = f"{operation} of {shown} by {requested_by}: {violation.constraint.key}: {violation.message}"
            self.recorder.record(regarding, "Warning", reason, "Admission", note)

    def audit(self, obj: dict[str, Any], violation: Violation) -> None:
        """An Event for a violation the audit found on an object of the cluster."""
        metadata = obj.get("metadata") or {}
        namespace = metadata.get("namespace")
        where = self._where(namespace)
        uid = str(metadata.get("uid", "")) if where == namespace else ""  # regarded in another namespace: not it
        regarding = Regarding(str(obj.get("apiVersion", "")), str(obj.get("kind", "")), where, metadata["name"], uid)
        shown = f"{namespace}/{metadata['name']}" if namespace else metadata["name"]
        note = f"{obj.get('kind')} {shown}: {violation.constraint.key}: {violation.message}"
        self.recorder.record(regarding, "Warning", AUDIT_REASON, "Audit", note)
