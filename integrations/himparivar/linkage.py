"""Linking people (programme beneficiaries, patients) to HimParivar register members.

Deterministic first: a HimParivar member ID (or an ABHA number) that the register holds links at
once, if the name and birth year do not contradict it. The rest are linked probabilistically with
Splink (Fellegi-Sunter on DuckDB; the same settings run on Spark when the state outgrows one machine):
names compared by their sound key in either script (``his.mpi.matching.sound_key``: Devanagari is
romanised, spelling variants folded), birth date or year, sex, father's or husband's name and village,
blocked within district and birth year, within name keys, and within exact birth date. Each record
gets its best candidate with the match weight and probability: ``linked`` above the accept threshold,
``review`` for staff between the thresholds, ``unlinked`` below (thresholds in ``data/linkage.json``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
from rapidfuzz import fuzz

from his.mpi.matching import sound_key

DATA = Path(__file__).resolve().parent / "data"
LINKED, REVIEW, UNLINKED = "linked", "review", "unlinked"


@cache
def settings() -> dict[str, Any]:
    return orjson.loads((DATA / "linkage.json").read_bytes())


@dataclass(frozen=True, slots=True)
class Link:
    record_id: str
    member_id: str | None
    state: str  # linked, review or unlinked
    probability: float
    match_weight: float | None  # None for a deterministic link
    reason: str


def _keys(name: str) -> tuple[str, str]:
    words = sound_key(name or "").split()
    if not words:
        return "", ""
    return words[0], words[-1] if len(words) > 1 else ""


def _birth(row: dict[str, Any], today: date) -> tuple[str | None, int | None]:
    born = row.get("birth_date")
    if born:
        text = born.isoformat() if isinstance(born, date) else str(born)
        return text, int(text[:4])
    if row.get("birth_year"):
        return None, int(row["birth_year"])
    age = str(row.get("age") or "")
    return (None, today.year - int(age)) if age.isdigit() else (None, None)


def _gender(value: str | None) -> str | None:
    return {"m": "M", "male": "M", "f": "F", "female": "F", "o": "O", "other": "O"}.get((value or "").lower())


def prepare(rows: Iterable[dict[str, Any]], id_column: str, *, today: date) -> list[dict[str, Any]]:
    """The comparison columns of people (register rows or records), keyed ``unique_id``."""
    out = []
    for row in rows:
        first, last = _keys(row.get("name") or "")
        dob, year = _birth(row, today)
        relative_first, relative_last = _keys(row.get("relative_name") or "")
        out.append({"unique_id": row[id_column], "first_key": first or None, "surname_key": last or None,
                    "dob": dob, "birth_year": year, "gender": _gender(row.get("gender")),
                    "relative_key": " ".join(k for k in (relative_first, relative_last) if k) or None,
                    "village_key": sound_key(row.get("village") or "") or None,
                    "district": row.get("district") or None})
    return out


def _deterministic(records: list[dict[str, Any]], register: dict[str, dict[str, Any]], today: date) -> dict[str, Link]:
    """Links by a member ID the register holds, unless name or birth year contradict it."""
    out = {}
    for rec in records:
        member = register.get(str(rec.get("member_id") or "").strip().upper())
        if member is None:
            continue
        _, rec_year = _birth(rec, today)
        _, reg_year = _birth(member, today)
        alike = fuzz.token_sort_ratio(sound_key(rec.get("name") or ""), sound_key(member.get("name") or ""))
        if (rec_year is None or reg_year is None or abs(rec_year - reg_year) <= settings()["birth_year_tolerance"]) \
                and alike >= 60:
            out[rec["record_id"]] = Link(rec["record_id"], member["member_id"], LINKED, 1.0, None,
                                         "HimParivar member ID given, name and birth year agree")
        else:
            out[rec["record_id"]] = Link(rec["record_id"], member["member_id"], REVIEW, 0.5, None,
                                         "HimParivar member ID given, but name or birth year differ")
    return out


def _splink_settings(expected_share: float):
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    s = settings()
    tolerance = s["birth_year_tolerance"]
    birth = cl.CustomComparison(output_column_name="birth", comparison_levels=[
        cll.CustomLevel("birth_year_l IS NULL OR birth_year_r IS NULL").configure(is_null_level=True),
        cll.ExactMatchLevel("dob"),
        cll.ExactMatchLevel("birth_year"),
        cll.CustomLevel(f"abs(birth_year_l - birth_year_r) <= {tolerance}"),
        cll.ElseLevel()])
    return SettingsCreator(
        link_type="link_only",
        unique_id_column_name="unique_id",
        probability_two_random_records_match=expected_share,
        comparisons=[
            cl.JaroWinklerAtThresholds("first_key", s["name_thresholds"]),
            cl.JaroWinklerAtThresholds("surname_key", s["name_thresholds"]),
            birth,
            cl.ExactMatch("gender"),
            cl.JaroWinklerAtThresholds("relative_key", s["relative_thresholds"]),
            cl.ExactMatch("village_key"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("district", "birth_year", "gender"),
            block_on("first_key", "surname_key"),
            block_on("first_key", "district"),
            block_on("dob"),
        ],
        retain_intermediate_calculation_columns=False,
    )


MODEL = DATA / "linkage_model.json"
MIN_TRAINING_RECORDS = 500  # below this, the stored model is used: EM needs many comparisons


def _linker(register_rows: list[dict[str, Any]], records: list[dict[str, Any]], today: date, model: Any):
    import duckdb
    from splink import Linker
    from splink.backends.duckdb import DuckDBAPI

    con = duckdb.connect()
    api = DuckDBAPI(connection=con)
    left = api.register(pa.Table.from_pylist(prepare(register_rows, "member_id", today=today)), table_name="register")
    right = api.register(pa.Table.from_pylist(prepare(records, "record_id", today=today)), table_name="records")
    return Linker([left, right], model, log_level=logging.WARNING), con


def train(register_rows: list[dict[str, Any]], records: list[dict[str, Any]], *, today: date) -> dict[str, Any]:
    """Fit the model on these people (u by random sampling, m by expectation maximisation, no labels)."""
    from splink import block_on

    s = settings()
    linker, con = _linker(register_rows, records, today, _splink_settings(min(0.5, 1 / max(1, len(register_rows)))))
    try:
        linker.training.estimate_u_using_random_sampling(max_pairs=s["u_sample_pairs"], seed=s["seed"])
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("district", "birth_year"))
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("first_key", "surname_key"))
        return linker.misc.save_model_to_json()
    finally:
        con.close()


def stored_model() -> dict[str, Any]:
    """The model fitted on the labelled synthetic set (``himhis himparivar train-model`` writes it)."""
    return orjson.loads(MODEL.read_bytes())


def link(register_rows: list[dict[str, Any]], records: list[dict[str, Any]], *, today: date,
         model: dict[str, Any] | None = None) -> list[Link]:
    """The best register member for each record (``record_id``), with its state, probability and reason.

    The model is fitted on the data when there are enough records, else the stored model is used."""
    s = settings()
    by_id = {r["member_id"]: r for r in register_rows}
    decided = _deterministic(records, by_id, today)
    rest = [r for r in records if r["record_id"] not in decided]
    links: dict[str, Link] = dict(decided)
    if rest and register_rows:
        if model is None:
            model = train(register_rows, rest, today=today) if len(rest) >= MIN_TRAINING_RECORDS else stored_model()
        model = dict(model) | {"probability_two_random_records_match": min(0.5, 1 / max(1, len(register_rows)))}
        linker, con = _linker(register_rows, rest, today, model)
        try:
            pairs = linker.inference.predict(threshold_match_probability=s["predict_from"]).as_record_list()
        finally:
            con.close()
        best: dict[str, dict[str, Any]] = {}
        for p in pairs:
            member, record = (p["unique_id_l"], p["unique_id_r"]) if p["source_dataset_l"] == "register" else \
                (p["unique_id_r"], p["unique_id_l"])
            if record not in best or p["match_probability"] > best[record]["match_probability"]:
                best[record] = p | {"member": member}
        for rec in rest:
            p = best.get(rec["record_id"])
            if p is None:
                links[rec["record_id"]] = Link(rec["record_id"], None, UNLINKED, 0.0, None, "no candidate")
                continue
            prob = float(p["match_probability"])
            state = LINKED if prob >= s["accept_at"] else REVIEW if prob >= s["review_from"] else UNLINKED
            links[rec["record_id"]] = Link(rec["record_id"], p["member"] if state != UNLINKED else None, state, prob,
                                           float(p["match_weight"]), "probabilistic (Splink)")
    for rec in records:
        links.setdefault(rec["record_id"], Link(rec["record_id"], None, UNLINKED, 0.0, None, "register empty"))
    return [links[r["record_id"]] for r in records]
