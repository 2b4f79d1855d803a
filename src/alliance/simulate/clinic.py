"""Synthetic clinics: therapists, patients, sessions, item answers and the truth behind them.

The generative model, per patient *i* of therapist *j* at session *t* (POMP metric):

    alliance_it = level + u_j + v_i + g_i * log(t) + e_it + rupture_it
    facet_kit   = alliance_it + d_ki + w_kit           (goal, task, bond, ...)
    answer      = scale.min + range * (facet + b_item + noise), rounded to the
                  scale's steps and clipped to its ends (ceiling effects)

``u_j ~ N(0, icc * sd^2)``, ``v_i ~ N(0, (1 - icc) * sd^2)``, ``e_it`` an AR(1) session
deviation; ``rupture_it`` is a sudden drop that lasts until its repair session (or to the
end when unrepaired). Episodes have a planned length, shortened by drop-out whose hazard
rises while an unrepaired rupture lasts. The outcome (a symptom score, higher = worse)
improves with log(session), faster for patients with a higher mean alliance (between-
patient effect) and, session by session, after a session with above-usual alliance
(within-patient, lagged effect). Defaults and their sources: :mod:`alliance.simulate.defaults`.

Example
-------
>>> clinic = simulate_clinic(n_therapists=2, patients_per_therapist=3, seed=1)
>>> list(clinic.sessions.columns[:4])
['patient_id', 'therapist_id', 'session', 'date']
>>> clinic.sessions.equals(simulate_clinic(n_therapists=2, patients_per_therapist=3,
...                                        seed=1).sessions)
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from alliance.instruments import Instrument, ResponseScale, get_instrument
from alliance.simulate import defaults as d

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class SimulatedClinic:
    """Observed data and ground truth of one simulated clinic.

    ``sessions``: ``patient_id, therapist_id, session, date, <items>`` (+ ``t_<items>`` for
    the therapist form, ``psq_1..3`` post-session rupture answers, ``outcome``).
    ``truth``: true latent facet scores and total per session on the instrument's default
    metric, and whether a rupture was active. ``ruptures``: injected events with
    ``patient_id, therapist_id, session, size, repaired, repair_session, censored``
    (``censored``: the data end before the planned repair). ``params``: the arguments used.
    """

    sessions: pd.DataFrame
    truth: pd.DataFrame
    ruptures: pd.DataFrame
    instrument: str
    params: dict[str, object] = field(default_factory=dict)
    #: per patient: ``patient_id, therapist_id, planned_sessions, attended, dropped_out``
    #: (left before the planned end)
    patients: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True)
class _Latent:
    patient: npt.NDArray[np.int64]  # one row per attended session
    session: npt.NDArray[np.int64]
    alliance: FloatArray  # POMP, with rupture offsets
    offset: FloatArray  # rupture offset (<= 0)
    events: pd.DataFrame
    planned: npt.NDArray[np.int64]  # per patient: the planned number of sessions


def simulate_clinic(
    n_therapists: int = 10,
    patients_per_therapist: int = 8,
    *,
    instrument: str = "wai_sr",
    therapist_form: bool = False,
    post_session_questions: bool = False,
    min_sessions: int = 6,
    max_sessions: int = 20,
    level: float | None = None,
    between_sd: float = d.BETWEEN_SD_POMP,
    therapist_icc: float = d.THERAPIST_ICC,
    growth: float = d.GROWTH_POMP_PER_LOG_SESSION,
    session_sd: float = d.SESSION_SD_POMP,
    session_ar: float = d.SESSION_AR,
    facet_sd: float = d.FACET_SD_POMP,
    item_noise_sd: float = d.ITEM_NOISE_SD_POMP,
    rupture_rate: float = d.RUPTURE_RATE,
    rupture_size: float = d.RUPTURE_SIZE_POMP,
    rupture_size_sd: float = d.RUPTURE_SIZE_SD_POMP,
    repair_probability: float = d.REPAIR_PROBABILITY,
    repair_after: tuple[int, int] = d.REPAIR_AFTER,
    dropout_hazard: float = d.DROPOUT_HAZARD,
    dropout_after_unrepaired: float = d.DROPOUT_AFTER_UNREPAIRED,
    missing_rate: float = d.MISSING_RATE,
    outcome_between_effect: float = d.ALLIANCE_OUTCOME_R,
    outcome_within_effect: float = d.WITHIN_PATIENT_EFFECT,
    start_date: str = "2025-01-06",
    ids: Literal["str", "int"] = "str",
    seed: int | None = None,
) -> SimulatedClinic:
    """Simulate a clinic; every parameter has a default documented in ``defaults``.

    POMP parameters (``level``, ``between_sd``, ``growth``, ``session_sd``, ``facet_sd``,
    ``item_noise_sd``, ``rupture_size``, ``rupture_size_sd``) are fractions of the
    instrument's response range. ``seed`` makes the output reproducible.

    >>> c = simulate_clinic(1, 4, seed=3, rupture_rate=0.0)
    >>> len(c.ruptures), c.sessions["patient_id"].nunique()
    (0, 4)
    """
    _check(n_therapists, patients_per_therapist, min_sessions, max_sessions, therapist_icc)
    inst = get_instrument(instrument)
    if inst.id == "psq":
        raise ValueError(
            "psq holds rupture questions, not an alliance scale: simulate an "
            "alliance instrument with post_session_questions=True"
        )
    if therapist_form and not any(f.respondent == "therapist" for f in inst.forms):
        raise ValueError(f"{inst.short_name} has no therapist form")
    rng = np.random.default_rng(seed)
    n = n_therapists * patients_per_therapist
    therapist = np.repeat(np.arange(n_therapists), patients_per_therapist)
    mean_level = (
        level if level is not None else d.LEVEL_POMP_BY_INSTRUMENT.get(inst.id, d.LEVEL_POMP)
    )
    u = rng.normal(0, between_sd * np.sqrt(therapist_icc), n_therapists)
    v = rng.normal(0, between_sd * np.sqrt(1 - therapist_icc), n)
    base = mean_level + u[therapist] + v
    slopes = rng.normal(growth, abs(growth) / 2 + 1e-12, n)
    latent = _trajectories(
        rng,
        base,
        slopes,
        min_sessions,
        max_sessions,
        session_sd,
        session_ar,
        rupture_rate,
        rupture_size,
        rupture_size_sd,
        repair_probability,
        repair_after,
        dropout_hazard,
        dropout_after_unrepaired,
    )
    facets = _facets(rng, inst, latent, facet_sd)
    items = _items(rng, inst, facets, item_noise_sd, prefix="")
    missing = rng.random(latent.session.size) < missing_rate
    items.loc[missing, :] = np.nan
    frames = [_frame_ids(rng, latent, therapist, start_date, ids), items]
    if therapist_form:
        frames.append(_therapist_items(rng, inst, latent, facets, item_noise_sd))
    if post_session_questions:
        frames.append(_psq(rng, latent, rupture_size))
    frames.append(
        pd.DataFrame(
            {
                "outcome": _outcome(
                    rng,
                    latent,
                    base,
                    between_sd,
                    outcome_between_effect,
                    outcome_within_effect,
                    max_sessions,
                )
            }
        )
    )
    sessions = pd.concat(frames, axis=1)
    truth = _truth(inst, latent, facets, sessions)
    ruptures = _rupture_table(latent, sessions, inst)
    params = {k: v for k, v in locals().items() if k in _PARAM_NAMES}
    return SimulatedClinic(
        sessions, truth, ruptures, inst.id, params, _patient_table(latent, sessions)
    )


def _patient_table(latent: _Latent, sessions: pd.DataFrame) -> pd.DataFrame:
    """Each patient's planned and attended sessions; dropped out = attended fewer."""
    ids = sessions.groupby(latent.patient, sort=True)[["patient_id", "therapist_id"]].first()
    attended = np.bincount(latent.patient, minlength=latent.planned.size)
    table = ids.reindex(range(latent.planned.size)).assign(
        planned_sessions=latent.planned, attended=attended
    )
    table["dropped_out"] = table["attended"] < table["planned_sessions"]
    return table.reset_index(drop=True)


