"""The explicit registry of watermark schemes, by name.

A :class:`SchemeSpec` is everything the package knows about a scheme: its name, its config
class, its implementation and the PRF family its keys derive their randomness from (two
schemes that share uniforms, like ``exp`` and ``exp-edit``, share a family). Keys hold raw
parameters and ask the spec to validate them; the spec builds the scheme for a key. The
registry imports neither keys nor scheme modules at import time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from safeguard.errors import ConfigError

if TYPE_CHECKING:
    from safeguard.watermark.schemes.base import Scheme, SchemeConfig, SchemeKey

__all__ = ["SchemeSpec", "get_scheme", "list_schemes", "register_scheme"]


@dataclass(frozen=True)
class SchemeSpec:
    """A registered scheme: its name, config class, implementation class and PRF family."""

    name: str
    config_cls: type[SchemeConfig]
    scheme_cls: type[Scheme]
    prf_family: str = ""

    def __post_init__(self) -> None:
        if not self.prf_family:
            object.__setattr__(self, "prf_family", self.name)

    def validate_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The scheme's full parameters (defaults filled in); bad ones raise ``ConfigError``."""
        return self.config_cls.from_dict(dict(params)).to_dict()

    def build(self, key: SchemeKey) -> Scheme:
        """The scheme for ``key``: its parameters validated once, its PRF keys derived."""
        config = self.config_cls.from_dict(dict(key.params))
        return self.scheme_cls(key, config, prf_family=self.prf_family)


_REGISTRY: dict[str, SchemeSpec] = {}


def register_scheme(
    name: str,
    config_cls: type[SchemeConfig],
    scheme_cls: type[Scheme],
    *,
    prf_family: str | None = None,
    force: bool = False,
) -> None:
    """Register a scheme under ``name``; re-registering needs ``force=True``.

    Args:
        name: The scheme's name in keys and policies.
        config_cls: Its frozen config dataclass.
        scheme_cls: Its implementation, built as ``scheme_cls(key, config, prf_family=...)``.
        prf_family: Name its PRF keys are derived under (default ``name``); schemes that must
            read the same uniforms from one secret share a family.
        force: Replace an existing registration.
    """
    if name in _REGISTRY and not force:
        raise ConfigError(
            f"watermark scheme {name!r} is already registered; pass force=True to replace it"
        )
    _REGISTRY[name] = SchemeSpec(name, config_cls, scheme_cls, prf_family or name)


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
