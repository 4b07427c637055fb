"""DP-SGD on Opacus: :func:`make_private` and :class:`PrivateTraining` (adapter; imports torch).

The pieces are Opacus' own (per-sample gradient module, ``DPOptimizer``, Poisson
``DPDataLoader``, accountants); this module chooses them, fixes the known
Hugging Face pitfalls, runs pre-flight checks, enforces the budget, and records
every noisy step in the :class:`~safeguard.privacy.ledger.BudgetLedger`.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
import os
import random
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from safeguard.errors import (
    BudgetExceededError,
    ConfigError,
    DataError,
    PrivacyError,
    VerificationError,
    missing_dependency,
)
from safeguard.privacy._bk import BookKeepingModule, bk_unsupported_layers
from safeguard.privacy.config import DPConfig, default_delta
from safeguard.privacy.ledger import BudgetLedger, compute_epsilon

try:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, IterableDataset, Sampler
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise missing_dependency("torch", "dp") from exc

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
        from opacus.accountants import create_accountant
        from opacus.data_loader import DPDataLoader, wrap_collate_with_empty
        from opacus.grad_sample import GradSampleModule
        from opacus.grad_sample.utils import prepare_module
        from opacus.optimizers import DPOptimizer, get_optimizer_class
        from opacus.utils.batch_memory_manager import BatchMemoryManager
        from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping
        from opacus.validators import ModuleValidator
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise missing_dependency("opacus", "dp") from exc

__all__ = ["PrivateTraining", "make_private", "per_example_loss"]

# Opacus' per-sample hooks sit on modules whose inputs (token ids) never require gradients;
# torch then warns on every backward that the hook fires for the outputs only. That is the
# case Opacus relies on, so the message is noise to a training loop.
warnings.filterwarnings(
    "ignore",
    message="Full backward hook is firing when gradients are computed",
    category=UserWarning,
)

log = logging.getLogger(__name__)

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
_MAX_SIGMA = 1e4


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


# --------------------------------------------------------------------------- user-level sampling
class UserPoissonSampler(Sampler[list[int]]):
    """Poisson sampling of users: each user is in a batch with probability q, with ≤ k examples.

    A sampled user brings at most ``per_user`` of their examples (drawn without replacement);
    with ``per_user`` = 1 a user's contribution to a step is one clipped gradient, and with more
    the user's example gradients are summed before clipping (see :func:`make_private`), so
    example-level accounting holds at the user level with N = users.
    """

    def __init__(
        self,
        groups: Sequence[Any],
        *,
        sample_rate: float,
        steps: int,
        generator: torch.Generator | None,
        per_user: int = 1,
    ):
        index: dict[Any, list[int]] = {}
        for i, g in enumerate(groups):
            index.setdefault(g, []).append(i)
        self.members = list(index.values())
        self.sample_rate = sample_rate
        self.steps = steps
        self.generator = generator
        self.per_user = per_user

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.members)
        for _ in range(self.steps):
            take = torch.rand(n, generator=self.generator) < self.sample_rate
            picks = []
            for u in torch.nonzero(take).flatten().tolist():
                members = self.members[u]
                if self.per_user == 1:
                    j = int(torch.randint(len(members), (1,), generator=self.generator))
                    picks.append(members[j])
                else:
                    order = torch.randperm(len(members), generator=self.generator)[: self.per_user]
                    picks.extend(members[j] for j in order.tolist())
            yield picks


def _group_ids(dataset: Any, group_by: str) -> list[Any]:
    try:
        column = dataset[group_by]  # datasets.Dataset column access
        if len(column) == len(dataset):
            return list(column)
    except (KeyError, TypeError, IndexError, ValueError):
        pass
    out = []
    for i in range(len(dataset)):
        item = dataset[i]
        if not isinstance(item, Mapping) or group_by not in item:
            raise DataError(
                f"`group_by` (={group_by!r}): example {i} has no such field; every example must carry "
                "the user (patient) id under that key"
            )
        value = item[group_by]
        out.append(value.item() if isinstance(value, torch.Tensor) else value)
    return out


def _grouping_collate(
    collate: Callable[[list[Any]], Any] | None, group_by: str
) -> Callable[[list[Any]], Any]:
    """Collate that replaces the user ids by per-batch user indices (0..users−1) under ``group_by``."""
    from torch.utils.data import default_collate

    inner = collate or default_collate

    def collate_fn(items: list[Any]) -> Any:
        keys = []
        cleaned = []
        for it in items:
            value = it[group_by]
            keys.append(value.item() if isinstance(value, torch.Tensor) else value)
            cleaned.append({k: v for k, v in it.items() if k != group_by})
        index: dict[Any, int] = {}
        out = inner(cleaned)
        out[group_by] = torch.tensor(
            [index.setdefault(k, len(index)) for k in keys], dtype=torch.long
        )
        return out

    return collate_fn


def _dropping_collate(
    collate: Callable[[list[Any]], Any] | None, drop: str
) -> Callable[[list[Any]], Any]:
    from torch.utils.data import default_collate

    inner = collate or default_collate

    def collate_fn(items: list[Any]) -> Any:
        cleaned = [
            {k: v for k, v in it.items() if k != drop} if isinstance(it, Mapping) else it
            for it in items
        ]
        return inner(cleaned)

    return collate_fn


# --------------------------------------------------------------------------- guard
@dataclass
class _Guard:
    """Mutable run state behind the frozen :class:`PrivateTraining`."""

    steps_allowed: int | None
    steps_taken: int = 0
    exact: bool = False
    groups: torch.Tensor | None = None
    first_step_checked: bool = False
    snapshot: dict[str, torch.Tensor] = field(default_factory=dict)
    frozen_digest: str = ""
    hooks: list[Any] = field(default_factory=list)


def _frozen_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- the run object
@dataclass(frozen=True, kw_only=True)
class PrivateTraining:
    """What :func:`make_private` returns: the private model, optimizer, loader and ledger.

    Use them like their non-private counterparts (``loss.backward(); optimizer.step()``,
    with ``loss`` the batch mean of per-example losses) with grad_sample_mode
    ``hooks``/``functorch``/``bk``, or call :meth:`train_step` (needed for ghost clipping,
    and handles Hugging Face batches and virtual steps). Under ``bk`` the backward leaves
    the sum of clipped per-sample gradients in ``p.grad`` (one backward, no per-sample
    gradients kept).

    Attributes:
        model: The model wrapped for per-sample gradients.
        optimizer: Opacus ``DPOptimizer``: clips, adds noise, records each step in the ledger.
        data_loader: Poisson-sampling loader over the same dataset (logical batches).
        ledger: The budget ledger (hash-chained record of every noisy step).
        config: The configuration.
        noise_multiplier: σ in use (calibrated when ``target_epsilon`` was given).
        sample_rate: q, the probability each unit is in a batch.
        delta: δ.
        num_units: N, the number of privacy units (examples, or users).
        grad_sample_mode: The mode chosen.
        planned_steps: Steps the calibration assumed (``None`` without a length).
        accountant: The Opacus accountant kept in step with the ledger.
    """

    model: nn.Module
    optimizer: DPOptimizer
    data_loader: DataLoader
    ledger: BudgetLedger
    config: DPConfig
    noise_multiplier: float
    sample_rate: float
    delta: float
    num_units: int
    grad_sample_mode: str
    planned_steps: int | None
    accountant: Any
    _guard: _Guard = field(repr=False)
    _drop_keys: tuple[str, ...] = ()

    # ------------------------------------------------------------------ queries
    def epsilon_spent(self, delta: float | None = None) -> float:
        """ε spent so far (all runs in the ledger) by the configured accountant."""
        return self.ledger.epsilon_spent(delta)

    @property
    def steps_taken(self) -> int:
        return self._guard.steps_taken

    @property
    def steps_allowed(self) -> int | None:
        """Further steps known to fit the hard budget (``None``: no hard budget).

        When the planned steps fit, this counts down to 0 at the end of the plan; an exact
        search then decides whether more steps fit.
        """
        return (
            None
            if self._guard.steps_allowed is None
            else self._guard.steps_allowed - self._guard.steps_taken
        )

    # ------------------------------------------------------------------ training
    def batches(self) -> Iterator[Any]:
        """Iterate over one epoch of physical batches (virtual steps when configured).

        Starting the iterator leaves the global torch RNG untouched, so that a run resumed
        from a checkpoint draws the same dropout masks as the uninterrupted run.
        """
        if self.config.physical_batch_size:
            with BatchMemoryManager(
                data_loader=self.data_loader,
                max_physical_batch_size=self.config.physical_batch_size,
                optimizer=self.optimizer,
            ) as loader:
                yield from _rng_neutral_iter(loader)
        else:
            yield from _rng_neutral_iter(self.data_loader)

    def loss_per_example(
        self, batch: Any, *, loss_fn: Callable[[Any, Any], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Forward a batch and return each example's loss, shape ``(batch,)``.

        Args:
            batch: A mapping (Hugging Face style, with ``labels``) or a ``(inputs..., target)``
                sequence.
            loss_fn: ``loss_fn(outputs, target) -> (batch,)`` for non-HF models; the default
                handles Hugging Face outputs (see :func:`per_example_loss`).
        """
        self._guard.groups = None
        if (
            self.config.max_examples_per_user > 1
            and isinstance(batch, Mapping)
            and self.config.group_by
        ):
            groups = batch.get(self.config.group_by)
            if isinstance(groups, torch.Tensor):
                self._guard.groups = groups.long()
        if isinstance(self.model, BookKeepingModule):
            # Per-user clipping units for the next backward (None: one unit per example).
            self.model.groups = self._guard.groups
        args, kwargs, labels = _split_batch(batch, self._drop_keys)
        if loss_fn is None and _is_causal_lm(_base_hf_model(self.model)):
            args, kwargs, labels = _causal_lm_batch(batch, args, kwargs, labels)
        outputs = self.model(*args, **kwargs)
        if loss_fn is not None:
            return loss_fn(outputs, labels)
        if labels is None:
            raise DataError(
                "the batch has no labels: pass `labels` in the batch (HF) or a (inputs, target) pair, "
                "or give `loss_fn`"
            )
        return per_example_loss(self.model, outputs, labels)

    def train_step(
        self, batch: Any, *, loss_fn: Callable[[Any, Any], torch.Tensor] | None = None
    ) -> float:
        """Forward, backward and (at the end of a logical batch) one noisy optimizer step.

        Returns the batch's mean loss (``nan`` for an empty Poisson batch, which still takes a
        noise-only step so that accounting stays exact).

        Raises:
            BudgetExceededError: The step would exceed the hard budget; it was not taken.
        """
        if _batch_len(batch) == 0:
            self._empty_step()
            return float("nan")
        losses = self.loss_per_example(batch, loss_fn=loss_fn)
        if self.grad_sample_mode == "ghost":
            DPTensorFastGradientClipping(self.model, self.optimizer, losses, "mean").backward()
        else:
            losses.mean().backward()
        try:
            self.optimizer.step()
        finally:
            self.optimizer.zero_grad(set_to_none=True)
        return float(losses.detach().mean())

    def prepare_empty_batch(self) -> None:
        """Set zero per-sample gradients for an empty Poisson batch; the next step adds noise only."""
        for p in self.optimizer.params:
            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
            if self.grad_sample_mode in {"ghost", "bk"}:
                p.grad = torch.zeros_like(p)

    def generator_states(self) -> dict[str, Any]:
        """States of the sampling and noise generators of a seeded run (``None`` otherwise).

        An unseeded run's generators are seeded from the OS's entropy and their states are
        never exported: with them, anyone could replay the noise.
        """
        sampler = getattr(self.data_loader, "batch_sampler", None)
        gen = getattr(sampler, "generator", None)
        noise = self.optimizer.generator
        if not self._seeded:
            return {"sampler": None, "noise": None}
        return {
            "sampler": gen.get_state() if isinstance(gen, torch.Generator) else None,
            "noise": noise.get_state() if isinstance(noise, torch.Generator) else None,
        }

    def set_generator_states(self, states: Mapping[str, Any]) -> None:
        """Restore :meth:`generator_states` output."""
        sampler = getattr(self.data_loader, "batch_sampler", None)
        gen = getattr(sampler, "generator", None)
        if isinstance(gen, torch.Generator) and states.get("sampler") is not None:
            gen.set_state(states["sampler"])
        if (
            isinstance(self.optimizer.generator, torch.Generator)
            and states.get("noise") is not None
        ):
            self.optimizer.generator.set_state(states["noise"])

    def _empty_step(self) -> None:
        self.prepare_empty_batch()
        try:
            self.optimizer.step()
        finally:
            self.optimizer.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: model, optimizer, accountant, ledger and RNG states."""
        sampler = getattr(self.data_loader, "batch_sampler", None)
        gen = getattr(sampler, "generator", None)
        return {
            "module_state_dict": _unwrap(self.model).state_dict(),
            "optimizer_state_dict": self.optimizer.original_optimizer.state_dict(),
            "privacy_accountant_state_dict": self.accountant.state_dict(),
            "ledger": self.ledger.to_lines(),
            "ledger_head": self.ledger.head(),
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps_taken": self._guard.steps_taken,
            "planned_steps": self.planned_steps,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
                # The DP generators' states let anyone who reads the checkpoint replay the noise
                # (and, for a Mersenne Twister, recover the noise already drawn): they are kept
                # only for a seeded run, whose guarantee is void anyway. An unseeded run resumes
                # with fresh entropy.
                "sampler": gen.get_state()
                if self._seeded and isinstance(gen, torch.Generator)
                else None,
                "noise": self.optimizer.generator.get_state()
                if self._seeded and isinstance(self.optimizer.generator, torch.Generator)
                else None,
            },
        }

    @property
    def _seeded(self) -> bool:
        return self.config.seed is not None and not self.config.secure_mode

    def save_checkpoint(self, path: str | os.PathLike[str]) -> Path:
        """Save :meth:`state_dict` to ``path`` (``torch.save``, mode 0600) and the ledger beside it.

        The checkpoint holds the weights (trained on private data) and, for a seeded run, the
        generator states, so it is readable by its owner only; it is replaced atomically.
        """
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        save_private(self.state_dict(), p)
        self.ledger.save(p.with_suffix(".ledger.jsonl"))
        return p

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` into this run.

        The ledger in the checkpoint is verified and must extend this run's ledger (same first
        entries); the accountant must agree with it. A corrupt checkpoint or ledger is refused:
        resuming never resets ε.

        Raises:
            VerificationError: The checkpoint or its ledger is corrupt or inconsistent.
        """
        try:
            state = torch.load(path, weights_only=False)
        except Exception as exc:
            raise VerificationError(
                f"checkpoint {str(path)!r} cannot be read ({exc}); refusing to resume"
            ) from exc
        self.load_state_dict(state)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (see :meth:`load_checkpoint`)."""
        try:
            saved = BudgetLedger.from_lines(state["ledger"])
        except (KeyError, ValueError) as exc:
            raise VerificationError(
                f"checkpoint ledger is missing or corrupt ({exc}); refusing to resume"
            ) from exc
        if saved.head() != state.get("ledger_head"):
            raise VerificationError(
                "checkpoint ledger head does not match the recorded head; refusing to resume"
            )
        acc_hist = [tuple(h) for h in state["privacy_accountant_state_dict"]["history"]]
        if sum(h[2] for h in acc_hist) != saved.steps():
            raise VerificationError(
                f"checkpoint accountant has {sum(h[2] for h in acc_hist)} steps but its ledger has "
                f"{saved.steps()}; refusing to resume"
            )
        _replace_ledger(self.ledger, saved)
        _unwrap(self.model).load_state_dict(state["module_state_dict"])
        self.optimizer.original_optimizer.load_state_dict(state["optimizer_state_dict"])
        self.accountant.load_state_dict(state["privacy_accountant_state_dict"])
        self.accountant.history = [
            tuple(h) for h in self.ledger.history()
        ]  # the ledger is the record
        self._guard.steps_taken = int(state.get("steps_taken", 0))
        self._guard.first_step_checked = True
        if self.config.max_epsilon is not None:
            self._guard.steps_allowed = self._guard.steps_taken
            self._guard.exact = False
        rng = state.get("rng", {})
        if rng.get("torch") is not None:
            torch.set_rng_state(rng["torch"])
        if rng.get("numpy") is not None:
            np.random.set_state(rng["numpy"])
        if rng.get("python") is not None:
            random.setstate(rng["python"])
        sampler = getattr(self.data_loader, "batch_sampler", None)
        gen = getattr(sampler, "generator", None)
        if isinstance(gen, torch.Generator) and rng.get("sampler") is not None:
            gen.set_state(rng["sampler"])
        if isinstance(self.optimizer.generator, torch.Generator) and rng.get("noise") is not None:
            self.optimizer.generator.set_state(rng["noise"])

    def close(self) -> None:
        """Remove the hooks this wrapper installed."""
        for h in self._guard.hooks:
            h.remove()
        self._guard.hooks.clear()
        if isinstance(self.model, BookKeepingModule):
            self.model.remove_hooks()


def _rng_neutral_iter(loader: Any) -> Iterator[Any]:
    state = torch.get_rng_state()
    it = iter(loader)
    torch.set_rng_state(state)
    return it


def _is_prefix(short: list[dict[str, Any]], long: list[dict[str, Any]]) -> bool:
    return len(short) <= len(long) and all(
        a["hash"] == b["hash"] for a, b in zip(short, long, strict=False)
    )


def save_private(obj: Any, path: Path) -> None:
    """``torch.save`` ``obj`` to ``path`` through a 0600 temporary file, then rename it."""
    from safeguard._files import open_private

    tmp = path.with_name(path.name + ".tmp")
    try:
        with open_private(tmp, "wb") as fh:
            torch.save(obj, fh)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def _replace_ledger(target: BudgetLedger, saved: BudgetLedger) -> None:
    """Reconcile ``target`` (this run's ledger) with a checkpoint's ledger, conservatively.

    ``target`` normally ends with the run_start that :func:`make_private` just recorded; what
    came before it (``base``) and the checkpoint's ledger must be one history. The longer of
    the two wins: a ledger that went on past the checkpoint (training continued, then stopped)
    keeps those steps, which count even though their updates were lost.
    """
    mine = list(target.entries())
    theirs = list(saved.entries())
    starts = [i for i, e in enumerate(mine) if e["kind"] == "run_start"]
    base = mine[: starts[-1]] if starts else []
    if _is_prefix(mine, theirs) or _is_prefix(base, theirs):
        keep = theirs
    elif _is_prefix(theirs, base):
        keep = base
    else:
        raise VerificationError(
            "the checkpoint's ledger and this ledger record different histories; refusing to resume "
            "rather than restart the budget"
        )
    target._entries = [dict(e) for e in keep]
    target._eps_cache.clear()
    if target.path is not None:
        target.save(target.path)
    target.write_anchors()


def _unwrap(model: nn.Module) -> nn.Module:
    m = model
    while hasattr(m, "_module"):
        m = m._module
    if hasattr(m, "module") and type(m).__name__ in {"DPDDP", "DistributedDataParallel"}:
        m = m.module
    return m


# --------------------------------------------------------------------------- calibration
def _calibrate_sigma(
    *,
    ledger: BudgetLedger,
    accountant: str,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
) -> float:
    """Smallest σ (to 1% of ε, from below) whose ε after ``steps`` more steps is ≤ the target.

    RDP (cheap, numpy) brackets the search: RDP's ε bounds PRV's from above, so the σ that
    RDP needs is enough for PRV; a few regula-falsi steps on the run's accountant finish it.
    """
    prior = ledger.history() if len(ledger) else []

    def eps_with(acc: str, sigma: float) -> float:
        return compute_epsilon(acc, [*prior, (sigma, sample_rate, steps)], delta)

    prior_eps = compute_epsilon(accountant, prior, delta) if prior else 0.0
    if prior_eps >= target_epsilon:
        raise ConfigError(
            f"`target_epsilon` (={target_epsilon:g}) cannot be reached: the ledger's earlier runs already "
            f"spent ε = {prior_eps:.3f} at δ = {delta:g}; the nearest achievable total is just above "
            f"{prior_eps:.3f} (raise the budget only if the data owner agrees, or use new data)"
        )

    def search(acc: str, hi: float) -> tuple[float, float]:
        e_hi = eps_with(acc, hi)
        while e_hi > target_epsilon:
            hi *= 2
            if hi > _MAX_SIGMA:
                best = eps_with(acc, _MAX_SIGMA)
                raise ConfigError(
                    f"`target_epsilon` (={target_epsilon:g}) cannot be reached with {steps} steps at q = "
                    f"{sample_rate:.4g}: even σ = {_MAX_SIGMA:g} gives ε = {best:.4g}; the nearest achievable "
                    f"is ε ≈ {best:.4g} — raise `target_epsilon`, or train fewer steps / smaller batches"
                )
            e_hi = eps_with(acc, hi)
        return hi, e_hi

    def refine(acc: str, hi: float, e_hi: float) -> float:
        lo = hi * 0.7
        e_lo = eps_with(acc, lo)
        while e_lo <= target_epsilon and lo > 1e-3:
            hi, e_hi, lo = lo, e_lo, lo * 0.7
            e_lo = eps_with(acc, lo)
        for _ in range(40):
            if target_epsilon - e_hi <= 0.01 * target_epsilon or hi - lo < 1e-4:
                break
            # Regula falsi on log ε, kept inside the bracket.
            a, b = math.log(e_lo), math.log(max(e_hi, 1e-12))
            t = (a - math.log(target_epsilon)) / (a - b) if a != b else 0.5
            mid = lo + min(max(t, 0.1), 0.9) * (hi - lo)
            e = eps_with(acc, mid)
            if e <= target_epsilon:
                hi, e_hi = mid, e
            else:
                lo, e_lo = mid, e
        return hi

    if accountant == "rdp":
        hi, e_hi = search("rdp", 1.0)
        return refine("rdp", hi, e_hi)
    sigma_rdp = refine("rdp", *search("rdp", 1.0))
    hi, e_hi = search(accountant, sigma_rdp)
    return refine(accountant, hi, e_hi)


# --------------------------------------------------------------------------- preflight
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


def _slice(batch: Any, i: int) -> Any:
    if isinstance(batch, Mapping):
        return {k: (v[i : i + 1] if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_slice(b, i) for b in batch)
    return batch[i : i + 1]


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
        norms_only = run.grad_sample_mode in {"ghost", "bk"}
        if run.grad_sample_mode == "ghost":
            per_sample = model.get_norm_sample().detach().clone()
        elif run.grad_sample_mode == "bk":
            if model.last_norms is None or model.last_norms.shape[0] != n:
                raise PrivacyError(
                    "pre-flight: book-keeping clipping produced no per-sample norms for the probe batch; "
                    "the model's forward does not go through its trainable layers. Use "
                    "grad_sample_mode='hooks'"
                )
            per_sample = model.last_norms.detach().clone()
        else:
            missing = [i for i, p in enumerate(params) if getattr(p, "grad_sample", None) is None]
            if missing:
                raise PrivacyError(
                    f"pre-flight: {len(missing)} trainable parameter(s) got no per-sample gradient; the "
                    "model's forward does not go through them per example. Freeze them or change "
                    "`grad_sample_mode`"
                )
            per_sample = [p.grad_sample.detach().clone() for p in params]
        run.optimizer.zero_grad(set_to_none=True)
        if hasattr(model, "disable_hooks"):
            model.disable_hooks()
        worst = 0.0
        for i in range(n):
            for p in params:
                p.grad = None
            loss_i = run.loss_per_example(_slice(batch, i), loss_fn=loss_fn).sum()
            grads = torch.autograd.grad(loss_i, params, allow_unused=True)
            grads = [
                torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=False)
            ]
            if norms_only:
                ref = torch.sqrt(sum((g.double() ** 2).sum() for g in grads))
                got = per_sample[i].double()
                err = float((ref - got).abs() / (ref.abs() + 1e-8))
            else:
                num = sum(
                    ((gs[i].double() - g.double()) ** 2).sum()
                    for gs, g in zip(per_sample, grads, strict=False)
                )
                den = sum((g.double() ** 2).sum() for g in grads)
                err = float(torch.sqrt(num) / (torch.sqrt(den) + 1e-8))
            worst = max(worst, err)
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


# --------------------------------------------------------------------------- make_private
def _choose_mode(config: DPConfig, model: nn.Module, distributed: bool = False) -> str:
    """The grad_sample_mode to use: the configured one, or for ``auto`` the fastest that applies.

    ``auto``: book-keeping (bk) for Hugging Face models and LoRA/peft adapters whose
    trainable layers are all Linear / Conv1D / Embedding / LayerNorm (tied embeddings
    included) outside DPDDP and gradient checkpointing; otherwise hooks for adapters, and
    ghost (or hooks when weights are tied) for full fine-tunes.
    """
    if config.grad_sample_mode == "bk" and distributed:
        raise ConfigError(
            "`grad_sample_mode` (='bk') does not support `distributed=True` (DPDDP): its clipped sums "
            "are written outside the DDP gradient hooks. Use grad_sample_mode='ghost' or 'hooks'"
        )
    base = _base_hf_model(model)
    flag = (
        "is_activation_checkpointing"  # transformers ≥ 5 name; the old one warns
        if hasattr(type(base), "is_activation_checkpointing")
        else "is_gradient_checkpointing"
    )
    checkpointing = bool(getattr(base, flag, False))
    if config.grad_sample_mode == "bk" and checkpointing:
        raise ConfigError(
            "`grad_sample_mode` (='bk') does not support gradient checkpointing (the forward re-run "
            "inside the backward bypasses its bookkeeping): call model.gradient_checkpointing_disable(), "
            "or use grad_sample_mode='ghost' or 'hooks'"
        )
    tied = _tied_trainable(model)
    if config.grad_sample_mode == "ghost" and tied:
        raise ConfigError(
            "`grad_sample_mode` (='ghost') cannot clip tied parameters ("
            + "; ".join(tied[:3])
            + "): Opacus "
            "refuses parameter tying under ghost clipping. Use grad_sample_mode='hooks', or untie them "
            "(e.g. tie_word_embeddings=False in the model config)"
        )
    if config.grad_sample_mode != "auto":
        return config.grad_sample_mode
    bk_applies = not distributed and not checkpointing and not bk_unsupported_layers(model)
    if _is_peft(model):
        # LoRA's trainable layers are plain nn.Linear adapters: one code path (bk) for full
        # and adapter fine-tuning; both bk and hooks run within noise of a non-private step.
        return "bk" if bk_applies else "hooks"
    hf = base is not None
    if hf and bk_applies:
        return "bk"
    if tied:
        return "hooks"
    return "ghost" if hf else "hooks"


def _dataset_size(loader: DataLoader) -> int:
    try:
        return len(loader.dataset)  # type: ignore[arg-type]
    except TypeError as exc:
        raise DataError(
            "`data_loader` must be over a map-style dataset with a length (Poisson sampling)"
        ) from exc


def _entropy_seed() -> int:
    """64 bits from the operating system's entropy pool, for a generator seed never stored."""
    return int.from_bytes(os.urandom(8), "little")


def _fingerprint(dataset: Any) -> str | None:
    fp = getattr(dataset, "_fingerprint", None)
    return str(fp) if fp else None


def make_private(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data_loader: DataLoader,
    config: DPConfig,
    ledger: BudgetLedger | str | os.PathLike[str] | None = None,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
    distributed: bool = False,
) -> PrivateTraining:
    """Make a model, optimizer and loader differentially private (DP-SGD on Opacus).

    Args:
        model: The model, in train mode. Hugging Face models (GPT-2, BERT, Llama-style,
            peft/LoRA) are supported as they are.
        optimizer: An optimizer over the model's trainable parameters (DP-SGD with momentum
            is the known-good recipe; DP-Adam often fails to learn at small N).
        data_loader: A loader over a map-style dataset; its ``batch_size`` is the expected
            logical batch size unless ``config.batch_size`` is set.
        config: The :class:`DPConfig`.
        ledger: A :class:`BudgetLedger`, or a path to a ledger file (appended to, and its earlier
            runs count toward the budget). ``None`` keeps the ledger in memory.
        loss_fn: ``loss_fn(outputs, target) -> (batch,)`` for non-HF models, used by the
            pre-flight check and :meth:`PrivateTraining.train_step`.
        distributed: The model is wrapped in Opacus ``DPDDP`` (torch.distributed initialised);
            each process Poisson-samples its shard with the same q, rank 0 alone adds the noise
            and writes the ledger file, and gradients are summed across processes before the
            step.

    Returns:
        A :class:`PrivateTraining`.

    Raises:
        ConfigError: The model has layers Opacus cannot handle (all listed, each with its fix),
            δ ≥ 1/N, the target ε cannot be reached, ghost clipping meets tied weights, or
            grad_sample_mode='bk' meets an unsupported trainable layer or ``distributed``.
        BudgetExceededError: The ledger's budget is already spent.
    """
    if not isinstance(config, DPConfig):
        raise ConfigError(f"`config` must be a DPConfig, got {type(config).__name__}")
    if not model.training:
        log.info("model was in eval mode (as from_pretrained returns it); switched to train mode")
        model.train()
    problems = validation_problems(model)
    if problems:
        raise ConfigError(
            f"the model has {len(problems)} layer(s) that DP-SGD cannot handle:\n  "
            + "\n  ".join(problems)
        )
    if config.max_examples_per_user > 1 and config.physical_batch_size:
        raise ConfigError(
            f"`max_examples_per_user` (={config.max_examples_per_user}) > 1 with `physical_batch_size` is not "
            "supported: a user's examples must be clipped together in one physical batch"
        )
    if isinstance(data_loader.dataset, IterableDataset):
        raise DataError(
            "`data_loader` is over an IterableDataset; Poisson sampling needs a map-style dataset"
        )
    if not isinstance(ledger, BudgetLedger):
        ledger = BudgetLedger(ledger)
    if distributed and torch.distributed.get_rank() != 0 and ledger.path is not None:
        ledger._path = None  # every rank keeps the ledger in memory; rank 0 alone writes the file
    dataset = data_loader.dataset
    n_examples = _dataset_size(data_loader)
    drop_keys: tuple[str, ...] = ()
    groups: list[Any] | None = None
    if config.group_by:
        groups = _group_ids(dataset, config.group_by)
        num_units = len(set(groups))
        drop_keys = (config.group_by,)
    else:
        num_units = n_examples
    batch_size = config.batch_size or data_loader.batch_size
    if batch_size is None:
        raise ConfigError(
            "set `batch_size` in DPConfig: the loader has no batch_size (custom batch sampler)"
        )
    if config.group_by and config.batch_size is None:
        batch_size = min(batch_size, num_units)
    if batch_size > num_units:
        raise ConfigError(
            f"`batch_size` (={batch_size}) is larger than the number of units ({num_units})"
        )
    sample_rate = batch_size / num_units
    if config.target_delta is None:
        delta = default_delta(num_units)
        delta_source = f"default 1/(10 N) with N = {num_units} units, rounded down"
        log.info("δ not set: using %g (%s)", delta, delta_source)
    else:
        delta = config.target_delta
        delta_source = "configured"
        if delta >= 1.0 / num_units:
            raise ConfigError(
                f"`target_delta` (={delta:g}) must be < 1/N = {1.0 / num_units:.3g} (N = {num_units} units): a δ "
                f"that large allows releasing a unit outright. Use ≤ {default_delta(num_units):g} (1/(10 N))"
            )
    if len(ledger) and ledger.runs()[0]["delta"] != delta and config.target_delta is None:
        delta = float(ledger.runs()[0]["delta"])
        delta_source = "inherited from the ledger's first run"
    if delta > 1e-3 or num_units < 100:
        warnings.warn(
            f"δ = {delta:g} with N = {num_units} units of privacy: "
            + (
                f"the guarantee may fail outright with probability up to δ (1 in {1 / delta:.0f}); "
                "δ ≤ 1e-5 is usual. "
                if delta > 1e-3
                else ""
            )
            + (
                f"With only {num_units} units, DP noise dominates what can be learned. "
                if num_units < 100
                else ""
            )
            + "Train on more data, or set `target_delta` lower",
            UserWarning,
            stacklevel=2,
        )
    steps_per_epoch = max(1, round(1.0 / sample_rate))
    if config.steps is not None:
        planned: int | None = config.steps
    elif config.epochs is not None:
        planned = max(1, round(config.epochs * steps_per_epoch))
    else:
        planned = None
    if config.noise_multiplier is not None:
        sigma = float(config.noise_multiplier)
    else:
        assert planned is not None and config.target_epsilon is not None
        sigma = _calibrate_sigma(
            ledger=ledger,
            accountant=config.accountant,
            target_epsilon=config.target_epsilon,
            delta=delta,
            sample_rate=sample_rate,
            steps=planned,
        )
        log.info(
            "calibrated σ = %.4f for ε = %g over %d steps at q = %.4g",
            sigma,
            config.target_epsilon,
            planned,
            sample_rate,
        )

    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)) and num_units < 10_000:
        log.warning(
            "DP-Adam with N = %d units often fails to learn (Adam's normalisation amplifies the noise); "
            "DP-SGD with momentum 0.9 is the known-good recipe at this size",
            num_units,
        )
    mode = _choose_mode(config, model, distributed)
    if config.max_examples_per_user > 1 and mode == "ghost":
        if config.grad_sample_mode == "ghost":
            raise ConfigError(
                "`max_examples_per_user` > 1 needs per-example gradients to sum per user before clipping; "
                "ghost clipping never materialises them: use grad_sample_mode='hooks' or 'functorch'"
            )
        mode = "hooks"
        log.info("max_examples_per_user > 1: using hooks (ghost clipping cannot sum per user)")
    if mode == "ghost" and config.physical_batch_size:
        log.info(
            "ghost clipping with virtual steps: each physical batch is clipped before accumulation"
        )

    # ---- the Opacus pieces
    # DP randomness never comes from torch's global generator (a user's manual_seed would fix
    # it): without an explicit seed both generators are seeded from the OS's entropy, and
    # those seeds are not kept anywhere.
    noise_device = next((p.device for p in model.parameters()), torch.device("cpu"))
    seeded = config.seed is not None and not config.secure_mode
    if seeded:
        assert config.seed is not None
        seed_gen = torch.Generator().manual_seed(config.seed)
        noise_gen = torch.Generator(device=noise_device).manual_seed(config.seed + 1)
    else:
        seed_gen = torch.Generator().manual_seed(_entropy_seed())
        noise_gen = torch.Generator(device=noise_device).manual_seed(_entropy_seed())
    if config.secure_mode:
        try:
            import torchcsprng as csprng  # type: ignore[import-not-found]
        except ImportError as exc:
            raise missing_dependency("torchcsprng", "dp") from exc
        seed_gen = noise_gen = csprng.create_random_device_generator("/dev/urandom")

    hook_handle = _install_hf_input_hook(model)
    kwargs: dict[str, Any] = {"batch_first": True, "loss_reduction": "mean"}
    if mode == "ghost":
        kwargs["max_grad_norm"] = config.max_grad_norm
    try:
        if mode == "bk":
            dp_model: nn.Module = BookKeepingModule(model, max_grad_norm=config.max_grad_norm)
        else:
            dp_model = prepare_module(model, mode, True, **kwargs)
    except (NotImplementedError, ConfigError) as exc:
        if hook_handle is not None:
            hook_handle.remove()
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"grad_sample_mode={mode!r} cannot wrap this model: {exc}") from exc
    if config.poisson_sampling and mode != "bk":
        dp_model.forbid_grad_accumulation()
    if mode == "bk" and config.max_examples_per_user > 1:
        dp_model.require_groups = (
            True  # a batch without user ids is refused, not clipped per example
        )

    expected_batch = sample_rate * num_units
    if distributed:
        expected_batch /= torch.distributed.get_world_size()
    # bk leaves Σ_i c_i g_i in p.grad, the contract of Opacus' fast-gradient-clipping optimizer
    # (it adds N(0, σ²C²), divides by the expected batch size and steps).
    optim_cls = get_optimizer_class(
        clipping="flat",
        distributed=distributed,
        grad_sample_mode="ghost" if mode == "bk" else mode,
    )
    dp_opt = optim_cls(
        optimizer=optimizer,
        noise_multiplier=sigma,
        max_grad_norm=config.max_grad_norm,
        expected_batch_size=expected_batch,
        loss_reduction="mean",
        generator=noise_gen,
        secure_mode=config.secure_mode,
    )

    if groups is not None:
        if distributed:
            raise ConfigError("`group_by` with `distributed=True` is not supported yet")
        sampler = UserPoissonSampler(
            groups,
            sample_rate=sample_rate,
            steps=steps_per_epoch,
            generator=seed_gen,
            per_user=config.max_examples_per_user,
        )
        if config.max_examples_per_user > 1:
            first = _grouping_collate(data_loader.collate_fn, config.group_by or "")
        else:
            first = _dropping_collate(data_loader.collate_fn, config.group_by or "")
        dp_loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=wrap_collate_with_empty(
                collate_fn=first, batch_first=True, rand_on_empty=False
            ),
            num_workers=data_loader.num_workers,
        )
    elif config.poisson_sampling:
        dp_loader = DPDataLoader(
            dataset,
            sample_rate=sample_rate,
            collate_fn=data_loader.collate_fn,
            distributed=distributed,
            num_workers=data_loader.num_workers,
        )
        # Only the sampler draws from the seeded generator (a DataLoader would also draw a
        # base seed from it each time an iterator starts, which breaks exact resumption).
        dp_loader.batch_sampler.generator = seed_gen
    else:
        dp_loader = data_loader

    acc = create_accountant(mechanism="rdp" if config.accountant == "gdp" else config.accountant)
    acc.history = [tuple(h) for h in ledger.history()]
    ledger.start_run(
        config=config.to_dict(),
        dataset_size=num_units,
        delta=delta,
        delta_source=delta_source,
        sample_rate=sample_rate,
        noise_multiplier=sigma,
        max_grad_norm=config.max_grad_norm,
        accountant=config.accountant,
        unit_of_privacy=config.unit_of_privacy,
        max_epsilon=config.max_epsilon,
        planned_steps=planned,
        dataset_fingerprint=_fingerprint(dataset),
        seeded_noise=seeded,
    )
    allowed = None
    if config.max_epsilon is not None:
        # Steps known to fit the budget; extended by an exact search only if training goes on.
        if planned is not None and ledger.fits_budget(
            noise_multiplier=sigma,
            sample_rate=sample_rate,
            steps=planned,
            max_epsilon=config.max_epsilon,
        ):
            allowed = planned
        else:
            allowed = ledger.steps_allowed(
                noise_multiplier=sigma, sample_rate=sample_rate, max_epsilon=config.max_epsilon
            )
            if planned is not None and allowed < planned:
                log.warning(
                    "the budget allows %d more steps but %d are planned; training will stop at the budget",
                    allowed,
                    planned,
                )
        if allowed == 0:
            raise BudgetExceededError(
                f"the budget ε ≤ {config.max_epsilon:g} is already spent (ε = {ledger.epsilon_spent():.3f} at "
                f"δ = {delta:g} after {ledger.steps()} steps); no further step can be taken"
            )
    guard = _Guard(steps_allowed=allowed, exact=allowed is not None and allowed != planned)
    if hook_handle is not None:
        guard.hooks.append(hook_handle)

    run = PrivateTraining(
        model=dp_model,
        optimizer=dp_opt,
        data_loader=dp_loader,
        ledger=ledger,
        config=config,
        noise_multiplier=sigma,
        sample_rate=sample_rate,
        delta=delta,
        num_units=num_units,
        grad_sample_mode=mode,
        planned_steps=planned,
        accountant=acc,
        _guard=guard,
        _drop_keys=drop_keys,
    )
    _attach_guards(run)

    if config.preflight:
        base = _base_hf_model(model)
        gen = torch.Generator().manual_seed(12345)
        probe = None
        collate = (
            _dropping_collate(data_loader.collate_fn, config.group_by)
            if config.group_by
            else data_loader.collate_fn
        )
        example = next(iter(DataLoader(dataset, batch_size=3, collate_fn=collate)))
        if base is not None:
            probe = _synthetic_batch(base, example, 3, gen)
        if probe is None:
            probe = example
            log.info(
                "pre-flight uses 3 training examples (no synthetic inputs for this model type)"
            )
        _preflight_grads(run, probe, loss_fn)
    log.info(
        "DP-SGD ready: mode=%s σ=%.4f q=%.4g C=%g δ=%g accountant=%s unit=%s",
        mode,
        sigma,
        sample_rate,
        config.max_grad_norm,
        delta,
        config.accountant,
        config.unit_of_privacy,
    )
    return run


