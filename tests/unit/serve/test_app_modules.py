"""The modules ``create_app`` is assembled from, each on its own (no HTTP client needed).

``app.py`` wires :mod:`~safeguard.serve.api_errors`, :mod:`~safeguard.serve.middleware`,
:mod:`~safeguard.serve.auth`, :mod:`~safeguard.serve.quota`, :mod:`~safeguard.serve.payload`
and :mod:`~safeguard.serve.results`; the end-to-end behaviour is pinned by the other tests of
this folder, these pin each seam.
"""

from __future__ import annotations

import asyncio
import doctest
import json

import pytest
from starlette.requests import Request

import safeguard.serve.app as app_module
from safeguard.serve import ServerConfig, hash_token, payload, results
from safeguard.serve.api_errors import ApiError, error_body
from safeguard.serve.auth import Authenticator
from safeguard.serve.config import Limits
from safeguard.serve.engine import TextOutcome
from safeguard.serve.middleware import RequestContext
from safeguard.serve.quota import TenantQuota


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _config(tmp_path, **tenant) -> ServerConfig:
    return ServerConfig(
        key_store=tmp_path,
        policy=None,
        tenants=[
            {
                "name": "t",
                "token_sha256": hash_token("sgt_good"),
                "keys": ["wm-0123456789abcdef"],
                "rate_limit": {"requests_per_second": 1, "burst": 2},
                **tenant,
            }
        ],
        auth_throttle={"max_failures": 2, "window_seconds": 60},
    )


def _request(host: str = "10.0.0.1") -> Request:
    return Request({"type": "http", "headers": [], "client": (host, 1234), "state": {"log": {}}})


def test_quota_rate_limit_in_flight_and_daily_budget(tmp_path):
    clock = Clock()
    quota = TenantQuota(_config(tmp_path, max_in_flight=1, texts_per_key_per_day=3).tenants, clock)
    quota.take_request("t")
    quota.take_request("t")
    with pytest.raises(ApiError) as exc:
        quota.take_request("t")
    assert exc.value.status == 429 and exc.value.headers == {"Retry-After": "1"}
    assert "rate limit of 1 requests/s (burst 2)" in exc.value.message
    clock.t += 1.0
    quota.take_request("t")

    with quota.in_flight("t"):
        with pytest.raises(ApiError, match="1 detection requests in flight"):
            with quota.in_flight("t"):
                pass
    with pytest.raises(RuntimeError), quota.in_flight("t"):
        raise RuntimeError  # the slot is released whatever happens inside
    with quota.in_flight("t"):
        pass

    quota.charge("t", ["wm-0123456789abcdef"], 3)
    with pytest.raises(ApiError, match="budget of 3 texts per key") as exc:
        quota.charge("t", ["wm-0123456789abcdef"], 1)
    assert exc.value.status == 429 and int(exc.value.headers["Retry-After"]) >= 1
    with pytest.raises(ApiError) as exc:
        quota.charge("t", ["wm-0123456789abcdef"], 4)  # never fits: a day
    assert exc.value.headers == {"Retry-After": "86400"}


def test_authenticator_finds_the_tenant_and_throttles_failing_addresses(tmp_path):
    auth = Authenticator(_config(tmp_path), Clock())
    request = _request()
    assert auth.tenant(request, "sgt_good") == "t" and request.state.log["tenant"] == "t"
    for token in (None, "sgt_wrong"):
        with pytest.raises(ApiError) as exc:
            auth.tenant(_request(), token)
        assert exc.value.status == 401 and exc.value.headers == {"WWW-Authenticate": "Bearer"}
    with pytest.raises(ApiError) as exc:
        auth.tenant(_request(), "sgt_good")  # a right token is not even looked at now
    assert exc.value.status == 429 and "too many failed authentications" in exc.value.message
    assert auth.tenant(_request("10.0.0.2"), "sgt_good") == "t"  # per address


def test_error_body_is_the_documented_shape():
    assert error_body("r1", 413, "too big") == {
        "request_id": "r1",
        "error": {"status": 413, "code": "too_large", "message": "too big"},
    }
    details = [{"loc": "texts.0", "msg": "bad"}]
    assert error_body("r1", 499, "odd", details)["error"] == {
        "status": 499,
        "code": "error",
        "message": "odd",
        "details": details,
    }


def test_middleware_answers_an_exception_with_a_json_500_in_that_shape():
    async def failing_app(scope, receive, send):
        raise RuntimeError("never shown")

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [(b"x-request-id", b"r9")]}
    asyncio.run(RequestContext(failing_app)(scope, None, send))
    assert sent[0]["status"] == 500 and (b"x-request-id", b"r9") in sent[0]["headers"]
    assert json.loads(sent[1]["body"]) == error_body(
        "r9", 500, "internal error; see the server log"
    )


def test_payload_checks_refuse_with_their_statuses():
    lim = Limits(max_texts=2, max_keys=1)
    with pytest.raises(ApiError) as exc:
        payload.check_value_count(json.dumps({"texts": ["a"] * 20}).encode(), lim)
    assert exc.value.status == 413
    with pytest.raises(ApiError) as exc:
        payload.parse_json(b'{"texts": [NaN]}')
    assert exc.value.status == 400
    with pytest.raises(ApiError) as exc:
        payload.check_counts({"texts": ["a"], "prompts": [None, None]}, lim)
    assert exc.value.status == 422
    assert payload.parse_json(b'{"texts": ["a"]}') == {"texts": ["a"]}


def test_app_resolves_the_replaceable_steps_in_its_own_namespace():
    # The tests of this folder replace these on safeguard.serve.app; they must be the
    # payload module's functions until replaced.
    assert app_module._check_value_count is payload.check_value_count
    assert app_module._parse_json is payload.parse_json
    assert app_module._check_limits is payload.check_limits
    assert app_module._most_values is payload.most_values
    assert app_module.coarse_p_value is results.coarse_p_value


def test_results_module_doctests_and_error_entries():
    assert doctest.testmod(results).failed == 0
    out = results.result_dicts(["", "w1"], [TextOutcome(None, "x"), TextOutcome(None, "why")], True)
    assert out == [
        {
            "index": 0,
            "is_watermarked": None,
            "error": "the text is empty; there is nothing to test",
        },
        {"index": 1, "is_watermarked": None, "error": "why"},
    ]


def test_default_false_positive_rate_order(tmp_path):
    assert _config(tmp_path).default_false_positive_rate() == 1e-3
    cfg = _config(tmp_path).model_copy(update={"false_positive_rate": 1e-5})
    assert cfg.default_false_positive_rate() == 1e-5
    with_policy = _config(tmp_path).model_copy(update={"policy": "moderation"})
    assert 0 < with_policy.default_false_positive_rate() < 1
