"""``alliance fhir``: Questionnaires out, a response table to a Bundle and back, and the
exit code 2 with location and rule for a bad Bundle (nothing written)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from alliance.fhir._common import structure_issues

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
