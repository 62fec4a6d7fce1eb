"""Type-level search to a searchset Bundle (https://hl7.org/fhir/R4/search.html).

Paging: when a search has more than one page, its ordered matches (up to ``MAX_STORED``) are kept
in ``search_result`` and the next/previous links name that stored search, so pages neither repeat
nor skip resources while other clients write (https://hl7.org/fhir/R4/http.html#paging).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import cache
from urllib.parse import urlencode

import orjson
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from ehr import repository as repo
from ehr.scope import Scope
from ehr.search import query as q
from ehr.search import registry
from ehr.validation import model_class
from himhis.errors import GoneError, InvalidError
from himhis.models import SearchResult

R = repo.R
REF = q.REF
SR = SearchResult.__table__
MAX_COUNT = 1000
MAX_STORED = 10_000
KEEP_FOR = timedelta(hours=1)
# Stores the ordered primary keys of a search in its own unit of work; returns the search id.
KeepPages = Callable[[list[int]], str]


def search(session: Session, res_type: str, pairs: list[tuple[str, str]], *, base: str, lenient: bool = False,
           default_count: int = 50, keep: KeepPages | None = None,
           readable: Callable[[str], bool] | None = None, scope: Scope | None = None) -> dict:
    """Run a search and build the searchset Bundle with self/next/previous links."""
    crits = q.criteria(res_type, pairs, lenient=lenient)
    opts = dict(pairs)
    count = _int(opts, "_count", default_count, MAX_COUNT)
    offset = _int(opts, "_offset", 0, 10**9)
    summary = opts.get("_summary")
    if summary not in (None, "true", "false", "text", "data", "count"):
        raise InvalidError(f"_summary '{summary}' is not one of true, false, text, data, count",
                           expression=["_summary"])
    includes = [v for k, v in pairs if k in ("_include", "_include:iterate")]
    revincludes = [v for k, v in pairs if k in ("_revinclude", "_revinclude:iterate")]
    iter_inc = [v for k, v in pairs if k == "_include:iterate"]
    iter_rev = [v for k, v in pairs if k == "_revinclude:iterate"]
    for spec in includes:
        _include_spec(spec)  # a malformed spec is a 400 even when nothing matches
    for spec in revincludes:
        _include_spec(spec, "_revinclude")
    if opts.get("_count") == "0":  # https://hl7.org/fhir/R4/search.html#count: the same as _summary=count
        summary = "count"
    used = q.used_pairs(res_type, pairs, lenient=lenient)
    scope = scope or Scope()
    stmt = q.select_pks(res_type, crits, scope=scope.clause(res_type))
    bundle: dict = {"resourceType": "Bundle", "type": "searchset"}
    if summary == "count":
        bundle["total"] = _count_all(session, stmt)
        bundle["link"] = [{"relation": "self", "url": _url(base, res_type, used)}]
        return bundle

    page_id = opts.get("_page")
    if page_id:
        pks, total, more = _stored_page(session, page_id, offset, count)
    else:
        ordered = stmt.with_only_columns(R.c.pk).order_by(*q.sort_columns(res_type, opts.get("_sort")))
        if offset:
            rows = session.execute(ordered.limit(count + 1).offset(offset)).scalars().all()
            pks, more, total = rows[:count], len(rows) > count, None
        else:
            rows = session.execute(ordered.limit(MAX_STORED + 1)).scalars().all()
            total = len(rows) if len(rows) <= MAX_STORED else None
            pks, more = rows[:count], len(rows) > count
            if more and keep is not None:
                page_id = keep(rows[:MAX_STORED])
    if opts.get("_total") == "accurate" and total is None:
        total = _count_all(session, stmt)
    if total is not None and (opts.get("_total") != "none"):
        bundle["total"] = total

    links = [{"relation": "self", "url": _url(base, res_type, used)}]
    page_args = [("_page", page_id)] if page_id else []
    # A stored page needs only the result parameters; a live query needs every parameter it used.
    keep_args = ([(k, v) for k, v in pairs if k.partition(":")[0] in q.RESULT_PARAMS and k not in ("_offset", "_page")]
                 if page_id else [(k, v) for k, v in used if k != "_offset"])
    if more:
        links.append({"relation": "next", "url": _url(base, res_type, [*keep_args, *page_args,
                                                                       ("_offset", str(offset + count))])})
    if offset:
        links.append({"relation": "previous", "url": _url(base, res_type, [*keep_args, *page_args,
                                                                           ("_offset", str(max(0, offset - count)))])})
    bundle["link"] = links

    rows = _rows(session, pks)
    if not scope.unrestricted:  # also guards a stored page fetched with another caller's link
        rows = _in_scope(session, scope, rows)
    shape = _shaper(opts.get("_elements"), summary)
    entries = [_entry(base, r, "match", shape) for r in rows]
    if includes or revincludes:
        seen = {(r.res_type, r.res_id) for r in rows}
        extra = _includes(session, res_type, [r.pk for r in rows], includes, revincludes, seen)
        if (iter_inc or iter_rev) and extra:
            more_rows = _includes(session, None, [r.pk for r in extra], iter_inc, iter_rev, seen)
            extra += more_rows
        if readable is not None:
            extra = [r for r in extra if readable(r.res_type)]
        if not scope.unrestricted:
            extra = _in_scope(session, scope, extra)
        entries += [_entry(base, r, "include", shape) for r in extra]
    bundle["entry"] = entries
    return bundle


def _in_scope(session: Session, scope: Scope, rows: list) -> list:
    by_type: dict[str, list[int]] = {}
    for r in rows:
        by_type.setdefault(r.res_type, []).append(r.pk)
    visible = set()
    for res_type, pks in by_type.items():
        visible |= scope.visible(session, res_type, pks)
    return [r for r in rows if r.pk in visible]


def keep_pages(session: Session, pks: list[int]) -> str:
    """Store a search's ordered matches and drop stored searches past their time."""
    now = repo.utcnow()
    session.execute(delete(SR).where(SR.c.created < now - KEEP_FOR))
    search_id = str(uuid.uuid4())
    session.execute(insert(SR), [{"search_id": search_id, "position": i, "resource_pk": pk, "created": now}
                                 for i, pk in enumerate(pks)])
    return search_id


