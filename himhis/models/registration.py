"""Registration: the per-facility, per-year UHID counters."""

from __future__ import annotations

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from himhis.models.base import Base


class UhidSequence(Base):
    """The last UHID number issued by a facility in a year (``IGMC-2026-000123`` is number 123).

    A row is only ever incremented, under its row lock, in the transaction that stores the Patient;
    a number is therefore issued to at most one patient and never issued again.
    """

    __tablename__ = "uhid_sequence"

    facility: Mapped[str] = mapped_column(String(32), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last: Mapped[int] = mapped_column(Integer)
