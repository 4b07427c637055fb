"""Server configuration, key store checks, tokens, the rate limiter and the CLI verbs."""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest

from safeguard.cli.main import main
from safeguard.errors import ConfigError
from safeguard.serve import ServerConfig, create_app, generate_token, hash_token, load_config
from safeguard.serve.ratelimit import TokenBucket
from safeguard.watermark import WatermarkKey


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(args))
        except SystemExit as exc:
            rc = int(exc.code or 0)
    return rc, out.getvalue(), err.getvalue()


def test_token_and_hash():
    token, digest = generate_token()
    assert digest == hash_token(token) and digest.startswith("sha256:") and len(digest) == 71
    assert generate_token()[0] != token


def test_serve_token_verb_prints_a_token_and_its_hash():
    rc, out, _ = run_cli("serve-token")
    data = json.loads(out)
    assert rc == 0 and hash_token(data["token"]) == data["token_sha256"]


def test_relative_paths_resolve_against_the_config_folder(world, tmp_path):
    cfg = world.config_dict(key_store="keys", tokenizers=["tok"])
    path = world.root / "relative.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    loaded = load_config(path)
    assert loaded.key_store == world.root.resolve() / "keys"
    assert loaded.tokenizers == (world.root.resolve() / "tok",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tenants": []}, "tenants"),
        ({"surprise": 1}, "surprise"),
        ({"port": 70000}, "port"),
        ({"false_positive_rate": 2}, "false_positive_rate"),
        (
            {
                "tenants": [
                    {"name": "x", "token_sha256": "plain-token", "keys": ["wm-0000000000000000"]}
                ]
            },
            "token_sha256",
        ),
        (
            {"tenants": [{"name": "x", "token_sha256": "sha256:" + "0" * 64, "keys": ["k1"]}]},
            "is not a watermark key id",
        ),
        ({"auth_throttle": {"max_failures": 0}}, "auth_throttle.max_failures"),
        ({"auth_throttle": {"window_seconds": -1}}, "auth_throttle.window_seconds"),
        ({"auth_throttle": {"per_ip": 3}}, "auth_throttle.per_ip"),
        (
            {
                "tenants": [
                    {
                        "name": "x",
                        "token_sha256": "sha256:" + "0" * 64,
                        "keys": ["wm-0000000000000000"],
                        "max_in_flight": 0,
                    }
                ]
            },
            "max_in_flight",
        ),
    ],
)
def test_invalid_configs_name_the_problem(world, change, message):
    cfg = {**world.config_dict(), **change}
    path = world.root / "bad.yaml"
    path.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_hostile_tenant_defaults():
    cfg = ServerConfig.model_validate(
        {
            "key_store": "keys",
            "tenants": [
                {"name": "x", "token_sha256": "sha256:" + "0" * 64, "keys": ["wm-0000000000000000"]}
            ],
        }
    )
    assert cfg.tenants[0].max_in_flight == 4
    assert (cfg.auth_throttle.max_failures, cfg.auth_throttle.window_seconds) == (10, 60.0)


def test_duplicate_tenants_are_refused(world):
    cfg = world.config_dict()
    cfg["tenants"].append(dict(cfg["tenants"][0]))
    with pytest.raises(ValueError, match="unique"):
        ServerConfig.model_validate(cfg)


def test_missing_config_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "bad.yaml")


def test_key_store_problems_fail_at_start_up(world, tmp_path):
    cfg = world.config_dict()
    cfg["tenants"][0]["keys"] = ["wm-00000000000000ff"]
    with pytest.raises(ConfigError, match=r"not in the key store"):
        create_app(ServerConfig.model_validate(cfg))
    # a key bound to a tokenizer that is not configured
    cfg = world.config_dict(tokenizers=[])
    with pytest.raises(ConfigError, match="is none of `tokenizers`"):
        create_app(ServerConfig.model_validate(cfg))
    # an unbound key needs default_tokenizer
    store = tmp_path / "keys"
    store.mkdir()
    key = WatermarkKey.from_secret(bytes([9]) * 32, "gumbel")
    key.save(store / "k.json")
    (store / "junk.json").write_text("{not a key")
    cfg = world.config_dict(key_store=str(store))
    cfg["tenants"] = [{**cfg["tenants"][0], "keys": [key.key_id]}]
    with pytest.raises(ConfigError, match="not bound to a tokenizer") as info:
        create_app(ServerConfig.model_validate(cfg))
    assert key._secret.hex() not in str(info.value)
    app = create_app(ServerConfig.model_validate({**cfg, "default_tokenizer": str(world.tok_dir)}))
    assert app.title == "safeguard detection service"


def test_token_bucket():
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.acquire() for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]
    now[0] = 0.25
    assert bucket.acquire() == pytest.approx(0.25)
    now[0] = 10.0
    assert [bucket.acquire() for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # refilled to burst only
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0, burst=1)


def test_serve_verb_with_a_bad_config_exits_2(tmp_path):
    rc, _, err = run_cli("serve", "--config", str(tmp_path / "missing.yaml"))
    assert rc == 2 and "does not exist" in err


def test_importing_serve_loads_no_framework():
    import subprocess
    import sys

    code = (
        "import sys, safeguard.serve, safeguard.serve.app\n"
        "print(','.join(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'presidio_analyzer', 'spacy', 'ray')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.strip() == ""
