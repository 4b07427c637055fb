"""Book-keeping DP clipping: one forward, one backward (adapter; imports torch).

Implements the book-keeping (BK) method of Bu, Wang, Zha & Karypis (2022), "Differentially
Private Optimization on Large Model at Small Cost" (Algorithm 1, with the mixed ghost-norm
choice of their Eq. 4): the backward pass computes only activation gradients, and each
trainable layer's per-sample gradient norms and clipped gradient sum are computed from what
that backward already produced.

For a layer with per-sample gradient ``G_i = Σ_t r_{i,t} c_{i,t}ᵀ`` (a Linear weight:
``r = g`` the output gradient, ``c = a`` the input; transformers' ``Conv1D``: ``r = a``,
``c = g``; an embedding: ``r = onehot(x)``, ``c = g``)::

    ‖G_i‖² = Σ_{t,s} (r_t·r_s)(c_t·c_s)          (ghost norm, cost T² (r + c) per sample)

or ``G_i`` is materialised (cost T r c, after which the clipped sum is nearly free) while
the materialised gradients fit a memory budget (the per-layer choice of the paper's mixed
ghost clipping, made on time and memory rather than on norm cost alone). A weight used
by several layers (tied input/output embeddings) has ``G_i = Σ_u G_i^u`` and its norm includes
the cross terms ``2⟨G_i^u, G_i^v⟩`` from the same Gram matrices. Biases and LayerNorm
affine parameters have small per-sample gradients that are materialised directly.

With ``c_i = min(1, C / (‖g_i‖ + 1e-6))`` (Opacus' factor) each layer's clipped sum
``Σ_i c_i G_i`` is one einsum over the stored factors, written to ``p.grad``; the optimizer
(Opacus ``DPOptimizerFastGradientClipping``) then adds N(0, σ²C²) noise, divides by the
expected batch size and steps.

Data flow::

    forward (weights' requires_grad off; hooks keep a, x and the layer outputs)
      -> loss.backward()   (activation gradients only; tensor hooks keep g)
      -> end-of-backward callback: per-unit norms -> c_i -> Σ_i c_i G_i into p.grad
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from safeguard.errors import ConfigError, PrivacyError

log = logging.getLogger(__name__)

__all__ = ["BookKeepingModule", "bk_unsupported_layers"]

# Default bound on materialised per-unit gradients kept at once, in elements. 0: ghost (Gram)
# norms for every weight, the lowest-memory choice; on CPU it also measured as fast or faster
# than materialising at T = 64 (GPT-2 and BERT, benchmarks/dp_speed.py), because one large
# clipped-sum matmul beats B small per-example ones. Raise it for long sequences, where the
# Gram matrices' T² (r + c) exceeds T r c.
MATERIALISE_BUDGET = 0


def _conv1d_type() -> type | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers missing
        return None
    return Conv1D


def _kind(module: nn.Module) -> str | None:
    """``linear`` / ``conv1d`` / ``embedding`` / ``layernorm`` for supported layers, else ``None``."""
    conv1d = _conv1d_type()
    if conv1d is not None and isinstance(module, conv1d) and type(module).forward is conv1d.forward:
        return "conv1d"
    if isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward:
        return "linear"
    if isinstance(module, nn.Embedding) and type(module).forward is nn.Embedding.forward:
        return "embedding"
    if isinstance(module, nn.LayerNorm) and type(module).forward is nn.LayerNorm.forward:
        return "layernorm"
    return None


def bk_unsupported_layers(model: nn.Module) -> list[str]:
    """Layers with trainable parameters that book-keeping clipping cannot handle, with the reason."""
    out: list[str] = []
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        kind = _kind(module)
        label = f"`{name or '(root)'}` ({type(module).__name__})"
        if kind is None:
            out.append(f"{label}: layer type not supported")
        elif kind == "embedding" and (module.sparse or module.scale_grad_by_freq):
            out.append(f"{label}: sparse / scale_grad_by_freq embeddings are not supported")
    return out


@dataclass
class _Record:
    """One call of a hooked layer: what its per-sample gradients are built from."""

    module: nn.Module
    kind: str
    inp: torch.Tensor  # activations a (B, ..., d), token ids (B, ...), or LayerNorm input
    grad: torch.Tensor | None = None  # output gradient g, filled in by the tensor hook


@dataclass
class _Factor:
    """A per-sample gradient ``Σ_t r_t c_tᵀ``: rows (B, T, r) dense or (B, T) token ids."""

    rows: torch.Tensor
    cols: torch.Tensor
    onehot_rows: bool = False
    num_rows: int = 0


@dataclass
class _ParamUses:
    param: nn.Parameter
    matrices: list[_Factor] = field(default_factory=list)
    vectors: list[torch.Tensor] = field(default_factory=list)  # (B, *shape) per-sample grads


def _flat3(x: torch.Tensor) -> torch.Tensor:
    """(B, ..., d) -> (B, T, d) with T the product of the middle dimensions (1 for (B, d))."""
    return x.reshape(x.shape[0], -1, x.shape[-1])


def _gram(x: _Factor, y: _Factor, rows: bool) -> torch.Tensor:
    """(B, Tx, Ty) inner products between the row (or column) vectors of two factors."""
    if not rows:
        return torch.bmm(x.cols, y.cols.transpose(1, 2))
    if x.onehot_rows and y.onehot_rows:
        return (x.rows.unsqueeze(2) == y.rows.unsqueeze(1)).to(x.cols.dtype)
    if x.onehot_rows:  # <onehot(id_t), r_s> = r_s[id_t]
        b, tx = x.rows.shape
        idx = x.rows.unsqueeze(2).expand(b, tx, y.rows.shape[1])
        return torch.gather(y.rows.transpose(1, 2), 1, idx)
    if y.onehot_rows:
        return _gram(y, x, rows=True).transpose(1, 2)
    return torch.bmm(x.rows, y.rows.transpose(1, 2))


def _sq_norms(ps: torch.Tensor, units: int) -> torch.Tensor:
    """Squared norm of each unit's materialised gradient, (U, ...) -> (U,), at least float32."""
    dtype = torch.promote_types(ps.dtype, torch.float32)
    return torch.linalg.vector_norm(ps.reshape(units, -1), dim=1, dtype=dtype).square()


