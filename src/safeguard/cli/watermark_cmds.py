"""``safeguard keygen | generate | detect``: watermark keys, watermarked generation, detection over JSONL.

Input files are read as bytes, line by line (:func:`safeguard._files.read_jsonl`): a line
that is not UTF-8, not JSON, holds a lone surrogate or is not an object is reported with
its line number and reason, never a traceback. ``detect`` writes a result line for every
line (an ``error`` for the bad ones) and exits 2 when any line could not be processed;
``generate --prompts`` refuses the whole file, listing the bad lines, before generating.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from safeguard.cli._args import positive_int
from safeguard.errors import ConfigError, DataError

log = logging.getLogger(__name__)

#: Records detected together in one vectorised pass.
BATCH = 1024

_DETECT_EPILOG = """\
output: one JSON line per non-blank input line, in input order, with its `line` number:
  the detection result, or {"line": N, "error": "..."} when the line could not be processed
  (invalid UTF-8, malformed JSON, a lone surrogate, not an object, missing or empty field).

exit codes (no information is lost: every result is in the output whatever the code):
  0  every line processed, none flagged
  1  every line processed, at least one text flagged as watermarked (a finding)
  2  at least one line could not be processed (its `error` is in the output), or a usage
     error; 2 takes precedence over 1, so check `is_watermarked` in the output too
