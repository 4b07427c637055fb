"""Pre-flight checks of a DP-SGD run (adapter; imports torch and opacus).

Before training: every Opacus-incompatible layer, listed at once with its fix; per-sample
gradients (or norms, under ghost and bk) equal per-example autograd on three synthetic
examples. After the first step: trainable weights changed and frozen ones did not.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader

from safeguard.errors import PrivacyError
from safeguard.privacy._bk import BookKeepingModule
from safeguard.privacy._hf import IGNORE_INDEX, _base_hf_model, _batch_len, _slice, _unwrap
from safeguard.privacy._sampling import _user_collate

if TYPE_CHECKING:
    from safeguard.privacy._training import PrivateTraining

__all__ = ["validation_problems"]

log = logging.getLogger(__name__)

#: Examples the pre-flight check compares with autograd.
PROBE_SIZE = 3


def validation_problems(model: nn.Module) -> list[str]:
    """Every Opacus-incompatible layer with its name and fix, as one list (empty when all is well)."""
    problems: list[str] = []
    for name, module in model.named_modules():
        check = ModuleValidator.VALIDATORS.get(type(module))
        if check is None:
            continue
        for err in check(module):
            text = str(err).strip().split(". ")[0]
            kind = type(module).__name__
            if "BatchNorm" in kind:
                fix = (
                    "replace it with GroupNorm or LayerNorm (opacus ModuleValidator.fix does this)"
                )
            elif kind in {"LSTM", "GRU", "RNN"}:
                fix = f"use opacus.layers.DP{kind} (opacus ModuleValidator.fix does this)"
            elif "InstanceNorm" in kind:
                fix = "set track_running_stats=False"
            else:
                fix = "see opacus.validators.ModuleValidator.fix"
            problems.append(f"layer `{name or '(root)'}` ({kind}): {text} -> fix: {fix}")
    return problems


def _synthetic_batch(base: nn.Module, example: Any, n: int, generator: torch.Generator) -> Any:
    """A batch shaped like ``example`` with random token ids (no private data is touched)."""
    cfg = base.config
    vocab = int(cfg.vocab_size)
    if not isinstance(example, Mapping) or "input_ids" not in example:
        return None
    t = example["input_ids"].shape[-1]
    ids = torch.randint(3, vocab, (n, t), generator=generator)
    batch: dict[str, Any] = {"input_ids": ids, "attention_mask": torch.ones(n, t, dtype=torch.long)}
    labels = example.get("labels")
    if labels is not None and labels.dim() >= 2:
        lab = ids.clone()
        lab[0, : t // 2] = IGNORE_INDEX  # exercise ignore_index
        batch["labels"] = lab
    elif labels is not None:
        classes = int(getattr(cfg, "num_labels", 2))
        batch["labels"] = torch.randint(classes, (n,), generator=generator)
    return batch


def run_preflight(
    run: PrivateTraining,
    model: nn.Module,
    data_loader: DataLoader,
    loss_fn: Callable[..., torch.Tensor] | None,
) -> None:
    """Compare per-sample gradients with autograd on a probe batch (synthetic where possible)."""
    config = run.config
    base = _base_hf_model(model)
    gen = torch.Generator().manual_seed(12345)
    probe = None
    collate = (
        _user_collate(data_loader.collate_fn, config.group_by)
        if config.group_by
        else data_loader.collate_fn
    )
    example = next(iter(DataLoader(data_loader.dataset, batch_size=PROBE_SIZE, collate_fn=collate)))
    if base is not None:
        probe = _synthetic_batch(base, example, PROBE_SIZE, gen)
    if probe is None:
        probe = example
        log.info("pre-flight uses 3 training examples (no synthetic inputs for this model type)")
    _preflight_grads(run, probe, loss_fn)


def _preflight_grads(
    run: PrivateTraining, batch: Any, loss_fn: Callable[..., torch.Tensor] | None
) -> None:
    """Per-sample gradients (or norms, under ghost and bk) equal per-example autograd on a few examples."""
    model = run.model
    params = [p for p in model.parameters() if p.requires_grad]
    modes = {m: m.training for m in model.modules()}
    # Dropout off so both computations see the same function; layers holding parameters
    # stay in train mode because Opacus only records activations of training layers.
    for m in model.modules():
        m.train(any(True for _ in m.parameters(recurse=False)))
    n = _batch_len(batch)
    try:
        run.optimizer.zero_grad(set_to_none=True)
        losses = run.loss_per_example(batch, loss_fn=loss_fn)
        if isinstance(model, BookKeepingModule):
            model.groups = torch.arange(n)  # the probe is compared per example
        losses.mean().backward()
        per_sample = _per_sample(run, params, n)
        run.optimizer.zero_grad(set_to_none=True)
        if hasattr(model, "disable_hooks"):
            model.disable_hooks()
        worst = max(
            (_relative_error(run, batch, i, params, per_sample, loss_fn) for i in range(n)),
            default=0.0,
        )
        if worst > 1e-3:
            raise PrivacyError(
                f"pre-flight: per-sample gradients differ from autograd's by {worst:.2e} (relative) under "
                f"grad_sample_mode={run.grad_sample_mode!r}; the clipping bound would not hold. Try "
                "grad_sample_mode='functorch', and for Hugging Face models pass batch-shaped position_ids"
            )
        log.info(
            "pre-flight: per-sample gradients match autograd on %d examples (max rel. error %.1e)",
            n,
            worst,
        )
    finally:
        if hasattr(model, "enable_hooks"):
            model.enable_hooks()
        run.optimizer.zero_grad(set_to_none=True)
        for p in params:
            p.grad = None
        for m, mode in modes.items():
            m.training = mode


def _per_sample(run: PrivateTraining, params: list[torch.Tensor], n: int) -> Any:
    """What the backward left: per-sample norms (ghost, bk) or per-sample gradients."""
    model = run.model
    if run.grad_sample_mode == "ghost":
        return model.get_norm_sample().detach().clone()
    if run.grad_sample_mode == "bk":
        if model.last_norms is None or model.last_norms.shape[0] != n:
            raise PrivacyError(
                "pre-flight: book-keeping clipping produced no per-sample norms for the probe batch; "
                "the model's forward does not go through its trainable layers. Use "
                "grad_sample_mode='hooks'"
            )
        return model.last_norms.detach().clone()
    missing = [i for i, p in enumerate(params) if getattr(p, "grad_sample", None) is None]
    if missing:
        raise PrivacyError(
            f"pre-flight: {len(missing)} trainable parameter(s) got no per-sample gradient; the "
            "model's forward does not go through them per example. Freeze them or change "
            "`grad_sample_mode`"
        )
    return [p.grad_sample.detach().clone() for p in params]


def _relative_error(
    run: PrivateTraining,
    batch: Any,
    i: int,
    params: list[torch.Tensor],
    per_sample: Any,
    loss_fn: Callable[..., torch.Tensor] | None,
) -> float:
    """Relative error of example ``i``'s per-sample gradient (or norm) against autograd's."""
    for p in params:
        p.grad = None
    loss_i = run.loss_per_example(_slice(batch, i), loss_fn=loss_fn).sum()
    grads = torch.autograd.grad(loss_i, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=False)]
    if run.grad_sample_mode in {"ghost", "bk"}:
        ref = torch.sqrt(sum((g.double() ** 2).sum() for g in grads))
        got = per_sample[i].double()
        return float((ref - got).abs() / (ref.abs() + 1e-8))
    num = sum(
        ((gs[i].double() - g.double()) ** 2).sum() for gs, g in zip(per_sample, grads, strict=False)
    )
    den = sum((g.double() ** 2).sum() for g in grads)
    return float(torch.sqrt(num) / (torch.sqrt(den) + 1e-8))


# --------------------------------------------------------------------------- after the first step
def _frozen_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _check_first_step(run: PrivateTraining, trainable: list[tuple[str, Any]]) -> None:
    guard = run._guard
    changed = [n for n, p in trainable if not torch.equal(p.detach(), guard.snapshot[n])]
    guard.snapshot = {}
    if not changed:
        raise PrivacyError(
            "pre-flight: no trainable weight changed after the first DP step (learning rate 0, all "
            "parameters frozen, or the optimizer is not over the wrapped model's parameters)"
        )
    if _frozen_digest(_unwrap(run.model)) != guard.frozen_digest:
        raise PrivacyError(
            "pre-flight: frozen (non-trainable) weights changed during the first DP step; the base model "
            "would be corrupted (cf. Opacus + PEFT issue #820). Check that the optimizer holds only "
            "trainable parameters"
        )
    unchanged = len(trainable) - len(changed)
    if unchanged:
        log.info(
            "after the first step %d of %d trainable tensors changed", len(changed), len(trainable)
        )
