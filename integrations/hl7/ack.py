"""Acknowledgements (HL7 v2.5.1 §2.9 and §2.14.1 ACK; MSA §2.15.8; ERR §2.15.5).

hl7apy knows each version's ACK structure and ERR layout (ERR-1 ELD up to 2.4; ERR-2 location, ERR-3
code, ERR-4 severity, ERR-8 user message from 2.5), so it builds every acknowledgement's shape. A
positive acknowledgement is built by hl7apy once per version and code and then filled in by
substitution, because building a message with hl7apy takes about 3 ms, more than the whole
acknowledgement path may spend at a thousand messages a second.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime
from functools import lru_cache

from hl7apy.core import Message as Hl7apyMessage

from integrations.hl7.parse import ERROR_TEXT, VERSIONS, Header, HL7Error, escape

# Original mode answers AA/AE/AR; enhanced mode's accept acknowledgement answers CA/CE/CR (§2.9.2, §2.9.3).
ACCEPT, ERROR, REJECT = "A", "E", "R"
_TOKENS = {f: f"HIMHISTOKEN{f}X" for f in ("SA", "SF", "RA", "RF", "TS", "ID", "TR", "PR", "CID")}
_ids = itertools.count(1)
_PREFIX = f"{os.getpid():x}"


def ack_code(header: Header | None, outcome: str) -> str | None:
    """The MSA-1 code for ``outcome`` (A, E or R), or None when MSH-15 asks for no acknowledgement."""
    if header is None or not header.enhanced:
        return "A" + outcome
    wanted = header.accept_ack_type or "AL"
    if wanted == "NE" or (wanted == "ER" and outcome == ACCEPT) or (wanted == "SU" and outcome != ACCEPT):
        return None
    return "C" + outcome


def _now() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")


def _control_id() -> str:
    return f"HIMHIS{_PREFIX}-{next(_ids)}"


def _version(header: Header | None) -> str:
    return header.version if header is not None and header.version in VERSIONS else "2.5.1"


@lru_cache(maxsize=64)
def _template(version: str, code: str) -> str:
    """An ACK of ``version`` with ``code`` built by hl7apy, with tokens where per-message values go."""
    return _base(version, code).to_er7()


def _base(version: str, code: str) -> Hl7apyMessage:
    """MSH and MSA of an ACK (HL7 v2.5.1 2.14.1), with tokens for the values of the message answered."""
    m = Hl7apyMessage("ACK", version=version)
    m.msh.msh_3 = _TOKENS["SA"]
    m.msh.msh_4 = _TOKENS["SF"]
    m.msh.msh_5 = _TOKENS["RA"]
    m.msh.msh_6 = _TOKENS["RF"]
    m.msh.msh_7 = _TOKENS["TS"]
    m.msh.msh_9 = f"ACK^{_TOKENS['TR']}^ACK"
    m.msh.msh_10 = _TOKENS["ID"]
    m.msh.msh_11 = _TOKENS["PR"]
    m.msa.msa_1 = code
    m.msa.msa_2 = _TOKENS["CID"]
    return m


def _fill(text: str, header: Header | None) -> str:
    h = header or Header()
    values = {"SA": h.receiving_application or "HIMHIS", "SF": h.receiving_facility,
              "RA": h.sending_application, "RF": h.sending_facility, "TS": _now(), "ID": _control_id(),
              "TR": h.trigger_event, "PR": h.processing_id or "P", "CID": h.control_id}
    for name, token in _TOKENS.items():
        text = text.replace(token, values[name])
    return text


def positive(header: Header) -> str | None:
    """AA (or CA) for a message that is stored, or None when MSH-15 asks for no acknowledgement."""
    code = ack_code(header, ACCEPT)
    if code is None:
        return None
    return _fill(_template(_version(header), code), header)


def negative(header: Header | None, error: HL7Error) -> str | None:
    """AE/AR (or CE/CR) with an ERR segment saying what is wrong and where."""
    code = ack_code(header, REJECT if error.reject else ERROR)
    if code is None:
        return None
    version = _version(header)
    m = _base(version, code)
    reason = escape(error.reason)[:250]
    text_code = f"{error.code}^{escape(ERROR_TEXT.get(error.code, 'Error'))}^HL70357"
    err = m.add_segment("ERR")
    if version in ("2.3", "2.3.1", "2.4"):
        m.msa.msa_3 = reason[:80]  # MSA-3 text message (deprecated from 2.4, still read by older senders)
        location = [error.segment or "", str(error.sequence) if error.segment else "",
                    str(error.position) if error.position else ""]
        err.err_1 = "^".join([*location, text_code.replace("^", "&")])
    else:
        if error.segment:
            err.err_2 = "^".join([error.segment, str(error.sequence)] +
                                 ([str(error.position)] if error.position else []))
        err.err_3 = text_code
        err.err_4 = "E"
        err.err_8 = reason
    return _fill(m.to_er7(), header)
