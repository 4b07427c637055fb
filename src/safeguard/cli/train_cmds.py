"""``safeguard train``: differentially private causal-LM fine-tuning on a JSONL file.

Reads records with a ``text`` field (and the policy's ``group_by`` field for
user-level DP), fine-tunes a local model folder with DP-SGD (momentum 0.9, the
known-good recipe), shows loss and ε in a progress bar, and writes the model,
the budget ledger, the auditor report and an ε plot into ``--out``. A record
that cannot be used (not JSON, invalid UTF-8, a lone surrogate, no ``text``) is
written to ``<out>/quarantine.jsonl`` (mode 0600) with its line and reason, and the
run stops before any budget is spent unless ``--allow-quarantine`` is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from safeguard.cli._args import positive_float, positive_int
from safeguard.errors import BudgetExceededError, DataError, UsageError

log = logging.getLogger(__name__)

CHECKPOINT = "dp_checkpoint.pt"
LEDGER = "privacy_ledger.jsonl"
REPORT = "privacy_report.json"
PLOT = "privacy_epsilon.png"
QUARANTINE = "quarantine.jsonl"


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
    p.set_defaults(func=cmd_train)


def _read_records(
    path: Path, group_by: str | None, quarantine: Path, *, allow_quarantine: bool
) -> tuple[list[dict[str, Any]], int]:
    """The usable records of ``path``; every other line goes to ``quarantine`` (mode 0600).

    Raises:
        DataError: No record is usable, or some are not and ``allow_quarantine`` is off (the
            run stops before any budget is spent).
    """
    from safeguard._files import json_line, open_private, printable, read_jsonl

    records: list[dict[str, Any]] = []
    bad = 0
    with open_private(quarantine, "wb") as qf:
        for n, rec, reason, raw in read_jsonl(path):
            if reason is None:
                if not isinstance(rec.get("text"), str) or not rec["text"].strip():
                    reason = "no non-empty string `text` field"
                elif group_by and rec.get(group_by) is None:
                    reason = f"no `{group_by}` field (the policy's unit of privacy is a user)"
            if reason is not None:
                bad += 1
                qf.write(json_line({"line": n, "reason": reason, "record": printable(raw[:2000])}))
                continue
            records.append(rec)
    need = "a JSON object with a non-empty `text`" + (f" and a `{group_by}`" if group_by else "")
    if not records:
        raise DataError(
            f"--data {str(path)!r} has no usable records ({bad} quarantined to {quarantine}); each "
            f"line must be {need}"
        )
    if bad and not allow_quarantine:
        raise DataError(
            f"{bad} record{'s' if bad != 1 else ''} of --data {str(path)!r} could not be used (line "
            f"and reason in {quarantine}); no budget was spent. Each line must be {need}: fix them, "
            "or pass --allow-quarantine to train on the other records"
        )
    return records, bad


class _Encoded:
    """Tokenised records as a map-style dataset of tensors."""

    def __init__(
        self, records: list[dict[str, Any]], tokenizer: Any, max_length: int, group_by: str | None
    ):
        import torch

        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        enc = tokenizer(
            [r["text"] for r in records],
            truncation=True,
            max_length=max_length,
            padding="max_length",
            return_tensors="pt",
        )
        self.input_ids = enc["input_ids"]
        self.attention_mask = enc["attention_mask"]
        self.labels = self.input_ids.masked_fill(self.attention_mask == 0, -100)
        self.groups = None
        if group_by:
            ids = {}
            self.groups = torch.tensor(
                [ids.setdefault(str(r[group_by]), len(ids)) for r in records]
            )
        self.group_by = group_by

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def __getitem__(self, i: Any) -> dict[str, Any]:
        import torch

        i = torch.as_tensor(i)  # an index or, from a batch sampler, a list of indices
        item = {
            "input_ids": self.input_ids[i],
            "attention_mask": self.attention_mask[i],
            "labels": self.labels[i],
        }
        if self.groups is not None and self.group_by:
            item[self.group_by] = self.groups[i]
        return item


def cmd_train(args: argparse.Namespace) -> int:
    import dataclasses
    import warnings

    import torch
    from tqdm import tqdm

    from safeguard.errors import VerificationError
    from safeguard.policy import load_policy
    from safeguard.privacy import DPConfig, make_private
    from safeguard.privacy.report import plot_epsilon, write_report

    _check_manifest_args(args)
    warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
    try:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from safeguard.errors import missing_dependency

        raise missing_dependency("transformers", "dp") from exc

    if args.no_progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights", "Writing model shards"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    policy = load_policy(args.policy)
    if policy.privacy is None:
        raise UsageError(
            f"policy {policy.name!r} has no `privacy:` section; choose one that sets a DP budget"
        )
    section = policy.privacy
    model_dir = Path(args.model)
    if not (model_dir / "config.json").exists():
        raise DataError(
            f"--model {str(model_dir)!r} is not a model folder (no config.json); save it with save_pretrained"
        )

    checkpoint = out / CHECKPOINT
    if args.resume and not checkpoint.exists():
        raise VerificationError(
            f"--resume: no checkpoint {str(checkpoint)!r}; refusing to start over (ε would restart)"
        )
    ledger = _open_ledger(args, out, checkpoint)
    torch.manual_seed(args.seed)
    records, bad = _read_records(
        Path(args.data), section.group_by, out / QUARANTINE, allow_quarantine=args.allow_quarantine
    )
    if bad:
        log.warning("%d record(s) could not be used; see %s", bad, out / QUARANTINE)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset = _Encoded(records, tokenizer, args.max_length, section.group_by)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if any(p.dtype in (torch.float16, torch.bfloat16) for p in model.parameters()):
        half = next(
            p.dtype for p in model.parameters() if p.dtype in (torch.float16, torch.bfloat16)
        )
        model = model.float()
        sys.stderr.write(
            f"safeguard train: {model_dir} holds {str(half).replace('torch.', '')} weights; training "
            "in float32 (per-sample gradient clipping is not exact in half precision), so the "
            "saved model is float32\n"
        )
    if args.lora:
        model = get_peft_model(
            model,
            LoraConfig(
                r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.0, task_type="CAUSAL_LM"
            ),
        )

    overrides: dict[str, Any] = {}
    if args.dp_seed is not None:
        overrides["seed"] = args.dp_seed
    if args.target_epsilon is not None:
        if not 0 < args.target_epsilon <= section.target_epsilon:
            raise UsageError(
                f"--target-epsilon (={args.target_epsilon:g}) must be in (0, {section.target_epsilon:g}], "
                f"the policy {policy.name!r} budget; lower it or use another policy"
            )
        overrides["target_epsilon"] = args.target_epsilon
        overrides["max_epsilon"] = section.max_epsilon or section.target_epsilon
    overrides["epochs"] = args.epochs or section.epochs or 1.0
    if args.physical_batch_size:
        overrides["physical_batch_size"] = args.physical_batch_size
    if args.grad_sample_mode:
        overrides["grad_sample_mode"] = args.grad_sample_mode
    batch_size = args.batch_size or section.batch_size or 16
    state = None
    if args.resume:  # the checkpoint's existence was checked before the data was read
        try:
            state = torch.load(checkpoint, weights_only=False)
        except Exception as exc:
            raise VerificationError(
                f"checkpoint {str(checkpoint)!r} cannot be read ({exc}); refusing to resume"
            ) from exc
        planned_before = state.get("planned_steps")
        if planned_before and int(state.get("steps_taken", 0)) >= int(planned_before):
            from safeguard.privacy import BudgetLedger

            ledger = BudgetLedger.load(out / LEDGER)
            sys.stderr.write(
                f"safeguard train: the run in {out} is complete ({ledger.steps()} steps); nothing to resume. To train further, start a new run without --resume (it counts the budget already spent)\n"
            )
            write_report(ledger, out / REPORT)
            return 0
        overrides["noise_multiplier"] = float(state["noise_multiplier"])
        overrides["preflight"] = False
    config = DPConfig.from_policy(policy, **overrides)
    if config.group_by:
        config = dataclasses.replace(
            config, batch_size=min(batch_size, len(set(dataset.groups.tolist())))
        )
    else:
        config = dataclasses.replace(config, batch_size=batch_size)
    lr = args.lr if args.lr is not None else (0.2 if args.lora else 0.05)
    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size)
    try:
        run = make_private(
            model=model, optimizer=optimizer, data_loader=loader, config=config, ledger=ledger
        )
    except BudgetExceededError as exc:
        sys.stderr.write(f"safeguard train: budget: {exc}\n")
        return 1
    if state is not None:
        run.load_state_dict(state)
    planned = run.planned_steps or 1
    done_before = run.steps_taken
    status = 0
    bar = tqdm(
        total=planned,
        initial=done_before,
        disable=args.no_progress,
        desc="DP fine-tune",
        unit="step",
        file=sys.stderr,
    )
    every = max(1, planned // 10)  # ε is recomputed for the bar every 10% of the run
    try:
        while run.steps_taken < planned:
            for batch in run.batches():
                before = run.steps_taken
                loss = run.train_step(batch)
                if run.steps_taken > before:
                    bar.update(run.steps_taken - before)
                    if not args.no_progress and (
                        run.steps_taken % every == 0 or run.steps_taken == planned
                    ):
                        bar.set_postfix(loss=f"{loss:.3f}", eps=f"{run.epsilon_spent():.3f}")
                if run.steps_taken >= planned:
                    break
            run.save_checkpoint(checkpoint)
    except BudgetExceededError as exc:
        sys.stderr.write(f"safeguard train: stopped: {exc}\n")
        status = 1
    finally:
        bar.close()
    run.save_checkpoint(checkpoint)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    run.ledger.save(out / LEDGER)
    report = write_report(
        run.ledger,
        out / REPORT,
        extra={"records_used": len(records), "records_quarantined": bad, "lora": bool(args.lora)},
    )
    try:
        plot_epsilon(run.ledger, out / PLOT, points=max(2, args.plot_points))
    except ImportError:  # pragma: no cover - matplotlib missing
        log.warning("matplotlib not installed; no ε plot")
    summary = json.loads(report.read_text())
    sys.stdout.write(
        json.dumps(
            {
                "out": str(out),
                "steps": summary["steps"],
                "epsilon": round(summary["epsilon"], 4),
                "delta": summary["delta"],
                "accountant": summary["accountant"],
                "unit_of_privacy": summary["unit_of_privacy"],
                "budget_exhausted": status == 1,
            }
        )
        + "\n"
    )
    if args.manifest:
        _write_training_manifest(args, out, config, run.ledger)
    return status


def _open_ledger(args: argparse.Namespace, out: Path, checkpoint: Path) -> Any:
    """The run's ledger, checked against every anchor (see safeguard.privacy.anchors)."""
    from safeguard.privacy.anchors import open_run_ledger
    from safeguard.provenance.digest import sha256_file

    data = Path(args.data)
    if not data.is_file():
        raise DataError(f"--data {str(data)!r} does not exist or is not a file")
    if args.ledger is not None and not Path(args.ledger).is_file():
        raise DataError(f"--ledger {args.ledger!r} does not exist; name the earlier ledger file")
    return open_run_ledger(
        out,
        ledger_name=LEDGER,
        dataset_sha256=sha256_file(data),
        checkpoint=checkpoint,
        continue_from=args.ledger,
        resume=bool(args.resume),
    )


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
