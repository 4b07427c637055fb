"""Book-keeping clipping (grad_sample_mode='bk') on tiny GPT-2 and BERT models."""

from __future__ import annotations

import pytest
import torch

from safeguard.errors import ConfigError, PrivacyError
from safeguard.privacy import DPConfig, make_private
from safeguard.privacy._bk import BookKeepingModule
from safeguard.privacy._opacus import _choose_mode, _slice


def _no_dropout(model):
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


def _run(tiny, model, classes=0, **config):
    cfg = {"noise_multiplier": 1.0, "target_delta": 1e-3, "grad_sample_mode": "bk", "seed": 0}
    cfg.update(config)
    return make_private(
        model=model,
        optimizer=tiny.sgd(model),
        data_loader=tiny.loader(classes=classes),
        config=DPConfig(**cfg),
    )


@pytest.fixture
def gpt2_lora(tiny):
    """LoRA adapters (peft) on GPT-2's attention: only lora_A / lora_B (nn.Linear) train."""
    peft = pytest.importorskip("peft")
    return peft.get_peft_model(
        tiny.gpt2(), peft.LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True)
    )


@pytest.mark.parametrize(
    ("name", "classes", "budget"),
    [
        ("gpt2", 0, None),
        ("gpt2", 0, 2**24),
        ("gpt2_untied", 0, 2**24),
        ("gpt2_untied", 0, 0),
        ("bert", 2, None),
        ("bert", 2, 2**24),
        ("gpt2_lora", 0, None),
        ("gpt2_lora", 0, 2**24),
    ],
)
def test_norms_and_clipped_sum_equal_per_example_autograd(request, tiny, name, classes, budget):
    """budget 0 (the default): ghost (Gram) norms for every weight; 2**24: dense weights
    materialised."""
    model = _no_dropout(request.getfixturevalue(name))
    run = _run(tiny, model, classes=classes)
    if budget is not None:
        run.model.materialise_budget = budget
    assert run.grad_sample_mode == "bk" and isinstance(run.model, BookKeepingModule)
    batch = next(iter(tiny.loader(batch_size=4, classes=classes, seed=3)))
    if not classes:
        batch["labels"][0, :5] = -100  # ignore_index tokens carry no gradient
    params = [p for p in run.model.parameters() if p.requires_grad]
    run.model.disable_hooks()
    ref = []
    for i in range(4):
        loss = run.loss_per_example(_slice(batch, i)).sum()
        ref.append(torch.autograd.grad(loss, params))
    run.model.enable_hooks()
    ref_norms = torch.stack([torch.sqrt(sum((g.double() ** 2).sum() for g in gs)) for gs in ref])
    clip = float(ref_norms.median())
    run.model.max_grad_norm = clip
    run.optimizer.zero_grad(set_to_none=True)
    run.loss_per_example(batch).mean().backward()
    torch.testing.assert_close(run.model.last_norms.double(), ref_norms, rtol=1e-4, atol=1e-6)
    coef = (clip / (ref_norms + 1e-6)).clamp(max=1.0)
    assert (coef < 1).any() and (coef == 1).any()
    for k, p in enumerate(params):
        want = sum(float(c) * gs[k] for c, gs in zip(coef, ref, strict=True))
        torch.testing.assert_close(p.grad, want, rtol=1e-4, atol=1e-5)
    run.optimizer.zero_grad(set_to_none=True)


def test_tied_gpt2_keeps_one_tied_weight(gpt2, tiny):
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight
    run = _run(tiny, gpt2, grad_sample_mode="auto")
    assert run.grad_sample_mode == "bk"  # tied embeddings: bk handles the cross term


def test_noise_std_is_sigma_c_over_expected_batch(gpt2_untied, tiny):
    """(p.grad − S/B) over all coordinates has std σC/B; ±3% is > 5 standard errors (two-sided error rate < 1e-7)."""
    sigma, clip = 2.0, 0.5
    run = _run(tiny, _no_dropout(gpt2_untied), noise_multiplier=sigma, max_grad_norm=clip)
    batch = next(iter(tiny.loader(batch_size=4)))
    run.optimizer.zero_grad(set_to_none=True)
    run.loss_per_example(batch).mean().backward()
    clipped = [p.grad.detach().clone() for p in run.optimizer.params]
    expected_batch = run.sample_rate * run.num_units
    assert expected_batch == 4
    steps = run.ledger.steps()
    assert run.optimizer.pre_step()  # Opacus: accumulate, noise, scale, step hook
    noise = torch.cat(
        [
            (p.grad - s / expected_batch).flatten()
            for p, s in zip(run.optimizer.params, clipped, strict=True)
        ]
    )
    n = noise.numel()
    assert n > 15_000  # standard error of the std estimate ≈ 1/sqrt(2n) < 0.6%
    want = sigma * clip / expected_batch
    assert abs(float(noise.std()) / want - 1) < 0.03
    assert abs(float(noise.mean())) < 5 * want / n**0.5
    assert run.ledger.steps() == steps + 1
    run.optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize(("name", "classes"), [("gpt2", 0), ("bert", 2)])
