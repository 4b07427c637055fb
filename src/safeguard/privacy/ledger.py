"""The privacy budget ledger: an append-only, hash-chained record of every DP step.

A ledger is a JSON-lines file. Each line is one entry; each entry carries the
SHA-256 of the previous entry (``prev``) and its own (``hash``, over the
canonical JSON of the entry without ``hash``), so removing, reordering or
editing any entry breaks the chain and :meth:`BudgetLedger.load` refuses the
file. Entries are ``run_start`` (a fine-tune begins: configuration, dataset
size, unit of privacy, δ, library versions) and ``step`` (one noisy optimizer
step: sample rate q, noise multiplier σ, clipping bound C). A ledger can hold
several runs over the same data; ε always counts all of them.

ε comes from the accountant the run uses (Opacus' PRV accountant by default,
imported lazily); the RDP bound from :mod:`safeguard.privacy.accounting` is
reported next to it as a cross-check, and the Gaussian-DP μ as well.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeguard.errors import BudgetExceededError, ConfigError, VerificationError
from safeguard.privacy import accounting
from safeguard.privacy.chain import (
    GENESIS,
    LEDGER_VERSION,
    LedgerAnchor,
    canonical,
    entry_hash,
    read_verified,
    verify_entries,
    write_json_atomic,
)
from safeguard.privacy.epsilon import compute_epsilon, max_steps

__all__ = [
    "GENESIS",
    "LEDGER_VERSION",
    "BudgetLedger",
    "LedgerAnchor",
    "LedgerSummary",
    "compute_epsilon",
    "library_versions",
]

log = logging.getLogger(__name__)


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a DP run depends on (those installed)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("safeguard", "opacus", "torch", "transformers", "peft", "numpy", "scipy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


@dataclass(frozen=True, kw_only=True)
class LedgerSummary:
    """What a ledger says, in one object (the core of the auditor report).

    Attributes:
        accountant: The accountant ε comes from.
        epsilon: ε spent at ``delta`` by that accountant.
        epsilon_rdp: ε by the RDP accountant (cross-check; an upper bound, ≥ PRV's up to
            discretisation error).
        gdp_mu: Gaussian-DP μ (CLT approximation).
        delta: δ.
        steps: Noisy steps taken over all runs.
        runs: Number of runs recorded.
        history: ``(σ, q, steps)`` triples.
        unit_of_privacy: The unit the guarantee protects.
        max_epsilon: Hard budget, if any.
        entries: Number of ledger entries summarised.
        head: Hash of the newest entry (with ``entries``, the ledger's anchor).
        seeded_noise: Some run drew its noise and batches from a fixed seed; whoever knows
            the seed can regenerate the noise, so the DP guarantee does not hold.
    """

    accountant: str
    epsilon: float
    epsilon_rdp: float
    gdp_mu: float
    delta: float
    steps: int
    runs: int
    history: tuple[tuple[float, float, int], ...]
    unit_of_privacy: str
    max_epsilon: float | None
    entries: int = 0
    head: str = GENESIS
    seeded_noise: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "accountant": self.accountant,
            "epsilon": self.epsilon,
            "epsilon_rdp": self.epsilon_rdp,
            "gdp_mu": self.gdp_mu,
            "delta": self.delta,
            "steps": self.steps,
            "runs": self.runs,
            "history": [list(h) for h in self.history],
            "unit_of_privacy": self.unit_of_privacy,
            "max_epsilon": self.max_epsilon,
            "entries": self.entries,
            "head": self.head,
            "seeded_noise": self.seeded_noise,
            "dp_guarantee": "void: seeded noise" if self.seeded_noise else "holds",
        }


class BudgetLedger:
    """Append-only, hash-chained record of the DP steps taken on one dataset.

    Args:
        path: JSON-lines file the ledger is appended to as it grows (``None``: in memory
            until :meth:`save`). An existing file is loaded and verified first.
        anchor_files: JSON files rewritten (atomically) with the ledger's
            :class:`LedgerAnchor` after every entry, so that a later truncation of ``path``
            is caught by :meth:`check_anchor` (see :mod:`safeguard.privacy.anchors`).

    Raises:
        VerificationError: ``path`` exists but its chain does not verify.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        anchor_files: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        self._entries: list[dict[str, Any]] = []
        self._path = Path(path) if path is not None else None
        self._eps_cache: dict[tuple[Any, ...], float] = {}
        self._anchor_files = [Path(a) for a in anchor_files]
        if self._path is not None and self._path.exists() and self._path.stat().st_size > 0:
            self._entries = read_verified(self._path)

    # ------------------------------------------------------------------ reading
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BudgetLedger:
        """Read and verify a ledger file; :class:`VerificationError` if it is corrupt or missing."""
        p = Path(path)
        if not p.exists():
            raise VerificationError(
                f"ledger {str(p)!r} does not exist; refusing to resume without it (ε would restart at 0)"
            )
        ledger = cls()  # in memory, no anchor files
        ledger._entries = read_verified(p)
        return ledger

    @classmethod
    def from_lines(cls, text: str) -> BudgetLedger:
        """Parse and verify a ledger from its JSON-lines text."""
        entries = [json.loads(line) for line in text.splitlines() if line.strip()]
        verify_entries(entries, source="<text>")
        ledger = cls()
        ledger._entries = entries
        return ledger

    # ------------------------------------------------------------------ writing
    def _append(self, entry: dict[str, Any]) -> dict[str, Any]:
        entry = dict(entry)
        entry["index"] = len(self._entries)
        entry["prev"] = self._entries[-1]["hash"] if self._entries else GENESIS
        entry["hash"] = entry_hash(entry)
        self._entries.append(entry)
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._path.open("a", encoding="utf-8") as fh:
                fh.write(canonical(entry).decode("utf-8") + "\n")
                fh.flush()
        self.write_anchors()
        return entry

    def add_anchor_file(self, path: str | os.PathLike[str]) -> None:
        """Keep ``path`` up to date with this ledger's anchor from now on (written now too)."""
        p = Path(path)
        if p not in self._anchor_files:
            self._anchor_files.append(p)
        self.write_anchors()

    def write_anchors(self) -> None:
        """Rewrite every anchor file with the current :meth:`anchor` (atomic replace)."""
        if not self._anchor_files or self.steps() == 0:
            return  # nothing spent, nothing to anchor (a failed first attempt leaves no trace)
        body = self.anchor().to_dict()
        if self._path is not None:
            body["ledger"] = str(self._path.resolve())
        for target in self._anchor_files:
            write_json_atomic(target, body)

    def start_run(
        self,
        *,
        config: dict[str, Any],
        dataset_size: int,
        delta: float,
        delta_source: str,
        sample_rate: float,
        noise_multiplier: float,
        max_grad_norm: float,
        accountant: str,
        unit_of_privacy: str,
        max_epsilon: float | None,
        planned_steps: int | None,
        dataset_fingerprint: str | None = None,
        seeded_noise: bool = False,
    ) -> None:
        """Record the start of a fine-tune.

        ``seeded_noise`` marks a run whose noise and batches come from a fixed seed (a
        reproducibility experiment): the entry then says the DP guarantee is void.

        Raises:
            ConfigError: The run's δ, accountant or unit of privacy differ from the earlier
                runs in this ledger (their budgets cannot be combined), or the dataset
                size changed.
        """
        previous = self.runs()
        if previous:
            first = previous[0]
            for name, value in (("delta", delta), ("unit_of_privacy", unit_of_privacy)):
                if first[name] != value:
                    raise ConfigError(
                        f"this ledger's earlier runs used {name}={first[name]!r} but this run uses "
                        f"{value!r}; one budget needs one {name}: use the same value or a new ledger"
                    )
            if first["dataset_size"] != dataset_size:
                log.warning(
                    "dataset size changed from %d to %d since the ledger's first run; the ledger "
                    "composes both runs as if on the same data",
                    first["dataset_size"],
                    dataset_size,
                )
        self._append(
            {
                "kind": "run_start",
                "ledger_version": LEDGER_VERSION,
                "run": len(previous),
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "config": config,
                "dataset_size": int(dataset_size),
                "dataset_fingerprint": dataset_fingerprint,
                "delta": float(delta),
                "delta_source": delta_source,
                "sample_rate": float(sample_rate),
                "noise_multiplier": float(noise_multiplier),
                "max_grad_norm": float(max_grad_norm),
                "accountant": accountant,
                "unit_of_privacy": unit_of_privacy,
                "max_epsilon": max_epsilon,
                "planned_steps": planned_steps,
                "noise_source": "fixed seed" if seeded_noise else "os entropy",
                "dp_guarantee_void": bool(seeded_noise),
                "versions": library_versions(),
            }
        )

    def record_step(
        self, *, sample_rate: float, noise_multiplier: float, max_grad_norm: float
    ) -> None:
        """Record one noisy optimizer step (called by the training wrappers)."""
        if not self._entries:
            raise ConfigError("record a run_start (BudgetLedger.start_run) before any step")
        self._append(
            {
                "kind": "step",
                "step": self.steps() + 1,
                "sample_rate": float(sample_rate),
                "noise_multiplier": float(noise_multiplier),
                "max_grad_norm": float(max_grad_norm),
            }
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the whole ledger to ``path`` (JSON lines) and return the path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(
            "".join(canonical(e).decode("utf-8") + "\n" for e in self._entries), encoding="utf-8"
        )
        os.replace(tmp, p)
        return p

    def to_lines(self) -> str:
        """The ledger as JSON-lines text."""
        return "".join(canonical(e).decode("utf-8") + "\n" for e in self._entries)

    # ------------------------------------------------------------------ queries
    @property
    def path(self) -> Path | None:
        return self._path

    def entries(self) -> Iterator[dict[str, Any]]:
        """Copies of the entries, oldest first."""
        for e in self._entries:
            yield dict(e)

    def runs(self) -> list[dict[str, Any]]:
        """The ``run_start`` entries."""
        return [dict(e) for e in self._entries if e["kind"] == "run_start"]

    def steps(self) -> int:
        """Number of noisy steps over all runs."""
        return sum(1 for e in self._entries if e["kind"] == "step")

    def head(self) -> str:
        """Hash of the newest entry (pins the whole ledger)."""
        return self._entries[-1]["hash"] if self._entries else GENESIS

    def anchor(self) -> LedgerAnchor:
        """This ledger's :class:`LedgerAnchor` (entry count and head) now."""
        return LedgerAnchor(entries=len(self._entries), head=self.head())

    def extends(self, anchor: LedgerAnchor) -> bool:
        """Whether this ledger is ``anchor``'s ledger or a continuation of it."""
        if anchor.entries == 0:
            return True
        if len(self._entries) < anchor.entries:
            return False
        return self._entries[anchor.entries - 1]["hash"] == anchor.head

    def check_anchor(self, anchor: LedgerAnchor, *, source: str) -> None:
        """Raise :class:`VerificationError` unless this ledger extends ``anchor``.

        Args:
            anchor: A head recorded earlier (checkpoint, model folder, manifest, registry).
            source: Where the anchor came from, for the message.
        """
        if self.extends(anchor):
            return
        where = str(self._path) if self._path is not None else "the ledger"
        if len(self._entries) < anchor.entries:
            raise VerificationError(
                f"{where} has {len(self._entries)} entries but {source} recorded {anchor.entries} "
                f"(head {anchor.head[:12]}): the ledger was truncated or replaced, so ε would be "
                "undercounted. Restore the full ledger (a checkpoint keeps a copy) rather than train on"
            )
        raise VerificationError(
            f"{where} differs from the history {source} recorded (entry {anchor.entries - 1} has "
            f"hash {self._entries[anchor.entries - 1]['hash'][:12]}, anchor {anchor.head[:12]}): it is "
            "another ledger, or one that was rewritten; use the ledger that history belongs to"
        )

    def seeded_noise(self) -> bool:
        """Whether any run in this ledger drew its DP noise from a fixed seed."""
        return any(
            bool(e.get("dp_guarantee_void")) for e in self._entries if e["kind"] == "run_start"
        )

    def verify(self) -> None:
        """Re-check the hash chain; :class:`VerificationError` if it is broken."""
        verify_entries(self._entries, source=str(self._path or "<memory>"))

    def history(self) -> list[tuple[float, float, int]]:
        """``(σ, q, steps)`` triples over all runs, consecutive equal settings merged."""
        return accounting.compress_history(
            (e["noise_multiplier"], e["sample_rate"], 1)
            for e in self._entries
            if e["kind"] == "step"
        )

    def _first_run(self) -> dict[str, Any]:
        runs = self.runs()
        if not runs:
            raise ConfigError("the ledger is empty: no run has been recorded")
        return runs[0]

    @property
    def delta(self) -> float:
        return float(self._first_run()["delta"])

    @property
    def accountant(self) -> str:
        return str(self.runs()[-1]["accountant"])

    @property
    def max_epsilon(self) -> float | None:
        value = self.runs()[-1]["max_epsilon"] if self.runs() else None
        return None if value is None else float(value)

    @property
    def unit_of_privacy(self) -> str:
        return str(self._first_run()["unit_of_privacy"])

    def epsilon_spent(self, delta: float | None = None, *, accountant: str | None = None) -> float:
        """ε spent so far at ``delta`` (default: the ledger's δ) by the run's accountant.

        Args:
            delta: δ to report ε at.
            accountant: Override the accountant (``prv``, ``rdp`` or ``gdp``).
        """
        if not self._entries:
            return 0.0
        d = self.delta if delta is None else float(delta)
        acc = accountant or self.accountant
        history = self.history()
        key = (acc, d, tuple(history))
        if key not in self._eps_cache:
            self._eps_cache[key] = compute_epsilon(acc, history, d)
        return self._eps_cache[key]

    def gdp_mu(self) -> float:
        """Gaussian-DP μ of the history (CLT approximation, Dong et al. 2022)."""
        return accounting.gdp_mu(self.history())

    def epsilon_if(
        self,
        *,
        noise_multiplier: float,
        sample_rate: float,
        extra_steps: int,
        delta: float | None = None,
    ) -> float:
        """ε after ``extra_steps`` more steps at (σ, q), without recording them."""
        d = self.delta if delta is None else float(delta)
        history = [*self.history(), (noise_multiplier, sample_rate, extra_steps)]
        return compute_epsilon(self.accountant, history, d)

    def steps_allowed(
        self,
        *,
        noise_multiplier: float,
        sample_rate: float,
        max_epsilon: float,
        hint: int | None = None,
    ) -> int:
        """The most further steps at (σ, q) that keep ε ≤ ``max_epsilon`` (search over steps).

        Args:
            noise_multiplier: σ of the further steps.
            sample_rate: q of the further steps.
            max_epsilon: The budget.
            hint: A guess (e.g. the planned number of steps) that speeds the search up.

        Returns 0 when even one more step would exceed the budget.
        """
        return max_steps(
            self.accountant,
            self.history(),
            self.delta,
            noise_multiplier=noise_multiplier,
            sample_rate=sample_rate,
            max_epsilon=max_epsilon,
            hint=hint,
        )

    def fits_budget(
        self, *, noise_multiplier: float, sample_rate: float, steps: int, max_epsilon: float
    ) -> bool:
        """Whether ``steps`` further steps at (σ, q) keep ε ≤ ``max_epsilon``."""
        return (
            self.epsilon_if(
                noise_multiplier=noise_multiplier, sample_rate=sample_rate, extra_steps=steps
            )
            <= max_epsilon
        )

    def check_budget(
        self, *, noise_multiplier: float, sample_rate: float, max_epsilon: float | None
    ) -> None:
        """Raise :class:`BudgetExceededError` if one more step would exceed ``max_epsilon``."""
        if max_epsilon is None:
            return
        nxt = self.epsilon_if(
            noise_multiplier=noise_multiplier, sample_rate=sample_rate, extra_steps=1
        )
        if nxt > max_epsilon:
            raise BudgetExceededError(
                f"the next step would spend ε = {nxt:.4f} > budget {max_epsilon:g} "
                f"(δ = {self.delta:g}, {self.accountant} accountant, {self.steps()} steps taken); "
                "the step was not taken. Raise `max_epsilon` in the policy only if the data owner agrees, "
                "or stop training here"
            )

    def summary(self, delta: float | None = None) -> LedgerSummary:
        """Everything an auditor needs, computed now."""
        d = self.delta if delta is None else float(delta)
        history = self.history()
        return LedgerSummary(
            accountant=self.accountant,
            epsilon=self.epsilon_spent(d),
            epsilon_rdp=accounting.rdp_epsilon(history, d) if history else 0.0,
            gdp_mu=accounting.gdp_mu(history),
            delta=d,
            steps=self.steps(),
            runs=len(self.runs()),
            history=tuple(history),
            unit_of_privacy=self.unit_of_privacy,
            max_epsilon=self.max_epsilon,
            entries=len(self._entries),
            head=self.head(),
            seeded_noise=self.seeded_noise(),
        )

    def epsilon_curve(
        self, points: int = 30, delta: float | None = None
    ) -> list[tuple[int, float]]:
        """``(steps, ε)`` pairs along the ledger, for plots (``points`` evaluations)."""
        d = self.delta if delta is None else float(delta)
        per_step = [
            (e["noise_multiplier"], e["sample_rate"], 1)
            for e in self._entries
            if e["kind"] == "step"
        ]
        total = len(per_step)
        if total == 0:
            return [(0, 0.0)]
        marks = sorted({max(1, round(total * i / points)) for i in range(1, points + 1)})
        return [(0, 0.0)] + [(k, compute_epsilon(self.accountant, per_step[:k], d)) for k in marks]

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"BudgetLedger(entries={len(self._entries)}, steps={self.steps()}, head={self.head()[:12]})"
