"""What the demo measured (:class:`DemoSummary`) and its plain-text table (:func:`format_table`)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DemoSummary", "format_table"]


@dataclass
class DemoSummary:
    """What the demo measured; ``steps`` maps each step to its seconds."""

    out_dir: str
    notes: int = 0
    pii_found: int = 0
    pii_by_entity: dict[str, int] = field(default_factory=dict)
    records_changed: int = 0
    quarantined: int = 0
    measured_recall: float = float("nan")
    measured_precision: float = float("nan")
    epsilon_spent: float = float("nan")
    epsilon_budget: float = float("nan")
    delta: float = float("nan")
    dp_steps: int = 0
    unit_of_privacy: str = ""
    watermark_key_id: str = ""
    watermark_scheme: str = ""
    fpr: float = float("nan")
    watermarked_p_values: list[float] = field(default_factory=list)
    plain_p_values: list[float] = field(default_factory=list)
    chain_verified: bool = False
    chain_detail: str = ""
    tamper_detected: bool = False
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def flagged_watermarked(self) -> int:
        return sum(p <= self.fpr for p in self.watermarked_p_values)

    @property
    def flagged_plain(self) -> int:
        return sum(p <= self.fpr for p in self.plain_p_values)

    @property
    def ok(self) -> bool:
        return (
            self.chain_verified
            and self.tamper_detected
            and self.flagged_watermarked == len(self.watermarked_p_values) > 0
            # A single false flag at the policy's rate is what the rate means (8 texts at 1e-4:
            # probability ~8e-4); two or more would be a defect (~3e-7).
            and self.flagged_plain <= 1
            and self.epsilon_spent <= self.epsilon_budget
        )


def format_table(summary: DemoSummary) -> str:
    """The demo's summary as a plain-text table."""

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[len(ordered) // 2] if ordered else float("nan")

    top = sorted(summary.pii_by_entity.items(), key=lambda kv: -kv[1])[:4]
    rows = [
        (
            "PII/PHI found and removed",
            f"{summary.pii_found} spans in {summary.records_changed}/{summary.notes} notes "
            f"({', '.join(f'{k} {v}' for k, v in top)}); {summary.quarantined} quarantined",
        ),
        (
            "PII recall, measured",
            f"recall {summary.measured_recall:.3f}, precision {summary.measured_precision:.3f} on "
            f"this demo's {summary.notes} template notes (an upper bound, not a guarantee; "
            "unseen text: benchmarks/RESULTS.md)",
        ),
        (
            "privacy budget",
            f"epsilon spent {summary.epsilon_spent:.2f} of {summary.epsilon_budget:g} "
            f"(delta {summary.delta:.1e}, {summary.dp_steps} DP-SGD steps, unit: {summary.unit_of_privacy})",
        ),
        ("watermark", f"{summary.watermark_scheme}, key {summary.watermark_key_id}"),
        (
            "watermarked texts",
            f"{summary.flagged_watermarked}/{len(summary.watermarked_p_values)} flagged at FPR "
            f"{summary.fpr:g}; median p = {median(summary.watermarked_p_values):.1e}",
        ),
        (
            "plain texts",
            f"{summary.flagged_plain}/{len(summary.plain_p_values)} flagged; median p = "
            f"{median(summary.plain_p_values):.2f}",
        ),
        (
            "provenance chain",
            "verified: raw -> scrubbed -> DP training -> model -> text"
            if summary.chain_verified
            else f"NOT verified: {summary.chain_detail}",
        ),
        (
            "tampering",
            "detected (one record removed from the scrubbed data)"
            if summary.tamper_detected
            else "NOT detected",
        ),
        ("artifacts", summary.out_dir),
        ("time", f"{sum(summary.steps.values()):.0f} s"),
    ]
    width = max(len(a) for a, _ in rows)
    lines = [f"{a.ljust(width)} | {b}" for a, b in rows]
    rule = "-" * width + "-+-" + "-" * max(len(b) for _, b in rows)
    return "\n".join([rule, *lines, rule])
