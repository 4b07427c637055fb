from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import safeguard.provenance

PKG = Path(safeguard.provenance.__file__).parent


def test_import_loads_no_heavy_framework() -> None:
    code = (
        "import sys, safeguard, safeguard.provenance\n"
        "heavy = [m for m in ('torch', 'transformers', 'opacus', 'presidio_analyzer', 'spacy', "
        "'safeguard.pii', 'safeguard.privacy', 'safeguard.watermark') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_no_module_imports_another_safeguard() -> None:
    banned = ("safeguard.pii", "safeguard.privacy", "safeguard.watermark")
    for path in PKG.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(banned), f"{path.name} imports {name}"
