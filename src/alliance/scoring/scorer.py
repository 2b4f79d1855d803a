"""One vectorised scorer for every instrument in the library.

Scores are computed from the answered items: the mean of the (reverse-keyed) answers, or for
``metric="sum"`` that mean times the score's item count (a prorated sum, equal to the plain
sum when nothing is missing). A score is left empty, with the reason in the status column,
when more items are missing than the instrument's missing-item rule allows.

Forms without a published key get only an all-item total, a project convention, from
:func:`score_unkeyed_total` (or :func:`score_unkeyed_values`): the same checks and
arithmetic over one score made of every item, reported as unverified.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from numpy import strings
from numpy.dtypes import StringDType

from alliance.instruments import Instrument, get_instrument, list_instruments
from alliance.instruments.schema import Form
from alliance.scoring.keys import (
    BoolArrayLike,
    CompiledKey,
    FloatArray,
    IntArray,
    compile_key,
    compile_unkeyed_total,
)
from alliance.scoring.validate import (
    CheckedAnswers,
    ScoringError,
    ScoringInputError,
    check_answers,
    check_values,
    column_name,
    infer_instrument,
    prepare_columns,
)

Metric = Literal["mean", "sum"]
ErrorMode = Literal["raise", "flag"]
OK = "ok"
ROUNDING = 12
StringArray = npt.NDArray[Any]
Status = tuple[npt.NDArray[np.int32], list[str]]  # a code per row, the messages
UNKEYED_NOTE = (
    "no published key for this form; the all-item total with the instrument's reverse keys "
    "is a project convention"
)


class UnverifiedKeyWarning(UserWarning):
    """Scores computed from a key that could not be confirmed from a published source."""


def score(
    data: pd.DataFrame,
    instrument: str | Instrument | None = None,
    form: str | None = None,
    metric: Metric | None = None,
    errors: ErrorMode = "raise",
    columns: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Score a table of item responses.

    Parameters
    ----------
    data
        One administration per row; item columns named ``<instrument>_<n>``; any other
        columns (ids, dates) are kept.
    instrument
        Instrument id (e.g. ``"wai_sr"``) or definition; inferred from the columns if None.
    form
        Respondent form (``"client"``, ``"therapist"``, ...); the instrument's first if None.
    metric
        ``"mean"`` (item-mean metric) or ``"sum"`` (prorated sum); the instrument's default
        if None (the item mean, except the SRS whose published total is a 0–40 sum).
    errors
        ``"raise"`` raises one :class:`ScoringInputError` listing every invalid answer;
        ``"flag"`` scores the valid rows and leaves the invalid ones empty, with the reasons
        in the status column.
    columns
        Maps other column names to item columns, e.g. ``{"Q1": "wai_sr_1"}``.

    Returns
    -------
    DataFrame with the non-item columns, one float column ``<instrument>_<score>`` per score
    and ``<instrument>_status`` (``"ok"`` or why a score is missing). ``result.attrs
    ["alliance"]`` records instrument, form, metric and each score's key status.

    Example
    -------
    >>> import pandas as pd
    >>> answers = pd.DataFrame({"patient_id": ["p1"], **{f"wai_sr_{i}": [4] for i in range(1, 13)}})
    >>> score(answers, "wai_sr")[["patient_id", "wai_sr_goal", "wai_sr_total", "wai_sr_status"]]
      patient_id  wai_sr_goal  wai_sr_total wai_sr_status
    0         p1          4.0           4.0            ok
    """
    key = _resolve_key(data, instrument, columns)
    chosen_form, metric = _options(key, form, metric, errors)
    result = _score_frame(prepare_columns(data, key, columns), key, metric, errors)
    _note_marked_gaps(result, _marked_items(data, key, columns), key.instrument.id)
    _flag_unverified(result, key, chosen_form.id, metric, _key_status(key))
    return result


def is_scored(status: pd.Series) -> pd.Series:
    """True where a status column says the row was scored (``"ok"``, possibly with a note
    such as cells marked n/a in the file).

    >>> import pandas as pd
    >>> status = ["ok", "ok (n/a in wai_sr_3, read as missing)", "total: 3 of 12 items missing"]
    >>> is_scored(pd.Series(status)).tolist()
    [True, True, False]
    """
    return status.astype(str).str.startswith(OK)


