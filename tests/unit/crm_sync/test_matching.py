"""Entity resolution without a database: keys, blocking, Fellegi–Sunter weights, EM."""

from __future__ import annotations

from dataclasses import replace

import pytest

from crm_sync.matching import (
    CUSTOMER_MODEL,
    Comparison,
    MatchModel,
    best_candidate,
    candidate_pairs,
    company_key,
    compare_pairs,
    estimate,
    level_matrix,
    one_to_one,
    weights_of,
)

ANA = {"first_name": "Ana", "last_name": "García", "company": "Acme Robotics"}


def test_company_names_compare_without_their_legal_form() -> None:
    assert company_key("ACME Robotics, S.L.") == company_key("Acme Robotics") == "acme robotics"
    assert company_key("Initech Inc.") == "initech"
    assert company_key("S.A.") == "s a"  # never empties a name made only of legal words


def test_the_same_person_spelled_differently_is_a_match() -> None:
    other = {"first_name": "ana", "last_name": "Garcia", "company": "ACME Robotics S.L."}
    score = CUSTOMER_MODEL.score(ANA, other)
    assert score.decision == "match"
    assert score.detail["last_name"]["level"] == 0
    assert score.detail["country"]["level"] is None  # missing on both: no evidence


def test_the_same_name_at_another_company_is_for_review() -> None:
    other = {"first_name": "Ana", "last_name": "Garcia", "company": "Globex"}
    assert CUSTOMER_MODEL.score(ANA, other).decision == "review"


def test_different_people_are_no_match() -> None:
    other = {"first_name": "Bruno", "last_name": "Keller", "company": "Globex"}
    assert CUSTOMER_MODEL.score(ANA, other).decision == "non_match"


def test_a_typo_is_a_close_level_not_a_disagreement() -> None:
    comparison = Comparison("last_name", "jaro_winkler", (0.95, 0.85))
    assert comparison.level("garcia", "garcia") == 0
    assert comparison.level("garcia", "garsia") == 1
    assert comparison.level("garcia", "keller") == 2
    assert comparison.level("", "garcia") is None
    assert comparison.weights[0] > comparison.weights[1] > 0 > comparison.weights[2]


def test_thresholds_are_configuration() -> None:
    strict = replace(CUSTOMER_MODEL, upper=100.0, lower=50.0)
    other = {"first_name": "ana", "last_name": "Garcia", "company": "ACME Robotics S.L."}
    assert strict.score(ANA, other).decision == "non_match"


def test_a_comparison_needs_one_m_and_u_per_level() -> None:
    with pytest.raises(ValueError, match="first_name"):
        Comparison("first_name", thresholds=(0.9,), m=(0.9, 0.05, 0.05), u=(0.1, 0.9))


def test_blocking_keys_are_phonetic() -> None:
    assert CUSTOMER_MODEL.keys(ANA) & CUSTOMER_MODEL.keys(
        {"first_name": "Anna", "last_name": "Garsia", "company": "Acme"}
    )
    assert CUSTOMER_MODEL.sort_key(ANA) == "garcia ana"
    assert CUSTOMER_MODEL.keys({"first_name": "Ana"}) == set()


def test_the_best_candidate_wins() -> None:
    pool = [
        ("c1", {"first_name": "Ana", "last_name": "Keller", "company": "Globex"}),
        ("c2", {"first_name": "Ana", "last_name": "Garcia", "company": "Acme Robotics SL"}),
    ]
    best = best_candidate(CUSTOMER_MODEL, ANA, pool)
    assert best is not None and best[0] == "c2" and best[1].decision == "match"
    assert best_candidate(CUSTOMER_MODEL, ANA, []) is None


PEOPLE = [
    {"first_name": "ana", "last_name": "garcia", "company": "acme"},
    {"first_name": "anna", "last_name": "garcia", "company": "acme"},
    {"first_name": "bruno", "last_name": "keller", "company": "globex"},
    {"first_name": "bruno", "last_name": "kelller", "company": "globex"},
    {"first_name": "carla", "last_name": "zapata", "company": "initech"},
]