"""


def register(sub: argparse._SubParsersAction) -> None:
    _add_keygen(sub)
    _add_generate(sub)
    _add_detect(sub)


def _add_keygen(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keygen", help="create a watermark key (JSON, mode 0600)")
    p.add_argument("--scheme", default=None, help="gumbel (default), exp or exp-edit")
    p.add_argument(
        "--policy", help="take the scheme and parameters from this policy's watermark section"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="scheme parameter, e.g. context_width=4",
    )
    p.add_argument("--tokenizer", help="model or tokenizer folder to bind the key to (recommended)")
    p.add_argument("--out", required=True, help="where to write the key file")
    p.add_argument("--force", action="store_true", help="overwrite an existing key file")
    p.set_defaults(func=cmd_keygen)


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="watermarked generation with a local model folder")
    p.add_argument("--model", required=True, help="folder saved with save_pretrained")
    p.add_argument("--key", required=True, help="key file from `safeguard keygen`")
    p.add_argument("--tokenizer", help="tokenizer folder (default: the model folder)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    src.add_argument(
        "--prompts",
        help="JSONL file with a `prompt` field per line; a file with unreadable lines is "
        "refused before anything is generated (exit 2, the lines and reasons listed)",
    )
    p.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=200,
        help="tokens generated per prompt; ~200 are detected at 1e-4 with margin",
    )
    p.add_argument(
        "--min-new-tokens", type=int, default=0, help="suppress end-of-text before this many tokens"
    )
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (> 0)")
    p.add_argument("--top-k", type=int, default=0, help="keep the k likeliest tokens (0: all)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: all)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="prompts per generate call")
    p.add_argument(
        "--seed", type=int, default=None, help="torch seed (for the exp schemes' shifts)"
    )
    p.add_argument("--no-watermark", action="store_true", help="plain sampling, for comparisons")
    p.add_argument("--out", default="-", help="output JSONL (default: stdout)")
    p.add_argument(
        "--manifest",
        help="write a signed provenance manifest of the generations here (needs --out FILE)",
    )
    p.add_argument(
        "--signing-key", help="Ed25519 private key for --manifest (`safeguard manifest keygen`)"
    )
    p.set_defaults(func=cmd_generate)


def _add_detect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="detect watermarks in a JSONL file (exit 1 if any text is flagged)",
        epilog=_DETECT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="JSONL file, one record per line ('-' for stdin)")
    p.add_argument(
        "--key",
        action="append",
        required=True,
        help="key file (repeat to test several, Holm-corrected)",
    )
    p.add_argument(
        "--tokenizer", required=True, help="tokenizer (or model) folder used at generation"
    )
    p.add_argument("--field", default="text", help="field holding the text (default: text)")
    p.add_argument("--prompt-field", default=None, help="field holding the prompt, if recorded")
    p.add_argument(
        "--fpr",
        type=float,
        default=None,
        help="false-positive rate (default 1e-3, or the policy's)",
    )
    p.add_argument(
        "--policy", help="read the false-positive rate from this policy's watermark section"
    )
    p.add_argument(
        "--resolution", type=float, default=None, help="p-value resolution for exp/exp-edit"
    )
    p.add_argument("--out", default="-", help="output JSONL (default: stdout)")
    p.add_argument(
        "--localize",
        action="store_true",
        help="also find watermarked spans in each text (gumbel, one key): adds `localization` "
        "with token spans, their text and family-wise p-values; a record is then flagged when "
        "a span is found (the whole text is one of the windows tested)",
    )
    p.add_argument(
        "--min-window",
        type=int,
        default=16,
        help="smallest window for --localize, in scored tokens (default 16)",
    )
    p.add_argument(
        "--no-normalize",
        action="store_true",
        help="tokenize texts as they are (default: undo zero-width characters, Unicode spaces "
        "and look-alike letters first; ASCII text is unchanged either way)",
    )
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (default: in-process) or ray (Ray Data; RAY_ADDRESS picks the cluster); "
        "ray also reads Parquet",
    )
    p.add_argument(
        "--memory",
        metavar="DIR",
        default=None,
        help="detection memory folder (gumbel keys, local engine): each (context, token) pair "
        "is scored once per key over every run that uses DIR, so the false-positive rate under "
        "one key holds on streams of near-duplicate or repetitive text; a text seen before gets "
        "its earlier answer (one <key id>.memory.npz per key, mode 0600)",
    )
    p.set_defaults(func=cmd_detect)


def _parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--param {item!r} must look like NAME=VALUE, e.g. context_width=4")
        try:
            params[name] = json.loads(raw)
        except json.JSONDecodeError:
            params[name] = raw
    return params


@contextmanager
def _output(path: str) -> Iterator[Any]:
    """``--out``: the file (closed after), or stdout for ``-`` (left open)."""
    if path == "-":
        yield sys.stdout
        return
    with open(path, "w", encoding="utf-8") as sink:
        yield sink


def cmd_keygen(args: argparse.Namespace) -> int:
    from safeguard.watermark import WatermarkKey

    if args.policy:
        if args.scheme or args.param:
            raise ConfigError(
                "--policy sets the scheme and parameters; drop --scheme/--param or --policy"
            )
        key = WatermarkKey.from_policy(args.policy)
    else:
        key = WatermarkKey.generate(args.scheme or "gumbel", **_parse_params(args.param))
    if args.tokenizer:
        from safeguard.watermark.tokenizer import load_tokenizer

        key = key.bind(load_tokenizer(args.tokenizer))
    key.save(args.out, overwrite=args.force)
    print(json.dumps({"written": str(args.out), **key.public_dict()}, indent=2))
    return 0


def _read_prompts(path: str) -> list[str]:
    """Every prompt of a JSONL file, or a :class:`DataError` listing all of its bad lines.

    The whole file is refused before generating (rather than generating for the good lines):
    an output with prompts silently missing is easy to mistake for a complete one, and
    generation is the expensive step, so it is better to fix the file first.
    """
    from safeguard._files import json_type, read_jsonl

    prompts: list[str] = []
    problems: list[str] = []
    for n, record, reason, _ in read_jsonl(path):
        if reason is None:
            prompt = record.get("prompt")
            if prompt is None:
                reason = "missing field 'prompt'"
            elif not isinstance(prompt, str):
                reason = f"field 'prompt' is a JSON {json_type(prompt)}, expected a string"
        if reason is not None:
            problems.append(f"line {n}: {reason}")
            continue
        prompts.append(prompt)
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; ... {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise DataError(
            f"{path}: {len(problems)} line(s) cannot be used, nothing generated ({shown}); "
            "each line must be a JSON object with a string `prompt`"
        )
    if not prompts:
        raise DataError(f"{path} holds no prompts")
    return prompts


def _check_prompt_args(prompts: list[str]) -> list[str]:
    """``--prompt`` values; bytes that are not UTF-8 arrive as lone surrogates and are refused."""
    for i, prompt in enumerate(prompts, 1):
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DataError(
                f"--prompt #{i} is not valid UTF-8 text (U+{ord(prompt[exc.start]):04X} at "
                f"character {exc.start}); pass prompts in UTF-8"
            ) from None
    return prompts


def _check_generation_args(args: argparse.Namespace, prompts: list[str]) -> None:
    """Refuse what would crash inside ``generate`` or void the watermark, with the fix."""
    for i, prompt in enumerate(prompts, 1):
        if not prompt.strip():
            raise ConfigError(
                f"prompt #{i} is empty; give some text for the model to continue (e.g. --prompt 'The')"
            )
    if not args.temperature > 0:
        raise ConfigError(
            f"--temperature (={args.temperature:g}) must be > 0: the watermark chooses among "
            "sampled tokens, and temperature 0 is greedy decoding (same text for every key)"
        )
    if not 0 < args.top_p <= 1:
        raise ConfigError(f"--top-p (={args.top_p:g}) must be in (0, 1]; 1 keeps every token")
    if args.top_k < 0:
        raise ConfigError(f"--top-k (={args.top_k}) must be >= 0; 0 keeps every token")


def _check_model_dir(path: str, flag: str, *, need_config: bool = True) -> None:
    """A local model folder, checked before transformers would try the hub (offline: slowly)."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(
            f"{flag} {path!r} is not a folder; pass a model folder saved with save_pretrained "
            "(models are never downloaded)"
        )
    if need_config and not (folder / "config.json").exists():
        raise DataError(
            f"{flag} {path!r} has no config.json: not a model saved with save_pretrained"
        )