def _marked_items(
    data: pd.DataFrame, key: CompiledKey, columns: Mapping[str, str] | None
) -> dict[str, list[Any]]:
    """The rows, per item column, whose cell the file marked as missing (``n/a``, ``NA``),
    from ``data.attrs["marked_missing"]`` that :func:`alliance.io.read_table` records."""
    marked = data.attrs.get("marked_missing")
    if not isinstance(marked, dict):
        return {}
    renames = dict(columns or {})
    items = set(key.columns)
    found = {column_name(renames.get(header, header)): rows for header, rows in marked.items()}
    return {item: rows for item, rows in found.items() if item in items}


def _note_marked_gaps(result: pd.DataFrame, marked: Mapping[str, list[Any]], inst_id: str) -> None:
    """Say in the status of each row which of its answers the file marked n/a: they are
    scored as unanswered, like an empty cell, and the reader should know why."""
    if not marked:
        return
    where: dict[Any, list[str]] = {}
    for item, rows in marked.items():
        for row in rows:
            if row in result.index:
                where.setdefault(row, []).append(item)
    if not where:
        return
    column = f"{inst_id}_status"
    status = result[column].astype(object)
    for row, items in where.items():
        note = f"n/a in {', '.join(items)}, read as missing"
        before = str(status.at[row])
        status.at[row] = f"{OK} ({note})" if before == OK else f"{before}; {note}"
    result[column] = status.astype("category")


def answer_issues(data: pd.DataFrame, instrument: str | Instrument) -> pd.DataFrame:
    """Every invalid answer among the instrument's item columns in ``data``, by the rules
    :func:`score` applies, without scoring: one row per cell with ``row`` (the table's
    index label), ``column``, ``value`` and ``rule``. Absent item columns count as
    unanswered, so a table holding only some items (``psq_1``, say) is checked too.

    >>> import pandas as pd
    >>> answer_issues(pd.DataFrame({"psq_1": [0, 2]}), "psq")[["row", "column", "rule"]]
       row column                    rule
    0    1  psq_1  outside the scale 0..1
    """
    inst = instrument if isinstance(instrument, Instrument) else get_instrument(instrument)
    key = compile_unkeyed_total(inst) if inst.missing_key else compile_key(inst)
    present = data.reindex(columns=list(key.columns))
    issues = check_answers(present, key).issues
    if issues is None:
        return pd.DataFrame({"row": [], "column": [], "value": [], "rule": []})
    return issues.drop(columns="position").reset_index(drop=True)


def score_unkeyed_total(
    answers: pd.DataFrame,
    instrument: str | Instrument,
    metric: Metric | None = None,
    errors: ErrorMode = "raise",
) -> pd.DataFrame:
    """The all-item total of answers given on a form without a published key.

    Some forms (the WAI-S and WAI-SR therapist forms, for instance) have no published key,
    so :func:`score` refuses them. This total is a **project convention, not a published
    key**: every item of the instrument, with the instrument's own reverse keys (``min +
    max - x`` on the item's scale), its missing-item rule (sums prorated) and its default
    metric, checked and computed exactly as :func:`score` does. Its key status is therefore
    always ``"unverified"``: recorded in ``result.attrs["alliance"]["key_status"]`` and
    announced with an :class:`UnverifiedKeyWarning`.

    Parameters
    ----------
    answers
        One administration per row; item columns ``<instrument>_<n>`` numbered as on the
        instrument's (client) form; other columns are kept.
    instrument
        Instrument id or definition.
    metric, errors
        As for :func:`score`.

    Returns
    -------
    DataFrame with the non-item columns, ``<instrument>_total`` and ``<instrument>_status``.

    Example
    -------
    A therapist answering 7 everywhere on the WAI-S: items 4 and 10 are reverse keyed
    (8 - 7 = 1), so the total is (10 * 7 + 2 * 1) / 12.

    >>> import warnings
    >>> import pandas as pd
    >>> answers = pd.DataFrame({f"wai_s_{i}": [7] for i in range(1, 13)})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     result = score_unkeyed_total(answers, "wai_s")
    >>> result
       wai_s_total wai_s_status
    0          6.0           ok
    >>> result.attrs["alliance"]["key_status"], caught[0].category.__name__
    ({'total': 'unverified'}, 'UnverifiedKeyWarning')
    """
    key = compile_unkeyed_total(instrument)
    metric = _modes(key.instrument, metric, errors)
    result = _score_frame(prepare_columns(answers, key, None), key, metric, errors)
    _note_marked_gaps(result, _marked_items(answers, key, None), key.instrument.id)
    _flag_unverified(result, key, None, metric, _unkeyed_status(key), UNKEYED_NOTE)
    return result


