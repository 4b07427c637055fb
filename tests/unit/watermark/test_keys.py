"""Keys: generation, file mode, round trips, corruption, tokenizer binding, and the secret never leaking."""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest

from safeguard.errors import ConfigError, KeyFileError, SafeguardError, TokenizerMismatchError
from safeguard.watermark import Watermarker, WatermarkKey, list_schemes, tokenizer_fingerprint


def _secret_forms(key: WatermarkKey) -> list[str]:
    import base64

    s = key._secret
    return [s.hex(), base64.b64encode(s).decode(), repr(s)[2:-1]]


def test_generate_is_random_and_ids_are_fingerprints():
    a, b = WatermarkKey.generate("gumbel"), WatermarkKey.generate("gumbel")
    assert a.key_id != b.key_id and a.key_id.startswith("wm-") and len(a.key_id) == 19
    assert len(a._secret) == 32


@pytest.mark.parametrize("scheme", ["gumbel", "exp", "exp-edit"])
def test_save_load_round_trip_with_mode_0600(tmp_path, scheme):
    key = WatermarkKey.generate(scheme)
    path = key.save(tmp_path / "k.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = WatermarkKey.load(path)
    assert loaded == key and loaded._secret == key._secret
    with pytest.raises(KeyFileError, match="exists"):
        key.save(path)


def test_params_are_validated_and_normalised():
    key = WatermarkKey.generate("gumbel", context_width=2)
    assert key.params == {
        "context_width": 2,
        "skip_repeated_context": True,
        "context_memory": 1 << 20,
    }
    with pytest.raises(ConfigError, match="context_width"):
        WatermarkKey.generate("gumbel", context_width=0)
    for bad in (-1, True, 1.5, (1 << 28) + 1):
        with pytest.raises(ConfigError, match="context_memory"):
            WatermarkKey.generate("gumbel", context_memory=bad)
    with pytest.raises(ConfigError, match="unknown parameter"):
        WatermarkKey.generate("gumbel", widht=3)
    with pytest.raises(ConfigError, match="known schemes: exp, exp-edit, gumbel"):
        WatermarkKey.generate("kgw")
    assert set(list_schemes()) >= {"gumbel", "exp", "exp-edit"}


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "other"}', "not a safeguard watermark key"),
        ('{"format": "safeguard.watermark-key/v1", "scheme": "gumbel"}', "lacks"),
    ],
)
def test_corrupt_key_files(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(KeyFileError, match=match):
        WatermarkKey.load(path)


def test_edited_secret_is_detected(tmp_path):
    key = WatermarkKey.generate("gumbel")
    path = key.save(tmp_path / "k.json")
    data = json.loads(path.read_text())
    other = WatermarkKey.generate("gumbel")
    data["secret"] = json.loads(other.save(tmp_path / "o.json").read_text())["secret"]
    path.write_text(json.dumps(data))
    with pytest.raises(KeyFileError, match="does not match the secret") as info:
        WatermarkKey.load(path)
    for form in _secret_forms(key) + _secret_forms(other):
        assert form not in str(info.value)


def test_missing_key_file_says_how_to_make_one(tmp_path):
    with pytest.raises(KeyFileError, match="safeguard keygen"):
        WatermarkKey.load(tmp_path / "nope.json")


def test_errors_are_catchable_as_builtins(tmp_path):
    with pytest.raises(ValueError):
        WatermarkKey.load(tmp_path / "nope.json")
    with pytest.raises(SafeguardError):
        WatermarkKey.load(tmp_path / "nope.json")


def test_secret_never_in_repr_str_public_dict_or_logs(caplog):
    key = WatermarkKey.generate("exp-edit")
    wm = Watermarker(key)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("safeguard").debug("key %s %r %s", key, key, wm)
        texts = [repr(key), str(key), repr(wm), json.dumps(key.public_dict()), caplog.text]
    for text in texts:
        for form in _secret_forms(key):
            assert form not in text
    assert "secret" not in key.public_dict()


def test_tokenizer_binding():
    vocab_a = {"a": 0, "b": 1, "c": 2}
    vocab_b = {"a": 0, "b": 2, "c": 1}
    key = WatermarkKey.generate("gumbel").bind(vocab_a)
    assert (
        key.tokenizer_fingerprint
        == tokenizer_fingerprint(vocab_a)
        != tokenizer_fingerprint(vocab_b)
    )
    key.check_tokenizer(vocab_a)
    with pytest.raises(TokenizerMismatchError, match="bound to tokenizer"):
        key.check_tokenizer(vocab_b)
    WatermarkKey.generate("gumbel").check_tokenizer(vocab_b)  # unbound keys accept any tokenizer


def test_key_from_policy():
    from safeguard.errors import PolicyError
    from safeguard.policy import load_policy

    key = WatermarkKey.from_policy("healthcare-hipaa")
    section = load_policy("healthcare-hipaa").watermark
    assert key.scheme == section.scheme
    assert all(key.params[k] == v for k, v in section.params.items())
    no_watermark = load_policy("default").model_copy(update={"watermark": None})
    with pytest.raises(PolicyError, match="no `watermark:` section"):
        WatermarkKey.from_policy(no_watermark)


# -- PRF versions -------------------------------------------------------------------------------

V1_KEY_FILE = os.path.join(
    os.path.dirname(__file__), "..", "..", "data", "watermark", "key_v1_gumbel.json"
)
#: A text and its score under that key, computed with the version-1 code as it was before version 2.
V1_TEXT = [(37 * i * i + 11 * i + 5) % 50257 for i in range(64)]
V1_SCORE = 73.69663591538227


def test_new_keys_use_prf_version_2_and_files_record_it(tmp_path):
    from safeguard.watermark.prf import AESKey

    key = WatermarkKey.generate("gumbel")
    assert key.prf_version == 2 and isinstance(key.prf_key("token"), AESKey)
    data = json.loads(key.save(tmp_path / "k.json").read_text())
    assert data["prf_version"] == 2
    assert WatermarkKey.from_secret(b"\x01" * 32).prf_version == 2


def test_existing_version_1_key_file_still_loads_and_detects_as_before(tmp_path):
    from safeguard.watermark.keys import LegacyPRFWarning
    from safeguard.watermark.prf import PhiloxKey

    with pytest.warns(LegacyPRFWarning, match="PRF version 1.*generate a new key"):
        key = WatermarkKey.load(V1_KEY_FILE)
    assert key.prf_version == 1 and key.key_id == "wm-b0e5395edab5aa0c"
    assert isinstance(key.prf_key("context"), PhiloxKey)
    result = Watermarker(key).detect(V1_TEXT)
    assert result.num_scored == 60 and result.score == pytest.approx(V1_SCORE, rel=1e-12)
    # saved again, it stays a version 1 key with the same id
    with pytest.warns(LegacyPRFWarning):
        again = WatermarkKey.load(key.save(tmp_path / "k.json"))
    assert again == key and json.loads((tmp_path / "k.json").read_text())["prf_version"] == 1


def test_same_secret_under_two_versions_is_two_watermarks():
    from safeguard.watermark.keys import LegacyPRFWarning

    secret = bytes(range(32))
    with pytest.warns(LegacyPRFWarning):
        old = WatermarkKey.from_secret(secret, prf_version=1)
    new = WatermarkKey.from_secret(secret)
    assert old.key_id == "wm-b0e5395edab5aa0c" and new.key_id != old.key_id
    assert Watermarker(new).detect(V1_TEXT).score != pytest.approx(V1_SCORE)


@pytest.mark.parametrize(
    ("version", "match"),
    [
        (3, "uses PRF version 3; this safeguard implements versions 1, 2; upgrade safeguard"),
        (0, "prf_version 0; valid versions are 1, 2; the key file is corrupt"),
        ("2", "prf_version '2'; valid versions are 1, 2; the key file is corrupt"),
        (True, "prf_version True"),
        (None, "prf_version None"),
    ],
)
def test_unknown_prf_version_is_refused_clearly(tmp_path, version, match):
    path = WatermarkKey.generate("gumbel").save(tmp_path / "k.json")
    data = json.loads(path.read_text())
    data["prf_version"] = version
    path.write_text(json.dumps(data))
    with pytest.raises(KeyFileError, match=match):
        WatermarkKey.load(path)
    with pytest.raises(KeyFileError, match=r"valid versions|implements versions"):
        WatermarkKey.from_secret(b"\x01" * 32, prf_version=version)


def test_edited_prf_version_no_longer_matches_the_key_id(tmp_path):
    path = WatermarkKey.generate("gumbel").save(tmp_path / "k.json")
    data = json.loads(path.read_text())
    data["prf_version"] = 1
    path.write_text(json.dumps(data))
    with pytest.raises(KeyFileError, match="does not match the secret and PRF version 1"):
        WatermarkKey.load(path)
