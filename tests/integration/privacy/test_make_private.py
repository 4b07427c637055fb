"""make_private behaviour: bad input, hard budget stop, checkpoints, pre-flight, patient-level DP."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from safeguard.errors import (
    BudgetExceededError,
    ConfigError,
    DataError,
    PrivacyError,
    VerificationError,
)
from safeguard.privacy import BudgetLedger, DPConfig, make_private


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_unsupported_layers_are_listed_at_once_with_fixes():
    model = nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.BatchNorm1d(8)
    )
    data = torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randint(2, (16,)))
    with pytest.raises(ConfigError) as info:
        make_private(
            model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            data_loader=torch.utils.data.DataLoader(data, batch_size=4),
            config=DPConfig(noise_multiplier=1.0, target_delta=1e-3),
        )
    msg = str(info.value)
    assert "2 layer(s)" in msg and msg.count("GroupNorm") == 2
    assert "layer `1` (BatchNorm1d)" in msg and "layer `4` (BatchNorm1d)" in msg


def test_delta_at_least_one_over_n_is_refused(tiny):
    model = tiny.gpt2()
    with pytest.raises(ConfigError, match=r"`target_delta` \(=0.05\) must be < 1/N"):
        make_private(
            model=model,
            optimizer=tiny.sgd(model),
            data_loader=tiny.loader(32),
            config=DPConfig(noise_multiplier=1.0, target_delta=0.05),
        )


def test_default_delta_is_derived_and_stated(tiny):
    model = tiny.gpt2()
    run = make_private(
        model=model,
        optimizer=tiny.sgd(model),
        data_loader=tiny.loader(32),
        config=DPConfig(noise_multiplier=1.0),
    )
    assert run.delta == pytest.approx(3e-3) and run.delta <= 1 / (10 * 32)
    assert "1/(10 N)" in run.ledger.runs()[0]["delta_source"]


def test_unreachable_target_names_the_nearest_achievable(tiny, tmp_path):
    path = tmp_path / "ledger.jsonl"
    model = tiny.gpt2()
    run = make_private(
        model=model,
        optimizer=tiny.sgd(model),
        data_loader=tiny.loader(32),
        config=DPConfig(noise_multiplier=0.8, target_delta=1e-3, accountant="rdp"),
        ledger=path,
    )
    for batch in run.batches():
        run.train_step(batch)
    spent = run.epsilon_spent()
    model = tiny.gpt2()
    with pytest.raises(ConfigError, match="nearest achievable"):
        make_private(
            model=model,
            optimizer=tiny.sgd(model),
            data_loader=tiny.loader(32),
            config=DPConfig(target_epsilon=spent / 2, steps=5, target_delta=1e-3, accountant="rdp"),
            ledger=path,
        )


def test_calibrated_sigma_meets_target_counting_earlier_runs(tiny, tmp_path):
    path = tmp_path / "ledger.jsonl"
    cfg = DPConfig(target_epsilon=3.0, steps=8, target_delta=1e-3, seed=0, accountant="rdp")
    model = tiny.gpt2()
    run1 = make_private(
        model=model, optimizer=tiny.sgd(model), data_loader=tiny.loader(32), config=cfg, ledger=path
    )
    model = tiny.gpt2()
    run2 = make_private(
        model=model,
        optimizer=tiny.sgd(model),
        data_loader=tiny.loader(32),
        config=DPConfig(target_epsilon=3.0, steps=8, target_delta=1e-3, seed=0, accountant="rdp"),
        ledger=path,
    )
    # No steps were taken in run 1, so both calibrate to the same σ.
    assert run2.noise_multiplier == pytest.approx(run1.noise_multiplier)
    eps_planned = run2.ledger.epsilon_if(
        noise_multiplier=run2.noise_multiplier, sample_rate=run2.sample_rate, extra_steps=8
    )
    assert 2.9 <= eps_planned <= 3.0


def test_non_poisson_loader_warns_what_it_costs(tiny):
    model = tiny.gpt2()
    with pytest.warns(UserWarning, match="approximation"):
        cfg = DPConfig(noise_multiplier=1.0, target_delta=1e-3, poisson_sampling=False)
    run = make_private(
        model=model, optimizer=tiny.sgd(model), data_loader=tiny.loader(32), config=cfg
    )
    assert run.ledger.runs()[0]["config"]["poisson_sampling"] is False


def test_hard_stop_refuses_the_step_that_would_exceed_the_budget(tiny, tmp_path):
    model = tiny.gpt2()
    run = make_private(
        model=model,
        optimizer=tiny.sgd(model),
        data_loader=tiny.loader(32, batch_size=4),
        config=DPConfig(
            noise_multiplier=1.0, target_delta=1e-3, max_epsilon=1.5, accountant="rdp", seed=0
        ),
        ledger=tmp_path / "l.jsonl",
    )
    allowed = run.steps_allowed
    assert allowed is not None and 0 < allowed < 30
    with pytest.raises(BudgetExceededError, match="not taken"):
        for _ in range(10):
            for batch in run.batches():
                before = _params(model)
                run.train_step(batch)
    after = _params(model)
    assert all(torch.equal(before[n], after[n]) for n in before)  # the refused step changed nothing
    assert run.ledger.steps() == allowed
    assert run.epsilon_spent() <= 1.5
    assert (
        run.ledger.epsilon_if(noise_multiplier=1.0, sample_rate=run.sample_rate, extra_steps=1)
        > 1.5
    )
    # The ledger on disk is intact and says the same.
    assert BudgetLedger.load(tmp_path / "l.jsonl").steps() == allowed


def test_budget_already_spent_refuses_to_start(tiny, tmp_path):
    path = tmp_path / "l.jsonl"
    model = tiny.gpt2()
    cfg = DPConfig(
        noise_multiplier=1.0, target_delta=1e-3, max_epsilon=1.5, accountant="rdp", seed=0
    )
    run = make_private(
        model=model, optimizer=tiny.sgd(model), data_loader=tiny.loader(32), config=cfg, ledger=path
    )
    with pytest.raises(BudgetExceededError):
        for _ in range(10):
            for batch in run.batches():
                run.train_step(batch)
    model = tiny.gpt2()
    with pytest.raises(BudgetExceededError, match="already spent"):
        make_private(
            model=model,
            optimizer=tiny.sgd(model),
            data_loader=tiny.loader(32),
            config=cfg,
            ledger=path,
        )


def _run(tiny, path=None, seed=0):
    torch.manual_seed(seed)
    model = tiny.gpt2()
    return make_private(
        model=model,
        optimizer=tiny.sgd(model),
        data_loader=tiny.loader(32, batch_size=4),
        config=DPConfig(noise_multiplier=1.0, target_delta=1e-3, seed=seed),
        ledger=path,
    )


def test_resume_keeps_epsilon_ledger_and_rng(tiny, tmp_path):
    run = _run(tiny)
    it = iter(run.batches())
    for _ in range(2):
        run.train_step(next(it))
    ckpt = run.save_checkpoint(tmp_path / "ckpt.pt")
    eps_at_save = run.epsilon_spent()
    run.train_step(next(it))
    reference = {n: p.detach().clone() for n, p in run.model._module.named_parameters()}

    resumed = _run(tiny, seed=1)  # different seeds: everything must come from the checkpoint
    resumed.load_checkpoint(ckpt)
    assert resumed.ledger.steps() == 2
    assert resumed.epsilon_spent() == pytest.approx(eps_at_save)
    resumed.train_step(next(iter(resumed.batches())))
    assert resumed.ledger.steps() == 3
    assert resumed.epsilon_spent() == pytest.approx(run.epsilon_spent())
    got = dict(resumed.model._module.named_parameters())
    for n, p in reference.items():
        assert torch.allclose(got[n], p, atol=1e-6), n


def test_corrupt_checkpoint_or_ledger_is_refused(tiny, tmp_path):
    run = _run(tiny)
    run.train_step(next(iter(run.batches())))
    state = run.state_dict()
    state["ledger"] = state["ledger"].replace('"noise_multiplier":1.0', '"noise_multiplier":9.0', 1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(VerificationError, match="refusing"):
        _run(tiny).load_checkpoint(tmp_path / "bad.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(VerificationError, match="refusing"):
        _run(tiny).load_checkpoint(tmp_path / "garbage.pt")
    state = run.state_dict()
    state["privacy_accountant_state_dict"]["history"] = []
    torch.save(state, tmp_path / "reset.pt")
    with pytest.raises(VerificationError, match="accountant"):
        _run(tiny).load_checkpoint(tmp_path / "reset.pt")


def test_preflight_catches_weights_that_do_not_change(tiny):
    model = tiny.gpt2()
    run = make_private(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
        data_loader=tiny.loader(32),
        config=DPConfig(noise_multiplier=1.0, target_delta=1e-3, seed=0),
    )
    with pytest.raises(PrivacyError, match="no trainable weight changed"):
        run.train_step(next(iter(run.batches())))


def test_patient_level_sampling_bounds_each_patient(tiny):
    model = tiny.gpt2()
    ds = tiny.TokenDataset(60, groups=12)  # 12 patients, 5 notes each
    run = make_private(
        model=model,
        optimizer=tiny.sgd(model),
        data_loader=torch.utils.data.DataLoader(ds, batch_size=4),
        config=DPConfig(
            noise_multiplier=1.0, target_delta=1e-3, unit="user", group_by="patient_id", seed=0
        ),
    )
    assert run.num_units == 12 and run.sample_rate == pytest.approx(4 / 12)
    assert "patient_id" in run.ledger.unit_of_privacy
    sampler = run.data_loader.batch_sampler
    for picks in list(iter(sampler))[:20]:
        patients = [i % 12 for i in picks]
        assert len(patients) == len(set(patients))  # at most one note per patient per step
    for batch in run.batches():
        assert "patient_id" not in batch
        run.train_step(batch)
    assert run.ledger.steps() == 3


def test_virtual_steps_record_one_step_per_logical_batch(tiny):
    model = tiny.gpt2()
    run = make_private(
        model=model,
        optimizer=tiny.sgd(model),
        data_loader=tiny.loader(32, batch_size=16),
        config=DPConfig(noise_multiplier=1.0, target_delta=1e-3, physical_batch_size=4, seed=0),
    )
    physical = 0
    for batch in run.batches():
        assert len(batch["input_ids"]) <= 4
        run.train_step(batch)
        physical += 1
    assert run.ledger.steps() == 2 and physical > 2


def test_empty_poisson_batch_still_takes_a_noisy_accounted_step(tiny):
    model = tiny.gpt2()
    run = make_private(
        model=model,
        optimizer=tiny.sgd(model),
        data_loader=tiny.loader(32),
        config=DPConfig(noise_multiplier=1.0, target_delta=1e-3, seed=0),
    )
    run.train_step(next(iter(run.batches())))  # first step (pre-flight weight check)
    before = _params(model)
    empty = {
        "input_ids": torch.zeros((0, 8), dtype=torch.long),
        "labels": torch.zeros((0, 8), dtype=torch.long),
    }
    assert math.isnan(run.train_step(empty))
    assert run.ledger.steps() == 2
    after = _params(model)
    assert any(not torch.equal(before[n], after[n]) for n in before)


class _Lin(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.lin = nn.Linear(dim, 1, bias=False)

    def forward(self, x):
        return self.lin(x)


class _UserData(torch.utils.data.Dataset):
    """User u's examples all point along coordinate u with norm 0.6."""

    def __init__(self, users=6, per_user=4):
        self.users, self.per_user = users, per_user

    def __len__(self):
        return self.users * self.per_user

    def __getitem__(self, i):
        u = i % self.users
        x = torch.zeros(self.users)
        x[u] = 0.6
        return {"x": x, "labels": torch.tensor(0.0), "patient_id": f"patient-{u}"}


