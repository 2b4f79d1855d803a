"""Mixed-model formulas in lme4's notation, parsed into fixed and random terms.

``wai_sr_total ~ session + (1 + session | patient_id) + (1 | therapist_id)`` reads as
the response, the fixed-effect terms and one random term per ``( ... | group)``. Grouping
``a/b`` (``b`` nested in ``a``) expands to ``(..|a) + (..|a:b)`` as in lme4; ``a:b`` is the
interaction of the two columns. Fixed terms are column names, ``a:b`` products, ``a*b``
(``a + b + a:b``), with ``1`` / ``0`` / ``-1`` for the intercept; text columns enter as
treatment dummies against their first level, as R's default contrasts do.

A small parser of our own: formulaic and patsy read the fixed part but not lme4's bar
terms, and the fixed part used here is small enough not to need either.

>>> f = parse_formula("y ~ x + (1 + x | g) + (1 | a/b)")
>>> f.response, f.fixed, [t.group for t in f.random]
('y', ('x',), [('g',), ('a',), ('a', 'b')])
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INTERCEPT = "(Intercept)"
_BAR = re.compile(r"\(([^()|]*)\|([^()|]*)\)")


class FormulaError(ValueError):
    """A formula that cannot be read (names the part and the rule)."""


@dataclass(frozen=True)
class RandomTerm:
    """``(effects | group)``: ``effects`` are ``(Intercept)`` and column names, ``group``
    the grouping column(s), more than one for an interaction such as ``therapist:patient``;
    ``name`` is lme4's name of the grouping factor (``patient:therapist`` for the inner
    term of ``therapist/patient``, as written for ``therapist:patient``)."""

    effects: tuple[str, ...]
    group: tuple[str, ...]
    name: str


@dataclass(frozen=True)
class Formula:
    """A parsed formula: response, whether the fixed part has an intercept, fixed terms
    (column names or ``a:b`` products) and random terms."""

    response: str
    intercept: bool
    fixed: tuple[str, ...]
    random: tuple[RandomTerm, ...]


def parse_formula(text: str) -> Formula:
    """Read ``response ~ fixed + (effects | group) ...``; raises :class:`FormulaError`."""
    if text.count("~") != 1:
        raise FormulaError(f"formula {text!r}: needs exactly one '~' (response ~ terms)")
    left, right = (part.strip() for part in text.split("~"))
    if not re.fullmatch(r"[\w.]+", left):
        raise FormulaError(f"formula: the response {left!r} must be one column name")
    if "||" in right:
        raise FormulaError("formula: '||' (uncorrelated random effects) is not supported yet")
    random: list[RandomTerm] = []
    for effects, group in _BAR.findall(right):
        random += _random_terms(effects, group)
    rest = _BAR.sub("", right)
    if "(" in rest or ")" in rest or "|" in rest:
        raise FormulaError(f"formula: cannot read {right!r} (a random term is '(x | group)')")
    intercept, fixed = _terms(rest, "fixed part")
    return Formula(left, intercept, tuple(fixed), tuple(random))


def _terms(text: str, where: str) -> tuple[bool, list[str]]:
    """Terms joined by '+': whether an intercept is kept, and the other terms in order."""
    intercept, terms = True, []
    for raw in re.split(r"\+|(?=-)", text):
        term = raw.strip()
        if not term:
            continue
        if term in ("1", "+1"):
            intercept = True
        elif term in ("0", "-1"):
            intercept = False
        elif term.startswith("-"):
            raise FormulaError(f"formula {where}: cannot remove {term[1:].strip()!r}")
        elif "*" in term:
            names = [_name(n, where) for n in term.split("*")]
            terms += [*names, ":".join(names)]
        else:
            terms.append(":".join(_name(n, where) for n in term.split(":")))
    return intercept, list(dict.fromkeys(terms))


def _name(text: str, where: str) -> str:
    name = text.strip()
    if not re.fullmatch(r"[A-Za-z_.][\w.]*", name):
        raise FormulaError(f"formula {where}: {name!r} is not a column name")
    return name


def _random_terms(effects: str, group: str) -> list[RandomTerm]:
    intercept, columns = _terms(effects, f"random term ({effects.strip()} | {group.strip()})")
    if any(":" in c for c in columns):
        raise FormulaError("formula: products inside a random term are not supported yet")
    names = ((INTERCEPT,) if intercept else ()) + tuple(columns)
    if not names:
        raise FormulaError(f"formula: random term ({effects.strip()} | ...) has no effect")
    if "/" in group:
        levels = [_name(g, "grouping") for g in group.split("/")]
        return [
            RandomTerm(names, tuple(levels[: i + 1]), ":".join(reversed(levels[: i + 1])))
            for i in range(len(levels))
        ]
    group_columns = tuple(_name(g, "grouping") for g in group.split(":"))
    return [RandomTerm(names, group_columns, ":".join(group_columns))]
