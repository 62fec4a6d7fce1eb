"""The audit log: who touched which patient's data, when, from where and with what outcome.

Append-only and hash-chained (each row's ``hash`` covers its fields and the previous row's hash),
with the chain head kept in ``audit_head`` so a cut-off tail is noticed. Rows are rendered as FHIR
AuditEvent (https://hl7.org/fhir/R4/auditevent.html) after IHE BALP by ``audit/fhir.py``. Triggers
added by migration 0003 refuse UPDATE, DELETE and TRUNCATE on all three tables (``audit_head`` may
only move forward); if a later migration rebuilds one of these tables, it must recreate them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from himhis.models.base import Base, BigId


class AuditRecord(Base):
    """One audited interaction; ``seq`` is its place in the hash chain (1, 2, 3, … without gaps)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_recorded", "recorded"),
        Index("ix_audit_log_actor_username", "actor_username", "recorded"),
        Index("ix_audit_log_actor_subject", "actor_subject", "recorded"),
        Index("ix_audit_log_resource", "resource_type", "resource_id"),
    )

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    recorded: Mapped[datetime] = mapped_column(DateTime)  # naive UTC, milliseconds
    # who
    actor_subject: Mapped[str | None] = mapped_column(String(255))
    actor_username: Mapped[str | None] = mapped_column(String(255))
    actor_roles: Mapped[str | None] = mapped_column(String(512))  # comma-separated
    actor_facility: Mapped[str | None] = mapped_column(String(64))
    client_id: Mapped[str | None] = mapped_column(String(255))
    # from where
    source_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    # what (http://hl7.org/fhir/restful-interaction, plus login, logout, break-glass)
    interaction: Mapped[str] = mapped_column(String(32))
    resource_type: Mapped[str | None] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(64))
    version_id: Mapped[str | None] = mapped_column(String(64))
    patient_ids: Mapped[str | None] = mapped_column(Text)  # comma-separated; indexed in audit_patient
    query: Mapped[str | None] = mapped_column(String(2048))
    # outcome (http://hl7.org/fhir/R4/valueset-audit-event-outcome.html: 0, 4, 8, 12)
    outcome: Mapped[int] = mapped_column(SmallInteger)
    outcome_detail: Mapped[str | None] = mapped_column(String(1024))
    # why (http://terminology.hl7.org/ValueSet/v3-PurposeOfUse: TREAT, ETREAT, …)
    purpose_of_use: Mapped[str | None] = mapped_column(String(32))
    break_glass_reason: Mapped[str | None] = mapped_column(String(1024))
    # the chain
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditPatient(Base):
    """One row per patient whose data an audited interaction touched: "who saw my record"."""

    __tablename__ = "audit_patient"
    __table_args__ = (Index("ix_audit_patient_patient", "patient_id", "audit_pk"),)

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    audit_pk: Mapped[int] = mapped_column(ForeignKey("audit_log.pk"), index=True)
    patient_id: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain head (one row): the last ``seq`` and ``hash`` appended, so truncation shows."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    updated: Mapped[datetime] = mapped_column(DateTime)
