"""Placing a stored ORU^R01 in the record: one FHIR transaction, or the hold queue with the reason.

Mapping follows the HL7 v2-to-FHIR IG (ORU^R01 → DiagnosticReport, OBX → Observation, SPM → Specimen).
The patient is found by a UHID in PID-3, the order by the placer order number (ORC-2/OBR-2) among
ServiceRequest identifiers, and the results take the shape the laboratory FHIR client writes:
``basedOn`` the order, ``performer`` the laboratory the order was addressed to. Each result carries an
identifier built from the filler order number and OBX-3/OBX-4, so a correction (OBX-11 C) or a
cancellation (D, W, X) is a new version of the earlier Observation, never a second copy. A critical
value (OBX-8 LL, HH, AA, or outside the catalogue's critical limits) raises a Communication
(category alert, priority stat) about the Observation for the ward results inbox.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from urllib.parse import quote

import hl7
from sqlalchemy.orm import Session

from audit.service import AuditEntry, audit_bundle_hook
from ehr import bundle as bundles
from ehr.service import FhirStore
from himhis.errors import ConflictError, HimHISError, NotFoundError
from himhis.systems import FILLER_ORDER, HL7_INBOX, LAB_RESULT, LAB_SPECIMEN, PLACER_ORDER, UHID
from integrations.hl7 import inbox
from integrations.hl7.catalogue import LOINC, Test, catalogue, v2_maps
from integrations.hl7.parse import HL7Error, Message, check_msh, check_oru, parse_sn

log = logging.getLogger(__name__)
UCUM = "http://unitsofmeasure.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
V2_0078 = "http://terminology.hl7.org/CodeSystem/v2-0078"
COMMUNICATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"
_UNSAFE = set(",|$\\")


class Hold(Exception):
    """A message that cannot be placed: kept in the inbox with ``reason`` until staff fix the cause."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Outcome:
    message_id: int
    state: str
    reason: str | None = None
    resource_ids: list[str] = field(default_factory=list)
    already: bool = False


def process(session: Session, *, message_id: int, base_url: str | None = None) -> Outcome:
    """Process one inbox message in the caller's unit of work (idempotent: a processed one is left alone)."""
    row = inbox.lock(session, message_id)
    if row is None:
        raise Hold(f"HL7 message {message_id} is not in the inbox")
    if row.state == inbox.PROCESSED:
        return Outcome(message_id, row.state, resource_ids=(row.resource_ids or "").split(","), already=True)
    row.attempts += 1
    store = FhirStore(session, base_url=base_url)
    try:
        with session.begin_nested():
            message = check_msh(row.raw)
            check_oru(message)
            built = build(store, message, message_id=message_id)
            entry = AuditEntry(interaction="transaction", actor_subject=f"mllp:{row.sending_application}^"
                               f"{row.sending_facility}", actor_username=f"mllp:{row.sending_application}^"
                               f"{row.sending_facility}", client_id="mllp-listener",
                               source_ip=(row.peer or "").rsplit(":", 1)[0] or None, user_agent="HL7 v2 MLLP",
                               query=f"{row.message_type} {row.control_id}")
            response = bundles.process(lambda fn: fn(store), built, base_url=base_url,
                                       audit=audit_bundle_hook(entry))
    except (Hold, HL7Error) as exc:
        return _hold(row, message_id, str(exc))
    except HimHISError as exc:
        if exc.status >= 500:
            raise
        return _hold(row, message_id, f"The results could not be stored: {exc.message}")
    ids = [e["response"]["location"].split("/_history/")[0] for e in response["entry"]
           if e.get("response", {}).get("location")]
    row.state, row.hold_reason, row.processed = inbox.PROCESSED, None, inbox.utcnow()
    row.resource_ids = ",".join(ids)
    return Outcome(message_id, row.state, resource_ids=ids)


def _hold(row, message_id: int, reason: str) -> Outcome:
    row.state, row.hold_reason = inbox.HELD, reason[:2000]
    log.info("HL7 message %s held: %s", message_id, reason)
    return Outcome(message_id, inbox.HELD, reason=row.hold_reason)


