"""One member line of a register extract, checked and made into a row of the local register.

The layout and the code lists are data (``data/extract.json``); identifier formats are shared with
registration (``his/registration/data/identifiers.json``). A line is refused whole, with a reason
that names the field, never loaded in part; a line that holds an Aadhaar number in any field is
refused without keeping any of it.
"""

from __future__ import annotations

import csv
import re
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from his.registration import validators as v

DATA = Path(__file__).resolve().parent / "data"
DISTRICTS = Path(__file__).resolve().parents[2] / "himhis" / "demo" / "data" / "districts.csv"


class RowError(ValueError):
    """Why a line of an extract is refused."""


@cache
def layout() -> dict[str, Any]:
    return orjson.loads((DATA / "extract.json").read_bytes())


@cache
def districts() -> dict[str, str]:
    """District name by lower-case name and by code (Shimla, SML)."""
    out: dict[str, str] = {}
    with DISTRICTS.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out[row["district"].lower()] = row["district"]
            out[row["code"].lower()] = row["district"]
    return out


def _date(value: str, field: str) -> date:
    if len(value) == 10 and value[4] == "-":
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    for fmt in layout()["date_formats"]:
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    raise RowError(f"{field} '{value}' is not a date (write YYYY-MM-DD or DD/MM/YYYY)")


@cache
def _compiled(name: str) -> re.Pattern[str]:
    return re.compile(layout()[name]["pattern"])


def _pattern(name: str, value: str, what: str) -> str:
    spec = layout()[name]
    out = "".join(value.split()).upper()
    if not _compiled(name).fullmatch(out):
        raise RowError(f"{what} '{value}' is not in the register's form (for example {spec.get('example', '')})")
    return out


def member_row(fields: dict[str, Any], *, today: date) -> dict[str, Any]:
    """The register row for one extract line (a dict of column → text), or RowError saying why not."""
    spec = layout()
    values = {k: ("" if fields.get(k) is None else str(fields.get(k)).strip()) for k in spec["columns"]}
    if v.contains_aadhaar("\n".join(values.values())):  # a digit run never spans a line break
        where = next(k for k, text in values.items() if text and v.contains_aadhaar(text))
        raise RowError(f"{where} holds an Aadhaar number; the line was not loaded and nothing of it was kept")
    missing = [k for k in spec["required"] if not values[k]]
    if missing:
        raise RowError(f"missing {', '.join(missing)}")
    row: dict[str, Any] = {}
    try:
        row["member_id"] = v.himparivar_id(values["member_id"])
    except ValueError as exc:
        raise RowError(f"member_id: {exc}") from exc
    row["family_id"] = _pattern("family_id", values["family_id"], "family_id")
    if row["family_id"].split("-")[1] != row["member_id"].split("-")[1]:
        raise RowError(f"member {row['member_id']} and family {row['family_id']} name different districts")
    relation = values["relation"].lower()
    if relation not in spec["relations"]:
        raise RowError(f"relation '{values['relation']}' is not one of {', '.join(spec['relations'])}")
    row["relation"] = relation
    try:
        row["name"] = v.latin_name(values["name"], "name")
        row["name_devanagari"] = v.devanagari_name(values["name_devanagari"]) if values["name_devanagari"] else None
        row["relative_name"] = (v.latin_name(values["relative_name"], "father's or husband's name")
                                if values["relative_name"] else None)
    except ValueError as exc:
        raise RowError(str(exc)) from exc
    gender = spec["genders"].get(values["gender"].lower())
    if gender is None:
        raise RowError(f"gender '{values['gender']}' is not M, F or O")
    row["gender"] = gender
    updated = _date(values["updated"], "updated") if values["updated"] else None
    if updated and updated > today:
        raise RowError(f"updated {updated.isoformat()} is in the future")
    row["updated"] = updated
    row.update(_birth(values["birth_date"], values["age"], as_of=updated or today, today=today))
    for key in ("village", "block", "tehsil"):
        row[key] = " ".join(values[key].split()) or None
    district = districts().get(values["district"].lower())
    if district is None:
        raise RowError(f"district '{values['district']}' is not a district of Himachal Pradesh")
    row["district"] = district
    row["pin"] = _pattern("pin", values["pin"], "pin") if values["pin"] else None
    card = values["ration_card"]
    row["ration_card"] = _pattern("ration_card", card, "ration_card") if card else None
    try:
        row["abha"] = v.abha_number(values["abha"]) if values["abha"] else None
        row["mobile"] = v.mobile_number(values["mobile"]).split()[-1] if values["mobile"] else None
        row["himcare_card"] = v.himcare_card(values["himcare_card"], today=today) if values["himcare_card"] else None
    except ValueError as exc:
        raise RowError(str(exc)) from exc
    status = (values["status"] or "active").lower()
    if status not in spec["statuses"]:
        raise RowError(f"status '{values['status']}' is not one of {', '.join(spec['statuses'])}")
    row["status"] = status
    return row


def _birth(birth_date: str, age: str, *, as_of: date, today: date) -> dict[str, Any]:
    spec = layout()
    if birth_date:
        born = _date(birth_date, "birth_date")
        if born > today:
            raise RowError(f"birth_date {born.isoformat()} is in the future")
        if born.year < spec["oldest_birth_year"]:
            raise RowError(f"birth_date {born.isoformat()} is before {spec['oldest_birth_year']}")
        return {"birth_date": born, "birth_year": born.year, "birth_estimated": False}
    if age:
        if not age.isdigit() or int(age) > spec["max_age"]:
            raise RowError(f"age '{age}' is not a whole number of years from 0 to {spec['max_age']}")
        return {"birth_date": None, "birth_year": as_of.year - int(age), "birth_estimated": True}
    return {"birth_date": None, "birth_year": None, "birth_estimated": False}
