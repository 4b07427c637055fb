"""The package's layers hold: every ``import`` in ``src/safeguard`` points down (or sideways
where allowed), checked on the source with :mod:`ast` (imports inside functions and
``TYPE_CHECKING`` blocks count too).

The layers, from DESIGN.md ("cli on top; the four safeguards side by side, never importing
each other; policy and errors at the bottom") and the imports as they stand:

====== ========================================== ===========================================
layer  modules                                    may import
====== ========================================== ===========================================
top    ``safeguard.cli``, ``safeguard.__main__``  anything
above  ``safeguard.scale``, ``safeguard.serve``,  the safeguards and the bottom (not ``cli``)
       ``safeguard.demo``
guards ``safeguard.watermark``, ``.privacy``,     the bottom only: never another safeguard,
       ``.pii``, ``.provenance``                  nor anything above
bottom ``safeguard`` (its ``__init__``),          the bottom only
       ``safeguard.errors``, ``safeguard._files``,
       ``safeguard.policy``
====== ========================================== ===========================================

So ``safeguard.cli`` is imported by nobody but ``cli`` itself and ``__main__`` (the demo is
handed the CLI's entry point by ``safeguard demo``, it never imports it). Which heavy
frameworks each package loads is checked by ``test_import_hygiene.py``, not here.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import safeguard

ROOT = Path(safeguard.__file__).parent

TOP = {"cli", "__main__"}
ABOVE = {"scale", "serve", "demo"}
SAFEGUARDS = {"watermark", "privacy", "pii", "provenance"}
BOTTOM = {"", "errors", "_files", "policy"}  # "" is the package's own __init__

ALLOWED = {
    **{part: TOP | ABOVE | SAFEGUARDS | BOTTOM for part in TOP},
    **{part: ABOVE | SAFEGUARDS | BOTTOM for part in ABOVE},
    **{part: {part} | BOTTOM for part in SAFEGUARDS},
    **{part: BOTTOM for part in BOTTOM},
}

#: Known violations in files owned elsewhere: (importer, imported) -> why it is tolerated.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    """The layer part a ``safeguard`` module belongs to: ``safeguard.pii.scrubber`` -> ``pii``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_of(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every ``safeguard`` module the source of ``module`` imports, relative imports resolved."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                found.add(".".join([*base, *([node.module] if node.module else [])]))
            elif node.module:
                found.add(node.module)
    return {m for m in found if m == "safeguard" or m.startswith("safeguard.")}


def imported_modules(path: Path) -> set[str]:
    return imports_of(
        path.read_text(encoding="utf-8"), module_name(path), is_package=path.name == "__init__.py"
    )


@functools.cache
def _edges() -> tuple[tuple[str, str, str], ...]:
    """(importer module, importer part, imported part) for each cross-part import."""
    edges = []
    for path in sorted(ROOT.rglob("*.py")):
        importer = module_name(path)
        for target in sorted(imported_modules(path)):
            if part_of(importer) != part_of(target):
                edges.append((importer, part_of(importer), part_of(target)))
    return tuple(edges)


def _violations() -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for importer, src, dst in _edges():
        if src not in ALLOWED:
            raise AssertionError(f"{importer}: part {src!r} is in no layer; add it to this test")
        if dst not in ALLOWED[src]:
            out.setdefault((src, dst), []).append(importer)
    return out


def test_every_part_is_in_a_layer() -> None:
    parts = {part_of(module_name(p)) for p in ROOT.rglob("*.py")}
    assert parts <= set(ALLOWED), sorted(parts - set(ALLOWED))


def test_no_import_points_up_or_across() -> None:
    violations = {k: v for k, v in _violations().items() if k not in KNOWN_VIOLATIONS}
    assert not violations, "\n".join(
        f"{src} -> {dst}: {', '.join(mods)}" for (src, dst), mods in sorted(violations.items())
    )


def test_cli_is_imported_only_by_cli_and_main() -> None:
    importers = {importer for importer, src, dst in _edges() if dst == "cli" and src != "cli"}
    assert importers <= {"safeguard.__main__"}, sorted(importers)


def test_the_four_safeguards_do_not_import_each_other() -> None:
    crossing = [(i, dst) for i, src, dst in _edges() if src in SAFEGUARDS and dst in SAFEGUARDS]
    assert not crossing, crossing


def test_the_checker_sees_lazy_relative_and_type_checking_imports() -> None:
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "import safeguard.errors\n"
        "from . import steps\n"
        "from ..pii import scrubber\n"
        "if TYPE_CHECKING:\n"
        "    from safeguard.watermark import keys\n"
        "def late():\n"
        "    from safeguard.cli.main import main\n"
    )
    assert imports_of(source, "safeguard.demo.run") == {
        "safeguard.errors",
        "safeguard.demo",
        "safeguard.pii",
        "safeguard.watermark",
        "safeguard.cli.main",
    }
    assert imports_of("from . import model\n", "safeguard.policy", is_package=True) == {
        "safeguard.policy"
    }
