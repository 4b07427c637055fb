"""`import safeguard` (and the pure parts of the watermark package) load no heavy framework."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "opacus", "presidio_analyzer", "presidio_anonymizer", "spacy")


@pytest.mark.parametrize(
    "module",
    [
        "safeguard",
        "safeguard.errors",
        "safeguard.policy",
        "safeguard.watermark",
        "safeguard.cli.main",
    ],
)
def test_import_loads_no_framework(module):
    code = (
        f"import sys, {module}\n"
        f"heavy = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r}]\n"
        "print(','.join(sorted(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} imported {out.stdout.strip()}"


def test_watermark_detection_runs_without_torch():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any import of torch now fails\n"
        "from safeguard.watermark import WatermarkKey, Watermarker\n"
        "wm = Watermarker(WatermarkKey.generate('gumbel'))\n"
        "print(wm.detect(list(range(2, 80))).num_scored)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 0
