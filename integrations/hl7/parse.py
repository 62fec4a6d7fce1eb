"""Reading HL7 v2 messages as real feeds send them (HL7 v2.5.1 ch. 2, "Control").

python-hl7 splits a message into segments, fields, repetitions and components without knowing the
version's message structures, so segments a version does not define (PRT and REM in 2.5.1 lab feeds,
Z-segments) pass through; it is also about 25 times faster than hl7apy's parser, which matters on the
acknowledgement path. What this module checks is what the acknowledgement depends on: the MSH
segment (2.14.9), the version (2.3 to 2.5.1), the message type, and, for ORU^R01, the segments and
numeric values the processing needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import hl7

START, END = b"\x0b", b"\x1c\x0d"  # MLLP block (HL7 v2.5.1 Appendix C, "MLLP")
VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")
SUPPORTED = {("ORU", "R01")}
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_BATCH = ("FHS", "BHS", "BTS", "FTS")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


class HL7Error(Exception):
    """What is wrong with a message, where, and the HL7 table 0357 error code for the ERR segment."""

    def __init__(self, reason: str, *, code: str = "207", segment: str | None = None, sequence: int = 1,
                 position: int | None = None, reject: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code  # 100 segment sequence, 101 required field missing, 102 data type, 200-207 …
        self.segment = segment
        self.sequence = sequence
        self.position = position
        self.reject = reject  # AR (never to be resent as is) rather than AE


# HL7 table 0357 (message error condition codes) texts used in ERR-3.
ERROR_TEXT = {"100": "Segment sequence error", "101": "Required field missing", "102": "Data type error",
              "103": "Table value not found", "200": "Unsupported message type", "201": "Unsupported event code",
              "202": "Unsupported processing id", "203": "Unsupported version id", "204": "Unknown key identifier",
              "205": "Duplicate key identifier", "206": "Application record locked",
              "207": "Application internal error"}


@dataclass(slots=True)
class Header:
    """The MSH fields the listener needs (HL7 v2.5.1 §2.14.9), as text in the standard encoding."""

    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    control_id: str = ""
    message_code: str = ""
    trigger_event: str = ""
    version: str = ""
    processing_id: str = "P"
    accept_ack_type: str = ""  # MSH-15: AL, NE, ER, SU; empty = original acknowledgement mode
    application_ack_type: str = ""  # MSH-16

    @property
    def message_type(self) -> str:
        return f"{self.message_code}^{self.trigger_event}"

    @property
    def enhanced(self) -> bool:
        """Enhanced acknowledgement mode (§2.9.3) when MSH-15 or MSH-16 is valued."""
        return bool(self.accept_ack_type or self.application_ack_type)


@dataclass(slots=True)
class Message:
    """One HL7 v2 message: its text (segments joined by CR) and the parsed MSH."""

    text: str
    header: Header
    parsed: hl7.Message = field(repr=False)


def normalise(raw: bytes | str) -> str:
    """Text with segments separated by CR alone, whatever the sender used (CR, LF or CRLF)."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    text = text.lstrip("\ufeff").replace("\r\n", "\r").replace("\n", "\r")
    return "\r".join(s for s in text.split("\r") if s.strip())


def split_batch(raw: bytes | str) -> list[str]:
    """The messages of a frame: one, or several inside FHS/BHS … BTS/FTS batch wrappers (§2.10.3)."""
    text = normalise(raw)
    if not text:
        return []
    messages: list[list[str]] = []
    for seg in text.split("\r"):
        head = seg[:3]
        if head in _BATCH:
            continue
        if head == "MSH" or not messages:
            messages.append([])
        messages[-1].append(seg)
    return ["\r".join(m) for m in messages]