def test_several_examples_per_user_are_summed_then_clipped_per_user():
    torch.manual_seed(0)
    model = _Lin(6)
    nn.init.zeros_(model.lin.weight)
    run = make_private(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
        data_loader=torch.utils.data.DataLoader(_UserData(), batch_size=3),
        config=DPConfig(
            noise_multiplier=1.0,
            target_delta=1e-3,
            unit="user",
            group_by="patient_id",
            max_examples_per_user=3,
            seed=0,
            preflight=False,
        ),
        loss_fn=lambda out, y: -out.squeeze(-1),
    )
    assert run.num_units == 6 and run.grad_sample_mode == "hooks"
    checked = 0
    for batch in run.batches():
        users = batch["patient_id"]
        counts = (
            torch.bincount(users, minlength=int(users.max()) + 1)
            if users.numel()
            else torch.zeros(0)
        )
        assert counts.numel() == 0 or int(counts.max()) <= 3
        if users.numel() == 0:
            continue
        run.loss_per_example(batch, loss_fn=lambda out, y: -out.squeeze(-1)).mean().backward()
        run.optimizer.clip_and_accumulate()
        summed = run.model._module.lin.weight.summed_grad.flatten()
        # Each user adds min(0.6 · their examples, C = 1) along their own coordinate.
        per_user = sorted(summed[summed != 0].abs().tolist())
        expected = sorted(min(0.6 * int(c), 1.0) for c in counts if c > 0)
        assert per_user == pytest.approx(expected, rel=1e-5)
        run.optimizer.zero_grad(set_to_none=True)
        for p in run.optimizer.params:
            p.summed_grad = None
        checked += 1
    assert checked > 0
    with pytest.raises(ConfigError, match="ghost"):
        make_private(
            model=_Lin(6),
            optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
            data_loader=torch.utils.data.DataLoader(_UserData(), batch_size=3),
            config=DPConfig(
                noise_multiplier=1.0,
                target_delta=1e-3,
                unit="user",
                group_by="patient_id",
                max_examples_per_user=3,
                grad_sample_mode="ghost",
                preflight=False,
            ),
        )


