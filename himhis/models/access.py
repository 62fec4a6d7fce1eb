"""Break-glass grants: time-limited emergency access beyond a user's facility, with a stated reason."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from himhis.models.base import Base, BigId


class BreakGlass(Base):
    """One emergency-access grant; never updated or deleted, it simply expires."""

    __tablename__ = "break_glass"
    __table_args__ = (Index("ix_break_glass_subject_expires", "subject", "expires"),)

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(255))
    username: Mapped[str | None] = mapped_column(String(255))
    facility: Mapped[str | None] = mapped_column(String(32))
    patient_id: Mapped[str | None] = mapped_column(String(64))  # None: every patient
    reason: Mapped[str] = mapped_column(Text)
    started: Mapped[datetime] = mapped_column(DateTime)
    expires: Mapped[datetime] = mapped_column(DateTime, index=True)
