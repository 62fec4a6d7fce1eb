"""Normal forms shared by index extraction (write time) and search (query time)."""

from __future__ import annotations

import calendar
import re
import unicodedata
from datetime import datetime, timedelta
from functools import lru_cache

from ehr.search.registry import resource_types

DATE_MIN = datetime(1, 1, 1)
DATE_MAX = datetime(9999, 12, 31, 23, 59, 59, 999999)

# The "Combining Diacritical Marks" blocks, which carry the accents of Latin, Greek and Cyrillic
# letters after NFKD. Devanagari signs (U+0900–U+097F: matras, virama, nukta, anusvara) are
# deliberately absent: they are letters of the word, not accents.
_COMBINING_BLOCKS = (
    (0x0300, 0x036F),  # Combining Diacritical Marks
    (0x1AB0, 0x1AFF),  # Combining Diacritical Marks Extended
    (0x1DC0, 0x1DFF),  # Combining Diacritical Marks Supplement
    (0x20D0, 0x20FF),  # Combining Diacritical Marks for Symbols
    (0xFE20, 0xFE2F),  # Combining Half Marks
)
_STRIP_MARKS = {cp: None for lo, hi in _COMBINING_BLOCKS for cp in range(lo, hi + 1)}


def normalize_string(s: str) -> str:
    """Case- and accent-insensitive form of a string (https://hl7.org/fhir/R4/search.html#string)."""
    if s.isascii():
        return " ".join(s.casefold().split())
    s = unicodedata.normalize("NFKD", s.casefold()).translate(_STRIP_MARKS)
    return " ".join(unicodedata.normalize("NFC", s).split())


_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)


@lru_cache(maxsize=8192)
def parse_fhir_date(value: str) -> tuple[datetime, datetime]:
    """The implicit range [low, high] of a date, dateTime or instant (https://hl7.org/fhir/R4/search.html#date).

    Both ends are naive UTC and inclusive (high ends in .999999 at the value's precision). A time
    without a timezone (allowed in search values, not in stored dateTimes) is taken as UTC.
    """
    m = _DATE.fullmatch(value)
    if m is None:
        raise ValueError(
            f"invalid FHIR date {value!r}: expected YYYY, YYYY-MM, YYYY-MM-DD"
            " or YYYY-MM-DDThh:mm[:ss[.f]][Z|±hh:mm]"
        )
    year, month, day, hour, minute, second, fraction, tz = m.groups()
    try:
        if month is None:
            return datetime(int(year), 1, 1), datetime(int(year), 12, 31, 23, 59, 59, 999999)
        y, mo = int(year), int(month)
        if day is None:
            last = calendar.monthrange(y, mo)[1] if 1 <= mo <= 12 else 0
            return datetime(y, mo, 1), datetime(y, mo, last, 23, 59, 59, 999999)
        d = int(day)
        if hour is None:
            return datetime(y, mo, d), datetime(y, mo, d, 23, 59, 59, 999999)
        if second is None:
            low, span = datetime(y, mo, d, int(hour), int(minute)), timedelta(seconds=59, microseconds=999999)
        else:
            digits = (fraction or "")[:6]
            micro = int(digits.ljust(6, "0")) if digits else 0
            low = datetime(y, mo, d, int(hour), int(minute), int(second), micro)
            span = timedelta(microseconds=10 ** (6 - len(digits)) - 1)
    except ValueError as exc:
        raise ValueError(f"invalid FHIR date {value!r}: {exc}") from None
    high = low + span
    if tz and tz != "Z":
        hours, minutes = int(tz[1:3]), int(tz[4:6])
        if hours > 14 or minutes > 59:
            raise ValueError(f"invalid FHIR date {value!r}: timezone offset {tz} out of range")
        offset = timedelta(hours=hours, minutes=minutes) * (1 if tz[0] == "+" else -1)
        low, high = _shift(low, -offset), _shift(high, -offset)
    return low, high


def _shift(moment: datetime, delta: timedelta) -> datetime:
    """Move a moment by a timezone offset, clamped to the representable range."""
    try:
        return moment + delta
    except OverflowError:
        return DATE_MIN if delta < timedelta(0) else DATE_MAX


_REFERENCE = re.compile(
    r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?\Z"
)


@lru_cache(maxsize=8192)
def parse_reference(reference: str) -> tuple[str | None, str | None]:
    """The (type, id) of a relative or absolute literal reference (https://hl7.org/fhir/R4/references.html#literal).

    `Patient/1`, `Patient/1/_history/2` and `https://host/fhir/Patient/1` give ("Patient", "1");
    `urn:uuid:...`, local `#id` and conditional `Patient?identifier=...` references give (None, None).
    """
    if reference.startswith(("urn:", "#")) or "?" in reference:
        return None, None
    m = _REFERENCE.search(reference)
    if m is None or m[1] not in resource_types():
        return None, None
    return m[1], m[2]
