"""Keys and schemes apart: the spec validates and builds, the PRF family is its field, a newly
registered scheme works in keys and policies, and the scheme modules never import keys."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from safeguard.errors import ConfigError
from safeguard.policy.model import validate_policy_text
from safeguard.watermark import Watermarker, WatermarkKey, get_scheme, list_schemes, register_scheme
from safeguard.watermark.schemes import gumbel, registry


def test_prf_family_is_a_field_of_the_spec():
    assert get_scheme("exp-edit").prf_family == "exp"
    assert get_scheme("exp").prf_family == "exp"
    assert get_scheme("gumbel").prf_family == "gumbel"
    secret = bytes(range(32))
    exp_key = WatermarkKey.from_secret(secret, "exp")
    edit_key = WatermarkKey.from_secret(secret, "exp-edit")
    # exp and exp-edit read the same uniforms from one secret (same family), gumbel others.
    a = Watermarker(exp_key).scheme.token_key
    b = Watermarker(edit_key).scheme.token_key
    c = Watermarker(WatermarkKey.from_secret(secret, "gumbel")).scheme.token_key
    assert a == b and a != c


def test_a_newly_registered_scheme_works_in_keys_and_policies():
    class WideGumbel(gumbel.GumbelScheme):
        name = "wide-gumbel"

    register_scheme(
        "wide-gumbel", gumbel.GumbelConfig, WideGumbel, prf_family="wide-gumbel", force=True
    )
    try:
        assert "wide-gumbel" in list_schemes()
        key = WatermarkKey.generate("wide-gumbel", context_width=8)
        assert key.params["context_width"] == 8
        wm = Watermarker(key)
        assert isinstance(wm.scheme, WideGumbel) and wm.scheme.prf_family == "wide-gumbel"
        assert 0 < wm.detect(np.arange(40), false_positive_rate=0.01).p_value <= 1
        policy, issues = validate_policy_text(
            "schema_version: 1\nname: t\nwatermark:\n  scheme: wide-gumbel\n"
        )
        assert not issues
        assert WatermarkKey.from_policy(policy).scheme == "wide-gumbel"
    finally:
        registry._REGISTRY.pop("wide-gumbel", None)


def test_unknown_schemes_and_bad_params_are_refused_with_the_known_names():
    with pytest.raises(ConfigError, match="known schemes: exp, exp-edit, gumbel"):
        WatermarkKey.generate("gumbell")
    with pytest.raises(ConfigError, match="context_width"):
        WatermarkKey.generate("gumbel", context_width=99)
    policy, issues = validate_policy_text(
        "schema_version: 1\nname: t\nwatermark:\n  scheme: gumbell\n"
    )
    assert not issues  # the policy layer knows no schemes ...
    with pytest.raises(ConfigError, match="unknown watermark scheme 'gumbell'"):
        WatermarkKey.from_policy(policy)  # ... the watermark layer checks the name
    _, issues = validate_policy_text("schema_version: 1\nname: t\nwatermark:\n  scheme: 'a b'\n")
    assert issues and issues[0].path.startswith("watermark.scheme")


def test_scheme_modules_do_not_import_keys():
    folder = Path(registry.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module != "safeguard.watermark.keys", path.name
                assert not (
                    node.module == "safeguard.watermark"
                    and any(a.name == "WatermarkKey" for a in node.names)
                ), path.name
