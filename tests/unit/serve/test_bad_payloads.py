"""Bad payloads get 4xx with the error shape, never 500: a hand-written list and hypothesis."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safeguard.serve import create_app, load_config

MALFORMED: list[tuple[bytes, int]] = [
    (b"", 400),
    (b"   ", 400),
    (b"{", 400),
    (b"not json", 400),
    (b"\xff\xfe\xfa\x00", 400),
    (b"[" * 50_000 + b"]" * 50_000, 400),
    (b'{"texts": ["a"], "false_positive_rate": 1' + b"0" * 5000 + b"}", 400),
    (b'{"texts": ["a"], "false_positive_rate": NaN}', 400),
    (b'{"texts": ["a"], "false_positive_rate": Infinity}', 400),
    (b"[]", 422),
    (b"null", 422),
    (b"1", 422),
    (b'"texts"', 422),
    (b"{}", 422),
    (b'{"texts": "w1 w2"}', 422),
    (b'{"texts": [1, 2]}', 422),
    (b'{"texts": []}', 422),
    (b'{"texts": [null]}', 422),
    (b'{"texts": [["w1"]]}', 422),
    (b'{"texts": ["w1"], "extra": 1}', 422),
    (b'{"texts": ["w1"], "false_positive_rate": "0.1"}', 422),
    (b'{"texts": ["w1"], "false_positive_rate": 1e999}', 422),
    (b'{"texts": ["w1"], "false_positive_rate": 0}', 422),
    (b'{"texts": ["w1"], "false_positive_rate": 1}', 422),
    (b'{"texts": ["w1"], "false_positive_rate": -1e-3}', 422),
    (b'{"texts": ["w1"], "false_positive_rate": true}', 422),
    (b'{"texts": ["w1"], "key_ids": "wm-0000000000000000"}', 422),
    (b'{"texts": ["w1"], "key_ids": ["../../etc/passwd"]}', 422),
    (b'{"texts": ["w1"], "key_ids": []}', 422),
    (b'{"texts": ["w1"], "key_ids": [null]}', 422),
    (b'{"texts": ["w1"], "prompts": [1]}', 422),
    (b'{"texts": ["w1"], "prompts": "w2"}', 422),
    (b'{"texts": ["\\ud800 w1"]}', 422),
    (b'{"texts": ["w1"], "prompts": ["\\udfff"]}', 422),
    (b'{"texts": ["w1"], "key_ids": ["wm-0000000000000000"]}', 404),
]


@pytest.fixture(scope="module")
def client(world):
    app = create_app(load_config(world.write_config()))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def post(client, world, body: bytes, content_type: str = "application/json"):
    return client.post(
        "/v1/detect", content=body, headers={**world.headers(), "Content-Type": content_type}
    )


@pytest.mark.parametrize(
    ("body", "status"), MALFORMED, ids=[b[:24].decode("latin-1") for b, _ in MALFORMED]
)
def test_malformed_bodies(client, world, body, status):
    r = post(client, world, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["status"] == status and err["message"]
    assert "w1" not in err["message"]  # the caller's text is never echoed back


@pytest.mark.parametrize(
    "ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_other_content_types_are_415(client, world, ctype):
    r = post(client, world, b'{"texts": ["w1"]}', ctype)
    assert r.status_code == 415


def test_strange_but_valid_texts_are_tested(client, world):
    texts = ["w1", "\u0000 w1 w2", "ünïcödé w3", "😀 " * 50, "w1 " * 200, "[UNK]"]
    r = post(client, world, json.dumps({"texts": texts}).encode())
    assert r.status_code == 200, r.text
    assert [x["index"] for x in r.json()["results"]] == list(range(len(texts)))


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "texts": json_values | st.lists(st.text(max_size=30), max_size=5),
        "prompts": json_values,
        "key_ids": json_values
        | st.lists(st.sampled_from(["wm-0000000000000000", "x"]), max_size=3),
        "false_positive_rate": json_values,
    },
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=json_values | fields)
def test_fuzzed_json_bodies_never_500(client, world, body):
    r = post(client, world, json.dumps(body).encode())
    assert r.status_code < 500, r.text
    assert r.status_code in (200, 400, 404, 413, 422)
    if r.status_code != 200:
        assert r.json()["error"]["status"] == r.status_code


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=200))
def test_fuzzed_bytes_never_500(client, world, body):
    r = post(client, world, body)
    assert 400 <= r.status_code < 500 or r.status_code == 200, r.text
