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


def second_link(clinic: Clinic, token: str) -> str:
    """Another link (e.g. a kiosk link issued later) for the session of ``token``."""
    with clinic.db.write() as s:
        return repo.issue_link(s, repo.open_link(s, token).session)


def test_a_session_takes_its_client_forms_once_across_links(clinic: Clinic) -> None:
    first = new_link(clinic)
    second, third = second_link(clinic, first), second_link(clinic, first)
    writer = clinic.app.state.writer
    assert isinstance(writer.process(jobs([(first, full_answers())]))[0], Stored)
    # a later batch, and two links of one session within one batch
    assert writer.process(jobs([(second, full_answers(2))])) == [LinkProblem("done")]
    other = new_link(clinic)
    fourth = second_link(clinic, other)
    outcomes = writer.process(jobs([(other, full_answers(3)), (fourth, full_answers(5))]))
    assert isinstance(outcomes[0], Stored)
    assert outcomes[1] == LinkProblem("done")
    with clinic.db.read() as s:
        assert s.scalar(select(func.count(Response.id))) == 4  # two sessions x two forms
        repo.open_link(s, third)  # refused links stay unused (nothing was consumed)
