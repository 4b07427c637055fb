"""Load test of the detection service on loopback: requests/s and p50/p99 latency, zero errors.

The script builds a throw-away world (a byte-level BPE tokenizer trained on the bundled
corpus with `tokenizers` only, one gumbel key bound to it, one tenant), starts
``safeguard serve`` as a subprocess on 127.0.0.1 (a free port), drives it with a fixed
number of concurrent httpx clients for a bounded time per scenario, and stops it. Side by
side, the same batches go through the service's detection function in-process (no HTTP),
which bounds what the service can reach on this machine.

Run: .venv/bin/python benchmarks/serve_load.py [--concurrency 8] [--seconds 6] [--tokens 200]
Exit code 1 if any request failed (a non-200 answer or a transport error).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np


def build_world(root: Path, tokens: int, n_texts: int) -> tuple[Path, str, list[str]]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from safeguard.demo.tiny_lm import corpus_lines
    from safeguard.serve import generate_token
    from safeguard.watermark import WatermarkKey
    from safeguard.watermark.tokenizer import load_tokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = corpus_lines()
    tok.train_from_iterator(lines, trainer=trainer)
    (root / "tok").mkdir()
    tok.save(str(root / "tok" / "tokenizer.json"))
    tokenizer = load_tokenizer(root / "tok")
    (root / "keys").mkdir()
    key = WatermarkKey.generate("gumbel").bind(tokenizer)
    key.save(root / "keys" / "k.json")
    token, digest = generate_token()
    config = {
        "schema_version": 1,
        "key_store": "keys",
        "tokenizers": ["tok"],
        "tenants": [
            {
                "name": "bench",
                "token_sha256": digest,
                "keys": [key.key_id],
                "rate_limit": {"requests_per_second": 1e6, "burst": 1_000_000},
            }
        ],
    }
    (root / "server.yaml").write_text(json.dumps(config))
    rng = np.random.default_rng(0)
    texts = []
    for _ in range(n_texts):  # about `tokens` tokens of corpus sentences, shuffled
        parts: list[str] = []
        while len(tokenizer(" ".join(parts))["input_ids"]) < tokens:
            parts.append(lines[int(rng.integers(len(lines)))])
        ids = tokenizer(" ".join(parts))["input_ids"][:tokens]
        texts.append(tokenizer.decode(ids))
    return root / "server.yaml", token, texts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def drive(
    url: str, token: str, batches: list[list[str]], concurrency: int, seconds: float
) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    flagged = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60, limits=limits
    ) as client:

        async def worker(w: int) -> None:
            nonlocal flagged
            i = w
            while time.perf_counter() < deadline:
                body = {"texts": batches[i % len(batches)]}
                i += concurrency
                start = time.perf_counter()
                try:
                    r = await client.post("/v1/detect", json=body)
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)
                    continue
                latencies.append(time.perf_counter() - start)
                if r.status_code != 200:
                    errors.append(str(r.status_code))
                else:
                    flagged += r.json()["flagged"]

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "wall_s": wall,
        "rps": len(latencies) / wall,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "flagged": flagged,
    }


def in_process_rate(config_path: Path, batches: list[list[str]], seconds: float) -> float:
    """Texts/s of the service's detection function called directly (tokenize + detect)."""
    from safeguard.serve import load_config
    from safeguard.serve.engine import detect_texts
    from safeguard.serve.keystore import KeyRing

    config = load_config(config_path)
    ring = KeyRing.from_config(config)
    entries = [ring.get("bench", k) for k in ring.keys_of("bench")]
    done, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        batch = batches[i % len(batches)]
        detect_texts(entries, batch, false_positive_rate=1e-3)
        done += len(batch)
        i += 1
    return done / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0, help="per scenario")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per text")
    parser.add_argument("--batch-sizes", default="1,16", help="texts per request, per scenario")
    args = parser.parse_args()
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        config_path, token, texts = build_world(Path(tmp), args.tokens, 256)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "safeguard", "serve", "--config", str(config_path),
             "--port", str(port), "--log-level", "warning"],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                raise SystemExit("the server did not start")
            rows = []
            for size in sizes:
                batches = [texts[i : i + size] for i in range(0, len(texts) - size + 1, size)]
                asyncio.run(drive(url, token, batches, args.concurrency, 1.0))  # warm-up
                res = asyncio.run(drive(url, token, batches, args.concurrency, args.seconds))
                res["texts_per_s"] = res["rps"] * size
                res["batch"] = size
                rows.append(res)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
        for res in rows:
            size = res["batch"]
            batches = [texts[i : i + size] for i in range(0, len(texts) - size + 1, size)]
            res["in_process_texts_per_s"] = in_process_rate(config_path, batches, 2.0)

    print(
        f"concurrency {args.concurrency}, {args.tokens}-token texts, one gumbel key, "
        f"{args.seconds:g} s per scenario, {os.cpu_count()} cores, client and server on one machine, "
        f"load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after"
    )
    print(
        "| texts/request | requests | errors | requests/s | texts/s | p50 | p99 | in-process texts/s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['batch']} | {r['requests']} | {r['errors']} | {r['rps']:.0f} | "
            f"{r['texts_per_s']:.0f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | "
            f"{r['in_process_texts_per_s']:.0f} |"
        )
    failed = sum(r["errors"] for r in rows)
    if failed:
        print(f"FAILED: {failed} requests failed: {[r['error_kinds'] for r in rows]}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