def held_messages(session: Session) -> list[dict]:
    """The hold queue for the interfaces screen: each message, who sent it, whom it names, and why it is held."""
    out = []
    for row in inbox.held(session):
        patient, orders = "", []
        try:
            message = check_msh(row.raw)
            pid, groups = _groups(message)
            patient = str(pid[3]) if pid is not None and len(pid) > 3 else ""
            orders = [_f(g.obr, 2) or (_f(g.orc, 2) if g.orc is not None else "") for g in groups]
        except HL7Error:
            pass
        out.append({"id": row.id, "state": row.state, "reason": row.hold_reason, "attempts": row.attempts,
                    "message_type": row.message_type, "control_id": row.control_id,
                    "sender": f"{row.sending_application}^{row.sending_facility}", "peer": row.peer,
                    "received": row.received.isoformat() + "Z", "patient_identifiers": patient,
                    "placer_order_numbers": orders})
    return out


def replay_held(session: Session, *, message_id: int, base_url: str | None = None) -> Outcome:
    """``replay`` for the hold queue screen: 404 for an unknown id, 409 for a message that is not held."""
    row = inbox.get(session, message_id)
    if row is None:
        raise NotFoundError(f"HL7 message {message_id} is not in the inbox")
    if row.state not in (inbox.HELD, inbox.FAILED):
        raise ConflictError(f"HL7 message {message_id} is {row.state}, not held; only held messages are replayed")
    return replay(session, message_id=message_id, base_url=base_url)


def replay(session: Session, *, message_id: int, base_url: str | None = None) -> Outcome:
    """Process a held message again, after its cause was fixed (a patient registered, a code mapped)."""
    row = inbox.lock(session, message_id)
    if row is None:
        raise Hold(f"HL7 message {message_id} is not in the inbox")
    if row.state in (inbox.HELD, inbox.FAILED):
        row.state = inbox.RECEIVED
    return process(session, message_id=message_id, base_url=base_url)


# -- mapping ------------------------------------------------------------------------------------


def _f(seg: hl7.Segment, index: int, comp: int = 0, rep: int = 0, sub: int = 0) -> str:
    """A component of a field as text ('' when absent)."""
    if len(seg) <= index:
        return ""
    value = seg[index]
    if isinstance(value, str):
        return value if comp == 0 and rep == 0 else ""
    try:
        r = value[rep]
        if isinstance(r, str):
            return r if comp == 0 else ""
        c = r[comp]
        if isinstance(c, str):
            return c if sub == 0 else ""
        return str(c[sub])
    except IndexError:
        return ""


def _reps(seg: hl7.Segment, index: int) -> list:
    if len(seg) <= index or isinstance(seg[index], str):
        return [seg[index]] if len(seg) > index and seg[index] else []
    return list(seg[index])


def _safe(value: str) -> bool:
    return bool(value) and not (_UNSAFE & set(value))


def _token(system: str, value: str) -> str:
    return f"identifier={quote(system, safe='')}%7C{quote(value, safe='')}"


def _datetime(ts: str) -> str | None:
    """An HL7 DTM/TS (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ], §2.A.22) as a FHIR dateTime."""
    ts = ts.strip()
    if not ts:
        return None
    zone = ""
    for sign in ("+", "-"):
        if sign in ts[4:]:
            i = ts.index(sign, 4)
            ts, zone = ts[:i], ts[i:]
    ts = ts.split(".")[0]
    if not ts.isdigit() or len(ts) not in (4, 6, 8, 10, 12, 14):
        return None
    out = ts[:4]
    if len(ts) >= 6:
        out += "-" + ts[4:6]
    if len(ts) >= 8:
        out += "-" + ts[6:8]
    if len(ts) >= 10:
        minutes = ts[10:12] or "00"
        seconds = ts[12:14] or "00"
        tz = f"{zone[:3]}:{zone[3:5]}" if len(zone) == 5 else "+05:30"  # India when the sender gives no zone
        out += f"T{ts[8:10]}:{minutes}:{seconds}{tz}"
    return out


def _coding(msg: hl7.Message, seg: hl7.Segment, index: int) -> tuple[str, str, str]:
    """(code, text, coding system) of a CE/CWE field's first triplet."""
    return (msg.unescape(_f(seg, index, 0)), msg.unescape(_f(seg, index, 1)), _f(seg, index, 2))


def _number(text: str) -> int | float:
    d = Decimal(text.strip())
    return int(d) if d == d.to_integral_value() and "." not in text else float(d)


