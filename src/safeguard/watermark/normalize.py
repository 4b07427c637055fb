"""Detection-side Unicode normalisation: undo invisible and look-alike character edits.

A byte-level tokenizer turns one swapped character (a Cyrillic ``а`` for a Latin ``a``, a
no-break space, a zero-width space) into different tokens, and every changed token also
changes the context of the next ``h`` tokens, so a few such edits erase a watermark.
:func:`normalize_text` maps the text back before it is tokenized:

1. Format characters (Unicode category ``Cf``: U+200B–U+200D, U+2060, U+FEFF, U+00AD, the
   bidirectional marks, ...) are removed.
2. Space separators (category ``Zs``: U+00A0, U+2002–U+200A, U+202F, U+205F, U+3000, ...)
   become an ASCII space; the line breaks U+0085, U+2028 and U+2029 become ``"\\n"``.
3. Fullwidth forms (U+FF01–U+FF5E) and mathematical alphanumeric symbols
   (U+1D400–U+1D7FF) take their NFKC form, which is ASCII. NFKC is not applied to the rest
   of the text: it would also rewrite characters a model writes on its own (``…`` to
   ``...``, ``ﬁ`` to ``fi``, superscripts), changing unattacked text.
4. Cyrillic and Greek look-alikes of Latin letters (:data:`CONFUSABLES`) become the Latin
   letter — in a word that also holds a Latin letter, or in a word made only of look-alikes
   when the text's letters are mostly Latin. A word with any other Cyrillic or Greek letter
   is left alone, so genuine Russian or Greek text is unchanged.

Every step touches only non-ASCII characters, so ASCII text is returned unchanged: a
model's ordinary output scores exactly as before.

>>> normalize_text("p\\u0430y\\u200bment\\u00a0due")
'payment due'
>>> normalize_text("\\u043c\\u0438\\u0440 \\u0438 \\u0434\\u043e\\u043c")  # Russian stays Russian
'мир и дом'
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["CONFUSABLES", "normalize_text"]

#: Cyrillic and Greek letters that render (nearly) like a Latin letter, and that letter.
CONFUSABLES: dict[str, str] = {
    # Cyrillic lowercase
    "\u0430": "a",
    "\u0441": "c",
    "\u0501": "d",
    "\u0435": "e",
    "\u04bb": "h",
    "\u0456": "i",
    "\u0458": "j",
    "\u04cf": "l",
    "\u043e": "o",
    "\u0440": "p",
    "\u051b": "q",
    "\u0455": "s",
    "\u051d": "w",
    "\u0445": "x",
    "\u0443": "y",
    # Cyrillic uppercase
    "\u0410": "A",
    "\u0412": "B",
    "\u0421": "C",
    "\u0415": "E",
    "\u041d": "H",
    "\u0406": "I",
    "\u0408": "J",
    "\u041a": "K",
    "\u041c": "M",
    "\u041e": "O",
    "\u0420": "P",
    "\u051a": "Q",
    "\u0405": "S",
    "\u0422": "T",
    "\u051c": "W",
    "\u0425": "X",
    "\u04ae": "Y",
    # Greek lowercase
    "\u03f2": "c",
    "\u03b9": "i",
    "\u03bf": "o",
    "\u03c1": "p",
    "\u03bd": "v",
    "\u03c7": "x",
    # Greek uppercase
    "\u0391": "A",
    "\u0392": "B",
    "\u0395": "E",
    "\u0396": "Z",
    "\u0397": "H",
    "\u0399": "I",
    "\u039a": "K",
    "\u039c": "M",
    "\u039d": "N",
    "\u039f": "O",
    "\u03a1": "P",
    "\u03a4": "T",
    "\u03a5": "Y",
    "\u03a7": "X",
}

_LINE_BREAKS = {"\u0085": "\n", "\u2028": "\n", "\u2029": "\n"}
_WORD = re.compile(r"[^\W\d_]+")  # runs of letters


def _is_nfkc_safe(ch: str) -> bool:
    code = ord(ch)
    return 0xFF01 <= code <= 0xFF5E or 0x1D400 <= code <= 0x1D7FF


def _script(ch: str) -> str:
    """``latin``, ``other`` (another script's letter) or ``lookalike``."""
    if ch in CONFUSABLES:
        return "lookalike"
    if ch.isascii() or unicodedata.name(ch, "").startswith("LATIN"):
        return "latin"
    return "other"


def _map_confusables(text: str) -> str:
    words = _WORD.findall(text)
    if not any(ch in CONFUSABLES for w in words for ch in w):
        return text
    latin = other = 0
    for w in words:
        for ch in w:
            kind = _script(ch)
            latin += kind != "other"
            other += kind == "other"
    mostly_latin = latin > other

    def fix(match: re.Match[str]) -> str:
        word = match.group(0)
        kinds = {_script(ch) for ch in word}
        if "lookalike" not in kinds or "other" in kinds:
            return word
        if "latin" in kinds or mostly_latin:
            return "".join(CONFUSABLES.get(ch, ch) for ch in word)
        return word

    return _WORD.sub(fix, text)


def normalize_text(text: str) -> str:
    """Undo invisible-character, space and look-alike edits; ASCII text is returned unchanged.

    Args:
        text: Text to be tokenized for detection.

    Returns:
        The normalised text (see the module docstring for the exact rules).
    """
    if text.isascii():
        return text
    out = []
    for ch in text:
        if ch.isascii():
            out.append(ch)
            continue
        category = unicodedata.category(ch)
        if category == "Cf":
            continue
        if category == "Zs":
            out.append(" ")
        elif ch in _LINE_BREAKS:
            out.append(_LINE_BREAKS[ch])
        elif _is_nfkc_safe(ch):
            out.append(unicodedata.normalize("NFKC", ch))
        else:
            out.append(ch)
    return _map_confusables("".join(out))
