"""The FHIR record store's tables, after HAPI FHIR's JPA schema.

A current row per resource (``resource``), every version kept (``resource_version``), and the
search values of the current version extracted at write time into one table per search-parameter
type (https://hl7.org/fhir/R4/search.html#ptypes). Index rows carry the resource type so each
query touches one narrow index.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from himhis.models.base import Base, BigId


class Resource(Base):
    """The current version of each resource; a deleted resource keeps its row with ``deleted``."""

    __tablename__ = "resource"
    __table_args__ = (
        UniqueConstraint("res_type", "res_id"),
        Index("ix_resource_type_updated", "res_type", "last_updated"),
    )

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    res_type: Mapped[str] = mapped_column(String(64))
    res_id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime] = mapped_column(DateTime)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    content: Mapped[str | None] = mapped_column(Text)


class ResourceVersion(Base):
    """Every version of every resource, including deletions (``content`` is null for those)."""

    __tablename__ = "resource_version"
    __table_args__ = (
        UniqueConstraint("resource_pk", "version_id"),
        Index("ix_resource_version_type_updated", "res_type", "last_updated"),
        Index("ix_resource_version_updated", "last_updated"),
    )

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = mapped_column(ForeignKey("resource.pk"))
    res_type: Mapped[str] = mapped_column(String(64))
    res_id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime] = mapped_column(DateTime)
    method: Mapped[str] = mapped_column(String(8))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    content: Mapped[str | None] = mapped_column(Text)


class _IndexRow(Base):
    """Columns every search index table has: the owning resource, its type, the parameter code."""

    __abstract__ = True

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = mapped_column(ForeignKey("resource.pk", ondelete="CASCADE"), index=True)
    res_type: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(100))
    # A composite parameter's component (param is the composite's code): the element it came from times
    # 8 plus the component's position, so both halves of a match come from one element.
    grp: Mapped[int | None] = mapped_column(Integer)


class StringIndex(_IndexRow):
    __tablename__ = "idx_string"
    __table_args__ = (Index("ix_idx_string_lookup", "res_type", "param", "normalized"),)
    normalized: Mapped[str] = mapped_column(String(512))
    exact: Mapped[str] = mapped_column(Text)


class TokenIndex(_IndexRow):
    __tablename__ = "idx_token"
    __table_args__ = (
        Index("ix_idx_token_lookup", "res_type", "param", "system", "code"),
        Index("ix_idx_token_code", "res_type", "param", "code"),
    )
    system: Mapped[str | None] = mapped_column(String(512))
    code: Mapped[str | None] = mapped_column(String(512))
    text: Mapped[str | None] = mapped_column(Text)


class DateIndex(_IndexRow):
    __tablename__ = "idx_date"
    __table_args__ = (
        Index("ix_idx_date_low", "res_type", "param", "low", "high"),
        Index("ix_idx_date_high", "res_type", "param", "high"),
    )
    low: Mapped[datetime] = mapped_column(DateTime)
    high: Mapped[datetime] = mapped_column(DateTime)


class NumberIndex(_IndexRow):
    __tablename__ = "idx_number"
    __table_args__ = (Index("ix_idx_number_lookup", "res_type", "param", "value"),)
    value: Mapped[float] = mapped_column(Float)


class QuantityIndex(_IndexRow):
    __tablename__ = "idx_quantity"
    __table_args__ = (
        Index("ix_idx_quantity_lookup", "res_type", "param", "code", "value"),
        Index("ix_idx_quantity_canonical", "res_type", "param", "canonical_code", "canonical_value"),
    )
    value: Mapped[float] = mapped_column(Float)
    system: Mapped[str | None] = mapped_column(String(512))
    code: Mapped[str | None] = mapped_column(String(128))
    unit: Mapped[str | None] = mapped_column(String(128))
    canonical_value: Mapped[float | None] = mapped_column(Float)
    canonical_code: Mapped[str | None] = mapped_column(String(128))


class UriIndex(_IndexRow):
    __tablename__ = "idx_uri"
    __table_args__ = (Index("ix_idx_uri_lookup", "res_type", "param", "uri"),)
    uri: Mapped[str] = mapped_column(String(1024))


class ReferenceIndex(_IndexRow):
    __tablename__ = "idx_reference"
    __table_args__ = (
        Index("ix_idx_reference_target", "target_type", "target_id", "param"),
        Index("ix_idx_reference_source", "res_type", "param", "target_id"),
    )
    target_type: Mapped[str | None] = mapped_column(String(64))
    target_id: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(1024))


class ImportProgress(Base):
    """How far ``himhis import`` got through a file, so an interrupted import resumes."""

    __tablename__ = "import_progress"

    source: Mapped[str] = mapped_column(String(1024), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(128))
    done: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[bool] = mapped_column(Boolean, default=False)
    updated: Mapped[datetime] = mapped_column(DateTime)


class SearchResult(Base):
    """A search's ordered matches, kept so its pages stay consistent while others write.

    https://hl7.org/fhir/R4/http.html#paging — the next and previous links carry the search id.
    """

    __tablename__ = "search_result"
    __table_args__ = (Index("ix_search_result_page", "search_id", "position"),)

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    search_id: Mapped[str] = mapped_column(String(36))
    position: Mapped[int] = mapped_column(Integer)
    resource_pk: Mapped[int] = mapped_column(BigId)
    created: Mapped[datetime] = mapped_column(DateTime, index=True)