def _header_text(msg: hl7.Message, seg: hl7.Segment, index: int) -> str:
    """A header field re-encoded with the standard delimiters (the ACK is always sent with ^~\\&)."""
    if len(seg) <= index:
        return ""
    value = seg[index]
    if isinstance(value, str):
        return value
    reps = []
    for rep in value:
        if isinstance(rep, str):
            reps.append(escape(msg.unescape(rep)))
            continue
        comps = []
        for comp in rep:
            if isinstance(comp, str):
                comps.append(escape(msg.unescape(comp)))
            else:
                comps.append("&".join(escape(msg.unescape(str(s))) for s in comp))
        reps.append("^".join(comps))
    return "~".join(reps).rstrip("^")


def escape(value: str) -> str:
    """HL7 escape sequences for the standard delimiters (§2.7.4)."""
    if not any(c in value for c in "\\|^&~"):
        return value
    return (value.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\")
            .replace("~", "\\R\\"))


def check_msh(text: str) -> Message:
    """Parse one message and check its MSH; raise HL7Error saying what is wrong and where."""
    if not text.startswith("MSH"):
        first = text[:3] if text else "nothing"
        raise HL7Error(f"A message must begin with an MSH segment; it begins with '{first}'", code="100",
                       segment="MSH", reject=True)
    if len(text) < 8:
        raise HL7Error("The MSH segment is truncated before its encoding characters (MSH-1, MSH-2)", code="101",
                       segment="MSH", position=2, reject=True)
    sep, enc = text[3], text[4:8]
    if sep.isalnum() or len(set(sep + enc)) != 5 or any(c.isalnum() or c in "\r\n " for c in enc):
        raise HL7Error(f"MSH-1/MSH-2 field separator and encoding characters '{text[3:8]}' are not five distinct "
                       "non-alphanumeric characters (expected |^~\\&)", code="102", segment="MSH", position=2,
                       reject=True)
    if len(text) > 8 and text[8] != sep:
        raise HL7Error(f"MSH-2 encoding characters must be four characters followed by '{sep}'; got "
                       f"'{text[4:12]}'", code="102", segment="MSH", position=2, reject=True)
    bad = next(((n, s) for n, s in enumerate(text.split("\r"), start=1)
                if not _SEGMENT_ID.match(s[:3]) or (len(s) > 3 and s[3] != sep)), None)
    if bad is not None:
        raise HL7Error(f"Line {bad[0]} ('{bad[1][:20]}') is not a segment (a segment is three capital letters or "
                       "digits and the field separator)", code="100", reject=True)
    try:
        parsed = hl7.parse(text)
    except Exception as exc:  # python-hl7 raises plain exceptions on malformed structure
        raise HL7Error(f"The message cannot be split into segments: {exc}", code="100", reject=True) from exc
    msh = parsed.segment("MSH")
    h = Header(sending_application=_header_text(parsed, msh, 3), sending_facility=_header_text(parsed, msh, 4),
               receiving_application=_header_text(parsed, msh, 5), receiving_facility=_header_text(parsed, msh, 6),
               control_id=_header_text(parsed, msh, 10), version=_component(msh, 12, 0),
               processing_id=_component(msh, 11, 0) or "P", accept_ack_type=_component(msh, 15, 0),
               application_ack_type=_component(msh, 16, 0),
               message_code=_component(msh, 9, 0), trigger_event=_component(msh, 9, 1))
    message = Message(text, h, parsed)
    if not h.control_id:
        raise HL7Error("MSH-10 message control ID is empty", code="101", segment="MSH", position=10, reject=True)
    if len(h.control_id) > 199 or len(h.sending_application) > 180 or len(h.sending_facility) > 180:
        raise HL7Error("MSH-3, MSH-4 or MSH-10 is longer than HL7 allows", code="102", segment="MSH",
                       position=10, reject=True)
    if not h.message_code or not h.trigger_event:
        raise HL7Error("MSH-9 message type must give the message code and trigger event (e.g. ORU^R01)",
                       code="101", segment="MSH", position=9, reject=True)
    if h.version not in VERSIONS:
        raise HL7Error(f"MSH-12 version '{h.version}' is not supported; send one of {', '.join(VERSIONS)}",
                       code="203", segment="MSH", position=12, reject=True)
    if h.processing_id not in ("P", "T", "D"):
        raise HL7Error(f"MSH-11 processing ID '{h.processing_id}' is not P, T or D", code="202", segment="MSH",
                       position=11, reject=True)
    if (h.message_code, h.trigger_event) not in SUPPORTED:
        code = "200" if h.message_code not in {m for m, _ in SUPPORTED} else "201"
        raise HL7Error(f"Message type {h.message_type} is not accepted here; this interface takes "
                       f"{', '.join(f'{m}^{e}' for m, e in sorted(SUPPORTED))}", code=code, segment="MSH",
                       position=9, reject=True)
    return message


