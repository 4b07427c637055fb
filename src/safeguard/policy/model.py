"""The root :class:`Policy` model and :func:`load_policy`.

Policies are looked up by name in the shipped ``policies/`` folder
(``load_policy("healthcare-hipaa")``) or read from a path. Validation reports
every problem at once, each with its YAML path and line number.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError

from safeguard.errors import PolicyError
from safeguard.policy._base import Section
from safeguard.policy.pii import PIIPolicy
from safeguard.policy.privacy import PrivacyPolicy
from safeguard.policy.provenance import ProvenancePolicy
from safeguard.policy.watermark import WatermarkPolicy

__all__ = ["POLICY_DIR", "Policy", "PolicyIssue", "list_policies", "load_policy", "policy_digest"]

#: Folder of the policies shipped with the package.
POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"

SCHEMA_VERSION = 1


class Policy(Section):
    """A safeguard policy: one optional section per safeguard.

    Attributes:
        schema_version: Version of this schema (currently 1).
        name: Short name, e.g. ``healthcare-hipaa``.
        description: What the policy is for.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    name: str = Field(min_length=1)
    description: str = ""
    pii: PIIPolicy | None = None
    privacy: PrivacyPolicy | None = None
    watermark: WatermarkPolicy | None = None
    provenance: ProvenancePolicy | None = None
    source: str | None = Field(default=None, exclude=True)


class PolicyIssue:
    """One validation problem: where it is (YAML path and line) and what is wrong."""

    __slots__ = ("line", "message", "path")

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path}: {self.message}"

    def __repr__(self) -> str:
        return f"PolicyIssue({self.path!r}, {self.line!r}, {self.message!r})"


def list_policies() -> list[str]:
    """Names of the shipped policies."""
    return sorted(p.stem for p in POLICY_DIR.glob("*.yaml"))


def _resolve(name_or_path: str | Path) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"} or candidate.exists():
        if not candidate.exists():
            raise PolicyError(f"policy file {str(candidate)!r} does not exist")
        return candidate
    shipped = POLICY_DIR / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    known = ", ".join(list_policies()) or "(none)"
    raise PolicyError(
        f"unknown policy {str(name_or_path)!r}: not a file and not a shipped policy; known: {known}"
    )


def _line_index(
    node: yaml.Node,
    prefix: tuple[Any, ...],
    out: dict[tuple[Any, ...], int],
    duplicates: list[PolicyIssue] | None = None,
) -> None:
    out[prefix] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen and duplicates is not None:
                path = ".".join(str(p) for p in (*prefix, key))
                duplicates.append(
                    PolicyIssue(
                        path,
                        line,
                        f"duplicate key (first defined on line {seen[key]}); YAML would silently keep "
                        "only the last value, so remove one of them",
                    )
                )
            seen.setdefault(key, line)
            out[(*prefix, key)] = line
            _line_index(value_node, (*prefix, key), out, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*prefix, i), out, duplicates)


def _issues(exc: ValidationError, lines: dict[tuple[Any, ...], int]) -> list[PolicyIssue]:
    found = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        line = None
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in lines:
                line = lines[loc[:cut]]
                break
        path = ".".join(str(p) for p in loc) or "(top level)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key; remove it or check its spelling"
        elif "input" in err and err["type"] not in {"missing"}:
            message = f"{message} (got {err['input']!r})"
        found.append(PolicyIssue(path, line, message))
    return found


def validate_policy_text(
    text: str, source: str = "<string>"
) -> tuple[Policy | None, list[PolicyIssue]]:
    """Validate policy YAML text; return the policy (or None) and every issue found."""
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        return None, [PolicyIssue("(file)", line, f"not valid YAML: {exc}")]
    if not isinstance(data, dict):
        return None, [PolicyIssue("(top level)", 1, "a policy must be a YAML mapping")]
    lines: dict[tuple[Any, ...], int] = {}
    found: list[PolicyIssue] = []
    if node is not None:
        _line_index(node, (), lines, found)
    if "source" in data:  # set by the loader, not a policy key
        found.append(
            PolicyIssue(
                "source", lines.get(("source",)), "unknown key; remove it or check its spelling"
            )
        )
        data = {k: v for k, v in data.items() if k != "source"}
    policy: Policy | None = None
    try:
        policy = Policy.model_validate({**data, "source": source})
    except ValidationError as exc:
        found.extend(_issues(exc, lines))
    if found:
        found.sort(key=lambda i: (i.line is None, i.line or 0))
        return None, found
    return policy, []


def load_policy(name_or_path: str | Path) -> Policy:
    """Load a policy by shipped name (``"healthcare-hipaa"``) or by path.

    Raises:
        PolicyError: The policy is unknown, unreadable or invalid; the message lists every
            problem with its YAML path and line.
    """
    path = _resolve(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy {str(path)!r}: {exc}") from exc
    policy, issues = validate_policy_text(text, source=str(path))
    if issues:
        listing = "\n  ".join(str(i) for i in issues)
        raise PolicyError(
            f"policy {str(path)!r} is invalid ({len(issues)} problem(s)):\n  {listing}"
        )
    assert policy is not None
    return policy


def policy_digest(policy: Policy) -> str:
    """sha256 of the policy's canonical JSON (sorted keys, no whitespace), as ``sha256:<hex>``."""
    canonical = json.dumps(policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
