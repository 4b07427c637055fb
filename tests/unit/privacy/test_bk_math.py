"""Book-keeping clipping math on toy layers: per-sample norms and clipped sums vs autograd."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("opacus")

from torch import nn  # noqa: E402

from safeguard.errors import ConfigError  # noqa: E402
from safeguard.privacy._bk import BookKeepingModule, _regroup  # noqa: E402

B, T, V, D = 5, 6, 11, 7


class Toy(nn.Module):
    """Embedding -> LayerNorm -> Linear -> Conv1D -> (tied) output projection."""

    def __init__(self, *, tied: bool = False, padding_idx: int | None = None) -> None:
        super().__init__()
        from transformers.pytorch_utils import Conv1D

        self.emb = nn.Embedding(V, D, padding_idx=padding_idx)
        self.ln = nn.LayerNorm(D)
        self.lin = nn.Linear(D, 9)
        self.conv = Conv1D(D, 9)  # (in=9, out=D)
        self.out = nn.Linear(D, V, bias=False)
        if tied:
            self.out.weight = self.emb.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.ln(self.emb(ids))
        h = self.conv(torch.tanh(self.lin(h))) + h
        return self.out(h)


def _losses(model: nn.Module, ids: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logits = model(ids)
    tok = nn.functional.cross_entropy(
        logits.reshape(-1, V), target.reshape(-1), reduction="none"
    ).view(ids.shape[0], -1)
    return tok.mean(1)


def _reference(model: nn.Module, ids, target, groups=None):
    """Per-unit gradients by autograd, one unit at a time."""
    params = [p for p in model.parameters() if p.requires_grad]
    units = range(ids.shape[0]) if groups is None else range(int(groups.max()) + 1)
    out = []
    for u in units:
        sel = [u] if groups is None else (groups == u).nonzero().flatten().tolist()
        loss = _losses(model, ids[sel], target[sel]).sum()
        out.append(torch.autograd.grad(loss, params))
    return params, out


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 4, (B, T), generator=g)  # few distinct tokens: many repeats
    ids[0, :3] = ids[0, 3]  # repeated token within one example
    target = torch.randint(0, V, (B, T), generator=g)
    return ids, target


def _check(model: nn.Module, clip: float, groups=None, ids_target=None, budget=None) -> None:
    ids, target = ids_target or _data()
    params, ref = _reference(model, ids, target, groups)
    ref_norms = torch.stack([torch.sqrt(sum((g**2).sum() for g in gs)) for gs in ref])
    bk = BookKeepingModule(model, max_grad_norm=clip)
    if budget is not None:
        bk.materialise_budget = budget
    bk.train()
    bk.groups = groups
    _losses(bk, ids, target).mean().backward()
    torch.testing.assert_close(bk.last_norms.double(), ref_norms, rtol=1e-6, atol=1e-8)
    coef = (clip / (ref_norms + 1e-6)).clamp(max=1.0)
    for k, p in enumerate(params):
        want = sum(c * gs[k] for c, gs in zip(coef, ref, strict=True))
        torch.testing.assert_close(p.grad, want, rtol=1e-6, atol=1e-8)
    bk.remove_hooks()


@pytest.fixture(autouse=True)
def _float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize("budget", [0, 2**24])  # ghost norms everywhere / materialised
@pytest.mark.parametrize("clip", [1e3, 0.05])
def test_norms_and_clipped_sum_match_autograd(clip, budget):
    torch.manual_seed(0)
    _check(Toy(), clip, budget=budget)


def test_tied_weight_includes_the_cross_term():
    torch.manual_seed(1)
    model = Toy(tied=True)
    assert model.out.weight is model.emb.weight
    _check(model, 0.05)


def test_embedding_padding_idx_gets_no_gradient():
    torch.manual_seed(2)
    model = Toy(padding_idx=1)
    _check(model, 0.05)
    # padding row untouched by the clipped sum
    bk = BookKeepingModule(model, max_grad_norm=1.0)
    ids, target = _data()
    _losses(bk, ids, target).mean().backward()
    assert torch.count_nonzero(model.emb.weight.grad[1]) == 0


def test_per_user_norm_over_the_union_of_a_users_examples():
    torch.manual_seed(3)
    groups = torch.tensor([0, 1, 0, 2, 1])
    _check(Toy(tied=True), 0.05, groups=groups)
    _check(Toy(), 0.05, groups=groups, budget=0)


@pytest.mark.parametrize("budget", [0, 10**6])
def test_materialised_and_ghost_paths_agree(budget):
    """Budget 0: Gram (ghost) norms for every weight; a large budget materialises them."""
    torch.manual_seed(4)
    lin = nn.Linear(3, 2)
    x = torch.randn(B, 8, 3)
    y = torch.randn(B, 8, 2)

    def run(model):
        params = list(model.parameters())
        ref = []
        for i in range(B):
            loss = ((model(x[i : i + 1]) - y[i : i + 1]) ** 2).sum()
            ref.append(torch.autograd.grad(loss, params))
        norms = torch.stack([torch.sqrt(sum((g**2).sum() for g in gs)) for gs in ref])
        bk = BookKeepingModule(model, max_grad_norm=0.1, materialise_budget=budget)
        ((bk(x) - y) ** 2).reshape(B, -1).sum(1).mean().backward()
        torch.testing.assert_close(bk.last_norms.double(), norms)
        coef = (0.1 / (norms + 1e-6)).clamp(max=1.0)
        for k, p in enumerate(params):
            torch.testing.assert_close(
                p.grad, sum(c * gs[k] for c, gs in zip(coef, ref, strict=True))
            )
        bk.remove_hooks()

    run(lin)
    wide = nn.Linear(40, 30)  # wider than long: materialised with the narrower factor first
    x, y = torch.randn(B, 8, 40), torch.randn(B, 8, 30)
    run(wide)
    flat = nn.Linear(40, 30)  # 2-D inputs: T = 1
    x, y = torch.randn(B, 40), torch.randn(B, 30)
    run(flat)


def test_no_weight_gradient_is_computed_by_autograd():
    """The backward computes activation gradients only: weight-gradient matmuls are skipped."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16))
    x = torch.randn(4, 3, 16)

    def mm_count(m):
        from torch.profiler import ProfilerActivity, profile

        out = m(x).pow(2).sum((1, 2)).mean()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            torch.autograd.backward(out)
        return sum(e.count for e in prof.key_averages() if e.key in {"aten::mm", "aten::addmm"})

    plain = mm_count(model)
    model.zero_grad(set_to_none=True)
    bk = BookKeepingModule(model, max_grad_norm=1.0)
    clip = bk._clip_and_write
    bk._clip_and_write = lambda records: None  # count autograd's own work only
    got = mm_count(bk)
    # non-private: 2 weight-gradient mm + 1 input-gradient mm (the first layer needs none)
    assert plain == 3
    # book-keeping: the one input-gradient mm; weight gradients come from the clipping step
    assert got == 1
    assert all(p.grad is None for p in model.parameters())
    bk._clip_and_write = clip
    bk(x).pow(2).sum((1, 2)).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_regroup_puts_a_users_tokens_side_by_side():
    x = torch.arange(4 * 2).view(4, 2, 1).double()
    out = _regroup(x, torch.tensor([1, 0, 1, 1]), 2)
    assert out.shape == (2, 6, 1)
    assert out[0].flatten().tolist() == [2, 3, 0, 0, 0, 0]
    assert out[1].flatten().tolist() == [0, 1, 4, 5, 6, 7]


def test_unsupported_layer_is_named():
    model = nn.Sequential(nn.Linear(3, 3), nn.Conv1d(3, 3, 1))
    with pytest.raises(ConfigError, match=r"(?s)`1` \(Conv1d\).*grad_sample_mode='hooks'"):
        BookKeepingModule(model, max_grad_norm=1.0)
    # a frozen unsupported layer is fine
    model[1].requires_grad_(False)
    BookKeepingModule(model, max_grad_norm=1.0).remove_hooks()


def test_inner_model_called_directly_is_refused_and_later_freezing_holds():
    from safeguard.errors import PrivacyError

    torch.manual_seed(6)
    model = Toy()
    bk = BookKeepingModule(model, max_grad_norm=1.0)
    ids, target = _data()
    with pytest.raises(PrivacyError, match="outside the book-keeping wrapper"):
        model(ids)  # training mode, grad on: would bypass clipping
    with torch.no_grad():
        model(ids)  # evaluation is fine
    model.ln.requires_grad_(False)  # frozen after wrapping: stays frozen, gets no gradient
    _losses(bk, ids, target).mean().backward()
    assert not model.ln.weight.requires_grad and model.ln.weight.grad is None
    assert model.lin.weight.requires_grad and model.lin.weight.grad is not None
