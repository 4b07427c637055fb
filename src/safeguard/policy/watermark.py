"""The ``watermark:`` section of a policy."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from safeguard.policy._base import Section


class WatermarkPolicy(Section):
    """How text is watermarked and how detection decides.

    Attributes:
        scheme: A registered scheme name (``gumbel``, ``exp``, ``exp-edit``).
        params: Scheme parameters (e.g. ``context_width`` for gumbel, ``key_len`` for exp).
        false_positive_rate: The rate at which detection flags unwatermarked text.
        required: Whether generation under this policy must be watermarked.
    """

    scheme: Literal["gumbel", "exp", "exp-edit"] = "gumbel"
    params: dict[str, float | int | str] = Field(default_factory=dict)
    false_positive_rate: float = Field(default=1e-3, gt=0.0, lt=1.0)
    required: bool = True
