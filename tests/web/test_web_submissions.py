"""Group commit: a batch mixes valid, invalid, reused and unknown links (both databases)."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from webclinic import Clinic, full_answers, new_link

from alliance.store import repo
from alliance.store.models import Response
from alliance.web.submissions import Invalid, LinkProblem, Stored, _Job


def jobs(tokens_and_data: list[tuple[str, dict[str, str]]]) -> list[_Job]:
    loop = asyncio.new_event_loop()
    return [
        _Job(t, d, "link", loop, loop.create_future(), repo.hash_token(t))
        for t, d in tokens_and_data
    ]


def test_one_batch_keeps_each_submission_apart(clinic: Clinic) -> None:
    good, bad, twice = new_link(clinic), new_link(clinic), new_link(clinic)
    invalid = dict(full_answers(), wai_sr_2="0")
    batch = jobs(
        [
            (good, full_answers()),
            (bad, invalid),
            (twice, full_answers(3)),
            (twice, full_answers(2)),
            ("no-such-token", full_answers()),
        ]
    )
    outcomes = clinic.app.state.writer.process(batch)
    assert isinstance(outcomes[0], Stored)
    assert isinstance(outcomes[1], Invalid)
    assert [(i.field, i.rule) for i in outcomes[1].issues] == [
        ("wai_sr_2", "outside the scale 1..5")
    ]
    assert isinstance(outcomes[2], Stored)
    assert outcomes[3] == LinkProblem("used")
    assert outcomes[4] == LinkProblem("unknown")
    with clinic.db.read() as s:
        assert s.scalar(select(func.count(Response.id))) == 4  # two links x two forms
        repo.open_link(s, bad)  # the rejected submission left its link usable
