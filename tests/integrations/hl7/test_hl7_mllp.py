"""The MLLP listener over real sockets: acknowledgement after storage, duplicates, and a corpus of bad
input answered with the right NAK while good messages sent between them keep being served."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.integrations.hl7.conftest import (
    MllpClient,
    err,
    inbox_rows,
    lab_world,
    msa,
    oru,
    wait_for,
)


def good(listener, control: str) -> None:
    """A good message on a fresh connection is still acknowledged."""
    c = listener.client()
    assert msa(c.exchange(oru(control=control)))[1:3] == ["AA", control]


def test_an_acknowledged_message_is_stored_and_processed(listener, db):
    lab_world(db)
    c = listener.client()
    reply = c.exchange(oru(control="ACK-1"))
    assert msa(reply)[1:3] == ["AA", "ACK-1"]
    rows = inbox_rows(db)  # read right after the ACK: it was committed before the ACK was sent
    assert [(r.control_id, r.sending_application, r.sending_facility) for r in rows] == [("ACK-1", "LIS", "IGMC")]
    assert rows[0].peer.startswith("127.0.0.1:") and rows[0].raw.startswith("MSH|")
    wait_for(lambda: inbox_rows(db)[0].state == "processed", what="in-process processing")


def test_a_resent_control_id_is_acknowledged_again_and_processed_once(listener, db):
    lab_world(db)
    first, second = listener.client(), listener.client()
    assert msa(first.exchange(oru(control="DUP-1")))[1] == "AA"
    assert msa(second.exchange(oru(control="DUP-1")))[1:3] == ["AA", "DUP-1"]
    assert msa(first.exchange(oru(control="DUP-1", facility="RPGMC")))[1] == "AA"  # another sender's id
    rows = inbox_rows(db)
    assert sorted((r.sending_facility, r.control_id) for r in rows) == [("IGMC", "DUP-1"), ("RPGMC", "DUP-1")]
    wait_for(lambda: all(r.state != "received" for r in inbox_rows(db)), what="processing")
    from tests.integrations.hl7.test_hl7_service import count

    assert count(db, "DiagnosticReport") == 1


def test_the_same_message_on_many_connections_at_once_is_stored_once(listener, db):
    replies: list[str] = []

    def send() -> None:
        c = MllpClient(listener.port)
        try:
            replies.append(c.exchange(oru(control="RACE-1")))
        finally:
            c.close()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [msa(r)[1] for r in replies] == ["AA"] * 8
    assert [r.control_id for r in inbox_rows(db)] == ["RACE-1"]


def test_bad_messages_get_the_right_nak_and_the_listener_keeps_serving(listener, db):
    c = listener.client()
    cases = [
        ("no MSH", b"\x0bPID|1||IGMC-2026-000101\rOBR|1|ORD-1\x1c\r", "AR", "100", "must begin with an MSH"),
        ("wrong encoding characters", ("\x0b" + oru().replace("MSH|^~\\&|", "MSH|^^\\&|", 1) + "\x1c\r").encode(),
         "AR", "102", "encoding characters"),
        ("truncated MSH", b"\x0bMSH|^~\\&|LIS|IGMC\x1c\r", "AR", "101", "MSH-10"),
        ("unknown message type", ("\x0b" + oru().replace("ORU^R01^ORU_R01", "ADT^A01^ADT_A01") + "\x1c\r").encode(),
         "AR", "200", "ADT^A01 is not accepted"),
        ("unsupported version", ("\x0b" + oru(version="2.8") + "\x1c\r").encode(), "AR", "203", "2.8"),
        ("non-numeric NM", ("\x0b" + oru(results=[("HB", "Haemoglobin", "NM", "haemolysed", "g/dL", "", "")])
                            + "\x1c\r").encode(), "AE", "102", "'haemolysed' is not a number"),
        ("no start block", (oru(control="NOVT") + "\x1c\r").encode(), "AR", "100", "outside a frame"),
        ("empty frame", b"\x0b\x1c\r", "AR", "100", "no message"),
    ]
    for n, (name, data, code, error_code, words) in enumerate(cases):
        c.send_raw(data)
        reply = c.reply()
        assert msa(reply)[1] == code, (name, reply)
        assert error_code in err(reply) and words in reply.replace("\\S\\", "^").replace("\\E\\", "\\"), (name, reply)
        assert msa(c.exchange(oru(control=f"GOOD-{n}")))[1] == "AA", f"same connection after {name}"
        good(listener, f"FRESH-{n}")
    stored = sorted(r.control_id for r in inbox_rows(db))
    assert stored == sorted([f"GOOD-{n}" for n in range(len(cases))] + [f"FRESH-{n}" for n in range(len(cases))])


def test_the_nak_of_an_unframed_message_names_its_control_id(listener):
    c = listener.client()
    c.send_raw((oru(control="NOVT-2") + "\x1c\r").encode())
    assert msa(c.reply())[1:3] == ["AR", "NOVT-2"]


def test_a_message_over_the_size_limit_is_refused(listener, db):
    c = listener.client()
    big = oru(control="BIG", results=[("HB", "Haemoglobin", "TX", "x" * (10 * 1024 * 1024), "", "", "")])
    c.send_raw(b"\x0b" + big.encode() + b"\x1c\r")
    reply = c.reply()
    assert msa(reply)[1] == "AR" and "larger than 1048576 bytes" in reply
    assert msa(c.exchange(oru(control="AFTER-BIG")))[1] == "AA"
    assert [r.control_id for r in inbox_rows(db)] == ["AFTER-BIG"]


def test_a_frame_left_unfinished_is_answered_and_closed(listener, db):
    c = listener.client()
    c.send_raw(b"\x0b" + oru(control="HALF").encode()[:200])  # never finished: the timeout answers it
    reply = c.reply()
    assert msa(reply)[1] == "AR" and "not completed" in reply
    with pytest.raises(ConnectionError):
        c.reply()
    assert inbox_rows(db) == []
    good(listener, "AFTER-HALF")


def test_empty_and_dropped_connections_do_not_disturb_the_listener(listener, db):
    for _ in range(5):
        socket.create_connection(("127.0.0.1", listener.port)).close()
    half = socket.create_connection(("127.0.0.1", listener.port))
    half.sendall(b"\x0b" + oru(control="DROPPED").encode()[:100])
    half.close()  # a message cut off by the sender is never acknowledged, so never stored
    good(listener, "AFTER-EMPTY")
    assert [r.control_id for r in inbox_rows(db)] == ["AFTER-EMPTY"]


def test_a_batch_is_acknowledged_message_by_message(listener, db):
    c = listener.client()
    batch = "\n".join(["FHS|^~\\&|LIS|IGMC", "BHS|^~\\&|LIS|IGMC", oru(control="B1", sep="\n"),
                       oru(control="B2", sep="\n", version="2.3"), "BTS|2", "FTS|1"])
    c.send_raw(b"\x0b" + batch.encode() + b"\x1c\r")
    assert [msa(c.reply())[1:3] for _ in range(2)] == [["AA", "B1"], ["AA", "B2"]]
    assert [r.control_id for r in inbox_rows(db)] == ["B1", "B2"]


def test_enhanced_mode_commit_acknowledgement(listener, db):
    c = listener.client()
    assert msa(c.exchange(oru(control="E1", ack_types="|||AL|NE")))[1:3] == ["CA", "E1"]
    c.send_raw(("\x0b" + oru(control="E2", ack_types="|||ER|NE") + "\x1c\r").encode())  # no ACK when all is well
    assert msa(c.exchange(oru(control="E3")))[1:3] == ["AA", "E3"]  # the next reply is E3's
    assert sorted(r.control_id for r in inbox_rows(db)) == ["E1", "E2", "E3"]
