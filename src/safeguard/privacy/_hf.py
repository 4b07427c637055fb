"""Hugging Face model helpers for DP-SGD (adapter; imports torch).

What a Hugging Face model needs under per-sample gradients: finding the base model under
peft / Opacus / DDP wrappers, tied and adapter parameters, batch-shaped ``position_ids`` /
``token_type_ids`` (Opacus issue #841), per-example losses (``ignore_index`` -100, causal
shift), batches as users write them, and Opacus samplers for transformers' ``Conv1D``
(registered on import).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from opacus.grad_sample import GradSampleModule
from torch import nn

from safeguard.errors import DataError

__all__ = ["IGNORE_INDEX", "per_example_loss"]

IGNORE_INDEX = -100


def _register_conv1d_samplers() -> None:
    """Per-sample gradients and ghost norms for transformers' ``Conv1D`` (GPT-2's projections).

    ``Conv1D`` computes ``x @ W + b`` with ``W`` of shape (in, out): a Linear layer with the
    weight transposed. Opacus has no sampler for it and falls back to functorch (exact but
    slow); these use the Linear formulas (per-sample gradient ``aᵀ g`` for every example; the
    ghost norm ‖Σ_t a_t g_tᵀ‖ is the same for W and Wᵀ). The pre-flight check compares them
    with autograd on every run.
    """
    try:
        from opacus.grad_sample.linear import compute_linear_norm_sample
        from opacus.grad_sample.utils import register_grad_sampler, register_norm_sampler
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers missing or Opacus layout changed
        return

    def conv1d_grad_sample(
        layer: nn.Module, activations: list[torch.Tensor], backprops: torch.Tensor
    ) -> dict:
        a = activations[0].to(backprops.dtype)
        out = {}
        if layer.weight.requires_grad:
            out[layer.weight] = torch.einsum("n...i,n...j->nij", a, backprops)
        if layer.bias is not None and layer.bias.requires_grad:
            out[layer.bias] = torch.einsum("n...k->nk", backprops)
        return out

    register_grad_sampler(Conv1D)(conv1d_grad_sample)
    register_norm_sampler(Conv1D)(compute_linear_norm_sample)


_register_conv1d_samplers()


# --------------------------------------------------------------------------- model inspection
def _base_hf_model(model: nn.Module) -> nn.Module | None:
    """The innermost transformers ``PreTrainedModel`` (under peft / Opacus wrappers), if any."""
    m = model
    for _ in range(6):
        if isinstance(m, GradSampleModule) or hasattr(m, "_module"):
            m = m._module
            continue
        if type(m).__name__ in {
            "DifferentiallyPrivateDistributedDataParallel",
            "DistributedDataParallel",
        }:
            m = m.module
            continue
        if hasattr(m, "get_base_model") and callable(m.get_base_model):
            m = m.get_base_model()
            continue
        break
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover
        return None
    return m if isinstance(m, PreTrainedModel) else None


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside Opacus and DDP wrappers (whose weights a checkpoint stores)."""
    m = model
    while hasattr(m, "_module"):
        m = m._module
    if hasattr(m, "module") and type(m).__name__ in {"DPDDP", "DistributedDataParallel"}:
        m = m.module
    return m


def _is_peft(model: nn.Module) -> bool:
    return type(model).__module__.startswith("peft") or any(
        type(m).__module__.startswith("peft.tuners") for m in model.modules()
    )


def _tied_trainable(model: nn.Module) -> list[str]:
    """Names of trainable parameters reachable under more than one name (tied weights)."""
    seen: dict[int, str] = {}
    tied: list[str] = []
    for name, p in model.named_parameters(remove_duplicate=False):
        if not p.requires_grad:
            continue
        if id(p) in seen:
            tied.append(f"{seen[id(p)]} = {name}")
        else:
            seen[id(p)] = name
    return tied


def _forward_params(m: nn.Module) -> set[str]:
    try:
        return set(inspect.signature(m.forward).parameters)
    except (TypeError, ValueError):  # pragma: no cover
        return set()


def _is_causal_lm(base: nn.Module | None) -> bool:
    if base is None:
        return False
    name = type(base).__name__
    return name.endswith(("ForCausalLM", "LMHeadModel"))


