"""Gatekeeper-compatible policy evaluation on the real OPA: the engine the policy-gate serves and the CLI runs.

ConstraintTemplates (Rego v0 and v1) compiled by OPA, constraints with Gatekeeper's `spec.match` and enforcement
actions, `input.review` as gator builds it, ExpansionTemplates, gator's suite runner, and OPA as a managed process.
"""

from ballast.policy.constraints import Constraint, ConstraintError, Match, MatchError
from ballast.policy.engine import PolicyEngine, Violation, inventory_document
from ballast.policy.expansion import WORKLOAD_EXPANSIONS, ExpansionTemplate
from ballast.policy.opa import OpaClient, OpaError, OpaUnavailable, RegoError
from ballast.policy.policyset import PolicySet, load_policies, read_policies
from ballast.policy.process import ManagedOpa
from ballast.policy.review import Review, ReviewError, review_admission_request, review_object
from ballast.policy.templates import ConstraintTemplate, TemplateError

__all__ = [
    "WORKLOAD_EXPANSIONS",
    "Constraint",
    "ConstraintError",
    "ConstraintTemplate",
    "ExpansionTemplate",
    "ManagedOpa",
    "Match",
    "MatchError",
    "OpaClient",
    "OpaError",
    "OpaUnavailable",
    "PolicyEngine",
    "PolicySet",
    "RegoError",
    "Review",
    "ReviewError",
    "TemplateError",
    "Violation",
    "inventory_document",
    "load_policies",
    "read_policies",
    "review_admission_request",
    "review_object",
]
