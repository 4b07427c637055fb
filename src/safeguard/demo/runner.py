"""How the demo runs ``safeguard`` verbs: timed, numbered steps, each verb's output logged.

The demo sits below the CLI (``safeguard.cli`` imports the demo, never the other way), so
it is handed the way to run a verb: a :data:`Verbs` callable that takes the arguments after
``safeguard`` and returns the exit code, writing to stdout/stderr as the command does.
``safeguard demo`` passes the CLI's own entry point (verbs run in its process, so libraries
load once); without one, :func:`subprocess_verbs` runs ``python -m safeguard`` in a
subprocess, as a user's shell would.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

__all__ = ["StepRunner", "Verbs", "demo_registry", "subprocess_verbs"]

#: Runs one ``safeguard`` command line (the arguments after ``safeguard``); returns its exit code.
Verbs = Callable[[list[str]], int]


def subprocess_verbs(argv: list[str]) -> int:
    """Run ``python -m safeguard ARGV...`` in a subprocess; its output goes to this process's
    (possibly redirected) stdout and stderr."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        [sys.executable, "-m", "safeguard", *argv],
        capture_output=True,
        env=env,
        check=False,
    )
    sys.stdout.write(done.stdout.decode("utf-8", errors="replace"))
    sys.stderr.write(done.stderr.decode("utf-8", errors="replace"))
    return done.returncode


@contextlib.contextmanager
def demo_registry(out: Path, model_dp: Path) -> Iterator[None]:
    """A budget registry of the demo's own, started afresh with the demo's model folder.

    The demo's notes are fictional and regenerated identically on every run, so each run is
    a new story: its DP budget must not meet the previous run's (which the per-dataset
    registry and the anchors beside the model would rightly refuse) nor a user's real
    ``~/.safeguard`` registry.
    """
    home = out / ".safeguard-home"
    for folder in (home, model_dp):
        if folder.exists():
            shutil.rmtree(folder)
    before = os.environ.get("SAFEGUARD_HOME")
    os.environ["SAFEGUARD_HOME"] = str(home)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SAFEGUARD_HOME", None)
        else:
            os.environ["SAFEGUARD_HOME"] = before


class StepRunner:
    """Runs verbs, logs their output under ``OUT/logs``, times steps, and reports progress."""

    def __init__(
        self,
        out: Path,
        total: int,
        echo: Callable[[str], None],
        verbs: Verbs | None = None,
    ) -> None:
        self.out = out
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.total = total
        self.done = 0
        self.echo = echo
        self.verbs: Verbs = verbs or subprocess_verbs
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """``[i/total] name ...`` on entry, ``done in N s`` on success; the time is kept."""
        self.done += 1
        start = time.perf_counter()
        self.echo(f"[{self.done}/{self.total}] {name} ...")
        try:
            yield
        finally:
            self.times[name] = time.perf_counter() - start
        self.echo(f"      done in {self.times[name]:.1f} s")

    def verb(self, name: str, argv: Sequence[str], ok: Sequence[int] = (0,)) -> tuple[int, str]:
        """Run ``safeguard ARGV...``, append the command and its output to ``logs/NAME.log``.

        Returns:
            The exit code and the verb's stdout.

        Raises:
            RuntimeError: The exit code is not in ``ok``; the message ends with the log.
        """
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = self.verbs(list(argv))
            except SystemExit as exc:
                rc = int(exc.code or 0)
        text = f"$ safeguard {' '.join(argv)}\n{out.getvalue()}{err.getvalue()}(exit {rc})\n"
        with open(self.logs / f"{name}.log", "a", encoding="utf-8") as fh:
            fh.write(text)
        if rc not in ok:
            raise RuntimeError(
                f"step {name!r} failed (exit {rc}); see {self.logs / (name + '.log')}:\n{text[-2000:]}"
            )
        return rc, out.getvalue()