def _load_keys(paths: list[str]) -> list[Any]:
    """Load watermark key files, warning about any that other users can read."""
    from safeguard._files import warn_if_readable_by_others
    from safeguard.watermark import WatermarkKey

    keys = []
    for path in paths:
        keys.append(WatermarkKey.load(path))
        warn_if_readable_by_others(path, "watermark key file")
    return keys


def cmd_generate(args: argparse.Namespace) -> int:
    from safeguard.watermark import Watermarker

    (key,) = _load_keys([args.key])
    # Prompts are checked before the model loads: a bad file fails fast, nothing generated.
    prompts = _check_prompt_args(args.prompt) if args.prompt else _read_prompts(args.prompts)
    _check_generation_args(args, prompts)
    if not 0 <= args.min_new_tokens <= args.max_new_tokens:
        raise ConfigError(
            f"--min-new-tokens (={args.min_new_tokens}) must be between 0 and --max-new-tokens ({args.max_new_tokens})"
        )
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok_dir = args.tokenizer or args.model
    _check_model_dir(args.model, "--model")
    if args.tokenizer:
        _check_model_dir(args.tokenizer, "--tokenizer", need_config=False)
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    except OSError as exc:
        raise DataError(f"cannot load the model or tokenizer from {args.model!r}: {exc}") from None
    key.check_tokenizer(tokenizer)
    _warn_unbound(key, "the model's tokenizer")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if args.seed is not None:
        torch.manual_seed(args.seed)
    if args.manifest and args.out == "-":
        raise ConfigError("--manifest needs --out FILE: the manifest digests the generations file")
    if args.signing_key and not args.manifest:
        raise ConfigError("--signing-key is only used with --manifest")
    wm = Watermarker(key)
    with _output(args.out) as sink:
        from tqdm.auto import tqdm

        for start in tqdm(
            range(0, len(prompts), args.batch_size),
            disable=len(prompts) <= args.batch_size,
            desc="generate",
        ):
            batch = prompts[start : start + args.batch_size]
            enc = tokenizer(batch, return_tensors="pt", padding=True)
            kwargs = {
                **enc,
                "do_sample": True,
                "max_new_tokens": args.max_new_tokens,
                "min_new_tokens": args.min_new_tokens,
                "temperature": args.temperature,
                "top_k": args.top_k,
                "top_p": args.top_p,
                "pad_token_id": tokenizer.pad_token_id,
            }
            with torch.no_grad():
                out = (
                    model.generate(**kwargs) if args.no_watermark else wm.generate(model, **kwargs)
                )
            width = enc["input_ids"].shape[1]
            for prompt, row in zip(batch, out, strict=True):
                text = tokenizer.decode(row[width:], skip_special_tokens=True)
                record = {"prompt": prompt, "text": text, "watermarked": not args.no_watermark}
                if not args.no_watermark:
                    record.update({"key_id": key.key_id, "scheme": key.scheme})
                sink.write(json.dumps(record, ensure_ascii=False) + "\n")
    if args.manifest:
        _write_generation_manifest(args, key, prompts)
    return 0


