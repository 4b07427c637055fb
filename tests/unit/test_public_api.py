"""Each package's ``__all__`` is exactly what it exports, and every name in it resolves.

In the way of httpx's ``test_exported_members``: the public names of a package are the
names in its namespace (``dir(package)``, which includes lazy ``__getattr__`` exports
listed by the package's ``__dir__``) that do not start with ``_``, leaving out

- modules (subpackages, submodules, and modules such as ``importlib`` imported for use),
- ``annotations`` (``from __future__ import annotations``),
- typing helpers imported from :mod:`typing` / :mod:`collections.abc` (``Any``,
  ``TYPE_CHECKING``, ``Callable``...), which are used, not exported.

Every package whose ``__init__`` sets ``__all__`` is checked, and ``safeguard.errors``.
That set must equal ``__all__`` (less its dunder names, such as ``__version__``, which
must still resolve). A mismatch in a package owned elsewhere is marked
``xfail(strict=True)`` with the reason, so fixing the package turns the mark into a
failure that asks for its removal.
"""

from __future__ import annotations

import ast
import collections.abc
import importlib
import types
import typing
from pathlib import Path

import pytest

import safeguard

_MISSING = object()

#: Known mismatches: package -> what is wrong (none now; a strict xfail per entry).
KNOWN_MISMATCHES: dict[str, str] = {}


def _defines_all(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return True
    return False


def packages_with_all() -> list[str]:
    """Every package under ``safeguard`` whose ``__init__`` sets ``__all__``, and
    ``safeguard.errors`` (the errors module is imported like a package)."""
    root = Path(safeguard.__file__).parent
    found = {"safeguard.errors"}
    for init in root.rglob("__init__.py"):
        if _defines_all(init):
            found.add(".".join(init.parent.relative_to(root.parent).parts))
    return sorted(found)


PACKAGES = packages_with_all()


def _is_typing_helper(name: str, value: object) -> bool:
    return any(getattr(mod, name, _MISSING) is value for mod in (typing, collections.abc))


def public_names(module: types.ModuleType) -> set[str]:
    """The names ``module`` exports, by the rule in this file's docstring."""
    names = set()
    namespace = vars(module)
    for name in dir(module):
        if name.startswith("_") or name == "annotations":
            continue
        if name in namespace:  # a lazy name (listed by __dir__ only) is never a module
            value = namespace[name]
            if isinstance(value, types.ModuleType) or _is_typing_helper(name, value):
                continue
        names.add(name)
    return names


def _cases() -> list[object]:
    return [
        pytest.param(
            name,
            id=name,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_MISMATCHES[name])]
            if name in KNOWN_MISMATCHES
            else [],
        )
        for name in PACKAGES
    ]


@pytest.mark.parametrize("package", _cases())
def test_all_matches_public_names(package: str) -> None:
    module = importlib.import_module(package)
    declared = {name for name in module.__all__ if not name.startswith("_")}
    exported = public_names(module)
    assert len(module.__all__) == len(set(module.__all__)), "__all__ lists a name twice"
    assert exported == declared, (
        f"exported but not in __all__: {sorted(exported - declared)}; "
        f"in __all__ but not exported: {sorted(declared - exported)}"
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_in_all_resolves(package: str) -> None:
    """Including lazy ``__getattr__`` names (these import their adapter module)."""
    module = importlib.import_module(package)
    missing = []
    for name in module.__all__:
        try:
            getattr(module, name)
        except AttributeError:
            missing.append(name)
    assert not missing, f"{package}.__all__ names {missing}, which do not resolve"


def test_the_public_packages_are_covered() -> None:
    for name in ("safeguard", "safeguard.errors", "safeguard.watermark", "safeguard.privacy",
                 "safeguard.pii", "safeguard.provenance", "safeguard.policy"):  # fmt: skip
        assert name in PACKAGES
    assert set(KNOWN_MISMATCHES) <= set(PACKAGES)


def test_public_names_rule() -> None:
    """The rule itself: modules, typing helpers, lazy names and underscores."""
    mod = types.ModuleType("example")
    exec(
        "from __future__ import annotations\n"
        "import importlib\n"
        "from typing import TYPE_CHECKING, Any\n"
        "from collections.abc import Callable\n"
        "def f(): pass\n"
        "_private = 1\n"
        "CONSTANT = 2\n"
        "def __getattr__(name): return 3\n"
        "def __dir__(): return sorted(set(globals()) | {'lazy'})\n",
        mod.__dict__,
    )
    mod.__dict__["sub"] = types.ModuleType("example.sub")
    assert public_names(mod) == {"f", "CONSTANT", "lazy"}
