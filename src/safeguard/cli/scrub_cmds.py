"""``safeguard scrub``: scrub PII/PHI from a JSONL, CSV or Parquet file under a policy.

    safeguard scrub IN OUT --policy healthcare-hipaa [--field text] [--report report.json]
                    [--resume] [--quarantine q.jsonl] [--allow-quarantine] [--key-file k.json]
    safeguard scrub-key PATH          # new pseudonym key file (0600); prints its key id

Exit codes: 0 done; 1 done but records were quarantined (unless ``--allow-quarantine``);
2 usage or input error (missing/unreadable file, unknown field, malformed policy, ...).

A record that cannot be read (invalid UTF-8, malformed JSON, a lone surrogate such as
``"\\ud800"``, not an object) is quarantined with its line number and reason like any other
bad record, and every other record is scrubbed; an input whose whole first batch is
unreadable (a binary file, not JSONL) is refused with exit code 2. The quarantine file and
the resume checkpoint are written with mode 0600 (they hold raw records / input digests).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register"]

_EPILOG = """\
exit codes:
  0  done (or records quarantined, with --allow-quarantine)
  1  done, but some records were quarantined: each quarantine entry has the line number and
     the reason (invalid UTF-8, malformed JSON, lone surrogate, missing field, too large, ...)
  2  usage or input error: missing or unreadable input (or an I/O error), an input that is
     not JSONL at all, unknown field, bad policy, a --resume whose input changed
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "scrub",
        help="scrub PII/PHI from a JSONL, CSV or Parquet file",
        description="Scrub the text fields of every record of IN into OUT under a policy's `pii:` section.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_input_args(p)
    _add_output_args(p)
    _add_run_args(p)
    p.set_defaults(func=_scrub)

    k = subparsers.add_parser(
        "scrub-key",
        help="create a pseudonym key file for keyed scrub operators",
        description="Write a new random pseudonym key (JSON, mode 0600) and print its key id.",
    )
    k.add_argument("path", help="where to write the key file (must not exist)")
    k.set_defaults(func=_scrub_key)


def _add_input_args(p: argparse.ArgumentParser) -> None:
    """IN, OUT, the policy, the fields and the formats."""
    p.add_argument("input", metavar="IN", help="input file (.jsonl, .csv or .parquet)")
    p.add_argument("output", metavar="OUT", help="output file (format from its suffix)")
    p.add_argument(
        "--policy",
        default="healthcare-hipaa",
        help="policy name or YAML path (default: healthcare-hipaa)",
    )
    p.add_argument(
        "--field",
        action="append",
        dest="fields",
        metavar="PATH",
        help="field to scrub; dotted paths and * for lists (e.g. messages.*.content); repeatable; default: text",
    )
    p.add_argument(
        "--format", dest="input_format", choices=("jsonl", "csv", "parquet"), help="input format"
    )
    p.add_argument("--output-format", choices=("jsonl", "csv", "parquet"), help="output format")


def _add_output_args(p: argparse.ArgumentParser) -> None:
    """Report, resume, overwrite, quarantine, pseudonym key and patient field."""
    p.add_argument("--report", metavar="PATH", help="write the scrub report (JSON) here")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.add_argument(
        "--quarantine", metavar="PATH", help="quarantine file (default: OUT.quarantine.jsonl)"
    )
    p.add_argument(
        "--allow-quarantine",
        action="store_true",
        help="exit 0 even if some records were quarantined",
    )
    p.add_argument(
        "--key-file",
        metavar="PATH",
        help="pseudonym key for pseudonym/surrogate/date_shift operators",
    )
    p.add_argument(
        "--patient-field", metavar="PATH", help="field grouping records per patient (date shifting)"
    )


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """Batches, processes, NER, engine, manifest and progress bar."""
    p.add_argument(
        "--batch-size", type=int, default=256, help="records per batch and checkpoint (default 256)"
    )
    p.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    p.add_argument(
        "--max-record-bytes",
        type=int,
        default=16 << 20,
        help="quarantine records larger than this (default 16 MiB)",
    )
    p.add_argument(
        "--no-ner",
        action="store_true",
        help="patterns only: much faster, lower recall on names/places",
    )
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (in-process, default) or ray (Ray Data; RAY_ADDRESS picks a cluster)",
    )
    p.add_argument(
        "--manifest", metavar="PATH", help="write a provenance manifest of the scrub run here"
    )
    p.add_argument(
        "--signing-key", metavar="PATH", help="Ed25519 private key to sign --manifest with"
    )
    bar = p.add_mutually_exclusive_group()
    bar.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="show a progress bar"
    )
    bar.add_argument(
        "--no-progress", dest="progress", action="store_false", help="never show a progress bar"
    )


