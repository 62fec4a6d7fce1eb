"""All ORM models of HimHIS, in one package, so Alembic sees one metadata."""

from himhis.models.access import BreakGlass
from himhis.models.audit import AuditHead, AuditPatient, AuditRecord
from himhis.models.base import Base
from himhis.models.himparivar import RegisterImport, RegisterLink, RegisterMember, RegisterRefusal
from himhis.models.interfaces import Hl7Message
from himhis.models.registration import UhidSequence
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
    "AuditHead",
    "AuditPatient",
    "AuditRecord",
    "Base",
    "BreakGlass",
    "DateIndex",
    "Hl7Message",
    "ImportProgress",
    "NumberIndex",
    "QuantityIndex",
    "ReferenceIndex",
    "RegisterImport",
    "RegisterLink",
    "RegisterMember",
    "RegisterRefusal",
    "Resource",
    "ResourceVersion",
    "SearchResult",
    "StringIndex",
    "TokenIndex",
    "UhidSequence",
    "UriIndex",
]