def _check(n_t: int, n_p: int, lo: int, hi: int, icc: float) -> None:
    if n_t < 1 or n_p < 1:
        raise ValueError("need at least one therapist and one patient per therapist")
    if not 1 <= lo <= hi:
        raise ValueError(f"need 1 <= min_sessions ({lo}) <= max_sessions ({hi})")
    if not 0 <= icc < 1:
        raise ValueError(f"therapist_icc must lie in [0, 1), got {icc}")


def _trajectories(
    rng: np.random.Generator,
    base: FloatArray,
    slopes: FloatArray,
    min_sessions: int,
    max_sessions: int,
    session_sd: float,
    session_ar: float,
    rupture_rate: float,
    size_mean: float,
    size_sd: float,
    repair_probability: float,
    repair_after: tuple[int, int],
    hazard: float,
    extra_hazard: float,
) -> _Latent:
    """Session loop vectorised over patients (a loop over at most ``max_sessions``)."""
    n = base.size
    planned = rng.integers(min_sessions, max_sessions + 1, n)
    alive = np.ones(n, dtype=bool)
    active = np.zeros(n, dtype=bool)
    size = np.zeros(n)
    repair_at = np.full(n, -1)
    e = rng.normal(0, session_sd, n)
    rows: list[tuple[npt.NDArray[np.int64], int, FloatArray, FloatArray]] = []
    events: list[pd.DataFrame] = []
    for t in range(1, max_sessions + 1):
        attend = alive & (t <= planned)
        if not attend.any():
            break
        ends = active & (repair_at == t)
        active &= ~ends
        new = attend & ~active & ~ends & (t >= 2) & (rng.random(n) < rupture_rate)
        size = np.where(new, np.abs(rng.normal(size_mean, size_sd, n)), size)
        delay = rng.integers(repair_after[0], repair_after[1] + 1, n)
        will_repair = rng.random(n) < repair_probability
        repair_at = np.where(new, np.where(will_repair, t + delay, -1), repair_at)
        active |= new
        if new.any():
            idx = np.flatnonzero(new)
            events.append(
                pd.DataFrame(
                    {
                        "p": idx,
                        "session": t,
                        "size_pomp": size[idx],
                        "planned_repair": repair_at[idx],
                    }
                )
            )
        e = session_ar * e + rng.normal(0, session_sd * np.sqrt(1 - session_ar**2), n)
        offset = np.where(active, -size, 0.0)
        value = base + slopes * np.log(t) + e + offset
        who = np.flatnonzero(attend)
        rows.append((who, t, value[who], offset[who]))
        unrepaired = active & (repair_at < 0)
        leave = rng.random(n) < hazard + extra_hazard * unrepaired
        alive &= ~(attend & leave & (t >= 2))
    patient = np.concatenate([r[0] for r in rows])
    session = np.concatenate([np.full(r[0].size, r[1]) for r in rows])
    order = np.lexsort((session, patient))
    ev = (
        pd.concat(events, ignore_index=True)
        if events
        else pd.DataFrame({"p": [], "session": [], "size_pomp": [], "planned_repair": []})
    )
    return _Latent(
        patient[order].astype(np.int64),
        session[order].astype(np.int64),
        np.concatenate([r[2] for r in rows])[order],
        np.concatenate([r[3] for r in rows])[order],
        ev,
        planned.astype(np.int64),
    )