def _write_generation_manifest(args: argparse.Namespace, key: Any, prompts: list[str]) -> None:
    import hashlib

    from safeguard.provenance import digest_directory, generation_predicate, write_manifest

    model_digest = digest_directory(args.model).sha256
    predicate = generation_predicate(
        model=(Path(args.model).name, model_digest),
        watermark=None
        if args.no_watermark
        else {"scheme": key.scheme, "key_id": key.key_id, "params": dict(key.params)},
        parameters={
            "max_new_tokens": args.max_new_tokens,
            "temperature": args.temperature,
            "top_k": args.top_k,
            "top_p": args.top_p,
            "num_prompts": len(prompts),
        },
        prompt_sha256=hashlib.sha256("\n".join(prompts).encode("utf-8")).hexdigest(),
    )
    path = write_manifest(
        "generation", [args.out], predicate, args.manifest, signing_key=args.signing_key
    )
    log.info("wrote generation manifest %s", path)
    sys.stderr.write(f"safeguard generate: manifest written to {path}\n")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _warn_unbound(key: Any, flag: str) -> None:
    """Say loudly that an unbound key cannot check the tokenizer (a wrong one detects nothing)."""
    if key.tokenizer_fingerprint is None:
        sys.stderr.write(
            f"safeguard: warning: key {key.key_id} is not bound to a tokenizer, so {flag} cannot be "
            "checked: with another tokenizer than the generation one, watermarked text tests like "
            "human text. Make keys with `safeguard keygen --tokenizer MODEL_DIR`\n"
        )


def cmd_detect(args: argparse.Namespace) -> int:
    from safeguard.watermark.tokenizer import load_tokenizer

    args.fpr = _detect_fpr(args)
    keys = _load_keys(args.key)
    tokenizer = load_tokenizer(args.tokenizer)
    for key in keys:
        key.check_tokenizer(tokenizer)
        _warn_unbound(key, "--tokenizer")
    localize = getattr(args, "localize", False)
    if localize:
        _check_localize(args, keys)
    common = {  # what both engines take from the flags
        "keys": keys,
        "tokenizer": tokenizer,
        "field": args.field,
        "prompt_field": args.prompt_field,
        "false_positive_rate": args.fpr,
        "options": {} if args.resolution is None else {"resolution": args.resolution},
        "batch_size": BATCH,
        "normalize": not getattr(args, "no_normalize", False),
    }
    memories = _open_memories(getattr(args, "memory", None), keys, args)
    if memories:
        common["options"]["memory"] = memories
    if getattr(args, "engine", "local") == "ray":
        counts = _detect_ray(args, common)
    else:
        try:
            counts = _detect_local(args, common, localize)
        finally:
            _save_memories(getattr(args, "memory", None), memories)
    return _summarize(counts, args.fpr, "with watermarked spans" if localize else "flagged")


