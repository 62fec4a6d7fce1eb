"""Interfaces: the inbox of HL7 v2 messages received from laboratory systems, and its hold queue."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from himhis.models.base import Base, BigId


class Hl7Message(Base):
    """One received HL7 v2 message, stored and committed before it is acknowledged.

    A sender's message is identified by its sending application and facility (MSH-3, MSH-4) and its
    control ID (MSH-10); the unique constraint keeps a resent message from being stored twice. The
    state moves received → processed, or → held (with the reason staff must resolve before a replay),
    or → failed (after the retries of a processing error ran out).
    """

    __tablename__ = "hl7_inbox"
    __table_args__ = (
        UniqueConstraint("sending_application", "sending_facility", "control_id"),
        Index("ix_hl7_inbox_state_received", "state", "received"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sending_application: Mapped[str] = mapped_column(String(180))
    sending_facility: Mapped[str] = mapped_column(String(180))
    control_id: Mapped[str] = mapped_column(String(199))
    message_type: Mapped[str] = mapped_column(String(20))  # MSH-9, e.g. ORU^R01
    version: Mapped[str] = mapped_column(String(10))  # MSH-12
    received: Mapped[datetime] = mapped_column(DateTime)
    peer: Mapped[str | None] = mapped_column(String(64))
    raw: Mapped[str] = mapped_column(Text)  # the message, segments separated by CR
    state: Mapped[str] = mapped_column(String(16), default="received")
    hold_reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    processed: Mapped[datetime | None] = mapped_column(DateTime)
    resource_ids: Mapped[str | None] = mapped_column(Text)  # "DiagnosticReport/…,Observation/…" written
