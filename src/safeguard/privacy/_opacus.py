"""DP-SGD on Opacus: :func:`make_private` (adapter; imports torch).

The pieces are Opacus' own (per-sample gradient module, ``DPOptimizer``, Poisson
``DPDataLoader``, accountants); :func:`make_private` plans the run
(:class:`~safeguard.privacy.plan.DPPlan`), chooses the pieces, fixes the known Hugging Face
pitfalls (:mod:`._hf`), samples users or examples (:mod:`._sampling`), runs pre-flight
checks (:mod:`._preflight`), enforces the budget (:mod:`._guards`), and records every noisy
step in the :class:`~safeguard.privacy.ledger.BudgetLedger`. It returns a
:class:`~._training.PrivateTraining`.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from typing import Any

from safeguard.errors import (
    BudgetExceededError,
    ConfigError,
    DataError,
    missing_dependency,
)

# The frameworks first: without the `dp` extra, make_private names it (the adapter modules
# imported below load torch and opacus themselves).
try:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, IterableDataset
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise missing_dependency("torch", "dp") from exc

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
        from opacus.accountants import create_accountant
        from opacus.grad_sample.utils import prepare_module
        from opacus.optimizers import DPOptimizer, get_optimizer_class
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise missing_dependency("opacus", "dp") from exc

from safeguard.privacy._bk import BookKeepingModule, bk_unsupported_layers
from safeguard.privacy._guards import _attach_guards

# `noqa: F401`: re-exported; these lived here before the module was split, and are imported from here.
from safeguard.privacy._hf import (
    IGNORE_INDEX,  # noqa: F401
    _base_hf_model,
    _batch_len,  # noqa: F401
    _fill_hf_inputs,  # noqa: F401
    _install_hf_input_hook,
    _is_peft,
    _slice,  # noqa: F401
    _tied_trainable,
    per_example_loss,
)
from safeguard.privacy._preflight import run_preflight, validation_problems
from safeguard.privacy._sampling import (
    UserPoissonSampler,  # noqa: F401
    _prepare_data_loader,
    _prepare_generators,
    _privacy_units,
)
from safeguard.privacy._training import (
    PrivateTraining,
    _Guard,
    save_private,  # noqa: F401
)
from safeguard.privacy.config import DPConfig
from safeguard.privacy.ledger import BudgetLedger
from safeguard.privacy.plan import DPPlan

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
    _check_inputs(config, model, data_loader)
    ledger = _prepare_ledger(ledger, distributed)
    groups, num_units = _privacy_units(data_loader, config)
    plan = DPPlan.build(
        config, ledger, num_units=num_units, loader_batch_size=data_loader.batch_size, stacklevel=3
    )
    _warn_about_adam(optimizer, plan.num_units)
    mode = _prepare_mode(config, model, distributed)
    seed_gen, noise_gen = _prepare_generators(config, model)
    dp_model, hook_handle = _prepare_model(model, mode, config)
    dp_optimizer = _prepare_optimizer(optimizer, config, plan, mode, noise_gen, distributed)
    dp_loader = _prepare_data_loader(data_loader, config, plan, groups, seed_gen, distributed)
    accountant = _prepare_accountant(config, ledger)
    _start_run(ledger, config, plan, data_loader.dataset)
    hooks = [] if hook_handle is None else [hook_handle]
    guard = _Guard(steps_allowed=plan.steps_allowed, exact=plan.exact, hooks=hooks)
    run = PrivateTraining(
        model=dp_model,
        optimizer=dp_optimizer,
        data_loader=dp_loader,
        ledger=ledger,
        config=config,
        noise_multiplier=plan.noise_multiplier,
        sample_rate=plan.sample_rate,
        delta=plan.delta,
        num_units=plan.num_units,
        grad_sample_mode=mode,
        planned_steps=plan.planned_steps,
        accountant=accountant,
        _guard=guard,
        _drop_keys=(config.group_by,) if config.group_by else (),
    )
    _attach_guards(run)
    if config.preflight:
        run_preflight(run, model, data_loader, loss_fn)
    log.info(
        "DP-SGD ready: mode=%s σ=%.4f q=%.4g C=%g δ=%g accountant=%s unit=%s",
        *(mode, plan.noise_multiplier, plan.sample_rate, config.max_grad_norm, plan.delta),
        *(config.accountant, config.unit_of_privacy),
    )
    return run


# --------------------------------------------------------------------------- the steps
def _check_inputs(config: DPConfig, model: nn.Module, data_loader: DataLoader) -> None:
    """Refuse what DP-SGD cannot train (every bad layer at once); put the model in train mode."""
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


def _prepare_ledger(
    ledger: BudgetLedger | str | os.PathLike[str] | None, distributed: bool
) -> BudgetLedger:
    if not isinstance(ledger, BudgetLedger):
        ledger = BudgetLedger(ledger)
    if distributed and torch.distributed.get_rank() != 0 and ledger.path is not None:
        ledger._path = None  # every rank keeps the ledger in memory; rank 0 alone writes the file
    return ledger


def _warn_about_adam(optimizer: torch.optim.Optimizer, num_units: int) -> None:
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)) and num_units < 10_000:
        log.warning(
            "DP-Adam with N = %d units often fails to learn (Adam's normalisation amplifies the noise); "
            "DP-SGD with momentum 0.9 is the known-good recipe at this size",
            num_units,
        )


def _prepare_mode(config: DPConfig, model: nn.Module, distributed: bool) -> str:
    """:func:`_choose_mode`, then hooks where several examples per user must sum before clipping."""
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
    return mode


def _prepare_model(model: nn.Module, mode: str, config: DPConfig) -> tuple[nn.Module, Any]:
    """(the model wrapped for per-sample gradients or book-keeping, the HF input hook or None)."""
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
    return dp_model, hook_handle


def _prepare_optimizer(
    optimizer: torch.optim.Optimizer,
    config: DPConfig,
    plan: DPPlan,
    mode: str,
    generator: Any,
    distributed: bool,
) -> DPOptimizer:
    """Opacus' DPOptimizer for ``mode``: clips, adds N(0, σ²C²) and divides by the expected batch."""
    expected_batch = plan.sample_rate * plan.num_units
    if distributed:
        expected_batch /= torch.distributed.get_world_size()
    # bk leaves Σ_i c_i g_i in p.grad, the contract of Opacus' fast-gradient-clipping optimizer
    # (it adds N(0, σ²C²), divides by the expected batch size and steps).
    optim_cls = get_optimizer_class(
        clipping="flat",
        distributed=distributed,
        grad_sample_mode="ghost" if mode == "bk" else mode,
    )
    return optim_cls(
        optimizer=optimizer,
        noise_multiplier=plan.noise_multiplier,
        max_grad_norm=config.max_grad_norm,
        expected_batch_size=expected_batch,
        loss_reduction="mean",
        generator=generator,
        secure_mode=config.secure_mode,
    )


