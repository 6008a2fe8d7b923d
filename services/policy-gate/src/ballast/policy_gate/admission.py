"""The validating admission webhook: `POST /validate` takes an AdmissionReview v1 from the API server and answers it
with the gate's verdict, judged on the same path as `svc.policy.check`.

deny violations refuse the request (403, every denying constraint's message as Gatekeeper words it: `[name] msg`),
warn violations come back as `warnings` (the API server hands them to the client), dryrun ones are only logged. A
body that is not an AdmissionReview v1 gets a 400 saying what is wrong; an engine that cannot answer, a 503, so that
the webhook configuration's failurePolicy decides.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ballast.events.contracts.common import ManifestRef
from ballast.events.contracts.policy import DecisionSource, EnforcementAction, Operation
from ballast.policy import OpaError, ReviewError, Violation, review_admission_request
from ballast.policy_gate.gate import Gate, Judgement

log = logging.getLogger(__name__)

VALIDATE_PATH = "/validate"
ADMISSION_API_VERSION = "admission.k8s.io/v1"


class UserInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    username: str = ""


class AdmissionRequest(BaseModel):
    """The fields the gate reads itself; the whole request, strictly checked, becomes `input.review`."""

    model_config = ConfigDict(extra="allow")

    uid: str = Field(min_length=1)
    operation: Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
    namespace: str = ""
    name: str = ""
    user_info: UserInfo = Field(default_factory=UserInfo, alias="userInfo")


class AdmissionReview(BaseModel):
    model_config = ConfigDict(extra="allow")

    api_version: Literal["admission.k8s.io/v1"] = Field(alias="apiVersion")
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest


class MalformedReview(ValueError):
    """The body is not an AdmissionReview v1 the gate can judge; the message says why."""


def parse_review(body: bytes) -> tuple[AdmissionReview, dict[str, Any]]:
    """The review and its raw request (what `input.review` is made of)."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedReview(f"the body is not JSON: {exc}") from exc
    try:
        review = AdmissionReview.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise MalformedReview(f"not an {ADMISSION_API_VERSION} AdmissionReview: {problems}") from exc
    return review, raw["request"]


def subject_ref(request: AdmissionRequest, subject: dict[str, Any]) -> ManifestRef:
    metadata = subject.get("metadata") or {}
    name = request.name or metadata.get("name") or metadata.get("generateName")
    api_version, kind = subject.get("apiVersion"), subject.get("kind")
    if not (isinstance(api_version, str) and api_version and isinstance(kind, str) and kind and name):
        raise MalformedReview("the request's object needs apiVersion, kind and a name")
    return ManifestRef(api_version=api_version, kind=kind, namespace=request.namespace or None, name=str(name))


def admission_response(uid: str, judgement: Judgement) -> dict[str, Any]:
    def worded(v: Violation) -> str:
        return f"[{v.constraint.name}] {v.message}"

    denials = [worded(v) for v in judgement.denials]
    warnings = [worded(v) for v in judgement.violations if v.enforcement_action is EnforcementAction.WARN]
    warnings += [
        f"[{v.constraint.name}] admitted as a hotfix ({judgement.override_reason}) despite: {v.message}"
        for v in judgement.overridden
    ]
    response: dict[str, Any] = {"uid": uid, "allowed": not denials}
    if denials:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": "\n".join(denials)}
    if warnings:
        response["warnings"] = warnings
    return {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": response}


def admission_routes(gate: Callable[[], Gate]) -> list[web.RouteDef]:
    """The webhook's routes; `gate` gives the open gate (the HTTPS server starts after it has opened)."""

    async def validate(http: web.Request) -> web.Response:
        started = time.perf_counter()
        the_gate = gate()
        try:
            review, raw = parse_review(await http.read())
            judged = review_admission_request(raw, namespace=the_gate.namespace(review.request.namespace))
            ref = subject_ref(review.request, judged.subject)
        except (MalformedReview, ReviewError) as exc:
            raise web.HTTPBadRequest(text=f"malformed AdmissionReview: {exc}") from exc
        request = review.request
        try:
            freeze = await the_gate.freeze_at_admission(judged)
            (judgement,) = await the_gate.judge(
                [judged],
                [ref],
                source=DecisionSource.ADMISSION,
                request_uid=request.uid,
                operation=Operation(request.operation.lower()),
                requested_by=request.user_info.username,
                freezes=[freeze],
                started=started,
                namespaces=[request.namespace],
            )
        except OpaError as exc:
            log.warning("admission review %s not judged: %s", request.uid, exc)
            raise web.HTTPServiceUnavailable(text=f"the policy engine is unavailable: {exc}") from exc
        return web.Response(
            body=orjson.dumps(admission_response(request.uid, judgement)), content_type="application/json"
        )

    return [web.post(VALIDATE_PATH, validate)]
