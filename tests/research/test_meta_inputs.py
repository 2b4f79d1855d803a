"""Study tables as researchers have them (issue 17, the ``alliance meta`` items): every bad
row reported, whole sample sizes, repeated study labels, the level as 95 or 0.95, no pooled
r with moderators, and plots that name their scale.

The ``--level`` rule follows metafor (``level`` from 1 to 100 is percent, between 0.5 and 1
a proportion; ``metafor:::.level``); the interval itself is the one the other tests check
against metafor.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from metafor_refs import DATA

from alliance.research.meta import (
    MetaInputError,
    MetaWarning,
    analysis_table,
    fisher_z,
    forest_data,
    funnel_chart,
    rma,
    study_table,
)

ALLIANCE = str(Path(sys.executable).parent / "alliance")
MOLLOY = pd.read_csv(DATA / "dat.molloy2014.csv")


def meta(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ALLIANCE, "meta", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_every_bad_row_is_named_not_only_the_first() -> None:
    named = r"row 1 \(study 'A'\), row 3 \(study 'C'\): correlation r"
    with pytest.raises(MetaInputError, match=named):
        fisher_z([1.2, 0.3, -1.5], [50, 60, 70], ["A", "B", "C"])
    frame = pd.DataFrame({"yi": [0.1, 0.2, 0.3, 0.4], "vi": [None, 0.1, None, 0.2]})
    with pytest.raises(MetaInputError, match=r"vi: missing in row 1, row 3$"):
        analysis_table(frame)
    many = pd.DataFrame({"r": [2.0] * 14, "n": [50] * 14})
    with pytest.raises(MetaInputError, match=r"row 10 and 4 more: correlation r"):
        study_table(many)


def test_a_fractional_sample_size_is_refused() -> None:
    frame = pd.DataFrame({"study": ["A", "B", "C"], "r": [0.3, 0.2, 0.1], "n": [50, 80.5, 60]})
    with pytest.raises(MetaInputError, match=r"row 2 \(study 'B'\): sample size n must be a whole"):
        study_table(frame)


def test_repeated_study_labels_are_named_unless_clustered(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"study": ["A", "B", "A", "C"], "r": [0.3, 0.2, 0.25, 0.1], "n": [50, 80, 50, 60]}
    )
    with pytest.warns(MetaWarning, match=r"study: 'A' label several rows.*independent"):
        analysis_table(frame)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table, _ = analysis_table(frame, cluster="study")
    assert table["study"].tolist() == ["A", "B", "A", "C"]
    path = tmp_path / "repeated.csv"
    frame.to_csv(path, index=False)
    out = meta(path)
    assert out.returncode == 0 and "warning: study: 'A' label several rows" in out.stderr


def test_level_as_a_proportion_means_the_same_as_in_percent(tmp_path: Path) -> None:
    yi, vi = [0.1, 0.3, 0.35, 0.65, 0.45], [0.01, 0.02, 0.015, 0.03, 0.01]
    a, b = rma(yi, vi, level=95), rma(yi, vi, level=0.95)
    assert (a.level, b.level) == (95.0, 95.0) and a.ci_lower[0] == b.ci_lower[0]
    path = tmp_path / "s.csv"
    pd.DataFrame({"yi": yi, "vi": vi}).to_csv(path, index=False)
    text = meta(path, "--level", "0.9")
    assert text.returncode == 0 and "Confidence intervals (ci.lb, ci.ub): 90%" in text.stdout
    got = json.loads(meta(path, "--level", "0.9", "--format", "json").stdout)
    assert got["ci_lower"] == pytest.approx(float(rma(yi, vi, level=90).ci_lower[0]), rel=1e-12)
    bad = meta(path, "--level", "0.05")
    assert bad.returncode == 2 and "--level: 0.05 is not a confidence level" in bad.stderr


def test_with_moderators_the_intercept_is_not_reported_as_a_pooled_r(tmp_path: Path) -> None:
    path = tmp_path / "molloy.csv"
    MOLLOY.rename(columns={"ri": "r", "ni": "n"}).to_csv(path, index=False)
    got = json.loads(meta(path, "--mods", "meanage", "--format", "json").stdout)
    assert "r" not in got and "r_ci_lower" not in got and len(got["coefficients"]) == 2
    text = meta(path, "--mods", "meanage").stdout
    assert "Back-transformed to r" not in text and "Fisher's z scale" in text
    pooled = json.loads(meta(path, "--format", "json").stdout)
    assert pooled["r"] == pytest.approx(np.tanh(pooled["estimate"]))


def test_plots_name_the_scale_of_the_prediction_interval_and_the_axis() -> None:
    es = fisher_z(MOLLOY["ri"], MOLLOY["ni"])
    res = rma(es["yi"], es["vi"], measure="ZCOR")
    rows = forest_data(res)
    pi = rows[rows["kind"] == "pi"].iloc[0]
    assert pi["row"] == "95% prediction interval"  # drawn on the r scale of the forest axis
    assert [pi["lo"], pi["hi"]] == pytest.approx(np.tanh([res.pi_lower, res.pi_upper]))
    spec = funnel_chart(res).to_dict()
    titles = [layer["encoding"]["x"].get("title") for layer in spec["layer"]]
    assert "Fisher's z of r" in titles
