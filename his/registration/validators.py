"""Checks on what is typed at registration: identifiers, mobile numbers, and Aadhaar numbers (refused).

Formats are data (``data/identifiers.json``, with their sources); each check returns the value in
its stored form or raises ``ValueError`` with a message meant for the person at the desk.
"""

from __future__ import annotations

import re
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import orjson

DATA = Path(__file__).parent / "data"

AADHAAR_MESSAGE = ("This looks like an Aadhaar number. An Aadhaar number must not be stored in HimHIS: "
                   "remove it and record the ABHA number or another identifier instead.")

# Verhoeff's check-digit scheme (J. Verhoeff, "Error Detecting Decimal Codes", Mathematical Centre
# Tracts 29, Amsterdam 1969): multiplication in the dihedral group D5, a position permutation, inverses.
_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)
_INV = (0, 4, 3, 2, 1, 5, 6, 7, 8, 9)

# A run of digits, allowing one space, hyphen or dot between digits ("2345 6789 0124", "2345-6789-0124").
_DIGIT_RUN = re.compile(r"\d(?:[ \-.]?\d)*")
_DEVANAGARI = re.compile(r"[\u0900-\u097F]")
_LATIN_NAME = re.compile(r"^[A-Za-z][A-Za-z .'\-]*$")
_DEVANAGARI_NAME = re.compile(r"^[\u0900-\u097F][\u0900-\u097F .\-\u200c\u200d]*$")


@cache
def formats() -> dict[str, Any]:
    return orjson.loads((DATA / "identifiers.json").read_bytes())


def verhoeff_valid(digits: str) -> bool:
    """True when the last digit is the Verhoeff check digit of the others."""
    if not digits.isdigit():
        return False
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _D[c][_P[i % 8][int(ch)]]
    return c == 0


def verhoeff_digit(digits: str) -> str:
    """The Verhoeff check digit to append to ``digits``."""
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _D[c][_P[(i + 1) % 8][int(ch)]]
    return str(_INV[c])


def is_aadhaar(digits: str) -> bool:
    """12 digits, not starting 0 or 1, ending in a valid Verhoeff check digit (UIDAI's structure)."""
    spec = formats()["aadhaar"]
    return (len(digits) == spec["digits"] and digits.isdigit() and digits[0] not in spec["first_digit_not"]
            and verhoeff_valid(digits))


def contains_aadhaar(text: str) -> bool:
    """Whether ``text`` holds an Aadhaar number: a run of exactly 12 digits (spaces or hyphens allowed
    between them) that has Aadhaar's structure. Longer runs (an ABHA number) and runs written after a
    ``+`` (an international telephone number) are not Aadhaar numbers."""
    for m in _DIGIT_RUN.finditer(text):
        if m.start() > 0 and text[m.start() - 1] == "+":
            continue
        if is_aadhaar(re.sub(r"\D", "", m.group())):
            return True
    return False


def abha_number(value: str) -> str:
    """An ABHA number, with or without hyphens or spaces, as XX-XXXX-XXXX-XXXX."""
    digits = re.sub(r"[\s\-]", "", value)
    spec = formats()["abha"]
    if not digits.isdigit() or len(digits) != spec["digits"]:
        raise ValueError(f"An ABHA number has {spec['digits']} digits, written XX-XXXX-XXXX-XXXX "
                         f"(for example 91-1234-5678-9012); '{value}' is not one")
    out, at = [], 0
    for size in spec["groups"]:
        out.append(digits[at:at + size])
        at += size
    return "-".join(out)


def mobile_number(value: str) -> str:
    """An Indian mobile number (10 digits starting 6–9, optionally after +91, 91 or 0) as '+91 XXXXXXXXXX'."""
    spec = formats()["mobile"]
    digits = re.sub(r"[\s\-().]", "", value)
    if digits.startswith("+"):
        if not digits.startswith("+" + spec["country_code"]):
            raise ValueError("Only Indian mobile numbers (+91) can be recorded")
        digits = digits[1 + len(spec["country_code"]):]
    elif len(digits) == 12 and digits.startswith(spec["country_code"]):
        digits = digits[len(spec["country_code"]):]
    elif len(digits) == 11 and digits.startswith("0"):
        digits = digits[1:]
    if not re.fullmatch(spec["pattern"], digits):
        raise ValueError("A mobile number has 10 digits and starts with 6, 7, 8 or 9 "
                         f"(for example 98160 12345); '{value}' is not one")
    return f"+{spec['country_code']} {digits}"


def himparivar_id(value: str) -> str:
    """A HimParivar member ID, HP-<district code>-<8 digits>."""
    spec = formats()["himparivar"]
    v = re.sub(r"\s", "", value).upper()
    m = re.fullmatch(spec["pattern"], v)
    if m is None or m.group(1) not in spec["districts"]:
        raise ValueError(f"A HimParivar member ID is written HP-<district code>-<8 digits>, for example "
                         f"{spec['example']}; '{value}' is not one")
    return v


def himcare_card(value: str, *, today: date) -> str:
    """A HIMCARE card number, HC-<year of enrolment>-<7 digits>."""
    spec = formats()["himcare"]
    v = re.sub(r"\s", "", value).upper()
    m = re.fullmatch(spec["pattern"], v)
    if m is None or not spec["first_year"] <= int(m.group(1)) <= today.year:
        raise ValueError(f"A HIMCARE card number is written HC-<year of enrolment>-<7 digits>, for example "
                         f"{spec['example']}, with a year from {spec['first_year']}; '{value}' is not one")
    return v


def latin_name(value: str, what: str) -> str:
    v = " ".join(value.split())
    if not _LATIN_NAME.match(v):
        raise ValueError(f"Write the {what} in English letters (the Devanagari name has its own field)")
    return v


def devanagari_name(value: str) -> str:
    v = " ".join(value.split())
    if not _DEVANAGARI_NAME.match(v):
        raise ValueError("Write this name in Devanagari (हिंदी) letters only")
    return v


def has_devanagari(value: str) -> bool:
    return bool(_DEVANAGARI.search(value))
