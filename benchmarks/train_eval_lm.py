"""Train the small evaluation language model shipped with safeguard.

The watermark evaluation needs a model whose next-token distributions look like
those of a real language model (peaked on function words, spread out on content
words). This script builds one offline and reproducibly:

1. fetch four Debian packages of public-domain English text (``apt-get download``,
   or ``--deb-dir`` with the ``.deb`` files already there) and record their SHA-256;
2. extract them with ``dpkg-deb -x`` and parse the text into passages of roughly
   100-220 words: King James Bible verses (decoded with the package's own
   ``bible`` reader), the 1913 Webster blocks of GCIDE (definitions and
   quotations), the Jargon File and The Devil's Dictionary;
3. deduplicate sentences/units, then split passages by a hash of their text into
   ``train`` (tokenizer and model training), ``valid`` (checkpoint selection) and
   ``test`` (held-out human passages shipped as ``human.jsonl.gz``);
4. train a byte-level BPE tokenizer (8,192 tokens) on ``train`` only;
5. train a 4-layer GPT-2 with AdamW and a cosine schedule under a wall-clock
   budget, keeping the checkpoint with the lowest ``valid`` loss;
6. save the model in float16 safetensors and measure the held-out perplexity and
   the per-token entropy profile, written to ``stats.json``.

Usage (the exact command behind the shipped model is in its README.md)::

    python benchmarks/train_eval_lm.py --minutes 35 \
        --out src/safeguard/watermark/evaluation/assets/lm \
        --human-out src/safeguard/watermark/evaluation/assets/human.jsonl.gz
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import math
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger("train_eval_lm")

PACKAGES = {
    "bible-kjv-text": "King James Version of the Bible (1611), public domain",
    "bible-kjv": "reader program used only to decode bible-kjv-text (GPL-2+), no text",
    "dict-gcide": "GCIDE; only blocks tagged [1913 Webster] are used",
    "dict-jargon": "The Jargon File 4.4.7, public domain",
    "dict-devil": "The Devil's Dictionary (Ambrose Bierce, 1911), public domain",
}
EOT = "<|endoftext|>"
SPLIT_MOD = 1000
VALID_BUCKETS = range(0, 25)  # 2.5 % of passages: checkpoint selection
TEST_BUCKETS = range(25, 85)  # 6 % of passages: held-out human texts
MIN_WORDS, MAX_WORDS = 100, 220


def split_of(text: str) -> str:
    """Split of a passage, a function of its text only (so membership is checkable)."""
    bucket = int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % SPLIT_MOD
    if bucket in VALID_BUCKETS:
        return "valid"
    if bucket in TEST_BUCKETS:
        return "test"
    return "train"


# --------------------------------------------------------------------------- data


def fetch_debs(deb_dir: Path | None, work: Path) -> dict[str, Path]:
    if deb_dir is None:
        deb_dir = work / "debs"
        deb_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", *PACKAGES], cwd=deb_dir, check=True)
    found: dict[str, Path] = {}
    for name in PACKAGES:
        matches = sorted(deb_dir.glob(f"{name}_*.deb"))
        if not matches:
            raise SystemExit(f"{name}_*.deb not found in {deb_dir}; run `apt-get download {name}`")
        found[name] = matches[-1]
    return found


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def extract(debs: dict[str, Path], work: Path) -> Path:
    root = work / "root"
    root.mkdir(parents=True, exist_ok=True)
    for deb in debs.values():
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64num(s: str) -> int:
    n = 0
    for ch in s:
        n = n * 64 + _B64.index(ch)
    return n


def dict_entries(root: Path, name: str) -> Iterator[tuple[str, str]]:
    """(headword, entry text) of a dictd database, in file order, each entry once."""
    with gzip.open(root / f"usr/share/dictd/{name}.dict.dz") as f:
        raw = f.read()  # the index counts bytes
    spans: dict[tuple[int, int], str] = {}
    for line in (root / f"usr/share/dictd/{name}.index").read_text("utf-8", "replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00") or parts[0] == "":
            continue
        key = (_b64num(parts[1]), _b64num(parts[2]))
        spans.setdefault(key, parts[0])
    for (off, length), head in sorted(spans.items()):
        yield head, raw[off : off + length].decode("utf-8", "replace")


def _drop_brackets(s: str) -> str:
    prev = None
    while prev != s:
        prev = s
        s = re.sub(r"\[[^\[\]]*\]", "", s)
    return s


def _clean(s: str) -> str:
    s = s.replace("{", "").replace("}", "")
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"\s+([,.;:!?])", r"\1", s)
    return s


def _ok_sentence(s: str) -> bool:
    words = s.split()
    if len(words) < 4 or not re.search(r"[a-z]", s):
        return False
    if "?" in s.replace("? ", "").replace('?"', "").rstrip("?"):  # undecoded characters
        return False
    if any(ch in s for ch in "*\\[]^`|<>"):  # left-over markup
        return False
    return sum(ch.isascii() for ch in s) / len(s) > 0.98


_POS = r"^((n|a|v|adv|prep|conj|interj|pron|pl|t|i|p|imp|pr|vb|superl|compar|sing)\.\s*[,;&]?\s*)+"


def gcide_units(root: Path) -> Iterator[list[str]]:
    """One list of sentences per GCIDE entry, from its [1913 Webster] blocks only."""
    for head, text in dict_entries(root, "gcide"):
        blocks, cur = [], []
        for line in text.splitlines():
            tag = re.fullmatch(r"\s*\[([^\]]+)\]\s*", line)
            if tag:
                blocks.append((tag.group(1), cur))
                cur = []
            else:
                cur.append(line)
        sentences: list[str] = []
        for tag, lines in blocks:
            if tag != "1913 Webster" or not lines:
                continue
            body = lines
            if not lines[0].startswith(" "):  # a headword line: pronunciation, part of speech
                joined = "\n".join(lines)
                joined = re.sub(r"^[^\n]*?\\[^\\\n]*\\\s*(\([^)\n]*\))?,?", "", joined, count=1)
                body = _drop_brackets(joined).splitlines()
            indent = min((len(x) - len(x.lstrip()) for x in body if x.strip()), default=0)
            s = _clean(" ".join(body))
            s = re.sub(r"\s*--\s*[A-Z][\w. ]*\.?\s*$", "", s)  # attribution "--Milton."
            s = _clean(_drop_brackets(s))
            s = re.sub(r"^(\d+\.|\([a-z]\))\s*", "", s)
            s = re.sub(_POS, "", s)
            s = re.sub(r"^(\d+\.|\([a-z]\))\s*", "", s)  # a sense number after the part of speech
            s = re.sub(r"\s*\([a-z]\)\s*", " ", s).strip()
            s = re.sub(r"\bSyn\.\s*--.*$", "", s).strip()
            if not _ok_sentence(s):
                continue
            if indent < 8 and not s.endswith((".", "!", "?", '"')):
                s += "."
            if indent < 8 and not s.startswith(head):
                # a definition: prefix the headword so it reads as a sentence
                s = f"{head}: {s}"
            sentences.append(s)
        if sentences:
            yield sentences


def prose_dict_units(root: Path, name: str) -> Iterator[list[str]]:
    """Paragraph-level units of the Jargon File / Devil's Dictionary."""
    for head, text in dict_entries(root, name):
        paras = re.split(r"\n\s*\n", text)
        out = []
        for p in paras:
            s = _clean(p)
            s = re.sub(r"\s*\[[^\]]*\]\s*", " ", s).strip()
            if len(s.split()) < 6 or not re.search(r"[a-z]{3}", s):
                continue
            if not _ok_sentence(s):
                continue
            out.append(s)
        if out:
            if name == "devil":
                out[0] = re.sub(r"^([A-Z'\- ]+),", lambda m: m.group(1).capitalize() + ",", out[0])
            else:
                out.insert(0, f"{head}:")
            yield [" ".join(out)]


