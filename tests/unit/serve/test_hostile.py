"""A hostile tenant: cheap refusals before parsing, parsing off the event loop, auth throttling.

The timing side (``/healthz`` and other tenants while abusive bodies are in flight) is tested
against a real server in ``tests/integration/serve/test_hostile_server.py``.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

import safeguard.serve.app as app_module
from safeguard.serve import ServerConfig, create_app, load_config
from safeguard.serve.app import ApiError, _check_value_count, _most_values
from safeguard.serve.config import Limits
from safeguard.serve.models import DetectRequest
from safeguard.serve.ratelimit import FailureThrottle

ABUSIVE = {
    "500k integers": json.dumps({"texts": [1] * 500_000}).encode(),
    "600k short texts": json.dumps({"texts": ["a"] * 600_000}).encode(),
    "200k members": json.dumps({"texts": ["a"], **{f"k{i}": 0 for i in range(200_000)}}).encode(),
    "500k null prompts": json.dumps({"texts": ["a"], "prompts": [None] * 500_000}).encode(),
    "escaped quotes": json.dumps({"texts": ['"'] * 300_000}).encode(),
}


@pytest.fixture(scope="module")
def client(world):
    app = create_app(load_config(world.write_config("hostile.yaml")))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def post(client, world, body: bytes, tenant: str = "alpha"):
    return client.post(
        "/v1/detect",
        content=body,
        headers={**world.headers(tenant), "Content-Type": "application/json"},
    )


@pytest.mark.parametrize("kind", sorted(ABUSIVE))
def test_abusive_bodies_are_refused_before_the_schema_sees_them(client, world, monkeypatch, kind):
    validated = []
    original = DetectRequest.model_validate

    def spy(payload, *args, **kwargs):
        validated.append(1)
        return original(payload, *args, **kwargs)

    monkeypatch.setattr(DetectRequest, "model_validate", spy)
    r = post(client, world, ABUSIVE[kind])
    assert r.status_code == 413, r.text
    assert "more than 532 JSON values" in r.json()["error"]["message"]
    assert validated == []  # pydantic never iterated over the items


def test_too_many_texts_are_refused_before_the_schema_with_the_old_message(
    client, world, monkeypatch
):
    monkeypatch.setattr(DetectRequest, "model_validate", lambda *a, **k: pytest.fail("schema ran"))
    r = post(client, world, json.dumps({"texts": ["w1"] * 257}).encode())
    assert r.status_code == 413
    assert "`texts` has 257 entries; the limit is 256" in r.text
    r = post(client, world, json.dumps({"texts": ["w1"], "prompts": [None] * 3}).encode())
    assert r.status_code == 422 and "`prompts` has 3 entries for 1 texts" in r.text


def test_parsing_and_validation_run_off_the_event_loop(client, world, monkeypatch):
    on_loop: list[bool] = []

    def running_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    for name in ("_check_value_count", "_parse_json", "_check_limits"):
        original = getattr(app_module, name)

        def wrapper(*args, _original=original, **kwargs):
            on_loop.append(running_loop())
            return _original(*args, **kwargs)

        monkeypatch.setattr(app_module, name, wrapper)
    r = post(client, world, json.dumps({"texts": ["w1 w2 w3 w4"]}).encode())
    assert r.status_code == 200, r.text
    assert on_loop == [False, False, False]


# A request within the limits, however its strings are written, is never refused by the scan.
# Lone surrogates are left out: a JSON body holding one raw cannot be encoded as UTF-8, so
# no client can send it.
texts = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40) | st.sampled_from(
    ['"', "\\", '\\"', ",", '","', "\\\\", '\\",\\"', "\u2028", "😀"]
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.fixed_dictionaries(
        {"texts": st.lists(texts, min_size=1, max_size=6)},
        optional={
            "prompts": st.lists(st.none() | texts, max_size=6),
            "key_ids": st.lists(st.just("wm-0123456789abcdef"), min_size=1, max_size=2),
            "false_positive_rate": st.floats(1e-9, 0.5),
        },
    ),
    ascii_only=st.booleans(),
    indent=st.sampled_from([None, 0, 2]),
)
def test_the_value_scan_never_refuses_a_request_within_the_limits(body, ascii_only, indent):
    lim = Limits(max_texts=6, max_keys=2)
    raw = json.dumps(body, ensure_ascii=ascii_only, indent=indent).encode()
    _check_value_count(raw, lim)  # no ApiError


def test_the_value_scan_bound_is_tight_enough_to_matter():
    lim = Limits(max_texts=6, max_keys=2)
    assert _most_values(lim) == 2 * 6 + 2 + 4
    _check_value_count(json.dumps({"texts": ["a"] * 17}).encode(), lim)  # 16 commas: let through
    with pytest.raises(ApiError) as info:
        _check_value_count(json.dumps({"texts": [1] * 19}).encode(), lim)
    assert info.value.status == 413


def throttled_app(world, now):
    cfg = world.config_dict(auth_throttle={"max_failures": 3, "window_seconds": 30})
    return create_app(ServerConfig.model_validate(cfg), clock=lambda: now[0])


def test_failed_authentication_is_throttled_per_client_address(world):
    now = [100.0]
    app = throttled_app(world, now)
    bad = {"Authorization": "Bearer sgt_guess"}
    with (
        TestClient(app, raise_server_exceptions=False, client=("10.0.0.1", 5000)) as guesser,
        TestClient(app, raise_server_exceptions=False, client=("10.0.0.2", 5000)) as other,
    ):
        codes = [guesser.get("/v1/keys", headers=bad).status_code for _ in range(3)]
        assert codes == [401, 401, 401]
        r = guesser.post("/v1/detect", json={"texts": ["w1"]}, headers=bad)
        assert r.status_code == 429
        assert r.headers["retry-after"] == "10"  # one failure back every 30 s / 3
        err = r.json()["error"]
        assert err["code"] == "rate_limited" and "failed authentications" in err["message"]
        assert "sgt_guess" not in r.text
        # refused before the token is looked at: a valid token waits too
        assert guesser.get("/v1/keys", headers=world.headers()).status_code == 429
        # another address is not affected, and neither is /healthz
        assert other.get("/v1/keys", headers=world.headers()).status_code == 200
        assert other.get("/v1/keys", headers=bad).status_code == 401
        assert guesser.get("/healthz").status_code == 200
        now[0] += 10.0  # one failure's worth of allowance back
        assert guesser.get("/v1/keys", headers=world.headers()).status_code == 200
        assert guesser.get("/v1/keys", headers=bad).status_code == 401
        assert guesser.get("/v1/keys", headers=bad).status_code == 429


def test_failure_throttle_forgets_refilled_addresses_and_bounds_memory():
    now = [0.0]
    throttle = FailureThrottle(2, 10.0, max_addresses=3, clock=lambda: now[0])
    for i in range(5):
        throttle.record_failure(f"10.0.0.{i}")
    assert len(throttle) == 3  # the two least recently failed were dropped
    throttle.record_failure("10.0.0.4")
    assert throttle.retry_after("10.0.0.4") == pytest.approx(5.0)
    assert throttle.retry_after("10.0.0.0") == 0.0  # dropped: starts afresh
    now[0] = 10.0
    assert throttle.retry_after("10.0.0.4") == 0.0
    assert len(throttle) == 2  # refilled, so forgotten
    with pytest.raises(ValueError, match="max_failures"):
        FailureThrottle(0, 10.0)


def asgi_post(app, headers: dict[str, str]) -> tuple[int, int]:
    """POST /v1/detect straight through ASGI; returns the status and how often the body was read."""
    reads: list[int] = []
    statuses: list[int] = []

    async def receive():
        reads.append(1)
        return {"type": "http.request", "body": b'{"texts": ["w1 w2"]}', "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/detect",
        "raw_path": b"/v1/detect",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("10.0.0.9", 5000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    return statuses[0], len(reads)


def test_the_body_is_not_read_before_the_token_and_the_declared_size_are_checked(world):
    app = create_app(load_config(world.write_config("hostile-asgi.yaml")))
    json_ct = {"Content-Type": "application/json", "Content-Length": "20"}
    assert asgi_post(app, json_ct) == (401, 0)
    assert asgi_post(app, {**json_ct, "Authorization": "Bearer wrong"}) == (401, 0)
    huge = {**json_ct, **world.headers(), "Content-Length": str(64 << 20)}
    assert asgi_post(app, huge) == (413, 0)
    assert asgi_post(app, {**json_ct, **world.headers()})[0] == 200  # the same path reads it


def test_ratelimit_doctests():
    import doctest

    import safeguard.serve.ratelimit as ratelimit

    result = doctest.testmod(ratelimit)
    assert result.attempted >= 8 and result.failed == 0
