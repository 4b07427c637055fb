r"""Reading JSONL that may be broken, and writing files that only their owner can read.

Bottom layer: imports the standard library and :mod:`safeguard.errors` only, so every
module (``pii``, ``watermark``, ``privacy``, ``cli``) can use it.

Reading. Input is read as **bytes**, one line at a time, so that one bad line never stops
a run: each line is decoded and parsed on its own, and a line that cannot be used gets a
reason instead of raising. Reasons name the problem and where it is::

    invalid UTF-8 (byte 0xff at column 12)
    malformed JSON: Expecting value at column 1
    contains a lone surrogate (U+D800) in field 'text' at character 4; ...
    record is a JSON list, expected an object

A lone surrogate (``"\ud800"`` in JSON, a code point that is not a character) is valid
JSON but not valid Unicode: it cannot be written as UTF-8, and tokenizers, spaCy and
hashes fail on it. Such a record is refused at the door with its position, never passed on.

>>> for line, record, reason, raw in read_jsonl(io.BytesIO(b'{"a": 1}\n\n[2]\n\xff\n')):
...     print(line, record, reason)
1 {'a': 1} None
3 None record is a JSON list, expected an object
4 None invalid UTF-8 (byte 0xff at column 1)

Writing. :func:`json_line` and :func:`printable` turn anything (records with lone
surrogates, undecodable bytes) into text that can always be written, so a quarantine
entry never fails to be written. :func:`open_private` and :func:`write_private` create
files with mode 0600: quarantine files (raw records), keys, checkpoints holding
generator state. :func:`warn_if_readable_by_others` warns about a key file that group or
other users can read.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, NamedTuple

from safeguard.errors import DataError

__all__ = [
    "JsonlRecord",
    "find_lone_surrogate",
    "iter_lines",
    "json_line",
    "json_type",
    "open_private",
    "parse_jsonl_line",
    "printable",
    "read_jsonl",
    "warn_if_readable_by_others",
    "write_private",
]

log = logging.getLogger(__name__)

_BOM = b"\xef\xbb\xbf"
# A JSON escape that decodes to a surrogate (\uD800-\uDFFF, either case). Valid pairs also
# match; they are told apart by the exact check that follows.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_JSON_TYPES = {
    dict: "object",
    list: "list",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


# --------------------------------------------------------------------------- reading


class JsonlRecord(NamedTuple):
    """One non-blank line of a JSONL file: unpacks as ``(line, record, reason, raw)``.

    Attributes:
        line: 1-based line number in the file.
        record: The parsed JSON value, or ``None`` when the line cannot be used.
        reason: Why the line cannot be used (one line of text), or ``None``.
        raw: The line's bytes without its line break, for a quarantine entry: write
            ``printable(raw)``, which never fails to encode.
    """

    line: int
    record: Any
    reason: str | None
    raw: bytes


def iter_lines(fh: BinaryIO) -> Iterator[bytes]:
    """The lines of a binary stream, each with its line break, from its current position.

    Only ``\\n`` ends a line (``\\r\\n`` is a ``\\n`` line whose body ends in ``\\r``); a
    file without line breaks (binary data) is one line. Raises :class:`DataError` for an
    I/O error while reading.
    """
    try:
        yield from fh
    except OSError as exc:
        name = getattr(fh, "name", "input")
        raise DataError(f"cannot read {name!r}: {exc.strerror or exc}") from None


def find_lone_surrogate(value: Any) -> str | None:
    """Where the first lone surrogate in a JSON value is, or ``None`` if there is none.

    Walks dict keys and values and list items (not recursively: any depth is fine).

    >>> find_lone_surrogate({"a": [{"b": "ok"}, "x\\udc80"]})
    "lone surrogate (U+DC80) in field 'a.1' at character 1"
    >>> find_lone_surrogate({"k\\ud800": 1})
    'lone surrogate (U+D800) in a key of the record at character 1'
    """
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            where = _surrogate_at(node)
            if where is not None:
                field = f"field {path!r}" if path else "the record"
                return f"lone surrogate (U+{ord(node[where]):04X}) in {field} at character {where}"
        elif isinstance(node, dict):
            items = list(node.items())
            for k, v in reversed(items):
                where = _surrogate_at(k) if isinstance(k, str) else None
                if where is not None:
                    under = f"under {path!r}" if path else "of the record"
                    return f"lone surrogate (U+{ord(k[where]):04X}) in a key {under} at character {where}"
                stack.append((v, f"{path}.{k}" if path else str(k)))
        elif isinstance(node, list):
            for i in range(len(node) - 1, -1, -1):
                stack.append((node[i], f"{path}.{i}" if path else str(i)))
    return None


def _surrogate_at(text: str) -> int | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def parse_jsonl_line(
    body: bytes, *, expect_object: bool = True, first: bool = False
) -> tuple[Any, str | None]:
    """Decode and parse one JSONL line (without its line break): ``(value, None)`` or ``(None, reason)``.

    Never raises for bad content. Reasons:

    - ``invalid UTF-8 (byte 0xff at column 12)``: columns count bytes, from 1;
    - ``malformed JSON: <what> at column N`` (or ``nested too deeply``);
    - ``contains a lone surrogate (U+D800) in field 'text' at character 4; ...``;
    - ``record is a JSON list, expected an object`` (only with ``expect_object``).

    With ``first`` (the first line of a file), a UTF-8 byte-order mark is skipped.
    """
    if first and body.startswith(_BOM):
        body = body[len(_BOM) :]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"invalid UTF-8 (byte 0x{body[exc.start]:02x} at column {exc.start + 1})"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"malformed JSON: {exc.msg} at column {exc.colno}"
    except RecursionError:
        return None, "malformed JSON: nested too deeply to parse"
    if _SURROGATE_ESCAPE.search(text):
        where = find_lone_surrogate(value)
        if where is not None:
            return None, (
                f"contains a {where}; the JSON has a \\uD800-\\uDFFF escape that is not half "
                "of a pair: fix the producer or drop the record"
            )
    if expect_object and not isinstance(value, dict):
        return None, f"record is a JSON {json_type(value)}, expected an object"
    return value, None


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages: ``object``, ``list``, ``string``, ...

    >>> json_type([1]), json_type(2.5), json_type(None)
    ('list', 'number', 'null')
    """
    return _JSON_TYPES.get(type(value), type(value).__name__)


