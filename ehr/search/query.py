"""Search criteria to SQL: one predicate builder per parameter type (https://hl7.org/fhir/R4/search.html).

Each builder returns the set of matching resource primary keys as a SELECT over one index table,
so the same criterion can be applied to the searched resources, to the target of a chain, or to the
source of a ``_has``. Only index tables are read, never JSON: SQLite and PostgreSQL give the same
answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

from sqlalchemy import ColumnElement, Select, and_, false, func, not_, or_, select
from sqlalchemy.sql import Alias, TableClause

from ehr.search import registry
from ehr.search.extract import GROUP_STRIDE, grouped_composites
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
RESULT_PARAMS = {"_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_format",
                 "_pretty", "_contained", "_containedType", "_page", "_offset", "_getpages"}
SPECIAL = {"_id", "_lastUpdated"}

_TABLE = {"token": TokenIndex.__table__, "string": StringIndex.__table__, "reference": ReferenceIndex.__table__,
          "uri": UriIndex.__table__, "date": DateIndex.__table__, "number": NumberIndex.__table__,
          "quantity": QuantityIndex.__table__}
REF = ReferenceIndex.__table__


@dataclass(frozen=True, slots=True)
class Criterion:
    """One search parameter as given: ``name[:modifier][.chain]=v1,v2`` (values are OR-ed)."""

    name: str
    modifier: str | None
    values: tuple[str, ...]
    chain: str | None = None  # the rest after the first '.', e.g. "identifier" or "organization.name"
    has: tuple[str, str, str] | None = None  # _has:Type:param:rest

    @property
    def label(self) -> str:
        base = f"{self.name}:{self.modifier}" if self.modifier else self.name
        return f"{base}.{self.chain}" if self.chain else base


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


def parse_key(res_type: str, key: str, value: str, *, lenient: bool = False) -> Criterion | None:
    """Parse one parameter name against the type's search parameters; unknown → 400 unless lenient."""
    if key.startswith("_has:"):
        parts = key.split(":", 3)
        if len(parts) != 4 or not all(parts[1:]):
            raise InvalidError(f"'{key}' is not of the form _has:Type:reference-parameter:parameter",
                               expression=[key])
        _, src_type, ref_param, rest = parts
        param = registry.get_param(src_type, ref_param)
        if param is None or param.type != "reference":
            raise InvalidError(f"'{ref_param}' is not a reference search parameter of {src_type}",
                               code="not-supported", expression=[key])
        inner = parse_key(src_type, rest, value, lenient=False)
        if inner is None:
            return None
        return Criterion("_has", None, split_or(value), has=(src_type, ref_param, rest))
    head, _, chain = key.partition(".")
    name, _, modifier = head.partition(":")
    if name in SPECIAL or registry.get_param(res_type, name):
        if chain:
            param = registry.get_param(res_type, name)
            if param is None or param.type != "reference":
                raise InvalidError(f"'{name}' is not a reference parameter, so it cannot be chained",
                                   expression=[key])
        return Criterion(name, modifier or None, split_or(value), chain or None)
    if lenient:
        return None
    raise InvalidError(f"Unknown search parameter '{key}' for resource type {res_type}", code="not-supported",
                       expression=[key])


def criteria(res_type: str, pairs: list[tuple[str, str]], *, lenient: bool = False) -> list[Criterion]:
    """The selecting criteria of a query (AND of the list); result parameters are left out."""
    out: list[Criterion] = []
    for key, value in pairs:
        if key.partition(":")[0] in RESULT_PARAMS:
            continue
        crit = parse_key(res_type, key, value, lenient=lenient)
        if crit is not None:
            out.append(crit)
    return out


def used_pairs(res_type: str, pairs: list[tuple[str, str]], *, lenient: bool = False) -> list[tuple[str, str]]:
    """The pairs a search really used: the self link leaves out what lenient handling ignored."""
    return [(k, v) for k, v in pairs
            if k.partition(":")[0] in RESULT_PARAMS or parse_key(res_type, k, v, lenient=lenient) is not None]


def select_pks(res_type: str, crits: list[Criterion], res: TableClause | Alias = R,
               scope: ColumnElement[bool] | None = None) -> Select:
    """SELECT pk, id of the live resources of a type matching every criterion (and the caller's scope)."""
    stmt = select(res.c.pk, res.c.res_id).where(res.c.res_type == res_type, res.c.deleted.is_(False),
                                                *[clause(res_type, c, res) for c in crits])
    return stmt if scope is None else stmt.where(scope)


