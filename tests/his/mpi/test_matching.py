"""Name similarity across Latin and Devanagari spellings."""

from __future__ import annotations

import pytest

from his.mpi.matching import initials, similarity, sound_key


@pytest.mark.parametrize(("latin", "devanagari"), [
    ("Ram Singh Thakur", "राम सिंह ठाकुर"), ("Sharma", "शर्मा"), ("Kishori Lal", "किशोरी लाल"),
    ("Chauhan", "चौहान"), ("Kamla Devi", "कमला देवी"), ("Vijay Kumar", "विजय कुमार"), ("Negi", "नेगी"),
])
def test_a_name_matches_its_devanagari_form(latin, devanagari):
    assert similarity(latin, devanagari) >= 90


@pytest.mark.parametrize(("a", "b"), [("Sunita Devi", "Suneeta Devi"), ("Vijay", "Wijay"),
                                      ("Kamla", "Kamala"), ("Thakur", "Thakkur")])
def test_spelling_variants_match(a, b):
    assert similarity(a, b) >= 80


@pytest.mark.parametrize(("a", "b"), [("Ram Singh", "Shyam Lal"), ("Ramesh", "Suresh"), ("Negi", "Sharma"),
                                      ("राम", "श्याम")])
def test_different_names_do_not(a, b):
    assert similarity(a, b) < 75


def test_keys_and_initials():
    assert sound_key("शर्मा") == sound_key("Sharma")
    assert similarity("", "Ram") == 0
    assert set(initials("Ram Singh")) >= {"R", "S", "र", "स"}
    assert set(initials("राम")) == {"र", "R"}