def _facet_of_items(inst: Instrument) -> tuple[list[str], list[int]]:
    """Facet names (the instrument's subscales, or one 'total') and each item's facet."""
    keyed = {sc for item in inst.items for sc in item.scores}
    subscales = [s.id for s in inst.scores if s.kind == "subscale" and s.id in keyed]
    if len(subscales) < 2:
        return ["total"], [0] * len(inst.items)
    member = []
    for item in inst.items:
        own = [subscales.index(s) for s in item.scores if s in subscales]
        member.append(own[0] if own else -1)
    if -1 in member:  # an item outside every subscale loads on the mean of all facets
        subscales.append("general")
        member = [m if m >= 0 else len(subscales) - 1 for m in member]
    return subscales, member


def _facets(
    rng: np.random.Generator, inst: Instrument, lat: _Latent, facet_sd: float
) -> FloatArray:
    names, _ = _facet_of_items(inst)
    n_patients = int(lat.patient.max()) + 1
    stable = rng.normal(0, facet_sd, (n_patients, len(names)))
    noise = rng.normal(0, facet_sd / 2, (lat.session.size, len(names)))
    return np.asarray(lat.alliance[:, None] + stable[lat.patient] + noise, dtype=np.float64)


def _to_scale(pomp: FloatArray, scale: ResponseScale) -> FloatArray:
    raw = scale.min + pomp * (scale.max - scale.min)
    if scale.step is None:
        return np.asarray(np.clip(np.round(raw, 1), scale.min, scale.max), dtype=np.float64)
    steps = np.round((raw - scale.min) / scale.step)
    return np.asarray(
        np.clip(scale.min + steps * scale.step, scale.min, scale.max), dtype=np.float64
    )


