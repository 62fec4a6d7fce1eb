"""Linking labelled programme records to a synthetic register: precision and recall above a floor,
member IDs trusted only when the person agrees, and nothing linked that should not be."""

from __future__ import annotations

from datetime import date

import pytest

from integrations.himparivar.linkage import LINKED, REVIEW, UNLINKED, link
from integrations.himparivar.records import member_row
from integrations.himparivar.synthetic import Register, programme_records

TODAY = date(2026, 11, 24)


@pytest.fixture(scope="module")
def labelled():
    raw = list(Register(3000, seed=31, today=TODAY))
    register = [member_row(r, today=TODAY) for r in raw]
    records = programme_records(raw, 600, seed=32, today=TODAY)
    return register, records, link(register, records, today=TODAY)


def test_precision_and_recall_on_the_labelled_set(labelled):
    _, records, links = labelled
    truth = {r["record_id"]: r["true_member_id"] for r in records}
    linked = [x for x in links if x.state == LINKED]
    correct = sum(1 for x in linked if truth[x.record_id] == x.member_id)
    matchable = sum(1 for t in truth.values() if t)
    precision, recall = correct / len(linked), correct / matchable
    assert precision >= 0.99, precision
    assert recall >= 0.95, recall
    assert all(x.member_id is None for x in links if x.state == UNLINKED)
    strangers = [x for x in links if truth[x.record_id] is None]
    assert strangers and sum(1 for x in strangers if x.state == LINKED) <= 1, "people not in the register stay unlinked"
    review = [x for x in links if x.state == REVIEW]
    assert all(0.5 <= x.probability < 0.9 or x.match_weight is None for x in review)


def test_each_link_says_why_and_how_strong(labelled):
    _, records, links = labelled
    assert [x.record_id for x in links] == [r["record_id"] for r in records]
    by_id = [x for x in links if x.match_weight is None and x.state == LINKED]
    assert by_id and all(x.reason.startswith("HimParivar member ID given") for x in by_id)
    probabilistic = [x for x in links if x.match_weight is not None]
    assert probabilistic and all(x.reason == "probabilistic (Splink)" and 0 <= x.probability <= 1
                                 for x in probabilistic)


def test_a_member_id_that_names_someone_else_is_not_trusted():
    raw = list(Register(200, seed=33, today=TODAY))
    register = [member_row(r, today=TODAY) for r in raw]
    someone, other = raw[0], next(r for r in raw if r["gender"] != raw[0]["gender"] and r["birth_date"])
    record = {"record_id": "R1", "name": other["name"], "gender": other["gender"], "birth_date": other["birth_date"],
              "age": "", "relative_name": other["relative_name"], "village": other["village"],
              "district": other["district"], "member_id": someone["member_id"]}
    [result] = link(register, [record], today=TODAY)
    assert result.state == REVIEW and result.member_id == someone["member_id"] and "differ" in result.reason


def test_an_empty_register_links_nothing():
    records = programme_records(list(Register(20, seed=3, today=TODAY)), 5, seed=4, today=TODAY)
    assert {x.state for x in link([], records, today=TODAY)} == {UNLINKED}