def test_resume_from_an_older_checkpoint_keeps_the_longer_ledger(tiny, tmp_path):
    path = tmp_path / "ledger.jsonl"
    run = _run(tiny, path)
    it = iter(run.batches())
    run.train_step(next(it))
    run.train_step(next(it))
    ckpt = run.save_checkpoint(tmp_path / "ckpt.pt")
    run.train_step(next(it))  # a step after the checkpoint, then the process "dies"
    spent = run.epsilon_spent()
    resumed = _run(tiny, path)
    resumed.load_checkpoint(ckpt)
    assert resumed.ledger.steps() == 3  # the lost step still counts
    assert resumed.epsilon_spent() == pytest.approx(spent)
    assert sum(h[2] for h in resumed.accountant.history) == 3
    resumed.train_step(next(iter(resumed.batches())))
    assert BudgetLedger.load(path).steps() == 4


def test_dp_adam_at_small_n_is_flagged(tiny, caplog):
    model = tiny.gpt2()
    with caplog.at_level("WARNING", logger="safeguard.privacy._opacus"):
        make_private(
            model=model,
            optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
            data_loader=tiny.loader(32),
            config=DPConfig(noise_multiplier=1.0, target_delta=1e-3, preflight=False),
        )
    assert "DP-SGD with momentum" in caplog.text


