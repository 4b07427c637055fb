"""DP-SGD step time and peak memory vs non-private training, side by side in one run.

For a small GPT-2 (full fine-tune: hooks, book-keeping ``bk``; ghost needs untied
embeddings; LoRA r=8: hooks) and a small BERT classifier (hooks, ghost, bk), each
configuration runs in a fresh
subprocess with ``torch.set_num_threads(1)``: warm-up steps, then the median CPU time
(``time.process_time``) of measured steps, and the growth of peak RSS (``ru_maxrss``)
over the RSS just before training. Ratios are DP / non-private of the same model.
The baseline row is plain Opacus ``make_private_with_epsilon`` with hooks (its process never
imports safeguard's adapter, so it runs stock Opacus: Conv1D through functorch).

    python benchmarks/dp_speed.py [--steps 10] [--warmup 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

CASES = [
    # (model, mode, label)
    ("gpt2", "plain", "GPT-2 non-private"),
    ("gpt2", "opacus", "GPT-2 plain Opacus make_private_with_epsilon (hooks) — baseline"),
    ("gpt2", "hooks", "GPT-2 safeguard hooks (tied embeddings)"),
    ("gpt2", "bk", "GPT-2 safeguard bk (tied embeddings)"),
    ("gpt2u", "plain", "GPT-2 untied non-private"),
    ("gpt2u", "ghost", "GPT-2 untied safeguard ghost"),
    ("gpt2u", "bk", "GPT-2 untied safeguard bk"),
    ("gpt2", "lora-plain", "GPT-2 LoRA r=8 non-private"),
    ("gpt2", "lora", "GPT-2 LoRA r=8 safeguard hooks"),
    ("gpt2", "lora-bk", "GPT-2 LoRA r=8 safeguard bk"),
    ("bert", "plain", "BERT non-private"),
    ("bert", "hooks", "BERT safeguard hooks"),
    ("bert", "ghost", "BERT safeguard ghost"),
    ("bert", "bk", "BERT safeguard bk"),
]

B, T, V = 16, 64, 1000


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _model(kind: str):
    import torch
    from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    if kind == "bert":
        cfg = BertConfig(
            num_hidden_layers=2,
            hidden_size=128,
            num_attention_heads=4,
            intermediate_size=512,
            vocab_size=V,
            max_position_embeddings=T,
            num_labels=2,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        return BertForSequenceClassification(cfg)
    cfg = GPT2Config(
        n_layer=2,
        n_embd=128,
        n_head=4,
        vocab_size=V,
        n_positions=T,
        tie_word_embeddings=(kind == "gpt2"),
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return GPT2LMHeadModel(cfg)


class _Data:
    def __init__(self, n: int, classes: bool):
        import torch

        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(3, V, (n, T), generator=g)
        self.classes = classes

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        import torch

        item = {"input_ids": self.ids[i], "attention_mask": torch.ones(T, dtype=torch.long)}
        item["labels"] = (
            torch.tensor(int(self.ids[i, 0]) % 2) if self.classes else self.ids[i].clone()
        )
        return item


def _child(model_kind: str, mode: str, steps: int, warmup: int) -> dict:
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    from torch.utils.data import DataLoader

    def per_example_loss(model, out, labels):
        # Local copy so that the non-private and plain-Opacus rows never import safeguard's
        # Opacus adapter (which registers Conv1D samplers with Opacus).
        logits = out.logits
        if logits.dim() == 3:
            logits, labels = logits[:, :-1], labels[:, 1:]
            tok = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none"
            )
            return tok.view(labels.shape).mean(dim=1)
        return torch.nn.functional.cross_entropy(logits, labels, reduction="none")

    model = _model(model_kind)
    if mode.startswith("lora"):
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model, LoraConfig(r=8, target_modules=["c_attn"], fan_in_fan_out=True)
        )
    data = _Data(B * 64, classes=model_kind == "bert")
    loader = DataLoader(data, batch_size=B)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    model.train()
    fixed = next(iter(loader))
    b = fixed["input_ids"].shape[0]
    pos = torch.arange(T).unsqueeze(0).expand(b, T).contiguous()

    if mode in ("plain", "lora-plain"):

        def step():
            kw = {"position_ids": pos}
            if model_kind == "bert":
                kw["token_type_ids"] = torch.zeros(b, T, dtype=torch.long)
            out = model(input_ids=fixed["input_ids"], attention_mask=fixed["attention_mask"], **kw)
            per_example_loss(model, out, fixed["labels"]).mean().backward()
            opt.step()
            opt.zero_grad()

    elif mode == "opacus":
        from opacus import PrivacyEngine

        engine = PrivacyEngine(accountant="prv")
        pm, popt, _ = engine.make_private_with_epsilon(
            module=model,
            optimizer=opt,
            data_loader=loader,
            target_epsilon=8.0,
            target_delta=1e-5,
            epochs=1,
            max_grad_norm=1.0,
            poisson_sampling=True,
        )

        def step():
            out = pm(
                input_ids=fixed["input_ids"],
                attention_mask=fixed["attention_mask"],
                position_ids=pos,
            )
            per_example_loss(model, out, fixed["labels"]).mean().backward()
            popt.step()
            popt.zero_grad()

    else:
        from safeguard.privacy import DPConfig, make_private

        run = make_private(
            model=model,
            optimizer=opt,
            data_loader=loader,
            config=DPConfig(
                target_epsilon=8.0,
                target_delta=1e-5,
                epochs=1,
                grad_sample_mode={"lora": "auto", "lora-bk": "bk"}.get(mode, mode),
                seed=0,
            ),
        )

        def step():
            run.train_step(fixed)

    for _ in range(warmup):
        step()
    rss0 = _rss_mib()
    peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = []
    for _ in range(steps):
        t = time.process_time()
        step()
        times.append(time.process_time() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"median_s": statistics.median(times), "rss_mib": rss0, "peak_mib": max(peak, peak0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], args.child[1], args.steps, args.warmup)))
        return
    rows = {}
    for kind, mode, label in CASES:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                kind,
                mode,
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows[(kind, mode)] = (label, json.loads(out.stdout.strip().splitlines()[-1]))
    ref = {"gpt2": ("gpt2", "plain"), "gpt2u": ("gpt2u", "plain"), "bert": ("bert", "plain")}
    print(
        f"B={B}, T={T}, vocab={V}, 2 layers, width 128; 1 thread; median CPU time of {args.steps} steps\n"
    )
    print(
        "| configuration | step (ms) | time × non-private | peak RSS (MiB) | peak RSS × non-private |"
    )
    print("|---|---|---|---|---|")
    for (kind, mode), (label, r) in rows.items():
        base = rows[("gpt2", "lora-plain")][1] if mode.startswith("lora") else rows[ref[kind]][1]
        print(
            f"| {label} | {1000 * r['median_s']:.1f} | {r['median_s'] / base['median_s']:.2f} | "
            f"{r['peak_mib']:.0f} | {r['peak_mib'] / base['peak_mib']:.2f} |"
        )


if __name__ == "__main__":
    main()
