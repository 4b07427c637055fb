"""A real uvicorn server on 127.0.0.1 (a free port), in a thread and as `safeguard serve`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn

from safeguard.serve import create_app, load_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(world):
    app = create_app(load_config(world.write_config()))
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{config.port}"
    srv.should_exit = True
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_detect_over_http(server, world):
    texts = [world.watermarked_text(world.keys["a1"], 100, seed=11), world.plain_text(100, seed=12)]
    with httpx.Client(base_url=server, headers=world.headers(), timeout=10) as c:
        assert c.get("/healthz").json()["status"] == "ok"
        r = c.post("/v1/detect", json={"texts": texts})
        assert r.status_code == 200, r.text
        assert [x["is_watermarked"] for x in r.json()["results"]] == [True, False]
        assert r.headers["x-request-id"] == r.json()["request_id"]


def test_concurrent_requests_all_succeed(server, world):
    text = world.watermarked_text(world.keys["a2"], 80, seed=13)

    def call(i: int) -> tuple[int, bool]:
        r = c.post("/v1/detect", json={"texts": [text] * (1 + i % 4)})
        return r.status_code, all(x["is_watermarked"] for x in r.json()["results"])

    # As many concurrent clients as the tenant's default `max_in_flight` (4): the slot is
    # released before the response is sent, so none of them is ever refused with 429.
    with (
        httpx.Client(base_url=server, headers=world.headers(), timeout=30) as c,
        ThreadPoolExecutor(4) as pool,
    ):
        outcomes = list(pool.map(call, range(32)))
    assert outcomes == [(200, True)] * 32


def test_huge_and_chunked_bodies_are_refused_over_http(server, world):
    with httpx.Client(base_url=server, headers=world.headers(), timeout=30) as c:
        big = b'{"texts": ["' + b"w1 " * (2 << 20) + b'"]}'  # 6 MiB > the 4 MiB default
        r = c.post("/v1/detect", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413

        def chunks():  # no Content-Length: the limit is enforced while reading
            yield b'{"texts": ["'
            for _ in range(80):
                yield b"w2 " * 20_000
            yield b'"]}'

        r = c.post("/v1/detect", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        assert c.get("/healthz").status_code == 200  # still serving


def test_safeguard_serve_command_starts_and_stops(world):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "safeguard", "serve", "--config", str(world.write_config()),
         "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        up = False
        for _ in range(300):
            try:
                up = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                time.sleep(0.1)
            if up or proc.poll() is not None:
                break
        assert up, proc.stderr.read() if proc.poll() is not None else "server did not come up"
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/detect",
            json={"texts": ["w1 w2 w3 w4 w5 w6 w7 w8"]},
            headers={**world.headers(), "X-Request-ID": "cli-test-1"},
            timeout=10,
        )
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "request_id=cli-test-1" in err and "texts=1" in err
    assert "w1 w2" not in err and world.tokens["alpha"] not in err