def _score_frame(
    frame: pd.DataFrame, key: CompiledKey, metric: Metric, errors: ErrorMode
) -> pd.DataFrame:
    """Check and score a table whose item columns are in place."""
    checked = check_answers(frame, key)
    if errors == "raise" and checked.issues is not None:
        raise ScoringInputError(key.instrument.id, checked.issues.drop(columns="position"))
    scores, status = _score_checked(checked, key, metric)
    return _assemble(frame, key, scores, status)


@dataclass(frozen=True)
class ValueScores:
    """What :func:`score_values` returns: per row the scores and a status.

    ``scores`` is (n, s) with one column per name in ``columns``; ``status[i]`` is ``"ok"``
    or why row i's scores are missing; ``issues`` lists every invalid answer (as
    :class:`ScoringInputError` does) or is None; ``key_status`` gives each score's key
    level, so an unverified key is never silent.
    """

    columns: tuple[str, ...]
    scores: FloatArray
    status: list[str]
    issues: pd.DataFrame | None
    key_status: dict[str, str]


def score_values(
    answers: npt.ArrayLike,
    instrument: str | Instrument,
    form: str | None = None,
    metric: Metric | None = None,
) -> ValueScores:
    """Score an (n, p) matrix of answers, items in the instrument's order (NaN or None
    where unanswered), with the same checks and arithmetic as :func:`score`.

    For callers that score a few rows at a time (the clinic scores each submitted form):
    there, building and reading data frames costs many times the scoring itself. Invalid
    answers never raise; they are listed in ``issues`` and their rows left unscored, as with
    ``errors="flag"``.

    Example
    -------
    >>> result = score_values([[4] * 12, [5] * 11 + [9]], "wai_sr")
    >>> result.columns
    ('wai_sr_goal', 'wai_sr_task', 'wai_sr_bond', 'wai_sr_total')
    >>> result.scores[0].tolist(), result.status
    ([4.0, 4.0, 4.0, 4.0], ['ok', 'not scored: wai_sr_12=9 outside the scale 1..5'])
    """
    key = compile_key(instrument)
    _form, metric = _options(key, form, metric, "flag")
    return _score_matrix(answers, key, metric, _key_status(key))


def score_unkeyed_values(
    answers: npt.ArrayLike, instrument: str | Instrument, metric: Metric | None = None
) -> ValueScores:
    """:func:`score_unkeyed_total` for an (n, p) matrix of answers, as :func:`score_values`
    is :func:`score` (invalid answers flagged, never raised). The total is a project
    convention, not a published key: ``key_status`` says ``"unverified"`` (no warning here;
    the caller reports it).

    Example
    -------
    >>> result = score_unkeyed_values([[7] * 12, [7] * 8 + [None] * 4], "wai_s")
    >>> result.columns, result.key_status
    (('wai_s_total',), {'total': 'unverified'})
    >>> result.scores[:, 0].tolist(), result.status
    ([6.0, nan], ['ok', 'total: 4 of 12 items missing (at most 3)'])
    """
    key = compile_unkeyed_total(instrument)
    metric = _modes(key.instrument, metric, "flag")
    return _score_matrix(answers, key, metric, _unkeyed_status(key))


