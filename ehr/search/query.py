"""Search criteria to SQL: one predicate builder per parameter type (https://hl7.org/fhir/R4/search.html).

The same statements run on SQLite and PostgreSQL: only the index tables are read, never JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

from sqlalchemy import ColumnElement, and_, exists, false, not_, or_, select

from ehr.search import registry
from ehr.search.normalize import normalize_string, parse_fhir_date
from ehr.search.ucum import canonical
from himhis.errors import InvalidError
from himhis.models import (
    DateIndex,
    NumberIndex,
    QuantityIndex,
    ReferenceIndex,
    Resource,
    StringIndex,
    TokenIndex,
    UriIndex,
)

R = Resource.__table__
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
# Parameters that shape the result rather than select resources (https://hl7.org/fhir/R4/search.html#return).
RESULT_PARAMS = {
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
    "_total",
    "_format",
    "_pretty",
    "_contained",
    "_containedType",
    "_page_token",
    "_offset",
}


@dataclass(frozen=True, slots=True)
class Criterion:
    name: str
    modifier: str | None
    values: tuple[str, ...]  # OR-ed

    @property
    def label(self) -> str:
        return f"{self.name}:{self.modifier}" if self.modifier else self.name


def parse_query(query: str | list[tuple[str, str]]) -> list[tuple[str, str]]:
    pairs = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else list(query)
    return [(k, v) for k, v in pairs if k]


def split_or(value: str) -> tuple[str, ...]:
    """Split on commas not escaped with a backslash (https://hl7.org/fhir/R4/search.html#escaping)."""
    out: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            cur.append(value[i + 1])
            i += 2
            continue
        if c == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return tuple(out)


def criteria(res_type: str, pairs: list[tuple[str, str]], *, lenient: bool = False) -> list[Criterion]:
    """Check parameter names against the type's search parameters; unknown ones are 400 unless lenient."""
    out: list[Criterion] = []
    for key, value in pairs:
        if key in RESULT_PARAMS:
            continue
        name, _, modifier = key.partition(":")
        if name in ("_id", "_lastUpdated") or registry.get_param(res_type, name):
            out.append(Criterion(name, modifier or None, split_or(value)))
        elif not lenient:
            raise InvalidError(
                f"Unknown search parameter '{key}' for resource type {res_type}",
                code="not-supported",
                expression=[key],
            )
    return out


def select_pks(res_type: str, crits: list[Criterion]):
    """SELECT pk, id of the live resources of a type matching every criterion."""
    return select(R.c.pk, R.c.res_id).where(
        R.c.res_type == res_type, R.c.deleted.is_(False), *[_criterion(res_type, c) for c in crits]
    )


def _criterion(res_type: str, c: Criterion) -> ColumnElement[bool]:
    if c.name == "_id":
        clause = R.c.res_id.in_([v for v in c.values if v])
        return not_(clause) if c.modifier == "not" else clause
    if c.name == "_lastUpdated":
        return or_(*[_date_clause(R.c.last_updated, R.c.last_updated, v, c) for v in c.values])
    param = registry.get_param(res_type, c.name)
    builder = _BUILDERS.get(param.type)
    if builder is None:
        raise InvalidError(
            f"Search parameter '{c.name}' of type {param.type} is not supported",
            code="not-supported",
            expression=[c.label],
        )
    if c.modifier == "missing":
        flag = c.values[0].lower()
        if flag not in ("true", "false"):
            raise InvalidError(f"'{c.label}' takes true or false", expression=[c.label])
        table = _TABLE[param.type]
        has = exists().where(table.c.resource_pk == R.c.pk, table.c.param == c.name)
        return not_(has) if flag == "true" else has
    return builder(res_type, c)


def _exists(table, res_type: str, param: str, clause: ColumnElement[bool]) -> ColumnElement[bool]:
    """``pk IN (matching index rows)``: a semi-join that both planners drive from the index side."""
    return R.c.pk.in_(
        select(table.c.resource_pk).where(table.c.res_type == res_type, table.c.param == param, clause)
    )


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _unsupported(c: Criterion, kind: str) -> InvalidError:
    return InvalidError(
        f"Modifier ':{c.modifier}' is not supported for {kind} parameter '{c.name}'",
        code="not-supported",
        expression=[c.label],
    )


def _token(res_type: str, c: Criterion) -> ColumnElement[bool]:
    t = TokenIndex.__table__
    if c.modifier not in (None, "not", "text"):
        raise _unsupported(c, "token")
    alts = []
    for v in c.values:
        if c.modifier == "text":
            alts.append(t.c.text.ilike(f"%{_like_escape(v)}%", escape="\\"))
        elif "|" in v:
            system, _, code = v.partition("|")
            conds = [t.c.system.is_(None) if system == "" else t.c.system == system]
            if code:
                conds.append(t.c.code == code)
            alts.append(and_(*conds))
        else:
            alts.append(t.c.code == v)
    clause = _exists(t, res_type, c.name, or_(*alts))
    return not_(clause) if c.modifier == "not" else clause


def _string(res_type: str, c: Criterion) -> ColumnElement[bool]:
    t = StringIndex.__table__
    alts = []
    for v in c.values:
        if c.modifier == "exact":
            alts.append(t.c.exact == v)
        elif c.modifier == "contains":
            alts.append(t.c.normalized.like(f"%{_like_escape(normalize_string(v))}%", escape="\\"))
        elif c.modifier is None:
            alts.append(t.c.normalized.like(f"{_like_escape(normalize_string(v))}%", escape="\\"))
        else:
            raise _unsupported(c, "string")
    return _exists(t, res_type, c.name, or_(*alts))


def _reference(res_type: str, c: Criterion) -> ColumnElement[bool]:
    if c.modifier == "identifier":
        return _token(res_type, Criterion(f"{c.name}:identifier", None, c.values))
    t = ReferenceIndex.__table__
    alts = []
    for v in c.values:
        if v.startswith(("http://", "https://", "urn:")):
            alts.append(t.c.url == v)
        elif "/" in v:
            rtype, _, rid = v.rpartition("/")
            alts.append(and_(t.c.target_type == rtype.rsplit("/", 1)[-1], t.c.target_id == rid))
        elif c.modifier:
            alts.append(and_(t.c.target_type == c.modifier, t.c.target_id == v))
        else:
            alts.append(t.c.target_id == v)
    return _exists(t, res_type, c.name, or_(*alts))


def _uri(res_type: str, c: Criterion) -> ColumnElement[bool]:
    t = UriIndex.__table__
    if c.modifier == "below":
        alts = [t.c.uri.like(f"{_like_escape(v)}%", escape="\\") for v in c.values]
    elif c.modifier is None:
        alts = [t.c.uri == v for v in c.values]
    else:
        raise _unsupported(c, "uri")
    return _exists(t, res_type, c.name, or_(*alts))


def _prefix(value: str, c: Criterion) -> tuple[str, str]:
    if len(value) > 2 and value[:2].isalpha() and value[:2].islower():
        if value[:2] not in PREFIXES:
            raise InvalidError(f"Unknown prefix '{value[:2]}' in '{c.label}={value}'", expression=[c.label])
        return value[:2], value[2:]
    return "eq", value


def _date_clause(low_col, high_col, raw: str, c: Criterion) -> ColumnElement[bool]:
    prefix, value = _prefix(raw, c)
    try:
        plow, phigh = parse_fhir_date(value)
    except ValueError as exc:
        raise InvalidError(
            f"Invalid date '{value}' for search parameter '{c.label}': {exc}", expression=[c.label]
        ) from exc
    return _range(prefix, low_col, high_col, plow, phigh)


def _range(prefix: str, low, high, plow, phigh) -> ColumnElement[bool]:
    """Range comparison of https://hl7.org/fhir/R4/search.html#prefix for a stored [low, high]."""
    match prefix:
        case "eq":
            return and_(low >= plow, high <= phigh)
        case "ne":
            return not_(and_(low >= plow, high <= phigh))
        case "gt":
            return high > phigh
        case "lt":
            return low < plow
        case "ge":
            return high >= plow
        case "le":
            return low <= phigh
        case "sa":
            return low > phigh
        case "eb":
            return high < plow
        case "ap":
            return and_(low <= phigh, high >= plow)
    return false()


def _date(res_type: str, c: Criterion) -> ColumnElement[bool]:
    t = DateIndex.__table__
    return _exists(t, res_type, c.name, or_(*[_date_clause(t.c.low, t.c.high, v, c) for v in c.values]))


def _decimal(value: str, c: Criterion) -> tuple[Decimal, Decimal, Decimal]:
    """A number and its implicit range from its significant figures (search.html#number)."""
    try:
        d = Decimal(value)
    except InvalidOperation as exc:
        raise InvalidError(
            f"Invalid number '{value}' for search parameter '{c.label}'", expression=[c.label]
        ) from exc
    if not d.is_finite():
        raise InvalidError(f"Invalid number '{value}' for search parameter '{c.label}'", expression=[c.label])
    half = Decimal(5).scaleb(d.as_tuple().exponent - 1)
    return d, d - half, d + half


def _compare(col, prefix: str, d: Decimal, lo: Decimal, hi: Decimal) -> ColumnElement[bool]:
    f, flo, fhi = float(d), float(lo), float(hi)
    return {
        "eq": and_(col >= flo, col < fhi),
        "ne": or_(col < flo, col >= fhi),
        "gt": col > f,
        "lt": col < f,
        "ge": col >= f,
        "le": col <= f,
        "sa": col > f,
        "eb": col < f,
        "ap": and_(col >= min(f * 0.9, f * 1.1), col <= max(f * 0.9, f * 1.1)),
    }[prefix]


def _number(res_type: str, c: Criterion) -> ColumnElement[bool]:
    t = NumberIndex.__table__
    alts = []
    for v in c.values:
        prefix, value = _prefix(v, c)
        alts.append(_compare(t.c.value, prefix, *_decimal(value, c)))
    return _exists(t, res_type, c.name, or_(*alts))


def _quantity(res_type: str, c: Criterion) -> ColumnElement[bool]:
    """``[prefix]number|system|code``; compared in canonical UCUM units when the unit converts."""
    t = QuantityIndex.__table__
    alts = []
    for v in c.values:
        prefix, rest = _prefix(v, c)
        number, _, unit = rest.partition("|")
        system, _, code = unit.partition("|")
        d, lo, hi = _decimal(number, c)
        cval, ccode = canonical(d, system or None, code or None)
        if cval is not None:
            clo, chi = canonical(lo, system, code)[0], canonical(hi, system, code)[0]
            conds = [t.c.canonical_code == ccode, _compare(t.c.canonical_value, prefix, cval, clo, chi)]
        else:
            conds = [_compare(t.c.value, prefix, d, lo, hi)]
            if code:
                conds.append(or_(t.c.code == code, t.c.unit == code))
            if system:
                conds.append(t.c.system == system)
        alts.append(and_(*conds))
    return _exists(t, res_type, c.name, or_(*alts))


_BUILDERS: dict[str, Callable[[str, Criterion], ColumnElement[bool]]] = {
    "token": _token,
    "string": _string,
    "reference": _reference,
    "uri": _uri,
    "date": _date,
    "number": _number,
    "quantity": _quantity,
}
_TABLE = {
    "token": TokenIndex.__table__,
    "string": StringIndex.__table__,
    "reference": ReferenceIndex.__table__,
    "uri": UriIndex.__table__,
    "date": DateIndex.__table__,
    "number": NumberIndex.__table__,
    "quantity": QuantityIndex.__table__,
}