def _prepare_accountant(config: DPConfig, ledger: BudgetLedger) -> Any:
    """The Opacus accountant kept in step with the ledger (RDP stands in for GDP)."""
    acc = create_accountant(mechanism="rdp" if config.accountant == "gdp" else config.accountant)
    acc.history = [tuple(h) for h in ledger.history()]
    return acc


def _start_run(ledger: BudgetLedger, config: DPConfig, plan: DPPlan, dataset: Any) -> None:
    """Record the run's start in the ledger; refuse to go on when the budget is already spent."""
    ledger.start_run(
        config=config.to_dict(),
        dataset_size=plan.num_units,
        delta=plan.delta,
        delta_source=plan.delta_source,
        sample_rate=plan.sample_rate,
        noise_multiplier=plan.noise_multiplier,
        max_grad_norm=config.max_grad_norm,
        accountant=config.accountant,
        unit_of_privacy=config.unit_of_privacy,
        max_epsilon=config.max_epsilon,
        planned_steps=plan.planned_steps,
        dataset_fingerprint=_fingerprint(dataset),
        seeded_noise=config.seed is not None and not config.secure_mode,
    )
    if plan.steps_allowed == 0:
        raise BudgetExceededError(
            f"the budget ε ≤ {config.max_epsilon:g} is already spent (ε = {ledger.epsilon_spent():.3f} at "
            f"δ = {plan.delta:g} after {ledger.steps()} steps); no further step can be taken"
        )