def keyed_items(items: pd.DataFrame, instrument: str | Instrument | None = None) -> pd.DataFrame:
    """The item columns with the instrument's reverse-keyed items mirrored (``min + max -
    answer``, as the scorer does), so that every item points the way its scores do: what
    reliability (Cronbach's alpha) of the items needs. Without ``instrument``, it is the one
    whose item columns these all are (``haq2_4`` ...); columns of no instrument are left as
    they are.

    >>> t = pd.DataFrame({"wai_s_3": [5, 2], "wai_s_4": [1, 7]})  # WAI-S item 4 is reversed
    >>> keyed_items(t)["wai_s_4"].tolist()
    [7.0, 1.0]
    """
    inst = instrument if instrument is not None else _owner_of(items.columns)
    if inst is None:
        return items
    key = compile_key(inst)
    out = items.copy()
    for j in key.reversed_columns:
        column = key.columns[j]
        if column in out.columns:
            out[column] = key.low[j] + key.high[j] - pd.to_numeric(out[column], errors="coerce")
    return out


def _owner_of(columns: pd.Index) -> Instrument | None:
    """The instrument all these item columns belong to, if any."""
    names = [str(c) for c in columns]
    for inst in list_instruments():
        if names and set(names) <= set(inst.item_columns):
            return inst
    return None


def _score_matrix(
    answers: npt.ArrayLike, key: CompiledKey, metric: Metric, key_status: dict[str, str]
) -> ValueScores:
    checked = check_values(answers, key)
    scores, (codes, categories) = _score_checked(checked, key, metric)
    return ValueScores(
        columns=tuple(f"{key.instrument.id}_{s}" for s in key.score_ids),
        scores=scores,
        status=[categories[c] for c in codes.tolist()],
        issues=checked.issues,
        key_status=key_status,
    )


def _key_status(key: CompiledKey) -> dict[str, str]:
    """Each score's key level, as the instrument file records it."""
    return {s: key.instrument.get_score(s).key_status for s in key.score_ids}


def _unkeyed_status(key: CompiledKey) -> dict[str, str]:
    """An unkeyed total has no published key: always unverified."""
    return {s: "unverified" for s in key.score_ids}


def _options(
    key: CompiledKey, form: str | None, metric: Metric | None, errors: ErrorMode
) -> tuple[Form, Metric]:
    """The chosen form and metric, after checking the options and that the key scores."""
    inst = key.instrument
    chosen_form = inst.get_form(form) if form is not None else inst.forms[0]
    if not chosen_form.scorable:
        raise ScoringError(f"{inst.short_name} {chosen_form.name}: {chosen_form.note}")
    if inst.missing_key:
        raise ScoringError(inst.missing_key)
    return chosen_form, _modes(inst, metric, errors)


def _modes(inst: Instrument, metric: Metric | None, errors: ErrorMode) -> Metric:
    """The metric (the instrument's default if None), after checking both options."""
    metric = metric or inst.default_metric
    if metric not in ("mean", "sum"):
        raise ScoringError(f"metric must be 'mean' or 'sum', not {metric!r}")
    if errors not in ("raise", "flag"):
        raise ScoringError(f"errors must be 'raise' or 'flag', not {errors!r}")
    return metric


def _score_checked(
    checked: CheckedAnswers, key: CompiledKey, metric: Metric
) -> tuple[FloatArray, Status]:
    """Scores (n, s) and status codes with their messages, from checked answers."""
    values, computed, missing_counts = _compute(checked, key, metric)
    return values, _status(key, computed, missing_counts, checked)


def _resolve_key(
    data: pd.DataFrame, instrument: str | Instrument | None, columns: Mapping[str, str] | None
) -> CompiledKey:
    if isinstance(instrument, Instrument):
        return compile_key(instrument)
    if instrument is None:
        names = [column_name(columns.get(str(c), c) if columns else c) for c in data.columns]
        instrument = infer_instrument(names, [compile_key(i) for i in list_instruments()])
    return compile_key(get_instrument(instrument))


