"""Registration rules: check the form, allocate the UHID, and store a FHIR R4 Patient through the store.

The Patient is shaped as the demo data shapes it (``himhis/demo/generator.py``): the Latin name and
the Devanagari name (``language`` = hi) as two official HumanNames, the father's or husband's name
in ``EXT_RELATIVE_NAME``, the village as ``Address.city`` with "VPO <village>" and "Tehsil <tehsil>"
lines and the district in ``Address.district``, the mobile as ``+91 XXXXXXXXXX``, the facility as
``managingOrganization`` (which facility scope reads, ``ehr/scope.py``).

A stated age is stored as a year-precision ``birthDate`` (https://hl7.org/fhir/R4/datatypes.html#date)
carrying the ``EXT_BIRTH_DATE_ESTIMATED`` extension on the primitive (``_birthDate``,
https://hl7.org/fhir/R4/json.html#primitive), as national guides do (Ethiopia's ``dob-estimated``,
Zimbabwe's ``date-of-birth-estimated``); FHIR R4 has no core element for it.

UHIDs (``IGMC-2026-000123``) come from a per-facility, per-year counter incremented in the same
transaction as the Patient (``repository.next_number``). A number is issued to at most one patient:
if the transaction rolls back, neither the Patient nor the increment is kept, so the number was
never given to anyone; once committed, the counter only grows, so a deleted or merged patient's
number is never issued again. A number already carried by a stored Patient (an imported record) is
skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from sqlalchemy.orm import Session

from ehr.scope import Scope
from ehr.service import FhirStore, WriteResult
from himhis import systems
from himhis.errors import ForbiddenError, InvalidError, UnprocessableError
from his.registration import repository as repo
from his.registration import validators as v
from his.registration.abdm import AbdmClient, GatewayUnavailable
from his.registration.schemas import RegistrationIn
from integrations.himparivar.client import RegisterUnavailable
from integrations.himparivar.lookup import RegisterLookup

IST = timezone(timedelta(hours=5, minutes=30))  # Indian Standard Time has no daylight saving
EXT_BIRTH_DATE_ESTIMATED = f"{systems.BASE}/StructureDefinition/birth-date-estimated"
LANGUAGE_EXT = "http://hl7.org/fhir/StructureDefinition/language"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
GENDERS = {"male": "male", "m": "male", "female": "female", "f": "female", "other": "other", "o": "other",
           "unknown": "unknown"}  # http://hl7.org/fhir/R4/valueset-administrative-gender.html
MAX_AGE = 130


def today_in_india() -> date:
    return datetime.now(IST).date()


class FieldErrors(InvalidError):
    """The form has mistakes; ``errors`` maps each field to its message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("The registration has mistakes: " + "; ".join(f"{k}: {m}" for k, m in errors.items()),
                         expression=list(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Registration:
    """A checked registration, every value in its stored form."""

    given: str
    family: str
    name_devanagari: str
    birth_date: str  # YYYY-MM-DD, or YYYY when estimated from a stated age
    birth_estimated: bool
    gender: str
    relative_name: str
    village: str
    tehsil: str
    district: str
    pin: str
    mobile: str
    abha: str
    himparivar: str
    himcare: str

    @property
    def latin_name(self) -> str:
        return " ".join(p for p in (self.given, self.family) if p)

    @property
    def birth_year(self) -> int:
        return int(self.birth_date[:4])

    def identifiers(self) -> list[tuple[str, str]]:
        """(system, value) of the national and state identifiers given."""
        pairs = ((systems.ABHA, self.abha), (systems.HIMPARIVAR, self.himparivar), (systems.HIMCARE, self.himcare))
        return [(s, val) for s, val in pairs if val]


def check(form: RegistrationIn, *, today: date, abdm: AbdmClient | None = None,
          register: RegisterLookup | None = None) -> Registration:
    """Every field checked, every mistake reported at once (``FieldErrors``); an Aadhaar number typed
    into any field is refused. With an ABDM gateway configured, the ABHA number must be known to it;
    with the HimParivar register available, the member ID must be in it and name this person."""
    raw = form.values()
    errors: dict[str, str] = {}
    out: dict[str, str] = {}

    def parse(name: str, fn, *, required: str | None = None) -> None:
        value = raw[name]
        if not value:
            if required:
                errors[name] = required
            out[name] = ""
            return
        try:
            out[name] = fn(value)
        except ValueError as exc:
            errors[name] = str(exc)

    parse("given", lambda s: v.latin_name(s, "given name"), required="The given name is required")
    parse("family", lambda s: v.latin_name(s, "family name"))
    parse("name_devanagari", v.devanagari_name)
    parse("relative_name", _person_name)
    parse("village", _place, required="The village or town is required")
    parse("tehsil", _place)
    parse("district", _place, required="The district is required")
    parse("pin", _pin)
    parse("mobile", v.mobile_number)
    parse("abha", v.abha_number)
    parse("himparivar", v.himparivar_id)
    parse("himcare", lambda s: v.himcare_card(s, today=today))
    gender = GENDERS.get(raw["gender"].lower())
    if gender is None:
        errors["gender"] = "Choose male, female, other or unknown"
    birth, estimated = _birth(raw["birth_date"], raw["age"], today, errors)
    # Last, so that this message wins over a format message: an Aadhaar number is never echoed back.
    for name, value in raw.items():
        if value and v.contains_aadhaar(value) and not (name == "mobile" and name not in errors):
            errors[name] = v.AADHAAR_MESSAGE
    if not errors and abdm is not None and out["abha"]:
        try:
            if not abdm.exists(out["abha"]):
                errors["abha"] = "The ABDM gateway does not know this ABHA number; check it with the patient"
        except GatewayUnavailable as exc:
            errors["abha"] = (f"The ABHA number could not be verified: {exc}. Try again, or leave the ABHA "
                              "number out for now and add it later")
    if not errors and register is not None and out["himparivar"]:
        problem = _register_mismatch(register, out["himparivar"], gender=gender, birth=birth)
        if problem:
            errors["himparivar"] = problem
    if errors:
        raise FieldErrors(errors)
    return Registration(birth_date=birth, birth_estimated=estimated, gender=gender, **{
        k: out[k] for k in ("given", "family", "name_devanagari", "relative_name", "village", "tehsil", "district",
                            "pin", "mobile", "abha", "himparivar", "himcare")})


def _register_mismatch(register: RegisterLookup, member_id: str, *, gender: str, birth: str | None) -> str | None:
    """Why the register does not bear out this member ID for this person, or None."""
    try:
        if not register.available():
            return None
        member = register.member(member_id)
    except RegisterUnavailable as exc:
        return (f"The HimParivar member ID could not be checked: {exc}. Try again, or leave it out for now "
                "and add it later")
    if member is None:
        return f"HimParivar has no member {member_id}; check the ID on the family's HimParivar card"
    if member["status"] == "deceased":
        return f"HimParivar records member {member_id} as deceased; check the ID on the family's card"
    registered_gender = member["gender"]
    year = member["birth_year"]
    if (gender in ("male", "female") and registered_gender in ("male", "female") and gender != registered_gender) \
            or (birth and year is not None and abs(int(birth[:4]) - year) > 2):
        born = f", born {year}" if year else ""
        return (f"HimParivar member {member_id} is {member['name']} ({member['gender']}{born}), not this person; "
                "check the ID on the family's HimParivar card")
    return None


def _person_name(value: str) -> str:
    text = " ".join(value.split())
    if v.has_devanagari(text):
        return v.devanagari_name(text)
    return v.latin_name(text, "father's or husband's name")


def _place(value: str) -> str:
    text = " ".join(value.split())
    if any(ch.isdigit() for ch in text) or len(text) > 100:
        raise ValueError("Write the place name only, in letters")
    return text


def _pin(value: str) -> str:
    digits = value.replace(" ", "")
    if not (len(digits) == 6 and digits.isdigit() and digits[0] != "0"):
        raise ValueError("A PIN code has 6 digits, for example 171001")
    return digits


def _birth(birth_date: str, age: str, today: date, errors: dict[str, str]) -> tuple[str, bool]:
    if birth_date:
        try:
            born = date.fromisoformat(birth_date)
        except ValueError:
            errors["birth_date"] = "Write the date of birth as YYYY-MM-DD, for example 1961-04-23"
            return "", False
        if born > today:
            errors["birth_date"] = "The date of birth is in the future"
        elif today.year - born.year > MAX_AGE:
            errors["birth_date"] = f"The date of birth is more than {MAX_AGE} years ago"
        return born.isoformat(), False
    if age:
        if not age.isdigit() or int(age) > MAX_AGE:
            errors["age"] = f"Give the age in whole years, 0 to {MAX_AGE}"
            return "", False
        return f"{today.year - int(age):04d}", True
    errors["birth_date"] = "Give the date of birth, or the age in years if the date is not known"
    return "", False


def patient_resource(reg: Registration, *, uhid: str, organization: tuple[str, str | None]) -> dict:
    """The FHIR R4 Patient for a registration (https://hl7.org/fhir/R4/patient.html)."""
    org_id, org_name = organization
    org_ref = {"reference": f"Organization/{org_id}", **({"display": org_name} if org_name else {})}
    identifiers: list[dict] = [{
        "use": "usual",
        "type": {"coding": [{"system": V2_0203, "code": "MR", "display": "Medical record number"}], "text": "UHID"},
        "system": systems.UHID, "value": uhid, "assigner": org_ref}]
    if reg.abha:
        identifiers.append({"type": {"text": "ABHA Number"}, "system": systems.ABHA, "value": reg.abha,
                            "assigner": {"display": "National Health Authority"}})
    if reg.himparivar:
        identifiers.append({"type": {"text": "HimParivar Member ID"}, "system": systems.HIMPARIVAR,
                            "value": reg.himparivar, "assigner": {"display": "Government of Himachal Pradesh"}})
    if reg.himcare:
        identifiers.append({"type": {"text": "HIMCARE Card Number"}, "system": systems.HIMCARE,
                            "value": reg.himcare, "assigner": {"display": "State Health Agency, Himachal Pradesh"}})
    names = [{"use": "official", "text": reg.latin_name, **({"family": reg.family} if reg.family else {}),
              "given": reg.given.split()}]
    if reg.name_devanagari:
        words = reg.name_devanagari.split()
        hindi: dict = {"extension": [{"url": LANGUAGE_EXT, "valueCode": "hi"}], "use": "official",
                       "text": reg.name_devanagari}
        if reg.family and len(words) > 1:
            hindi["family"], hindi["given"] = words[-1], words[:-1]
        else:
            hindi["given"] = words
        names.append(hindi)
    resource: dict = {"resourceType": "Patient", "identifier": identifiers, "active": True, "name": names}
    if reg.relative_name:
        resource["extension"] = [{"url": systems.EXT_RELATIVE_NAME, "valueString": reg.relative_name}]
    if reg.mobile:
        resource["telecom"] = [{"system": "phone", "value": reg.mobile, "use": "mobile"}]
    resource["gender"] = reg.gender
    resource["birthDate"] = reg.birth_date
    if reg.birth_estimated:
        resource["_birthDate"] = {"extension": [{"url": EXT_BIRTH_DATE_ESTIMATED, "valueBoolean": True}]}
    address: dict = {"use": "home", "type": "physical",
                     "line": [f"VPO {reg.village}"] + ([f"Tehsil {reg.tehsil}"] if reg.tehsil else []),
                     "city": reg.village, "district": reg.district, "state": "Himachal Pradesh"}
    if reg.pin:
        address["postalCode"] = reg.pin
    address["country"] = "IN"
    resource["address"] = [address]
    resource["managingOrganization"] = org_ref
    return resource


def allocate_uhid(session: Session, facility: str, year: int) -> str:
    """The next UHID of a facility for a year, in the caller's transaction."""
    while True:
        uhid = f"{facility}-{year}-{repo.next_number(session, facility, year):06d}"
        if not repo.uhid_in_use(session, uhid):
            return uhid


def register(session: Session, *, scope: Scope, facility: str | None, reg: Registration, today: date,
             base_url: str | None = None) -> WriteResult:
    """Store a new Patient at the caller's facility with a fresh UHID (one unit of work: flush only)."""
    if not facility:
        raise ForbiddenError("Patients are registered at a facility, and this login has none; ask an "
                             "administrator to set it")
    organization = repo.facility_organization(session, facility)
    if organization is None:
        raise UnprocessableError(f"The facility {facility} has no Organization record to register patients at")
    uhid = allocate_uhid(session, facility, today.year)
    patient = patient_resource(reg, uhid=uhid, organization=organization)
    return FhirStore(session, base_url=base_url, scope=scope).create(patient, res_type="Patient")
