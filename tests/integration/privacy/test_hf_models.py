"""make_private on tiny Hugging Face models: GPT-2 (Conv1D, tied), BERT, Llama-style, LoRA."""

from __future__ import annotations

import pytest
import torch

from safeguard.errors import ConfigError
from safeguard.privacy import DPConfig, make_private
from safeguard.privacy._opacus import _fill_hf_inputs, per_example_loss


def _train(run, steps):
    losses = []
    for batch in run.batches():
        losses.append(run.train_step(batch))
        if len(losses) == steps:
            break
    return losses


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    ("name", "mode", "expected_mode", "classes"),
    [
        ("gpt2", "auto", "bk", 0),  # tied embeddings: bk handles them
        ("gpt2", "hooks", "hooks", 0),
        ("gpt2_untied", "auto", "bk", 0),
        ("gpt2_untied", "ghost", "ghost", 0),
        ("gpt2_untied", "functorch", "functorch", 0),
        ("bert", "auto", "bk", 2),
        ("bert", "ghost", "ghost", 2),
        ("bert", "hooks", "hooks", 2),
        ("llama", "auto", "ghost", 0),  # LlamaRMSNorm: bk does not cover it
    ],
)
def test_model_families_train_and_record(request, tiny, name, mode, expected_mode, classes):
    model = request.getfixturevalue(name)
    before = _snapshot(model)
    run = make_private(
        model=model,
        optimizer=tiny.sgd(model),
        data_loader=tiny.loader(classes=classes),
        config=DPConfig(noise_multiplier=1.0, target_delta=1e-3, grad_sample_mode=mode, seed=0),
    )
    assert run.grad_sample_mode == expected_mode
    losses = _train(run, 3)
    assert len(losses) == 3
    assert run.ledger.steps() == 3 and run.steps_taken == 3
    assert 0 < run.ledger.epsilon_spent() < float("inf")
    after = _snapshot(model)
    assert any(not torch.equal(before[n], after[n]) for n in before)


def test_ghost_refuses_tied_embeddings_clearly(gpt2, tiny):
    with pytest.raises(ConfigError, match=r"tied.*hooks"):
        make_private(
            model=gpt2,
            optimizer=tiny.sgd(gpt2),
            data_loader=tiny.loader(),
            config=DPConfig(noise_multiplier=1.0, target_delta=1e-3, grad_sample_mode="ghost"),
        )


@pytest.mark.parametrize(("mode", "expected"), [("auto", "bk"), ("hooks", "hooks")])
def test_lora_trains_only_adapters(tiny, mode, expected):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        tiny.gpt2(), LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True)
    )
    before = _snapshot(model)
    run = make_private(
        model=model,
        optimizer=tiny.sgd(model, lr=0.5),
        data_loader=tiny.loader(),
        config=DPConfig(noise_multiplier=1.0, target_delta=1e-3, seed=0, grad_sample_mode=mode),
    )
    assert run.grad_sample_mode == expected
    _train(run, 2)
    after = _snapshot(model)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all("lora_" in n for n in changed)
    assert any("lora_B" in n for n in changed)


def test_position_and_token_type_ids_are_batch_shaped_and_contiguous(bert):
    ids = torch.randint(3, 60, (5, 7))
    out = _fill_hf_inputs(bert.bert, {"input_ids": ids})
    for key in ("position_ids", "token_type_ids"):
        assert out[key].shape == (5, 7) and out[key].is_contiguous()
    assert torch.equal(out["position_ids"][3], torch.arange(7))
    # A (1, T) position_ids from the caller is expanded too.
    out = _fill_hf_inputs(
        bert.bert, {"input_ids": ids, "position_ids": torch.arange(7).unsqueeze(0)}
    )
    assert out["position_ids"].shape == (5, 7) and out["position_ids"].is_contiguous()
    # Left padding: positions count real tokens.
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1]] * 5)
    out = _fill_hf_inputs(bert.bert, {"input_ids": ids, "attention_mask": mask})
    assert out["position_ids"][0].tolist() == [0, 0, 0, 1, 2, 3, 4]


def test_ignore_index_tokens_do_not_count(gpt2):
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 64)
    labels = torch.randint(3, 64, (2, 6))
    labels[0, 3:] = -100
    base = per_example_loss(gpt2, logits, labels)
    changed = logits.clone()
    changed[0, 2:5] += 10 * torch.randn(3, 64)  # predictions for ignored targets (shifted)
    again = per_example_loss(gpt2, changed, labels)
    assert again[0] == pytest.approx(float(base[0]))
    assert again[1] == pytest.approx(float(base[1]))
    # The mean is over counted tokens only: example 0 has 2 counted next-token targets.
    manual = torch.nn.functional.cross_entropy(logits[0, :2], labels[0, 1:3])
    assert base[0] == pytest.approx(float(manual), rel=1e-5)


def test_conv1d_per_sample_grads_match_autograd_in_every_mode(tiny):
    # The pre-flight check raises if Opacus' per-sample gradients differ from autograd's.
    for mode in ("hooks", "functorch", "bk"):
        model = tiny.gpt2()
        run = make_private(
            model=model,
            optimizer=tiny.sgd(model),
            data_loader=tiny.loader(),
            config=DPConfig(noise_multiplier=1.0, target_delta=1e-3, grad_sample_mode=mode),
        )
        assert run.grad_sample_mode == mode
