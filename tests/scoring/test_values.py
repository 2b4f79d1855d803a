"""``score_values`` (answer matrix in, no tables) agrees with ``score`` on every cell.

The clinic scores each submitted form through ``score_values``; these tests hold it to the
table API on generated matrices with gaps and broken answers, and to the plain per-row
reference scorer (``alliance.scoring.reference.score_row``) on the valid rows.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from alliance import ScoringError, score
from alliance.instruments import get_instrument
from alliance.scoring import check_values, compile_key, score_values
from alliance.scoring.reference import score_row

# Every instrument and form that scores (PSQ brings skip logic).
FORMS = [("wai", None), ("wai_s", None), ("wai_sr", None), ("haq2", None), ("srs", None)]
FORMS += [("psq", "patient")]


@st.composite
def answer_matrices(draw: st.DrawFn, instrument_id: str) -> np.ndarray:
    """Answers on the scale, with some gaps, off-scale and fractional answers."""
    inst = get_instrument(instrument_id)
    rows = draw(st.integers(min_value=1, max_value=12))
    low, high = inst.scale.min, inst.scale.max
    on_scale = (
        st.floats(min_value=low, max_value=high, allow_nan=False)
        if inst.scale.step is None
        else st.integers(min_value=int(low), max_value=int(high)).map(float)
    )
    broken = st.sampled_from([np.nan, low - 1, high + 1, low + 0.5, 1e9])
    cells = st.one_of(on_scale, on_scale, on_scale, broken)
    return draw(arrays(np.float64, (rows, len(inst.items)), elements=cells))


def _table_scores(matrix: np.ndarray, instrument_id: str, form: str | None) -> pd.DataFrame:
    inst = get_instrument(instrument_id)
    table = pd.DataFrame(matrix, columns=list(inst.item_columns))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return score(table, instrument_id, form=form, errors="flag")


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(FORMS).flatmap(lambda f: st.tuples(st.just(f), answer_matrices(f[0]))))
def test_matrix_and_table_give_the_same_scores_status_and_issues(
    case: tuple[tuple[str, str | None], np.ndarray],
) -> None:
    (instrument_id, form), matrix = case
    expected = _table_scores(matrix, instrument_id, form)
    got = score_values(matrix, instrument_id, form=form)
    for j, column in enumerate(got.columns):
        np.testing.assert_array_equal(got.scores[:, j], expected[column].to_numpy())
    assert got.status == expected[f"{instrument_id}_status"].astype(str).tolist()
    table_issues = _table_issues(matrix, instrument_id)
    if table_issues is None:
        assert got.issues is None
    else:
        assert got.issues is not None
        pd.testing.assert_frame_equal(got.issues, table_issues)


def _table_issues(matrix: np.ndarray, instrument_id: str) -> pd.DataFrame | None:
    from alliance.scoring.validate import check_answers

    inst = get_instrument(instrument_id)
    table = pd.DataFrame(matrix, columns=list(inst.item_columns))
    return check_answers(table, compile_key(inst)).issues


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(FORMS[:5]).flatmap(lambda f: answer_matrices(f[0]).map(lambda m: (f, m))))
def test_valid_rows_match_the_per_row_reference(
    case: tuple[tuple[str, str | None], np.ndarray],
) -> None:
    (instrument_id, _form), matrix = case
    inst = get_instrument(instrument_id)
    got = score_values(matrix, instrument_id)
    for r, row in enumerate(matrix):
        if not got.status[r].startswith("not scored"):
            answers = {n: (None if np.isnan(v) else v) for n, v in enumerate(row, 1)}
            expected = score_row(answers, inst, inst.default_metric)
            for j, column in enumerate(got.columns):
                value, mine = expected[column.removeprefix(f"{instrument_id}_")], got.scores[r, j]
                assert (math.isnan(value) and math.isnan(mine)) or math.isclose(
                    mine, value, rel_tol=1e-12, abs_tol=1e-12
                )


def test_text_answers_are_named_and_none_is_a_gap() -> None:
    row = [4.0] * 12
    matrix = np.array([row, ["often", *row[1:]], [None, *row[1:]]], dtype=object)
    got = score_values(matrix, "wai_sr")
    assert got.issues is not None
    assert got.issues[["row", "column", "value", "rule"]].values.tolist() == [
        [1, "wai_sr_1", "often", "not a number"]
    ]
    assert got.status[0] == got.status[2] == "ok"  # one gap in 12 is within the rule
    assert got.status[1] == "not scored: wai_sr_1='often' not a number"
    assert np.isnan(got.scores[1]).all()
    assert got.scores[2, got.columns.index("wai_sr_goal")] == 4.0


def test_unverified_keys_are_reported() -> None:
    got = score_values([[4] * 12], "wai_s")
    assert "unverified" in got.key_status.values()
    assert score_values([[4] * 12], "wai_sr").key_status["total"] == "verified"


@pytest.mark.parametrize("shape", [(2, 11), (12,)])
def test_a_matrix_of_the_wrong_shape_is_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(ScoringError, match=r"answers: must be a matrix with 12 columns"):
        check_values(np.full(shape, 3.0), compile_key("wai_sr"))


def test_a_form_without_a_key_is_refused() -> None:
    with pytest.raises(ScoringError, match="Therapist form"):
        score_values([[4] * 12], "wai_sr", form="therapist")
