"""The `alliance meta` console script (run for real via subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from metafor_refs import COMPUTED, DATA, TIGHT

ALLIANCE = str(Path(sys.executable).parent / "alliance")
CONTRACT = (
    "k",
    "method",
    "estimate",
    "se",
    "ci_lower",
    "ci_upper",
    "tau2",
    "i2",
    "q",
    "pi_lower",
    "pi_upper",
)


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ALLIANCE, "meta", *map(str, args)], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def molloy_rn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dat.molloy2014 with the contract's column names r, n (and a study column)."""
    d = pd.read_csv(DATA / "dat.molloy2014.csv")
    path = tmp_path_factory.mktemp("meta") / "molloy.csv"
    d.rename(columns={"authors": "study", "ri": "r", "ni": "n"}).to_csv(path, index=False)
    return path


def test_json_contract_correlations_knha(molloy_rn: Path) -> None:
    out = run(molloy_rn, "--method", "REML", "--test", "knha", "--format", "json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert set(CONTRACT) <= set(got) and {"r", "r_ci_lower", "r_ci_upper"} <= set(got)
    # Expected: metafor 3.8-1 rma(yi, vi, test="knha", threshold 1e-12) on dat.molloy2014 (ZCOR),
    # metafor_computed_tight.json "molloy_REML_knha"
    e = TIGHT["molloy_REML_knha"]
    assert (got["k"], got["method"]) == (16, "REML")
    assert [
        got["estimate"],
        got["se"],
        got["ci_lower"],
        got["ci_upper"],
        got["tau2"],
        got["i2"],
        got["q"],
        got["pi_lower"],
        got["pi_upper"],
    ] == pytest.approx(
        [e["estimate"], e["se"], *e["ci"], e["tau2"], e["I2"], e["QE"], *e["pi"]], rel=1e-6
    )
    assert [got["r"], got["r_ci_lower"], got["r_ci_upper"]] == pytest.approx(
        e["r_pred"][:3], rel=1e-6
    )


def test_json_yi_vi_with_moderators() -> None:
    out = run(DATA / "dat.bcg.escalc_RR.csv", "--mods", "ablat", "--format", "json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    # Expected: metafor 3.8-1 rma(yi, vi, mods = ~ ablat),
    #   metafor_computed_tight.json "bcg_REML_ablat"
    e = TIGHT["bcg_REML_ablat"]
    assert [c["estimate"] for c in got["coefficients"]] == pytest.approx(e["estimate"], rel=1e-6)
    assert got["tau2"] == pytest.approx(e["tau2"], rel=1e-6)
    assert got["r2"] == pytest.approx(COMPUTED["dat.bcg"]["REML_mods_ablat"]["R2"], rel=1e-3)
    assert "r" not in got and got["pi_lower"] is None


def test_text_report_with_bias_and_charts(molloy_rn: Path, tmp_path: Path) -> None:
    forest, funnel = tmp_path / "forest.svg", tmp_path / "funnel.html"
    out = run(molloy_rn, "--bias", "--forest", forest, "--funnel", funnel)
    assert out.returncode == 0, out.stderr
    # Expected: metafor 3.8-1 on dat.molloy2014: trimfill k0 = 2 (left), regtest z = 1.0216
    assert "Trim-and-fill: 2 studies filled on the left" in out.stdout
    assert "Egger's regression test: z = 1.02" in out.stdout
    assert forest.read_text().startswith("<svg")
    assert "https://cdn" not in funnel.read_text()


def test_three_level_cluster_option() -> None:
    out = run(DATA / "dat.assink2016.csv", "--cluster", "study", "--format", "json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    # Expected: metafor 3.8-1 rma.mv(random = ~ 1 | study/esid) on dat.assink2016,
    #   metafor_computed.json
    e = COMPUTED["dat.assink2016"]["REML_3level"]
    assert [got["estimate"], got["sigma2_between"], got["sigma2_within"]] == pytest.approx(
        [e["estimate"], *e["sigma2"]], rel=1e-6
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "study,r,n\nA,0.3,50\nB,1.2,40\nC,0.1,100\n",
            "row 2 (study 'B'): correlation r must lie strictly",
        ),
        ("yi,vi\n0.3,0.1\n", "at least 2 studies"),
        ("yi,vi\n0.3,0.1\n0.2,\n0.1,0.2\n", "vi: missing in row 2"),
        ("yi,vi\n0.3,0.1\n0.2,-1\n", "yi must be finite and vi > 0; row 2"),
    ],
)
def test_bad_input_exit_2_names_row(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    out = run(path, "--format", "json")
    assert out.returncode == 2
    assert message in " ".join(out.stderr.split())
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_bad_options_and_missing_file(molloy_rn: Path, tmp_path: Path) -> None:
    for args, message in [
        ((molloy_rn, "--method", "XYZ"), "method 'XYZ' is not one of"),
        ((molloy_rn, "--mods", "nope"), "moderator column 'nope' is not in the table"),
        ((tmp_path / "none.csv",), "none.csv"),
    ]:
        out = run(*args)
        assert out.returncode == 2, args
        assert message in " ".join(out.stderr.split()), out.stderr
        assert "Traceback" not in out.stderr


def test_help_has_examples() -> None:
    out = run("--help")
    assert out.returncode == 0
    assert "alliance meta studies.csv --test knha --format json" in out.stdout


def test_a_fit_that_metafor_warns_about_warns_in_one_line(tmp_path: Path) -> None:
    # EE with Knapp-Hartung: metafor 3.8-1 warns (tests/data/issue18/references.json
    # "warnings"); the CLI prints our warning as one line and still exits 0.
    path = tmp_path / "studies.csv"
    pd.DataFrame({"yi": [0.1, 0.3, 0.2, 0.5], "vi": [0.01, 0.02, 0.03, 0.02]}).to_csv(
        path, index=False
    )
    out = run(path, "--method", "EE", "--test", "knha")
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("warning:") == 1 and "Knapp-Hartung" in out.stderr
    assert "Traceback" not in out.stderr and ".py:" not in out.stderr
