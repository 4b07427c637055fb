"""What a chain walk returns: :class:`ChainLink` per check, :class:`ChainResult` overall.

Also the small formatting helpers every chain check shares (digest and manifest labels)
and :func:`unchecked_note`, the summary of subjects that were not checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from safeguard.errors import VerificationError
from safeguard.provenance.manifest import Manifest

__all__ = ["ChainError", "ChainLink", "ChainResult", "unchecked_note"]


class ChainError(VerificationError):
    """A chain of manifests does not verify; the message names the broken link."""


@dataclass(frozen=True, kw_only=True)
class ChainLink:
    """One check in a chain walk.

    Attributes:
        name: What was checked, e.g. ``generation -> training`` or ``policy: epsilon``.
        ok: Whether it passed.
        detail: The evidence (digests, numbers) or the reason it failed.
    """

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, kw_only=True)
class ChainResult:
    """The outcome of :func:`~safeguard.provenance.verify_chain`.

    Attributes:
        links: Every check, in walk order.
        manifests: The manifests walked, from the start back to raw data.
        unchecked: Subjects that were not present, so not checked, each as
            ``"<name> (<kind> manifest <file>)"`` (only when subjects were not required).
        subjects_skipped: Subject digests were not recomputed at all (``check_subjects=False``).
        signatures_checked: Signatures were verified (False with ``--allow-unsigned``).
    """

    links: tuple[ChainLink, ...]
    manifests: tuple[Manifest, ...]
    unchecked: tuple[str, ...] = ()
    subjects_skipped: bool = False
    signatures_checked: bool = True

    @property
    def ok(self) -> bool:
        """True when every link passed."""
        return all(link.ok for link in self.links)

    @property
    def broken(self) -> list[ChainLink]:
        """The links that failed."""
        return [link for link in self.links if not link.ok]

    @property
    def verdict(self) -> str:
        """One line for people: ``verified`` / ``chain verified`` only when every subject was
        checked; otherwise what was verified and what was not checked, e.g.
        ``signatures verified; 1 subject not present, not checked: clean.jsonl (...)``."""
        if not self.ok:
            names = ", ".join(dict.fromkeys(link.name for link in self.broken))
            return f"FAILED: broken link(s): {names}"
        chain = any(" -> " in link.name for link in self.links)
        note = unchecked_note(self.unchecked, self.subjects_skipped)
        if not note:
            return "chain verified" if len(self.manifests) > 1 else "verified"
        done = []
        if self.signatures_checked:
            done.append("signatures")
        if chain:
            done.append("chain links")
        if any(link.name.startswith("policy:") for link in self.links):
            done.append("policy checks")
        if not done:
            done.append("predicate schemas" if chain else "predicate schema")
        what = done[0] if len(done) == 1 else ", ".join(done[:-1]) + " and " + done[-1]
        return f"{what} verified; {note}"

    def raise_for_failure(self) -> None:
        """Raise :class:`ChainError` naming every broken link, if any."""
        if not self.ok:
            raise ChainError(
                "; ".join(f"broken link {link.name!r}: {link.detail}" for link in self.broken)
            )


def unchecked_note(unchecked: Sequence[str], skipped: bool = False) -> str:
    """What was not checked, for a summary line; empty when everything was.

    >>> unchecked_note(["clean.jsonl (scrub manifest scrub.json)"])
    '1 subject not present, not checked: clean.jsonl (scrub manifest scrub.json)'
    >>> unchecked_note([], skipped=True)
    'subject digests not checked (--skip-subjects)'
    >>> unchecked_note([])
    ''
    """
    if skipped:
        return "subject digests not checked (--skip-subjects)"
    if not unchecked:
        return ""
    n = len(unchecked)
    return f"{n} subject{'' if n == 1 else 's'} not present, not checked: {', '.join(unchecked)}"


def short_digest(sha: str) -> str:
    """``sha256:<first 12 hex digits>...``, for messages.

    >>> short_digest("ab" * 32)
    'sha256:abababababab...'
    """
    return f"sha256:{sha[:12]}..."


def manifest_label(m: Manifest) -> str:
    """``<kind> manifest <file name>``, naming a manifest in a link or message."""
    return f"{m.kind} manifest {m.path.name if m.path else '<memory>'}"
