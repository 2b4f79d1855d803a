"""Invariants of the vectorised scorer, checked on generated tables (hypothesis).

The cross-check is against ``alliance.scoring.reference.score_row``, a plain per-row reading
of the instrument file that shares no code with the vectorised path.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from alliance import score
from alliance.instruments import get_instrument
from alliance.scoring.reference import score_row

SCORABLE = ["wai", "wai_s", "wai_sr", "haq2", "srs"]


@st.composite
def answer_tables(draw: st.DrawFn, instrument_id: str) -> pd.DataFrame:
    inst = get_instrument(instrument_id)
    rows = draw(st.integers(min_value=1, max_value=25))
    p = len(inst.items)
    low, high = inst.scale.min, inst.scale.max
    if inst.scale.step is None:
        cells = st.floats(min_value=low, max_value=high, allow_nan=False)
    else:
        cells = st.integers(min_value=int(low), max_value=int(high)).map(float)
    values = draw(arrays(np.float64, (rows, p), elements=cells))
    holes = draw(arrays(np.bool_, (rows, p), elements=st.booleans().filter(lambda b: True)))
    keep_holes = draw(st.booleans())
    if keep_holes:
        values[holes & (draw(arrays(np.float64, (rows, p), elements=st.floats(0, 1))) < 0.2)] = (
            np.nan
        )
    return pd.DataFrame(values, columns=list(inst.item_columns))


def _quiet_score(*args: object, **kwargs: object) -> pd.DataFrame:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return score(*args, **kwargs)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(SCORABLE).flatmap(lambda i: st.tuples(st.just(i), answer_tables(i))))
def test_matches_the_per_row_reference(case: tuple[str, pd.DataFrame]) -> None:
    instrument_id, table = case
    inst = get_instrument(instrument_id)
    for metric in ("mean", "sum"):
        scored = _quiet_score(table, instrument_id, metric=metric, errors="flag")
        for r, row in enumerate(table.to_numpy()):
            expected = score_row(
                {n: (None if np.isnan(v) else v) for n, v in enumerate(row, 1)}, inst, metric
            )
            for score_id, value in expected.items():
                got = scored[f"{instrument_id}_{score_id}"].iloc[r]
                assert (math.isnan(value) and math.isnan(got)) or math.isclose(
                    got, value, rel_tol=1e-12, abs_tol=1e-12
                )


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(SCORABLE).flatmap(lambda i: st.tuples(st.just(i), answer_tables(i))))
def test_scores_stay_within_the_scale(case: tuple[str, pd.DataFrame]) -> None:
    instrument_id, table = case
    inst = get_instrument(instrument_id)
    scored = _quiet_score(table, instrument_id, metric="mean", errors="flag")
    for sc in inst.scorable_scores:
        values = scored[f"{instrument_id}_{sc.id}"].dropna()
        assert ((values >= inst.scale.min - 1e-9) & (values <= inst.scale.max + 1e-9)).all()


@settings(max_examples=40, deadline=None)
@given(answer_tables("wai_sr"))
def test_reversing_every_answer_mirrors_a_non_reversed_instrument(table: pd.DataFrame) -> None:
    # WAI-SR has no reverse-keyed items, so answering 6 - x everywhere gives 6 - score.
    original = score(table, "wai_sr", errors="flag")
    mirrored = score(6 - table, "wai_sr", errors="flag")
    for name in ("goal", "task", "bond", "total"):
        a, b = original[f"wai_sr_{name}"], mirrored[f"wai_sr_{name}"]
        np.testing.assert_allclose(6 - a.to_numpy(), b.to_numpy(), rtol=0, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(answer_tables("haq2"), st.randoms())
def test_rows_are_independent(table: pd.DataFrame, random: object) -> None:
    # Any split or reordering of the rows gives the same scores (the basis of batch scoring).
    whole = score(table, "haq2", errors="flag")
    order = np.random.default_rng(len(table)).permutation(len(table))
    shuffled = score(table.iloc[order], "haq2", errors="flag").sort_index()
    pd.testing.assert_series_equal(whole.haq2_total, shuffled.haq2_total)
    cut = len(table) // 2
    parts = pd.concat(
        [
            score(table.iloc[:cut], "haq2", errors="flag"),
            score(table.iloc[cut:], "haq2", errors="flag"),
        ]
    )
    np.testing.assert_array_equal(whole.haq2_total.to_numpy(), parts.haq2_total.to_numpy())


@settings(max_examples=30, deadline=None)
@given(answer_tables("wai_sr"))
def test_prorated_sum_is_mean_times_item_count(table: pd.DataFrame) -> None:
    means = score(table, "wai_sr", errors="flag")
    sums = score(table, "wai_sr", metric="sum", errors="flag")
    np.testing.assert_allclose(sums.wai_sr_bond, means.wai_sr_bond * 4)
    np.testing.assert_allclose(sums.wai_sr_total, means.wai_sr_total * 12)