def _items(
    rng: np.random.Generator,
    inst: Instrument,
    facets: FloatArray,
    noise_sd: float,
    prefix: str,
) -> pd.DataFrame:
    _, member = _facet_of_items(inst)
    difficulty = np.random.default_rng(len(inst.items)).normal(0, 0.03, len(inst.items))
    out = {}
    for k, item in enumerate(inst.items):
        scale = inst.item_scale(item.number)
        pomp = facets[:, member[k]] + difficulty[k] + rng.normal(0, noise_sd, facets.shape[0])
        if item.reverse:
            pomp = 1.0 - pomp
        out[f"{prefix}{inst.id}_{item.number}"] = _to_scale(pomp, scale)
    return pd.DataFrame(out)


def _therapist_items(
    rng: np.random.Generator, inst: Instrument, lat: _Latent, facets: FloatArray, noise_sd: float
) -> pd.DataFrame:
    """Therapist form: rates a little higher and perceives only part of each rupture."""
    seen = facets - lat.offset[:, None] * (1 - d.THERAPIST_SEES_RUPTURE) + d.THERAPIST_BIAS_POMP
    return _items(rng, inst, seen, noise_sd, prefix="t_")


def _psq(rng: np.random.Generator, lat: _Latent, size_mean: float) -> pd.DataFrame:
    """Post-session rupture answers: reported with some sensitivity and false reports."""
    n = lat.session.size
    onset = _onset_rows(lat)
    report = np.where(onset, rng.random(n) < d.PSQ_SENSITIVITY, rng.random(n) < d.PSQ_FALSE_REPORT)
    strength = np.where(onset, -lat.offset / max(size_mean, 1e-9), 0.5)
    intensity = np.clip(np.round(1 + 2 * strength + rng.normal(0, 0.7, n)), 1, 5)
    resolution = np.clip(np.round(rng.normal(3.0, 1.0, n)), 1, 5)
    return pd.DataFrame(
        {
            "psq_1": report.astype(float),
            "psq_2": np.where(report, intensity, np.nan),
            "psq_3": np.where(report, resolution, np.nan),
        }
    )


def _onset_rows(lat: _Latent) -> BoolArray:
    key = pd.MultiIndex.from_arrays([lat.patient, lat.session])
    ev = pd.MultiIndex.from_arrays(
        [lat.events["p"].to_numpy(dtype=np.int64), lat.events["session"].to_numpy(dtype=np.int64)]
    )
    return np.asarray(key.isin(ev))


def _outcome(
    rng: np.random.Generator,
    lat: _Latent,
    base: FloatArray,
    between_sd: float,
    between: float,
    within: float,
    max_sessions: int,
) -> FloatArray:
    z_mean = (base - base.mean()) / (base.std() + 1e-12)
    p = lat.patient
    start = rng.normal(0, 1, base.size)
    first = np.r_[True, p[1:] != p[:-1]]
    prev = np.r_[np.nan, lat.alliance[:-1]]
    prev[first] = np.nan
    dev = np.nan_to_num((prev - base[p]) / max(between_sd, 1e-9), nan=0.0)
    frac = np.log(lat.session) / np.log(max(max_sessions, 2))
    sd = d.OUTCOME_BASELINE_SD
    y = (
        d.OUTCOME_BASELINE_MEAN
        + sd * start[p]
        - d.OUTCOME_IMPROVEMENT_PER_LOG_SESSION * np.log(lat.session)
        - sd * between * z_mean[p] * frac
        - sd * within * dev
        + rng.normal(0, d.OUTCOME_NOISE_SD, p.size)
    )
    return np.asarray(np.round(np.clip(y, 0, None), 1), dtype=np.float64)


