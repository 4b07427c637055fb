"""``safeguard policy``: validate policy files and check runs against a policy.

Sub-verbs::

    validate FILE...                        every problem at once, with YAML path and line
    check --policy P MANIFEST... [--pubkey K]
                                            does this run satisfy the policy?

Exit codes: 0 ok, 1 invalid policy or unmet policy, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from safeguard.errors import UsageError

__all__ = ["register"]


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _scheme_issues(policy: Any) -> list[Any]:
    """The watermark scheme must be registered (the policy layer itself knows no schemes)."""
    if policy is None or policy.watermark is None:
        return []
    from safeguard.policy.model import PolicyIssue
    from safeguard.watermark import list_schemes

    if policy.watermark.scheme in list_schemes():
        return []
    return [
        PolicyIssue(
            "watermark.scheme",
            None,
            f"unknown watermark scheme {policy.watermark.scheme!r}; known schemes: "
            + ", ".join(list_schemes()),
        )
    ]


def _validate(args: argparse.Namespace) -> int:
    from safeguard.policy.model import POLICY_DIR, validate_policy_text

    status = 0
    report = []
    for raw in args.files:
        path = Path(raw)
        if not path.exists() and (POLICY_DIR / f"{raw}.yaml").exists():
            path = POLICY_DIR / f"{raw}.yaml"
        if not path.exists():
            raise FileNotFoundError(
                f"policy file {raw!r} does not exist (and is not a shipped policy name)"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"policy file {raw!r} is not UTF-8 text: {exc}") from exc
        policy, issues = validate_policy_text(text, source=str(path))
        issues += _scheme_issues(policy)
        if issues:
            policy = None
        report.append(
            {
                "file": raw,
                "valid": not issues,
                "issues": [{"path": i.path, "line": i.line, "message": i.message} for i in issues],
            }
        )
        if issues:
            status = 1
        if not args.json:
            if issues:
                _out(f"{raw}: invalid ({len(issues)} problem(s))")
                for i in issues:
                    _out(f"  {raw}:{i.line or '?'}: {i.path}: {i.message}")
            else:
                assert policy is not None
                sections = [
                    s for s in ("pii", "privacy", "watermark", "provenance") if getattr(policy, s)
                ]
                _out(
                    f"{raw}: valid policy {policy.name!r} (sections: {', '.join(sections) or 'none'})"
                )
    if args.json:
        _out(json.dumps(report, indent=2))
    return status


def _check(args: argparse.Namespace) -> int:
    from safeguard.policy import load_policy
    from safeguard.provenance import load_manifest, verify_chain
    from safeguard.provenance.chain import unchecked_note, verify_manifests
    from safeguard.provenance.keys import load_public_key

    policy = load_policy(args.policy)
    keys = [load_public_key(p) for p in args.pubkey or []]
    prov = policy.provenance
    signing = bool(prov.signing_required) if prov is not None else False
    if signing and not keys:
        raise UsageError(
            f"policy {policy.name!r} requires signed manifests (provenance.signing_required); "
            "pass --pubkey KEY.pub"
        )
    chain = args.chain or (prov is not None and prov.require_chain)
    manifests = [load_manifest(p) for p in args.manifests]
    results: list[Any] = []
    if chain:
        for m in manifests:
            pool: list[Any] = [*manifests, m.base_dir, *(args.search or [])]
            results.append(
                verify_chain(
                    m,
                    manifests=pool,
                    public_keys=keys,
                    policy=policy,
                    require_signature=signing or bool(keys),
                )
            )
    else:
        results.append(
            verify_manifests(
                manifests,
                public_keys=keys,
                policy=policy,
                require_signature=signing,
                threshold=prov.min_signatures if prov else 1,
            )
        )
    ok = all(r.ok for r in results)
    unchecked = list(dict.fromkeys(u for r in results for u in r.unchecked))
    if args.json:
        _out(
            json.dumps(
                {
                    "policy": policy.name,
                    "ok": ok,
                    "unchecked": unchecked,
                    "links": [
                        {"name": lk.name, "ok": lk.ok, "detail": lk.detail}
                        for r in results
                        for lk in r.links
                    ],
                },
                indent=2,
            )
        )
    else:
        for r in results:
            for link in r.links:
                _out(f"  {'ok  ' if link.ok else 'FAIL'}  {link.name}: {link.detail}")
        if ok and unchecked:
            _out(
                f"the run satisfies policy {policy.name!r} as far as it was checked; "
                f"{unchecked_note(unchecked)}"
            )
        elif ok:
            _out(f"the run satisfies policy {policy.name!r}")
        else:
            names = ", ".join(dict.fromkeys(lk.name for r in results for lk in r.broken))
            _out(f"FAILED: the run does not satisfy policy {policy.name!r}; broken: {names}")
    return 0 if ok else 1


def register(subparsers: Any) -> None:
    """Add ``safeguard policy`` and its sub-verbs."""
    parser = subparsers.add_parser("policy", help="validate policies and check runs against them")
    parser.set_defaults(func=lambda args: (parser.print_help(sys.stderr), 2)[1])
    sub = parser.add_subparsers(dest="policy_verb", metavar="SUBVERB", parser_class=type(parser))

    p = sub.add_parser(
        "validate", help="report every problem in policy files, with YAML path and line"
    )
    p.add_argument(
        "files", nargs="+", metavar="FILE", help="policy YAML file (or shipped policy name)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_validate)

    p = sub.add_parser("check", help="does this run (its manifests) satisfy the policy?")
    p.add_argument("manifests", nargs="+", metavar="MANIFEST")
    p.add_argument("--policy", required=True, help="policy name or path")
    p.add_argument("--pubkey", action="append", help="trusted public key (repeatable)")
    p.add_argument(
        "--chain", action="store_true", help="walk the chain even if the policy does not require it"
    )
    p.add_argument(
        "--search", action="append", help="more files/folders holding the chain's manifests"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_check)
