"""A small registry for the engine tests: simulated WAI-SR answers of 90 patients (item
columns, so every engine scores them itself), with two invalid answers planted, and the
single-process answers every engine must reproduce."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance import score
from alliance.dynamics import (
    AlertSettings,
    Norms,
    alert_episodes,
    detect_ruptures,
    summarize_trajectories,
)
from alliance.scale import Job
from alliance.simulate import simulate_clinic

# (patient row, item, value): out of the 1-5 response scale, and not a whole step
PLANTED = [(5, "wai_sr_3", 9.0), (40, "wai_sr_7", 2.5)]
NORMS = Norms(sd=0.6, reliability=0.9, source="test norms", mean=3.9)
SETTINGS = AlertSettings(allow_unverified=True)
ITEMS = [f"wai_sr_{i}" for i in range(1, 13)]


@pytest.fixture(scope="session")
def registry() -> pd.DataFrame:
    sessions = simulate_clinic(9, 10, min_sessions=6, max_sessions=16, seed=15).sessions
    table = sessions[["patient_id", "therapist_id", "session", *ITEMS]].copy()
    table[ITEMS] = table[ITEMS].astype("float64")
    for row, item, value in PLANTED:
        table.loc[table.index[row], item] = value
    return table.reset_index(drop=True)


@pytest.fixture()
def registry_parquet(registry: pd.DataFrame, tmp_path: Path) -> Path:
    """The registry as a folder of three Parquet files, patients spread over all three."""
    folder = tmp_path / "registry"
    folder.mkdir()
    for k in range(3):
        registry.iloc[k::3].to_parquet(folder / f"part-{k}.parquet", index=False)
    return folder


def jobs() -> dict[str, Job]:
    """One job of each kind, with the options the reference below uses."""
    common = {"norms": NORMS, "settings": SETTINGS}
    return {kind: Job(kind, "wai_sr", **common) for kind in ("score", "ruptures", "alerts")} | {
        "trajectories": Job("trajectories", "wai_sr")
    }


def single_process(registry: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The answer of the public in-memory API on the whole table (what ``--errors flag``
    does: a session with an invalid answer stays unscored)."""
    if kind == "score":
        return score(registry, "wai_sr", errors="flag")
    scored = with_scores(registry)
    if kind == "trajectories":
        return summarize_trajectories(scored, "wai_sr_total")
    if kind == "ruptures":
        return detect_ruptures(scored, "wai_sr_total", norms=NORMS, prospective=True)
    return alert_episodes(
        scored, "wai_sr_total", instrument="wai_sr", norms=NORMS, settings=SETTINGS
    )


def with_scores(registry: pd.DataFrame) -> pd.DataFrame:
    """The registry, items kept, with the WAI-SR scores (invalid answers: unscored)."""
    scores = score(registry, "wai_sr", errors="flag")
    return pd.concat([registry, scores.drop(columns=registry.columns, errors="ignore")], axis=1)


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in one order, whichever engine produced them (the engines assemble batches in
    their own order)."""
    keys = ["patient_id", "session", "method", "kind", "rupture_session", "opened_session"]
    keys += ["column"]
    keys = [c for c in keys if c in frame.columns]
    categories = frame.select_dtypes("category").columns  # sort them as text, as stored
    frame = frame.astype({c: object for c in categories})
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def assert_same_rows(engine: pd.DataFrame, reference: pd.DataFrame) -> None:
    """The same rows and columns, every number bit for bit and every text equal (missing
    equals missing), whatever types each side's storage gave the columns."""
    a, b = canonical(engine), canonical(reference)
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    for column in a.columns:
        x, y = a[column], b[column]
        if _numeric(x) and _numeric(y):
            xs, ys = (
                x.to_numpy(dtype=np.float64, na_value=np.nan),
                y.to_numpy(dtype=np.float64, na_value=np.nan),
            )
            assert np.array_equal(xs, ys, equal_nan=True), column
        else:
            assert _texts(x) == _texts(y), column


def _numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _texts(values: pd.Series) -> list[str | None]:
    return [None if pd.isna(v) else str(v) for v in values]
