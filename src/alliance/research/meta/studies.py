"""Study tables: the format alliance meta-analyses code their studies in.

One row per effect: a study label, the sample size N, the alliance-outcome
correlation r, who rated the alliance (patient, therapist, observer), the
alliance measure (WAI, CALPAS, HAq, ...) and any moderators. ``study_table``
validates such a table and adds Fisher's z (``yi``) and its variance (``vi``);
``analysis_table`` accepts either that or a ready ``yi``/``vi`` table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from alliance.research.meta._validate import MetaInputError, bad_rows, warn
from alliance.research.meta.effects import fisher_z

#: Column names recognised (case-insensitively) for each role.
ALIASES: Mapping[str, tuple[str, ...]] = {
    "study": ("study", "authors", "author", "slab", "study_id", "id"),
    "n": ("n", "ni", "sample_size"),
    "r": ("r", "ri", "cor", "correlation"),
    "yi": ("yi", "effect", "es"),
    "vi": ("vi", "var", "variance"),
    "rater": ("rater", "perspective", "informant"),
    "measure": ("measure", "instrument", "alliance_measure"),
}
#: Accepted alliance raters (lower case); "client" is read as "patient".
RATERS = ("patient", "therapist", "observer", "mixed", "other")


def find_column(frame: pd.DataFrame, role: str, given: str | None = None) -> str | None:
    """The column playing ``role`` (an explicit name, else the first alias present).

    >>> find_column(pd.DataFrame(columns=["Authors", "ni", "ri"]), "n")
    'ni'
    """
    if given is not None:
        if given not in frame.columns:
            raise MetaInputError(f"column {given!r} (for {role}) is not in the table; "
                                 f"columns are {', '.join(map(str, frame.columns))}")  # fmt: skip
        return given
    lower = {str(c).lower(): str(c) for c in frame.columns}
    for alias in ALIASES[role]:
        if alias in lower:
            return lower[alias]
    return None


def _labels(frame: pd.DataFrame, col: str | None) -> list[str]:
    if col is None:
        return [str(i + 1) for i in range(len(frame))]
    return [str(x) for x in frame[col].tolist()]


def _check_missing(frame: pd.DataFrame, cols: Sequence[str], slab: Sequence[str]) -> None:
    for c in cols:
        miss = frame[c].isna().to_numpy()
        if miss.any():
            raise MetaInputError(f"{c}: missing in {bad_rows(miss, slab)}")


def _numeric(frame: pd.DataFrame, col: str, slab: Sequence[str]) -> pd.Series:
    out = pd.to_numeric(frame[col], errors="coerce")
    bad = out.isna().to_numpy() & frame[col].notna().to_numpy()
    if bad.any():
        raise MetaInputError(f"{col}: not a number in {bad_rows(bad, slab, frame[col].tolist())}")
    return out


def _raters(values: pd.Series, slab: Sequence[str]) -> pd.Series:
    norm = values.astype(str).str.strip().str.lower().replace({"client": "patient"})
    bad = ~norm.isin(RATERS).to_numpy()
    if bad.any():
        raise MetaInputError(
            f"rater: not a rater in {bad_rows(bad, slab, values.tolist())}; "
            f"use one of {', '.join(RATERS)}"
        )
    return norm


def study_table(
    frame: pd.DataFrame,
    *,
    study: str | None = None,
    n: str | None = None,
    r: str | None = None,
    rater: str | None = None,
    measure: str | None = None,
    moderators: Sequence[str] = (),
) -> pd.DataFrame:
    """Validate a study table and add Fisher's z effect sizes.

    Returns columns ``study, n, r, yi, vi`` then ``rater`` and ``measure`` when
    present, then the moderators, one row per input row (same order). Columns
    are found by name (``study``/``authors``, ``N``/``ni``, ``r``/``ri``, ...)
    unless given. Errors name the column, the row (from 1) and the study.

    >>> t = study_table(pd.DataFrame({"study": ["A", "B"], "N": [50, 80], "r": [0.3, 0.2],
    ...                               "rater": ["client", "observer"]}))
    >>> t[["study", "rater", "yi"]].round(4).values.tolist()
    [['A', 'patient', 0.3095], ['B', 'observer', 0.2027]]
    """
    s_col = find_column(frame, "study", study)
    n_col, r_col = find_column(frame, "n", n), find_column(frame, "r", r)
    if n_col is None or r_col is None:
        raise MetaInputError(
            "a study table needs a sample-size column (N, n or ni) and a correlation column "
            f"(r or ri); columns are {', '.join(map(str, frame.columns))}"
        )
    slab = _labels(frame, s_col)
    rater_col, measure_col = (
        find_column(frame, "rater", rater),
        find_column(frame, "measure", measure),
    )
    for m in moderators:
        if m not in frame.columns:
            _missing_mod(frame, m)
    _check_missing(frame, [c for c in (s_col, n_col, r_col, rater_col, measure_col) if c], slab)
    nn, rr = _numeric(frame, n_col, slab), _numeric(frame, r_col, slab)
    es = fisher_z(rr.to_numpy(), nn.to_numpy(), slab)
    out = pd.DataFrame({"study": slab, "n": nn.to_numpy(), "r": rr.to_numpy(),
                        "yi": es["yi"].to_numpy(), "vi": es["vi"].to_numpy()})  # fmt: skip
    if rater_col is not None:
        out["rater"] = _raters(frame[rater_col], slab).to_numpy()
    if measure_col is not None:
        out["measure"] = frame[measure_col].astype(str).str.strip().to_numpy()
    for m in moderators:
        _check_missing(frame, [m], slab)
        out[m] = frame[m].to_numpy()
    return out


def _missing_mod(frame: pd.DataFrame, name: str) -> None:
    raise MetaInputError(
        f"moderator column {name!r} is not in the table; columns are "
        f"{', '.join(map(str, frame.columns))}"
    )


def analysis_table(
    frame: pd.DataFrame, moderators: Sequence[str] = (), cluster: str | None = None
) -> tuple[pd.DataFrame, str]:
    """A validated ``yi``/``vi`` table from either ``yi, vi`` or ``r, n`` columns.

    Returns the table (columns ``study, yi, vi`` and the moderators, plus
    ``n, r`` for correlations, plus the ``cluster`` column when given) and the
    measure: ``"ZCOR"`` for correlation input, ``"GEN"`` otherwise. A study label
    that appears on several rows without a ``cluster`` gets a :class:`MetaWarning`:
    a two-level model treats those effects as independent.

    >>> t, measure = analysis_table(pd.DataFrame({"yi": [0.1, 0.4], "vi": [0.01, 0.02]}))
    >>> measure, t.columns.tolist()
    ('GEN', ['study', 'yi', 'vi'])
    """
    if cluster is not None and cluster not in frame.columns:
        raise MetaInputError(f"cluster: column {cluster!r} is not in the table")
    table, measure = _effects_table(frame, moderators)
    if cluster is None:
        _warn_repeated_studies(table["study"])
    else:
        _check_missing(frame, [cluster], table["study"].tolist())
        table[cluster] = frame[cluster].to_numpy()
    return table, measure


def _warn_repeated_studies(study: pd.Series) -> None:
    repeated = study[study.duplicated(keep=False)]
    if study.size and not repeated.empty:
        names = ", ".join(repr(n) for n in dict.fromkeys(repeated.tolist()))
        warn(
            f"study: {names} label several rows; they are analysed as independent effects. "
            "For several effects per study fit the three-level model (--cluster in the "
            "CLI, rma_mv in Python)",
            depth=2,
        )


def _effects_table(frame: pd.DataFrame, moderators: Sequence[str]) -> tuple[pd.DataFrame, str]:
    y_col, v_col = find_column(frame, "yi"), find_column(frame, "vi")
    if y_col is not None and v_col is not None:
        slab = _labels(frame, find_column(frame, "study"))
        for m in moderators:
            if m not in frame.columns:
                _missing_mod(frame, m)
        _check_missing(frame, [y_col, v_col, *moderators], slab)
        out = pd.DataFrame({"study": slab, "yi": _numeric(frame, y_col, slab).to_numpy(),
                            "vi": _numeric(frame, v_col, slab).to_numpy()})  # fmt: skip
        bad = ~np.isfinite(out["yi"].to_numpy()) | ~(out["vi"].to_numpy() > 0)
        if bad.any():
            pairs = [f"yi {y:g}, vi {v:g}" for y, v in zip(out["yi"], out["vi"])]
            raise MetaInputError(f"yi must be finite and vi > 0; {bad_rows(bad, slab, pairs)}")
        for m in moderators:
            out[m] = frame[m].to_numpy()
        return out, "GEN"
    if find_column(frame, "r") is not None and find_column(frame, "n") is not None:
        return study_table(frame, moderators=moderators), "ZCOR"
    raise MetaInputError(
        "the table needs columns yi and vi, or r and n (correlations and sample sizes); "
        f"columns are {', '.join(map(str, frame.columns))}"
    )