def _stored_page(session: Session, search_id: str, offset: int, count: int) -> tuple[list[int], int, bool]:
    total = session.execute(select(func.count()).select_from(SR).where(SR.c.search_id == search_id)).scalar_one()
    if not total:
        raise GoneError(f"The search '{search_id}' has expired or never existed; run the search again")
    pks = session.execute(select(SR.c.resource_pk).where(SR.c.search_id == search_id, SR.c.position >= offset,
                                                         SR.c.position < offset + count)
                          .order_by(SR.c.position)).scalars().all()
    return list(pks), total, offset + count < total


def _count_all(session: Session, stmt) -> int:
    return session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()


def _rows(session: Session, pks: list[int]) -> list:
    """Live rows for primary keys, in the order given (a deleted match leaves its page)."""
    if not pks:
        return []
    found = {r.pk: r for r in session.execute(select(R.c.pk, R.c.res_type, R.c.res_id, R.c.content)
                                              .where(R.c.pk.in_(pks), R.c.deleted.is_(False)))}
    return [found[pk] for pk in pks if pk in found]


def _includes(session: Session, res_type: str | None, pks: list[int], includes: Iterable[str],
              revincludes: Iterable[str], seen: set) -> list:
    """``_include`` and ``_revinclude`` (https://hl7.org/fhir/R4/search.html#include)."""
    if not pks:
        return []
    found: list = []
    for spec in includes:
        src, param, target = _include_spec(spec)
        if res_type is not None and src != res_type and src != "*":
            continue
        cond = [REF.c.resource_pk.in_(pks), REF.c.target_id.is_not(None)]
        if param != "*":
            cond.append(REF.c.param == param)
        if target:
            cond.append(REF.c.target_type == target)
        targets = session.execute(select(REF.c.target_type, REF.c.target_id).distinct().where(*cond)).all()
        wanted = [(t, i) for t, i in targets if (t, i) not in seen]
        rows = repo.current_many(session, wanted)
        for key in wanted:
            row = rows.get(key)
            if row is not None and not row.deleted and key not in seen:
                seen.add(key)
                found.append(row)
    if revincludes:
        keys = session.execute(select(R.c.res_type, R.c.res_id).where(R.c.pk.in_(pks))).all()
        for spec in revincludes:
            src, param, _target = _include_spec(spec)
            for rtype in {t for t, _ in keys}:
                ids = [i for t, i in keys if t == rtype]
                sources = select(REF.c.resource_pk).where(REF.c.res_type == src, REF.c.param == param,
                                                          REF.c.target_type == rtype, REF.c.target_id.in_(ids))
                for row in session.execute(select(R.c.pk, R.c.res_type, R.c.res_id, R.c.content)
                                           .where(R.c.pk.in_(sources), R.c.deleted.is_(False))):
                    if (row.res_type, row.res_id) not in seen:
                        seen.add((row.res_type, row.res_id))
                        found.append(row)
    return found