def _clipped_sum(
    u: _ParamUses,
    coef: torch.Tensor,
    units: int,
    materialised: torch.Tensor | None,
    transposed: bool,
) -> torch.Tensor:
    """Σ_i c_i G_i for one parameter, from its materialised per-unit gradients or its factors."""
    p = u.param
    if materialised is not None:
        ps = materialised
        total = coef.to(ps.dtype) @ ps.reshape(units, -1)
        if transposed:
            total = total.view(p.shape[1], p.shape[0]).T.contiguous()
        return total.view_as(p).to(p.dtype)
    total = torch.zeros_like(p)
    for f in u.matrices:
        cols = f.cols * coef.to(f.cols.dtype).view(-1, 1, 1)
        if f.onehot_rows:
            total.index_add_(0, f.rows.reshape(-1), cols.reshape(-1, cols.shape[-1]).to(p.dtype))
        else:
            rows = f.rows.reshape(-1, f.rows.shape[-1])
            total += (rows.T @ cols.reshape(-1, cols.shape[-1])).to(p.dtype)
    return total


def _regroup(x: torch.Tensor, groups: torch.Tensor, units: int) -> torch.Tensor:
    """(B, T, ...) -> (U, K·T, ...): each unit's examples' tokens side by side, zero-padded."""
    counts = torch.bincount(groups, minlength=units)
    k = int(counts.max()) if counts.numel() else 1
    order = torch.argsort(groups, stable=True)
    slot = torch.empty_like(groups)
    starts = torch.cumsum(counts, 0) - counts
    slot[order] = torch.arange(groups.numel(), device=groups.device) - starts[groups[order]]
    out = x.new_zeros((units, k, *x.shape[1:]))
    out[groups, slot] = x
    return out.reshape(units, k * x.shape[1], *x.shape[2:])