def _frame_ids(
    rng: np.random.Generator,
    lat: _Latent,
    therapist: npt.NDArray[np.int64],
    start_date: str,
    ids: str,
) -> pd.DataFrame:
    n_patients = therapist.size
    start = pd.Timestamp(start_date) + pd.to_timedelta(rng.integers(0, 365, n_patients), unit="D")
    jitter = rng.integers(-1, 2, lat.session.size)
    days = 7 * (lat.session - 1) + np.where(lat.session > 1, jitter, 0)
    dates = start.to_numpy()[lat.patient] + pd.to_timedelta(days, unit="D").to_numpy()
    if ids == "int":
        pid: object = lat.patient + 1
        tid: object = therapist[lat.patient] + 1
    else:
        width = len(str(n_patients))
        pid = np.char.add("P", np.char.zfill((lat.patient + 1).astype(str), width))
        tid = np.char.add(
            "T",
            np.char.zfill((therapist[lat.patient] + 1).astype(str), len(str(therapist.max() + 1))),
        )
    return pd.DataFrame(
        {
            "patient_id": pid,
            "therapist_id": tid,
            "session": lat.session,
            "date": pd.DatetimeIndex(dates).normalize(),
        }
    )


def _metric_scale(inst: Instrument, pomp: FloatArray, n_items: int) -> FloatArray:
    scale = inst.scale
    mean = scale.min + pomp * (scale.max - scale.min)
    return mean * n_items if inst.default_metric == "sum" else mean


def _truth(
    inst: Instrument, lat: _Latent, facets: FloatArray, sessions: pd.DataFrame
) -> pd.DataFrame:
    names, member = _facet_of_items(inst)
    out = sessions[["patient_id", "therapist_id", "session"]].copy()
    counts = np.bincount(member, minlength=len(names))
    if len(names) > 1:
        for k, name in enumerate(names):
            out[name] = _metric_scale(inst, np.clip(facets[:, k], 0, 1), int(counts[k]))
    total_pomp = facets[:, member].mean(axis=1)
    out["total"] = _metric_scale(inst, np.clip(total_pomp, 0, 1), len(inst.items))
    out["in_rupture"] = lat.offset < 0
    out["rupture_offset"] = (
        _metric_scale(inst, lat.offset, len(inst.items))
        - (_metric_scale(inst, np.zeros(1), len(inst.items))[0])
    )
    return out


def _rupture_table(lat: _Latent, sessions: pd.DataFrame, inst: Instrument) -> pd.DataFrame:
    ev = lat.events
    last = pd.Series(lat.session).groupby(lat.patient).max()
    p = ev["p"].to_numpy(dtype=np.int64)
    planned = ev["planned_repair"].to_numpy(dtype=np.int64)
    observed_last = last.reindex(p).to_numpy()
    repaired = (planned > 0) & (planned <= observed_last)
    ids = sessions.drop_duplicates("patient_id").set_index(
        pd.Index(lat.patient[np.r_[True, lat.patient[1:] != lat.patient[:-1]]])
    )
    scale_range = inst.scale.max - inst.scale.min
    per_item = scale_range * (len(inst.items) if inst.default_metric == "sum" else 1)
    repair_session = pd.array(np.where(repaired, planned, 0), dtype="Int64")
    repair_session[~repaired] = pd.NA
    table = pd.DataFrame(
        {
            "patient_id": ids["patient_id"].reindex(p).to_numpy(),
            "therapist_id": ids["therapist_id"].reindex(p).to_numpy(),
            "session": ev["session"].to_numpy(dtype=np.int64),
            "size": ev["size_pomp"].to_numpy() * per_item,
            "repaired": repaired,
            "repair_session": repair_session,
            "censored": (planned > 0) & ~repaired,
        }
    )
    return table.sort_values(["patient_id", "session"]).reset_index(drop=True)


_PARAM_NAMES = {
    "n_therapists",
    "patients_per_therapist",
    "instrument",
    "therapist_form",
    "post_session_questions",
    "min_sessions",
    "max_sessions",
    "level",
    "between_sd",
    "therapist_icc",
    "growth",
    "session_sd",
    "session_ar",
    "facet_sd",
    "item_noise_sd",
    "rupture_rate",
    "rupture_size",
    "rupture_size_sd",
    "repair_probability",
    "repair_after",
    "dropout_hazard",
    "dropout_after_unrepaired",
    "missing_rate",
    "outcome_between_effect",
    "outcome_within_effect",
    "start_date",
    "ids",
    "seed",
}