def kjv_units(root: Path, work: Path) -> Iterator[list[str]]:
    """Verses grouped by chapter, decoded with the package's reader."""
    reader = root / "usr/bin/bible"
    out = subprocess.run(
        [str(reader), "-f", "-l", "0", "-p", str(root / "usr/lib"), "gen1:1-rev22:21"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    chapter, verses = None, []
    for line in out.splitlines():
        m = re.match(r"^(\w+?\d+):(\d+) (.*)$", line)
        if not m:
            continue
        if m.group(1) != chapter and verses:
            yield verses
            verses = []
        chapter = m.group(1)
        verses.append(m.group(3).strip())
    if verses:
        yield verses


def build_passages(root: Path, work: Path) -> list[dict]:
    """Deduplicated passages of MIN_WORDS..MAX_WORDS words from every source."""
    seen: set[str] = set()
    passages: list[dict] = []

    def emit(source: str, units: Iterator[list[str]], joiner: str) -> None:
        buf: list[str] = []
        n = 0
        count = 0

        def flush() -> None:
            nonlocal buf, n, count
            if n >= MIN_WORDS // 2:
                text = joiner.join(buf).strip()
                passages.append({"id": f"{source}:{count:05d}", "source": source, "text": text})
                count += 1
            buf, n = [], 0

        for group in units:
            for s in group:
                key = re.sub(r"\W+", " ", s.lower()).strip()
                if key in seen:
                    continue
                seen.add(key)
                w = len(s.split())
                if n and n + w > MAX_WORDS:
                    flush()
                buf.append(s)
                n += w
                if n >= MIN_WORDS and source != "gcide":
                    flush()
            if source == "kjv" or n >= MIN_WORDS:
                flush()
        flush()

    emit("kjv", kjv_units(root, work), " ")
    emit("gcide", gcide_units(root), " ")
    emit("jargon", prose_dict_units(root, "jargon"), "\n\n")
    emit("devil", prose_dict_units(root, "devil"), "\n\n")
    unique = {}
    for p in passages:
        unique.setdefault(p["text"], p)
    return list(unique.values())


# ---------------------------------------------------------------------- tokenizer


def train_tokenizer(texts: list[str], vocab_size: int, out: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOT,
        eos_token=EOT,
        pad_token=EOT,
        unk_token=EOT,
        model_max_length=256,
        clean_up_tokenization_spaces=False,
    )
    fast.save_pretrained(out)
    # name the class every transformers version knows (>= 5 maps it to its tokenizers backend)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg.pop("backend", None)
    cfg["padding_side"] = "left"  # batched generation pads on the left
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    return fast


# -------------------------------------------------------------------------- model


def encode_stream(tok, texts: list[str]):
    import numpy as np

    ids: list[int] = []
    for t in texts:
        ids.extend(tok(t)["input_ids"])
        ids.append(tok.eos_token_id)
    return np.asarray(ids, dtype=np.int64)


def windows(stream, seq: int):
    import torch

    n = (len(stream) - 1) // seq
    return torch.from_numpy(stream[: n * seq].reshape(n, seq))


def mean_loss(model, data, batch: int = 32) -> float:
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(data), batch):
            x = data[i : i + batch]
            out = model(input_ids=x, labels=x)
            k = x.numel() - x.shape[0]
            total += float(out.loss) * k
            count += k
    return total / count


def train(args, tok, train_stream, valid_data, out: Path) -> dict:
    import torch
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(args.seed)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=args.seq,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        resid_pdrop=args.dropout,
        embd_pdrop=args.dropout,
        attn_pdrop=args.dropout,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(config)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("model: %d parameters", n_params)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
    )
    gen = torch.Generator().manual_seed(args.seed)
    n_windows = (len(train_stream) - 1) // args.seq
    budget = args.minutes * 60.0
    start = time.monotonic()
    steps = args.steps
    best, best_step, history = math.inf, -1, []
    step = 0
    tokens_seen = 0
    eval_every = args.eval_every

    def lr_at(s: int, total: int) -> float:
        if s < args.warmup:
            return args.lr * (s + 1) / args.warmup
        frac = min(1.0, (s - args.warmup) / max(1, total - args.warmup))
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    def evaluate() -> None:
        nonlocal best, best_step
        model.eval()
        loss = mean_loss(model, valid_data)
        model.train()
        history.append({"step": step, "tokens": tokens_seen, "valid_loss": loss})
        logger.info(
            "step %d tokens %d valid loss %.4f ppl %.2f (%.0fs)",
            step, tokens_seen, loss, math.exp(loss), time.monotonic() - start,
        )  # fmt: skip
        if loss < best:
            best, best_step = loss, step
            model.save_pretrained(out / "_best", safe_serialization=True)

    model.train()
    while True:
        total = steps if steps is not None else 10**9
        if step >= total:
            break
        if time.monotonic() - start > budget:
            logger.info("wall-clock budget reached at step %d", step)
            break
        offs = torch.randint(0, n_windows * args.seq - 1, (args.batch,), generator=gen)
        # clamp so the last window stays inside the stream (leaves all other draws unchanged)
        last = len(train_stream) - args.seq
        x = torch.stack(
            [
                torch.from_numpy(train_stream[min(o, last) : min(o, last) + args.seq])
                for o in offs.tolist()
            ]
        )
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens_seen += x.numel()
        if steps is None and step == args.calibrate:
            per_step = (time.monotonic() - start) / step
            steps = int((budget - 60) / (per_step * (1 + 1.0 / eval_every * 3)))
            logger.info(
                "%.3fs per step: planning %d steps (rerun with --steps %d)", per_step, steps, steps
            )
        if step % 50 == 0:
            logger.info("step %d loss %.3f lr %.2e", step, float(loss), opt.param_groups[0]["lr"])
        if step % eval_every == 0:
            evaluate()
    evaluate()
    best_model = GPT2LMHeadModel.from_pretrained(out / "_best")
    best_model.to(torch.float16).save_pretrained(out, safe_serialization=True)
    for f in (out / "_best").iterdir():
        f.unlink()
    (out / "_best").rmdir()
    gen_config = GenerationConfig(
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        do_sample=True,
        max_new_tokens=128,
    )
    gen_config.save_pretrained(out)
    return {
        "parameters": n_params,
        "steps_planned": steps,
        "steps_run": step,
        "best_step": best_step,
        "train_tokens_seen": tokens_seen,
        "best_valid_loss": best,
        "history": history,
        "train_seconds": time.monotonic() - start,
    }


