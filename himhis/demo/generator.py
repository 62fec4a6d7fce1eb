"""Demo data for ``himhis seed-demo``: FHIR R4 transaction Bundles for IGMC Shimla and RPGMC Tanda.

Everything the data says — names, places, conditions, lab tests, reference ranges — is read from
``data/`` (sources in ``data/README.md``); this module only combines it. Output is a pure function of
the seed and the patient count: the clock is never read (``parameters.json`` fixes "now").

Bundle 1 holds the infrastructure (organizations, locations, staff); every further Bundle holds about
25 patients with their conditions, encounters and observations. Every entry is a plain
``PUT Type/id`` (FHIR R4 http.html#transaction) so seeding twice changes nothing. ``demo-patient-1``
(IGMC) and ``demo-patient-2`` (RPGMC) back the demo patient logins and are generated whatever the
count (``patients`` below 2 counts as 2).
"""

from __future__ import annotations

import bisect
import csv
import itertools
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

from himhis import systems

# The one URI this module needs beyond himhis.systems: the HimHIS department code system
# (codes = departments.csv), used in Encounter.serviceType and PractitionerRole.specialty.
DEPARTMENT_SYSTEM = f"{systems.BASE}/CodeSystem/department"

ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
LANGUAGE_EXT = "http://hl7.org/fhir/StructureDefinition/language"
PROFILE_BASE = "http://hl7.org/fhir/StructureDefinition/"
TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"

# Marks every resource as test data (HL7 v3 ActReason HTEST), so demo rows can be told from real ones.
TEST_DATA_TAG = {"system": f"{TERMINOLOGY}v3-ActReason", "code": "HTEST", "display": "test health data"}

Resource = dict[str, Any]


# --------------------------------------------------------------------------------------------- data


def _open(name: str):
    return resources.files("himhis.demo.data").joinpath(name).open(encoding="utf-8")


def _csv(name: str) -> list[dict[str, str]]:
    with _open(name) as handle:
        return list(csv.DictReader(handle))


def _json(name: str) -> Any:
    with _open(name) as handle:
        return json.load(handle)


def _range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    return float(low), float(high or low)


@dataclass(frozen=True)
class ConditionSpec:
    """One row of conditions.csv: an ICD-10 diagnosis and how it presents in the demo."""

    code: str
    display: str
    department: str
    sex: str
    min_age: float
    max_age: float
    weight: float
    chronic: bool  # seen again at follow-up visits and kept on the problem list
    series: bool  # chronic for a limited course only (pregnancy, TB treatment): resolved once it is over
    followup_days: tuple[float, float] | None
    inpatient: float
    los_days: tuple[float, float] | None
    ward: str
    profile: str
    labs: tuple[str, ...]

    def fits(self, sex: str, age: float) -> bool:
        return self.sex in ("any", sex) and self.min_age <= age <= self.max_age


@dataclass(frozen=True)
class Band:
    """A value distribution for an age (and sex) band: mean, spread, hard limits, reference range."""

    sex: str
    age_min: float
    age_max: float
    mean: float
    sd: float
    floor: float
    ceiling: float
    low: float | None = None
    high: float | None = None


class Catalogue:
    """Everything read from ``data/``, parsed once."""

    def __init__(self) -> None:
        self.params = _json("parameters.json")
        self.organizations = _json("organizations.json")
        self.demo_patients = {k: v for k, v in _json("demo_patients.json").items() if not k.startswith("_")}
        self.departments = {row["code"]: row for row in _csv("departments.csv")}
        self.wards = _csv("wards.csv")
        self.staff = _csv("staff.csv")
        self.surnames = {row["latin"]: row for row in _csv("surnames.csv")}
        self.given_names = _csv("given_names.csv")
        self.given_hi = {row["latin"]: row["devanagari"] for row in self.given_names}
        self.districts = {row["district"]: row for row in _csv("districts.csv")}
        self.places = _csv("places.csv")
        self.conditions = {
            row["code"]: ConditionSpec(
                code=row["code"],
                display=row["display"],
                department=row["department"],
                sex=row["sex"],
                min_age=float(row["min_age"]),
                max_age=float(row["max_age"]),
                weight=float(row["weight"]),
                chronic=row["chronic"] in ("1", "series"),
                series=row["chronic"] == "series",
                followup_days=_range(row["followup_days"]) if row["followup_days"] else None,
                inpatient=float(row["inpatient"]),
                los_days=_range(row["los_days"]) if row["los_days"] else None,
                ward=row["ward"],
                profile=row["profile"],
                labs=tuple(row["labs"].split()),
            )
            for row in _csv("conditions.csv")
        }
        self.lab_tests = {row["loinc"]: row for row in _csv("lab_tests.csv")}
        self.lab_ranges: dict[str, list[Band]] = {}
        for row in _csv("reference_ranges.csv"):
            self.lab_ranges.setdefault(row["loinc"], []).append(
                Band(
                    sex=row["sex"],
                    age_min=float(row["age_min"]),
                    age_max=float(row["age_max"]),
                    mean=float(row["mean"]),
                    sd=float(row["sd"]),
                    floor=float(row["floor"]),
                    ceiling=float(row["ceiling"]),
                    low=float(row["low"]),
                    high=float(row["high"]),
                )
            )
        self.vital_signs = _json("vital_signs.json")["signs"]
        self.vital_norms: dict[str, list[Band]] = {}
        for row in _csv("vital_norms.csv"):
            self.vital_norms.setdefault(row["loinc"], []).append(
                Band(
                    sex="any",
                    age_min=float(row["age_min"]),
                    age_max=float(row["age_max"]),
                    mean=float(row["mean"]),
                    sd=float(row["sd"]),
                    floor=float(row["floor"]),
                    ceiling=float(row["ceiling"]),
                )
            )
        self.growth: dict[str, list[tuple[float, float, float, float, float]]] = {}
        for row in _csv("growth.csv"):
            self.growth.setdefault(row["sex"], []).append(
                tuple(float(row[k]) for k in ("age", "height", "height_sd", "weight", "weight_sd"))
            )
        self.effects: dict[str, dict[str, tuple[float, float]]] = {}
        for row in _csv("profile_effects.csv"):
            self.effects.setdefault(row["profile"], {})[row["measure"]] = (
                float(row["mean"]),
                float(row["sd"]),
            )
        self._check()

    def _check(self) -> None:
        """Fail early on a data file that contradicts another one."""
        problems = [
            f"staff {r['id']}: no Devanagari name" for r in self.staff if r["given"] not in self.given_hi
        ]
        problems += [
            f"staff {r['id']}: unknown surname" for r in self.staff if r["family"] not in self.surnames
        ]
        problems += [
            f"place {p['place']}: unknown district"
            for p in self.places
            if p["district"] not in self.districts
        ]
        for spec in self.conditions.values():
            if spec.department not in self.departments:
                problems.append(f"condition {spec.code}: unknown department {spec.department}")
            if spec.profile and spec.profile not in self.effects:
                problems.append(f"condition {spec.code}: unknown profile {spec.profile}")
            problems += [
                f"condition {spec.code}: unknown lab {c}" for c in spec.labs if c not in self.lab_tests
            ]
        routine = self.params["inpatient_routine_labs"]
        problems += [f"routine lab {c} unknown" for c in routine if c not in self.lab_tests]
        if problems:
            raise ValueError("inconsistent demo data: " + "; ".join(problems))

    def band(self, bands: list[Band], sex: str, age: float) -> Band:
        for band in bands:
            if band.sex in ("any", sex) and band.age_min <= age < band.age_max:
                return band
        return bands[-1]