@dataclass(slots=True)
class _Group:
    obr: hl7.Segment
    orc: hl7.Segment | None
    index: int
    obx: list[hl7.Segment] = field(default_factory=list)
    spm: list[hl7.Segment] = field(default_factory=list)


def _groups(message: Message) -> tuple[hl7.Segment, list[_Group]]:
    pid = None
    groups: list[_Group] = []
    orc = None
    for seg in message.parsed:
        sid = str(seg[0])
        if sid == "PID" and pid is None:
            pid = seg
        elif sid == "ORC":
            orc = seg
        elif sid == "OBR":
            groups.append(_Group(seg, orc, len(groups) + 1))
            orc = None
        elif sid == "OBX" and groups:
            groups[-1].obx.append(seg)
        elif sid == "SPM" and groups:
            groups[-1].spm.append(seg)
    return pid, groups


def find_patient(store: FhirStore, pid: hl7.Segment) -> str:
    """The Patient whose UHID is among the PID-3 identifiers (exactly one patient, or Hold)."""
    values = [str(r[0]) if not isinstance(r, str) else r for r in _reps(pid, 3)]
    values = [v.strip() for v in values if v and v.strip()]
    if not values:
        raise Hold("PID-3 carries no patient identifier")
    found: set[str] = set()
    for value in values:
        if _safe(value):
            found.update(store.search_ids("Patient", _token(UHID, value)))
    if not found:
        raise Hold(f"Unknown patient: no patient has the UHID {' or '.join(values)} given in PID-3; register or "
                   "match the patient, then replay")
    if len(found) > 1:
        raise Hold(f"PID-3 identifiers {', '.join(values)} name {len(found)} different patients")
    return found.pop()


def _order(store: FhirStore, group: _Group, patient: str) -> tuple[str, str, dict]:
    """(placer number, ServiceRequest id, ServiceRequest) for an OBR group (ORC-2, else OBR-2)."""
    placer = _f(group.obr, 2) or (_f(group.orc, 2) if group.orc is not None else "")
    if not placer:
        raise Hold(f"OBR {group.index} has no placer order number (ORC-2/OBR-2): the order cannot be found")
    ids = store.search_ids("ServiceRequest", _token(PLACER_ORDER, placer)) if _safe(placer) else []
    if not ids:
        raise Hold(f"Unknown order: no ServiceRequest has the placer order number '{placer}' (OBR {group.index})")
    if len(ids) > 1:
        raise Hold(f"The placer order number '{placer}' names {len(ids)} ServiceRequests")
    order = store.read("ServiceRequest", ids[0]).json()
    subject = (order.get("subject") or {}).get("reference")
    if subject != f"Patient/{patient}":
        raise Hold(f"Order '{placer}' belongs to {subject or 'no patient'}, not to the patient in PID-3 "
                   f"(Patient/{patient}); the results were not attached")
    return placer, ids[0], order


def _quantity(value: int | float, unit_field: tuple[str, str, str], test: Test | None) -> dict:
    code, text, system = unit_field
    unit = code or text
    out: dict = {"value": value}
    if system.upper() in ("UCUM", "ANS+") and code:
        out.update(unit=text or code, system=UCUM, code=code)
    elif test is not None and test.ucum and (not unit or unit.lower() == test.ucum.lower()):
        out.update(unit=unit or test.ucum, system=UCUM, code=test.ucum)
    elif unit:
        out["unit"] = unit
    return out


