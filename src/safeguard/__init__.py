"""safeguard: Responsible-AI safeguards for teams that build on foundation models.

Subpackages (imported on demand, so ``import safeguard`` stays light and loads
no torch, transformers, opacus or presidio):

- :mod:`safeguard.watermark`: distortion-free sampling watermarks and detectors.
- :mod:`safeguard.privacy`: DP-SGD fine-tuning through Opacus, with a budget ledger.
- :mod:`safeguard.pii`: PII/PHI scrubbing of training data on Presidio.
- :mod:`safeguard.provenance`: signed manifests chaining data, training, model and text.
- :mod:`safeguard.policy`: YAML policies that configure all four.
"""

from __future__ import annotations

from safeguard.errors import SafeguardError

__version__ = "0.1.0"

__all__ = ["SafeguardError", "__version__"]
