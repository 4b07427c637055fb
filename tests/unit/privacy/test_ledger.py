"""The hash-chained budget ledger, the hard stop arithmetic and the auditor report."""

from __future__ import annotations

import itertools
import json

import pytest

from safeguard.errors import BudgetExceededError, ConfigError, VerificationError
from safeguard.privacy import BudgetLedger
from safeguard.privacy.ledger import compute_epsilon
from safeguard.privacy.report import build_report, plot_epsilon, write_report


def _ledger(path=None, steps=5, sigma=1.0, q=0.01, delta=1e-5, max_epsilon=None, accountant="prv"):
    led = BudgetLedger(path)
    led.start_run(
        config={"noise_multiplier": sigma},
        dataset_size=1000,
        delta=delta,
        delta_source="configured",
        sample_rate=q,
        noise_multiplier=sigma,
        max_grad_norm=1.0,
        accountant=accountant,
        unit_of_privacy="one example",
        max_epsilon=max_epsilon,
        planned_steps=steps,
    )
    for _ in range(steps):
        led.record_step(sample_rate=q, noise_multiplier=sigma, max_grad_norm=1.0)
    return led


def test_epsilon_matches_accountant_and_crosschecks(tmp_path):
    led = _ledger(tmp_path / "l.jsonl", steps=300)
    assert led.steps() == 300
    assert led.history() == [(1.0, 0.01, 300)]
    s = led.summary()
    assert s.epsilon == pytest.approx(1.08, abs=0.005)
    assert s.epsilon_rdp == pytest.approx(1.45, abs=0.005)
    assert s.epsilon <= s.epsilon_rdp
    assert s.gdp_mu > 0
    assert led.epsilon_spent(accountant="gdp") == pytest.approx(0.83, abs=0.005)


def test_file_is_appended_and_reloads(tmp_path):
    p = tmp_path / "l.jsonl"
    led = _ledger(p, steps=3)
    assert len(p.read_text().splitlines()) == 4
    again = BudgetLedger.load(p)
    assert again.head() == led.head() and again.steps() == 3
    reopened = BudgetLedger(p)  # appends to the existing ledger
    assert reopened.steps() == 3


@pytest.mark.parametrize("attack", ["edit", "delete", "reorder", "truncate_json"])
def test_tampering_is_refused(tmp_path, attack):
    p = tmp_path / "l.jsonl"
    _ledger(p, steps=4)
    lines = p.read_text().splitlines()
    if attack == "edit":
        e = json.loads(lines[2])
        e["noise_multiplier"] = 5.0
        lines[2] = json.dumps(e)
    elif attack == "delete":
        del lines[2]
    elif attack == "reorder":
        lines[2], lines[3] = lines[3], lines[2]
    else:
        lines[-1] = lines[-1][:-5]
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(VerificationError, match=r"refusing|chain|hash|JSON"):
        BudgetLedger.load(p)
    with pytest.raises(VerificationError):
        BudgetLedger(p)


def test_budget_spans_runs_and_rejects_a_different_delta():
    led = _ledger(steps=100)
    first = led.epsilon_spent()
    led.start_run(
        config={},
        dataset_size=1000,
        delta=1e-5,
        delta_source="configured",
        sample_rate=0.01,
        noise_multiplier=2.0,
        max_grad_norm=1.0,
        accountant="prv",
        unit_of_privacy="one example",
        max_epsilon=None,
        planned_steps=100,
    )
    for _ in range(100):
        led.record_step(sample_rate=0.01, noise_multiplier=2.0, max_grad_norm=1.0)
    assert len(led.runs()) == 2
    assert led.history() == [(1.0, 0.01, 100), (2.0, 0.01, 100)]
    assert led.epsilon_spent() > first
    with pytest.raises(ConfigError, match="delta"):
        led.start_run(
            config={},
            dataset_size=1000,
            delta=1e-6,
            delta_source="configured",
            sample_rate=0.01,
            noise_multiplier=2.0,
            max_grad_norm=1.0,
            accountant="prv",
            unit_of_privacy="one example",
            max_epsilon=None,
            planned_steps=1,
        )


def test_steps_allowed_is_the_exact_boundary():
    led = _ledger(steps=10, sigma=1.0, q=0.05, delta=1e-5, accountant="rdp")
    k = led.steps_allowed(noise_multiplier=1.0, sample_rate=0.05, max_epsilon=4.0)
    assert k > 0
    hist = led.history()
    assert compute_epsilon("rdp", [*hist, (1.0, 0.05, k)], 1e-5) <= 4.0
    assert compute_epsilon("rdp", [*hist, (1.0, 0.05, k + 1)], 1e-5) > 4.0
    assert (
        led.steps_allowed(noise_multiplier=1.0, sample_rate=0.05, max_epsilon=4.0, hint=k // 2) == k
    )
    assert led.steps_allowed(noise_multiplier=1.0, sample_rate=0.05, max_epsilon=1e-6) == 0
    with pytest.raises(BudgetExceededError, match="not taken"):
        led.check_budget(noise_multiplier=1.0, sample_rate=0.05, max_epsilon=1e-6)


def test_report_states_every_fact_and_plot_is_written(tmp_path):
    led = _ledger(steps=50, max_epsilon=8.0, q=0.05)
    report = build_report(led)
    for key in (
        "unit_of_privacy",
        "sampler",
        "accountant",
        "epsilon",
        "delta",
        "sample_rate",
        "noise_multiplier",
        "max_grad_norm",
        "steps",
        "versions",
        "ledger_head",
        "epsilon_rdp_crosscheck",
        "gdp_mu",
    ):
        assert key in report
    assert report["unit_of_privacy"] == "one example"
    assert report["steps"] == 50 and report["ledger_head"] == led.head()
    out = write_report(led, tmp_path / "r.json")
    assert json.loads(out.read_text())["epsilon"] == pytest.approx(led.epsilon_spent())
    png = plot_epsilon(led, tmp_path / "eps.png", points=5)
    assert png.stat().st_size > 1000
    curve = led.epsilon_curve(points=5)
    assert curve[0] == (0, 0.0) and curve[-1][0] == 50
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(curve))
