"""Ray Data engine vs the in-process engine: identical output on a local 2-CPU Ray instance."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from safeguard.cli.main import main  # noqa: E402

_WORLD = Path(__file__).parents[2] / "unit" / "serve" / "world.py"


def _world_module():
    name = "safeguard_tests_serve_world"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _WORLD)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return _world_module().World(tmp_path_factory.mktemp("scale-world"))


def sg(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(args))
        except SystemExit as exc:
            rc = int(exc.code or 0)
    return rc, out.getvalue(), err.getvalue()


def detect_records(world) -> list[dict]:
    a1 = world.keys["a1"]
    recs = []
    for i in range(6):
        recs.append({"text": world.watermarked_text(a1, 60 + 10 * i, seed=100 + i), "p": "w1 w2"})
        recs.append({"text": world.plain_text(70, seed=200 + i), "p": None})
    recs.append({"text": world.watermarked_text(world.keys["a2"], 90, seed=300), "p": "w3"})
    # Zero-width characters every few letters: both engines undo them before tokenizing.
    marked = world.watermarked_text(a1, 80, seed=400)
    recs.append({"text": "\u200b".join(marked[i : i + 4] for i in range(0, len(marked), 4))})
    return recs


def write_detect_jsonl(path: Path, world) -> Path:
    lines = [json.dumps(r) for r in detect_records(world)]
    lines[3:3] = ["", "{not json", json.dumps({"other": 1}), json.dumps({"text": 5})]
    lines[9:9] = ["   ", json.dumps({"text": "   "}), json.dumps([1, 2]), '"just a string"']
    lines[12] += "\r"  # a CRLF line, and a raw U+2028 inside a JSON string (not a line break)
    lines.append('{"text": "w1 w2\u2028w3 w4 w5 w6 w7 w8", "p": null}')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_detect(world, src: Path, engine: str, *keys: str) -> tuple[int, str, str]:
    key_args = [a for k in keys for a in ("--key", str(world.key_store / f"{k}.json"))]
    return sg(
        "detect", str(src), *key_args, "--tokenizer", str(world.tok_dir), "--prompt-field", "p",
        "--fpr", "1e-3", "--engine", engine,
    )  # fmt: skip


def same_run(a, b) -> bool:
    """Exit code, stdout and safeguard's summary line are identical (Ray may log too)."""
    return a[:2] == b[:2] and a[2].strip().splitlines()[-1] == b[2].strip().splitlines()[-1]


def test_detect_jsonl_ray_equals_in_process(ray_session, world, tmp_path):
    src = write_detect_jsonl(tmp_path / "in.jsonl", world)
    local = run_detect(world, src, "local", "a1")
    remote = run_detect(world, src, "ray", "a1")
    assert same_run(remote, local)
    rc, out, err = local
    assert rc == 2  # some records could not be processed
    rows = [json.loads(x) for x in out.splitlines()]
    assert sum(1 for r in rows if r.get("is_watermarked")) >= 7  # the zero-width record too
    assert sum(1 for r in rows if "error" in r) == 6
    assert "21 records" in err  # 15 valid + 6 bad; the 2 blank lines are skipped


def test_detect_ray_honours_no_normalize_like_in_process(ray_session, world, tmp_path):
    src = write_detect_jsonl(tmp_path / "in.jsonl", world)
    key = ("--key", str(world.key_store / "a1.json"))
    common = ("detect", str(src), *key, "--tokenizer", str(world.tok_dir), "--no-normalize")
    local = sg(*common, "--engine", "local")
    remote = sg(*common, "--engine", "ray")
    assert same_run(remote, local)
    normalised = run_detect(world, src, "local", "a1")
    assert local[1] != normalised[1]  # the zero-width record reads differently without it


def test_detect_parquet_on_ray_equals_in_process_on_the_same_records(ray_session, world, tmp_path):
    """Two keys (Holm), Parquet row i reported as line i + 1."""
    recs = detect_records(world)
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "in.parquet", row_group_size=4)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    local = run_detect(world, tmp_path / "in.jsonl", "local", "a1", "a2")
    remote = run_detect(world, tmp_path / "in.parquet", "ray", "a1", "a2")
    assert same_run(remote, local) and local[0] == 1  # flagged, no errors
    rows = [json.loads(x) for x in local[1].splitlines()]
    assert rows[-2]["best_key_id"] == world.keys["a2"].key_id and rows[-2]["is_watermarked"]
    assert rows[-1]["best_key_id"] == world.keys["a1"].key_id and rows[-1]["is_watermarked"]


