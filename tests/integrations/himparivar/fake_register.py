"""A fake of the HimParivar register's API that follows ``integrations/himparivar/data/openapi.json``,
serving a synthetic register over HTTP; ``HP-SML-99…`` member IDs make it fail with HTTP 500."""

from __future__ import annotations

from fastapi import FastAPI, Header, Query
from fastapi.responses import JSONResponse

TOKEN = "register-token"


def _public(row: dict) -> dict:
    """A synthetic extract row as the API sends a member (no empty strings: null, numbers as numbers)."""
    out = {k: (v if v != "" else None) for k, v in row.items()}
    out["age"] = int(row["age"]) if row.get("age") else None
    return out


def fake_register(rows: list[dict]) -> FastAPI:
    app = FastAPI()
    by_id = {r["member_id"]: r for r in rows}
    families: dict[str, list[dict]] = {}
    for r in rows:
        families.setdefault(r["family_id"], []).append(r)

    def denied(authorization: str) -> JSONResponse | None:
        if authorization != f"Bearer {TOKEN}":
            return JSONResponse({"code": "401", "message": "a valid bearer token is required"}, status_code=401)
        return None

    @app.get("/members/{member_id}")
    async def get_member(member_id: str, authorization: str = Header(default="")):
        if (refused := denied(authorization)) is not None:
            return refused
        if member_id.startswith("HP-SML-99"):
            return JSONResponse({"code": "500", "message": "internal error"}, status_code=500)
        if member_id not in by_id:
            return JSONResponse({"code": "404", "message": f"no member {member_id}"}, status_code=404)
        return _public(by_id[member_id])

    @app.get("/families/{family_id}")
    async def get_family(family_id: str, authorization: str = Header(default="")):
        if (refused := denied(authorization)) is not None:
            return refused
        members = families.get(family_id)
        if members is None:
            return JSONResponse({"code": "404", "message": f"no family {family_id}"}, status_code=404)
        return {"family_id": family_id, "district": members[0]["district"],
                "himcare_card": members[0]["himcare_card"] or None, "members": [_public(m) for m in members]}

    @app.get("/members")
    async def search_members(name: str = "", district: str = "", birth_year: int | None = None,
                             gender: str | None = None, limit: int = Query(20, ge=1, le=100),
                             authorization: str = Header(default="")):
        if (refused := denied(authorization)) is not None:
            return refused
        if len(name) < 2 or not district:
            return JSONResponse({"code": "400", "message": "name (two letters or more) and district are required"},
                                status_code=400)
        found = [r for r in rows if r["name"].lower().startswith(name.lower()) and r["district"] == district
                 and (gender is None or r["gender"] == gender)
                 and (birth_year is None or (r["birth_date"] or "")[:4] == str(birth_year))]
        return {"members": [_public(r) for r in found[:limit]]}

    return app