class BookKeepingModule(nn.Module):
    """Wraps a model so that ``loss.backward()`` leaves clipped per-sample gradient sums in ``p.grad``.

    The loss given to ``backward`` must be the batch mean of per-example losses (Opacus'
    ``loss_reduction="mean"``): the output gradients are rescaled by the batch size. After
    the backward, ``p.grad`` holds ``Σ_u c_u G_u`` summed over the batch's privacy units
    (examples, or users when :attr:`groups` is set) and :attr:`last_norms` holds ‖G_u‖.
    Whatever the loss scaling, each unit adds at most C to ``p.grad``: the clip factor is
    computed on the gradient actually summed.

    Args:
        module: The model. Every layer with trainable parameters must be ``nn.Linear``,
            transformers ``Conv1D``, ``nn.Embedding`` or ``nn.LayerNorm``.
        max_grad_norm: The clipping bound C.
        materialise_budget: Most per-unit gradient elements kept materialised at once (see
            :meth:`_to_materialise`); 0 ghost-norms every weight.

    Raises:
        ConfigError: The model has a trainable layer of another type.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        max_grad_norm: float,
        materialise_budget: int = MATERIALISE_BUDGET,
    ) -> None:
        super().__init__()
        bad = bk_unsupported_layers(module)
        if bad:
            raise ConfigError(
                "grad_sample_mode='bk' supports trainable nn.Linear, transformers Conv1D, nn.Embedding "
                f"and nn.LayerNorm layers only; {len(bad)} layer(s) are not:\n  "
                + "\n  ".join(bad)
                + "\nUse grad_sample_mode='hooks' (or 'ghost'), or freeze those layers"
            )
        self._module = module
        self.max_grad_norm = float(max_grad_norm)
        self.materialise_budget = int(materialise_budget)
        self.groups: torch.Tensor | None = None
        self.require_groups = False
        self.last_norms: torch.Tensor | None = None
        self._enabled = True
        self._records: list[_Record] = []
        self._queued = False
        self._covered: list[tuple[nn.Module, str]] = []
        self._kinds: dict[int, str] = {}
        self._handles: list[Any] = []
        for m in module.modules():
            kind = _kind(m)
            if kind is None or not any(p.requires_grad for p in m.parameters(recurse=False)):
                continue
            self._covered.append((m, kind))
            self._kinds[id(m)] = kind
            self._handles.append(m.register_forward_hook(self._forward_hook))
        self._trainable = [p for p in module.parameters() if p.requires_grad]
        self._live = list(self._trainable)  # the trainable weights of the last forward
        self._in_forward = False

    # ------------------------------------------------------------------ switches
    def enable_hooks(self) -> None:
        self._enabled = True

    def disable_hooks(self) -> None:
        self._enabled = False

    def remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    @contextlib.contextmanager
    def _weights_frozen(self) -> Iterator[None]:
        """Weights out of the autograd graph for one forward (no weight gradients in backward)."""
        live = [p for p in self._trainable if p.requires_grad]
        self._live = live
        for p in live:
            p.requires_grad_(False)
        self._in_forward = True
        try:
            yield
        finally:
            self._in_forward = False
            for p in live:
                p.requires_grad_(True)

    # ------------------------------------------------------------------ forward / hooks
    def _active(self) -> bool:
        # The covered layers' own mode decides (a wrapper or container may be in eval mode
        # while the layers train, as in the pre-flight check).
        return (
            self._enabled and torch.is_grad_enabled() and any(m.training for m, _ in self._covered)
        )

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self._active():
            return self._module(*args, **kwargs)
        self._records = []
        self._queued = False
        with self._weights_frozen():
            return self._module(*args, **kwargs)

    def _forward_hook(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> Any:
        if not (self._enabled and module.training and torch.is_grad_enabled()):
            return None
        if not self._in_forward:
            raise PrivacyError(
                f"layer {type(module).__name__} ran in training mode outside the book-keeping wrapper: "
                "its gradients would not be clipped. Call the wrapped model (PrivateTraining.model), "
                "or run the inner model under torch.no_grad() or in eval mode"
            )
        if not isinstance(output, torch.Tensor) or not inputs:
            return None
        kind = self._kinds[id(module)]
        if not output.requires_grad:
            # The first trainable layers: their inputs carry no gradient and their weights are
            # out of the graph, so anchor the output to a zero leaf to start the backward here.
            anchor = torch.zeros((), dtype=output.dtype, device=output.device, requires_grad=True)
            output = output + anchor
        rec = _Record(module=module, kind=kind, inp=inputs[0].detach())
        self._records.append(rec)
        output.register_hook(lambda g, rec=rec: self._capture(rec, g))
        return output

    def _capture(self, rec: _Record, grad: torch.Tensor) -> None:
        rec.grad = grad.detach() if rec.grad is None else rec.grad + grad.detach()
        if not self._queued:
            self._queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._after_backward)

    # ------------------------------------------------------------------ clipping
    def _after_backward(self) -> None:
        records, self._records = self._records, []
        self._queued = False
        with torch.no_grad():
            self._clip_and_write(records)

    def _uses(self, records: list[_Record]) -> tuple[dict[int, _ParamUses], int]:
        uses: dict[int, _ParamUses] = {id(p): _ParamUses(p) for p in self._live}
        batch = 0
        for rec in records:
            g = rec.grad
            if g is None:
                continue
            m = rec.module
            batch = max(batch, g.shape[0])
            weight = getattr(m, "weight", None)
            bias = getattr(m, "bias", None)
            if rec.kind in {"linear", "conv1d"}:
                g3 = _flat3(g)
                a3 = _flat3(rec.inp).to(g3.dtype)
                if weight is not None and id(weight) in uses:
                    f = _Factor(g3, a3) if rec.kind == "linear" else _Factor(a3, g3)
                    uses[id(weight)].matrices.append(f)
                if bias is not None and id(bias) in uses:
                    uses[id(bias)].vectors.append(g3.sum(1))
            elif rec.kind == "embedding":
                ids = rec.inp.reshape(rec.inp.shape[0], -1)
                e = _flat3(g)
                if m.padding_idx is not None:
                    e = e.masked_fill((ids == m.padding_idx).unsqueeze(-1), 0)
                if weight is not None and id(weight) in uses:
                    f = _Factor(ids, e, onehot_rows=True, num_rows=m.num_embeddings)
                    uses[id(weight)].matrices.append(f)
            else:  # layernorm
                x = rec.inp.to(g.dtype)
                xhat = nn.functional.layer_norm(x, m.normalized_shape, eps=m.eps)
                keep = (0, *range(x.dim() - len(m.normalized_shape), x.dim()))
                summed = tuple(d for d in range(x.dim()) if d not in keep)
                if weight is not None and id(weight) in uses:
                    gw = g * xhat
                    uses[id(weight)].vectors.append(gw.sum(summed) if summed else gw)
                if bias is not None and id(bias) in uses:
                    uses[id(bias)].vectors.append(g.sum(summed) if summed else g)
        return uses, batch

    def _clip_and_write(self, records: list[_Record]) -> None:
        uses, batch = self._uses(records)
        groups = self.groups
        self.groups = None
        units = batch
        if groups is None and self.require_groups:
            raise PrivacyError(
                "book-keeping clipping with several examples per user got no user ids for this batch, "
                "so it cannot clip per user; compute the loss with PrivateTraining.loss_per_example "
                "or train_step (they pass the batch's user ids on)"
            )
        if groups is not None:
            units = self._group_by_unit(uses, groups, batch)
        ref = self._trainable[0]
        sq = torch.zeros(
            units, dtype=torch.promote_types(ref.dtype, torch.float32), device=ref.device
        )
        materialised: dict[int, torch.Tensor] = {}
        chosen = self._to_materialise(uses, units)
        transposed: set[int] = set()
        for key, u in uses.items():
            if u.vectors:
                ps = torch.stack(u.vectors).sum(0) if len(u.vectors) > 1 else u.vectors[0]
                materialised[key] = ps
                sq += _sq_norms(ps, units)
            if not u.matrices:
                continue
            if key in chosen:
                one = u.matrices[0]
                if one.rows.shape[2] > one.cols.shape[2]:
                    # (U, c, r): the batched matmul runs faster with the narrower factor first
                    ps = torch.bmm(one.cols.transpose(1, 2), one.rows)
                    transposed.add(key)
                else:
                    ps = torch.bmm(one.rows.transpose(1, 2), one.cols)  # (U, r, c)
                materialised[key] = ps
                sq += _sq_norms(ps, units)
                continue
            for i, x in enumerate(u.matrices):
                for j in range(i, len(u.matrices)):
                    y = u.matrices[j]
                    term = (_gram(x, y, rows=True) * _gram(x, y, rows=False)).sum((1, 2))
                    sq += term.to(sq.dtype) * (1.0 if i == j else 2.0)
        # The backward was of the batch-mean loss: per-example gradients are `batch` times larger.
        scale = float(batch)
        norms = sq.clamp(min=0).sqrt() * scale
        self.last_norms = norms.detach()
        coef = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0) * scale
        for key, u in uses.items():
            total = _clipped_sum(u, coef, units, materialised.get(key), key in transposed)
            p = u.param
            p.grad = total if p.grad is None else p.grad.add_(total)

    def _group_by_unit(self, uses: dict[int, _ParamUses], groups: torch.Tensor, batch: int) -> int:
        """Sum each user's factors and vectors into one unit; the number of units."""
        if groups.shape[0] != batch:
            raise ConfigError(
                f"per-user clipping: {groups.shape[0]} user ids for a batch of {batch} examples"
            )
        groups = groups.to(self._trainable[0].device).long()
        units = int(groups.max()) + 1 if groups.numel() else 0
        for u in uses.values():
            u.matrices = [
                _Factor(
                    _regroup(f.rows, groups, units),
                    _regroup(f.cols, groups, units),
                    f.onehot_rows,
                    f.num_rows,
                )
                for f in u.matrices
            ]
            u.vectors = [
                v.new_zeros((units, *v.shape[1:])).index_add_(0, groups, v) for v in u.vectors
            ]
        return units

    def _to_materialise(self, uses: dict[int, _ParamUses], units: int) -> set[int]:
        """Weights whose per-unit gradients are materialised rather than ghost-normed.

        Materialising costs ``T r c`` per unit and makes the clipped sum nearly free; the ghost
        norm costs ``T² (r + c)`` on top of a ``T r c`` clipped sum. So materialising is the
        faster choice in arithmetic for every dense layer (in practice B small matmuls run
        slower than one large one, hence the default budget of 0), and the bound is memory:
        layers are taken in order of time saved per element kept, ``T² (r + c) / (r c)``,
        while the kept per-unit gradients fit :attr:`materialise_budget` elements.
        """
        options = []
        for key, u in uses.items():
            if len(u.matrices) != 1 or u.matrices[0].onehot_rows:
                continue  # tied weights and embeddings: ghost norms with cross terms
            f = u.matrices[0]
            t, r, c = f.rows.shape[1], f.rows.shape[2], f.cols.shape[2]
            options.append((t * t * (r + c) / (r * c), units * r * c, key))
        chosen: set[int] = set()
        left = self.materialise_budget
        for _, size, key in sorted(options, reverse=True):
            if size <= left:
                chosen.add(key)
                left -= size
        return chosen