def test_detect_ray_refuses_stdin_and_missing_files(ray_session, world, tmp_path):
    rc, _, err = run_detect(world, Path("-"), "ray", "a1")
    assert rc == 2 and "not stdin" in err
    rc, _, err = run_detect(world, tmp_path / "missing.jsonl", "ray", "a1")
    assert rc == 2 and "cannot read" in err


def test_detect_ray_reports_unreadable_lines_like_in_process(ray_session, world, tmp_path):
    src = tmp_path / "latin1.jsonl"
    good = json.dumps({"text": world.watermarked_text(world.keys["a1"], 80, seed=7)}).encode()
    src.write_bytes(
        b'{"text": "caf\xe9 w1 w2"}\n' + good + b'\n{"text": "w1 \\ud800 w2"}\n\x00\x01\x02\n'
    )
    local = run_detect(world, src, "local", "a1")
    remote = run_detect(world, src, "ray", "a1")
    assert same_run(remote, local)
    rc, out, err = remote
    assert rc == 2 and "Traceback" not in err
    rows = [json.loads(x) for x in out.splitlines()]
    assert rows[0] == {"line": 1, "error": "invalid UTF-8 (byte 0xe9 at column 14)"}
    assert rows[1]["line"] == 2 and rows[1]["is_watermarked"]
    assert rows[2]["error"].startswith("contains a lone surrogate (U+D800) in field 'text'")
    assert rows[3]["line"] == 4 and rows[3]["error"].startswith("malformed JSON")


def test_units_come_back_in_input_order():
    import numpy as np

    from safeguard.scale.ray_engine import _in_order

    def batch(*pos):
        return {"pos": np.array(pos), "v": np.array([f"u{p}" for p in pos], dtype=object)}

    rows = list(_in_order(iter([batch(2, 3), batch(0), batch(5, 1), batch(4)])))
    assert [str(r["v"]) for r in rows] == ["u0", "u1", "u2", "u3", "u4", "u5"]
    with pytest.raises(RuntimeError, match="missing unit 1"):
        list(_in_order(iter([batch(0, 2)])))


SCRUB_LINES = [
    b'{"id": 1, "text": "Pt John Smith, MRN 448812, seen 03/02/2024 at 12 Oak Street"}',
    b'{"id": 2, "text": "Call 555-123-4567 or write to jane@example.com"}',
    b"",
    b'{"id": 3, "text": null}',
    b"{broken json",
    b'{"id": 4, "text": 17}',
    b'{"id": 5, "note": "no text field"}',
    b"\xff\xfe not utf-8",
    b"[1, 2, 3]",
    b'{"id": 6, "text": "Nothing to see here."}',
    b'{"id": 7, "text": "SSN 123-45-6789, ZIP 02139, age 93"}',
] * 3


def scrub_both(tmp_path, src: Path, out_name: str):
    from safeguard.pii import Scrubber
    from safeguard.pii.stream import scrub_file as local_scrub
    from safeguard.scale.ray_engine import scrub_file as ray_scrub

    scrubber = Scrubber.from_policy("healthcare-hipaa", use_ner=False)
    reports = []
    for engine, fn in (("local", local_scrub), ("ray", ray_scrub)):
        d = tmp_path / engine
        d.mkdir()
        reports.append(fn(scrubber, src, d / out_name, report_path=d / "report.json", batch_size=4))
    return reports


def test_scrub_jsonl_ray_equals_in_process(ray_session, tmp_path):
    src = tmp_path / "notes.jsonl"
    src.write_bytes(b"\n".join(SCRUB_LINES) + b"\n")
    local, remote = scrub_both(tmp_path, src, "clean.jsonl")
    out_l, out_r = tmp_path / "local" / "clean.jsonl", tmp_path / "ray" / "clean.jsonl"
    assert out_r.read_bytes() == out_l.read_bytes()
    q_l = tmp_path / "local" / "clean.jsonl.quarantine.jsonl"
    q_r = tmp_path / "ray" / "clean.jsonl.quarantine.jsonl"
    assert q_r.read_bytes() == q_l.read_bytes()
    assert remote.records == local.records and remote.entities == local.entities
    assert local.records["quarantined"] == 15 and local.records["changed"] == 9
    assert remote.output["sha256"] == local.output["sha256"]
    assert "John Smith" not in out_r.read_text()


