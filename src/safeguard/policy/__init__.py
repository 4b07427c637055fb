"""YAML policies that configure the four safeguards (plain data; imports no framework).

A policy file has a ``schema_version`` and up to four sections (``pii``,
``privacy``, ``watermark``, ``provenance``); each safeguard turns its own
section into its own config (``Scrubber.from_policy``, ``DPConfig.from_policy``,
``WatermarkKey.generate(**policy.watermark...)``).
"""

from __future__ import annotations

from safeguard.policy.model import Policy, load_policy, policy_digest

__all__ = ["Policy", "load_policy", "policy_digest"]
