"""A synthetic HimParivar register: families of fictional people, written as an extract.

Names, places and districts come from the demo data (``himhis/demo/data``: Himachali given names and
family names with their Devanagari spelling, real villages with tehsil and PIN); families are a head
with spouse, children and sometimes parents, about 3.75 members each (the register's 7.5 million
people in about 20 lakh families). Some members have only a stated age, no mobile or no ABHA number,
as in the register. Deterministic for a seed. No row describes a real person, and nothing shaped like
an Aadhaar number is ever written.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from integrations.himparivar.records import layout

DEMO = Path(__file__).resolve().parents[2] / "himhis" / "demo" / "data"


def _rows(name: str) -> list[dict[str, str]]:
    with (DEMO / f"{name}.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


@dataclass(frozen=True, slots=True)
class _Name:
    latin: str
    devanagari: str


@cache
def _data() -> dict[str, Any]:
    districts = _rows("districts")
    places: dict[str, list[dict[str, str]]] = {}
    for p in _rows("places"):
        places.setdefault(p["district"], []).append(p)
    given = {"male": [], "female": []}
    for g in _rows("given_names"):
        if g["gender"] in given:
            given[g["gender"]].append(_Name(g["latin"], g["devanagari"]))
    surnames = [s for s in _rows("surnames") if s["generic"] != "1"]
    return {"districts": [d for d in districts if d["district"] in places], "places": places, "given": given,
            "surnames": [(_Name(s["latin"], s["devanagari"]),
                          int(s["weight_shimla"]) + int(s["weight_kangra"]) + int(s["weight_tribal"]) + 1)
                         for s in surnames]}


class Register:
    """Generates families until ``members`` people have been written."""

    def __init__(self, members: int, *, seed: int = 7, today: date = date(2026, 11, 24)) -> None:
        self.members = members
        self.rng = random.Random(seed)
        self.today = today
        self._member_no = self.rng.randrange(10_000_000, 20_000_000)
        self._family_no = self.rng.randrange(1_000_000, 2_000_000)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        written = 0
        while written < self.members:
            for member in self._family():
                if written >= self.members:
                    return
                written += 1
                yield member

    # -- one family ------------------------------------------------------------------------------

    def _family(self) -> list[dict[str, Any]]:
        rng, data = self.rng, _data()
        district = rng.choices(data["districts"], weights=[int(d["weight_igmc"]) + int(d["weight_rpgmc"]) + 2
                                                           for d in data["districts"]])[0]
        place = rng.choices(data["places"][district["district"]],
                            weights=[int(p["weight"]) for p in data["places"][district["district"]]])[0]
        surname = rng.choices([s for s, _ in data["surnames"]], weights=[w for _, w in data["surnames"]])[0]
        self._family_no += 1
        family = {"family_id": f"HPF-{district['code']}-{self._family_no:07d}", "district": district["district"],
                  "village": place["place"], "block": place["tehsil"], "tehsil": place["tehsil"], "pin": place["pin"],
                  "ration_card": f"HP{rng.randrange(10**9, 10**10):010d}" if rng.random() < 0.9 else "",
                  "himcare_card": (f"HC-{rng.randint(2019, self.today.year)}-{rng.randrange(10**6, 10**7):07d}"
                                   if rng.random() < 0.3 else ""),
                  "code": district["code"]}
        head_age = rng.randint(24, 80)
        head_male = rng.random() < 0.85
        head = self._person(family, "self", "male" if head_male else "female", head_age, surname, relative=None)
        members = [head]
        if rng.random() < 0.8:
            spouse_gender = "female" if head_male else "male"
            spouse = self._person(family, "spouse", spouse_gender, max(18, head_age + rng.randint(-8, 3)), surname,
                                  relative=head if spouse_gender == "female" else None)
            members.append(spouse)
            if not head_male:
                head["relative_name"] = spouse["name"]
        father = head if head_male else (members[1] if len(members) > 1 else None)
        for _ in range(rng.choices([0, 1, 2, 3, 4], weights=[10, 20, 35, 25, 10])[0]):
            age = head_age - rng.randint(20, 34)
            if age < 0:
                continue
            gender = rng.choice(["male", "female"])
            members.append(self._person(family, "son" if gender == "male" else "daughter", gender, age, surname,
                                        relative=father))
        if head_age < 50 and rng.random() < 0.3:
            members.append(self._person(family, "mother", "female", head_age + rng.randint(20, 32), surname,
                                        relative=None))
        return members

    def _person(self, family: dict[str, Any], relation: str, gender: str, age: int, surname: _Name,
                relative: dict[str, Any] | None) -> dict[str, Any]:
        rng = self.rng
        given = rng.choice(_data()["given"][gender])
        self._member_no += 1
        born = self.today - timedelta(days=age * 365 + rng.randint(0, 364))
        stated_age_only = rng.random() < 0.15
        adult = age >= 18
        return {
            "member_id": f"HP-{family['code']}-{self._member_no:08d}",
            "family_id": family["family_id"],
            "relation": relation,
            "name": f"{given.latin} {surname.latin}",
            "name_devanagari": f"{given.devanagari} {surname.devanagari}",
            "gender": {"male": "M", "female": "F"}[gender],
            "birth_date": "" if stated_age_only else born.isoformat(),
            "age": str(age) if stated_age_only else "",
            "relative_name": relative["name"] if relative else "",
            "village": family["village"], "block": family["block"], "tehsil": family["tehsil"],
            "district": family["district"], "pin": family["pin"], "ration_card": family["ration_card"],
            "abha": (f"91-{rng.randrange(1000, 10000)}-{rng.randrange(1000, 10000)}-{rng.randrange(1000, 10000)}"
                     if rng.random() < 0.35 else ""),
            "mobile": f"{rng.choice('6789')}{rng.randrange(10**8, 10**9)}" if adult and rng.random() < 0.6 else "",
            "himcare_card": family["himcare_card"],
            "status": rng.choices(["active", "deceased", "migrated"], weights=[98, 1, 1])[0],
            "updated": (self.today - timedelta(days=rng.randint(0, 900))).isoformat(),
        }


def write(path: Path, members: int, *, seed: int = 7, today: date = date(2026, 11, 24)) -> int:
    """Write an extract of ``members`` synthetic members (CSV, or JSON lines for .jsonl); returns the count."""
    path = Path(path)
    columns = layout()["columns"]
    n = 0
    with path.open("w", encoding="utf-8", newline="") as f:
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            for member in Register(members, seed=seed, today=today):
                f.write(orjson.dumps({k: member[k] for k in columns if member[k] != ""}).decode() + "\n")
                n += 1
        else:
            out = csv.writer(f, lineterminator="\n")
            out.writerow(columns)
            for member in Register(members, seed=seed, today=today):
                out.writerow([member[k] for k in columns])
                n += 1
    return n


# -- labelled programme records ------------------------------------------------------------------

# Spelling variants seen when the same name is written by different hands (data, not rules of a language).
VARIANTS = (("sh", "s"), ("v", "b"), ("ee", "i"), ("i", "ee"), ("oo", "u"), ("a", "aa"), ("w", "v"),
            ("Kumari", "Kumar"), ("Devi", "Debi"), ("Singh", "Sing"), ("Chand", "Chandra"))


def _typo(rng: random.Random, word: str) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    match rng.randrange(3):
        case 0:  # two letters swapped
            return word[:i] + word[i + 1] + word[i] + word[i + 2:]
        case 1:  # a letter dropped
            return word[:i] + word[i + 1:]
        case _:  # a letter doubled
            return word[:i] + word[i] + word[i:]


def _variant(rng: random.Random, name: str) -> str:
    options = [(a, b) for a, b in VARIANTS if a in name]
    if not options:
        return name
    a, b = rng.choice(options)
    return name.replace(a, b, 1)


def programme_records(register: list[dict[str, Any]], count: int, *, seed: int = 17, unmatched: float = 0.1,
                      today: date = date(2026, 11, 24)) -> list[dict[str, Any]]:
    """Programme beneficiaries as field staff write them down, each labelled with the register member it
    is (``true_member_id``, None for people not in the register): typos, spelling variants, names in
    Devanagari, a stated age for the date of birth, women under their married name, missing fields."""
    rng = random.Random(seed)
    living = [r for r in register if r["status"] == "active"]
    outsiders = list(Register(max(1, int(count * unmatched) + 1), seed=seed + 1000, today=today))
    surnames = [s.latin for s, _ in _data()["surnames"]]
    out = []
    for n in range(count):
        stranger = rng.random() < unmatched
        person = rng.choice(outsiders) if stranger else rng.choice(living)
        given, _, surname = person["name"].rpartition(" ")
        if person["gender"] == "F" and person["relation"] in ("daughter",) and rng.random() < 0.3:
            surname = rng.choice(surnames)  # married since the register saw her
        name = f"{given} {surname}"
        if rng.random() < 0.2:
            name = person["name_devanagari"]
        else:
            if rng.random() < 0.25:
                name = " ".join(_typo(rng, w) if rng.random() < 0.5 else w for w in name.split())
            if rng.random() < 0.2:
                name = _variant(rng, name)
        born, age = person["birth_date"], person["age"]
        if born and rng.random() < 0.25:
            born, age = "", str(today.year - int(born[:4]))
        record = {
            "record_id": f"R{n:07d}",
            "name": name,
            "gender": person["gender"],
            "birth_date": born,
            "age": age,
            "relative_name": "" if rng.random() < 0.3 else (_typo(rng, person["relative_name"])
                                                             if rng.random() < 0.1 else person["relative_name"]),
            "village": "" if rng.random() < 0.2 else person["village"],
            "district": person["district"],
            "member_id": person["member_id"] if not stranger and rng.random() < 0.15 else "",
            "true_member_id": None if stranger else person["member_id"],
        }
        out.append(record)
    return out