def clause(res_type: str, c: Criterion, res: TableClause | Alias = R) -> ColumnElement[bool]:
    """The WHERE clause for one criterion over ``res`` (the resource table or an alias of it)."""
    if c.has:
        return _has(res_type, c, res)
    if c.name == "_id":
        ids = res.c.res_id.in_([v for v in c.values if v])
        return not_(ids) if c.modifier == "not" else ids
    if c.name == "_lastUpdated":
        return or_(*[_date_clause(res.c.last_updated, res.c.last_updated, v, c) for v in c.values])
    param = registry.get_param(res_type, c.name)
    if c.chain:
        return res.c.pk.in_(_chain(res_type, param, c))
    if c.modifier == "missing":
        flag = c.values[0].lower()
        if flag not in ("true", "false") or (param.type not in _TABLE and param.type != "composite"):
            raise InvalidError(f"'{c.label}' takes true or false", expression=[c.label])
        present = _present(res_type, param) if param.type == "composite" else select(
            _TABLE[param.type].c.resource_pk).where(_TABLE[param.type].c.res_type == res_type,
                                                    _TABLE[param.type].c.param == c.name)
        return res.c.pk.not_in(present) if flag == "true" else res.c.pk.in_(present)
    if c.modifier and param.type in ("date", "number", "quantity", "composite") and c.modifier != "missing":
        raise _unsupported(c, param.type)
    builder = _BUILDERS.get(param.type)
    if builder is None:
        raise InvalidError(f"Search parameter '{c.name}' of type {param.type} is not supported",
                           code="not-supported", expression=[c.label])
    pks = builder(res_type, c)
    if c.modifier == "not":
        return res.c.pk.not_in(pks)
    return res.c.pk.in_(pks)


def _present(res_type: str, param) -> Select:
    """Resources with a value for a composite: a grouped element (stored only when every component has a
    value), or else a value for each component parameter."""
    if param.code in grouped_composites(res_type):
        sub = registry.get_param(res_type, param.components[0][0])
        table = _TABLE[sub.type]
        return select(table.c.resource_pk).where(table.c.res_type == res_type, table.c.param == param.code)
    selects = []
    for code, _expression in param.components:
        sub = registry.get_param(res_type, code)
        if sub is None or sub.type not in _TABLE:
            return select(R.c.pk).where(false())
        table = _TABLE[sub.type]
        selects.append(select(table.c.resource_pk).where(table.c.res_type == res_type, table.c.param == code))
    return _same_resource(selects)


def _pks(table, res_type: str, param: str, where: ColumnElement[bool]) -> Select:
    """Primary keys of resources with an index row for ``param`` that matches ``where``."""
    return select(table.c.resource_pk).where(table.c.res_type == res_type, table.c.param == param, where)


def _chain(res_type: str, param, c: Criterion) -> Select:
    """``subject:Patient.name=x`` (https://hl7.org/fhir/R4/search.html#chaining): one level, any depth of dots."""
    targets = [c.modifier] if c.modifier else list(param.targets)
    nxt, _, _ = c.chain.partition(".")
    nxt_name = nxt.partition(":")[0]
    usable = [t for t in targets if nxt_name in SPECIAL or registry.get_param(t, nxt_name)]
    if not usable:
        raise InvalidError(f"'{c.label}': none of the target types {targets} has a parameter '{nxt_name}'",
                           code="not-supported", expression=[c.label])
    alts = []
    for target in usable:
        inner = parse_key(target, c.chain, ",".join(v.replace(",", "\\,") for v in c.values))
        t = R.alias(f"chain_{target.lower()}")
        matching = select(t.c.res_id).where(t.c.res_type == target, t.c.deleted.is_(False),
                                            clause(target, inner, t))
        alts.append(and_(REF.c.target_type == target, REF.c.target_id.in_(matching)))
    return _pks(REF, res_type, c.name, or_(*alts))


def _has(res_type: str, c: Criterion, res) -> ColumnElement[bool]:
    """``_has:Observation:patient:code=x`` (https://hl7.org/fhir/R4/search.html#has): reverse chaining."""
    src_type, ref_param, rest = c.has
    inner = parse_key(src_type, rest, ",".join(v.replace(",", "\\,") for v in c.values))
    src = R.alias(f"has_{src_type.lower()}")
    sources = select(src.c.pk).where(src.c.res_type == src_type, src.c.deleted.is_(False),
                                     clause(src_type, inner, src))
    targets = select(REF.c.target_id).where(REF.c.res_type == src_type, REF.c.param == ref_param,
                                            REF.c.target_type == res_type, REF.c.resource_pk.in_(sources))
    return res.c.res_id.in_(targets)


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _unsupported(c: Criterion, kind: str) -> InvalidError:
    return InvalidError(f"Modifier ':{c.modifier}' is not supported for {kind} parameter '{c.name}'",
                        code="not-supported", expression=[c.label])


