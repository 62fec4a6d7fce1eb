"""Is this HimParivar member ID in the register, and who is it? Asked at registration.

The register's API answers when it is configured (``HIMHIS_HIMPARIVAR_URL``); otherwise the local copy
loaded from extracts does, once an extract has been imported. With neither, None: the ID's format is
all that can be checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, select

from himhis.db import Database
from himhis.models import RegisterMember
from integrations.himparivar.client import HimParivarClient, client_from

M = RegisterMember.__table__


@dataclass(frozen=True, slots=True)
class RegisterLookup:
    db: Database
    client: HimParivarClient | None = None

    def available(self) -> bool:
        """Whether the register can be asked (its API, or a local copy holding members)."""
        if self.client is not None:
            return True
        return self.db.run(lambda s: s.execute(select(exists().where(M.c.member_id.is_not(None)))).scalar(),
                           write=False)

    def member(self, member_id: str) -> dict[str, Any] | None:
        """The member, or None if the register has none by that ID (RegisterUnavailable if it cannot say)."""
        if self.client is not None:
            return self.client.member(member_id)
        row = self.db.run(lambda s: s.execute(select(M).where(M.c.member_id == member_id)).mappings().first(),
                          write=False)
        return dict(row) if row else None


def lookup_from(settings, db: Database) -> RegisterLookup:
    return RegisterLookup(db, client_from(settings))
