"""An instrument's key compiled to arrays, the form the vectorised scorer works on.

Reverse-keyed columns are mirrored in place (``(min + max) - x``); a 0/1 membership matrix
then gives every score's sum in one matrix product, which keeps scoring within a small
factor of a bare matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from alliance.instruments import Instrument, get_instrument

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class CompiledKey:
    """Arrays describing one instrument's items and scores.

    ``p`` items and ``s`` item-based scores; totals computed from subscale scores are listed in
    ``derived`` as (total index, subscale indices) and filled after the item-based ones.
    """

    instrument: Instrument
    columns: tuple[str, ...]
    low: FloatArray  # (p,)
    high: FloatArray  # (p,)
    step: FloatArray  # (p,), NaN for continuous items
    membership: FloatArray  # (p, s) 0/1
    member_columns: tuple[list[int], ...]  # per score, its item column indices
    reversed_columns: tuple[int, ...]
    n_items: FloatArray  # (s,)
    max_missing: FloatArray  # (s,)
    score_ids: tuple[str, ...]
    derived: tuple[tuple[int, tuple[int, ...]], ...]
    asked_if: tuple[tuple[int, int, float], ...]  # (item index, condition index, value)

    @property
    def has_skip_logic(self) -> bool:
        return bool(self.asked_if)


_compiled: dict[int, CompiledKey] = {}
_unkeyed: dict[int, CompiledKey] = {}

UNKEYED_TOTAL = "total"
"""Score id of the all-item total of a form without a published key."""


def compile_key(instrument: Instrument | str) -> CompiledKey:
    """Compile an instrument's key (cached per definition object, so overrides recompile).

    >>> compile_key("wai_sr").score_ids
    ('goal', 'task', 'bond', 'total')
    """
    inst = get_instrument(instrument) if isinstance(instrument, str) else instrument
    cached = _compiled.get(id(inst))
    if cached is None or cached.instrument is not inst:
        cached = _compiled[id(inst)] = _compile(inst)
    return cached


def compile_unkeyed_total(instrument: Instrument | str) -> CompiledKey:
    """The key of the all-item total for a form without a published key (a project
    convention, not a published key): one score, ``total``, over every item, with the
    instrument's reverse keys, scales, skip logic and missing-item rule.

    >>> key = compile_unkeyed_total("wai_s")
    >>> key.score_ids, int(key.n_items[0]), int(key.max_missing[0]), key.reversed_columns
    (('total',), 12, 3, (3, 9))
    """
    key = compile_key(instrument)
    inst = key.instrument
    cached = _unkeyed.get(id(inst))
    if cached is None or cached.instrument is not inst:
        membership, member_columns, n_items, max_missing = _membership_arrays(
            inst, np.ones((len(key.columns), 1))
        )
        cached = _unkeyed[id(inst)] = replace(
            key,
            membership=membership,
            member_columns=member_columns,
            n_items=n_items,
            max_missing=max_missing,
            score_ids=(UNKEYED_TOTAL,),
            derived=(),
        )
    return cached


def _membership_arrays(
    inst: Instrument, membership: FloatArray
) -> tuple[FloatArray, tuple[list[int], ...], FloatArray, FloatArray]:
    """A (p, s) membership matrix with, per score, its item columns, its item count and
    how many of them may be missing (the instrument's missing-item rule)."""
    member_columns = tuple(
        np.flatnonzero(membership[:, j]).tolist() for j in range(membership.shape[1])
    )
    n_items = membership.sum(axis=0)
    max_missing = np.floor(n_items * inst.missing.max_missing_fraction + 1e-9)
    return membership, member_columns, n_items, max_missing


def _compile(inst: Instrument) -> CompiledKey:
    scales = [inst.item_scale(item.number) for item in inst.items]
    low = np.array([s.min for s in scales], dtype=np.float64)
    high = np.array([s.max for s in scales], dtype=np.float64)
    step = np.array([np.nan if s.step is None else s.step for s in scales], dtype=np.float64)
    scores = inst.scorable_scores
    direct = [s for s in scores if not s.from_subscales]
    derived_scores = [s for s in scores if s.from_subscales]
    ids = tuple(s.id for s in [*direct, *derived_scores])
    p, s = len(inst.items), len(direct)
    membership = np.zeros((p, s))
    for j, score in enumerate(direct):
        membership[[n - 1 for n in inst.score_items(score.id)], j] = 1.0
    membership, member_columns, n_items, max_missing = _membership_arrays(inst, membership)
    derived = tuple(
        (ids.index(t.id), tuple(ids.index(sub) for sub in inst.subscales_of(t.id)))
        for t in derived_scores
    )
    asked_if = tuple(
        (item.number - 1, item.asked_if.item - 1, item.asked_if.equals)
        for item in inst.items
        if item.asked_if is not None
    )
    return CompiledKey(
        instrument=inst,
        columns=inst.item_columns,
        low=low,
        high=high,
        step=step,
        membership=membership,
        member_columns=member_columns,
        reversed_columns=tuple(i for i, item in enumerate(inst.items) if item.reverse),
        n_items=n_items,
        max_missing=max_missing,
        score_ids=ids,
        derived=derived,
        asked_if=asked_if,
    )


BoolArrayLike = npt.NDArray[np.bool_]
