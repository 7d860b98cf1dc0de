"""Auditor names: one canonical spelling, and no look-alikes of another auditor.

A name is shown in the review UI, the statistics and the exports, and it is what a person signs in with, so two
names that look the same (a Cyrillic "аdmin" beside a Latin "admin") or a name carrying markup would let one
auditor pass for another. Names are NFKC-normalised (full-width "ａｄａ" is "ada") before they are stored or looked
up; `normalise_name` refuses what a name may not be, `skeleton` folds look-alike letters for the comparison with
the names already in use. Pure functions: the store and the CLI apply them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

MAX_LEN = 64
PUNCTUATION = frozenset(" ._-'")  # besides letters and digits; no <, >, &, quotes other than the apostrophe
# Scripts that are written together (as in Unicode TS #39's "highly restrictive" level): a Japanese name mixes
# kanji and kana, a Korean one hanja and hangul, without being a spoof.
MIXABLE = (frozenset({"CJK", "HIRAGANA", "KATAKANA"}), frozenset({"CJK", "HANGUL"}))

# Cyrillic and Greek letters (and a few Latin variants) that look like a Latin letter, after Unicode's
# confusables.txt, kept short and conservative: only near-identical shapes. Digits are not folded (0 and o, 1 and l
# read differently to people who type names), and case is not folded (Ann and ann are told apart).
_LOOKALIKES = {
    # Cyrillic lower case
    "а": "a",
    "е": "e",
    "о": "o",
    "р": "p",
    "с": "c",
    "у": "y",
    "х": "x",
    "і": "i",
    "ј": "j",
    "ѕ": "s",
    "ԁ": "d",
    "һ": "h",
    "ԛ": "q",
    "ԝ": "w",
    # Cyrillic upper case
    "А": "A",
    "В": "B",
    "Е": "E",
    "К": "K",
    "М": "M",
    "Н": "H",
    "О": "O",
    "Р": "P",
    "С": "C",
    "Т": "T",
    "Х": "X",
    "І": "I",
    "Ј": "J",
    "Ѕ": "S",
    # Greek lower case
    "ο": "o",
    "α": "a",
    "ν": "v",
    "ρ": "p",
    "τ": "t",
    "ι": "i",
    "κ": "k",
    # Greek upper case
    "Α": "A",
    "Β": "B",
    "Ε": "E",
    "Ζ": "Z",
    "Η": "H",
    "Ι": "I",
    "Κ": "K",
    "Μ": "M",
    "Ν": "N",
    "Ο": "O",
    "Ρ": "P",
    "Τ": "T",
    "Υ": "Y",
    "Χ": "X",
    # Latin variants
    "ɡ": "g",
    "ı": "i",
}
_FOLD = str.maketrans(_LOOKALIKES)


def lookup_key(name: str) -> str:
    """How a name is looked up (sign-in, removal): NFKC, trimmed. Never raises: a bad name is simply not found."""
    return unicodedata.normalize("NFKC", name).strip()


def _script(ch: str) -> str:
    # the first word of a letter's Unicode name is its script: LATIN, CYRILLIC, GREEK, CJK, HANGUL, ...
    return unicodedata.name(ch, "UNKNOWN").split()[0]


def normalise_name(name: str) -> str:
    """The canonical form of a new auditor's name; ValueError, with the name and the reason, for one refused."""
    raw, name = name, lookup_key(name)
    if not name or len(name) > MAX_LEN:
        raise ValueError(f"an auditor name is 1 to {MAX_LEN} characters long")
    for i, ch in enumerate(name):
        cat = unicodedata.category(ch)
        # marks (M*) only on a letter: many scripts write vowels with them (हिंदी), and NFKC leaves some uncomposed
        on_letter = i > 0 and unicodedata.category(name[i - 1])[0] in "LM"
        ok = cat[0] == "L" or cat == "Nd" or ch in PUNCTUATION or (cat[0] == "M" and on_letter)
        if not ok:
            raise ValueError(
                f"auditor name {raw!r} may hold letters, digits, spaces and . _ - ' only, not {ch!r} (U+{ord(ch):04X})"
            )
    scripts = {_script(ch) for ch in name if unicodedata.category(ch)[0] == "L"}
    if len(scripts) > 1 and not any(scripts <= group for group in MIXABLE):
        raise ValueError(
            f"auditor name {raw!r} mixes scripts ({', '.join(sorted(scripts)).lower()}), so it could "
            "pass for another name"
        )
    return name


def skeleton(name: str) -> str:
    """The name with look-alike letters folded onto the Latin ones: two names with one skeleton look the same."""
    return lookup_key(name).translate(_FOLD)


def confusable_with(name: str, existing: Iterable[str]) -> str | None:
    """An existing name that `name` differs from only by look-alike letters (the same name is not a look-alike)."""
    key = skeleton(name)
    return next((other for other in existing if other != name and skeleton(other) == key), None)
