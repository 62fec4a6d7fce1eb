"""The local copy of the HimParivar family register, loaded from the register's extracts.

HimHIS keeps the members it may have to link (to patients, programme beneficiaries and HIMCARE cover)
in one table, keyed by the register's member ID; an extract refreshes it. Each import is recorded
with where it stopped, so a stopped import resumes at the next line, and every refused line is kept
with its reason (never the line itself: a refused line may hold what must not be stored).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, DateTime, ForeignKey, Index, Integer, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from himhis.models.base import Base, BigId


class RegisterMember(Base):
    """One member of a HimParivar family, as the latest extract gave it."""

    __tablename__ = "himparivar_member"
    __table_args__ = (
        Index("ix_himparivar_member_family", "family_id"),
        Index("ix_himparivar_member_block", "district", "birth_year", "gender"),
        Index("ix_himparivar_member_abha", "abha"),
    )

    member_id: Mapped[str] = mapped_column(String(20), primary_key=True)  # HP-SML-12345678
    family_id: Mapped[str] = mapped_column(String(20))  # HPF-SML-1234567
    relation: Mapped[str] = mapped_column(String(16))  # to the head of the family: self, spouse, son, ...
    name: Mapped[str] = mapped_column(String(200))
    name_devanagari: Mapped[str | None] = mapped_column(String(200))
    gender: Mapped[str] = mapped_column(String(8))  # male, female, other
    birth_date: Mapped[date | None] = mapped_column(Date)
    birth_year: Mapped[int | None] = mapped_column(SmallInteger)  # from the date, or estimated from a stated age
    birth_estimated: Mapped[bool] = mapped_column(default=False)
    relative_name: Mapped[str | None] = mapped_column(String(200))  # father's or husband's name
    village: Mapped[str | None] = mapped_column(String(120))
    block: Mapped[str | None] = mapped_column(String(120))
    tehsil: Mapped[str | None] = mapped_column(String(120))
    district: Mapped[str] = mapped_column(String(40))
    pin: Mapped[str | None] = mapped_column(String(6))
    ration_card: Mapped[str | None] = mapped_column(String(20))
    abha: Mapped[str | None] = mapped_column(String(17))  # XX-XXXX-XXXX-XXXX
    mobile: Mapped[str | None] = mapped_column(String(10))
    himcare_card: Mapped[str | None] = mapped_column(String(16))  # the family's HIMCARE card, if enrolled
    status: Mapped[str] = mapped_column(String(12), default="active")  # active, deceased, migrated
    updated: Mapped[date | None] = mapped_column(Date)  # when the register last changed this member
    import_id: Mapped[int] = mapped_column(ForeignKey("himparivar_import.id"))
    source_line: Mapped[int] = mapped_column(Integer)  # its line in that import's extract


class RegisterImport(Base):
    """One run of importing one extract file; ``lines_done``/``bytes_done`` say where a resumed run goes on."""

    __tablename__ = "himparivar_import"
    __table_args__ = (UniqueConstraint("sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    file_name: Mapped[str] = mapped_column(String(400))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigId)
    format: Mapped[str] = mapped_column(String(8))  # csv or jsonl
    header: Mapped[str | None] = mapped_column(Text)  # the CSV header, to parse the lines after a resume
    bytes_done: Mapped[int] = mapped_column(BigId, default=0)  # bytes of the file consumed
    lines_done: Mapped[int] = mapped_column(Integer, default=0)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    refused: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(12), default="running")  # running, done
    started: Mapped[datetime] = mapped_column(DateTime)
    finished: Mapped[datetime | None] = mapped_column(DateTime)
    by: Mapped[str | None] = mapped_column(String(200))


class RegisterRefusal(Base):
    """A line of an extract that was not loaded, and why."""

    __tablename__ = "himparivar_refusal"
    __table_args__ = (Index("ix_himparivar_refusal_import", "import_id", "line"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("himparivar_import.id"))
    line: Mapped[int] = mapped_column(Integer)
    member_id: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text)


class RegisterLink(Base):
    """A person HimHIS holds (a Patient) linked, or proposed for linking, to a register member.

    ``linked`` was decided by the rules (a trusted identifier, or a match probability above the accept
    threshold); ``proposed`` waits for staff, who accept or reject it. A rejected pair stays, so it is
    never proposed again.
    """

    __tablename__ = "himparivar_link"
    __table_args__ = (UniqueConstraint("subject", "member_id"), Index("ix_himparivar_link_state", "state", "created"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(100))  # Patient/<id>
    member_id: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(10))  # linked, proposed, accepted, rejected
    probability: Mapped[float] = mapped_column()
    match_weight: Mapped[float | None] = mapped_column()
    reason: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(DateTime)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)
