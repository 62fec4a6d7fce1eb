"""Type-level search to a searchset Bundle (https://hl7.org/fhir/R4/search.html)."""

from __future__ import annotations

from urllib.parse import urlencode

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ehr import repository as repo
from ehr.search import query as q
from himhis.errors import InvalidError

R = repo.R
MAX_COUNT = 1000


def search(
    session: Session,
    res_type: str,
    pairs: list[tuple[str, str]],
    *,
    base: str,
    lenient: bool = False,
    default_count: int = 50,
) -> dict:
    """Run a search and build the searchset Bundle with self/next/previous links."""
    crits = q.criteria(res_type, pairs, lenient=lenient)
    opts = dict(pairs)
    count = _int(opts, "_count", default_count, MAX_COUNT)
    offset = _int(opts, "_offset", 0, 10**9)
    stmt = q.select_pks(res_type, crits)
    summary = opts.get("_summary")
    bundle: dict = {"resourceType": "Bundle", "type": "searchset"}
    if summary == "count" or opts.get("_total") == "accurate" or summary == "count":
        bundle["total"] = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
        if summary == "count":
            bundle["link"] = [{"relation": "self", "url": _url(base, res_type, pairs, None)}]
            return bundle
    stmt = stmt.order_by(*_order(opts.get("_sort"))).limit(count + 1).offset(offset)
    rows = session.execute(stmt).all()
    more = len(rows) > count
    rows = rows[:count]
    texts = repo.contents(session, [r.pk for r in rows])
    links = [{"relation": "self", "url": _url(base, res_type, pairs, offset)}]
    if more:
        links.append({"relation": "next", "url": _url(base, res_type, pairs, offset + count)})
    if offset:
        links.append({"relation": "previous", "url": _url(base, res_type, pairs, max(0, offset - count))})
    bundle["link"] = links
    bundle["entry"] = [
        {
            "fullUrl": f"{base}/{res_type}/{r.res_id}",
            "resource": orjson.Fragment(t),
            "search": {"mode": "match"},
        }
        for r, t in zip(rows, texts, strict=False)
    ]
    return bundle


def _order(sort: str | None) -> list:
    if not sort:
        return [R.c.last_updated.desc(), R.c.pk.desc()]
    out = []
    for key in sort.split(","):
        desc = key.startswith("-")
        name = key.lstrip("-")
        col = {"_lastUpdated": R.c.last_updated, "_id": R.c.res_id}.get(name)
        if col is None:
            raise InvalidError(
                f"_sort on '{name}' is not supported yet; use _lastUpdated or _id",
                code="not-supported",
                expression=["_sort"],
            )
        out.append(col.desc() if desc else col.asc())
    out.append(R.c.pk.asc())
    return out


def _int(opts: dict, name: str, default: int, maximum: int) -> int:
    raw = opts.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise InvalidError(f"'{name}' must be a non-negative whole number, not '{raw}'", expression=[name])
    return min(int(raw), maximum)


def _url(base: str, res_type: str, pairs: list[tuple[str, str]], offset: int | None) -> str:
    params = [(k, v) for k, v in pairs if k != "_offset"]
    if offset is not None:
        params.append(("_offset", str(offset)))
    return f"{base}/{res_type}?{urlencode(params)}" if params else f"{base}/{res_type}"
