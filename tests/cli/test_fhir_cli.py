"""``alliance fhir``: Questionnaires out, a response table to a Bundle and back, and the
exit code 2 with location and rule for a bad Bundle (nothing written)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from alliance.fhir._common import structure_issues

QR = "QuestionnaireResponse"
CLIENT_WAI = ("wai_sr", "client")
ALLIANCE = str(Path(sys.executable).with_name("alliance"))


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ALLIANCE, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_questionnaire_command(tmp_path: Path) -> None:
    target = tmp_path / "q.json"
    done = run("fhir", "questionnaire", "psq", "--form", "therapist", "-o", target)
    assert done.returncode == 0, done.stderr
    resource = json.loads(target.read_text())
    assert resource["id"] == "psq-therapist" and structure_issues(resource, "Questionnaire") == []
    unknown = run("fhir", "questionnaire", "phq9")
    assert unknown.returncode == 2 and "unknown instrument 'phq9'" in unknown.stderr


def test_export_then_import_gives_the_scores_back(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {"patient_id": ["A", "B"], "session": [1, 2], "date": ["2026-01-05", "2026-01-12"]}
        | {f"srs_{i}": [8.0, 6.5] for i in range(1, 5)}
    )
    answers = tmp_path / "answers.csv"
    table.to_csv(answers, index=False)
    bundle = tmp_path / "bundle.json"
    assert run("fhir", "export", answers, "-o", bundle).returncode == 0
    out = tmp_path / "back.csv"
    done = run("fhir", "import", bundle, "-o", out)
    assert done.returncode == 0, done.stderr
    back = pd.read_csv(out)
    assert back["srs_total"].tolist() == [32.0, 26.0]  # 4 x 8.0 and 4 x 6.5 (SRS total is a sum)
    assert back["patient_id"].tolist() == ["A", "B"]
    folder = tmp_path / "per"
    assert run("fhir", "export", answers, "--per-patient", folder).returncode == 0
    assert len(list(folder.glob("*.json"))) == 2


def test_bad_bundle_exits_2_naming_entry_and_rule(tmp_path: Path) -> None:
    bundle = tmp_path / "bad.json"
    qr = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "questionnaire": "https://w3id.org/alliance/fhir/Questionnaire/srs-client",
        "item": [{"linkId": "srs_9", "answer": [{"valueDecimal": 3.0}]}],
    }
    bundle.write_text(
        json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": qr}]})
    )
    out = tmp_path / "out.csv"
    done = run("fhir", "import", bundle, "-o", out)
    assert done.returncode == 2
    assert (
        "Bundle.entry[0].resource.item[0].linkId: 'srs_9' is not an item of srs-client"
        in done.stderr
    )
    assert not out.exists()


def test_a_clinics_questionnaire_installs_as_a_text_pack(
    alliance_home: Path, tmp_path: Path
) -> None:
    """The wording a clinic holds, as a FHIR Questionnaire, is matched item by item as any
    text pack; the Questionnaire for that language then carries it."""
    from alliance.fhir import questionnaire

    from .test_score_cli import run as run_in

    held = questionnaire("wai_sr")
    held["language"] = "de"
    for item in held["item"]:
        if item["type"] != "group":
            item["text"] = f"Wortlaut {item['linkId']}"
    source = tmp_path / "wai_sr_de.json"
    source.write_text(json.dumps(held))
    done = run_in("instruments", "text-pack", "add", source, home=alliance_home)
    assert done.returncode == 0, done.stderr
    assert "installed wai_sr (de): 12 items" in done.stdout
    shown = run_in("fhir", "questionnaire", "wai_sr", "--language", "de", home=alliance_home)
    resource = json.loads(shown.stdout)
    assert resource["language"] == "de" and resource["item"][3]["text"] == "Wortlaut wai_sr_4"
    assert "official wording from the clinic's text pack" in resource["description"]

    held["language"] = "fr"
    held["item"] = held["item"][1:]
    source.write_text(json.dumps(held))
    refused = run_in("instruments", "text-pack", "add", source, home=alliance_home)
    assert refused.returncode == 2 and "missing item(s) [1]" in refused.stderr
    assert not (alliance_home / "textpacks" / "wai_sr" / "fr.json").exists()


def test_export_from_the_clinic_database_is_deidentified_and_audited(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from alliance.store import repo
    from alliance.store.models import AuditEntry
    from alliance.web.app import create_app
    from alliance.web.demo import fill_demo

    path = tmp_path / "clinic.db"
    app = create_app(f"sqlite:///{path}", secret_key="k" * 32)
    fill_demo(app.state.db, therapists=1, patients=3, seed=5, analytics=False)
    with app.state.db.read() as s:
        stored = repo.find_responses(s, None, repo.ResponseQuery())
        codes = {patient.code for _, _, patient in stored}
        research_ids = {patient.research_id for _, _, patient in stored}
        client_forms = [r for r, _, _ in stored if (r.instrument_id, r.form_id) == CLIENT_WAI]
        totals = sorted(r.scores["wai_sr_total"] for r in client_forms)
    url = f"sqlite:///{path}"
    target = tmp_path / "clinic.json"
    done = run("fhir", "export", "--db", "--database-url", url, "-o", target)
    assert done.returncode == 0, done.stderr
    body = json.loads(target.read_text())
    assert structure_issues(body, "Bundle") == []
    responses = [e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == QR]
    assert len(responses) == len(stored)
    assert {r["subject"]["identifier"]["value"] for r in responses} == research_ids
    assert not codes & set(target.read_text().split('"')), "a patient code left the clinic"
    assert all("authored" not in r for r in responses)  # no calendar dates
    assert run("fhir", "import", target, "-o", tmp_path / "back.parquet").returncode == 0
    back = pd.read_parquet(tmp_path / "back.parquet")
    assert sorted(back["wai_sr_total"].dropna()) == totals  # the stored scores, recomputed

    identified = run("fhir", "export", "--db", "--identified", "--database-url", url)
    assert identified.returncode == 0, identified.stderr
    named = [
        e["resource"]
        for e in json.loads(identified.stdout)["entry"]
        if e["resource"]["resourceType"] == QR
    ]
    assert {r["subject"]["identifier"]["value"] for r in named} == codes
    assert all(len(r["authored"]) == 10 for r in named)  # the session dates, for an EHR
    with app.state.db.read() as s:
        kinds = s.scalars(
            sa.select(AuditEntry.entity_id).where(AuditEntry.entity == "fhir-bundle")
        ).all()
    assert sorted(kinds) == ["deidentified", "identified"]
    app.state.db.dispose()


def test_export_refuses_a_missing_database_and_ambiguous_sources(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    done = run("fhir", "export", "--db", "--database-url", f"sqlite:///{missing}")
    assert done.returncode == 2 and "no clinic database" in done.stderr
    assert not missing.exists()  # an export creates nothing
    assert run("fhir", "export", "--db", "x.csv").returncode == 2
    identified = run("fhir", "export", "x.csv", "--identified")
    assert identified.returncode == 2 and "only with --db" in identified.stderr
