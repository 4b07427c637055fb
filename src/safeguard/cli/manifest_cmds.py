"""``safeguard manifest``: create, sign, show and verify provenance manifests.

Sub-verbs::

    keygen OUT                      Ed25519 key pair: OUT (mode 0600) and OUT.pub
    digest PATH...                  sha256 of files, combined digest of folders
    dataset DATA.jsonl -o M         dataset manifest with the records' Merkle root
    create KIND --subject P --predicate PRED.json -o M
                                    any registered kind from a predicate JSON file
                                    (scrub: or --scrub-report REPORT.json)
    sign M --key KEY                add a signature (several keys may sign)
    show M                          what a manifest says (no checks)
    verify M --pubkey KEY [--chain] signature, predicate schema, subject digests, chain, policy
    prove DATA.jsonl --index N      inclusion proof of one record
    check-record M --proof P --record-file R
                                    is this exact record in the dataset? (root alone)
    export M --format croissant|model-card

Exit codes: 0 ok, 1 a failed verification, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from safeguard.errors import DataError, UsageError, VerificationError

__all__ = ["register"]

PASSPHRASE_ENV = "SAFEGUARD_KEY_PASSPHRASE"


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode("utf-8") if value else None


def _private_key(path: str) -> Any:
    from safeguard.provenance.keys import load_private_key

    return load_private_key(path, password=_passphrase())


def _public_keys(paths: list[str] | None) -> list[Any]:
    from safeguard.provenance.keys import load_public_key

    return [load_public_key(p) for p in paths or []]


def _read_json(path: str, what: str) -> Any:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} {str(p)!r} does not exist")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{what} {str(p)!r} is not valid JSON: {exc}") from exc


# --------------------------------------------------------------------------- sub-verbs


def _keygen(args: argparse.Namespace) -> int:
    from safeguard.provenance.keys import generate_keypair

    key = generate_keypair(args.out, password=_passphrase(), overwrite=args.force)
    pub = args.out + ".pub"
    _out(f"private key: {args.out} (mode 0600; keep it secret)")
    _out(f"public key:  {pub} (share it with verifiers)")
    _out(f"key id:      {key.key_id}")
    return 0


def _digest(args: argparse.Namespace) -> int:
    from safeguard.provenance.digest import digest_directory, sha256_file

    for raw in args.paths:
        p = Path(raw)
        if not p.exists():
            raise FileNotFoundError(f"{raw!r} does not exist")
        if p.is_dir():
            d = digest_directory(p)
            _out(f"sha256:{d.sha256}  {raw}/  ({len(d.files)} files)")
            if args.files:
                for f in d.files:
                    _out(f"  sha256:{f.sha256}  {f.path}")
        else:
            _out(f"sha256:{sha256_file(p)}  {raw}")
    return 0


def _dataset(args: argparse.Namespace) -> int:
    from safeguard.provenance import dataset_predicate, dataset_root, write_manifest

    count, root = dataset_root(args.data)
    sources = [{"uri": s} for s in args.source or []]
    if args.license and sources:
        for s in sources:
            s["license"] = args.license[0]
    pred = dataset_predicate(
        name=args.name or Path(args.data).stem,
        record_count=count,
        merkle_root=root,
        sources=sources,
        licenses=args.license or [],
        description=args.description,
    )
    key = _private_key(args.key) if args.key else None
    write_manifest("dataset", [args.data], pred, args.output, signing_key=key)
    _out(f"wrote dataset manifest {args.output}: {count} records, Merkle root {root}")
    return 0


def _create(args: argparse.Namespace) -> int:
    from safeguard.provenance import scrub_predicate_from_report, write_manifest

    if (args.predicate is None) == (args.scrub_report is None):
        raise UsageError("give exactly one of --predicate PRED.json and --scrub-report REPORT.json")
    if args.scrub_report is not None:
        if args.kind != "scrub":
            raise UsageError(f"--scrub-report builds a scrub manifest, not a {args.kind!r} one")
        report = _read_json(args.scrub_report, "scrub report")
        if not isinstance(report, dict):
            raise DataError(f"scrub report {args.scrub_report!r} must hold a JSON object")
        measured_on = (
            {"dataset": args.measured_on, "kind": args.measured_kind} if args.measured_on else None
        )
        predicate = scrub_predicate_from_report(
            report, measured_recall=args.measured_recall, measured_on=measured_on
        )
    else:
        predicate = _read_json(args.predicate, "predicate file")
    if not isinstance(predicate, dict):
        raise DataError(f"predicate file {args.predicate!r} must hold a JSON object")
    key = _private_key(args.key) if args.key else None
    write_manifest(args.kind, args.subject, predicate, args.output, signing_key=key)
    _out(f"wrote {args.kind} manifest {args.output}" + (" (signed)" if key else " (unsigned)"))
    return 0


def _sign(args: argparse.Namespace) -> int:
    from safeguard.provenance import load_manifest, sign

    if not args.key:
        raise UsageError("manifest sign needs --signing-key PATH (an Ed25519 private key)")
    manifest = load_manifest(args.manifest)
    key = _private_key(args.key)
    envelope = sign(manifest, key)
    out = Path(args.output or args.manifest)
    out.write_text(envelope.to_json(), encoding="utf-8")
    _out(f"signed {out} with key id {key.key_id} ({len(envelope.signatures)} signature(s))")
    return 0


def _summary(m: Any) -> dict[str, Any]:
    pred = m.statement.predicate
    facts: dict[str, Any] = {}
    if m.kind == "dataset":
        facts = {
            "name": pred["name"],
            "records": pred["record_count"],
            "merkle_root": pred["merkle"]["root"],
            "licenses": pred.get("licenses", []),
        }
    elif m.kind == "scrub":
        facts = {
            "policy": pred["policy"]["name"],
            "entity_counts": pred["entity_counts"],
            "quarantined": pred["quarantined"],
            "inputs": [i.get("name") for i in pred["inputs"]],
            "measured_recall": pred.get("measured_recall"),
        }
    elif m.kind == "training":
        bd = pred["buildDefinition"]
        facts = {
            "buildType": bd["buildType"],
            "dp": bd["externalParameters"].get("dp"),
            "dependencies": [
                f"{d.get('annotations', {}).get('role', '?')}: {d.get('name') or d.get('uri')}"
                for d in bd.get("resolvedDependencies", [])
            ],
            "byproducts": [
                b.get("annotations", b.get("name"))
                for b in pred["runDetails"].get("byproducts", [])
            ],
        }
    elif m.kind == "generation":
        facts = {
            "model": pred["model"].get("name"),
            "model_sha256": pred["model"]["digest"]["sha256"],
            "digitalSourceType": pred["digitalSourceType"],
            "watermark": pred.get("watermark"),
        }
    return {
        "file": str(m.path) if m.path else None,
        "kind": m.kind,
        "predicateType": m.statement.predicate_type,
        "subjects": [{"name": s.name, "sha256": s.sha256} for s in m.statement.subjects],
        "signatures": [s.keyid for s in m.envelope.signatures],
        "facts": facts,
    }


def _show(args: argparse.Namespace) -> int:
    from safeguard.provenance import load_manifest

    m = load_manifest(args.manifest)
    summary = _summary(m)
    if args.json:
        if args.full:
            summary["statement"] = m.statement.to_dict()
        _out(json.dumps(summary, indent=2))
        return 0
    _out(f"{summary['file']}: {m.kind} manifest ({m.statement.predicate_type})")
    for s in summary["subjects"]:
        _out(f"  subject   {s['name']}  sha256:{s['sha256']}")
    if summary["signatures"]:
        for k in summary["signatures"]:
            _out(f"  signature by key id {k} (not checked; use `manifest verify`)")
    else:
        _out("  unsigned")
    for k, v in summary["facts"].items():
        _out(f"  {k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}")
    if args.full:
        _out(json.dumps(m.statement.to_dict(), indent=2))
    return 0


def _print_links(result: Any, as_json: bool) -> None:
    if as_json:
        _out(
            json.dumps(
                {
                    "ok": result.ok,
                    "summary": result.verdict,
                    "unchecked": list(result.unchecked),
                    "links": [
                        {"name": lk.name, "ok": lk.ok, "detail": lk.detail} for lk in result.links
                    ],
                },
                indent=2,
            )
        )
        return
    for link in result.links:
        _out(f"  {'ok  ' if link.ok else 'FAIL'}  {link.name}: {link.detail}")
    _out(result.verdict)


def _load_policy(name: str | None) -> Any:
    if not name:
        return None
    from safeguard.policy import load_policy

    return load_policy(name)


def _verify(args: argparse.Namespace) -> int:
    from safeguard.provenance import verify_chain
    from safeguard.provenance.chain import verify_manifests

    keys = _public_keys(args.pubkey)
    policy = _load_policy(args.policy)
    if not keys and not args.allow_unsigned:
        raise UsageError(
            "no public key given: pass --pubkey KEY.pub (repeatable), or --allow-unsigned to check "
            "digests and schema only"
        )
    require_signature = not args.allow_unsigned
    status = 0
    for path in args.manifests:
        if args.chain:
            pool = [Path(path).parent, *(args.search or [])]
            result = verify_chain(
                path,
                manifests=pool,
                public_keys=keys,
                policy=policy,
                require_signature=require_signature,
                check_subjects=not args.skip_subjects,
                require_subjects=args.require_subjects,
            )
        else:
            result = verify_manifests(
                [path],
                public_keys=keys,
                policy=policy,
                require_signature=require_signature,
                threshold=args.threshold,
                check_subjects=not args.skip_subjects,
                require_subjects=args.require_subjects,
            )
        if not args.json:
            _out(f"{path}:")
        _print_links(result, args.json)
        if not result.ok:
            status = 1
    return status


def _prove(args: argparse.Namespace) -> int:
    from safeguard.provenance import prove_record

    record, proof = prove_record(args.data, args.index)
    doc = {"record": record.decode("utf-8", errors="replace"), **proof.to_dict()}
    text = json.dumps(doc, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        _out(
            f"wrote proof of record {args.index} ({len(proof.path)} hashes, {proof.size_bytes} bytes) to {args.output}"
        )
    else:
        sys.stdout.write(text)
    return 0


def _check_record(args: argparse.Namespace) -> int:
    from safeguard.provenance import InclusionProof, load_manifest, verify

    m = load_manifest(args.manifest)
    if m.kind != "dataset":
        raise DataError(
            f"{args.manifest!r} is a {m.kind} manifest; check-record needs a dataset manifest"
        )
    keys = _public_keys(args.pubkey)
    if keys:
        verify(m, keys, check_subjects=False)
    elif not args.allow_unsigned:
        raise UsageError("pass --pubkey KEY.pub so the root is trusted, or --allow-unsigned")
    doc = _read_json(args.proof, "proof file")
    if not isinstance(doc, dict):
        raise DataError(f"proof file {args.proof!r} must hold a JSON object")
    proof = InclusionProof.from_dict(doc)
    if args.record_file:
        rec_path = Path(args.record_file)
        if not rec_path.exists():
            raise FileNotFoundError(f"record file {args.record_file!r} does not exist")
        record: bytes | str = rec_path.read_bytes().rstrip(b"\r\n")
    elif args.record is not None:
        record = args.record
    elif "record" in doc:
        record = doc["record"]
    else:
        raise UsageError("give the record with --record TEXT or --record-file FILE")
    pred = m.statement.predicate
    if proof.tree_size != pred["record_count"]:
        raise VerificationError(
            f"the proof is for a dataset of {proof.tree_size} records; the manifest has {pred['record_count']}"
        )
    if not proof.verify(record, pred["merkle"]["root"]):
        raise VerificationError(
            f"record {proof.index} is not in the dataset of {args.manifest!r}: the proof does not lead "
            f"to Merkle root {pred['merkle']['root'][:16]}..."
        )
    _out(
        f"record {proof.index} is in dataset {pred['name']!r} (Merkle root {pred['merkle']['root']})"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from safeguard.provenance import croissant_metadata, load_manifest, model_card_section

    m = load_manifest(args.manifest)
    if args.format == "croissant":
        scrub = load_manifest(args.scrub) if args.scrub else None
        raw = load_manifest(args.raw) if args.raw else None
        text = json.dumps(croissant_metadata(m, scrub=scrub, raw=raw), indent=2) + "\n"
    else:
        text = model_card_section(m)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        _out(f"wrote {args.format} export to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


# --------------------------------------------------------------------------- parser


def register(subparsers: Any) -> None:
    """Add ``safeguard manifest`` and its sub-verbs."""
    parser = subparsers.add_parser(
        "manifest",
        help="create, sign, show and verify provenance manifests",
        description="Signed provenance manifests (in-toto Statement v1 in DSSE envelopes, Ed25519).",
    )
    parser.set_defaults(func=lambda args: (parser.print_help(sys.stderr), 2)[1])
    sub = parser.add_subparsers(dest="manifest_verb", metavar="SUBVERB", parser_class=type(parser))
    for add in (
        _add_keygen,
        _add_digest,
        _add_dataset,
        _add_create,
        _add_sign,
        _add_show,
        _add_verify,
        _add_prove,
        _add_check_record,
        _add_export,
    ):
        add(sub)


def _add_output(p: argparse.ArgumentParser, **kwargs: Any) -> None:
    """``-o/--out/--output``: where a sub-verb writes."""
    p.add_argument("-o", "--out", "--output", dest="output", **kwargs)


def _add_signing_key(p: argparse.ArgumentParser, help_text: str) -> None:
    """``--signing-key`` (and ``--key``, its older, hidden name)."""
    p.add_argument("--signing-key", dest="key", help=help_text)
    p.add_argument("--key", dest="key", help=argparse.SUPPRESS)  # the older name


def _add_keygen(sub: Any) -> None:
    p = sub.add_parser("keygen", help="create an Ed25519 key pair (private 0600, public .pub)")
    p.add_argument("out", help="private key path; the public key goes to OUT.pub")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=_keygen)


def _add_digest(sub: Any) -> None:
    p = sub.add_parser(
        "digest", help="sha256 of files and folders (folders: OpenSSF model-signing style)"
    )
    p.add_argument("paths", nargs="+")
    p.add_argument("--files", action="store_true", help="also list the per-file digests of folders")
    p.set_defaults(func=_digest)


def _add_dataset(sub: Any) -> None:
    p = sub.add_parser("dataset", help="write a dataset manifest with the records' Merkle root")
    p.add_argument("data", help="JSONL file (one record per non-empty line)")
    _add_output(p, required=True, help="manifest path")
    p.add_argument("--name", help="dataset name (default: file stem)")
    p.add_argument("--license", action="append", help="licence (repeatable)")
    p.add_argument("--source", action="append", help="source URI (repeatable)")
    p.add_argument("--description")
    _add_signing_key(p, "Ed25519 private key to sign with")
    p.set_defaults(func=_dataset)


def _add_create(sub: Any) -> None:
    p = sub.add_parser("create", help="write a manifest of any kind from a predicate JSON file")
    p.add_argument("kind", help="dataset, scrub, training or generation")
    p.add_argument("--subject", action="append", required=True, help="artifact path (repeatable)")
    p.add_argument("--predicate", help="JSON file with the predicate")
    p.add_argument(
        "--scrub-report", help="scrub: build the predicate from `safeguard scrub`'s report JSON"
    )
    p.add_argument("--measured-recall", type=float, help="scrub: recall measured on labelled data")
    p.add_argument(
        "--measured-on",
        metavar="DATASET",
        help="scrub: the labelled data --measured-recall was measured on (required with it)",
    )
    p.add_argument(
        "--measured-kind",
        choices=("synthetic-templates", "hand-labelled", "held-out", "production-sample"),
        default="hand-labelled",
        help="scrub: what kind of data --measured-on is (default: hand-labelled)",
    )
    _add_output(p, required=True, help="manifest path")
    _add_signing_key(p, "Ed25519 private key to sign with")
    p.set_defaults(func=_create)


def _add_sign(sub: Any) -> None:
    p = sub.add_parser("sign", help="add a signature to a manifest")
    p.add_argument("manifest")
    _add_signing_key(p, "Ed25519 private key (PEM; required); passphrase from $" + PASSPHRASE_ENV)
    _add_output(p, help="write here instead of in place")
    p.set_defaults(func=_sign)


def _add_show(sub: Any) -> None:
    p = sub.add_parser("show", help="print what a manifest says (no checks)")
    p.add_argument("manifest")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--full", action="store_true", help="also print the whole statement")
    p.set_defaults(func=_show)


def _add_verify(sub: Any) -> None:
    p = sub.add_parser(
        "verify", help="verify signature, predicate schema, subject digests (and the chain)"
    )
    p.add_argument("manifests", nargs="+", metavar="MANIFEST")
    p.add_argument("--pubkey", action="append", help="trusted public key (repeatable)")
    p.add_argument(
        "--threshold", type=int, default=1, help="distinct trusted keys that must have signed"
    )
    p.add_argument(
        "--chain", action="store_true", help="walk generation -> training -> scrub -> raw data"
    )
    p.add_argument(
        "--search",
        action="append",
        help="more files/folders holding the chain's manifests (default: the manifest's folder)",
    )
    p.add_argument("--policy", help="policy name or path the run must satisfy")
    p.add_argument("--allow-unsigned", action="store_true", help="skip signature checks")
    p.add_argument(
        "--require-subjects",
        action="store_true",
        help="fail when a subject file or folder is absent (names are relative to the manifest's "
        "folder); a policy with provenance.require_subjects always does",
    )
    p.add_argument("--skip-subjects", action="store_true", help="do not recompute subject digests")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_verify)


def _add_prove(sub: Any) -> None:
    p = sub.add_parser("prove", help="inclusion proof of one record of a JSONL dataset")
    p.add_argument("data")
    p.add_argument("--index", type=int, required=True, help="0-based record index")
    _add_output(p, help="write the proof JSON here (default: stdout)")
    p.set_defaults(func=_prove)


def _add_check_record(sub: Any) -> None:
    p = sub.add_parser(
        "check-record", help="check a record against a dataset manifest's Merkle root"
    )
    p.add_argument("manifest", help="dataset manifest")
    p.add_argument("--proof", required=True, help="proof JSON from `manifest prove`")
    p.add_argument("--record", help="the record text (default: the one stored in the proof)")
    p.add_argument("--record-file", help="file holding the record")
    p.add_argument("--pubkey", action="append", help="trusted public key for the manifest")
    p.add_argument("--allow-unsigned", action="store_true")
    p.set_defaults(func=_check_record)


def _add_export(sub: Any) -> None:
    p = sub.add_parser(
        "export", help="Croissant RAI JSON-LD (dataset) or a model-card section (training)"
    )
    p.add_argument("manifest")
    p.add_argument("--format", choices=["croissant", "model-card"], required=True)
    p.add_argument("--scrub", help="scrub manifest that produced the dataset (croissant)")
    p.add_argument("--raw", help="dataset manifest of the raw data (croissant)")
    _add_output(p, help="write here (default: stdout)")
    p.set_defaults(func=_export)