# --------------------------------------------------------------------------- HF input fixes
def _fill_hf_inputs(base: nn.Module, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Supply batch-shaped, contiguous position_ids / token_type_ids (Opacus issue #841).

    transformers builds ``position_ids`` of shape (1, T) and BERT expands a buffered
    ``token_type_ids`` with stride 0; per-sample gradient hooks then see a batch of 1 for
    the position/type embeddings and fail or mix examples. We pass (B, T) contiguous ones.
    """
    ids = kwargs.get("input_ids")
    ref = ids if isinstance(ids, torch.Tensor) else kwargs.get("inputs_embeds")
    if not isinstance(ref, torch.Tensor) or ref.dim() < 2:
        return kwargs
    b, t = ref.shape[0], ref.shape[1]
    accepted = _forward_params(base)
    if "position_ids" in accepted:
        pos = kwargs.get("position_ids")
        if pos is None:
            mask = kwargs.get("attention_mask")
            if (
                isinstance(mask, torch.Tensor)
                and mask.shape == (b, t)
                and bool((mask[:, 0] == 0).any())
            ):
                pos = (mask.long().cumsum(-1) - 1).clamp(min=0)  # left padding
            else:
                pos = torch.arange(t, device=ref.device).unsqueeze(0).expand(b, t)
        elif pos.dim() == 1 or pos.shape[0] != b:
            pos = pos.reshape(1, -1).expand(b, t)
        kwargs["position_ids"] = pos.contiguous()
    if "token_type_ids" in accepted and getattr(
        getattr(base, "config", None), "type_vocab_size", 0
    ):
        tt = kwargs.get("token_type_ids")
        if tt is None:
            tt = torch.zeros((b, t), dtype=torch.long, device=ref.device)
        elif tt.shape[0] != b:
            tt = tt.expand(b, t)
        kwargs["token_type_ids"] = tt.contiguous()
    return kwargs


def _install_hf_input_hook(model: nn.Module) -> Any:
    base = _base_hf_model(model)
    if base is None:
        return None

    def hook(
        module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        if args and "input_ids" not in kwargs and isinstance(args[0], torch.Tensor):
            kwargs = {"input_ids": args[0], **kwargs}
            args = args[1:]
        return args, _fill_hf_inputs(module, dict(kwargs))

    return base.register_forward_pre_hook(hook, with_kwargs=True)


# --------------------------------------------------------------------------- losses
def per_example_loss(model: nn.Module, outputs: Any, labels: torch.Tensor) -> torch.Tensor:
    """Loss of each example, shape ``(batch,)``, for a Hugging Face model's outputs.

    Causal LMs shift labels by one; tokens labelled ``-100`` are ignored and each example's
    loss is the mean over its own counted tokens. Sequence classification uses cross-entropy
    (or squared error when there is one label).

    Args:
        model: The model (possibly wrapped); used to tell causal LMs apart.
        outputs: The model's output (an object with ``logits``, or a logits tensor).
        labels: ``(batch, seq)`` token labels or ``(batch,)`` class labels.
    """
    logits = outputs.logits if hasattr(outputs, "logits") else outputs
    base = _base_hf_model(model)
    if logits.dim() == 3:
        if _is_causal_lm(base):
            logits = logits[:, :-1, :]
            labels = labels[:, 1:]
        b, t, v = logits.shape
        tok = nn.functional.cross_entropy(
            logits.reshape(b * t, v).float(),
            labels.reshape(b * t),
            ignore_index=IGNORE_INDEX,
            reduction="none",
        ).view(b, t)
        counted = (labels != IGNORE_INDEX).sum(dim=1).clamp(min=1)
        return tok.sum(dim=1) / counted
    if logits.dim() == 2 and logits.shape[-1] == 1 and labels.is_floating_point():
        return (logits.squeeze(-1) - labels).pow(2)
    return nn.functional.cross_entropy(logits.float(), labels.long(), reduction="none")


def _split_batch(batch: Any, drop: Sequence[str]) -> tuple[tuple[Any, ...], dict[str, Any], Any]:
    """(args, kwargs, labels) for a batch that is a mapping or a (x, y) sequence."""
    if isinstance(batch, Mapping):
        kwargs = {k: v for k, v in batch.items() if k not in drop}
        labels = kwargs.pop("labels", None)
        return (), kwargs, labels
    if isinstance(batch, (list, tuple)):
        if len(batch) == 1:
            return (batch[0],), {}, None
        return tuple(batch[:-1]), {}, batch[-1]
    return (batch,), {}, None


def _causal_lm_batch(
    batch: Any, args: tuple[Any, ...], kwargs: dict[str, Any], labels: Any
) -> tuple[tuple[Any, ...], dict[str, Any], Any]:
    """A causal LM's batch as users write it: input ids alone train on themselves.

    ``labels`` default to the input ids (padding, where ``attention_mask`` is 0, ignored).
    A pair of ``(batch, seq)`` integer tensors whose second holds only 0s and 1s is an
    ``(input_ids, attention_mask)`` pair, which would otherwise be read as (inputs, labels)
    and train the model to predict the mask: it is refused.
    """
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        ids, second = batch
        if (
            isinstance(ids, torch.Tensor)
            and isinstance(second, torch.Tensor)
            and ids.dim() == 2
            and second.shape == ids.shape
            and not second.is_floating_point()
            and bool(((second == 0) | (second == 1)).all())
        ):
            raise DataError(
                "the batch is a pair of (batch, seq) tensors whose second holds only 0/1: it looks like "
                "(input_ids, attention_mask), which would be read as (inputs, labels). Pass a dict "
                "{'input_ids': ..., 'attention_mask': ...} (labels then default to the input ids) or "
                "add 'labels' explicitly"
            )
    if labels is not None:
        return args, kwargs, labels
    ids = kwargs.get("input_ids") if kwargs else (args[0] if args else None)
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        return args, kwargs, labels
    mask = kwargs.get("attention_mask")
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX) if isinstance(mask, torch.Tensor) else ids
    return args, kwargs, labels


def _batch_len(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    if isinstance(batch, Mapping):
        for v in batch.values():
            if isinstance(v, torch.Tensor):
                return int(v.shape[0])
        return 0
    if isinstance(batch, (list, tuple)):
        return _batch_len(batch[0]) if batch else 0
    return 0


def _slice(batch: Any, i: int) -> Any:
    if isinstance(batch, Mapping):
        return {k: (v[i : i + 1] if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_slice(b, i) for b in batch)
    return batch[i : i + 1]
