"""Watermark schemes, one module each, registered by name (see :mod:`.registry`)."""

from safeguard.watermark.schemes.registry import (
    SchemeSpec,
    get_scheme,
    list_schemes,
    register_scheme,
)

__all__ = ["SchemeSpec", "get_scheme", "list_schemes", "register_scheme"]
