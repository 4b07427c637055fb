"""The report of ``safeguard eval``: ``report.json``, a Markdown summary and PNG plots.

:func:`~safeguard.watermark.evaluation.runner.run_eval` returns the report as plain data
(a JSON-ready dict); this module turns it into files. It needs only numpy, and matplotlib
for the plots, so a saved ``report.json`` can be re-rendered without torch:

    report = json.loads(Path("eval-full/report.json").read_text())
    Path("eval-full/report.md").write_text(format_markdown(report))
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "HEADLINE_ATTACK",
    "PERMUTATION_SCHEMES",
    "UNICODE_ATTACKS",
    "attack_label",
    "format_markdown",
    "write_report",
]

log = logging.getLogger(__name__)

#: Schemes whose p-values come from a permutation test (resolution 1e-3 in the study).
PERMUTATION_SCHEMES = ("exp", "exp-edit")
#: Attacks that edit characters, which detection-side normalisation undoes.
UNICODE_ATTACKS = ("homoglyphs", "zero-width", "whitespace")
#: The attack of the headline column and the robustness target.
HEADLINE_ATTACK = ("substitute", 0.3)


def attack_label(name: str, rate: float, normalize: bool = True) -> str:
    """The key of an attack in a report, e.g. ``"substitute 0.3"`` or ``"homoglyphs 0.3 (no normalisation)"``.

    >>> attack_label("roundtrip", 0.0), attack_label("zero-width", 0.3, normalize=False)
    ('roundtrip', 'zero-width 0.3 (no normalisation)')
    """
    label = name if name == "roundtrip" else f"{name} {rate:g}"
    if name in UNICODE_ATTACKS and not normalize:
        label += " (no normalisation)"
    return label


def write_report(report: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and the PNG plots into ``out``; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "report.md"}
    paths["json"].write_text(
        json.dumps(report, indent=2, allow_nan=False, default=_json_default) + "\n"
    )
    paths["markdown"].write_text(format_markdown(report))
    paths.update(_plots(report, out))
    return paths


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _fmt_tokens(entry: dict[str, Any], cap: int) -> str:
    med, (lo, hi) = entry["median"], entry["ci"]
    if med is None:
        return f"> {cap}"
    lo_s = "?" if lo is None else f"{lo:.3g}"
    hi_s = f"> {cap}" if hi is None else f"{hi:.3g}"
    return f"{med:.3g} [{lo_s}, {hi_s}]"


def _fmt_g(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _fmt_rate(r: dict[str, Any]) -> str:
    return f"{r['rate']:.2f} ({r['k']}/{r['n']})"


def format_markdown(report: dict[str, Any]) -> str:
    """The Markdown summary of a report (the tables of ``report.md``)."""
    schemes = list(report["schemes"])
    lines = [
        *_intro_lines(report),
        *_power_table(report, schemes),
        *_per_key_lines(report, schemes),
        *_adversary_lines(report.get("adversary")),
        *_attack_table(report, schemes),
        *_quality_table(report, schemes),
        *_entropy_table(report.get("entropy_sweep")),
        *_localization_lines(report),
        "",
    ]
    return "\n".join(lines)


def _intro_lines(report: dict[str, Any]) -> list[str]:
    cfg = report["config"]
    return [
        "# Watermark evaluation",
        "",
        f"Model: {report['model']['name']} (vocabulary {report['model']['vocab_size']:,}); "
        f"unwatermarked samples have a mean next-token entropy (at the sampling temperature) of "
        f"{report['model']['entropy_plain']:.2f} nats. {cfg['new_tokens']} new tokens after "
        f"{cfg['prompt_tokens']}-token prompts (starts of held-out human passages), temperature "
        f"{cfg['temperature']:g}, full-vocabulary sampling. Tokens to detect: first prefix "
        f"(step {cfg['step']}) with p ≤ {cfg['alpha']:g}; median over texts with a 95% bootstrap "
        "interval (texts never detected count as beyond the length). Run time "
        f"{report['seconds']:.0f} s.",
    ]


def _power_table(report: dict[str, Any], schemes: Sequence[str]) -> list[str]:
    """Power, robustness to the headline attack and calibration: one row per scheme."""
    cfg = report["config"]
    levels = cfg["levels"]
    lines = [
        "",
        "## Power, robustness and calibration",
        "",
        "| scheme | distortion-free | texts | median tokens to p ≤ "
        f"{cfg['alpha']:g} | same, 30% substituted | "
        + " | ".join(f"TPR @ {lv:g}" for lv in levels)
        + " | TPR @ 0.01, 30% substituted | null FPR "
        + " / ".join(f"{lv:g}" for lv in levels)
        + " (n) | AUC |",
        "|---|---|---|---|---|" + "---|" * len(levels) + "---|---|---|",
    ]
    lines += [_power_row(report, s) for s in schemes]
    lines += [
        "",
        "Null: human continuations of held-out passages tested under many keys; the cell is the "
        "number of p-values at or below each level. ✗ marks a count above what the level "
        "allows (the 95% Clopper–Pearson interval lies above it), (low) one below the "
        "interval (a conservative test). Permutation-tested schemes resolve p-values down to "
        "1e-3, so their lower levels read n/a.",
    ]
    return lines


def _by_level(rows: Sequence[dict[str, Any]]) -> dict[float, dict[str, Any]]:
    return {round(math.log10(r["level"]), 3): r for r in rows}


def _power_row(report: dict[str, Any], s: str) -> str:
    cfg = report["config"]
    levels = cfg["levels"]
    e = report["schemes"][s]
    ttd = e["tokens_to_detect"]
    tprs = _by_level(e["tpr"])
    null = report["null"].get(s, {})
    checks = _by_level(null.get("checks", []))
    null_cells = []
    for lv in levels:
        c = checks.get(round(math.log10(lv), 3))
        null_cells.append(
            "n/a"
            if c is None
            else f"{c['false_positives']}"
            + ("" if c["within"] else " ✗" if not c["consistent"] else " (low)")
        )
    sub = report["attacks"].get(attack_label(*HEADLINE_ATTACK), {}).get(s)
    sub_tpr = _fmt_rate(sub["tpr"][0]) if sub else "—"
    tpr_cells = []
    for lv in levels:
        r = tprs.get(round(math.log10(lv), 3))
        if r is None or (s in PERMUTATION_SCHEMES and lv < 1e-3):
            tpr_cells.append("n/a")
        else:
            tpr_cells.append(_fmt_rate(r))
    return (
        f"| {s} | {'yes' if e['distortion_free'] else 'no'} | {e['texts']} | "
        f"{_fmt_tokens(ttd['clean'], cfg['new_tokens'])} | "
        f"{_fmt_tokens(ttd['substitute 0.3'], cfg['new_tokens'])} | "
        + " | ".join(tpr_cells)
        + f" | {sub_tpr} | {' / '.join(null_cells)} ({null.get('n', 0):,}) | "
        f"{e.get('roc', {}).get('auc', float('nan')):.3f} |"
    )


def _attack_table(report: dict[str, Any], schemes: Sequence[str]) -> list[str]:
    lines = [
        "",
        "## Attacks (TPR at FPR 0.01)",
        "",
        "| attack | " + " | ".join(schemes) + " |",
        "|---|" + "---|" * len(schemes),
    ]
    for label, row in report["attacks"].items():
        lines.append(
            f"| {label} | "
            + " | ".join(_fmt_rate(row[s]["tpr"][0]) if s in row else "—" for s in schemes)
            + " |"
        )
    return lines


def _quality_table(report: dict[str, Any], schemes: Sequence[str]) -> list[str]:
    lines = [
        "",
        "## Quality (watermarked vs unwatermarked samples from the same prompts)",
        "",
        f"Plain sampling: perplexity {report['quality']['plain']['perplexity_mean']:.2f}, "
        f"self-BLEU {report['quality']['plain']['self_bleu']:.3f}. Tests at level {report['config']['alpha']:g}.",
        "",
        "| scheme | perplexity | log-perplexity difference [CI] | p | self-BLEU difference [CI] | p | moved? |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in schemes:
        q = report["quality"][s]
        t, b = q["log_perplexity_test"], q["self_bleu_test"]
        moved = "yes" if (t.get("moved") or b.get("moved")) else "no"
        lines.append(
            f"| {s} | {q['perplexity_mean']:.2f} | {t['difference']:+.3f} [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}] | "
            f"{t['p_value']:.3g} | {b['difference']:+.3f} [{b['ci_low']:+.3f}, {b['ci_high']:+.3f}] | {b['p_value']:.3g} | {moved} |"
        )
    diverse = [
        s
        for s in schemes
        if s in ("exp", "exp-edit") and report["quality"][s]["self_bleu_test"].get("moved")
    ]
    if diverse:
        lines += [
            "",
            f"{' and '.join(diverse)}: every text under one key reads the same cyclic key sequence "
            "from a random shift, so texts share key positions and resemble each other (self-BLEU "
            "rises) unless `key_len` is much longer than a text, at a detection cost that grows "
            "with it. gumbel's context memory keeps texts under one key independent.",
        ]
    return lines


def _entropy_table(sweep: dict[str, Any] | None) -> list[str]:
    if not sweep:
        return []
    lines = [
        "",
        "## Tokens to detect against entropy (synthetic next-token source)",
        "",
        "| entropy (nats) | " + " | ".join(sweep["schemes"]) + " |",
        "|---|" + "---|" * len(sweep["schemes"]),
    ]
    cap = max(sweep["lengths"])
    for i, level in enumerate(sweep["levels"]):
        lines.append(
            f"| {level:g} | "
            + " | ".join(_fmt_tokens(rows[i], cap) for rows in sweep["schemes"].values())
            + " |"
        )
    return lines


def _localization_lines(report: dict[str, Any]) -> list[str]:
    loc = report.get("localization")
    if not loc:
        return []
    return [
        "",
        "## Localisation (gumbel)",
        "",
        f"{loc['documents']} mixed documents (one watermarked span of ~{loc['watermarked_tokens']} tokens in human "
        f"text): span found in {loc['found_share']:.0%}, boundary error (start + end, tokens) median "
        f"{_fmt_g(loc['boundary_error_median'])}, 90th percentile {_fmt_g(loc['boundary_error_p90'])}. "
        f"{loc['documents']} human-only documents: {loc['human_documents_with_spans']} with a reported span "
        f"(family-wise level {report['config']['alpha']:g}).",
    ]


_COLORS = {"gumbel": "C0", "exp": "C4", "exp-edit": "C1", "kgw": "C2", "synthid": "C3"}


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _labelled(fig: Any, ax: Any, title: str, ylabel: str, xlabel: str | None = None) -> Any:
    """``fig`` with its axis labels, title and legend set."""
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    return fig


def _plots(report: dict[str, Any], out: Path) -> dict[str, Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        log.warning(
            "matplotlib is not installed; no plots written (pip install 'safeguard[plots]')"
        )
        return {}
    paths: dict[str, Path] = {
        "roc": _save(plt, _plot_roc(plt, report), out / "roc.png"),
        "tokens_to_detect": _save(plt, _plot_tokens(plt, report), out / "tokens_to_detect.png"),
    }
    if report["attacks"]:
        paths["attacks"] = _save(plt, _plot_attacks(plt, report), out / "attacks.png")
    if report.get("entropy_sweep"):
        paths["entropy"] = _save(plt, _plot_entropy(plt, report), out / "entropy.png")
    return paths


def _plot_roc(plt: Any, report: dict[str, Any]) -> Any:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for s, e in report["schemes"].items():
        for key, style in (("roc", "-"), ("roc_substitute_0.3", "--")):
            if key in e:
                roc = e[key]
                floor = 0.5 / max(report["null"].get(s, {}).get("n", 1), 1)
                ax.plot(
                    np.maximum(roc["fpr"], floor),
                    roc["tpr"],
                    style,
                    drawstyle="steps-post",
                    color=_COLORS[s],
                    label=f"{s}{'' if key == 'roc' else ', 30% substituted'} (AUC {roc['auc']:.3f})",
                )
    ax.set_xscale("log")
    return _labelled(
        fig,
        ax,
        f"ROC at {report['config']['new_tokens']} tokens",
        "true-positive rate",
        "false-positive rate on human text (0 drawn at half of 1/n)",
    )


def _plot_tokens(plt: Any, report: dict[str, Any]) -> Any:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    lengths = report["lengths"]
    for s, e in report["schemes"].items():
        ttd = e["tokens_to_detect"]
        ax.plot(lengths, ttd["clean"]["curve"], "-", color=_COLORS[s], label=f"{s}")
        ax.plot(
            lengths,
            ttd["substitute 0.3"]["curve"],
            "--",
            color=_COLORS[s],
            label=f"{s}, 30% substituted",
        )
    ax.set_ylim(0, 1.02)
    ylabel = f"share of texts with p ≤ {report['config']['alpha']:g}"
    return _labelled(fig, ax, "Tokens to detect", ylabel, "tokens")


def _plot_attacks(plt: Any, report: dict[str, Any]) -> Any:
    schemes = list(report["schemes"])
    labels = list(report["attacks"])
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(labels) + 2), 4.5))
    width = 0.8 / len(schemes)
    x = np.arange(len(labels))
    for i, s in enumerate(schemes):
        vals = [report["attacks"][lab][s]["tpr"][0]["rate"] for lab in labels]
        ax.bar(x + i * width, vals, width, color=_COLORS[s], label=s)
    ax.set_xticks(x + 0.4 - width / 2, labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylim(0, 1.02)
    ylabel = f"TPR at FPR {report['config']['levels'][0]:g}"
    return _labelled(fig, ax, "Robustness to attacks", ylabel)


def _plot_entropy(plt: Any, report: dict[str, Any]) -> Any:
    sweep = report["entropy_sweep"]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    cap = max(sweep["lengths"])
    for s, rows in sweep["schemes"].items():
        med = [r["median"] if r["median"] is not None else np.nan for r in rows]
        ax.plot(sweep["levels"], med, "o-", color=_COLORS[s], label=s)
    ax.set_yscale("log")
    return _labelled(
        fig,
        ax,
        "Power against entropy (synthetic source)",
        f"median tokens to p ≤ {report['config']['alpha']:g} (missing: > {cap})",
        "entropy of the next-token distribution (nats)",
    )


def _spread_row(label: str, r: dict[str, Any]) -> str:
    return (
        f"| {label} | {r['level']:g} | {r['keys']} × {r['texts']} | {r['mean_rate']:.3g} | "
        f"{r['sd_rate']:.3g} ({r['binomial_sd']:.3g}) | {r['worst_rate']:.3g} "
        f"({r['worst_ratio']:.2g}×) | {r['dispersion_p']:.2g} |"
    )


def _adversary_lines(adversary: dict[str, Any] | None) -> list[str]:
    """gumbel under one key on a near-duplicate stream, and the forger's results."""
    if not adversary:
        return []
    lines: list[str] = []
    stream = adversary.get("stream")
    if stream:
        rows = [_spread_row("stateless", r) for r in stream["stateless"]]
        rows += [_spread_row("detection memory", r) for r in stream["memory"]]
        lines += [
            "",
            f"gumbel per fixed key on a stream of near-duplicates ({stream['texts']} texts of "
            f"{stream['snippets']}): stateless, texts that share snippets share scored pairs "
            "and the per-key rates spread wider than a binomial; through a detection memory "
            "each pair is scored once per key (texts with no new pair cannot be flagged, so "
            "the mean may sit below the level).",
            "",
            "| detection | level | keys × texts | mean rate | sd across keys (binomial) | "
            "worst key | dispersion p |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    forgery = adversary.get("forgery")
    if forgery:
        lines += [
            "",
            f"Forgery with detection access (gumbel, hill-climbing, {forgery['length']}-token "
            f"texts, flagged at {forgery['level']:g}; {forgery['blind_rate']:.2f} is the chance "
            "that as many independent random texts get one flagged). Confirmed: the key "
            "holder's stateless detector flags the forged text too.",
            "",
            "| oracle | keys | queries per key | flagged | confirmed |",
            "|---|---|---|---|---|",
            *(
                f"| {r['oracle']} | {r['keys']} | {r['queries_per_key']} | {r['flagged']} | "
                f"{r['confirmed']} |"
                for r in forgery["rows"]
            ),
        ]
    return lines


def _per_key_lines(report: dict[str, Any], schemes: Sequence[str]) -> list[str]:
    """The false-positive rate under each fixed key (a deployment's view), per scheme."""
    rows = []
    for s in schemes:
        for r in report["null"].get(s, {}).get("per_key", []):
            rows.append(_spread_row(s, r))
    if not rows:
        return []
    return [
        "",
        "Per fixed key (each key tested on the same human texts): a calibrated detector's "
        "per-key rates scatter like a binomial; a small dispersion p means they vary more, "
        "so some deployed keys flag human text more often than the level says.",
        "",
        "| scheme | level | keys × texts | mean rate | sd across keys (binomial) | worst key | "
        "dispersion p |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