def test_scrub_parquet_ray_equals_in_process(ray_session, tmp_path):
    rows = [json.loads(x) for x in SCRUB_LINES if x.startswith(b'{"id"')]
    rows = [
        {"id": r["id"], "text": r.get("text") if isinstance(r.get("text"), str) else None}
        for r in rows
    ]
    src = tmp_path / "notes.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src, row_group_size=5)
    local, remote = scrub_both(tmp_path, src, "clean.parquet")
    t_l = pq.read_table(tmp_path / "local" / "clean.parquet")
    t_r = pq.read_table(tmp_path / "ray" / "clean.parquet")
    assert t_r.schema == t_l.schema and t_r.to_pylist() == t_l.to_pylist()
    assert remote.records == local.records and remote.entities == local.entities


def test_scrub_unknown_field_is_refused_like_in_process(ray_session, tmp_path):
    from safeguard.errors import DataError
    from safeguard.pii import Scrubber
    from safeguard.pii.stream import scrub_file as local_scrub
    from safeguard.scale.ray_engine import scrub_file as ray_scrub

    src = tmp_path / "x.jsonl"
    src.write_text('{"a": 1}\n{"a": 2}\n')
    scrubber = Scrubber.from_policy("healthcare-hipaa", use_ner=False)
    messages = []
    for fn, name in ((local_scrub, "l.jsonl"), (ray_scrub, "r.jsonl")):
        with pytest.raises(DataError) as info:
            fn(scrubber, src, tmp_path / name, fields=["body"])
        messages.append(str(info.value))
        assert not (tmp_path / name).exists()
    assert messages[0] == messages[1]


def test_scrub_cli_engine_ray_equals_local(ray_session, tmp_path):
    from safeguard.cli.main import main

    src = tmp_path / "notes.jsonl"
    src.write_bytes(b"\n".join(SCRUB_LINES) + b"\n")
    outs = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.jsonl"
        rc = main(["scrub", str(src), str(out), "--policy", "healthcare-hipaa", "--engine", engine,
                   "--batch-size", "4", "--allow-quarantine", "--no-progress"])  # fmt: skip
        assert rc == 0
        outs[engine] = out.read_bytes()
    assert outs["ray"] == outs["local"]
    assert main(["scrub", str(src), str(tmp_path / "x.jsonl"), "--engine", "ray", "--resume"]) == 2


def test_scrub_bad_input_ray_equals_in_process(ray_session, tmp_path):
    import os
    import stat

    from safeguard.errors import DataError
    from safeguard.pii import Scrubber
    from safeguard.pii.stream import scrub_file as local_scrub
    from safeguard.scale.ray_engine import scrub_file as ray_scrub

    src = tmp_path / "notes.jsonl"
    src.write_bytes(
        b"\n".join(
            [SCRUB_LINES[0], b'{"id": 8, "text": "Jo\\ud800hn"}', b"\xc3\x28", SCRUB_LINES[1]]
        )
        + b"\n"
    )
    local, remote = scrub_both(tmp_path, src, "clean.jsonl")
    assert remote.records == local.records and local.records["quarantined"] == 2
    q_l = tmp_path / "local" / "clean.jsonl.quarantine.jsonl"
    q_r = tmp_path / "ray" / "clean.jsonl.quarantine.jsonl"
    assert q_r.read_bytes() == q_l.read_bytes()
    assert "lone surrogate (U+D800)" in q_l.read_text(encoding="utf-8")
    assert stat.S_IMODE(os.stat(q_l).st_mode) == stat.S_IMODE(os.stat(q_r).st_mode) == 0o600

    blob = tmp_path / "blob.jsonl"
    blob.write_bytes(bytes(range(256)) * 4)
    scrubber = Scrubber.from_policy("healthcare-hipaa", use_ner=False)
    messages = []
    for fn, name in ((local_scrub, "l.jsonl"), (ray_scrub, "r.jsonl")):
        with pytest.raises(DataError, match="does not look like JSONL") as info:
            fn(scrubber, blob, tmp_path / name)
        messages.append(str(info.value))
        assert not list(tmp_path.glob(f"{name}*"))
    assert messages[0] == messages[1]
