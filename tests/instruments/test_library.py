"""The shipped instrument files: structure, keys and flags as the literature gives them.

Expected keys come from shared/instruments-facts.md, which names the sources and levels:
WAI-SR Hatcher & Gillaspy (2006); WAI Horvath & Greenberg (1989); WAI-S Tracey & Kokotovic
(1989); HAq-II Luborsky et al. (1996); CALPAS Gaston (1991); SRS Duncan et al. (2003).
"""

from __future__ import annotations

import pytest

from alliance.instruments import (
    InstrumentDefinitionError,
    UnknownInstrumentError,
    get_instrument,
    list_instruments,
    parse_instrument,
)


def items_of(instrument_id: str, score_id: str) -> set[int]:
    return set(get_instrument(instrument_id).score_items(score_id))


def reversed_items(instrument_id: str) -> set[int]:
    return {i.number for i in get_instrument(instrument_id).items if i.reverse}


def test_library_ships_the_required_instruments() -> None:
    ids = {i.id for i in list_instruments()}
    assert {"wai", "wai_s", "wai_sr", "haq2", "calpas", "srs", "psq"} <= ids


@pytest.mark.parametrize(
    ("instrument_id", "n_items", "low", "high"),
    [
        ("wai", 36, 1, 7),
        ("wai_s", 12, 1, 7),
        ("wai_sr", 12, 1, 5),
        ("haq2", 19, 1, 6),
        ("calpas", 24, 1, 7),
        ("srs", 4, 0, 10),
    ],
)
def test_item_counts_and_scales(instrument_id: str, n_items: int, low: float, high: float) -> None:
    inst = get_instrument(instrument_id)
    assert len(inst.items) == n_items
    assert (inst.scale.min, inst.scale.max) == (low, high)


def test_wai_sr_key_is_hatcher_and_gillaspy_2006() -> None:
    # Hatcher & Gillaspy (2006): Task 1, 2, 10, 12; Goal 4, 6, 8, 11; Bond 3, 5, 7, 9.
    assert items_of("wai_sr", "task") == {1, 2, 10, 12}
    assert items_of("wai_sr", "goal") == {4, 6, 8, 11}
    assert items_of("wai_sr", "bond") == {3, 5, 7, 9}
    assert items_of("wai_sr", "total") == set(range(1, 13))
    assert reversed_items("wai_sr") == set()
    assert get_instrument("wai_sr").key_status == "verified"


def test_wai_sr_therapist_form_has_no_key() -> None:
    form = get_instrument("wai_sr").get_form("therapist")
    assert not form.scorable


def test_wai_has_three_subscales_of_twelve_and_all_forms() -> None:
    inst = get_instrument("wai")
    for subscale in ("goal", "task", "bond"):
        assert len(items_of("wai", subscale)) == 12
    union = items_of("wai", "goal") | items_of("wai", "task") | items_of("wai", "bond")
    assert union == set(range(1, 37))
    assert {f.respondent for f in inst.forms} == {"client", "therapist", "observer"}
    assert {1, 3, 7, 9, 10, 11, 12, 15, 20, 27, 29} <= reversed_items("wai")
    # Unverified membership ships flagged, never silently.
    assert inst.key_status == "unverified"
    assert all(inst.get_score(s).key_status == "unverified" for s in ("goal", "task", "bond"))


def test_wai_s_key_and_flags() -> None:
    assert items_of("wai_s", "bond") == {3, 5, 7, 9}
    assert reversed_items("wai_s") == {4, 10}
    inst = get_instrument("wai_s")
    assert inst.get_score("bond").key_status == "likely"
    assert inst.get_score("goal").key_status == "unverified"


def test_haq2_reverse_items_and_total_only() -> None:
    assert reversed_items("haq2") == {4, 8, 11, 16, 19}
    assert [s.id for s in get_instrument("haq2").scores] == ["total"]


def test_calpas_has_structure_without_a_guessed_key() -> None:
    inst = get_instrument("calpas")
    assert [s.id for s in inst.scores if s.kind == "subscale"] == [
        "patient_commitment",
        "patient_working_capacity",
        "therapist_understanding",
        "working_strategy_consensus",
    ]
    assert inst.scorable_scores == ()
    assert inst.key_status == "unverified"


def test_srs_cutoff_is_36_below() -> None:
    (cutoff,) = get_instrument("srs").cutoffs
    assert (cutoff.score, cutoff.metric, cutoff.value, cutoff.flag_when) == (
        "total",
        "sum",
        36,
        "below",
    )
    assert get_instrument("srs").default_metric == "sum"


def test_every_instrument_cites_sources_and_says_where_wording_comes_from() -> None:
    for inst in list_instruments():
        assert inst.citations, inst.id
        assert "text pack" in inst.licence, inst.id
        for score in inst.scores:
            assert score.sources, (inst.id, score.id)


def test_descriptors_are_ours_and_short() -> None:
    for inst in list_instruments():
        for item in inst.items:
            assert len(item.descriptor) <= 90, (inst.id, item.number)


def test_unknown_instrument_names_the_known_ones() -> None:
    with pytest.raises(UnknownInstrumentError, match="known: calpas"):
        get_instrument("wai_xx")


BROKEN = """
id = "demo"
name = "Demo"
short_name = "D"
measures = "x"
key_status = "verified"
citations = [{ key = "a", text = "A" }]
licence = "text pack"
scale = { kind = "likert", min = 1, max = 5, step = 1 }
forms = [{ id = "client", respondent = "client", name = "c" }]
missing = { max_missing_fraction = 0.25, source = "s" }
items = [{ number = 1, descriptor = "first", scores = ["nope"] }]
scores = [{ id = "total", label = "T", kind = "total", key_status = "verified" }]
"""


def test_schema_errors_name_the_file_and_the_rule() -> None:
    with pytest.raises(
        InstrumentDefinitionError, match=r"demo.toml: .*unknown score\(s\) \['nope'\]"
    ):
        parse_instrument(BROKEN, "demo.toml")
    with pytest.raises(InstrumentDefinitionError, match=r"demo.toml: scale.max"):
        parse_instrument(BROKEN.replace("max = 5", "max = 'five'"), "demo.toml")
    with pytest.raises(InstrumentDefinitionError, match="not valid TOML"):
        parse_instrument("id = ", "demo.toml")


def test_items_must_be_numbered_in_order() -> None:
    text = BROKEN.replace('scores = ["nope"]', 'scores = ["total"]').replace(
        "number = 1", "number = 2"
    )
    with pytest.raises(InstrumentDefinitionError, match=r"numbered 1\.\.1"):
        parse_instrument(text, "demo.toml")
