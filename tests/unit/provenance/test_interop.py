"""Our envelopes verified by an independent DSSE implementation (securesystemslib), and back."""

from __future__ import annotations

import base64
import json

import pytest
from securesystemslib.dsse import Envelope as SslEnvelope
from securesystemslib.exceptions import VerificationError as SslVerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

from safeguard.provenance import Envelope, Statement, Subject, sign
from safeguard.provenance.keys import PublicKey


def _statement() -> Statement:
    return Statement(
        subjects=(Subject(name="model", digest={"sha256": "ab" * 32}),),
        predicate_type="https://example.com/test/v1",
        predicate={"hello": "world"},
    )


def _ssl_key(public: PublicKey) -> SSlibKey:
    return SSlibKey.from_crypto(public._key, keyid=public.key_id)


def test_securesystemslib_verifies_our_envelope(key, other_key) -> None:
    env = sign(sign(_statement(), key), other_key)
    doc = json.loads(env.to_json())
    # the PAE recomputed here from the DSSE spec, independently of both libraries
    payload = base64.b64decode(doc["payload"])
    ptype = doc["payloadType"].encode()
    expected_pae = (
        b"DSSEv1 "
        + str(len(ptype)).encode()
        + b" "
        + ptype
        + b" "
        + str(len(payload)).encode()
        + b" "
        + payload
    )
    assert env.pae() == expected_pae
    for s in doc["signatures"]:
        assert (key.public_key if s["keyid"] == key.key_id else other_key.public_key).verify(
            base64.b64decode(s["sig"]), expected_pae
        )
    ssl_env = SslEnvelope.from_dict(json.loads(env.to_json()))
    assert ssl_env.pae() == expected_pae
    accepted = ssl_env.verify([_ssl_key(key.public_key), _ssl_key(other_key.public_key)], 2)
    assert set(accepted) == {key.key_id, other_key.key_id}
    # and the payload is an in-toto Statement v1
    body = json.loads(ssl_env.payload)
    assert body["_type"] == "https://in-toto.io/Statement/v1"
    assert body["subject"][0]["digest"]["sha256"] == "ab" * 32


def test_securesystemslib_rejects_a_tampered_envelope(key) -> None:
    doc = json.loads(sign(_statement(), key).to_json())
    payload = bytearray(base64.b64decode(doc["payload"]))
    payload[10] ^= 1
    doc["payload"] = base64.b64encode(bytes(payload)).decode()
    with pytest.raises(SslVerificationError):
        SslEnvelope.from_dict(doc).verify([_ssl_key(key.public_key)], 1)


def test_we_verify_an_envelope_signed_by_securesystemslib(key) -> None:
    signer = CryptoSigner(key._key)
    ssl_env = SslEnvelope(
        payload=_statement().to_bytes(), payload_type="application/vnd.in-toto+json", signatures={}
    )
    ssl_env.sign(signer)
    ours = Envelope.from_dict(ssl_env.to_dict())
    assert ours.verify([key.public_key]) == [key.key_id]
