"""A plain, row-at-a-time scorer kept as an executable specification.

It reads the instrument definition directly (no compiled arrays, no matrix algebra), so the
tests use it to cross-check the vectorised scorer on random tables, and ``bench/scoring.py``
uses it as the per-row baseline. It assumes valid answers: validation is the main scorer's job.

>>> from alliance.instruments import get_instrument
>>> score_row({n: 3.0 for n in range(1, 13)}, get_instrument("wai_sr"))["total"]
3.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from alliance.instruments import Instrument


def score_row(
    answers: Mapping[int, float | None], inst: Instrument, metric: str = "mean"
) -> dict[str, float]:
    """Scores of one administration given as {item number: answer or None}."""
    results: dict[str, float] = {}
    for sc in inst.scorable_scores:
        if sc.from_subscales:
            continue
        results[sc.id] = _one_score(answers, inst, sc.id, metric)
    for sc in inst.scorable_scores:
        if sc.from_subscales:
            parts = [results[s] for s in inst.subscales_of(sc.id)]
            if any(math.isnan(p) for p in parts):
                results[sc.id] = math.nan
            elif metric == "sum":
                results[sc.id] = sum(parts)
            else:
                results[sc.id] = sum(parts) / len(parts)
    return results


def _one_score(
    answers: Mapping[int, float | None], inst: Instrument, score_id: str, metric: str
) -> float:
    numbers = inst.score_items(score_id)
    values = []
    skipped = 0
    for number in numbers:
        item = inst.items[number - 1]
        if item.asked_if is not None and answers.get(item.asked_if.item) != item.asked_if.equals:
            skipped += 1
            continue
        answer = answers.get(number)
        if answer is None or math.isnan(answer):
            continue
        scale = inst.item_scale(number)
        values.append(scale.min + scale.max - answer if item.reverse else answer)
    missing = len(numbers) - skipped - len(values)
    allowed = math.floor(len(numbers) * inst.missing.max_missing_fraction + 1e-9)
    if not values or missing > allowed:
        return math.nan
    mean = sum(values) / len(values)
    return mean * len(numbers) if metric == "sum" else mean
