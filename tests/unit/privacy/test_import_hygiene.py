"""`import safeguard.privacy` must not load torch, opacus or transformers."""

from __future__ import annotations

import subprocess
import sys


def test_import_is_light():
    code = (
        "import sys, safeguard.privacy as p; from safeguard.privacy import DPConfig, BudgetLedger;"
        "import safeguard.privacy.audit, safeguard.privacy.report;"
        "bad=[m for m in ('torch','opacus','transformers','peft') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