def _value(msg: hl7.Message, obx: hl7.Segment, seq: int, test: Test | None) -> tuple[str, object] | None:
    """(FHIR value[x] name, value) from OBX-2/OBX-5/OBX-6 (§7.4.2), or None when OBX-5 is empty."""
    vtype = _f(obx, 2)
    raw = [r for r in _reps(obx, 5) if str(r)]
    if not raw:
        return None
    unit = _coding(msg, obx, 6)
    first = raw[0]
    if vtype == "NM":
        try:
            return "valueQuantity", _quantity(_number(str(first)), unit, test)
        except InvalidOperation as exc:
            raise Hold(f"OBX {seq}: '{first}' is not a number (OBX-2 NM)") from exc
    if vtype == "SN":
        sn = parse_sn(str(first))
        if sn is None:
            raise Hold(f"OBX {seq}: '{first}' is not a structured numeric (SN)")
        comparator, n1, sep, n2 = sn
        if sep in (":", "/") and n1 is not None and n2 is not None:
            return "valueRatio", {"numerator": {"value": _number(str(n1))},
                                  "denominator": {"value": _number(str(n2))}}
        if sep == "-" and n1 is not None and n2 is not None:
            return "valueRange", {"low": _quantity(_number(str(n1)), unit, test),
                                  "high": _quantity(_number(str(n2)), unit, test)}
        quantity = _quantity(_number(str(n1 if n1 is not None else n2)), unit, test)
        if comparator in ("<", "<=", ">", ">="):
            quantity["comparator"] = comparator
        return "valueQuantity", quantity
    if vtype in ("ST", "TX", "FT"):
        return "valueString", "\n".join(msg.unescape(str(r)) for r in raw)
    if vtype in ("CE", "CWE", "CNE"):
        code, text, system = _coding(msg, obx, 5)
        coding = {"code": code} if code else {}
        if code and system:
            coding["system"] = v2_maps()["coding_systems"].get(system, f"urn:himhis:v2-coding-system:{system}")
        if text and coding:
            coding["display"] = text
        return "valueCodeableConcept", ({"coding": [coding]} if coding else {}) | ({"text": text} if text else {})
    raise Hold(f"OBX {seq}: value type '{vtype}' is not one this interface stores (NM, SN, ST, TX, FT, CE, CWE)")


def _range(msg: hl7.Message, obx: hl7.Segment, quantity: dict | None) -> list[dict]:
    """OBX-7 reference range: 'low-high', '<high', '>low', else text."""
    text = msg.unescape(_f(obx, 7)).strip()
    if not text:
        return []
    unit = {k: quantity[k] for k in ("unit", "system", "code") if quantity and k in quantity}

    def q(v: str) -> dict:
        return {"value": _number(v), **unit}

    try:
        if text.startswith(("<", ">")):
            bound = text.lstrip("<>=").strip()
            return [{("high" if text[0] == "<" else "low"): q(bound), "text": text}]
        for sep in ("-", "_", " - "):
            lo, _, hi = text.partition(sep)
            if lo.strip() and hi.strip():
                return [{"low": q(lo.strip()), "high": q(hi.strip()), "text": text}]
    except InvalidOperation:
        pass
    return [{"text": text}]


