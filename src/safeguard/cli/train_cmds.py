"""``safeguard train``: differentially private causal-LM fine-tuning on a JSONL file.

A thin verb over :func:`safeguard.privacy.train.fine_tune` (which reads the records,
quarantines the unusable ones, trains with DP-SGD and writes the model, the budget ledger,
the auditor report and an ε plot into ``--out``): this module parses the options, prints
the summary, and signs a training manifest when asked.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from safeguard.cli._args import positive_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="DP fine-tune a causal LM on JSONL (`text` field); writes model, ledger and report",
        description=(
            "Differentially private fine-tuning (DP-SGD on Opacus) of a local causal LM folder. "
            "The policy's privacy section sets ε, δ, the clipping bound, the accountant and the unit "
            "of privacy. The ledger in --out is appended to: earlier runs count toward the budget."
        ),
    )
    _add_inputs(p)
    _add_budget_and_schedule(p)
    _add_outputs(p)
    p.set_defaults(func=cmd_train)


def _add_inputs(p: argparse.ArgumentParser) -> None:
    """Policy, model, data, output folder, LoRA, and the ledger to continue."""
    p.add_argument(
        "--policy", default="default", help="shipped policy name or YAML path (default: default)"
    )
    p.add_argument(
        "--model",
        required=True,
        help="model folder saved with save_pretrained (with its tokenizer)",
    )
    p.add_argument("--data", required=True, help="JSONL with a `text` field per record (scrubbed)")
    p.add_argument(
        "--out", required=True, help="output folder: model, ledger, report, plot, checkpoint"
    )
    p.add_argument(
        "--lora", action="store_true", help="train LoRA adapters only (peft); the base stays frozen"
    )
    p.add_argument("--lora-r", type=positive_int, default=8, help="LoRA rank (default 8)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument(
        "--allow-quarantine",
        action="store_true",
        help="train on the usable records when some cannot be used (they are written to "
        "<out>/quarantine.jsonl with line and reason); without it such data is refused before "
        "any budget is spent",
    )
    p.add_argument(
        "--ledger",
        metavar="PATH",
        help="continue the privacy budget of this earlier ledger (copied into --out); needed when "
        "--out or the same data already shows DP training but its ledger is gone or elsewhere",
    )


def _add_budget_and_schedule(p: argparse.ArgumentParser) -> None:
    """Budget, batch sizes, learning rate, sequence length and seeds."""
    p.add_argument(
        "--target-epsilon",
        type=positive_float,
        default=None,
        help="total ε to calibrate for (at most the policy's target_epsilon, which stays the hard budget)",
    )
    p.add_argument(
        "--epochs",
        type=positive_float,
        default=None,
        help="expected passes over the data (default: policy or 1)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="expected logical batch size (default: policy or 16)",
    )
    p.add_argument(
        "--physical-batch-size",
        type=positive_int,
        default=None,
        help="largest batch held in memory (default: the logical batch)",
    )
    p.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help="learning rate (default 0.05 full, 0.2 LoRA)",
    )
    p.add_argument(
        "--max-length", type=positive_int, default=128, help="tokens per record (truncated, padded)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of torch's global generator (initialisation, dropout); the DP noise and "
        "batch sampling never use it (default: 0)",
    )
    p.add_argument(
        "--dp-seed",
        type=int,
        default=None,
        help="fix the DP noise and batch sampling (reproducibility experiments only: VOIDS the DP "
        "guarantee, is marked so in the ledger and manifest, and is refused by policies without "
        "allow_seeded_noise). Default: the OS's entropy, never stored",
    )


def _add_outputs(p: argparse.ArgumentParser) -> None:
    """Plot, per-sample gradient mode, progress, and the signed manifest."""
    p.add_argument(
        "--plot-points",
        type=positive_int,
        default=20,
        help="ε evaluations in the plot (default 20)",
    )
    p.add_argument(
        "--grad-sample-mode",
        choices=("auto", "bk", "ghost", "hooks", "functorch"),
        default=None,
        help="how per-sample gradients are computed (default: the policy's, else auto)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--manifest",
        help="write a signed SLSA training manifest of --out here (a path outside --out)",
    )
    p.add_argument("--signing-key", help="Ed25519 private key to sign --manifest with")


def cmd_train(args: argparse.Namespace) -> int:
    import dataclasses
    import warnings

    from safeguard.privacy.train import TrainOptions, fine_tune

    _check_manifest_args(args)
    warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
    names = {f.name for f in dataclasses.fields(TrainOptions)} - {"progress"}
    options = TrainOptions(**{n: getattr(args, n) for n in names}, progress=not args.no_progress)
    result = fine_tune(options, notify=_say)
    if result.summary is None:
        return result.status
    summary = result.summary
    sys.stdout.write(
        json.dumps(
            {
                "out": str(result.out),
                "steps": summary["steps"],
                "epsilon": round(summary["epsilon"], 4),
                "delta": summary["delta"],
                "accountant": summary["accountant"],
                "unit_of_privacy": summary["unit_of_privacy"],
                "budget_exhausted": result.status == 1,
            }
        )
        + "\n"
    )
    if args.manifest:
        _write_training_manifest(args, result.out, result.config, result.ledger)
    return result.status


def _say(message: str) -> None:
    sys.stderr.write(f"safeguard train: {message}\n")


def _check_manifest_args(args: argparse.Namespace) -> None:
    from safeguard.errors import ConfigError

    if args.signing_key and not args.manifest:
        raise ConfigError("--signing-key is only used with --manifest")
    if args.manifest:
        manifest, out = Path(args.manifest).resolve(), Path(args.out).resolve()
        if out in manifest.parents:
            raise ConfigError(
                f"--manifest {args.manifest!r} is inside --out {args.out!r}: the manifest digests that "
                "folder, so it must live outside it (e.g. manifests/training.json)"
            )


def _write_training_manifest(args: argparse.Namespace, out: Path, config: Any, ledger: Any) -> None:
    from safeguard.provenance import training_predicate, write_manifest
    from safeguard.provenance.digest import digest_directory, sha256_file

    data = Path(args.data)
    base = Path(args.model)
    predicate = training_predicate(
        dp_config=config.to_dict(),
        datasets=[(data.name, sha256_file(data))],
        base_model=(base.name, digest_directory(base).sha256),
        ledger=ledger.summary().to_dict(),
    )
    path = write_manifest("training", [out], predicate, args.manifest, signing_key=args.signing_key)
    sys.stderr.write(f"safeguard train: manifest written to {path}\n")