def _scrub(args: argparse.Namespace) -> int:
    from pathlib import Path

    _check_args(args)
    report = _run(args)
    rec = report.records
    summary = {
        "output": report.output["path"],
        "records": rec,
        "entities": report.entities,
        "quarantine": report.quarantine["path"],
    }
    sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    if args.manifest:
        from safeguard.provenance import scrub_predicate_from_report, write_manifest

        path = write_manifest(
            "scrub",
            [Path(args.output)],
            scrub_predicate_from_report(report.to_dict()),
            args.manifest,
            signing_key=args.signing_key,
        )
        sys.stderr.write(f"safeguard scrub: manifest written to {path}\n")
    if rec.get("quarantined", 0):
        sys.stderr.write(
            f"safeguard scrub: {rec['quarantined']} record(s) quarantined to "
            f"{report.quarantine['path']} (see each entry's reason)\n"
        )
        return 0 if args.allow_quarantine else 1
    return 0


def _check_args(args: argparse.Namespace) -> None:
    from pathlib import Path

    from safeguard.errors import ConfigError

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size (={args.batch_size}) must be >= 1")
    if args.processes < 1:
        raise ConfigError(f"--processes (={args.processes}) must be >= 1")
    if args.max_record_bytes < 1:
        raise ConfigError(f"--max-record-bytes (={args.max_record_bytes}) must be >= 1")
    if args.signing_key and not args.manifest:
        raise ConfigError("--signing-key is only used with --manifest")
    if Path(args.output).exists() and not (args.force or args.resume):
        raise ConfigError(
            f"OUT {args.output!r} already exists; pass --force to overwrite it (or --resume to "
            "continue an interrupted run)"
        )


def _run(args: argparse.Namespace) -> Any:
    """Load the policy and key, build the scrubber and run the chosen engine; the report."""
    from pathlib import Path

    from safeguard._files import warn_if_readable_by_others
    from safeguard.errors import ConfigError, DataError
    from safeguard.pii import PseudonymKey, Scrubber
    from safeguard.pii.stream import scrub_file
    from safeguard.policy import load_policy, policy_digest

    policy = load_policy(args.policy)
    key = PseudonymKey.load(args.key_file) if args.key_file else None
    if args.key_file:
        warn_if_readable_by_others(args.key_file, "pseudonym key file")
    overrides: dict[str, Any] = {"use_ner": False} if args.no_ner else {}
    scrubber = Scrubber.from_policy(policy, key=key, **overrides)
    common: dict[str, Any] = {
        "fields": args.fields or ["text"],
        "input_format": args.input_format,
        "output_format": args.output_format,
        "quarantine_path": args.quarantine,
        "report_path": args.report,
        "batch_size": args.batch_size,
        "patient_field": args.patient_field,
        "max_record_bytes": args.max_record_bytes,
        "policy_digest": policy_digest(policy),
    }
    src, dst = Path(args.input), Path(args.output)
    if args.engine == "ray":
        if args.resume:
            raise ConfigError(
                "--resume is for the local engine; on Ray failed tasks are retried instead"
            )
        from safeguard.scale.ray_engine import scrub_file as ray_scrub_file

        return ray_scrub_file(scrubber, src, dst, **common)
    try:
        return scrub_file(
            scrubber, src, dst, resume=args.resume, processes=args.processes,
            progress=args.progress, **common,
        )  # fmt: skip
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise  # the entry point reports these as input errors (exit 2)
    except OSError as exc:  # an I/O error mid-run: one line, exit 2; --resume continues
        where = f" ({exc.filename})" if exc.filename else ""
        raise DataError(
            f"I/O error while scrubbing{where}: {exc.strerror or exc}; "
            "fix it and rerun with --resume"
        ) from None


def _scrub_key(args: argparse.Namespace) -> int:
    from pathlib import Path

    from safeguard.errors import ConfigError
    from safeguard.pii import PseudonymKey

    path = Path(args.path)
    if path.exists():
        raise ConfigError(
            f"key file {str(path)!r} already exists; choose another path (keys are never overwritten)"
        )
    key = PseudonymKey.generate()
    key.save(path)
    sys.stdout.write(key.key_id + "\n")
    return 0
