"""Name similarity across spellings and scripts: Latin and Devanagari compared in one phonetic key.

Devanagari is romanised with ITRANS (``indic-transliteration``); then both sides are reduced to a
rough sound key: aspiration and vowel length dropped, common spelling variants folded (w/v, z/j,
ph/f, ee/i, oo/u), and a word's final inherent "a" removed (Hindi drops it in speech: राम is "Ram").
Keys are compared with RapidFuzz's token-sort ratio, 0–100.
"""

from __future__ import annotations

import re
from functools import lru_cache

from indic_transliteration import sanscript
from rapidfuzz import fuzz

from his.registration.validators import has_devanagari

_FOLDS = (
    ("M", "n"), ("~N", "n"), ("N", "n"), ("R", "r"), ("x", "ksh"), ("GY", "gy"), ("j~n", "gy"),
)
_LOWER_FOLDS = (
    ("ph", "f"), ("w", "v"), ("z", "j"), ("q", "k"), ("ee", "i"), ("oo", "u"), ("ou", "au"), ("y", "i"),
)
_ASPIRATE = re.compile(r"([kgcjtdpbs])h")
_DOUBLE = re.compile(r"(.)\1+")


@lru_cache(maxsize=4096)
def romanise(text: str) -> str:
    """Devanagari to ITRANS Latin; Latin text unchanged."""
    if not has_devanagari(text):
        return text
    return sanscript.transliterate(text, sanscript.DEVANAGARI, sanscript.ITRANS)


@lru_cache(maxsize=4096)
def sound_key(text: str) -> str:
    """A rough pronunciation key of a name in either script, for fuzzy comparison."""
    s = romanise(text)
    for a, b in _FOLDS:
        s = s.replace(a, b)
    s = s.lower()
    s = re.sub(r"[^a-z ]", "", s)
    for a, b in _LOWER_FOLDS:
        s = s.replace(a, b)
    s = _ASPIRATE.sub(r"\1", s)
    s = _DOUBLE.sub(r"\1", s)
    words = [w[:-1] if len(w) > 2 and w.endswith("a") else w for w in s.split()]
    return " ".join(words)


def similarity(a: str, b: str) -> float:
    """0–100: how alike two names sound, whatever their script and spelling."""
    if not a or not b:
        return 0.0
    return fuzz.token_sort_ratio(sound_key(a), sound_key(b))


def best_similarity(ours: list[str], theirs: list[str]) -> float:
    """The best similarity between any of our forms of a name and any of theirs."""
    return max((similarity(a, b) for a in ours for b in theirs if a and b), default=0.0)


def initials(text: str) -> list[str]:
    """First letters of each word of a name in both scripts, for a coarse prefix search of the index."""
    out: list[str] = []
    for word in text.split():
        if has_devanagari(word):
            out.append(word[0])
            latin = romanise(word)
            out.append(latin[0].upper() if latin[:1].isalpha() else "")
        else:
            first = word[0].upper()
            out.append(first)
            out.append(sanscript.transliterate(word[0].lower(), sanscript.ITRANS, sanscript.DEVANAGARI)[:1])
            if first in "VW":
                out += ["V", "W"]
    return [c for c in dict.fromkeys(out) if c and c.strip()]