def test_auto_picks_bk_and_trains_with_the_ledger_advancing(request, tiny, name, classes):
    model = request.getfixturevalue(name)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    run = _run(tiny, model, classes=classes, grad_sample_mode="auto")
    assert run.grad_sample_mode == "bk"
    for taken, batch in enumerate(run.batches(), start=1):
        loss = run.train_step(batch)
        assert loss != loss or loss > 0  # nan for an empty Poisson batch
        if taken == 3:
            break
    assert run.ledger.steps() == 3 and run.steps_taken == 3
    assert 0 < run.epsilon_spent() < float("inf")
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
    assert all(p.requires_grad for p in model.parameters())  # restored after each forward


def test_virtual_steps_equal_one_physical_batch(tiny):
    """Splitting a logical batch into physical batches sums the same clipped gradients."""
    weights = []
    for physical in (None, 2):
        model = _no_dropout(tiny.gpt2(tied=False))
        run = _run(tiny, model, physical_batch_size=physical)
        taken = 0
        for batch in run.batches():
            run.train_step(batch)
            taken = run.steps_taken
            if taken == 2 and run.optimizer._check_skip_next_step(pop_next=False) is False:
                break
        assert run.ledger.steps() == 2
        weights.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*weights, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def _per_user_run(tiny, max_examples_per_user: int, **config):
    """bk with per-user units on 32 examples of 8 users (``patient_id``), 4 per batch."""
    model = tiny.gpt2()
    data = torch.utils.data.DataLoader(tiny.TokenDataset(32, groups=8), batch_size=4)
    return make_private(
        model=model,
        optimizer=tiny.sgd(model),
        data_loader=data,
        config=DPConfig(
            noise_multiplier=1.0,
            target_delta=1e-2,
            group_by="patient_id",
            unit="user",
            max_examples_per_user=max_examples_per_user,
            **config,
        ),
    )


def test_several_examples_per_user_are_clipped_together(tiny):
    run = _per_user_run(tiny, 3, seed=0)
    assert run.grad_sample_mode == "bk" and run.num_units == 8
    for batch in run.batches():
        if len(batch["input_ids"]) == 0:
            continue
        users = int(batch["patient_id"].max()) + 1
        run.train_step(batch)
        assert run.model.last_norms.shape == (users,)
        if len(batch["input_ids"]) > users:  # some user brought several examples
            break
    assert run.ledger.steps() >= 1


def test_unsupported_layers_and_dpddp_are_refused(llama, gpt2, tiny):
    with pytest.raises(ConfigError, match=r"(?s)RMSNorm.*grad_sample_mode='hooks'"):
        _run(tiny, llama)
    assert _run(tiny, tiny.llama(), grad_sample_mode="auto").grad_sample_mode == "ghost"
    with pytest.raises(ConfigError, match=r"'bk'.*distributed"):
        _choose_mode(DPConfig(noise_multiplier=1.0, grad_sample_mode="bk"), gpt2, True)
    auto = DPConfig(noise_multiplier=1.0)
    assert _choose_mode(auto, gpt2, True) == "hooks"  # tied: ghost cannot, bk not under DDP


def test_per_user_clipping_refuses_a_batch_without_user_ids(tiny):
    run = _per_user_run(tiny, 2)
    batch = next(iter(tiny.loader(batch_size=4)))  # no patient_id: no per-user units
    out = run.model(input_ids=batch["input_ids"], labels=batch["input_ids"])
    with pytest.raises(PrivacyError, match="user ids"):
        out.loss.backward()


def test_gradient_checkpointing_is_refused_by_bk_and_avoided_by_auto(gpt2):
    if hasattr(gpt2, "activation_checkpointing_enable"):
        gpt2.activation_checkpointing_enable()
    else:
        gpt2.gradient_checkpointing_enable()
    with pytest.raises(ConfigError, match="gradient checkpointing"):
        _choose_mode(DPConfig(noise_multiplier=1.0, grad_sample_mode="bk"), gpt2)
    assert _choose_mode(DPConfig(noise_multiplier=1.0), gpt2) == "hooks"
