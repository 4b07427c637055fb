"""DP fine-tuning of a local causal LM on a JSONL file: the library behind ``safeguard train``.

Reads records with a ``text`` field (and the policy's ``group_by`` field for user-level
DP), fine-tunes a local model folder with DP-SGD (momentum 0.9, the known-good recipe),
shows loss and ε in a progress bar, and writes the model, the budget ledger, the auditor
report and an ε plot into the output folder. A record that cannot be used (not JSON,
invalid UTF-8, a lone surrogate, no ``text``) is written to ``<out>/quarantine.jsonl``
(mode 0600) with its line and reason, and the run stops before any budget is spent unless
``allow_quarantine`` is set. Messages name the ``safeguard train`` options they refer to.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeguard.errors import BudgetExceededError, DataError, UsageError, VerificationError
from safeguard.privacy.config import DPConfig, hard_budget
from safeguard.privacy.ledger import BudgetLedger

__all__ = ["TrainOptions", "TrainResult", "fine_tune", "read_records", "train_loop"]

log = logging.getLogger(__name__)

CHECKPOINT = "dp_checkpoint.pt"
LEDGER = "privacy_ledger.jsonl"
REPORT = "privacy_report.json"
PLOT = "privacy_epsilon.png"
QUARANTINE = "quarantine.jsonl"


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """One ``safeguard train`` run (each field is the option of the same name).

    Attributes:
        model: Model folder saved with ``save_pretrained`` (with its tokenizer).
        data: JSONL with a ``text`` field per record (scrubbed).
        out: Output folder: model, ledger, report, plot, checkpoint.
        policy: Shipped policy name or YAML path; its ``privacy:`` section sets the budget.
        lora: Train LoRA adapters only (peft), of rank ``lora_r``.
        resume: Continue from the checkpoint in ``out``.
        allow_quarantine: Train on the usable records when some cannot be used.
        ledger: An earlier ledger whose budget this run continues.
        target_epsilon: Total ε to calibrate for (at most the policy's target_epsilon, which
            stays the hard budget).
        epochs, batch_size: Default to the policy's, else 1 and 16.
        physical_batch_size: Largest batch held in memory.
        lr: Learning rate (default 0.05, or 0.2 with LoRA).
        max_length: Tokens per record (truncated, padded).
        seed: Seed of torch's global generator (never of the DP noise or sampling).
        dp_seed: Seed of the DP noise and sampling (voids the guarantee).
        plot_points: ε evaluations in the plot.
        grad_sample_mode: Default: the policy's, else auto.
        progress: Show progress bars.
    """

    model: str | Path
    data: str | Path
    out: str | Path
    policy: str = "default"
    lora: bool = False
    lora_r: int = 8
    resume: bool = False
    allow_quarantine: bool = False
    ledger: str | Path | None = None
    target_epsilon: float | None = None
    epochs: float | None = None
    batch_size: int | None = None
    physical_batch_size: int | None = None
    lr: float | None = None
    max_length: int = 128
    seed: int = 0
    dp_seed: int | None = None
    plot_points: int = 20
    grad_sample_mode: str | None = None
    progress: bool = True


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    """What :func:`fine_tune` did.

    Attributes:
        status: 0 when training finished (or there was nothing to resume), 1 when the budget
            stopped it or was already spent.
        out: The output folder.
        summary: The auditor report's contents, when this call wrote a model (else ``None``).
        config: The run's configuration (``None`` when no run was started).
        ledger: The run's ledger (``None`` when no run was started).
    """

    status: int
    out: Path
    summary: dict[str, Any] | None = None
    config: DPConfig | None = None
    ledger: BudgetLedger | None = None


def fine_tune(options: TrainOptions, *, notify: Callable[[str], None] = log.warning) -> TrainResult:
    """DP fine-tune ``options.model`` on ``options.data`` into ``options.out``.

    Args:
        options: The run.
        notify: Receives the messages a user should see (float16 weights trained in
            float32, a budget that stopped the run, a run already complete).

    Raises:
        UsageError: The policy has no ``privacy:`` section, or ``target_epsilon`` exceeds it.
        DataError: The model folder, the data or the ledger is missing, or records are unusable.
        VerificationError: The ledger, its anchors or the checkpoint do not verify.
    """
    import torch

    policy, section, out = _start(options)
    model_dir = _model_dir(options.model)
    checkpoint = out / CHECKPOINT
    if options.resume and not checkpoint.exists():
        raise VerificationError(
            f"--resume: no checkpoint {str(checkpoint)!r}; refusing to start over (ε would restart)"
        )
    ledger = _open_ledger(options, out, checkpoint)
    torch.manual_seed(options.seed)
    records, bad = read_records(
        Path(options.data),
        section.group_by,
        out / QUARANTINE,
        allow_quarantine=options.allow_quarantine,
    )
    if bad:
        log.warning("%d record(s) could not be used; see %s", bad, out / QUARANTINE)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset = EncodedRecords(records, tokenizer, options.max_length, section.group_by)
    model = _load_model(model_dir, options, notify)
    overrides = _overrides(options, policy, section)
    state = None
    if options.resume:  # the checkpoint's existence was checked before the data was read
        state = _load_checkpoint(checkpoint)
        if _is_complete(state):
            done = BudgetLedger.load(out / LEDGER)
            notify(
                f"the run in {out} is complete ({done.steps()} steps); nothing to resume. To train further, start a new run without --resume (it counts the budget already spent)"
            )
            from safeguard.privacy.report import write_report

            write_report(done, out / REPORT)
            return TrainResult(status=0, out=out)
        overrides["noise_multiplier"] = float(state["noise_multiplier"])
        overrides["preflight"] = False
    config = _config(policy, overrides, dataset, options.batch_size or section.batch_size or 16)
    extra = {"records_used": len(records), "records_quarantined": bad, "lora": bool(options.lora)}
    return _train_and_save(
        options, config, (model, tokenizer), dataset, ledger, state, extra, notify
    )


def _start(options: TrainOptions) -> tuple[Any, Any, Path]:
    """(policy, its privacy section, the output folder, created) once the libraries load."""
    try:
        import peft  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from safeguard.errors import missing_dependency

        raise missing_dependency("transformers", "dp") from exc
    from safeguard.policy import load_policy

    if not options.progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights", "Writing model shards"
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    policy = load_policy(options.policy)
    if policy.privacy is None:
        raise UsageError(
            f"policy {policy.name!r} has no `privacy:` section; choose one that sets a DP budget"
        )
    return policy, policy.privacy, out


def _model_dir(model: str | Path) -> Path:
    model_dir = Path(model)
    if not (model_dir / "config.json").exists():
        raise DataError(
            f"--model {str(model_dir)!r} is not a model folder (no config.json); save it with save_pretrained"
        )
    return model_dir


def _load_model(model_dir: Path, options: TrainOptions, notify: Callable[[str], None]) -> Any:
    """The model in float32, with LoRA adapters when asked."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    half = next(
        (p.dtype for p in model.parameters() if p.dtype in (torch.float16, torch.bfloat16)), None
    )
    if half is not None:
        model = model.float()
        notify(
            f"{model_dir} holds {str(half).replace('torch.', '')} weights; training "
            "in float32 (per-sample gradient clipping is not exact in half precision), so the "
            "saved model is float32"
        )
    if options.lora:
        r = options.lora_r
        lora = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
    return model


