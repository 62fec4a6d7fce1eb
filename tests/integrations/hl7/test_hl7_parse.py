"""Reading real HL7 v2 feeds and building acknowledgements (no database)."""

from __future__ import annotations

import pytest
from hl7apy.parser import parse_message

from integrations.hl7 import ack
from integrations.hl7.parse import HL7Error, check_msh, check_oru, parse_sn, split_batch
from tests.conftest import require_corpora
from tests.integrations.hl7.conftest import FIXTURES, oru


@pytest.mark.parametrize("name", ["LAB-ORU-1.hl7", "LAB-ORU-2.hl7", "ORU-R01-01.hl7", "ORU-R01-RMGEAD.hl7"])
def test_real_oru_fixtures_are_accepted(name):
    texts = split_batch((FIXTURES / name).read_bytes())
    assert len(texts) == 1
    message = check_msh(texts[0])
    check_oru(message)
    assert message.header.message_type == "ORU^R01"
    assert message.header.control_id


def test_every_oru_in_the_shared_corpus_is_accepted():
    corpora = require_corpora()
    files = sorted((corpora / "hl7v2").glob("*ORU*.hl7"))
    assert len(files) >= 4
    for path in files:
        for text in split_batch(path.read_bytes()):
            check_oru(check_msh(text))


def test_other_message_types_in_the_corpus_are_refused_as_unsupported():
    corpora = require_corpora()
    for path in sorted((corpora / "hl7v2").glob("ADT-A0*.hl7")):
        with pytest.raises(HL7Error) as info:
            check_msh(split_batch(path.read_bytes())[0])
        assert info.value.code in ("200", "203") and info.value.reject, path.name  # type, or a v2.6+ version


def test_prt_and_header_fields_of_a_2_5_1_feed():
    message = check_msh(split_batch((FIXTURES / "ORU-R01-01.hl7").read_bytes())[0])
    h = message.header
    assert h.version == "2.5.1" and h.accept_ack_type == "AL" and h.application_ack_type == "NE"
    assert h.sending_application == "IA PHIMS Stage^2.16.840.1.114222.4.3.3.5.1.2^ISO"
    assert "PRT" in [str(s[0]) for s in message.parsed]


@pytest.mark.parametrize("sep", ["\r", "\n", "\r\n"])
def test_any_segment_terminator(sep):
    texts = split_batch(oru(sep=sep) + sep)
    assert len(texts) == 1
    assert texts[0].count("\r") == oru().count("\r")
    check_oru(check_msh(texts[0]))


def test_batch_wrappers_are_split_into_messages():
    batch = "\r".join(["FHS|^~\\&|LIS|IGMC", "BHS|^~\\&|LIS|IGMC", oru(control="B1"), oru(control="B2"),
                       "BTS|2", "FTS|1"])
    texts = split_batch(batch)
    assert [check_msh(t).header.control_id for t in texts] == ["B1", "B2"]


def test_z_segments_and_bom_pass_through():
    text = "\ufeff" + oru() + "\rZLB|1|analyser-7|rack 3"
    message = check_msh(split_batch(text.encode())[0])
    check_oru(message)
    assert message.text.endswith("ZLB|1|analyser-7|rack 3")


@pytest.mark.parametrize(("text", "code", "where"), [
    ("PID|1||X", "100", "MSH"),
    ("MSH|^~", "101", "MSH"),
    ("MSH|^^\\&|LIS|IGMC|||2026||ORU^R01|1|P|2.5.1", "102", "MSH"),
    ("MSH|^~\\&|LIS|IGMC|||2026||ORU^R01||P|2.5.1", "101", "MSH"),
    ("MSH|^~\\&|LIS|IGMC|||2026||ADT^A01|1|P|2.5.1", "200", "MSH"),
    ("MSH|^~\\&|LIS|IGMC|||2026||ORU^R30|1|P|2.5.1", "201", "MSH"),
    ("MSH|^~\\&|LIS|IGMC|||2026||ORU^R01|1|P|2.7", "203", "MSH"),
    ("MSH|^~\\&|LIS|IGMC|||2026||ORU^R01|1|Q|2.5.1", "202", "MSH"),
    ("MSH|^~\\&|LIS|IGMC|||2026||ORU^R01|1|P|2.5.1\rthis is not a segment", "100", None),
])
def test_msh_problems_are_named(text, code, where):
    with pytest.raises(HL7Error) as info:
        check_msh(text)
    assert info.value.code == code
    assert info.value.segment == where


def test_non_numeric_nm_is_a_data_type_error_at_its_obx():
    bad = [("HB", "Haemoglobin", "NM", "13.4", "g/dL", "", ""), ("PLT", "Platelets", "NM", "clumped", "", "", "")]
    with pytest.raises(HL7Error) as info:
        check_oru(check_msh(oru(results=bad)))
    assert (info.value.code, info.value.segment, info.value.sequence, info.value.position) == ("102", "OBX", 2, 5)


def test_oru_without_pid_or_obr_is_refused():
    no_pid = "\r".join(s for s in oru().split("\r") if not s.startswith("PID"))
    with pytest.raises(HL7Error, match="no PID"):
        check_oru(check_msh(no_pid))
    no_obr = "\r".join(s for s in oru().split("\r") if not s.startswith("OBR"))
    with pytest.raises(HL7Error, match="no OBR"):
        check_oru(check_msh(no_obr))


def test_structured_numeric():
    assert parse_sn(">^5") is not None and parse_sn(">^5")[0] == ">"
    assert parse_sn("^1^:^128")[2] == ":"
    assert parse_sn("abc") is None
    assert parse_sn("^x") is None


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5", "2.5.1"])
def test_acknowledgements_are_valid_for_the_senders_version(version):
    message = check_msh(oru(version=version, control="C-77"))
    positive = ack.positive(message.header)
    parsed = parse_message(positive, find_groups=False)
    assert parsed.msh.msh_12.to_er7() == version
    assert parsed.msa.msa_1.to_er7() == "AA" and parsed.msa.msa_2.to_er7() == "C-77"
    assert parsed.msh.msh_5.to_er7() == "LIS" and parsed.msh.msh_6.to_er7() == "IGMC"
    negative = ack.negative(message.header, HL7Error("value | bad", code="102", segment="OBX", sequence=2,
                                                     position=5))
    parsed = parse_message(negative, find_groups=False)
    assert parsed.msa.msa_1.to_er7() == "AE"
    err = parsed.err.to_er7()
    assert "OBX^2^5" in err and "102" in err and "HL70357" in err
    assert "value \\F\\ bad" in negative  # the reason, escaped


def test_enhanced_mode_follows_msh_15():
    always = check_msh(oru(ack_types="|||AL|NE")).header
    assert ack.positive(always).split("\r")[1].startswith("MSA|CA|")
    assert ack.negative(always, HL7Error("x", reject=True)).split("\r")[1].startswith("MSA|CR|")
    errors_only = check_msh(oru(ack_types="|||ER|AL")).header
    assert ack.positive(errors_only) is None
    assert ack.negative(errors_only, HL7Error("x")).split("\r")[1].startswith("MSA|CE|")
    never = check_msh(oru(ack_types="|||NE|AL")).header
    assert ack.positive(never) is None and ack.negative(never, HL7Error("x")) is None


def test_a_nak_without_a_header_still_parses():
    text = ack.negative(None, HL7Error("no MSH", code="100", segment="MSH", reject=True))
    parsed = parse_message(text, find_groups=False)
    assert parsed.msa.msa_1.to_er7() == "AR"