def test_batch_blocking_finds_the_duplicates_and_skips_most_pairs() -> None:
    pairs = candidate_pairs(CUSTOMER_MODEL, PEOPLE)
    assert {(0, 1), (2, 3)} <= pairs
    assert len(pairs) < 10  # all pairs of five would be 10


def test_linking_two_files_pairs_left_with_right() -> None:
    model = replace(CUSTOMER_MODEL, blocking=(), window=1)
    left, right = PEOPLE[:1], [PEOPLE[1], PEOPLE[4]]
    assert candidate_pairs(model, left, right) == {(0, 0)}  # sorted neighbourhood only


def test_em_learns_that_agreement_means_a_match() -> None:
    flat = MatchModel(
        comparisons=tuple(
            Comparison(f, "jaro_winkler", (0.95, 0.85), (0.34, 0.33, 0.33), (0.33, 0.33, 0.34))
            for f in ("first_name", "last_name", "company")
        ),
        blocking=CUSTOMER_MODEL.blocking,
    )
    records = PEOPLE * 4
    pairs, levels = compare_pairs(flat, candidate_pairs(flat, records), records)
    assert pairs
    fitted, share = estimate(flat, [*levels, *[(2, 2, 2)] * 50])
    assert 0 < share < 1
    for comparison in fitted.comparisons:
        assert comparison.weights[0] > 0 > comparison.weights[-1]


def test_one_to_one_keeps_the_best_partner_of_each_record() -> None:
    kept = one_to_one([(0, 0, 10.0), (0, 1, 12.0), (1, 1, 11.0), (2, 2, 3.0)])
    assert kept == [(0, 1, 12.0), (2, 2, 3.0)]


def test_the_vectorised_levels_agree_with_the_pairwise_ones() -> None:
    records = [*PEOPLE, {"first_name": "", "last_name": "garsia", "company": "acme sl"}]
    pairs = sorted(candidate_pairs(CUSTOMER_MODEL, records) | {(0, 5), (1, 4)})
    matrix = level_matrix(CUSTOMER_MODEL, pairs, records)
    _, scalar = compare_pairs(CUSTOMER_MODEL, pairs, records)
    assert [tuple(-1 if v is None else v for v in row) for row in scalar] == [
        tuple(int(v) for v in row) for row in matrix
    ]
    weights = weights_of(CUSTOMER_MODEL, matrix)
    assert [round(float(w), 6) for w in weights] == [
        round(CUSTOMER_MODEL.weight_of(row), 6) for row in scalar
    ]


def _pairwise_best(model: MatchModel, record: dict[str, str], pool: list[dict[str, str]]) -> int:
    """The reference: levels and weights pair by pair, the first of the highest weights."""
    prepared = model.prepare(record)
    weights = [model.weight_of(model.levels(prepared, model.prepare(other))) for other in pool]
    return weights.index(max(weights))


