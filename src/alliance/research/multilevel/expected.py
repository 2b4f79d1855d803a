"""Expected alliance trajectories: the range of a patient's next session given their
earlier sessions, from a growth model fitted on a clinic's own data.

The model is ``score ~ log(session) + (1 + log(session) | patient) + (1 | therapist)``
(alliance rises fastest early: growth is linear in the log of the session number). For a
patient's session ``t`` the expected value and spread are those of the model's normal
distribution of session ``t`` *given the patient's sessions before t* (the conditional
normal of one patient's rows: therapist, patient and residual variances together), so each
session is judged with the data available that day. ``expected_band`` marks a session
``below`` when it falls under the band's lower quantile (10% by default); on held-out
simulated clinics about that share of sessions falls below it
(``tests/research/test_multilevel_expected.py``).

This is an open analogue of the expected-treatment-response curves of commercial feedback
systems (Finch, Lambert & Schaalje 2001), fitted on the clinic's data rather than on a
vendor's norms. :func:`fit_clinic_expected` is the clinic's rule for when its data can
carry such a model; :func:`expected_next` gives the band of a patient's next session.

>>> import pandas as pd
>>> rows = [(f"p{i}", s, 4 + 0.1 * i + 0.2 * np.log(s) + 0.05 * ((i * s) % 3))
...         for i in range(12) for s in range(1, 7)]
>>> t = pd.DataFrame(rows, columns=["patient", "session", "wai"])
>>> model = fit_expected(t, "wai", patient="patient", session="session")
>>> list(expected_band(model, t).columns)
['patient', 'session', 'wai', 'expected', 'sd', 'lower', 'upper', 'below']
>>> ExpectedModel.from_dict(model.to_dict()) == model
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from alliance.research.multilevel.formula import FormulaError
from alliance.research.multilevel.lmm import lmm

FloatArray = npt.NDArray[np.float64]
#: The clinic fits its model only from this many patients with at least
#: :data:`MIN_SESSIONS` scored sessions each: the patients' 2 x 2 covariance of level and
#: growth is estimated from between-patient differences, and with fewer patients its
#: estimate (and so every band) is too unstable to judge sessions by (our choice).
MIN_PATIENTS = 20
MIN_SESSIONS = 3
#: A therapist variance is estimated only from this many therapists; with fewer it is
#: left out (then it is part of the patients' variance).
MIN_THERAPISTS = 5


@dataclass(frozen=True)
class ExpectedModel:
    """The fitted growth model, as numbers a clinic can store and reuse until the next
    scheduled refit: fixed intercept and log-session slope, the patients' 2 x 2 covariance
    of intercept and slope, the therapist variance and the residual variance."""

    score: str
    patient: str
    session: str
    therapist: str | None
    beta: tuple[float, float]
    patient_cov: tuple[tuple[float, float], tuple[float, float]]
    therapist_var: float
    residual_var: float
    n_patients: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields (for storing the model)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExpectedModel:
        """The model from :meth:`to_dict`'s fields."""
        cov = data["patient_cov"]
        return cls(**{
            **data,
            "beta": tuple(float(b) for b in data["beta"]),
            "patient_cov": (tuple(map(float, cov[0])), tuple(map(float, cov[1]))),
        })  # fmt: skip


def fit_expected(
    table: pd.DataFrame,
    score: str,
    *,
    patient: str,
    session: str,
    therapist: str | None = None,
) -> ExpectedModel:
    """Fit the growth model on ``table`` (one row per session)."""
    columns = [c for c in (patient, session, score, therapist) if c]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise FormulaError(f"column(s) {missing} are not in the table")
    rows = table[columns].dropna().copy()
    if (rows[session] < 1).any():
        raise FormulaError(f"session: column {session!r} numbers sessions from 1")
    rows["_log_session"] = np.log(rows[session].astype(float))
    groups = f" + (1 | {therapist})" if therapist else ""
    fit = lmm(f"{score} ~ _log_session + (1 + _log_session | {patient}){groups}", rows)
    vc = fit.varcorr
    mine = vc[vc["group"] == patient]
    var0, var1 = (float(v) for v in mine["vcov"].iloc[:2])
    cov01 = float(mine["vcov"].iloc[2])
    therapist_var = float(vc.loc[vc["group"] == therapist, "vcov"].sum()) if therapist else 0.0
    return ExpectedModel(
        score=score, patient=patient, session=session, therapist=therapist,
        beta=(float(fit.coef.iloc[0]), float(fit.coef.iloc[1])),
        patient_cov=((var0, cov01), (cov01, var1)),
        therapist_var=therapist_var, residual_var=fit.sigma**2,
        n_patients=int(rows[patient].nunique()),
    )  # fmt: skip