def _compute(
    checked: CheckedAnswers, key: CompiledKey, metric: Metric
) -> tuple[FloatArray, BoolArrayLike, FloatArray]:
    """Score matrix (n, s), which cells were computed, and missing-item counts.

    Missing-item counts are returned for the rows with gaps only (``checked.gap_rows``, in
    order): complete rows, the great majority, need no count.

    Works in place on ``checked.values`` (a matrix this call owns): reverse-keyed columns are
    mirrored, then one matrix product scores every complete row; the few rows with gaps are
    scored again from their answered items.
    """
    x = checked.values
    for j in key.reversed_columns:
        np.subtract(key.low[j] + key.high[j], x[:, j], out=x[:, j])
    weights = key.membership / key.n_items if metric == "mean" else key.membership
    # x @ weights, computed as (weights.T @ x.T).T so that the result is Fortran-ordered:
    # each score column is contiguous, and the output table takes it without a copy.
    scores = (weights.T @ x.T).T
    computed: BoolArrayLike = np.ones(scores.shape, dtype=bool)
    missing = np.zeros((0, scores.shape[1]))
    if not checked.complete:
        rows = np.flatnonzero(checked.gap_rows)
        not_asked = None if checked.not_asked is None else checked.not_asked[rows]
        scores[rows], computed[rows], missing = _score_with_gaps(
            x[rows], checked.invalid[rows], not_asked, key, metric
        )
    if key.derived:
        scores, computed = _derived_totals(scores, computed, key, metric)
    # The summation order inside a matrix product depends on the batch's shape; rounding to
    # 12 decimals makes every partition of the rows give bit-identical scores.
    return np.round(scores, ROUNDING, out=scores), computed, missing


