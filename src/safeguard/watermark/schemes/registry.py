"""The explicit registry of watermark schemes, by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from safeguard.errors import ConfigError

if TYPE_CHECKING:
    from safeguard.watermark.schemes.base import Scheme, SchemeConfig

__all__ = ["SchemeSpec", "get_scheme", "list_schemes", "register_scheme"]


@dataclass(frozen=True)
class SchemeSpec:
    """A registered scheme: its name, config class and implementation class."""

    name: str
    config_cls: type[SchemeConfig]
    scheme_cls: type[Scheme]


_REGISTRY: dict[str, SchemeSpec] = {}


def register_scheme(
    name: str, config_cls: type[SchemeConfig], scheme_cls: type[Scheme], *, force: bool = False
) -> None:
    """Register a scheme under ``name``; re-registering needs ``force=True``."""
    if name in _REGISTRY and not force:
        raise ConfigError(
            f"watermark scheme {name!r} is already registered; pass force=True to replace it"
        )
    _REGISTRY[name] = SchemeSpec(name, config_cls, scheme_cls)


def get_scheme(name: str) -> SchemeSpec:
    """Look a scheme up by name; an unknown name raises and lists the known ones."""
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown watermark scheme {name!r}; known schemes: {', '.join(list_schemes())}"
        ) from None


def list_schemes() -> list[str]:
    """Names of the registered schemes."""
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    # Importing the modules registers the built-in schemes exactly once.
    from safeguard.watermark.schemes import exp, gumbel  # noqa: F401
