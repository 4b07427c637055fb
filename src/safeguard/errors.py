"""The error tree of safeguard.

Every error raised on purpose by the library derives from :class:`SafeguardError`.
Leaves also derive from the builtin that best describes them, so callers can
catch either ``SafeguardError`` or, say, ``ValueError``.

Messages name the argument, the bad value, the valid range and the fix. They
never contain secrets: keys are referred to by ``key_id`` only.

The CLI maps :class:`UsageError` subclasses (bad input, bad arguments) to exit
code 2 and :class:`VerificationError` (a failed check) to exit code 1.
"""

from __future__ import annotations

__all__ = [
    "BudgetExceededError",
    "ConfigError",
    "DataError",
    "DependencyError",
    "DetectionError",
    "KeyFileError",
    "PolicyError",
    "PrivacyError",
    "SafeguardError",
    "SignatureError",
    "TokenizerMismatchError",
    "UsageError",
    "VerificationError",
    "WatermarkError",
    "missing_dependency",
]


class SafeguardError(Exception):
    """Root of every error that safeguard raises on purpose."""


class UsageError(SafeguardError, ValueError):
    """Bad input or arguments from the caller (CLI exit code 2)."""


class ConfigError(UsageError):
    """A configuration value is missing, of the wrong type or out of range."""


class PolicyError(ConfigError):
    """A policy file is malformed, unknown or violates its schema."""


class DataError(UsageError):
    """Input data cannot be read or does not have the expected shape."""


class DependencyError(SafeguardError, ImportError):
    """An optional dependency is missing; the message says which extra to install."""


class WatermarkError(SafeguardError):
    """Base class of watermark errors."""


class KeyFileError(WatermarkError, UsageError):
    """A key file is missing, corrupt, of the wrong scheme or unreadable."""


class TokenizerMismatchError(WatermarkError, UsageError):
    """A tokenizer differs from the one the key was bound to."""


class DetectionError(WatermarkError, UsageError):
    """Detection cannot be carried out on this input (empty, out-of-vocabulary ids, ...)."""


class PrivacyError(SafeguardError):
    """Base class of differential-privacy errors."""


class BudgetExceededError(PrivacyError, RuntimeError):
    """A training step would spend more privacy budget than the policy allows."""


class VerificationError(SafeguardError):
    """A check failed: a signature, a digest, a chain link or a policy (CLI exit code 1)."""


class SignatureError(VerificationError):
    """A signature does not verify under the given public key."""


def missing_dependency(package: str, extra: str) -> DependencyError:
    """Build the error for a missing optional dependency.

    Args:
        package: The distribution that failed to import, e.g. ``"transformers"``.
        extra: The safeguard extra that provides it, e.g. ``"hf"``.

    Returns:
        A :class:`DependencyError` whose message says how to install it.
    """
    return DependencyError(f"{package} is not installed; `pip install 'safeguard[{extra}]'`")
