"""Registration checks: Verhoeff, Aadhaar detection, ABHA, mobile, HimParivar and HIMCARE formats."""

from __future__ import annotations

from datetime import date

import pytest

from his.registration import validators as v
from his.registration.schemas import FIELDS, RegistrationIn
from his.registration.service import FieldErrors, check
from tests.his.conftest import registration

TODAY = date(2026, 11, 25)


def aadhaar_like(first11: str) -> str:
    return first11 + v.verhoeff_digit(first11)


@pytest.mark.parametrize(("digits", "check_digit"), [("236", "3"), ("12345", "1"), ("123456789012", "0")])
def test_verhoeff_published_examples(digits, check_digit):
    assert v.verhoeff_digit(digits) == check_digit
    assert v.verhoeff_valid(digits + check_digit)
    assert not v.verhoeff_valid(digits + str((int(check_digit) + 1) % 10))


def test_verhoeff_catches_every_single_digit_error_and_adjacent_transposition():
    number = aadhaar_like("29876543210")
    assert v.verhoeff_valid(number)
    for i in range(len(number)):
        for d in "0123456789":
            if d != number[i]:
                assert not v.verhoeff_valid(number[:i] + d + number[i + 1:])
        if i + 1 < len(number) and number[i] != number[i + 1]:
            swapped = number[:i] + number[i + 1] + number[i] + number[i + 2:]
            assert not v.verhoeff_valid(swapped)


def test_aadhaar_recognised_however_written():
    n = aadhaar_like("23456789012")
    for written in (n, f"{n[:4]} {n[4:8]} {n[8:]}", f"{n[:4]}-{n[4:8]}-{n[8:]}", f"UID {n} given"):
        assert v.contains_aadhaar(written), written


def test_not_aadhaar():
    n = aadhaar_like("23456789012")
    wrong = n[:-1] + str((int(n[-1]) + 1) % 10)
    assert not v.contains_aadhaar(wrong)  # check digit wrong
    assert not v.contains_aadhaar(aadhaar_like("03456789012"))  # Aadhaar never starts with 0 or 1
    assert not v.contains_aadhaar(aadhaar_like("13456789012"))
    assert not v.contains_aadhaar("91-" + n)  # 14 digits: an ABHA number
    assert not v.contains_aadhaar("+" + n)  # an international telephone number
    assert not v.contains_aadhaar("VPO Mashobra, 171007")


def test_abha_number_stored_hyphenated():
    assert v.abha_number("91123456789012") == "91-1234-5678-9012"
    assert v.abha_number("91-1234-5678-9012") == "91-1234-5678-9012"
    assert v.abha_number("91 1234 5678 9012") == "91-1234-5678-9012"
    for bad in ("9112345678901", "911234567890123", "91-1234-5678-901X", "abc"):
        with pytest.raises(ValueError, match="14 digits"):
            v.abha_number(bad)


def test_mobile_numbers():
    for typed in ("9816012345", "+91 98160 12345", "+919816012345", "919816012345", "09816012345",
                  "98160-12345"):
        assert v.mobile_number(typed) == "+91 9816012345"
    for bad in ("5816012345", "981601234", "98160123456", "+44 7911 123456", "98160 1234x"):
        with pytest.raises(ValueError):
            v.mobile_number(bad)


def test_himparivar_and_himcare_formats():
    assert v.himparivar_id("hp-sml-12345678") == "HP-SML-12345678"
    with pytest.raises(ValueError, match="HimParivar"):
        v.himparivar_id("HP-XYZ-12345678")  # not a district of Himachal Pradesh
    with pytest.raises(ValueError, match="HimParivar"):
        v.himparivar_id("HP-SML-1234567")
    assert v.himcare_card("HC-2023-1234567", today=TODAY) == "HC-2023-1234567"
    with pytest.raises(ValueError, match="from 2019"):
        v.himcare_card("HC-2018-1234567", today=TODAY)
    with pytest.raises(ValueError, match="HIMCARE"):
        v.himcare_card("HC-2027-1234567", today=TODAY)


def test_check_gives_stored_forms_and_estimates_birth_year_from_age():
    reg = check(RegistrationIn(**registration(birth_date="", age="45", mobile="098160-12345",
                                              abha="91123456789012")), today=TODAY)
    assert (reg.birth_date, reg.birth_estimated) == ("1981", True)
    assert reg.mobile == "+91 9816012345" and reg.abha == "91-1234-5678-9012"


def test_check_reports_every_mistake_at_once():
    with pytest.raises(FieldErrors) as err:
        check(RegistrationIn(given="K4mla", name_devanagari="Kamla", gender="x", birth_date="2030-01-01",
                             mobile="12345", pin="17100"), today=TODAY)
    assert set(err.value.errors) == {"given", "name_devanagari", "gender", "birth_date", "mobile", "pin",
                                     "village", "district"}
    assert "future" in err.value.errors["birth_date"]
    with pytest.raises(FieldErrors) as err:
        check(RegistrationIn(**registration(birth_date="", age="")), today=TODAY)
    assert "age" in err.value.errors["birth_date"]


@pytest.mark.parametrize("field", FIELDS)
def test_aadhaar_in_any_field_is_refused_and_never_echoed(field):
    n = aadhaar_like("45678901234")
    typed = f"{n[:4]} {n[4:8]} {n[8:]}"
    with pytest.raises(FieldErrors) as err:
        check(RegistrationIn(**registration(**{field: typed})), today=TODAY)
    assert err.value.errors[field] == v.AADHAAR_MESSAGE
    assert n[:4] not in err.value.message and n not in err.value.message