def _component(seg: hl7.Segment, index: int, comp: int) -> str:
    if len(seg) <= index:
        return ""
    value = seg[index]
    if isinstance(value, str):
        return value if comp == 0 else ""
    try:
        rep = value[0]
        if isinstance(rep, str):
            return rep if comp == 0 else ""
        part = rep[comp]
        return str(part[0]) if not isinstance(part, str) else part
    except IndexError:
        return ""


def check_oru(message: Message) -> None:
    """The structure ORU^R01 processing relies on (§7.3.1): PID, then OBR groups with OBX values that
    match their declared type. Everything else (NTE, PRT, REM, Z-segments) is carried along."""
    ids = [s[:3] for s in message.text.split("\r")]
    if "PID" not in ids:
        raise HL7Error("ORU^R01 has no PID segment: the patient cannot be identified", code="100",
                       segment="PID")
    if "OBR" not in ids:
        raise HL7Error("ORU^R01 has no OBR segment: no observation request to report on", code="100",
                       segment="OBR")
    if ids.index("OBR") < ids.index("PID"):
        raise HL7Error("OBR comes before PID; ORU^R01 sends the patient first", code="100", segment="OBR")
    for sequence, seg in enumerate(_obx_segments(message), start=1):
        value_type = _component(seg, 2, 0)
        if value_type == "NM":
            for rep in _repetitions(message, seg, 5):
                if rep and not _NUMBER.match(rep.strip()):
                    raise HL7Error(f"OBX-5 value '{rep[:40]}' is not a number, but OBX-2 says NM", code="102",
                                   segment="OBX", sequence=sequence, position=5)
        elif value_type == "SN":
            for rep in _repetitions(message, seg, 5):
                if rep and parse_sn(rep) is None:
                    raise HL7Error(f"OBX-5 value '{rep[:40]}' is not a structured numeric (SN)", code="102",
                                   segment="OBX", sequence=sequence, position=5)


def _obx_segments(message: Message) -> list[hl7.Segment]:
    try:
        return list(message.parsed.segments("OBX"))
    except KeyError:
        return []


def _repetitions(message: Message, seg: hl7.Segment, index: int) -> list[str]:
    if len(seg) <= index:
        return []
    value = seg[index]
    if isinstance(value, str):
        return [message.parsed.unescape(value)] if value else []
    return [str(rep) for rep in value if str(rep)]


def parse_sn(value: str) -> tuple[str, Decimal | None, str, Decimal | None] | None:
    """A structured numeric (SN, §2.A.74): comparator^num1^separator^num2, e.g. ``>^5`` or ``^1^:^128``."""
    parts = ([*value.split("^"), "", "", "", ""])[:4]
    comparator, n1, sep, n2 = parts
    if comparator not in ("", ">", "<", ">=", "<=", "=", "<>"):
        return None
    try:
        first = Decimal(n1) if n1 else None
        second = Decimal(n2) if n2 else None
    except InvalidOperation:
        return None
    if first is None and second is None:
        return None
    if sep not in ("", "-", "+", "/", ".", ":"):
        return None
    return comparator, first, sep, second
