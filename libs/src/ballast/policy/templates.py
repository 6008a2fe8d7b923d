"""Gatekeeper ConstraintTemplates (`templates.gatekeeper.sh/v1`) and the Rego modules they become in one shared OPA.

Gatekeeper compiles each template apart (its own compiler, the entry package rewritten to `data.template`, libs under
`data.libs`). One OPA holds every template here, so each template's modules are moved under a package of its own:
the entry module to `ballast.templates.<Kind>.main`, its libs (`package lib.<x>`) to
`ballast.templates.<Kind>.lib.<x>`, and its `data.lib` references with them. Two templates may then ship different
versions of the same lib. Only the `package` line and `data.lib` references change, so OPA's messages keep the rows
of the template's own text. `data.inventory` stays shared, as in Gatekeeper.

OPA runs in v0-compatible mode and takes the Rego version of a whole server, not of a module: a v1 template is loaded
with `import rego.v1`, with which OPA parses and checks that module as v1. The import takes the blank line after the
package when there is one; otherwise it is a line of its own and the rows after it are told one less in messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

TARGET = "admission.k8s.gatekeeper.sh"
API_GROUP = "templates.gatekeeper.sh"
ROOT = "ballast.templates"

_PACKAGE = re.compile(r"^(?P<indent>[ \t]*)package[ \t]+(?P<path>[A-Za-z_][\w.\[\]\"]*)", re.MULTILINE)
_LIB_REF = re.compile(r"\bdata\.lib\b")
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_IMPORTS_V1 = re.compile(r"^[ \t]*import[ \t]+rego\.v1[ \t]*$", re.MULTILINE)


class TemplateError(ValueError):
    """A ConstraintTemplate that cannot be used: malformed, or its Rego refused (the compiler's message)."""


@dataclass(frozen=True)
class RegoModule:
    module_id: str  # the id OPA's messages name
    source: str  # as loaded into OPA
    inserted_row: int | None = None  # a line added to the author's text (`import rego.v1`), if one had to be


@dataclass(frozen=True)
class ConstraintTemplate:
    name: str
    kind: str  # the constraint kind the template creates
    rego: str
    libs: tuple[str, ...]
    version: Literal["v0", "v1"]
    parameters_schema: dict[str, Any] | None
    manifest: dict[str, Any]

    @property
    def package(self) -> str:
        return f"{ROOT}.{self.kind}"

    @property
    def module_prefix(self) -> str:
        return f"templates/{self.kind}"

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> ConstraintTemplate:
        """Reads a ConstraintTemplate object; `TemplateError` says what is wrong with it."""
        api_version = str(manifest.get("apiVersion", ""))
        if manifest.get("kind") != "ConstraintTemplate" or api_version.split("/")[0] != API_GROUP:
            raise TemplateError(f"not a ConstraintTemplate: {api_version} {manifest.get('kind')}")
        name = str((manifest.get("metadata") or {}).get("name") or "")
        spec = manifest.get("spec") or {}
        crd_spec = ((spec.get("crd") or {}).get("spec")) or {}
        kind = str((crd_spec.get("names") or {}).get("kind") or "")
        if not _KIND.match(kind):
            raise TemplateError(f"ConstraintTemplate {name!r}: spec.crd.spec.names.kind {kind!r} is not a kind name")
        if name != kind.lower():
            # Gatekeeper's own rule: the template is named after the kind it creates.
            raise TemplateError(f"ConstraintTemplate {name!r}: its name must be the lowercase of its kind {kind!r}")
        targets = spec.get("targets") or []
        if len(targets) != 1 or (targets[0] or {}).get("target") != TARGET:
            raise TemplateError(f"ConstraintTemplate {name!r}: exactly one target, {TARGET}, is supported")
        target = targets[0]
        rego, libs, version = _rego_source(name, target)
        schema = ((crd_spec.get("validation") or {}).get("openAPIV3Schema")) or None
        return cls(name, kind, rego, tuple(libs), version, schema, manifest)

    def modules(self) -> list[RegoModule]:
        """The libs first (the entry module imports them), then the entry module."""
        modules = [self._module(f"{self.module_prefix}/libs/{i}", lib, is_lib=True) for i, lib in enumerate(self.libs)]
        modules.append(self._module(f"{self.module_prefix}/rego", self.rego, is_lib=False))
        return modules

    def _module(self, module_id: str, source: str, *, is_lib: bool) -> RegoModule:
        found = _PACKAGE.search(source)
        if found is None:
            raise TemplateError(f"ConstraintTemplate {self.name!r}: a Rego module has no package")
        path = found.group("path")
        if is_lib:
            if not (path == "lib" or path.startswith("lib.")):
                raise TemplateError(f"ConstraintTemplate {self.name!r}: lib package {path!r} must be under lib")
            new_path = f"{self.package}.{path}"
        else:
            new_path = f"{self.package}.main"
        before, after = source[: found.start()], source[found.end() :]
        head = f"{found.group('indent')}package {new_path}"
        inserted = None
        if self.version == "v1" and not _IMPORTS_V1.search(source):
            rest_of_line, newline, following = after.partition("\n")
            blank, blank_end, tail = following.partition("\n")
            if newline and blank_end and not blank.strip():
                after = f"{rest_of_line}\nimport rego.v1\n{tail}"
            else:
                inserted = before.count("\n") + 2
                after = f"{rest_of_line}\nimport rego.v1{newline}{following}"
        rewritten = _LIB_REF.sub(f"data.{self.package}.lib", before + head + after)
        return RegoModule(module_id, rewritten, inserted)


def _rego_source(name: str, target: dict[str, Any]) -> tuple[str, list[str], Literal["v0", "v1"]]:
    """`code: [{engine: Rego, source: {rego, libs, version}}]`, else the legacy `rego` and `libs`."""
    for code in target.get("code") or []:
        if (code or {}).get("engine") == "Rego":
            source = code.get("source") or {}
            version = str(source.get("version") or "v0")
            if version not in ("v0", "v1"):
                raise TemplateError(f"ConstraintTemplate {name!r}: Rego version {version!r} is not v0 or v1")
            rego = source.get("rego")
            if not isinstance(rego, str) or not rego.strip():
                raise TemplateError(f"ConstraintTemplate {name!r}: the Rego engine's source has no rego")
            return rego, _libs(name, source.get("libs")), "v1" if version == "v1" else "v0"
    rego = target.get("rego")
    if not isinstance(rego, str) or not rego.strip():
        raise TemplateError(f"ConstraintTemplate {name!r}: no Rego (targets[0].rego or a Rego engine in code)")
    return rego, _libs(name, target.get("libs")), "v0"


def _libs(name: str, libs: Any) -> list[str]:
    if libs is None:
        return []
    if not isinstance(libs, list) or not all(isinstance(lib, str) for lib in libs):
        raise TemplateError(f"ConstraintTemplate {name!r}: libs must be a list of Rego modules")
    return list(libs)