def _attach_guards(run: PrivateTraining) -> None:
    opt = run.optimizer
    guard = run._guard
    trainable = [(n, p) for n, p in _unwrap(run.model).named_parameters() if p.requires_grad]
    original_add_noise = opt.add_noise
    original_step = opt.step

    def add_noise() -> None:
        if guard.steps_allowed is not None and guard.steps_taken >= guard.steps_allowed:
            _extend_allowance(run)
        if guard.steps_allowed is not None and guard.steps_taken >= guard.steps_allowed:
            for p in opt.params:
                p.summed_grad = None
                p.grad_sample = None
            raise BudgetExceededError(
                f"the next step would exceed the budget ε ≤ {run.config.max_epsilon:g} (spent "
                f"ε = {run.ledger.epsilon_spent():.4f} at δ = {run.delta:g} after {run.ledger.steps()} steps, "
                f"{run.ledger.accountant} accountant); the step was not taken. Save the model and stop, "
                "or raise the budget only if the data owner agrees"
            )
        if not guard.first_step_checked:
            guard.snapshot = {n: p.detach().clone() for n, p in trainable}
            guard.frozen_digest = _frozen_digest(_unwrap(run.model))
        original_add_noise()

    def step_hook(optim: DPOptimizer) -> None:
        run.accountant.step(noise_multiplier=optim.noise_multiplier, sample_rate=run.sample_rate)
        run.ledger.record_step(
            sample_rate=run.sample_rate,
            noise_multiplier=optim.noise_multiplier,
            max_grad_norm=optim.max_grad_norm,
        )
        guard.steps_taken += 1

    def step(closure: Callable[[], float] | None = None) -> Any:
        out = original_step(closure)
        if not guard.first_step_checked and guard.snapshot:
            guard.first_step_checked = True
            if run.config.preflight:
                _check_first_step(run, trainable)
        return out

    original_clip = opt.clip_and_accumulate

    def clip_and_accumulate() -> None:
        # User-level DP with several examples per user: sum each user's per-example gradients
        # before clipping, so that the clipping bound holds per user.
        groups = guard.groups
        guard.groups = None
        if groups is not None:
            users = int(groups.max()) + 1 if groups.numel() else 0
            for p in opt.params:
                gs = p.grad_sample
                if gs is None:
                    continue
                if isinstance(gs, list) or gs.shape[0] != groups.shape[0]:
                    raise PrivacyError(
                        "per-user aggregation: per-sample gradients do not line up with the batch's users"
                    )
                agg = torch.zeros((users, *gs.shape[1:]), dtype=gs.dtype, device=gs.device)
                p.grad_sample = agg.index_add_(0, groups.to(gs.device), gs)
        original_clip()

    def accumulate() -> None:
        # Opacus' fast-gradient-clipping optimizer copies each p.grad with copy.deepcopy, whose
        # per-tensor Python overhead is a visible part of a small model's step; a clone is the
        # same copy (the clipped sum is kept apart from p.grad, which zero_grad may zero in place).
        for p in opt.params:
            if p.summed_grad is not None:
                p.summed_grad.add_(p.grad.detach())
            else:
                p.summed_grad = p.grad.detach().clone()

    if run.grad_sample_mode in {"ghost", "bk"}:
        opt.accumulate = accumulate  # type: ignore[method-assign]
    if run.config.max_examples_per_user > 1 and run.grad_sample_mode != "bk":
        opt.clip_and_accumulate = clip_and_accumulate  # type: ignore[method-assign]
    opt.add_noise = add_noise  # type: ignore[method-assign]
    opt.attach_step_hook(step_hook)
    opt.step = step  # type: ignore[method-assign]


def _extend_allowance(run: PrivateTraining) -> None:
    guard = run._guard
    if guard.exact or run.config.max_epsilon is None:
        return
    more = run.ledger.steps_allowed(
        noise_multiplier=run.noise_multiplier,
        sample_rate=run.sample_rate,
        max_epsilon=run.config.max_epsilon,
    )
    guard.steps_allowed = guard.steps_taken + more
    guard.exact = True


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