def _token_value(t, v: str, c: Criterion) -> ColumnElement[bool]:
    if c.modifier == "text":  # a string search over the (normalised) display and text
        return t.c.text.like(f"%{_like_escape(normalize_string(v))}%", escape="\\")
    if "|" in v:
        system, _, code = v.partition("|")
        conds = [t.c.system.is_(None) if system == "" else t.c.system == system]
        if code:
            conds.append(t.c.code == code)
        return and_(*conds)
    return t.c.code == v


def _token(res_type: str, c: Criterion) -> Select:
    """https://hl7.org/fhir/R4/search.html#token — [system]|[code], :not, :text."""
    if c.modifier not in (None, "not", "text"):
        raise _unsupported(c, "token")
    t = TokenIndex.__table__
    return _pks(t, res_type, c.name, or_(*[_token_value(t, v, c) for v in c.values]))


def _string(res_type: str, c: Criterion) -> Select:
    """https://hl7.org/fhir/R4/search.html#string — starts-with, :exact, :contains; case and accent blind."""
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
    return _pks(t, res_type, c.name, or_(*alts))


def _reference(res_type: str, c: Criterion) -> Select:
    """https://hl7.org/fhir/R4/search.html#reference — Type/id, id, absolute URL, :Type, :identifier."""
    if c.modifier == "identifier":
        t = TokenIndex.__table__
        return _pks(t, res_type, f"{c.name}:identifier",
                    or_(*[_token_value(t, v, Criterion(c.name, None, ())) for v in c.values]))
    if c.modifier and not c.modifier[:1].isupper():
        raise _unsupported(c, "reference")
    t = REF
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
    return _pks(t, res_type, c.name, or_(*alts))


def _uri(res_type: str, c: Criterion) -> Select:
    """https://hl7.org/fhir/R4/search.html#uri — exact, :below (prefix), :above (the value starts with it)."""
    t = UriIndex.__table__
    if c.modifier == "below":  # an exact prefix, whatever the database's collation: URIs are case-sensitive
        alts = [func.substr(t.c.uri, 1, len(v)) == v for v in c.values]
    elif c.modifier == "above":
        alts = [and_(t.c.uri.in_(_prefixes(v))) for v in c.values]
    elif c.modifier is None:
        alts = [t.c.uri == v for v in c.values]
    else:
        raise _unsupported(c, "uri")
    return _pks(t, res_type, c.name, or_(*alts))


def _prefixes(uri: str) -> list[str]:
    parts = uri.split("/")
    return ["/".join(parts[:i]) for i in range(3, len(parts) + 1)]


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
        raise InvalidError(f"Invalid date '{value}' for search parameter '{c.label}': {exc}",
                           expression=[c.label]) from exc
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


def _date(res_type: str, c: Criterion) -> Select:
    """https://hl7.org/fhir/R4/search.html#date — prefixes over the value's precision range."""
    t = DateIndex.__table__
    return _pks(t, res_type, c.name, or_(*[_date_clause(t.c.low, t.c.high, v, c) for v in c.values]))


def _decimal(value: str, c: Criterion) -> tuple[Decimal, Decimal, Decimal]:
    """A number and its implicit range from its significant figures (search.html#number)."""
    try:
        d = Decimal(value)
    except InvalidOperation as exc:
        raise InvalidError(f"Invalid number '{value}' for search parameter '{c.label}'",
                           expression=[c.label]) from exc
    if not d.is_finite():
        raise InvalidError(f"Invalid number '{value}' for search parameter '{c.label}'", expression=[c.label])
    half = Decimal(5).scaleb(d.as_tuple().exponent - 1)
    return d, d - half, d + half


def _compare(col, prefix: str, d: Decimal, lo: Decimal, hi: Decimal) -> ColumnElement[bool]:
    f, flo, fhi = float(d), float(lo), float(hi)
    return {
        "eq": and_(col >= flo, col < fhi), "ne": or_(col < flo, col >= fhi), "gt": col > f, "lt": col < f,
        "ge": col >= f, "le": col <= f, "sa": col > f, "eb": col < f,
        "ap": and_(col >= min(f * 0.9, f * 1.1), col <= max(f * 0.9, f * 1.1)),
    }[prefix]


def _number(res_type: str, c: Criterion) -> Select:
    """https://hl7.org/fhir/R4/search.html#number"""
    t = NumberIndex.__table__
    alts = []
    for v in c.values:
        prefix, value = _prefix(v, c)
        alts.append(_compare(t.c.value, prefix, *_decimal(value, c)))
    return _pks(t, res_type, c.name, or_(*alts))


def _quantity_value(t, v: str, c: Criterion) -> ColumnElement[bool]:
    prefix, rest = _prefix(v, c)
    number, _, unit = rest.partition("|")
    system, _, code = unit.partition("|")
    d, lo, hi = _decimal(number, c)
    cval, ccode = canonical(d, system or None, code or None)
    if cval is not None:
        clo, chi = canonical(lo, system, code)[0], canonical(hi, system, code)[0]
        return and_(t.c.canonical_code == ccode, _compare(t.c.canonical_value, prefix, cval, clo, chi))
    conds = [_compare(t.c.value, prefix, d, lo, hi)]
    if code:
        conds.append(or_(t.c.code == code, t.c.unit == code))
    if system:
        conds.append(t.c.system == system)
    return and_(*conds)


