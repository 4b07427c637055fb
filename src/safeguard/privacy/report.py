"""Auditor-facing outputs of a ledger: a JSON report and a plot of ε against steps."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safeguard.errors import missing_dependency
from safeguard.privacy.ledger import BudgetLedger

__all__ = ["REPORT_VERSION", "build_report", "plot_epsilon", "write_report"]

REPORT_VERSION = 1


def build_report(ledger: BudgetLedger, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-serialisable report an auditor reads (NIST SP 800-226's list of facts).

    It states the unit of privacy, the sampler, q, σ, C, steps, δ, ε, the accountant and
    library versions, with the RDP ε as a cross-check and the ledger's head hash so that
    the report can be tied to the exact ledger it summarises.
    """
    summary = ledger.summary()
    runs = ledger.runs()
    last = runs[-1]
    report: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "unit_of_privacy": summary.unit_of_privacy,
        "mechanism": "DP-SGD: per-unit gradient clipping to norm C, Gaussian noise of std σ·C on the sum",
        "sampler": "poisson"
        if last["config"].get("poisson_sampling", True)
        else "shuffled fixed-size (approximate accounting)",
        "accountant": summary.accountant,
        "epsilon": summary.epsilon,
        "delta": summary.delta,
        "delta_source": runs[0]["delta_source"],
        "epsilon_rdp_crosscheck": summary.epsilon_rdp,
        "gdp_mu": summary.gdp_mu,
        "max_epsilon": summary.max_epsilon,
        "steps": summary.steps,
        "dp_guarantee": "void: a run drew its noise from a fixed seed"
        if summary.seeded_noise
        else "holds",
        "noise_source": "fixed seed (anyone who knows it can regenerate the noise)"
        if summary.seeded_noise
        else "the operating system's entropy (seeds never stored)",
        "sample_rate": last["sample_rate"],
        "noise_multiplier": last["noise_multiplier"],
        "max_grad_norm": last["max_grad_norm"],
        "dataset_size": last["dataset_size"],
        "history": [
            {"noise_multiplier": s, "sample_rate": q, "steps": k} for s, q, k in summary.history
        ],
        "runs": [
            {
                "run": r["run"],
                "time": r["time"],
                "sample_rate": r["sample_rate"],
                "noise_multiplier": r["noise_multiplier"],
                "max_grad_norm": r["max_grad_norm"],
                "planned_steps": r["planned_steps"],
                "dp_guarantee_void": bool(r.get("dp_guarantee_void", False)),
            }
            for r in runs
        ],
        "versions": last["versions"],
        "ledger_head": ledger.head(),
        "ledger_entries": len(ledger),
    }
    if extra:
        report.update(extra)
    return report


def write_report(
    ledger: BudgetLedger, path: str | os.PathLike[str], *, extra: dict[str, Any] | None = None
) -> Path:
    """Write :func:`build_report` as indented JSON to ``path``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(
        json.dumps(build_report(ledger, extra=extra), indent=2, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    return p


def plot_epsilon(ledger: BudgetLedger, path: str | os.PathLike[str], *, points: int = 30) -> Path:
    """Plot ε (the run's accountant, and RDP as a cross-check) against steps, to ``path`` (PNG/SVG)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise missing_dependency("matplotlib", "dp") from exc
    curve = ledger.epsilon_curve(points=points)
    from safeguard.privacy.ledger import compute_epsilon

    per_step = [(s, q, k) for s, q, k in ledger.history()]
    expanded: list[tuple[float, float, int]] = []
    for s, q, k in per_step:
        expanded.extend([(s, q, 1)] * k)
    rdp = [(n, compute_epsilon("rdp", expanded[:n], ledger.delta)) for n, _ in curve]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([n for n, _ in curve], [e for _, e in curve], label=f"{ledger.accountant} (reported)")
    ax.plot([n for n, _ in rdp], [e for _, e in rdp], "--", label="rdp (cross-check)")
    if ledger.max_epsilon is not None:
        ax.axhline(ledger.max_epsilon, color="red", linewidth=0.8, label="budget")
    ax.set_xlabel("steps")
    ax.set_ylabel(f"ε at δ = {ledger.delta:g}")
    ax.set_title(f"privacy spent (unit: {ledger.unit_of_privacy})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p)
    plt.close(fig)
    return p