def _open_memories(folder: str | None, keys: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    """``--memory DIR``: each key's :class:`DetectionMemory` (new ones for keys not seen before)."""
    if folder is None:
        return {}
    from safeguard.watermark import DetectionMemory

    if getattr(args, "engine", "local") == "ray":
        raise ConfigError(
            "--memory tests texts in order, one after another; it runs on the local engine: "
            "drop --engine ray"
        )
    if getattr(args, "localize", False):
        raise ConfigError(
            "--memory and --localize do not combine: spans are tested within one text; "
            "drop one of them"
        )
    others = [f"{k.key_id} ({k.scheme})" for k in keys if k.scheme != "gumbel"]
    if others:
        raise ConfigError(f"--memory is for gumbel keys; got {', '.join(others)}")
    return {k.key_id: DetectionMemory.open_in(folder, k.key_id) for k in keys}


def _save_memories(folder: str | None, memories: dict[str, Any]) -> None:
    """Write each memory back (also after an error: the pairs already scored stay scored)."""
    from safeguard.watermark.memory import memory_file

    for key_id, memory in memories.items():
        memory.save(memory_file(folder, key_id))  # type: ignore[arg-type]
        if memory.over_capacity:
            sys.stderr.write(
                f"safeguard: warning: the detection memory of key {key_id} holds {memory.pairs} "
                f"pairs, over its capacity of {memory.capacity}: it now skips some pairs never "
                "scored (less power, same false-positive rate); start a larger one\n"
            )


def _detect_fpr(args: argparse.Namespace) -> float:
    """``--fpr``, else the ``--policy``'s rate, else 1e-3; refused outside (0, 1)."""
    fpr = args.fpr
    if fpr is None:
        fpr = 1e-3
        if args.policy:
            from safeguard.policy import load_policy

            section = load_policy(args.policy).watermark
            if section is not None:
                fpr = section.false_positive_rate
    if not 0 < fpr < 1:
        raise ConfigError(f"--fpr (={fpr}) must be in (0, 1); typical values are 1e-2 to 1e-6")
    return fpr


def _check_localize(args: argparse.Namespace, keys: list[Any]) -> None:
    """``--localize`` needs one gumbel key, the local engine and a positive window."""
    if len(keys) != 1 or keys[0].scheme != "gumbel":
        raise ConfigError(
            "--localize needs exactly one key of the gumbel scheme; got "
            + ", ".join(f"{k.key_id} ({k.scheme})" for k in keys)
        )
    if getattr(args, "engine", "local") == "ray":
        raise ConfigError("--localize runs on the local engine; drop --engine ray")
    if args.min_window < 1:
        raise ConfigError(f"--min-window (={args.min_window}) must be >= 1; typical: 16-64")


def _detect_local(args: argparse.Namespace, common: dict[str, Any], localize: bool) -> Any:
    """``safeguard detect`` in-process: :func:`safeguard.watermark.batch.detect_jsonl`."""
    from safeguard.watermark.batch import detect_jsonl

    # Bytes, line by line: a line that is not UTF-8 or JSON gets an error result, not a crash.
    from_stdin = args.input == "-"
    try:
        source = sys.stdin.buffer if from_stdin else open(args.input, "rb")  # noqa: SIM115
    except OSError as exc:
        raise DataError(f"cannot read {args.input!r}: {exc.strerror}") from None
    try:
        with _output(args.out) as sink:
            return detect_jsonl(
                source,
                sink,
                **common,
                localize_min_window=args.min_window if localize else None,
            )
    finally:
        if not from_stdin:
            source.close()


def _summarize(counts: Any, fpr: float, what: str) -> int:
    """The summary line on stderr, and the exit code: 2 if a line failed, 1 if one is flagged."""
    sys.stderr.write(
        f"safeguard detect: {_plural(counts.total, 'record')}, {counts.flagged} {what} at "
        f"fpr={fpr:g}, "
        + (
            f"{counts.too_short} too short to test (verdict in each line), "
            if counts.too_short
            else ""
        )
        + f"{counts.errors} could not be processed\n"
    )
    if counts.errors:
        return 2
    return 1 if counts.flagged else 0


def _detect_ray(args: argparse.Namespace, common: dict[str, Any]) -> Any:
    """``safeguard detect --engine ray``: the same output and counts on Ray Data."""
    from safeguard.scale.ray_engine import detect_file

    if args.input == "-":
        raise DataError("--engine ray reads a file (JSONL or Parquet), not stdin; pass a path")
    with _output(args.out) as sink:
        return detect_file(args.input, sink, **common)