def _quantity(res_type: str, c: Criterion) -> Select:
    """``[prefix]number|system|code``, compared in canonical UCUM units when the unit converts
    (https://hl7.org/fhir/R4/search.html#quantity)."""
    t = QuantityIndex.__table__
    return _pks(t, res_type, c.name, or_(*[_quantity_value(t, v, c) for v in c.values]))


def _composite(res_type: str, c: Criterion) -> Select:
    """``component-code-value-quantity=loinc|8480-6$gt140`` (https://hl7.org/fhir/R4/search.html#composite).

    Over a repeating element (``Observation.component``) both halves must come from the same element:
    the index keeps each component's values under the composite's code with its element's group
    (``ehr.search.extract``). A composite over the resource itself is matched from its component
    parameters on the same resource.
    """
    param = registry.get_param(res_type, c.name)
    parts = [code for code, _expression in param.components]
    grouped = c.name in grouped_composites(res_type)
    alts = []
    for v in c.values:
        pieces = v.split("$")
        if len(pieces) != len(parts):
            raise InvalidError(f"'{c.label}={v}' needs {len(parts)} values joined by '$'", expression=[c.label])
        subs = []
        for code, piece in zip(parts, pieces, strict=True):
            sub = registry.get_param(res_type, code)
            if sub is None or sub.type not in _BUILDERS or sub.type == "composite":
                raise InvalidError(f"Composite '{c.name}' uses an unsupported component '{code}'",
                                   code="not-supported", expression=[c.label])
            # Grouped: the component's rows are stored under the composite's own code.
            subs.append(_BUILDERS[sub.type](res_type, Criterion(c.name if grouped else code, None, (piece,))))
        alts.append(_same_element(subs) if grouped else _same_resource(subs))
    if len(alts) == 1:
        return alts[0]
    return select(alts[0].subquery().c[0]).union(*alts[1:])


def _same_resource(subs: list[Select]) -> Select:
    pk = subs[0].selected_columns[0]
    return subs[0].where(*[pk.in_(s) for s in subs[1:]])


def _same_element(subs: list[Select]) -> Select:
    """Resources where component ``i`` matched in row ``group * GROUP_STRIDE + i`` of one element."""
    rows = []
    for position, sub in enumerate(subs):
        t = sub.selected_columns[0].table
        element = (t.c.grp - position).label("element")
        cond = [t.c.grp.is_not(None)] + ([t.c.grp % GROUP_STRIDE == 0] if position == 0 else [])
        rows.append(sub.with_only_columns(t.c.resource_pk, element).where(*cond).subquery())
    first = rows[0]
    stmt = select(first.c.resource_pk)
    for other in rows[1:]:
        stmt = stmt.join(other, and_(other.c.resource_pk == first.c.resource_pk,
                                     other.c.element == first.c.element))
    return stmt


_BUILDERS: dict[str, Callable[[str, Criterion], Select]] = {
    "token": _token, "string": _string, "reference": _reference, "uri": _uri, "date": _date,
    "number": _number, "quantity": _quantity, "composite": _composite,
}

# Sort keys (https://hl7.org/fhir/R4/search.html#sort): the column each parameter type sorts by.
_SORT_COLUMN = {"string": "normalized", "token": "code", "date": "low", "number": "value", "quantity": "value",
                "uri": "uri", "reference": "target_id"}


def sort_columns(res_type: str, sort: str | None, res: TableClause | Alias = R) -> list:
    """ORDER BY for ``_sort=a,-b``; the primary key last so equal keys keep a stable order."""
    if not sort:
        return [res.c.last_updated.desc(), res.c.pk.desc()]
    out = []
    for key in sort.split(","):
        desc = key.startswith("-")
        name = key.lstrip("-")
        if name == "_lastUpdated":
            col = res.c.last_updated
        elif name == "_id":
            col = res.c.res_id
        else:
            param = registry.get_param(res_type, name)
            if param is None or param.type not in _SORT_COLUMN:
                raise InvalidError(f"Cannot sort {res_type} by '{name}'", code="not-supported", expression=["_sort"])
            table = _TABLE[param.type]
            value = getattr(table.c, "high" if desc and param.type == "date" else _SORT_COLUMN[param.type])
            agg = func.max(value) if desc else func.min(value)
            col = (select(agg).where(table.c.resource_pk == res.c.pk, table.c.param == name)
                   .scalar_subquery())
        out.append(col.desc().nulls_last() if desc else col.asc().nulls_last())
    out.append(res.c.pk.asc())
    return out
