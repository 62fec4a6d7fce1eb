"""All ORM models of HimHIS, in one package, so Alembic sees one metadata."""

from himhis.models.base import Base
from himhis.models.resource import (
    DateIndex,
    ImportProgress,
    NumberIndex,
    QuantityIndex,
    ReferenceIndex,
    Resource,
    ResourceVersion,
    SearchResult,
    StringIndex,
    TokenIndex,
    UriIndex,
)

__all__ = [
    "Base",
    "DateIndex",
    "ImportProgress",
    "NumberIndex",
    "QuantityIndex",
    "ReferenceIndex",
    "Resource",
    "ResourceVersion",
    "SearchResult",
    "StringIndex",
    "TokenIndex",
    "UriIndex",
]
