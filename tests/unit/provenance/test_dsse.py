from __future__ import annotations

import base64
import doctest
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safeguard.errors import SignatureError, UsageError, VerificationError
from safeguard.provenance import dsse as dsse_mod
from safeguard.provenance.dsse import (
    INTOTO_PAYLOAD_TYPE,
    Envelope,
    EnvelopeFormatError,
    EnvelopeSignature,
    pae,
)

PAYLOAD = json.dumps({"_type": "https://in-toto.io/Statement/v1", "x": 1}).encode()


def test_doctests() -> None:
    result = doctest.testmod(dsse_mod)
    assert result.attempted > 0 and result.failed == 0


def test_pae_matches_the_dsse_spec_example() -> None:
    # The example from the DSSE protocol document.
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    # lengths are byte lengths, not character lengths
    assert pae("t", "é".encode()) == b"DSSEv1 1 t 2 \xc3\xa9"


def test_sign_and_verify(key) -> None:
    env = Envelope(payload=PAYLOAD).signed(key)
    assert env.payload_type == INTOTO_PAYLOAD_TYPE
    assert env.verify([key.public_key]) == [key.key_id]
    again = Envelope.from_json(env.to_json())
    assert again == env
    assert again.verify([key.public_key]) == [key.key_id]


def test_wrong_key_fails(key, other_key) -> None:
    env = Envelope(payload=PAYLOAD).signed(key)
    with pytest.raises(SignatureError, match="wrong public key"):
        env.verify([other_key.public_key])


def test_unsigned_and_no_keys_fail(key) -> None:
    with pytest.raises(SignatureError, match="no signature"):
        Envelope(payload=PAYLOAD).verify([key.public_key])
    with pytest.raises(SignatureError, match="no trusted public key"):
        Envelope(payload=PAYLOAD).signed(key).verify([])


def test_several_signatures_and_threshold(key, other_key) -> None:
    env = Envelope(payload=PAYLOAD).signed(key).signed(other_key)
    assert len(env.signatures) == 2
    assert sorted(env.verify([key.public_key, other_key.public_key], threshold=2)) == sorted(
        [key.key_id, other_key.key_id]
    )
    assert env.verify([other_key.public_key]) == [other_key.key_id]
    with pytest.raises(SignatureError, match="1 of the required 2"):
        Envelope(payload=PAYLOAD).signed(key).verify(
            [key.public_key, other_key.public_key], threshold=2
        )
    # the same key listed twice counts once
    with pytest.raises(SignatureError):
        Envelope(payload=PAYLOAD).signed(key).verify([key.public_key, key.public_key], threshold=2)
    # re-signing with the same key replaces, not duplicates
    assert len(env.signed(key).signatures) == 2


def test_keyid_is_only_a_hint(key, other_key) -> None:
    env = Envelope(payload=PAYLOAD).signed(key)
    relabelled = Envelope(
        payload=env.payload,
        signatures=(EnvelopeSignature(keyid=other_key.key_id, sig=env.signatures[0].sig),),
    )
    assert relabelled.verify([key.public_key]) == [key.key_id]
    with pytest.raises(SignatureError):
        relabelled.verify([other_key.public_key])


def test_payload_type_is_authenticated(key) -> None:
    env = Envelope(payload=PAYLOAD).signed(key)
    swapped = Envelope(
        payload=env.payload, payload_type="application/json", signatures=env.signatures
    )
    with pytest.raises(SignatureError):
        swapped.verify([key.public_key])


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), target=st.sampled_from(["payload", "sig", "payloadType"]))
def test_any_single_byte_change_fails_verification(key, data, target) -> None:
    env = Envelope(payload=PAYLOAD).signed(key)
    doc = env.to_dict()
    if target == "payload":
        raw = bytearray(env.payload)
    elif target == "sig":
        raw = bytearray(env.signatures[0].sig)
    else:
        raw = bytearray(env.payload_type.encode())
    pos = data.draw(st.integers(0, len(raw) - 1), label="position")
    delta = data.draw(st.integers(1, 255), label="xor")
    raw[pos] ^= delta
    if target == "payload":
        doc["payload"] = base64.b64encode(bytes(raw)).decode()
    elif target == "sig":
        doc["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    else:
        try:
            doc["payloadType"] = bytes(raw).decode()
        except UnicodeDecodeError:
            return  # not representable in JSON text; cannot reach a verifier
    tampered = Envelope.from_dict(json.loads(json.dumps(doc)))
    with pytest.raises(SignatureError):
        tampered.verify([key.public_key])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"payloadType": "x"}', "missing payload"),
        ('{"payload": "!!!", "payloadType": "x", "signatures": []}', "base64"),
        ('{"payload": "", "payloadType": 3, "signatures": []}', "payloadType must be a string"),
        ('{"payload": "", "payloadType": "x", "signatures": {}}', "signatures must be a list"),
        ('{"payload": "", "payloadType": "x", "signatures": [{"keyid": "a"}]}', "'sig'"),
    ],
)
def test_malformed_envelopes_are_usage_errors(text, match) -> None:
    with pytest.raises(EnvelopeFormatError, match=match) as info:
        Envelope.from_json(text)
    assert isinstance(info.value, UsageError)
    assert not isinstance(info.value, VerificationError)


def test_threshold_must_be_positive(key) -> None:
    with pytest.raises(UsageError, match="threshold"):
        Envelope(payload=PAYLOAD).signed(key).verify([key.public_key], threshold=0)
