"""Any partition by patient gives the same answer, to the last bit (issue 15).

Rupture baselines and running SDs used to come from one cumulative sum over the whole
batch, so a patient's numbers carried the rounding of every patient before them: the same
patient, alone or behind others, got baselines differing in the last bits (3.7e-9 at 20
million rows) and a drop at the tie tolerance could flip. Each patient's sums now run over
that patient's own values only. Reproduced on main before the change: the one-patient-alone
and shuffled comparisons below failed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from alliance.dynamics import AlertSettings, Norms, alert_episodes, detect_ruptures
from alliance.dynamics._series import prepare_series
from alliance.dynamics.ruptures import rolling_mean_before
from alliance.simulate import simulate_scored

NORMS = Norms(sd=0.6, reliability=0.9, source="test norms", mean=3.9)
SETTINGS = AlertSettings(allow_unverified=True)
Kernel = Callable[[pd.DataFrame], pd.DataFrame]


@pytest.fixture(scope="module")
def clinic() -> pd.DataFrame:
    """120 simulated patients, 8-14 sessions each: the later ones sit behind running sums
    in the thousands, enough to change the last bits of a batch-wide cumulative sum."""
    sessions = simulate_scored(12, 10, min_sessions=8, max_sessions=14, seed=11).sessions
    table = sessions[["patient_id", "therapist_id", "session", "wai_sr_total"]]
    return table.reset_index(drop=True)


def by_patient(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in one canonical order, to compare results computed in different batches."""
    keys = ["patient_id", "method", "kind", "rupture_session", "opened_session"]
    keys = [c for c in keys if c in frame.columns]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def ruptures(table: pd.DataFrame) -> pd.DataFrame:
    return detect_ruptures(table, "wai_sr_total", norms=NORMS, prospective=True)


def episodes(table: pd.DataFrame) -> pd.DataFrame:
    return alert_episodes(
        table, "wai_sr_total", instrument="wai_sr", norms=NORMS, settings=SETTINGS
    )


def assert_identical(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same rows, same values, bit for bit (NaN equal to NaN)."""
    a, b = by_patient(a), by_patient(b)
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    for column in a.columns:
        x, y = a[column].to_numpy(), b[column].to_numpy()
        if x.dtype.kind == "f":  # (a concat with an empty part may hold floats as objects)
            y = pd.to_numeric(pd.Series(y), errors="raise").to_numpy(np.float64, na_value=np.nan)
            assert np.array_equal(x, y, equal_nan=True), column
        else:
            assert list(pd.Series(x).fillna("<NA>")) == list(pd.Series(y).fillna("<NA>")), column


@pytest.mark.parametrize("run", [ruptures, episodes], ids=["ruptures", "episodes"])
def test_shuffled_patients_give_identical_results(clinic: pd.DataFrame, run: Kernel) -> None:
    patients = clinic["patient_id"].unique()
    order = np.random.default_rng(3).permutation(patients)
    shuffled = clinic.set_index("patient_id").loc[order].reset_index()
    assert_identical(run(clinic), run(shuffled))


@pytest.mark.parametrize("run", [ruptures, episodes], ids=["ruptures", "episodes"])
def test_any_split_between_patients_gives_identical_results(
    clinic: pd.DataFrame, run: Kernel
) -> None:
    patients = list(clinic["patient_id"].unique())
    whole = run(clinic)
    for cut in (1, 37, 61, len(patients) - 1):
        first = clinic[clinic["patient_id"].isin(patients[:cut])]
        rest = clinic[clinic["patient_id"].isin(patients[cut:])]
        assert_identical(whole, pd.concat([run(first), run(rest)], ignore_index=True))


def test_a_patient_alone_gets_the_numbers_it_gets_in_the_batch(clinic: pd.DataFrame) -> None:
    whole = ruptures(clinic)
    for patient in clinic["patient_id"].unique()[60::7]:  # patients behind large sums
        alone = ruptures(clinic[clinic["patient_id"] == patient])
        assert_identical(whole[whole["patient_id"] == patient], alone)


def test_baselines_of_a_patient_do_not_depend_on_earlier_patients(clinic: pd.DataFrame) -> None:
    """The kernels themselves: running mean, window mean and running SD, bit for bit."""
    last = clinic["patient_id"].iloc[-1]
    batch = prepare_series(clinic, "wai_sr_total")
    alone = prepare_series(clinic[clinic["patient_id"] == last], "wai_sr_total")
    rows = batch.code == batch.n_patients - 1
    for name, kernel in {
        "expanding mean": lambda s: s.expanding_mean_before(s.x),
        "window mean": lambda s: rolling_mean_before(s, s.x, 3),
        "running sd": lambda s: s.expanding_sd_through(s.x),
    }.items():
        assert np.array_equal(kernel(batch)[rows], kernel(alone), equal_nan=True), name