def _overrides(options: TrainOptions, policy: Any, section: Any) -> dict[str, Any]:
    """The DPConfig fields the options set over the policy's."""
    overrides: dict[str, Any] = {}
    if options.dp_seed is not None:
        overrides["seed"] = options.dp_seed
    if options.target_epsilon is not None:
        if not 0 < options.target_epsilon <= section.target_epsilon:
            raise UsageError(
                f"--target-epsilon (={options.target_epsilon:g}) must be in (0, {section.target_epsilon:g}], "
                f"the policy {policy.name!r} budget; lower it or use another policy"
            )
        overrides["target_epsilon"] = options.target_epsilon
        # A lower target: the policy's budget stays the hard stop.
        overrides["max_epsilon"] = hard_budget(section.max_epsilon, section.target_epsilon)
    overrides["epochs"] = options.epochs or section.epochs or 1.0
    if options.physical_batch_size:
        overrides["physical_batch_size"] = options.physical_batch_size
    if options.grad_sample_mode:
        overrides["grad_sample_mode"] = options.grad_sample_mode
    return overrides


def _load_checkpoint(checkpoint: Path) -> dict[str, Any]:
    import torch

    try:
        return torch.load(checkpoint, weights_only=False)
    except Exception as exc:
        raise VerificationError(
            f"checkpoint {str(checkpoint)!r} cannot be read ({exc}); refusing to resume"
        ) from exc