def _critical(flags: list[str], value: tuple[str, object] | None, test: Test | None) -> str | None:
    """Why a result is critical (OBX-8 LL/HH/AA or the catalogue's critical limits), or None."""
    hit = [f for f in flags if f in v2_maps()["critical_flags"]]
    if hit:
        return f"flagged {'/'.join(hit)} by the laboratory"
    if test is None or value is None or value[0] != "valueQuantity":
        return None
    number = Decimal(str(value[1]["value"]))  # type: ignore[index]
    if test.critical_low is not None and number < test.critical_low:
        return f"below the critical limit {test.critical_low}"
    if test.critical_high is not None and number > test.critical_high:
        return f"above the critical limit {test.critical_high}"
    return None


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def build(store: FhirStore, message: Message, *, message_id: int) -> dict:
    """The transaction Bundle for an ORU^R01, or Hold with the reason it cannot be placed."""
    msg = message.parsed
    h = message.header
    lab = h.sending_facility.split("^")[0] or h.sending_application.split("^")[0]
    pid, groups = _groups(message)
    patient = find_patient(store, pid)
    subject = {"reference": f"Patient/{patient}"}
    cat = catalogue()
    maps = v2_maps()
    entries: list[dict] = []
    targets: list[str] = []
    performers: list[dict] = []

    def put(resource: dict, criteria: str) -> str:
        full = _urn()
        entries.append({"fullUrl": full, "resource": resource,
                        "request": {"method": "PUT", "url": f"{resource['resourceType']}?{criteria}"}})
        targets.append(full)
        return full

    for group in groups:
        obr = group.obr
        placer, order_id, order = _order(store, group, patient)
        based_on = [{"reference": f"ServiceRequest/{order_id}"}]
        performer = [p for p in order.get("performer", []) if p.get("reference", "").startswith("Organization/")]
        performers.extend(p for p in performer if p not in performers)
        filler = _f(obr, 3) or (_f(group.orc, 3) if group.orc is not None else "")
        key = f"{lab}/{filler}" if filler else f"{lab}/placer-{placer}"
        if not _safe(key.replace("/", "")):
            raise Hold(f"OBR {group.index}: the filler order number '{filler}' has characters that cannot be "
                       "used in an identifier (, | $ \\)")
        code, text, system = _coding(msg, obr, 4)
        panel = cat.panel(lab, code, system)
        if panel is None:
            raise Hold(f"Unknown test code: OBR-4 '{code}^{text}' from {lab} is not in the test catalogue "
                       f"(OBR {group.index}); add it to integrations/hl7/data/catalogue.json, then replay")
        status = maps["obr25_report_status"].get(_f(obr, 25))
        if status is None:
            raise Hold(f"OBR {group.index}: OBR-25 result status '{_f(obr, 25)}' is missing or unknown")
        effective = _datetime(_f(obr, 7))
        specimen_ref = _specimen(msg, group, lab, key, subject, based_on, effective, put)
        results, idents = [], []
        for seq, obx in enumerate(group.obx, start=1):
            ref, ident = _observation(msg, obx, seq, group, lab, key, subject, based_on, performer, specimen_ref,
                                      effective, put, entries)
            results.append({"reference": ref})
            idents.append(ident)
        criteria = _token(FILLER_ORDER, key)
        existing = store.search_ids("DiagnosticReport", criteria)
        if existing:  # a correction may resend only some results: the others stay listed
            resent = {f"Observation/{i}" for ident in idents
                      for i in store.search_ids("Observation", _token(LAB_RESULT, ident))}
            earlier = store.read("DiagnosticReport", existing[0]).json().get("result", [])
            results = [r for r in earlier if r.get("reference") not in resent] + results
        report = {"resourceType": "DiagnosticReport", "status": status,
                  "identifier": [{"system": FILLER_ORDER, "value": key},
                                 {"system": PLACER_ORDER, "value": placer}],
                  "basedOn": based_on, "category": [{"coding": [{
                      "system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
                  "code": _concept(panel, code, text, system), "subject": subject}
        if effective:
            report["effectiveDateTime"] = effective
        issued = _datetime(_f(obr, 22))
        if issued and len(issued) > 10:
            report["issued"] = issued
        if performer:
            report["performer"] = performer
        if results:
            report["result"] = results
        if specimen_ref:
            report["specimen"] = [{"reference": specimen_ref}]
        put(report, criteria)
    if not groups:
        raise Hold("ORU^R01 has no OBR group")
    provenance = {"resourceType": "Provenance", "target": [{"reference": t} for t in targets],
                  "recorded": inbox.utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                  "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                                           "code": "CREATE"}]},
                  "agent": [{"who": p} for p in performers] or [{"who": {"display": f"{h.sending_application}^"
                                                                                    f"{h.sending_facility}"}}],
                  "entity": [{"role": "source", "what": {
                      "identifier": {"system": HL7_INBOX, "value": str(message_id)},
                      "display": f"HL7 v2 {h.message_type} {h.control_id} from {h.sending_application}^"
                                 f"{h.sending_facility}"}}]}
    entries.append({"fullUrl": _urn(), "resource": provenance, "request": {"method": "POST", "url": "Provenance"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _concept(test: Test, code: str, text: str, system: str) -> dict:
    codings = [{"system": LOINC, "code": test.loinc, **({"display": test.display} if test.display else {})}]
    if system not in ("LN", "LOINC") and code:
        codings.append({"system": f"urn:himhis:lab-code:{system or 'local'}", "code": code,
                        **({"display": text} if text else {})})
    return {"coding": codings, **({"text": text} if text else {})}


def _specimen(msg, group: _Group, lab: str, key: str, subject: dict, based_on: list, effective: str | None,
              put) -> str | None:
    """Specimen from SPM (§7.4.3) or, before 2.5, OBR-15 source and OBR-7 collection time."""
    spm = group.spm[0] if group.spm else None
    if spm is None and not _f(group.obr, 15) and not effective:
        return None
    specimen: dict = {"resourceType": "Specimen", "subject": subject, "request": based_on}
    if spm is not None:
        sid = _f(spm, 2, 1) or _f(spm, 2, 0)
        code, text, _ = _coding(msg, spm, 4)
        collected = _datetime(_f(spm, 17))
    else:
        sid = ""
        code, text, _ = _coding(msg, group.obr, 15)
        collected = effective
    ident = f"{lab}/{sid}" if sid and _safe(sid) else f"{key}/specimen"
    specimen["identifier"] = [{"system": LAB_SPECIMEN, "value": ident}]
    if code or text:
        coding = {"system": "http://terminology.hl7.org/CodeSystem/v2-0487", "code": code} if code else None
        specimen["type"] = ({"coding": [coding | ({"display": text} if text else {})]} if coding else {}) | (
            {"text": text} if text else {})
    if collected:
        specimen["collection"] = {"collectedDateTime": collected}
    return put(specimen, _token(LAB_SPECIMEN, ident))


def _observation(msg, obx, seq: int, group: _Group, lab: str, key: str, subject: dict, based_on: list,
                 performer: list, specimen_ref: str | None, effective: str | None, put,
                 entries) -> tuple[str, str]:
    code, text, system = _coding(msg, obx, 3)
    if not code:
        raise Hold(f"OBR {group.index}, OBX {seq}: OBX-3 observation identifier is empty")
    test = catalogue().test(lab, code, system)
    if test is None:
        raise Hold(f"Unknown test code: OBX-3 '{code}^{text}' from {lab} is not in the test catalogue "
                   f"(OBR {group.index}, OBX {seq}); add it to integrations/hl7/data/catalogue.json, then replay")
    result_status = _f(obx, 11)
    status = v2_maps()["obx11_observation_status"].get(result_status)
    if status is None:
        raise Hold(f"OBR {group.index}, OBX {seq}: OBX-11 result status '{result_status}' is missing or unknown")
    value = _value(msg, obx, seq, test)
    sub_id = _f(obx, 4) or "1"
    ident = f"{key}/{code}/{sub_id}"
    if not _safe(ident.replace("/", "")):
        raise Hold(f"OBX {seq}: OBX-3/OBX-4 '{code}'/'{sub_id}' cannot be used in an identifier (, | $ \\)")
    obs: dict = {"resourceType": "Observation", "status": status,
                 "identifier": [{"system": LAB_RESULT, "value": ident}], "basedOn": based_on,
                 "category": [{"coding": [{
                     "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                     "code": "laboratory"}]}],
                 "code": _concept(test, code, text, system), "subject": subject}
    when = _datetime(_f(obx, 14)) or effective
    if when:
        obs["effectiveDateTime"] = when
    if performer:
        obs["performer"] = performer
    if value is not None and status not in ("cancelled", "entered-in-error"):
        obs[value[0]] = value[1]
    elif value is None and status not in ("cancelled", "entered-in-error", "registered"):
        obs["dataAbsentReason"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "unknown"}]}
    flags = [str(r) for r in _reps(obx, 8) if str(r)]
    names = v2_maps()["obx8_interpretation"]
    if flags:
        obs["interpretation"] = [{"coding": [{"system": INTERPRETATION, "code": f, "display": names[f]}]}
                                 if f in names else {"coding": [{"system": V2_0078, "code": f}]} for f in flags]
    ranges = _range(msg, obx, value[1] if value and value[0] == "valueQuantity" else None)
    if ranges:
        obs["referenceRange"] = ranges
    if specimen_ref:
        obs["specimen"] = {"reference": specimen_ref}
    ref = put(obs, _token(LAB_RESULT, ident))
    why = _critical(flags, value, test) if status not in ("cancelled", "entered-in-error") else None
    if why:
        shown = test.display or text or code
        alert = {"resourceType": "Communication", "status": "in-progress", "priority": "stat",
                 "identifier": [{"system": LAB_RESULT, "value": f"{ident}/critical/{status}"}],
                 "category": [{"coding": [{"system": COMMUNICATION_CATEGORY, "code": "alert"}]}],
                 "subject": subject, "basedOn": based_on, "about": [{"reference": ref}],
                 "payload": [{"contentString": f"Critical result: {shown} {_shown(value)} ({why})"}]}
        if performer:
            alert["sender"] = performer[0]
        entries.append({"fullUrl": _urn(), "resource": alert, "request": {
            "method": "POST", "url": "Communication",
            "ifNoneExist": _token(LAB_RESULT, f"{ident}/critical/{status}")}})
    return ref, ident


def _shown(value: tuple[str, object] | None) -> str:
    if value is None:
        return ""
    name, v = value
    if name == "valueQuantity" and isinstance(v, dict):
        return f"{v.get('comparator', '')}{v['value']} {v.get('unit', '')}".strip()
    return str(v)
