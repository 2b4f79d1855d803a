"""Effect sizes against metafor's escalc (3.8-1) and clear errors for impossible input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from metafor_refs import DATA, EXTRA

from alliance.research.meta import (
    MetaInputError,
    fisher_z,
    log_odds_ratio,
    log_ratio_of_means,
    log_risk_ratio,
    smd,
    z_to_r,
)


def test_fisher_z_matches_escalc_zcor() -> None:
    # Expected: escalc(measure="ZCOR", ri, ni) on dat.molloy2014, dat.molloy2014.escalc_ZCOR.csv
    ref = pd.read_csv(DATA / "dat.molloy2014.escalc_ZCOR.csv")
    es = fisher_z(ref["ri"], ref["ni"])
    np.testing.assert_allclose(es["yi"], ref["yi"], rtol=1e-9)
    np.testing.assert_allclose(es["vi"], ref["vi"], rtol=1e-9)
    np.testing.assert_allclose(z_to_r(es["yi"]), ref["ri"], rtol=1e-12)


def test_log_risk_ratio_matches_escalc_rr() -> None:
    # Expected: escalc(measure="RR", ai=tpos, bi=tneg, ci=cpos, di=cneg) on dat.bcg,
    #   dat.bcg.escalc_RR.csv
    bcg = pd.read_csv(DATA / "dat.bcg.csv")
    ref = pd.read_csv(DATA / "dat.bcg.escalc_RR.csv")
    es = log_risk_ratio(bcg["tpos"], bcg["tneg"], bcg["cpos"], bcg["cneg"])
    np.testing.assert_allclose(es[["yi", "vi"]], ref[["yi", "vi"]], rtol=1e-9)


def test_log_odds_ratio_matches_escalc_or() -> None:
    # Expected: escalc(measure="OR") on dat.bcg and on dat.egger2001 (zero cells get +1/2),
    # metafor_extra.json "bcg_OR" / "egger_OR"
    bcg = pd.read_csv(DATA / "dat.bcg.csv")
    es = log_odds_ratio(bcg["tpos"], bcg["tneg"], bcg["cpos"], bcg["cneg"])
    np.testing.assert_allclose(es["yi"], EXTRA["bcg_OR"]["yi"], rtol=1e-12)
    np.testing.assert_allclose(es["vi"], EXTRA["bcg_OR"]["vi"], rtol=1e-12)
    eg = pd.read_csv(DATA / "dat.egger2001.csv")
    es = log_odds_ratio(eg["ai"], eg["n1i"] - eg["ai"], eg["ci"], eg["n2i"] - eg["ci"])
    np.testing.assert_allclose(es["yi"], EXTRA["egger_OR"]["yi"], rtol=1e-12)
    np.testing.assert_allclose(es["vi"], EXTRA["egger_OR"]["vi"], rtol=1e-12)


def test_smd_and_rom_match_escalc() -> None:
    # Expected: escalc(measure="SMD") and escalc(measure="ROM") on dat.normand1999,
    # metafor_extra.json "normand_SMD" / "normand_ROM"
    nd = pd.read_csv(DATA / "dat.normand1999.csv")
    cols = [nd[c] for c in ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i")]
    es = smd(*cols)
    np.testing.assert_allclose(es["yi"], EXTRA["normand_SMD"]["yi"], rtol=1e-12)
    np.testing.assert_allclose(es["vi"], EXTRA["normand_SMD"]["vi"], rtol=1e-12)
    rom = log_ratio_of_means(*cols)
    np.testing.assert_allclose(rom["yi"], EXTRA["normand_ROM"]["yi"], rtol=1e-12)
    np.testing.assert_allclose(rom["vi"], EXTRA["normand_ROM"]["vi"], rtol=1e-12)


def test_cohens_d_uncorrected() -> None:
    # Closed form: d = (m1 - m2) / pooled sd = (12 - 10) / 4 = 0.5; vi = 1/20 + 1/20 + 0.25/80
    es = smd([12], [4], [20], [10], [4], [20], corrected=False)
    assert es["yi"].iloc[0] == pytest.approx(0.5)
    assert es["vi"].iloc[0] == pytest.approx(0.1 + 0.25 / 80)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: fisher_z([0.3, 1.0], [50, 60]), r"row 2: correlation r must lie strictly"),
        (lambda: fisher_z([0.3, -1.2], [50, 60]), r"row 2"),
        (
            lambda: fisher_z([0.3, 0.2], [3, 60], slab=["A", "B"]),
            r"row 1 \(study 'A'\): sample size",
        ),
        (lambda: fisher_z([0.3, None], [50, 60]), r"r: missing or not finite in row 2"),
        (lambda: smd([1], [0], [10], [1], [1], [10]), r"standard deviations must be > 0"),
        (lambda: log_risk_ratio([-1], [5], [2], [5]), r"cell counts must be >= 0"),
        (lambda: log_ratio_of_means([1], [1], [10], [-1], [1], [10]), r"positive means"),
    ],
)
def test_impossible_input_names_row_and_rule(call: object, message: str) -> None:
    with pytest.raises(MetaInputError, match=message):
        call()  # type: ignore[operator]
