"""The ``watermark:`` section of a policy."""

from __future__ import annotations

from pydantic import Field

from safeguard.policy._base import Section


class WatermarkPolicy(Section):
    """How text is watermarked and how detection decides.

    Attributes:
        scheme: A registered scheme name (built in: ``gumbel``, ``exp``, ``exp-edit``; a
            scheme added with ``safeguard.watermark.register_scheme`` is accepted too). The
            policy layer knows no schemes: the name is checked against
            ``safeguard.watermark.list_schemes()`` where it is used (``WatermarkKey.from_policy``,
            ``safeguard policy validate``).
        params: Scheme parameters (e.g. ``context_width`` for gumbel, ``key_len`` for exp).
        false_positive_rate: The rate at which detection flags unwatermarked text.
        required: Whether generation under this policy must be watermarked.
    """

    scheme: str = Field(default="gumbel", pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    params: dict[str, float | int | str] = Field(default_factory=dict)
    false_positive_rate: float = Field(default=1e-3, gt=0.0, lt=1.0)
    required: bool = True