@cache
def catalogue() -> Catalogue:
    return Catalogue()


# ------------------------------------------------------------------------------------------ helpers


def _ref(resource_type: str, resource_id: str, display: str | None = None) -> dict[str, str]:
    ref = {"reference": f"{resource_type}/{resource_id}"}
    if display:
        ref["display"] = display
    return ref


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _concept(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    return {"coding": [_coding(system, code, display)], "text": text or display}


def _ts(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _round(value: float, decimals: int) -> int | float:
    return round(value) if decimals == 0 else round(value, decimals)


def _quantity(value: float, unit: str, code: str, decimals: int) -> dict[str, Any]:
    return {"value": _round(value, decimals), "unit": unit, "system": UCUM, "code": code}


def _meta(*profiles: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"tag": [dict(TEST_DATA_TAG)]}
    if profiles:
        meta["profile"] = [PROFILE_BASE + p for p in profiles]
    return meta


def _age(birth: date, moment: datetime) -> float:
    return (moment.date() - birth).days / 365.25


# ----------------------------------------------------------------------------------------- planning


@dataclass
class Stay:
    """A bed and the time it is taken (end None: still occupied at the reference time)."""

    bed_id: str
    bed_name: str
    start: datetime
    end: datetime | None


@dataclass
class Visit:
    """One planned encounter."""

    spec: ConditionSpec
    start: datetime
    end: datetime | None = None
    klass: str = "AMB"
    department: str = "medicine"
    in_progress: bool = False
    stay: Stay | None = None
    followup: bool = False


@dataclass
class PatientPlan:
    index: int
    id: str
    facility: dict[str, Any]
    place: dict[str, str]
    gender: str
    birth: date
    given: str
    family: str
    relative: str
    marital: str | None
    comorbidities: list[ConditionSpec] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)
    identifiers: list[str] = field(default_factory=list)
    uhid: str = ""
    height_z: float = 0.0
    weight_z: float = 0.0

    @property
    def chronic_profiles(self) -> list[str]:
        specs = [*self.comorbidities, *(v.spec for v in self.visits[:1])]
        return [s.profile for s in specs if s.chronic and not s.series and s.profile]


class _Generator:
    """One run: plans every patient (so bed occupancy is known), then builds the Bundles."""

    def __init__(self, seed: int, patients: int) -> None:
        self.cat = catalogue()
        self.p = self.cat.params
        self.rng = random.Random(seed)
        self.count = max(patients, 2)
        self.now = datetime.fromisoformat(self.p["reference_datetime"])
        self.window_start = self.now - timedelta(days=self.p["history_days"])
        self.facilities = {f["id"]: f for f in self.cat.organizations["facilities"]}
        self.wards = {fid: [w for w in self.cat.wards if w["facility"] == fid] for fid in self.facilities}
        # bed id -> sorted list of (start, end) stays; end None means occupied now
        self.bed_stays: dict[str, list[tuple[datetime, datetime | None]]] = {}
        self.doctors: dict[tuple[str, str], dict[str, str]] = {}
        self.nurses: dict[str, list[dict[str, str]]] = {}
        for row in self.cat.staff:
            if row["role"] == "doctor":
                self.doctors.setdefault((row["facility"], row["department"]), row)
            else:
                self.nurses.setdefault(row["facility"], []).append(row)

    # -- random helpers
    def pick(self, items: list[Any], weights: list[float]) -> Any:
        return self.rng.choices(items, weights=weights)[0]

    def normal(self, mean: float, sd: float, floor: float, ceiling: float) -> float:
        return min(ceiling, max(floor, self.rng.gauss(mean, sd)))

    def uniform_time(self, start: datetime, end: datetime) -> datetime:
        return start + (end - start) * self.rng.random()

    # -- people
    def _era_column(self, year: int) -> str:
        return "weight_old" if year < 1965 else "weight_mid" if year < 1995 else "weight_young"

    def _given(self, gender: str, year: int, belt: str) -> str:
        column = self._era_column(year)
        rows = [r for r in self.cat.given_names if r["gender"] == gender]
        weights = []
        for row in rows:
            factor = (3.0 if belt == "tribal" else 0.0) if row["belt"] == "tribal" else 1.0
            weights.append(float(row[column]) * factor)
        return self.pick(rows, weights)["latin"]

    def _surname(self, belt: str) -> str:
        rows = list(self.cat.surnames.values())
        return self.pick(rows, [float(r[f"weight_{belt}"]) for r in rows])["latin"]

    def _plan_patient(self, index: int) -> PatientPlan:
        cat, p, rng = self.cat, self.p, self.rng
        pid = f"demo-patient-{index}"
        fixed = cat.demo_patients.get(pid)
        if fixed:
            facility = self.facilities[fixed["facility"]]
            place = next(
                pl
                for pl in cat.places
                if pl["place"] == fixed["place"] and pl["district"] == fixed["district"]
            )
            gender = fixed["gender"]
            age = fixed["age"] + rng.random()
        else:
            shares = p["facility_share"]
            facility = self.facilities[self.pick(list(shares), list(shares.values()))]
            districts = list(cat.districts.values())
            district = self.pick(districts, [float(d[f"weight_{facility['id']}"]) for d in districts])
            places = [pl for pl in cat.places if pl["district"] == district["district"]]
            place = self.pick(places, [float(pl["weight"]) for pl in places])
            gender = "female" if rng.random() < p["female_share"] else "male"
            low, high, _ = self.pick(p["age_bands"], [b[2] for b in p["age_bands"]])
            age = rng.uniform(low, high)
        birth = self.now.date() - timedelta(days=max(2, int(age * 365.25)))
        belt = place["belt"]

        if fixed:
            given, family = fixed["given"], fixed["family"]
        else:
            given = self._given(gender, birth.year, belt)
            family = self._surname(belt)
            devi = p["devi_surname_share"]
            tribal_name = next(r for r in cat.given_names if r["latin"] == given)["belt"] == "tribal"
            if gender == "female":
                if not tribal_name and birth.year < devi["born_before"] and rng.random() < devi["share"]:
                    family = "Devi"
                elif cat.surnames[family]["female_form"]:
                    family = cat.surnames[family]["female_form"]

        marital = None
        married = False
        if age >= 18:
            if fixed:
                married = fixed["married"]
            else:
                married = age >= p["married_from_age"][gender] and rng.random() < p["married_share"]
            marital = "M" if married else "U"
            if married and age >= 65 and rng.random() < p["widowed_share_over_65"]:
                marital = "W"

        if fixed:
            relative = fixed["relative"]
        else:
            husband = gender == "female" and married
            relative_year = birth.year - (4 if husband else 28)
            relative_given = self._given("male", relative_year, belt)
            # Kumar/Kumari/Devi are not family names: the relative is then written by given name alone.
            generic = cat.surnames[family]["generic"] == "1"
            relative = relative_given if generic else f"{relative_given} {family}"

        plan = PatientPlan(
            index=index,
            id=pid,
            facility=facility,
            place=place,
            gender=gender,
            birth=birth,
            given=given,
            family=family,
            relative=relative,
            marital=marital,
            height_z=max(-1.8, min(1.8, rng.gauss(0, 1))),
            weight_z=max(-2.0, min(2.0, rng.gauss(0, 1))),
        )
        coverage = p["identifier_coverage"]
        plan.identifiers = (
            list(fixed["identifiers"]) if fixed else [k for k in coverage if rng.random() < coverage[k]]
        )
        self._plan_visits(plan, fixed)
        return plan

    # -- encounters
    def _choose(
        self, sex: str, age: float, *, admit: bool = False, chronic_only: bool = False
    ) -> ConditionSpec | None:
        specs = [
            s
            for s in self.cat.conditions.values()
            if s.fits(sex, age) and (not admit or s.inpatient > 0) and (not chronic_only or s.chronic)
        ]
        if not specs:
            return None
        weights = [s.weight * (s.inpatient if admit else 1.0) for s in specs]
        return self.pick(specs, weights)

    def _plan_visits(self, plan: PatientPlan, fixed: dict[str, Any] | None) -> None:
        p, rng = self.p, self.rng
        birth_moment = datetime.combine(plan.birth, datetime.min.time(), tzinfo=self.now.tzinfo)
        start = max(self.window_start, birth_moment + timedelta(days=1))
        weights = p["encounters_per_patient"]
        total = fixed["encounters"] if fixed else self.pick(list(range(1, len(weights) + 1)), weights)
        current = not fixed and rng.random() < p["currently_admitted_share"]

        current_start, current_spec = None, None
        if current:
            # Admitted for what, and since when: within the usual length of stay of that condition.
            current_spec = self._choose(plan.gender, _age(plan.birth, self.now), admit=True)
            if current_spec:
                longest = min(p["current_admission_max_days"], (current_spec.los_days or (1, 2))[1])
                current_start = self.now - timedelta(hours=rng.uniform(3, 24 * longest))
            if current_start is None or current_start <= start + timedelta(days=1):
                current, current_start = False, None
        latest = current_start - timedelta(days=3) if current_start else self.now - timedelta(days=1)
        history = total - 1 if current else total

        visits: list[Visit] = []
        if history > 0 and latest > start:
            first_at = start + (latest - start) * rng.random() ** 1.6
            if fixed:
                first_at = start + (latest - start) * rng.uniform(0.02, 0.15)
                first = self.cat.conditions[fixed["conditions"][0]]
                plan.comorbidities = [self.cat.conditions[c] for c in fixed["conditions"][1:]]
            else:
                first = self._choose(plan.gender, _age(plan.birth, first_at))
            if first:
                visits.append(Visit(spec=first, start=first_at))
                if first.chronic and first.followup_days:
                    moment = first_at
                    while len(visits) < history:
                        moment += timedelta(days=rng.uniform(*first.followup_days), hours=rng.uniform(-3, 3))
                        if moment > latest:
                            break
                        same = fixed is not None or rng.random() < p["followup_same_condition"]
                        spec = first if same else self._choose(plan.gender, _age(plan.birth, moment))
                        if spec:
                            visits.append(Visit(spec=spec, start=moment, followup=spec is first))
                else:
                    for moment in sorted(self.uniform_time(first_at, latest) for _ in range(history - 1)):
                        spec = self._choose(plan.gender, _age(plan.birth, moment))
                        if spec:
                            visits.append(Visit(spec=spec, start=moment))
        # A known chronic illness beside the presenting one ("k/c/o hypertension"), noted at the first visit.
        old_enough = _age(plan.birth, self.now) >= p["comorbidity_min_age"]
        if not fixed and visits and old_enough and rng.random() < p["comorbidity_share"]:
            extra = self._choose(plan.gender, _age(plan.birth, visits[0].start), chronic_only=True)
            if extra and extra is not visits[0].spec and extra.department == "medicine" and not extra.series:
                plan.comorbidities.append(extra)

        for visit in visits:
            self._shape_visit(plan, visit, admitted=rng.random() < visit.spec.inpatient)
        if current_start is not None and current_spec is not None:
            visit = Visit(spec=current_spec, start=current_start, in_progress=True)
            self._shape_visit(plan, visit, admitted=True)
            visits.append(visit)

        # One encounter at a time per patient: drop any that starts before the previous one ended.
        kept: list[Visit] = []
        for visit in sorted(visits, key=lambda v: v.start):
            previous_end = kept[-1].end if kept else None
            if previous_end is not None and visit.start < previous_end + timedelta(hours=2):
                continue
            kept.append(visit)
        if not kept:
            # Too young (or too late in the window) for the usual plan: one short visit in the last hours.
            moment = max(start, self.now - timedelta(hours=rng.uniform(2, 20)))
            spec = self._choose(plan.gender, _age(plan.birth, moment))
            if spec:
                kept.append(Visit(spec=spec, start=moment))
                self._shape_visit(plan, kept[0], admitted=False, clinic_hours=False)
        for visit in kept:
            if visit.klass == "IMP":
                self._assign_bed(plan, visit)
        plan.visits = kept

    def _at_clinic_hours(self, moment: datetime) -> datetime:
        first, last = self.p["opd_hours"]
        minutes = self.rng.randint(first * 60, last * 60 - 1)
        return moment.replace(hour=minutes // 60, minute=minutes % 60, second=0, microsecond=0)

    def _shape_visit(
        self, plan: PatientPlan, visit: Visit, *, admitted: bool, clinic_hours: bool = True
    ) -> None:
        """Class, department and period of a visit (the bed is taken later)."""
        rng, spec = self.rng, visit.spec
        age = _age(plan.birth, visit.start)
        department = spec.department
        if age < self.p["paediatric_age_below"] and department == "medicine":
            department = "paediatrics"
        visit.department = department
        emergency = department == "emergency"
        if visit.in_progress:
            visit.start = visit.start.replace(second=0, microsecond=0)
            visit.klass = "IMP"
            return
        if clinic_hours and not emergency and (not admitted or rng.random() < 0.5):
            visit.start = self._at_clinic_hours(visit.start)
        else:
            visit.start = visit.start.replace(second=0, microsecond=0)
        if admitted and spec.los_days:
            days = rng.randint(int(spec.los_days[0]), int(spec.los_days[1]))
            discharge = (visit.start + timedelta(days=days)).replace(
                hour=rng.randint(11, 15), minute=rng.randint(0, 59)
            )
            limit = self.now - timedelta(hours=6)
            if discharge > visit.start + timedelta(hours=12) and discharge < limit:
                visit.klass, visit.end = "IMP", discharge
                return
        if emergency:
            visit.klass = "EMER"
            visit.end = visit.start + timedelta(minutes=rng.randint(90, 480))
        else:
            visit.klass = "AMB"
            visit.end = visit.start + timedelta(minutes=rng.randint(8, 35))
        if visit.end > self.now:
            visit.end = self.now - timedelta(minutes=5)

    def _ward_kind(self, plan: PatientPlan, visit: Visit) -> str:
        kind = visit.spec.ward
        if _age(plan.birth, visit.start) < self.p["paediatric_age_below"] and kind in (
            "medical",
            "surgical",
            "ortho",
        ):
            kind = "paediatric"
        return kind

    def _free(self, bed_id: str, start: datetime, end: datetime | None) -> bool:
        for other_start, other_end in self.bed_stays.get(bed_id, []):
            if (end is None or other_start < end) and (other_end is None or start < other_end):
                return False
        return True

    def _assign_bed(self, plan: PatientPlan, visit: Visit) -> None:
        wards = self.wards[plan.facility["id"]]
        kind = self._ward_kind(plan, visit)
        fallback = {"ortho": "surgical"}.get(kind, "medical")
        ordered = (
            [w for w in wards if w["kind"] == kind]
            + [w for w in wards if w["kind"] == fallback and w["kind"] != kind]
            + [w for w in wards if w["kind"] not in (kind, fallback)]
        )
        for ward in ordered:
            numbers = list(range(1, int(ward["beds"]) + 1))
            self.rng.shuffle(numbers)
            for number in numbers:
                bed_id = f"{plan.facility['id']}-ward-{ward['code']}-bed-{number:02d}"
                if self._free(bed_id, visit.start, visit.end):
                    bisect.insort(
                        self.bed_stays.setdefault(bed_id, []), (visit.start, visit.end), key=lambda s: s[0]
                    )
                    visit.stay = Stay(bed_id, f"{ward['name']}, Bed {number:02d}", visit.start, visit.end)
                    return
        # Every bed taken for the whole stay: the patient is seen and sent home instead.
        visit.klass, visit.in_progress = "AMB", False
        visit.end = min(visit.start + timedelta(minutes=30), self.now - timedelta(minutes=5))

    # -- identifiers
    def _assign_uhids(self, plans: list[PatientPlan]) -> None:
        registered: dict[tuple[str, int], list[tuple[datetime, int, PatientPlan]]] = {}
        for plan in plans:
            first = plan.visits[0].start if plan.visits else self.now - timedelta(days=1)
            registered.setdefault((plan.facility["id"], first.year), []).append((first, plan.index, plan))
        for (_, year), rows in sorted(registered.items()):
            number = self.rng.randint(100, 900)
            for _, _, plan in sorted(rows, key=lambda r: (r[0], r[1])):
                number += self.rng.randint(500, 4000)
                plan.uhid = f"{plan.facility['uhid_prefix']}-{year}-{number:06d}"

    def _digits(self, count: int) -> str:
        return str(self.rng.randint(1, 9)) + "".join(str(self.rng.randint(0, 9)) for _ in range(count - 1))

    # -- resources
    def infrastructure(self) -> list[Resource]:
        cat = self.cat
        state = cat.organizations["state"]
        out: list[Resource] = [
            {
                "resourceType": "Organization",
                "id": state["id"],
                "meta": _meta(),
                "active": True,
                "type": [_concept(f"{TERMINOLOGY}organization-type", state["type"], "Government")],
                "name": state["name"],
                "alias": state["alias"],
                "telecom": [{"system": "phone", "value": state["phone"], "use": "work"}],
                "address": [self._org_address(state)],
            }
        ]
        occupied = {bed for bed, stays in self.bed_stays.items() if any(end is None for _, end in stays)}
        for fid, facility in self.facilities.items():
            out.append(
                {
                    "resourceType": "Organization",
                    "id": fid,
                    "meta": _meta(),
                    "identifier": [{"system": systems.FACILITY, "value": facility["code"]}],
                    "active": True,
                    "type": [_concept(f"{TERMINOLOGY}organization-type", "prov", "Healthcare Provider")],
                    "name": facility["name"],
                    "alias": facility["alias"],
                    "telecom": [{"system": "phone", "value": facility["phone"], "use": "work"}],
                    "address": [self._org_address(facility)],
                    "partOf": _ref("Organization", state["id"], state["name"]),
                }
            )
            for code, department in cat.departments.items():
                out.append(
                    {
                        "resourceType": "Organization",
                        "id": f"{fid}-{code}",
                        "meta": _meta(),
                        "active": True,
                        "type": [_concept(f"{TERMINOLOGY}organization-type", "dept", "Hospital Department")],
                        "name": department["name"],
                        "alias": [f"{department['name']}, {facility['short']}"],
                        "partOf": _ref("Organization", fid, facility["name"]),
                    }
                )
            site_id = f"{fid}-site"
            managing = _ref("Organization", fid, facility["name"])
            out.append(
                {
                    "resourceType": "Location",
                    "id": site_id,
                    "meta": _meta(),
                    "status": "active",
                    "name": facility["name"],
                    "alias": [facility["short"]],
                    "mode": "instance",
                    "telecom": [{"system": "phone", "value": facility["phone"], "use": "work"}],
                    "address": self._org_address(facility),
                    "physicalType": _concept(f"{TERMINOLOGY}location-physical-type", "si", "Site"),
                    "managingOrganization": managing,
                }
            )
            for ward in self.wards[fid]:
                ward_id = f"{fid}-ward-{ward['code']}"
                out.append(
                    {
                        "resourceType": "Location",
                        "id": ward_id,
                        "meta": _meta(),
                        "status": "active",
                        "name": ward["name"],
                        "alias": [f"{ward['name']}, {facility['short']}"],
                        "mode": "instance",
                        "physicalType": _concept(f"{TERMINOLOGY}location-physical-type", "wa", "Ward"),
                        "managingOrganization": managing,
                        "partOf": _ref("Location", site_id, facility["name"]),
                    }
                )
                for number in range(1, int(ward["beds"]) + 1):
                    bed_id = f"{ward_id}-bed-{number:02d}"
                    status = ("O", "Occupied") if bed_id in occupied else ("U", "Unoccupied")
                    out.append(
                        {
                            "resourceType": "Location",
                            "id": bed_id,
                            "meta": _meta(),
                            "status": "active",
                            "operationalStatus": _coding(f"{TERMINOLOGY}v2-0116", *status),
                            "name": f"{ward['name']}, Bed {number:02d}",
                            "mode": "instance",
                            "physicalType": _concept(f"{TERMINOLOGY}location-physical-type", "bd", "Bed"),
                            "managingOrganization": managing,
                            "partOf": _ref("Location", ward_id, ward["name"]),
                        }
                    )
        for row in cat.staff:
            out.extend(self._staff(row))
        return out

    def _org_address(self, org: dict[str, Any]) -> dict[str, Any]:
        return {
            "use": "work",
            "type": "physical",
            "line": list(org["line"]),
            "city": org["city"],
            "district": org["district"],
            "state": "Himachal Pradesh",
            "postalCode": org["postalCode"],
            "country": "IN",
        }

    def _names(
        self, given: str, family: str, *, prefix: tuple[str, str] | None = None
    ) -> list[dict[str, Any]]:
        given_hi = self.cat.given_hi[given]
        family_hi = self.cat.surnames[family]["devanagari"]
        latin: dict[str, Any] = {
            "use": "official",
            "text": f"{given} {family}",
            "family": family,
            "given": given.split(),
        }
        hindi: dict[str, Any] = {
            "extension": [{"url": LANGUAGE_EXT, "valueCode": "hi"}],
            "use": "official",
            "text": f"{given_hi} {family_hi}",
            "family": family_hi,
            "given": given_hi.split(),
        }
        if prefix:
            latin["prefix"], hindi["prefix"] = [prefix[0]], [prefix[1]]
            latin["text"] = f"{prefix[0]} {latin['text']}"
            hindi["text"] = f"{prefix[1]} {hindi['text']}"
        return [latin, hindi]

    def _staff(self, row: dict[str, str]) -> list[Resource]:
        doctor = row["role"] == "doctor"
        facility = self.facilities[row["facility"]]
        department = self.cat.departments[row["department"]]
        practitioner: Resource = {"resourceType": "Practitioner", "id": row["id"], "meta": _meta()}
        if row["username"]:
            practitioner["identifier"] = [{"system": systems.USERNAME, "value": row["username"]}]
        practitioner.update(
            {
                "active": True,
                "name": self._names(row["given"], row["family"], prefix=("Dr.", "डॉ.") if doctor else None),
                "gender": row["gender"],
                "qualification": [{"code": {"text": row["qualification"]}}],
            }
        )
        role = {
            "resourceType": "PractitionerRole",
            "id": f"{row['id']}-role",
            "meta": _meta(),
            "active": True,
            "practitioner": _ref("Practitioner", row["id"], practitioner["name"][0]["text"]),
            "organization": _ref("Organization", facility["id"], facility["name"]),
            "code": [
                _concept(f"{TERMINOLOGY}practitioner-role", row["role"], "Doctor" if doctor else "Nurse")
            ],
            "specialty": [_concept(DEPARTMENT_SYSTEM, department["code"], department["name"])],
            "location": [_ref("Location", f"{facility['id']}-site", facility["name"])],
        }
        return [practitioner, role]

    def patient_resources(self, plan: PatientPlan) -> list[Resource]:
        facility = plan.facility
        out: list[Resource] = [self._patient(plan)]
        subject = _ref("Patient", plan.id, f"{plan.given} {plan.family}")
        conditions: dict[str, str] = {}  # chronic code -> Condition id
        records: dict[str, Resource] = {}  # chronic Condition id -> resource
        last_seen: dict[str, datetime | None] = {}  # chronic Condition id -> end of its latest visit
        counter = 0

        def condition(
            spec: ConditionSpec,
            visit: Visit,
            encounter_id: str,
            doctor: dict[str, str],
            *,
            onset: str | None = None,
        ) -> str:
            nonlocal counter
            if spec.chronic and spec.code in conditions:
                return conditions[spec.code]
            counter += 1
            cid = f"{plan.id}-cond-{counter}"
            ended = visit.end is not None and visit.end < self.now - timedelta(days=14)
            resolved = not spec.chronic and ended
            resource: Resource = {
                "resourceType": "Condition",
                "id": cid,
                "meta": _meta(),
                "clinicalStatus": _concept(
                    f"{TERMINOLOGY}condition-clinical",
                    "resolved" if resolved else "active",
                    "Resolved" if resolved else "Active",
                ),
                "verificationStatus": _concept(
                    f"{TERMINOLOGY}condition-ver-status", "confirmed", "Confirmed"
                ),
                "category": [
                    _concept(f"{TERMINOLOGY}condition-category", "problem-list-item", "Problem List Item")
                    if spec.chronic
                    else _concept(
                        f"{TERMINOLOGY}condition-category", "encounter-diagnosis", "Encounter Diagnosis"
                    )
                ],
                "code": _concept(ICD10, spec.code, spec.display),
                "subject": subject,
                "encounter": _ref("Encounter", encounter_id),
                "onsetDateTime": onset or _ts(visit.start),
            }
            resource["recordedDate"] = _ts(visit.start)
            resource["recorder"] = _ref("Practitioner", doctor["id"])
            out.append(resource)
            if spec.chronic:
                conditions[spec.code] = cid
                records[cid] = resource
            return cid

        for number, visit in enumerate(plan.visits, start=1):
            encounter_id = f"{plan.id}-enc-{number}"
            doctor = (
                self.doctors.get((facility["id"], visit.department))
                or self.doctors[(facility["id"], "medicine")]
            )
            nurse = self.rng.choice(self.nurses[facility["id"]])
            main = condition(visit.spec, visit, encounter_id, doctor)
            last_seen[main] = visit.end
            diagnosis = [{"condition": _ref("Condition", main), "rank": 1}]
            if visit.klass == "IMP":
                diagnosis[0]["use"] = _concept(
                    f"{TERMINOLOGY}diagnosis-role",
                    *(("AD", "Admission diagnosis") if visit.in_progress else ("DD", "Discharge diagnosis")),
                )
            if number == 1:
                for rank, extra in enumerate(plan.comorbidities, start=2):
                    onset_year = max(plan.birth.year + 20, visit.start.year - self.rng.randint(1, 12))
                    cid = condition(
                        extra, visit, encounter_id, doctor, onset=str(min(onset_year, visit.start.year))
                    )
                    diagnosis.append(
                        {
                            "condition": _ref("Condition", cid),
                            "use": _concept(f"{TERMINOLOGY}diagnosis-role", "CM", "Comorbidity diagnosis"),
                            "rank": rank,
                        }
                    )
            out.append(self._encounter(plan, visit, encounter_id, subject, doctor, diagnosis))
            out.extend(self._observations(plan, visit, number, encounter_id, subject, nurse))
        for cid, resource in records.items():
            spec = self.cat.conditions[resource["code"]["coding"][0]["code"]]
            end = last_seen.get(cid)
            if spec.series and end is not None and end < self.now - timedelta(days=90):
                resource["clinicalStatus"] = _concept(
                    f"{TERMINOLOGY}condition-clinical", "resolved", "Resolved"
                )
        return out

    def _patient(self, plan: PatientPlan) -> Resource:
        cat, rng, facility = self.cat, self.rng, plan.facility
        district = cat.districts[plan.place["district"]]
        identifiers: list[dict[str, Any]] = [
            {
                "use": "usual",
                "type": {
                    "coding": [_coding(f"{TERMINOLOGY}v2-0203", "MR", "Medical record number")],
                    "text": "UHID",
                },
                "system": systems.UHID,
                "value": plan.uhid,
                "assigner": _ref("Organization", facility["id"], facility["name"]),
            }
        ]
        if "abha" in plan.identifiers:
            value = "-".join([self.p["abha_prefix"], self._digits(4), self._digits(4), self._digits(4)])
            identifiers.append(
                {
                    "type": {"text": "ABHA Number"},
                    "system": systems.ABHA,
                    "value": value,
                    "assigner": {"display": "National Health Authority"},
                }
            )
        if "himparivar" in plan.identifiers:
            identifiers.append(
                {
                    "type": {"text": "HimParivar Member ID"},
                    "system": systems.HIMPARIVAR,
                    "value": f"HP-{district['code']}-{self._digits(8)}",
                    "assigner": {"display": "Government of Himachal Pradesh"},
                }
            )
        if "himcare" in plan.identifiers:
            identifiers.append(
                {
                    "type": {"text": "HIMCARE Card Number"},
                    "system": systems.HIMCARE,
                    "value": f"HC-{rng.randint(2019, self.now.year)}-{self._digits(7)}",
                    "assigner": {"display": "State Health Agency, Himachal Pradesh"},
                }
            )
        first_digit = self.pick(*zip(*self.p["mobile_first_digit"], strict=True))
        mobile = f"+91 {first_digit}{''.join(str(rng.randint(0, 9)) for _ in range(9))}"
        place = plan.place
        line = (
            f"VPO {place['place']}"
            if place["kind"] == "village"
            else f"Ward No. {rng.randint(1, 15)}, {place['place']}"
        )
        resource: Resource = {
            "resourceType": "Patient",
            "id": plan.id,
            "meta": _meta(),
            "extension": [{"url": systems.EXT_RELATIVE_NAME, "valueString": plan.relative}],
            "identifier": identifiers,
            "active": True,
            "name": self._names(plan.given, plan.family),
            "telecom": [{"system": "phone", "value": mobile, "use": "mobile"}],
            "gender": plan.gender,
            "birthDate": plan.birth.isoformat(),
            "address": [
                {
                    "use": "home",
                    "type": "physical",
                    "line": [line, f"Tehsil {place['tehsil']}"],
                    "city": place["place"],
                    "district": place["district"],
                    "state": "Himachal Pradesh",
                    "postalCode": place["pin"],
                    "country": "IN",
                }
            ],
        }
        if plan.marital:
            display = {"M": "Married", "U": "unmarried", "W": "Widowed"}[plan.marital]
            resource["maritalStatus"] = _concept(f"{TERMINOLOGY}v3-MaritalStatus", plan.marital, display)
        resource["communication"] = [
            {"language": _concept("urn:ietf:bcp:47", "hi", "Hindi"), "preferred": True}
        ]
        resource["managingOrganization"] = _ref("Organization", facility["id"], facility["name"])
        return resource

    def _encounter(
        self,
        plan: PatientPlan,
        visit: Visit,
        encounter_id: str,
        subject: dict[str, str],
        doctor: dict[str, str],
        diagnosis: list[dict[str, Any]],
    ) -> Resource:
        facility = plan.facility
        department = self.cat.departments[visit.department]
        klass = {
            "AMB": ("ambulatory", "OPD consultation"),
            "EMER": ("emergency", "Emergency visit"),
            "IMP": ("inpatient encounter", "Inpatient admission"),
        }[visit.klass]
        period = {"start": _ts(visit.start)}
        if visit.end:
            period["end"] = _ts(visit.end)
        resource: Resource = {
            "resourceType": "Encounter",
            "id": encounter_id,
            "meta": _meta(),
            "status": "in-progress" if visit.in_progress else "finished",
            "class": _coding(f"{TERMINOLOGY}v3-ActCode", visit.klass, klass[0]),
            "type": [{"text": f"{klass[1]}{' (follow-up)' if visit.followup else ''}"}],
            "serviceType": _concept(DEPARTMENT_SYSTEM, department["code"], department["name"]),
            "subject": subject,
            "participant": [
                {
                    "type": [_concept(f"{TERMINOLOGY}v3-ParticipationType", "ATND", "attender")],
                    "individual": _ref(
                        "Practitioner", doctor["id"], f"Dr. {doctor['given']} {doctor['family']}"
                    ),
                }
            ],
            "period": period,
            "reasonCode": [_concept(ICD10, visit.spec.code, visit.spec.display)],
            "diagnosis": diagnosis,
        }
        if visit.klass == "IMP" and visit.stay:
            first, last = self.p["opd_hours"]
            via_opd = visit.department != "emergency" and first <= visit.start.hour < last
            source = self.p["admit_source"]["default" if via_opd else "emergency"]
            hospitalization: dict[str, Any] = {"admitSource": _concept(f"{TERMINOLOGY}admit-source", *source)}
            if not visit.in_progress:
                options = self.p["discharge_disposition"]
                code, display, _ = self.pick(options, [o[2] for o in options])
                hospitalization["dischargeDisposition"] = _concept(
                    f"{TERMINOLOGY}discharge-disposition", code, display
                )
            resource["hospitalization"] = hospitalization
            stay_period = {"start": _ts(visit.stay.start)}
            if visit.stay.end:
                stay_period["end"] = _ts(visit.stay.end)
            resource["location"] = [
                {
                    "location": _ref("Location", visit.stay.bed_id, visit.stay.bed_name),
                    "status": "active" if visit.in_progress else "completed",
                    "period": stay_period,
                }
            ]
        resource["serviceProvider"] = _ref("Organization", facility["id"], facility["name"])
        return resource

    # -- observations
    def _value(
        self, loinc: str, bands: list[Band], sex: str, age: float, profiles: list[str]
    ) -> tuple[float, Band]:
        band = self.cat.band(bands, sex, age)
        for profile in profiles:
            effect = self.cat.effects.get(profile, {}).get(loinc)
            if effect:
                return self.normal(effect[0], effect[1], band.floor, band.ceiling), band
        return self.normal(band.mean, band.sd, band.floor, band.ceiling), band

    def _growth(self, sex: str, age: float) -> tuple[float, float, float, float]:
        table = self.cat.growth[sex]
        if age >= table[-1][0]:
            return table[-1][1:]
        for (a0, *v0), (a1, *v1) in itertools.pairwise(table):
            if a0 <= age <= a1:
                f = (age - a0) / (a1 - a0)
                return tuple(x + (y - x) * f for x, y in zip(v0, v1, strict=True))  # type: ignore[return-value]
        return table[0][1:]

    def _observations(
        self,
        plan: PatientPlan,
        visit: Visit,
        number: int,
        encounter_id: str,
        subject: dict[str, str],
        nurse: dict[str, str],
    ) -> list[Resource]:
        rng = self.rng
        out: list[Resource] = []
        age = _age(plan.birth, visit.start)
        profiles = [p for p in [visit.spec.profile, *plan.chronic_profiles] if p]
        base = dict(
            subject=subject,
            encounter=_ref("Encounter", encounter_id),
            performer=[_ref("Practitioner", nurse["id"], f"{nurse['given']} {nurse['family']}")],
        )
        taken = visit.start + timedelta(minutes=rng.randint(3, 15))
        if taken >= self.now:
            return out

        episode = self._vital_values(plan, age, profiles)
        anthropometry = self._anthropometry(plan, age, profiles)
        sets = [(taken, episode)]
        if visit.klass == "IMP":
            end = visit.end or self.now
            day = (visit.start + timedelta(days=1)).replace(hour=8, minute=rng.randint(0, 40))
            los = max(1.0, ((visit.end or self.now) - visit.start).total_seconds() / 86400)
            step = 1
            while day < end and step <= 5:
                # Ward rounds each morning: the episode's values settle towards the patient's usual ones.
                fraction = min(1.0, step / max(1.0, los * 0.7))
                usual = self._vital_values(plan, age, plan.chronic_profiles)
                sets.append((day, {k: episode[k] + (usual[k] - episode[k]) * fraction for k in episode}))
                day += timedelta(days=1)
                step += 1
        for set_number, (moment, values) in enumerate(sets, start=1):
            for sign in self.cat.vital_signs:
                if sign.get("min_age", 0) > age:
                    continue
                if sign.get("anthropometric"):
                    if set_number > 1:
                        continue
                    if sign["key"] == "ht" and number > 1 and age >= 18:
                        continue
                    value = anthropometry[sign["key"]]
                elif "components" in sign:
                    value = None
                else:
                    value = values[sign["loinc"]]
                out.append(
                    self._vital(
                        sign, value, values, moment, f"{encounter_id}-{sign['key']}-{set_number}", base
                    )
                )

        out.extend(self._labs(plan, visit, encounter_id, age, profiles, subject))
        return out

    def _vital_values(self, plan: PatientPlan, age: float, profiles: list[str]) -> dict[str, float]:
        values = {}
        for loinc, bands in self.cat.vital_norms.items():
            values[loinc] = self._value(loinc, bands, plan.gender, age, profiles)[0]
        if values["8462-4"] >= values["8480-6"] - 20:
            values["8462-4"] = values["8480-6"] - self.rng.uniform(25, 45)
        return values

    def _anthropometry(self, plan: PatientPlan, age: float, profiles: list[str]) -> dict[str, float]:
        height, height_sd, weight, weight_sd = self._growth(plan.gender, age)
        wasting = 0.85 if any(p in ("tb", "malnutrition") for p in profiles) else 1.0
        pregnant = 1.12 if "pregnancy" in profiles else 1.0
        kg = max(
            1.8,
            (weight + plan.weight_z * weight_sd + self.rng.gauss(0, weight_sd * 0.05)) * wasting * pregnant,
        )
        return {"ht": height + plan.height_z * height_sd, "wt": kg}

    def _vital(
        self,
        sign: dict[str, Any],
        value: float | None,
        values: dict[str, float],
        moment: datetime,
        obs_id: str,
        base: dict[str, Any],
    ) -> Resource:
        coding = [_coding(LOINC, sign["loinc"], sign["display"])]
        coding += [_coding(LOINC, extra["code"], extra["display"]) for extra in sign.get("also", [])]
        resource: Resource = {
            "resourceType": "Observation",
            "id": obs_id,
            "meta": _meta(sign["profile"]),
            "status": "final",
            "category": [_concept(f"{TERMINOLOGY}observation-category", "vital-signs", "Vital Signs")],
            "code": {"coding": coding, "text": sign["display"]},
            "subject": base["subject"],
            "encounter": base["encounter"],
            "effectiveDateTime": _ts(moment),
            "performer": base["performer"],
        }
        if "components" in sign:
            resource["component"] = [
                {
                    "code": _concept(LOINC, part["loinc"], part["display"]),
                    "valueQuantity": _quantity(
                        values[part["loinc"]], part["unit"], part["ucum"], part["decimals"]
                    ),
                }
                for part in sign["components"]
            ]
        else:
            resource["valueQuantity"] = _quantity(value, sign["unit"], sign["ucum"], sign["decimals"])
        return resource

    def _labs(
        self,
        plan: PatientPlan,
        visit: Visit,
        encounter_id: str,
        age: float,
        profiles: list[str],
        subject: dict[str, str],
    ) -> list[Resource]:
        rng, p = self.rng, self.p
        tests: list[str] = []
        if visit.klass == "IMP":
            tests += p["inpatient_routine_labs"]
            tests += visit.spec.labs
        elif visit.spec.labs and rng.random() < p["condition_labs_share"]:
            tests += visit.spec.labs
        elif rng.random() < p["opd_random_haemoglobin_share"]:
            tests.append("718-7")
        for chronic in plan.chronic_profiles:
            if chronic == "diabetes" and visit.followup:
                tests += ["1558-6", "4548-4"]
        tests = list(dict.fromkeys(tests))
        collected = visit.start + timedelta(minutes=rng.randint(20, 90))
        issued = collected + timedelta(minutes=rng.randint(90, 360))
        if issued >= self.now - timedelta(minutes=10):
            issued = self.now - timedelta(minutes=10)
        if issued <= collected:
            return []
        facility = plan.facility
        out = []
        for loinc in tests:
            test = self.cat.lab_tests[loinc]
            value, band = self._value(loinc, self.cat.lab_ranges[loinc], plan.gender, age, profiles)
            decimals = int(test["decimals"])
            shown = _round(value, decimals)
            if band.low is not None and shown < band.low:
                flag = ("L", "Low")
            elif band.high is not None and shown > band.high:
                flag = ("H", "High")
            else:
                flag = ("N", "Normal")
            ucum = test["ucum"]
            out.append(
                {
                    "resourceType": "Observation",
                    "id": f"{encounter_id}-lab-{loinc}",
                    "meta": _meta(),
                    "status": "final",
                    "category": [_concept(f"{TERMINOLOGY}observation-category", "laboratory", "Laboratory")],
                    "code": _concept(LOINC, loinc, test["display"]),
                    "subject": subject,
                    "encounter": _ref("Encounter", encounter_id),
                    "effectiveDateTime": _ts(collected),
                    "issued": _ts(issued),
                    "performer": [_ref("Organization", facility["id"], facility["name"])],
                    "valueQuantity": _quantity(value, ucum, ucum, decimals),
                    "interpretation": [_concept(f"{TERMINOLOGY}v3-ObservationInterpretation", *flag)],
                    "referenceRange": [
                        {
                            "low": _quantity(band.low, ucum, ucum, decimals),
                            "high": _quantity(band.high, ucum, ucum, decimals),
                        }
                    ],
                }
            )
        return out

    # -- bundles
    def bundles(self) -> Iterator[dict[str, Any]]:
        plans = [self._plan_patient(i) for i in range(1, self.count + 1)]
        self._assign_uhids(plans)
        number = 1
        yield self._bundle(number, self.infrastructure())
        batch: list[Resource] = []
        patients_in_batch = 0
        for plan in plans:
            resources_ = self.patient_resources(plan)
            full = patients_in_batch >= self.p["patients_per_bundle"]
            if batch and (full or len(batch) + len(resources_) > self.p["max_bundle_entries"]):
                number += 1
                yield self._bundle(number, batch)
                batch, patients_in_batch = [], 0
            batch.extend(resources_)
            patients_in_batch += 1
        if batch:
            number += 1
            yield self._bundle(number, batch)

    @staticmethod
    def _bundle(number: int, entries: list[Resource]) -> dict[str, Any]:
        def entry(resource: Resource) -> dict[str, Any]:
            url = f"{resource['resourceType']}/{resource['id']}"
            return {"fullUrl": url, "resource": resource, "request": {"method": "PUT", "url": url}}

        return {
            "resourceType": "Bundle",
            "id": f"himhis-demo-{number:03d}",
            "meta": _meta(),
            "type": "transaction",
            "entry": [entry(r) for r in entries],
        }


def generate(*, seed: int = 20261124, patients: int = 300) -> Iterator[dict]:
    """Yield FHIR R4 Bundles (type "transaction") of demo data, deterministic for a seed."""
    yield from _Generator(seed, patients).bundles()
