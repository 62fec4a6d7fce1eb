"""The master patient index: likely duplicates before registering, patient search, and merge.

Every look-up goes through the store's search with the caller's scope, so staff see candidates only
among the patients they may see. Merging follows FHIR's patient linking
(https://hl7.org/fhir/R4/patient.html#links): the source becomes inactive with ``link`` type
``replaced-by`` the target, the target gets ``replaces`` the source, and every resource that refers
to the source is stored again, as a new version, referring to the target; both histories stay.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import orjson
from sqlalchemy.orm import Session

from audit.describe import of_write
from audit.service import AuditEntry, record_many
from ehr.references import rewrite_references
from ehr.scope import Scope
from ehr.search.engine import search
from ehr.service import FhirStore, WriteResult
from himhis import systems
from himhis.errors import ConflictError, InvalidError, NotFoundError
from his.mpi import matching
from his.mpi import repository as repo
from his.registration import validators as v
from his.registration.service import EXT_BIRTH_DATE_ESTIMATED, Registration

IDENTIFIER_LABELS = {systems.UHID: "UHID", systems.ABHA: "ABHA number", systems.HIMPARIVAR: "HimParivar ID",
                     systems.HIMCARE: "HIMCARE card"}
MAX_CANDIDATES = 10
SHOW_FROM = 45  # the score from which a candidate is shown
_UHID = re.compile(r"^[A-Za-z]{2,10}-\d{4}-\d{1,9}$")
Authorize = Callable[[str, str], None]


@dataclass(slots=True)
class PatientCard:
    """What the desk needs to see of a Patient to recognise the person."""

    id: str
    uhid: str = ""
    name: str = ""
    name_devanagari: str = ""
    birth_date: str = ""
    birth_estimated: bool = False
    gender: str = ""
    relative_name: str = ""
    village: str = ""
    tehsil: str = ""
    district: str = ""
    mobile: str = ""
    facility: str = ""
    identifiers: list[tuple[str, str]] = field(default_factory=list)
    active: bool = True
    replaced_by: str | None = None
    replaces: list[str] = field(default_factory=list)
    version: str = ""

    @property
    def names(self) -> list[str]:
        return [n for n in (self.name, self.name_devanagari) if n]


def card(resource: dict) -> PatientCard:
    """A PatientCard from a stored Patient."""
    c = PatientCard(id=resource.get("id", ""), gender=resource.get("gender", ""),
                    birth_date=resource.get("birthDate", ""), active=resource.get("active", True) is not False,
                    version=(resource.get("meta") or {}).get("versionId", ""))
    c.birth_estimated = any(e.get("url") == EXT_BIRTH_DATE_ESTIMATED and e.get("valueBoolean")
                            for e in (resource.get("_birthDate") or {}).get("extension", []))
    for name in resource.get("name") or []:
        text = name.get("text") or " ".join([*name.get("given", []), name.get("family", "")]).strip()
        if v.has_devanagari(text):
            c.name_devanagari = c.name_devanagari or text
        else:
            c.name = c.name or text
    for ident in resource.get("identifier") or []:
        label = IDENTIFIER_LABELS.get(ident.get("system"))
        if label and ident.get("value"):
            c.identifiers.append((label, ident["value"]))
            if label == "UHID" and not c.uhid:
                c.uhid = ident["value"]
    for ext in resource.get("extension") or []:
        if ext.get("url") == systems.EXT_RELATIVE_NAME:
            c.relative_name = ext.get("valueString", "")
    address = (resource.get("address") or [{}])[0]
    c.village, c.district = address.get("city", ""), address.get("district", "")
    c.tehsil = next((line[len("Tehsil "):] for line in address.get("line", []) if line.startswith("Tehsil ")), "")
    c.mobile = next((t.get("value", "") for t in resource.get("telecom") or [] if t.get("system") == "phone"), "")
    c.facility = (resource.get("managingOrganization") or {}).get("display", "")
    for link in resource.get("link") or []:
        other = ((link.get("other") or {}).get("reference") or "").removeprefix("Patient/")
        if link.get("type") == "replaced-by":
            c.replaced_by = other
        elif link.get("type") == "replaces":
            c.replaces.append(other)
    return c


@dataclass(slots=True)
class Candidate:
    """A stored patient who may be the person being registered, with why."""

    patient: PatientCard
    score: int
    reasons: list[str]


def _found(session: Session, scope: Scope, pairs: list[tuple[str, str]], base: str) -> list[dict]:
    bundle = search(session, "Patient", pairs, base=base, scope=scope, default_count=200)
    entries = orjson.loads(orjson.dumps(bundle.get("entry", [])))  # resources come as raw JSON fragments
    return [e["resource"] for e in entries if e.get("search", {}).get("mode", "match") == "match"]


def duplicate_queries(reg: Registration) -> list[list[tuple[str, str]]]:
    """The searches that gather candidates: same mobile, same identifier, similar name born within a
    year, similar name in the same village."""
    queries: list[list[tuple[str, str]]] = []
    if reg.mobile:
        queries.append([("phone", reg.mobile)])
    queries += [[("identifier", f"{system}|{value}")] for system, value in reg.identifiers()]
    initials = list(dict.fromkeys(matching.initials(reg.latin_name) + matching.initials(reg.name_devanagari)))
    names = [("name", ",".join(initials))] if initials else []
    if reg.birth_date and names:
        queries.append([("birthdate", f"ge{reg.birth_year - 1}"), ("birthdate", f"le{reg.birth_year + 1}"), *names])
    if reg.village and names:
        queries.append([("address-city", reg.village.replace(",", " ")), *names])
    return queries


def find_duplicates(session: Session, *, scope: Scope, reg: Registration, base: str = "") -> list[Candidate]:
    """Stored patients (within ``scope``) who may be this person, best first, each with a score and reasons."""
    seen: dict[str, dict] = {}
    for pairs in duplicate_queries(reg):
        for resource in _found(session, scope, pairs, base):
            seen.setdefault(resource["id"], resource)
    out = []
    for resource in seen.values():
        c = card(resource)
        if c.replaced_by:  # a merged-away record: its survivor is what matters
            continue
        candidate = _score(reg, c, resource)
        if candidate.score >= SHOW_FROM:
            out.append(candidate)
    out.sort(key=lambda x: (-x.score, x.patient.name))
    return out[:MAX_CANDIDATES]


def _score(reg: Registration, c: PatientCard, resource: dict) -> Candidate:
    score, reasons = 0, []
    theirs = {(i.get("system"), i.get("value")) for i in resource.get("identifier") or []}
    for system, value in reg.identifiers():
        if (system, value) in theirs:
            score = 100
            reasons.append(f"same {IDENTIFIER_LABELS[system]} {value}")
    if reg.mobile and c.mobile.replace(" ", "") == reg.mobile.replace(" ", ""):
        score += 40
        reasons.append("same mobile number")
    name_sim = matching.best_similarity([reg.latin_name, reg.name_devanagari], c.names)
    if name_sim >= 90:
        score += 35
        reasons.append("same name" if name_sim == 100 else f"nearly the same name ({name_sim:.0f}%)")
    elif name_sim >= 75:
        score += 25
        reasons.append(f"similar name ({name_sim:.0f}%)")
    if c.birth_date:
        years = abs(int(c.birth_date[:4]) - reg.birth_year)
        if c.birth_date == reg.birth_date and len(reg.birth_date) == 10:
            score += 20
            reasons.append("same date of birth")
        elif years == 0:
            score += 15
            reasons.append("born the same year")
        elif years == 1:
            score += 8
            reasons.append("born within a year")
    if reg.village and c.village.casefold() == reg.village.casefold():
        score += 10
        reasons.append("same village")
    if reg.relative_name and matching.similarity(reg.relative_name, c.relative_name) >= 80:
        score += 10
        reasons.append("similar father's or husband's name")
    if {reg.gender, c.gender} <= {"male", "female"} and reg.gender != c.gender:
        score -= 15
        reasons.append("but a different sex")
    return Candidate(c, max(0, min(score, 100)), reasons)


def search_terms(text: str) -> list[tuple[str, str]]:
    """The store search for what was typed at the desk: a UHID, a mobile or ABHA number, or a name."""
    text = " ".join(text.split())
    if not text:
        raise InvalidError("Type a name, a UHID or a mobile number to search for", expression=["q"])
    if v.contains_aadhaar(text):
        raise InvalidError(v.AADHAAR_MESSAGE, expression=["q"])
    if _UHID.match(text):
        return [("identifier", f"{systems.UHID}|{text.upper()}")]
    for parse, param in ((v.mobile_number, "phone"), (v.abha_number, "identifier")):
        try:
            value = parse(text)
        except ValueError:
            continue
        return [(param, value if param == "phone" else f"{systems.ABHA}|{value}")]
    if any(ch.isdigit() for ch in text):
        raise InvalidError("That is not a UHID (such as IGMC-2026-000123), a mobile number or an ABHA number",
                           expression=["q"])
    return [("name", text.replace(",", " "))]


def search_patients(session: Session, *, scope: Scope, pairs: list[tuple[str, str]],
                    base: str = "") -> list[PatientCard]:
    """Patients matching ``search_terms`` within the caller's scope, at most 50, by name."""
    found = [card(r) for r in _found(session, scope, [*pairs, ("_count", "50")], base)]
    return sorted(found, key=lambda c: (not c.active, c.name))


