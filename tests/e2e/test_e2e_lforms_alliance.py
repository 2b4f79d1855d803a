"""Our Questionnaires in a FHIR client no one here wrote: LHC-Forms (the US National
Library of Medicine's renderer) renders each of them in Chromium, a form filled through
its controls exports a QuestionnaireResponse that our reader accepts, and LHC-Forms' own
FHIRPath engine computes the same scores as our scorer."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from lforms_support import LFormsPage

from alliance import fhir, score
from alliance.fhir.response import read_questionnaire_response
from alliance.instruments import get_instrument, list_instruments

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore::alliance.scoring.UnverifiedKeyWarning"),
]


@pytest.fixture(scope="module")
def form(browser: object) -> Iterator[LFormsPage]:
    with LFormsPage(browser) as page:
        yield page


def test_every_questionnaire_renders(form: LFormsPage) -> None:
    for inst in list_instruments():
        for f in inst.forms:
            form.render(fhir.questionnaire(inst.id, f.id))
            shown = set(form.visible_link_ids())
            asked = {c for c, i in zip(inst.item_columns, inst.items) if not i.asked_if}
            assert asked <= shown, (inst.id, f.id)
            assert form.expression_errors() == [], (inst.id, f.id)
    assert form.blocked_requests == []


@pytest.mark.parametrize("instrument_id", ["wai_sr", "haq2"])
def test_filled_form_is_read_and_scored_alike(form: LFormsPage, instrument_id: str) -> None:
    inst = get_instrument(instrument_id)
    rng = np.random.default_rng(4)
    answers = {
        c: str(int(rng.integers(inst.scale.min, inst.scale.max + 1))) for c in inst.item_columns
    }
    answers.pop(inst.item_columns[2])  # one gap, within the missing-item rule
    form.render(fhir.questionnaire(instrument_id))
    form.fill(answers)
    exported = form.response()
    ours = read_questionnaire_response(exported)
    assert ours.answered == {c: float(v) for c, v in answers.items()}
    row = {c: ours.answered.get(c) for c in inst.item_columns}
    expected = score(pd.DataFrame([row], dtype=float), instrument_id)
    for s in inst.scorable_scores:
        column = f"{instrument_id}_{s.id}"
        assert float(form.item_value(column)) == pytest.approx(expected[column].iloc[0], abs=1e-9)


def test_skip_logic_and_unanswered_rupture_items(form: LFormsPage) -> None:
    form.render(fhir.questionnaire("psq", "patient"))
    assert "psq_2" not in form.visible_link_ids()
    form.fill({"psq_1": "1"})
    assert {"psq_2", "psq_3"} <= set(form.visible_link_ids())
    form.fill({"psq_2": "4", "psq_3": "2"})
    ours = read_questionnaire_response(form.response())
    assert ours.answered == {"psq_1": 1.0, "psq_2": 4.0, "psq_3": 2.0}
    assert form.item_value("psq_intensity") == "4"