# --------------------------------------------------------------------- evaluation


def entropy_summary(values) -> dict:
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    return {
        "tokens": int(v.size),
        "mean": float(v.mean()),
        "median": float(np.median(v)),
        "q25": float(np.quantile(v, 0.25)),
        "q75": float(np.quantile(v, 0.75)),
        "share_below_0.5": float((v < 0.5).mean()),
        "share_above_3": float((v > 3.0).mean()),
    }


def measure(model_dir: Path, test_texts: list[str], seed: int) -> dict:
    """Held-out perplexity and entropy profiles of the saved (float16) model, run in float32."""
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = GPT2LMHeadModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    nll, count, human_ent = 0.0, 0, []
    with torch.no_grad():
        for t in test_texts:
            ids = torch.tensor([[tok.eos_token_id, *tok(t)["input_ids"][:255]]])
            logits = model(input_ids=ids).logits[0, :-1].float()
            logp = torch.log_softmax(logits, -1)
            nll -= float(logp.gather(1, ids[0, 1:, None]).sum())
            count += ids.shape[1] - 1
            human_ent.extend((-(logp.exp() * logp).sum(-1)).tolist())
    result = {
        "heldout_passages": len(test_texts),
        "heldout_tokens": count,
        "heldout_perplexity": math.exp(nll / count),
        "entropy_human": entropy_summary(human_ent),
    }
    prompts = [tok.decode(tok(t)["input_ids"][:16]) for t in test_texts[:100]]
    for temp in (1.0, 0.7):
        torch.manual_seed(seed)
        ents = []
        for i in range(0, len(prompts), 20):
            enc = tok(prompts[i : i + 20], return_tensors="pt", padding=True, padding_side="left")
            with torch.no_grad():
                out = model.generate(
                    **enc,
                    do_sample=True,
                    temperature=temp,
                    top_k=0,
                    max_new_tokens=100,
                    output_scores=True,
                    return_dict_in_generate=True,
                    pad_token_id=tok.pad_token_id,
                )
            alive = torch.ones(enc["input_ids"].shape[0], dtype=torch.bool)
            new = out.sequences[:, enc["input_ids"].shape[1] :]
            for j, scores in enumerate(out.scores):
                # scores are the processed (temperature-scaled) logits the sample was drawn from
                logp = torch.log_softmax(scores.float(), -1)
                h = -(logp.exp() * torch.nan_to_num(logp, neginf=0.0)).sum(-1)
                ents.extend(h[alive].tolist())
                alive &= new[:, j] != tok.eos_token_id
        result[f"entropy_samples_t{temp}"] = entropy_summary(ents)
    return result


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="model directory to write")
    p.add_argument("--human-out", type=Path, required=True, help="held-out passages (.jsonl.gz)")
    p.add_argument("--deb-dir", type=Path, default=None, help="directory with the .deb files")
    p.add_argument("--work", type=Path, default=None, help="scratch directory (default: temporary)")
    p.add_argument("--minutes", type=float, default=35.0, help="wall-clock budget of training")
    p.add_argument(
        "--steps", type=int, default=None, help="optimizer steps (default: fit the budget)"
    )
    p.add_argument("--calibrate", type=int, default=30, help="steps timed to plan --steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=192)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--human-count", type=int, default=1500)
    p.add_argument("--human-min-tokens", type=int, default=120)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)

    import torch

    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="eval_lm_"))
    work.mkdir(parents=True, exist_ok=True)
    debs = fetch_debs(args.deb_dir, work)
    inputs = {d.name: sha256_file(d) for d in debs.values()}
    for name, digest in inputs.items():
        logger.info("input %s sha256 %s", name, digest)
    root = extract(debs, work)
    passages = build_passages(root, work)
    splits: dict[str, list[dict]] = {"train": [], "valid": [], "test": []}
    for psg in passages:
        splits[split_of(psg["text"])].append(psg)
    for name, ps in splits.items():
        logger.info(
            "%s: %d passages, %d words", name, len(ps), sum(len(x["text"].split()) for x in ps)
        )

    args.out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer([x["text"] for x in splits["train"]], args.vocab, args.out)
    train_stream = encode_stream(tok, [x["text"] for x in splits["train"]])
    valid_data = windows(encode_stream(tok, [x["text"] for x in splits["valid"]]), args.seq)[:64]
    logger.info("train tokens %d, valid windows %d", len(train_stream), len(valid_data))

    # held-out human passages: long enough, in a deterministic (hash) order
    test = sorted(splits["test"], key=lambda x: hashlib.sha256(x["text"].encode()).hexdigest())
    test = [x for x in test if len(tok(x["text"])["input_ids"]) >= args.human_min_tokens]
    human = test[: args.human_count]
    args.human_out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(args.human_out, "wb", mtime=0) as f:
        for x in human:
            f.write((json.dumps(x, ensure_ascii=False) + "\n").encode("utf-8"))
    by_source: dict[str, int] = {}
    for x in human:
        by_source[x["source"]] = by_source.get(x["source"], 0) + 1
    logger.info("human passages: %d %s", len(human), by_source)

    stats = train(args, tok, train_stream, valid_data, args.out)
    stats.update(
        {
            "inputs_sha256": inputs,
            "passages": {k: len(v) for k, v in splits.items()},
            "train_tokens": len(train_stream),
            "human_passages": len(human),
            "human_by_source": by_source,
            "args": {k: str(v) for k, v in vars(args).items()},
        }
    )
    stats.update(measure(args.out, [x["text"] for x in human], args.seed))
    (work / "stats.json").write_text(json.dumps(stats, indent=2))
    logger.info("stats written to %s", work / "stats.json")
    print(json.dumps({k: v for k, v in stats.items() if k != "history"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