def test_the_column_wise_best_candidate_is_the_pairwise_one() -> None:
    """``best_index`` scores a field at a time with rapidfuzz ``cdist``: the same levels,
    the same summed weights and so the same winner — on ties the first — as the pairwise
    path, for every method (exact included), blanks, equal values and legal forms."""
    import random

    from crm_sync.matching import best_index

    rng = random.Random(11)
    firsts = ["Ana", "Anna", "Ann", "Luis", "Lucía", "Lucia", "", "ANA"]
    lasts = ["García", "Garcia", "Garsia", "García López", "Martín", "Martinez", ""]
    companies = ["Acme Robotics", "ACME Robotics, S.L.", "Acme Robotic", "Globex", "", "Acme"]
    addresses = ["Calle Mayor 1, Madrid", "Mayor 1 Madrid calle", "Gran Vía 2", ""]
    countries = ["ES", "PT", "", "es"]
    other = MatchModel(
        comparisons=(
            Comparison("first_name", "levenshtein", (0.9, 0.6), (0.8, 0.1, 0.1), (0.1, 0.2, 0.7)),
            Comparison("last_name", "token_sort", (0.95,), (0.9, 0.1), (0.05, 0.95), "raw"),
            Comparison("country", "exact", (0.0,), (0.9, 0.1), (0.3, 0.7)),  # never disagrees
        )
    )

    def person() -> dict[str, str]:
        return {
            "first_name": rng.choice(firsts),
            "last_name": rng.choice(lasts),
            "company": rng.choice(companies),
            "billing_address": rng.choice(addresses),
            "country": rng.choice(countries),
        }

    ties = 0
    for model in (CUSTOMER_MODEL, other):
        for _ in range(300):
            record = person()
            pool = [person() for _ in range(rng.randrange(1, 30))]
            pool += rng.sample(pool, min(3, len(pool)))  # repeated candidates: exact ties
            expected = _pairwise_best(model, record, pool)
            prepared = [model.prepare(p) for p in pool]
            assert best_index(model, model.prepare(record), prepared) == expected
            weights = [model.weight_of(model.levels(model.prepare(record), p)) for p in prepared]
            ties += weights.count(weights[expected]) > 1
    assert ties > 100  # the first-on-a-tie rule was exercised
    assert best_index(CUSTOMER_MODEL, CUSTOMER_MODEL.prepare(ANA), []) is None


def test_a_similarity_on_a_threshold_reaches_its_level() -> None:
    """The column-wise path applies the same slack (EPSILON) at a threshold as ``level``."""
    from rapidfuzz.distance import JaroWinkler

    from crm_sync.matching import best_index

    a, b = "martha", "marhta"
    similarity = JaroWinkler.similarity(a, b)
    model = MatchModel(
        comparisons=(
            Comparison(
                "last_name", "jaro_winkler", (similarity + 5e-7,), (0.9, 0.1), (0.1, 0.9)
            ),  # reached within the slack
            Comparison("first_name", "exact", (1.0,), (0.6, 0.4), (0.4, 0.6)),
        )
    )
    record = {"last_name": a, "first_name": "x"}
    # b agrees on last_name only within the slack; c agrees on first_name, not last_name.
    pool = [{"last_name": "zzz", "first_name": "x"}, {"last_name": b, "first_name": "y"}]
    assert model.levels(model.prepare(record), model.prepare(pool[1]))[0] == 0
    prepared = [model.prepare(p) for p in pool]
    assert _pairwise_best(model, record, pool) == 1
    assert best_index(model, model.prepare(record), prepared) == 1


def test_candidate_rows_are_prepared_as_their_records() -> None:
    """``records.prepared_rows`` reads the candidates' columns directly: the same prepared
    values as ``model.prepare(match_record(row))``, the legal name standing in for a
    missing company (None or empty)."""
    from collections import namedtuple

    from crm_sync.domain import RECORD_FIELDS
    from crm_sync.records import match_record, prepared_rows

    Row = namedtuple("Row", ["id", "erased_at", *RECORD_FIELDS, "beyond_leads", "part"])  # type: ignore[misc]

    def row(**values: str | None) -> object:
        return Row(**{name: values.get(name) for name in Row._fields})

    rows = [
        row(id="1", first_name="Ana", last_name="García", company="Acme, S.L.", country="ES"),
        row(id="2", first_name="Ana", last_name="Garcia", company=None, legal_name="ACME SL"),
        row(id="3", first_name=None, last_name="", company="", legal_name="Globex GmbH"),
        row(id="4", billing_address="Calle Mayor 1", company="Hooli", legal_name="Other"),
        row(id="5"),
    ]
    expected = [CUSTOMER_MODEL.prepare(match_record(r._asdict())) for r in rows]  # type: ignore[attr-defined]
    assert prepared_rows(CUSTOMER_MODEL, rows) == expected
    assert expected[1][2] == "acme" and expected[2][2] == "globex"
    assert prepared_rows(CUSTOMER_MODEL, []) == []