def _one_patient(
    model: ExpectedModel, sessions: FloatArray, scores: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Conditional mean and SD of each session given the sessions before it."""
    z = np.column_stack([np.ones_like(sessions), np.log(sessions)])
    mean = z @ np.array(model.beta)
    cov = z @ np.array(model.patient_cov) @ z.T + model.therapist_var
    cov[np.diag_indices_from(cov)] += model.residual_var
    expected, sd = np.empty(sessions.size), np.empty(sessions.size)
    for t in range(sessions.size):
        if t == 0:
            expected[t], sd[t] = mean[0], np.sqrt(cov[0, 0])
            continue
        weights = np.linalg.solve(cov[:t, :t], cov[:t, t])
        expected[t] = mean[t] + weights @ (scores[:t] - mean[:t])
        sd[t] = np.sqrt(max(cov[t, t] - weights @ cov[:t, t], 0.0))
    return expected, sd


def expected_band(model: ExpectedModel, table: pd.DataFrame, below: float = 0.10) -> pd.DataFrame:
    """Per session: ``expected`` and ``sd`` given the patient's earlier sessions, the
    ``lower`` edge of the band (the ``below`` quantile) and whether the score fell under it.
    Rows with a missing score are left out (they give no information)."""
    if not 0.0 < below < 0.5:
        raise ValueError(f"below: the band's lower quantile must be in (0, 0.5), got {below}")
    cols = [model.patient, model.session, model.score]
    rows = table[cols].dropna().sort_values([model.patient, model.session]).reset_index(drop=True)
    expected, sd = np.empty(len(rows)), np.empty(len(rows))
    for _, index in rows.groupby(model.patient, sort=False).indices.items():
        sessions = rows[model.session].to_numpy(np.float64)[index]
        scores = rows[model.score].to_numpy(np.float64)[index]
        expected[index], sd[index] = _one_patient(model, sessions, scores)
    out = rows.assign(expected=expected, sd=sd)
    _edges(out, below)
    out["below"] = out[model.score] < out["lower"]
    return out


def _edges(out: pd.DataFrame, below: float) -> None:
    half = float(stats.norm.ppf(below)) * out["sd"]
    out["lower"] = out["expected"] + half
    out["upper"] = out["expected"] - half


def expected_next(
    model: ExpectedModel,
    table: pd.DataFrame,
    below: float = 0.10,
    at: Mapping[Any, int] | None = None,
) -> pd.DataFrame:
    """Per patient: the band of their next session (``session``, ``expected``, ``sd``,
    ``lower``, ``upper``) given all their scored sessions. The next session is the one
    after the last scored one, or ``at[patient]`` where given (e.g. a session held but
    not yet rated; it must come after the scored ones).

    >>> import pandas as pd
    >>> m = ExpectedModel("y", "p", "s", None, (4.0, 0.2), ((0.2, 0.0), (0.0, 0.01)),
    ...                   0.0, 0.1, 30)
    >>> nxt = expected_next(m, pd.DataFrame({"p": ["a", "a"], "s": [1, 2], "y": [4.0, 4.1]}))
    >>> nxt[["p", "s"]].to_dict("records")
    [{'p': 'a', 's': 3}]
    """
    if not 0.0 < below < 0.5:
        raise ValueError(f"below: the band's lower quantile must be in (0, 0.5), got {below}")
    cols = [model.patient, model.session, model.score]
    rows = table[cols].dropna().sort_values([model.patient, model.session])
    out = []
    for patient, group in rows.groupby(model.patient, sort=False):
        sessions = group[model.session].to_numpy(np.float64)
        following = float((at or {}).get(patient, sessions[-1] + 1))
        if following <= sessions[-1]:
            raise ValueError(
                f"at: session {following:g} of {patient!r} is not after the scored ones"
            )
        scores = np.append(group[model.score].to_numpy(np.float64), np.nan)
        expected, sd = _one_patient(model, np.append(sessions, following), scores)
        out.append((patient, int(following), expected[-1], sd[-1]))
    frame = pd.DataFrame(out, columns=[model.patient, model.session, "expected", "sd"])
    _edges(frame, below)
    return frame


def fit_clinic_expected(
    table: pd.DataFrame,
    score: str,
    *,
    patient: str = "patient_id",
    session: str = "session",
    therapist: str = "therapist_id",
) -> ExpectedModel | None:
    """The clinic's model of ``score`` fitted on all its sessions, or None while its data
    cannot carry one (fewer than :data:`MIN_PATIENTS` patients with :data:`MIN_SESSIONS`
    scored sessions). The
    therapist term is used from :data:`MIN_THERAPISTS` therapists on.

    >>> import pandas as pd
    >>> fit_clinic_expected(pd.DataFrame({"patient_id": [1], "session": [1],
    ...                                   "therapist_id": [1], "y": [4.0]}), "y") is None
    True
    """
    if score not in table.columns:
        return None
    rows = table.loc[table[score].notna()]
    counts = rows.groupby(patient)[score].size()
    enough = counts.index[counts >= MIN_SESSIONS]
    if enough.size < MIN_PATIENTS:
        return None
    # fitted on every patient: leaving out short treatments would bias the curve upwards
    grouped = therapist in rows.columns and rows[therapist].nunique() >= MIN_THERAPISTS
    return fit_expected(
        rows, score, patient=patient, session=session, therapist=therapist if grouped else None
    )