def read_jsonl(
    source: str | os.PathLike[str] | BinaryIO, *, expect_object: bool = True
) -> Iterator[JsonlRecord]:
    """Every non-blank line of a JSONL file as ``(line, record, reason, raw)``, never raising for content.

    Exactly one of ``record`` and ``reason`` is ``None``. Invalid UTF-8, malformed JSON,
    lone surrogates and (with ``expect_object``) values that are not JSON objects each give
    a reason for that line, and reading goes on with the next one; a binary file gives one
    reason per ``\\n``-separated chunk. The caller quarantines or reports them.

    Args:
        source: A path, or a binary stream (e.g. ``sys.stdin.buffer``; not closed here).
        expect_object: Refuse lines whose JSON value is not an object.

    Yields:
        :class:`JsonlRecord` in file order; blank lines are skipped but counted in ``line``.

    Raises:
        DataError: The file cannot be opened or read (missing, a folder, permissions, I/O
            error); the message names the path and the cause.
    """
    if isinstance(source, (str, os.PathLike)):
        try:
            fh: BinaryIO = open(source, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise DataError(f"cannot read {os.fspath(source)!r}: {exc.strerror or exc}") from None
        with fh:
            yield from _records(fh, expect_object)
    else:
        if isinstance(source, io.TextIOBase):
            raise TypeError("read_jsonl needs a binary stream; pass `stream.buffer` or open 'rb'")
        yield from _records(source, expect_object)


def _records(fh: BinaryIO, expect_object: bool) -> Iterator[JsonlRecord]:
    for number, raw in enumerate(iter_lines(fh), 1):
        body = raw.rstrip(b"\r\n")
        if not body.strip():
            continue
        value, reason = parse_jsonl_line(body, expect_object=expect_object, first=number == 1)
        yield JsonlRecord(number, value, reason, body)


# --------------------------------------------------------------------------- writing


def printable(data: bytes | str) -> str:
    """Text that can always be encoded as UTF-8: bad bytes become ``\\xff``, lone surrogates ``\\ud800``.

    For quoting a raw line in a quarantine entry or an error message.

    >>> printable(b"caf\\xe9 ok")
    'caf\\\\xe9 ok'
    >>> printable("x\\ud800")
    'x\\\\ud800'
    """
    if isinstance(data, bytes):
        return data.decode("utf-8", "backslashreplace")
    return data.encode("utf-8", "backslashreplace").decode("utf-8")


def json_line(value: Any) -> bytes:
    """``value`` as one JSON line (UTF-8, ending in ``\\n``) that never fails to encode.

    Non-ASCII text stays readable; a lone surrogate inside a string is written as its JSON
    escape (``\\ud800``), so the line parses back to exactly ``value``. Values JSON has no
    type for are written with ``str``.

    >>> json_line({"t": "é\\ud800"})
    b'{"t": "\\xc3\\xa9\\\\ud800"}\\n'
    """
    text = json.dumps(value, ensure_ascii=False, default=str) + "\n"
    # Outside strings json.dumps writes ASCII only, so every surrogate it leaves is inside a
    # string, where backslashreplace's "\udXXX" is exactly the JSON escape of that code unit.
    return text.encode("utf-8", "backslashreplace")


_FLAGS = {
    "r": os.O_RDONLY,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
    "r+": os.O_RDWR,
    "w+": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND,
    "x+": os.O_RDWR | os.O_CREAT | os.O_EXCL,
}


def open_private(
    path: str | os.PathLike[str], mode: str = "w", *, encoding: str | None = None
) -> IO[Any]:
    """``open(path, mode)``, with the file created as, or changed to, mode 0600 (owner only).

    For anything that can hold raw records, keys or generator state: quarantine files,
    checkpoints, key files. The file is created with mode 0600 (never briefly wider, whatever
    the umask), and an existing file is changed to 0600 before anything is written to it.

    Args:
        path: The file.
        mode: An ``open`` mode: ``w``, ``a``, ``x``, ``r+``, ``w+``, ``a+``, ``x+``, with ``b``
            for bytes (``wb``, ``r+b``, ...).
        encoding: Text encoding for text modes (default UTF-8).

    Raises:
        PermissionError: The file exists and belongs to another user (its mode cannot be
            changed); nothing is written to it.
    """
    binary = "b" in mode
    base = mode.replace("b", "").replace("t", "")
    if base not in _FLAGS:
        raise ValueError(f"mode {mode!r} is not supported; use one of {sorted(_FLAGS)} (+ 'b')")
    flags = _FLAGS[base] | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, 0o600)
    try:
        _make_private(fd, path)
        if binary:
            return os.fdopen(fd, mode)
        return os.fdopen(fd, mode, encoding=encoding or "utf-8")
    except BaseException:
        os.close(fd)
        raise