def _lm_run(tiny, as_dicts: bool):
    """A GPT-2 run over token ids with padded tails, as dicts or as (ids, mask) pairs."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 50, (32, 8), generator=gen)
    mask = torch.ones_like(ids)
    mask[:, -2:] = 0
    data = (
        [{"input_ids": i, "attention_mask": m} for i, m in zip(ids, mask, strict=True)]
        if as_dicts
        else torch.utils.data.TensorDataset(ids, mask)
    )
    model = tiny.gpt2()
    run = make_private(
        model=model,
        optimizer=tiny.sgd(model),
        data_loader=torch.utils.data.DataLoader(data, batch_size=4),
        config=DPConfig(noise_multiplier=1.0, target_delta=1e-3, preflight=False),
    )
    return run, ids[:4], mask[:4]


def test_an_input_ids_attention_mask_pair_is_refused_not_read_as_labels(tiny):
    run, ids, mask = _lm_run(tiny, as_dicts=False)
    with pytest.raises(DataError, match=r"looks like\s+\(input_ids, attention_mask\)"):
        run.train_step((ids, mask))
    assert run.ledger.steps() == 0


def test_a_causal_lm_trains_on_its_input_ids_when_labels_are_missing(tiny):
    run, ids, mask = _lm_run(tiny, as_dicts=True)
    batch = {"input_ids": ids, "attention_mask": mask}
    explicit = {**batch, "labels": ids.masked_fill(mask == 0, -100)}
    run.model.eval()  # no dropout: the two forwards must agree exactly
    with torch.no_grad():
        assert torch.allclose(run.loss_per_example(batch), run.loss_per_example(explicit))
        alone = run.loss_per_example((ids,))
    assert alone.shape == (4,) and torch.isfinite(alone).all()
    run.model.train()
    run.train_step(batch)
    assert run.ledger.steps() == 1
