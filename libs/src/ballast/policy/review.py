"""`input.review` as Gatekeeper and gator build it: the JSON of an admission/v1 AdmissionRequest.

For a plain object (gator, audit, a bus check) the request is made up from the object: kind from apiVersion/kind,
name and namespace from its metadata (left out when empty), operation empty (as gator leaves it, unless the caller
knows it), no user. For an AdmissionReview (the webhook, or a gator case that is one) the request is taken as sent,
refusing fields an AdmissionRequest does not have; on DELETE the object is the old object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ballast.policy.constraints import Source, group_version_kind

ADMISSION_GROUP = "admission.k8s.io"
_REQUEST_FIELDS = frozenset(
    {
        "uid", "kind", "resource", "subResource", "requestKind", "requestResource", "requestSubResource", "name",
        "namespace", "operation", "userInfo", "object", "oldObject", "dryRun", "options",
    }
)  # fmt: skip


class ReviewError(ValueError):
    """An object that cannot be reviewed (an AdmissionReview without a usable request, say)."""


@dataclass(frozen=True)
class Review:
    """What the templates see (`request` becomes `input.review`) and what constraints match against."""

    request: dict[str, Any]
    object: dict[str, Any] | None
    old_object: dict[str, Any] | None
    namespace: dict[str, Any] | None = None  # the Namespace object, when known
    source: Source = "Original"

    @property
    def subject(self) -> dict[str, Any]:
        """The object the review is about (the old one for a DELETE)."""
        subject = self.object if self.object is not None else self.old_object
        assert subject is not None  # both absent is refused when the review is made
        return subject

    def input(self, parameters: dict[str, Any]) -> dict[str, Any]:
        return {"review": self.with_namespace(), "parameters": parameters}

    def with_namespace(self) -> dict[str, Any]:
        return self.request | {"namespaceObject": self.namespace}


def is_admission_review(obj: dict[str, Any]) -> bool:
    group, _, kind = group_version_kind(obj)
    return kind == "AdmissionReview" and group == ADMISSION_GROUP


def review_object(
    obj: dict[str, Any],
    *,
    namespace: dict[str, Any] | None = None,
    operation: str = "",
    source: Source = "Original",
) -> Review:
    """The review of a plain object, or of the request inside an AdmissionReview."""
    if is_admission_review(obj):
        return review_admission_request(obj.get("request"), namespace=namespace)
    group, version, kind = group_version_kind(obj)
    metadata = obj.get("metadata") or {}
    request: dict[str, Any] = {
        "uid": "",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": "", "version": "", "resource": ""},
        "operation": operation,
        "userInfo": {},
        "object": obj,
        "oldObject": None,
        "options": None,
    }
    if metadata.get("name"):
        request["name"] = metadata["name"]
    if metadata.get("namespace"):
        request["namespace"] = metadata["namespace"]
    return Review(request, obj, None, namespace, source)


def review_admission_request(raw: Any, *, namespace: dict[str, Any] | None = None) -> Review:
    """The review of an AdmissionRequest as the API server sends it (admission/v1, strictly)."""
    if not isinstance(raw, dict):
        raise ReviewError("the AdmissionReview has no request")
    unknown = sorted(set(raw) - _REQUEST_FIELDS)
    if unknown:
        raise ReviewError(f"the AdmissionRequest has unknown fields: {', '.join(unknown)}")
    new, old = raw.get("object"), raw.get("oldObject")
    if new is None and old is None:
        raise ReviewError('the AdmissionRequest has no "object" or "oldObject" to review')
    request: dict[str, Any] = {
        "uid": "",
        "kind": {"group": "", "version": "", "kind": ""},
        "resource": {"group": "", "version": "", "resource": ""},
        "operation": "",
        "userInfo": {},
        "object": None,
        "oldObject": None,
        "options": None,
    } | raw  # a copy of the request's fields; the objects are shared, never changed (nothing here writes to them)
    if request["operation"] == "DELETE" and old is not None:
        # Gatekeeper's SetObjectOnDelete: templates look at input.review.object whatever the operation.
        request["object"] = request["oldObject"]
        new = old
    return Review(request, new, old, namespace, "Original")