def _include_spec(spec: str, name: str = "_include") -> tuple[str, str, str | None]:
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidError(f"{name} '{spec}' is not of the form Type:parameter[:targetType]", expression=[name])
    src, param = parts[0], parts[1]
    if param != "*":
        p = registry.get_param(src, param)
        if p is None or p.type != "reference":
            raise InvalidError(f"{name}: '{param}' is not a reference search parameter of {src}",
                               expression=[name])
    return src, param, parts[2] if len(parts) == 3 else None


@cache
def _summary_elements(res_type: str) -> frozenset[str]:
    """Elements marked isSummary in the R4 definition of a type (from the R4B models)."""
    cls = model_class(res_type)
    out = set()
    for name, info in cls.model_fields.items():
        extra = info.json_schema_extra or {}
        if isinstance(extra, dict) and extra.get("summary_element_property"):
            out.add(info.alias or name)
    return frozenset(out)


_SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


def _shaper(elements: str | None, summary: str | None) -> Callable[[str, str], object] | None:
    """``_elements`` and ``_summary`` (https://hl7.org/fhir/R4/search.html#elements, #summary)."""
    if not elements and summary in (None, "false"):
        return None
    wanted = {e.strip() for e in elements.split(",") if e.strip()} if elements else None

    def shape(res_type: str, text: str) -> object:
        data = orjson.loads(text)
        if wanted is not None:
            keep = wanted | {"resourceType", "id", "meta"}
        elif summary == "true":
            keep = _summary_elements(res_type) | {"resourceType", "id", "meta"}
        elif summary == "text":
            keep = {"resourceType", "id", "meta", "text"}
        else:  # data
            keep = set(data) - {"text"}
        out = {k: v for k, v in data.items() if k in keep}
        meta = dict(out.get("meta") or {})
        meta["tag"] = [*meta.get("tag", []), _SUBSETTED]
        out["meta"] = meta
        return out

    return shape


def _entry(base: str, row, mode: str, shape) -> dict:
    resource = shape(row.res_type, row.content) if shape else orjson.Fragment(row.content)
    return {"fullUrl": f"{base}/{row.res_type}/{row.res_id}", "resource": resource, "search": {"mode": mode}}


def _int(opts: dict, name: str, default: int, maximum: int) -> int:
    raw = opts.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise InvalidError(f"'{name}' must be a non-negative whole number, not '{raw}'", expression=[name])
    return min(int(raw), maximum)


def _url(base: str, res_type: str, pairs: list[tuple[str, str]]) -> str:
    return f"{base}/{res_type}?{urlencode(pairs)}" if pairs else f"{base}/{res_type}"
