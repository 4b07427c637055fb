"""Tiny Hugging Face models and datasets for the DP integration tests (built locally, no hub)."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch

V, T = 64, 8

warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
logging.getLogger("transformers").setLevel(logging.ERROR)


class TokenDataset(torch.utils.data.Dataset):
    """Random token sequences; causal-LM labels, or class labels with ``classes``."""

    def __init__(self, n: int = 32, *, classes: int = 0, seed: int = 0, groups: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(3, V, (n, T), generator=g)
        self.classes = classes
        self.groups = groups

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {"input_ids": self.ids[i], "attention_mask": torch.ones(T, dtype=torch.long)}
        if self.classes:
            item["labels"] = torch.tensor(int(self.ids[i, 0]) % self.classes)
        else:
            item["labels"] = self.ids[i].clone()
        if self.groups:
            item["patient_id"] = torch.tensor(i % self.groups)
        return item


def _save_load(model, cls, path):
    model.save_pretrained(path)
    return cls.from_pretrained(path)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # shared cores; tiny models gain nothing from more threads
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_models")


def make_gpt2(tiny_dir, *, tied: bool = True):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=1,
        n_embd=32,
        n_head=2,
        vocab_size=V,
        n_positions=16,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=tied,
    )
    return _save_load(GPT2LMHeadModel(cfg), GPT2LMHeadModel, tiny_dir / f"gpt2-{tied}")


def make_bert(tiny_dir):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(
        num_hidden_layers=1,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=V,
        max_position_embeddings=16,
        num_labels=2,
        pad_token_id=0,
    )
    return _save_load(
        BertForSequenceClassification(cfg), BertForSequenceClassification, tiny_dir / "bert"
    )


def make_llama(tiny_dir):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        num_hidden_layers=1,
        hidden_size=32,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        vocab_size=V,
        max_position_embeddings=16,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return _save_load(LlamaForCausalLM(cfg), LlamaForCausalLM, tiny_dir / "llama")


@pytest.fixture
def gpt2(tiny_dir):
    return make_gpt2(tiny_dir)


@pytest.fixture
def gpt2_untied(tiny_dir):
    return make_gpt2(tiny_dir, tied=False)


@pytest.fixture
def bert(tiny_dir):
    return make_bert(tiny_dir)


@pytest.fixture
def llama(tiny_dir):
    return make_llama(tiny_dir)


def loader(n: int = 32, batch_size: int = 4, **kwargs):
    return torch.utils.data.DataLoader(TokenDataset(n, **kwargs), batch_size=batch_size)


def sgd(model, lr: float = 0.05):
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)


@pytest.fixture
def tiny(tiny_dir):
    """Helpers for the tests (test modules cannot import conftest under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        loader=loader,
        sgd=sgd,
        TokenDataset=TokenDataset,
        gpt2=lambda tied=True: make_gpt2(tiny_dir, tied=tied),
        bert=lambda: make_bert(tiny_dir),
        llama=lambda: make_llama(tiny_dir),
    )