def _is_complete(state: dict[str, Any]) -> bool:
    planned_before = state.get("planned_steps")
    return bool(planned_before) and int(state.get("steps_taken", 0)) >= int(planned_before)


def _config(
    policy: Any, overrides: dict[str, Any], dataset: EncodedRecords, batch_size: int
) -> DPConfig:
    config = DPConfig.from_policy(policy, **overrides)
    if config.group_by:
        batch_size = min(batch_size, len(set(dataset.groups.tolist())))
    return dataclasses.replace(config, batch_size=batch_size)


def _train_and_save(
    options: TrainOptions,
    config: DPConfig,
    model_and_tokenizer: tuple[Any, Any],
    dataset: EncodedRecords,
    ledger: BudgetLedger,
    state: dict[str, Any] | None,
    extra: dict[str, Any],
    notify: Callable[[str], None],
) -> TrainResult:
    """make_private, the training loop, then model, ledger, report and plot into ``out``."""
    import torch

    from safeguard.privacy._opacus import make_private
    from safeguard.privacy.report import plot_epsilon, write_report

    model, tokenizer = model_and_tokenizer
    out = Path(options.out)
    lr = options.lr if options.lr is not None else (0.2 if options.lora else 0.05)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9)
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size)
    try:
        run = make_private(
            model=model, optimizer=optimizer, data_loader=loader, config=config, ledger=ledger
        )
    except BudgetExceededError as exc:
        notify(f"budget: {exc}")
        return TrainResult(status=1, out=out)
    if state is not None:
        run.load_state_dict(state)
    status = train_loop(run, out / CHECKPOINT, progress=options.progress, notify=notify)
    run.save_checkpoint(out / CHECKPOINT)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    run.ledger.save(out / LEDGER)
    report = write_report(run.ledger, out / REPORT, extra=extra)
    try:
        plot_epsilon(run.ledger, out / PLOT, points=max(2, options.plot_points))
    except ImportError:  # pragma: no cover - matplotlib missing
        log.warning("matplotlib not installed; no ε plot")
    summary = json.loads(report.read_text())
    return TrainResult(status=status, out=out, summary=summary, config=config, ledger=run.ledger)


def train_loop(
    run: Any,
    checkpoint: Path,
    *,
    progress: bool = True,
    notify: Callable[[str], None] = log.warning,
) -> int:
    """Train ``run`` (a :class:`PrivateTraining`) to its planned steps; 1 if the budget stopped it.

    A checkpoint is saved after every pass over the loader; the progress bar shows the loss
    and ε (recomputed every 10% of the run).
    """
    import sys

    from tqdm import tqdm

    planned = run.planned_steps or 1
    bar = tqdm(
        total=planned,
        initial=run.steps_taken,
        disable=not progress,
        desc="DP fine-tune",
        unit="step",
        file=sys.stderr,
    )
    every = max(1, planned // 10)
    try:
        while run.steps_taken < planned:
            for batch in run.batches():
                before = run.steps_taken
                loss = run.train_step(batch)
                if run.steps_taken > before:
                    bar.update(run.steps_taken - before)
                    if progress and (run.steps_taken % every == 0 or run.steps_taken == planned):
                        bar.set_postfix(loss=f"{loss:.3f}", eps=f"{run.epsilon_spent():.3f}")
                if run.steps_taken >= planned:
                    break
            run.save_checkpoint(checkpoint)
    except BudgetExceededError as exc:
        notify(f"stopped: {exc}")
        return 1
    finally:
        bar.close()
    return 0


def read_records(
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


class EncodedRecords:
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


def _open_ledger(options: TrainOptions, out: Path, checkpoint: Path) -> BudgetLedger:
    """The run's ledger, checked against every anchor (see safeguard.privacy.anchors)."""
    from safeguard.privacy.anchors import open_run_ledger

    data = Path(options.data)
    if not data.is_file():
        raise DataError(f"--data {str(data)!r} does not exist or is not a file")
    if options.ledger is not None and not Path(options.ledger).is_file():
        raise DataError(f"--ledger {options.ledger!r} does not exist; name the earlier ledger file")
    return open_run_ledger(
        out,
        ledger_name=LEDGER,
        dataset_sha256=_sha256_file(data),
        checkpoint=checkpoint,
        continue_from=options.ledger,
        resume=bool(options.resume),
    )


def _sha256_file(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes: the data's key in the budget registry."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()
