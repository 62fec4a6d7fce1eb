"""What the registration form and the JSON API accept: text as typed, checked by the service."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

FIELDS = ("given", "family", "name_devanagari", "birth_date", "age", "gender", "relative_name", "village",
          "tehsil", "district", "pin", "mobile", "abha", "himparivar", "himcare")


class RegistrationIn(BaseModel):
    """The registration form, every field as text (a ward form sends text; the service parses it)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    given: str = ""
    family: str = ""
    name_devanagari: str = ""
    birth_date: str = ""  # YYYY-MM-DD
    age: str = ""  # stated age in years, when the date of birth is not known
    gender: str = ""
    relative_name: str = ""  # father's or husband's name
    village: str = ""
    tehsil: str = ""
    district: str = ""
    pin: str = ""
    mobile: str = ""
    abha: str = ""
    himparivar: str = ""
    himcare: str = ""
    register_anyway: bool = False  # the person at the desk has seen the likely duplicates

    @field_validator(*FIELDS, mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError("must be text")
        return str(value)

    @field_validator("register_anyway", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> Any:
        return value in (True, "1", "true", "on", "yes") if isinstance(value, str | bool) else value

    def values(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in FIELDS}


class MergeIn(BaseModel):
    """Merge the patient in the URL (the source) into ``target``, which stays the active record."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    target: str
