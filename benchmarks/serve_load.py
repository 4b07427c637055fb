"""Load test of the detection service on loopback: throughput, and a hostile tenant beside a good one.

The script builds a throw-away world (a byte-level BPE tokenizer trained on the bundled
corpus with `tokenizers` only, one gumbel key bound to it, three tenants), starts
``safeguard serve`` as a subprocess on 127.0.0.1 (a free port), runs the scenarios for a
bounded time each, and stops it.

Throughput: a fixed number of concurrent httpx clients of one tenant, per batch size; side
by side, the same batches go through the service's detection function in-process (no HTTP),
which bounds what the service can reach on this machine.

Hostile tenant: three phases of equal length on the same server. In each, a well-behaved
tenant sends single-text detection requests at a fixed rate and a poller calls ``/healthz``
50 times a second, both open loop (each request timed from when it was due, so that a stall
counts for every request it delays).
In the second and third phases a second process also attacks: a tenant with a valid token
(the default ``max_in_flight``) sends a bounded number of abusive bodies,
``--abuse-concurrency`` at a time (500,000 integers as texts, 500,000 nested arrays, a
3.8 MB text, 600,000 one-letter texts, 200,000 unknown members, a 5 MB body over the size
limit), and a client without a valid token, bound to its own loopback address (127.0.0.3,
then 127.0.0.4), keeps guessing tokens. The abusive tenant has no rate limit in the second
phase (only the body checks and the in-flight cap protect the others) and the default one
(10 requests/s, burst 20) in the third. The abusive client runs at nice 19 by default
(``--abuser-nice``): on one machine its own sending would otherwise take CPU from the server
and the good client, which an attacker on another machine does not. The good tenant's
p50/p99 and ``/healthz`` p50/p99 of the phases are printed side by side, with how the
abusive requests were answered. All traffic stays on 127.0.0.1-127.0.0.4.

Run: .venv/bin/python benchmarks/serve_load.py [--concurrency 8] [--seconds 6] [--tokens 200]
     [--scenarios throughput,hostile] [--abuse-seconds 8] [--abusive-requests 3000]
     [--abuse-concurrency 16] [--good-rate 40] [--abuser-nice 19]
Exit code 1 if any request of a well-behaved client failed (a non-200 answer or a transport
error), or if an abusive request was answered with 2xx or 5xx.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

#: Phases of the hostile scenario: (name, abusive tenant, address of the token guesser).
PHASES = [
    ("quiet", None, None),
    ("abusive tenant, no rate limit", "abuser", "127.0.0.3"),
    ("abusive tenant, default rate limit", "abuser-limited", "127.0.0.4"),
]


def build_world(
    root: Path, tokens: int, n_texts: int, max_in_flight: int
) -> tuple[Path, dict[str, str], list[str]]:
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
    tokens_by_tenant: dict[str, str] = {}
    tenants = []
    # "bench" and "abuser" have their rate limits out of the way, so that what is measured is
    # the body checks and the in-flight cap; "abuser-limited" keeps the default rate limit.
    # Both abusers keep the default max_in_flight (4).
    unlimited = {"requests_per_second": 1e6, "burst": 1_000_000}
    for name, rate_limit in (("bench", unlimited), ("abuser", unlimited), ("abuser-limited", None)):
        token, digest = generate_token()
        tokens_by_tenant[name] = token
        # a load test is not a probing attack: the daily query budget is out of the way too
        tenant = {
            "name": name,
            "token_sha256": digest,
            "keys": [key.key_id],
            "texts_per_key_per_day": 1_000_000_000,
        }
        if rate_limit is not None:
            tenant["rate_limit"] = rate_limit
        if name == "bench" and max_in_flight > 4:  # the throughput clients need more slots
            tenant["max_in_flight"] = max_in_flight
        tenants.append(tenant)
    config = {"schema_version": 1, "key_store": "keys", "tokenizers": ["tok"], "tenants": tenants}
    (root / "server.yaml").write_text(json.dumps(config))
    rng = np.random.default_rng(0)
    texts = []
    for _ in range(n_texts):  # about `tokens` tokens of corpus sentences, shuffled
        parts: list[str] = []
        while len(tokenizer(" ".join(parts))["input_ids"]) < tokens:
            parts.append(lines[int(rng.integers(len(lines)))])
        ids = tokenizer(" ".join(parts))["input_ids"][:tokens]
        texts.append(tokenizer.decode(ids))
    return root / "server.yaml", tokens_by_tenant, texts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentiles(seconds: list[float]) -> tuple[float, float, float]:
    if not seconds:
        return float("nan"), float("nan"), float("nan")
    ms = np.array(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(ms.max())


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
    p50, p99, _ = _percentiles(latencies)
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "wall_s": wall,
        "rps": len(latencies) / wall,
        "p50_ms": p50,
        "p99_ms": p99,
        "flagged": flagged,
    }


async def open_loop(
    url: str, rate: float, seconds: float, connections: int, send: Callable[..., Awaitable[bool]]
) -> dict:
    """Call ``send(client, i)`` at ``rate`` per second for ``seconds``, whatever the answers.

    Open loop: request ``i`` is due at ``i / rate`` s and its latency is counted from then, so
    a stall of the server delays every request due during it (a closed-loop client would
    send fewer requests while stalled and hide the stall from its percentiles). At most
    ``connections`` requests are on the wire at once; later ones wait in the client, and
    that wait counts.
    """
    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        start = time.perf_counter()

        async def one(i: int) -> None:
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            try:
                if not await send(client, i):
                    errors.append("status")
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)
            latencies.append(time.perf_counter() - due)

        await asyncio.gather(*(one(i) for i in range(int(rate * seconds))))
    p50, p99, worst = _percentiles(latencies)
    return {"requests": len(latencies), "errors": len(errors), "error_kinds": sorted(set(errors)),
            "p50_ms": p50, "p99_ms": p99, "max_ms": worst}  # fmt: skip


def abusive_bodies() -> list[tuple[str, bytes]]:
    """Bodies a hostile tenant might send; all but the last are under the 4 MiB limit."""
    return [
        ("500k integers", json.dumps({"texts": [1] * 500_000}).encode()),
        ("500k nested arrays", b'{"texts": [' + b"[" * 500_000 + b"]" * 500_000 + b"]}"),
        ("3.8 MB text", json.dumps({"texts": ["w " * 1_900_000]}).encode()),
        ("600k short texts", json.dumps({"texts": ["a"] * 600_000}).encode()),
        ("200k members", json.dumps({"texts": ["a"], **{f"k{i}": 0 for i in range(200_000)}}).encode()),
        ("5 MB body", b'{"texts": ["' + b"w" * (5 << 20) + b'"]}'),
    ]  # fmt: skip


async def _abuse(
    url: str, token: str, seconds: float, total: int, concurrency: int, guess_from: str
) -> dict:
    bodies = abusive_bodies()
    statuses: dict[str, Counter[str]] = {kind: Counter() for kind, _ in bodies}
    latencies: dict[str, list[float]] = {kind: [] for kind, _ in bodies}
    guesses: Counter[str] = Counter()
    deadline = time.perf_counter() + seconds
    sent = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def hostile_tenant(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while time.perf_counter() < deadline and sent < total:
            kind, body = bodies[sent % len(bodies)]
            sent += 1
            start = time.perf_counter()
            try:
                r = await client.post("/v1/detect", content=body, headers=headers)
                statuses[kind][str(r.status_code)] += 1
            except httpx.HTTPError as exc:
                statuses[kind][type(exc).__name__] += 1
            latencies[kind].append(time.perf_counter() - start)

    async def guesser(client: httpx.AsyncClient) -> None:
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            try:
                r = await client.post(
                    "/v1/detect",
                    json={"texts": ["w"]},
                    headers={"Authorization": f"Bearer sgt_guess-{n}"},
                )
                guesses[str(r.status_code)] += 1
            except httpx.HTTPError as exc:
                guesses[type(exc).__name__] += 1
            await asyncio.sleep(0.01)

    guess_transport = httpx.AsyncHTTPTransport(local_address=guess_from)
    async with (
        httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client,
        httpx.AsyncClient(base_url=url, timeout=60, transport=guess_transport) as guess_client,
    ):
        await asyncio.gather(
            *(hostile_tenant(client) for _ in range(concurrency)), guesser(guess_client)
        )
    kinds = []
    for kind, _ in bodies:
        p50, p99, worst = _percentiles(latencies[kind])
        kinds.append({"kind": kind, "sent": len(latencies[kind]),
                      "statuses": dict(statuses[kind]), "p50_ms": p50, "max_ms": worst})  # fmt: skip
    everything = [x for v in latencies.values() for x in v]
    p50, p99, worst = _percentiles(everything)
    return {"sent": len(everything), "kinds": kinds, "guesses": dict(guesses),
            "p50_ms": p50, "p99_ms": p99, "max_ms": worst}  # fmt: skip


def abuser_process(url: str, token: str, seconds: float, total: int, concurrency: int,
                   guess_from: str, nice: int, ready: Any, go: Any, out: Any) -> None:  # fmt: skip
    """Runs in its own process, so that its client work does not slow the good clients."""
    os.nice(nice)
    abusive_bodies()  # built once before the start, as a warm-up of the allocator
    ready.set()
    go.wait(timeout=120)
    out.put(asyncio.run(_abuse(url, token, seconds, total, concurrency, guess_from)))


async def good_phase(url: str, token: str, texts: list[str], args) -> tuple[dict, dict]:
    """The well-behaved tenant and the /healthz poller, both open loop, side by side."""
    auth = {"Authorization": f"Bearer {token}"}

    async def detect(client: httpx.AsyncClient, i: int) -> bool:
        r = await client.post("/v1/detect", json={"texts": [texts[i % len(texts)]]}, headers=auth)
        return r.status_code == 200

    async def health(client: httpx.AsyncClient, i: int) -> bool:
        return (await client.get("/healthz")).status_code == 200

    # the good tenant over 4 connections, its default max_in_flight, so that it is never
    # refused for it; /healthz over 8, so that its queue builds only past 160 ms a call
    good, healthz = await asyncio.gather(
        open_loop(url, args.good_rate, args.abuse_seconds, 4, detect),
        open_loop(url, 50.0, args.abuse_seconds, 8, health),
    )
    return good, healthz


def hostile_scenario(url: str, tokens: dict[str, str], texts: list[str], args) -> list[dict]:
    asyncio.run(drive(url, tokens["bench"], [[t] for t in texts], 2, 1.0))  # warm-up
    ctx = mp.get_context("spawn")
    rows = []
    for phase, abuser, guess_from in PHASES:
        proc = None
        if abuser is not None:
            ready, go, out = ctx.Event(), ctx.Event(), ctx.Queue()
            proc = ctx.Process(
                target=abuser_process,
                args=(url, tokens[abuser], args.abuse_seconds, args.abusive_requests,
                      args.abuse_concurrency, guess_from, args.abuser_nice, ready, go, out),
            )  # fmt: skip
            proc.start()
        try:
            if proc is not None:
                if not ready.wait(timeout=120):
                    raise SystemExit("the abusive client did not start")
                go.set()
            good, health = asyncio.run(good_phase(url, tokens["bench"], texts, args))
            abuse = out.get(timeout=300) if proc is not None else None
        finally:
            if proc is not None:
                proc.join(timeout=60)
                if proc.is_alive():
                    proc.terminate()
        rows.append(
            {
                "phase": phase,
                "good": good,
                "health": health,
                "abuse": abuse,
                "guess_from": guess_from,
            }
        )
    return rows


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


def print_throughput(rows: list[dict], args) -> None:
    print(
        f"Throughput: concurrency {args.concurrency}, {args.tokens}-token texts, one gumbel key, "
        f"{args.seconds:g} s per scenario"
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


def print_hostile(rows: list[dict], args) -> None:
    print(
        f"\nHostile tenant: good tenant {args.good_rate:g} single-text requests/s "
        f"({args.tokens} tokens), /healthz 50/s, both open loop, {args.abuse_seconds:g} s per "
        "phase; "
        f"abusive tenant up to {args.abusive_requests} bodies, {args.abuse_concurrency} at a "
        f"time (client at nice {args.abuser_nice}), plus a token guesser from its own loopback "
        "address"
    )
    print(
        "| phase | good requests | good errors | good p50 | good p99 | good max | /healthz p50 | "
        "/healthz p99 | /healthz max | abusive bodies | their answers |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        g, h, a = r["good"], r["health"], r["abuse"]
        answers = Counter()
        for k in a["kinds"] if a else ():
            answers.update(k["statuses"])
        print(
            f"| {r['phase']} | {g['requests']} | {g['errors'] + h['errors']} | "
            f"{g['p50_ms']:.1f} ms | {g['p99_ms']:.1f} ms | {g['max_ms']:.0f} ms | "
            f"{h['p50_ms']:.1f} ms | "
            f"{h['p99_ms']:.1f} ms | {h['max_ms']:.1f} ms | {a['sent'] if a else 0} | "
            + (", ".join(f"{s} × {n}" for s, n in sorted(answers.items())) or "-")
            + " |"
        )
    for r in rows:
        a = r["abuse"]
        if a is None:
            continue
        guesses = ", ".join(f"{k}: {v}" for k, v in sorted(a["guesses"].items()))
        print(
            f"\n{r['phase']}: {a['sent']} abusive bodies, time to the answer p50 "
            f"{a['p50_ms']:.0f} ms, p99 {a['p99_ms']:.0f} ms, max {a['max_ms']:.0f} ms; "
            f"token guesses from {r['guess_from']}: {guesses}"
        )
        print("| body | sent | answers | p50 | max |")
        print("|---|---:|---|---:|---:|")
        for k in a["kinds"]:
            answers = ", ".join(f"{s} × {n}" for s, n in sorted(k["statuses"].items()))
            print(
                f"| {k['kind']} | {k['sent']} | {answers} | {k['p50_ms']:.0f} ms | "
                f"{k['max_ms']:.0f} ms |"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0, help="per throughput scenario")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per text")
    parser.add_argument("--batch-sizes", default="1,16", help="texts per request, per scenario")
    parser.add_argument("--scenarios", default="throughput,hostile")
    parser.add_argument("--good-rate", type=float, default=40.0, help="requests/s, open loop")
    parser.add_argument("--abuse-seconds", type=float, default=8.0, help="per hostile phase")
    parser.add_argument("--abusive-requests", type=int, default=3000)
    parser.add_argument("--abuse-concurrency", type=int, default=16)
    parser.add_argument(
        "--abuser-nice",
        type=int,
        default=19,
        help="CPU niceness of the abusive client (0: same priority as the server)",
    )
    args = parser.parse_args()
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    scenarios = set(args.scenarios.split(","))
    unknown = scenarios - {"throughput", "hostile"}
    if unknown:
        parser.error(f"--scenarios: unknown {sorted(unknown)}; choose throughput and/or hostile")
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        in_flight = args.concurrency if "throughput" in scenarios else 4
        config_path, tokens, texts = build_world(Path(tmp), args.tokens, 256, in_flight)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "safeguard", "serve", "--config", str(config_path),
             "--port", str(port), "--log-level", "warning"],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        rows: list[dict] = []
        hostile: list[dict] = []
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                raise SystemExit("the server did not start")
            for size in sizes if "throughput" in scenarios else ():
                batches = [texts[i : i + size] for i in range(0, len(texts) - size + 1, size)]
                asyncio.run(drive(url, tokens["bench"], batches, args.concurrency, 1.0))  # warm-up
                res = asyncio.run(
                    drive(url, tokens["bench"], batches, args.concurrency, args.seconds)
                )
                res["texts_per_s"] = res["rps"] * size
                res["batch"] = size
                rows.append(res)
            if "hostile" in scenarios:
                hostile = hostile_scenario(url, tokens, texts, args)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
        for res in rows:
            size = res["batch"]
            batches = [texts[i : i + size] for i in range(0, len(texts) - size + 1, size)]
            res["in_process_texts_per_s"] = in_process_rate(config_path, batches, 2.0)

    print(
        f"{os.cpu_count()} cores, client and server on one machine, load average "
        f"{load_before:.1f} before / {os.getloadavg()[0]:.1f} after"
    )
    if rows:
        print_throughput(rows, args)
    if hostile:
        print_hostile(hostile, args)
    failed = sum(r["errors"] for r in rows)
    failed += sum(r["good"]["errors"] + r["health"]["errors"] for r in hostile)
    wrong = [
        f"{k['kind']}: {status}"
        for r in hostile
        if r["abuse"]
        for k in r["abuse"]["kinds"]
        for status in k["statuses"]
        if status.isdigit() and not 400 <= int(status) < 500
    ]
    if failed or wrong:
        print(f"FAILED: {failed} well-behaved requests failed; abusive bodies answered {wrong}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