def _make_private(fd: int, path: str | os.PathLike[str]) -> None:
    if stat.S_IMODE(os.fstat(fd).st_mode) == 0o600:
        return
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
        else:  # pragma: no cover - Windows before Python 3.13
            os.chmod(path, 0o600)
    except PermissionError:
        raise PermissionError(
            f"{os.fspath(path)!r} exists and its mode cannot be set to 0600 (another user "
            "owns it); remove it or choose another path"
        ) from None


def write_private(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically, as a file of mode 0600.

    The data goes to a temporary file (0600) in the same folder, is flushed to disk, and
    replaces ``path`` in one step: readers see the old or the new file, never half of one.
    ``str`` is written as UTF-8.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def warn_if_readable_by_others(
    path: str | os.PathLike[str], what: str = "key file", *, logger: logging.Logger | None = None
) -> bool:
    """Log a warning when group or other users have any access to ``path``; True if it warned.

    Args:
        path: A key file (secret key, pseudonym key, signing key).
        what: What the file is, for the message (``"watermark key file"``).
        logger: Where to log (default: this module's logger).

    The message names the file and its mode and says how to fix it; it never reads the key.
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return False
    if not mode & 0o077:
        return False
    access = "readable" if mode & 0o044 else "writable" if mode & 0o022 else "accessible"
    (logger or log).warning(
        "%s %s is %s by other users (mode %04o); run `chmod 600 %s`",
        what,
        os.fspath(path),
        access,
        mode,
        os.fspath(path),
    )
    return True