def _score_with_gaps(
    x: FloatArray,
    invalid: BoolArrayLike,
    not_asked: BoolArrayLike | None,
    key: CompiledKey,
    metric: Metric,
) -> tuple[FloatArray, BoolArrayLike, FloatArray]:
    """Scores of rows with unanswered, invalid or not-asked items, from the answered ones."""
    gaps = np.isnan(x)
    x[gaps] = 0.0
    unanswered = _count_per_score(gaps, key)
    answered = key.n_items - unanswered
    missing = unanswered
    if not_asked is not None:
        missing = unanswered - _count_per_score(not_asked, key)
    computed: BoolArrayLike = np.asarray((missing <= key.max_missing) & (answered > 0))
    computed &= ~np.any(invalid, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (x @ key.membership) / answered
    scores = means * key.n_items if metric == "sum" else means
    return np.where(computed, scores, np.nan), computed, missing


def _count_per_score(cells: BoolArrayLike, key: CompiledKey) -> FloatArray:
    """For each row and score, how many of the score's items are flagged in ``cells``."""
    counts = np.empty((cells.shape[0], len(key.member_columns)))
    for j, columns in enumerate(key.member_columns):
        counts[:, j] = np.count_nonzero(cells[:, columns], axis=1)
    return counts


def _derived_totals(
    direct: FloatArray, computed: BoolArrayLike, key: CompiledKey, metric: Metric
) -> tuple[FloatArray, BoolArrayLike]:
    """Append totals built from subscale scores (mean of means, or sum of sums)."""
    extra = []
    extra_ok = []
    for _total, subs in key.derived:
        part = direct[:, list(subs)]
        value = part.sum(axis=1) if metric == "sum" else part.mean(axis=1)
        ok = computed[:, list(subs)].all(axis=1)
        extra.append(np.where(ok, value, np.nan))
        extra_ok.append(ok)
    return (
        np.column_stack([direct, *extra]),
        np.column_stack([computed, *extra_ok]),
    )


def _assemble(
    frame: pd.DataFrame, key: CompiledKey, values: FloatArray, status: Status
) -> pd.DataFrame:
    inst_id = key.instrument.id
    item_columns = set(key.columns)
    kept = {c: frame[c] for c in frame.columns if c not in item_columns}
    values = np.asfortranarray(values)  # contiguous columns: no copy per column below
    scores = {f"{inst_id}_{s}": values[:, j] for j, s in enumerate(key.score_ids)}
    codes, categories = status
    categorical = pd.Categorical.from_codes(codes, categories=pd.Index(categories, dtype=object))
    return pd.DataFrame(
        {**kept, **scores, f"{inst_id}_status": categorical}, index=frame.index, copy=False
    )


def _status(
    key: CompiledKey, computed: BoolArrayLike, missing: FloatArray, checked: CheckedAnswers
) -> Status:
    """'ok', or per row why its scores were not computed.

    One code per row into a list of messages, each distinct message stored once (a
    categorical column). Messages are built with vectorised string operations over the
    problem rows only.
    """
    n = computed.shape[0]
    codes = np.zeros(n, dtype=np.int32)
    if checked.complete:
        return codes, [OK]
    # Only rows with gaps can have a problem: work on those (and ``missing`` is theirs).
    gap_rows = np.flatnonzero(checked.gap_rows)
    problem = ~computed[gap_rows] & ~_not_applicable(key, checked, gap_rows)
    invalid_rows = np.any(checked.invalid[gap_rows], axis=1)
    keep = problem.any(axis=1) | invalid_rows
    if not keep.any():
        return codes, [OK]
    bad = gap_rows[keep]
    text: StringArray = np.full(bad.size, "", dtype=StringDType())
    if checked.issues is not None:
        _add_invalid_reasons(text, bad, checked.issues)
    missing, problem, plain = missing[keep], problem[keep], ~invalid_rows[keep]
    direct = len(key.score_ids) - len(key.derived)
    for j, score_id in enumerate(key.score_ids):
        rows = problem[:, j] & plain
        if not rows.any():
            continue
        if j >= direct:
            reason = np.full(int(rows.sum()), f"{score_id}: needs every subscale")
        else:
            counts = missing[rows, j].astype(np.int64).astype(StringDType())
            tail = f" of {int(key.n_items[j])} items missing (at most {int(key.max_missing[j])})"
            reason = strings.add(strings.add(f"{score_id}: ", counts), tail)
        text[rows] = _join(text[rows], reason)
    found, messages = pd.factorize(text.astype(object))
    codes[bad] = found + 1
    return codes, [OK, *messages.tolist()]


def _add_invalid_reasons(text: StringArray, bad: IntArray, issues: pd.DataFrame) -> None:
    """Write 'not scored: col=value rule; ...' for each row with invalid answers."""
    rows = np.searchsorted(bad, issues["position"].to_numpy())
    pieces = strings.add(
        strings.add(issues["column"].to_numpy().astype(StringDType()), "="),
        strings.add(
            issues["value"].map(repr).to_numpy().astype(StringDType()),
            strings.add(" ", issues["rule"].to_numpy().astype(StringDType())),
        ),
    )
    rank = issues.groupby("position").cumcount().to_numpy()
    for k in range(int(rank.max()) + 1):
        at = rank == k
        prefix = "not scored: " if k == 0 else "; "
        text[rows[at]] = strings.add(strings.add(text[rows[at]], prefix), pieces[at])


def _join(existing: StringArray, reason: StringArray) -> StringArray:
    separator = np.where(strings.str_len(existing) > 0, "; ", "").astype(StringDType())
    return strings.add(strings.add(existing, separator), reason)


def _not_applicable(key: CompiledKey, checked: CheckedAnswers, rows: IntArray) -> BoolArrayLike:
    """Scores whose every item was skipped by design (e.g. rupture intensity when none)."""
    n, s = rows.size, len(key.score_ids)
    if checked.not_asked is None:
        return np.zeros((n, s), dtype=bool)
    direct = _count_per_score(checked.not_asked[rows], key) >= key.n_items
    extra = np.zeros((n, len(key.derived)), dtype=bool)
    return np.column_stack([direct, extra])


def _flag_unverified(
    result: pd.DataFrame,
    key: CompiledKey,
    form: str | None,
    metric: Metric,
    status: dict[str, str],
    note: str | None = None,
) -> None:
    """Record the scoring in ``result.attrs`` and warn about unverified keys (``note`` says
    why; the instrument's key note by default). ``form`` is None for an unkeyed total."""
    inst = key.instrument
    result.attrs["alliance"] = {
        "instrument": inst.id,
        "form": form,
        "metric": metric,
        "key_status": status,
    }
    unverified = [s for s, level in status.items() if level == "unverified"]
    if unverified:
        names = ", ".join(f"{inst.id}_{s}" for s in unverified)
        warnings.warn(
            f"{inst.short_name}: the key of {names} is unverified ({note or inst.key_note}) — "
            "treat these scores with caution",
            UnverifiedKeyWarning,
            stacklevel=3,
        )