def read_patient(session: Session, *, scope: Scope, patient_id: str) -> PatientCard:
    """One patient the caller may see (404 as if unknown otherwise)."""
    return card(FhirStore(session, scope=scope).read("Patient", patient_id).json())


def resolve(session: Session, *, scope: Scope, text: str) -> str:
    """A Patient id from what was typed: the id itself, or a UHID the caller can see."""
    text = text.strip()
    if not text:
        raise InvalidError("Give the UHID or id of the record to keep", expression=["target"])
    if not _UHID.match(text):
        return text
    found = _found(session, scope, [("identifier", f"{systems.UHID}|{text.upper()}")], "")
    if len(found) != 1:
        raise NotFoundError(f"No patient you can see has the UHID {text.upper()}")
    return found[0]["id"]


@dataclass(slots=True)
class MergeResult:
    source: WriteResult
    target: WriteResult
    moved: list[WriteResult]

    @property
    def patient_ids(self) -> list[str]:
        return [self.source.stored.res_id, self.target.stored.res_id]


def merge(session: Session, *, scope: Scope, source_id: str, target_id: str, authorize: Authorize,
          audit: AuditEntry | None = None, base_url: str | None = None) -> MergeResult:
    """Merge the source patient into the target, in the caller's unit of work (flush only).

    ``authorize(interaction, type)`` is asked for every type changed; each resource stored again is
    recorded in the audit log as an update (from the ``audit`` entry's who and where).
    """
    authorize("update", "Patient")
    target_id = resolve(session, scope=scope, text=target_id)
    if source_id == target_id:
        raise InvalidError("A patient cannot be merged into itself", expression=["target"])
    store = FhirStore(session, base_url=base_url, scope=scope)
    source, target = store.read("Patient", source_id).json(), store.read("Patient", target_id).json()
    if (was := card(source).replaced_by) is not None:
        raise ConflictError(f"Patient/{source_id} was already merged into Patient/{was}")
    if (was := card(target).replaced_by) is not None:
        raise ConflictError(f"Patient/{target_id} was itself merged into Patient/{was}; merge into that record")
    old, new = f"Patient/{source_id}", f"Patient/{target_id}"
    moved: list[WriteResult] = []
    for row in repo.referring(session, source_id):
        authorize("update", row.res_type)
        data = _rewritten(row.content, old, new)
        if data is not None:
            moved.append(store.update(row.res_type, row.res_id, data))
    source["active"] = False
    source["link"] = [*(source.get("link") or []), {"other": {"reference": new}, "type": "replaced-by"}]
    target["link"] = [*(target.get("link") or []), {"other": {"reference": old}, "type": "replaces"}]
    result = MergeResult(store.update("Patient", source_id, source), store.update("Patient", target_id, target),
                         moved)
    if audit is not None:
        entries = []
        for w in [*moved, result.source, result.target]:
            fields = of_write(session, w)  # names the patients of the new version: add the source's
            fields["patient_ids"] = list(dict.fromkeys([*fields["patient_ids"], source_id, target_id]))
            entries.append(replace(audit, interaction="update", query=f"$merge {old} into {new}", **fields))
        record_many(session, entries)
    return result


def _rewritten(content: str, old: str, new: str) -> dict | None:
    """The resource with every reference to ``old`` pointing at ``new``; None if it has none."""
    data = orjson.loads(content)
    changed = False

    def swap(ref: str) -> str | None:
        nonlocal changed
        if ref == old:
            changed = True
            return new
        return None

    rewrite_references(data, swap)
    return data if changed else None
