"""``alliance instruments``: list, show, key overrides and text packs through the real script."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from instrument_files import keyed_calpas

from .test_score_cli import run


def test_list_names_every_instrument(alliance_home: Path) -> None:
    done = run("instruments", "list", home=alliance_home)
    assert done.returncode == 0
    for instrument_id in ("wai", "wai_s", "wai_sr", "haq2", "calpas", "srs", "psq"):
        assert instrument_id in done.stdout


def test_show_gives_items_keys_cutoffs_and_sources(alliance_home: Path) -> None:
    done = run("instruments", "show", "srs", home=alliance_home)
    assert done.returncode == 0
    assert "srs_total" in done.stdout
    assert "Cutoff srs_total (sum) flagged below 36" in done.stdout
    assert "Duncan, B. L." in done.stdout
    assert "Installed wording: none" in done.stdout
    unknown = run("instruments", "show", "nope", home=alliance_home)
    assert unknown.returncode == 2 and "unknown instrument 'nope'" in unknown.stderr


def test_text_pack_add_installs_and_rejects_mismatch(alliance_home: Path, tmp_path: Path) -> None:
    good = tmp_path / "wai_sr_en.csv"
    pd.DataFrame(
        {
            "instrument": "wai_sr",
            "language": "en",
            "item": range(1, 13),
            "text": [f"t{i}" for i in range(1, 13)],
        }
    ).to_csv(good, index=False)
    done = run("instruments", "text-pack", "add", good, home=alliance_home)
    assert done.returncode == 0, done.stderr
    assert "installed wai_sr (en): 12 items" in done.stdout
    assert (alliance_home / "textpacks" / "wai_sr" / "en.json").is_file()
    shown = run("instruments", "show", "wai_sr", home=alliance_home)
    assert "Installed wording: en" in shown.stdout

    bad = tmp_path / "wai_sr_fr.csv"
    pd.read_csv(good).assign(language="fr").head(11).to_csv(bad, index=False)
    refused = run("instruments", "text-pack", "add", bad, home=alliance_home)
    assert refused.returncode == 2
    assert "11 item(s) given, WAI-SR has 12; missing item(s) [12]" in refused.stderr
    assert not (alliance_home / "textpacks" / "wai_sr" / "fr.json").exists()


def test_a_key_override_makes_calpas_scorable(alliance_home: Path, tmp_path: Path) -> None:
    key = keyed_calpas(tmp_path)
    answers = tmp_path / "calpas.csv"
    pd.DataFrame({f"calpas_{i}": [(i - 1) // 6 + 1] for i in range(1, 25)}).to_csv(
        answers, index=False
    )
    before = run("score", answers, home=alliance_home)
    assert before.returncode == 2 and "install the manual's key" in before.stderr
    added = run("instruments", "add", key, home=alliance_home)
    assert added.returncode == 0, added.stderr
    after = run("score", answers, "--format", "json", home=alliance_home)
    assert after.returncode == 0, after.stderr
    assert '"calpas_total":2.5' in after.stdout  # mean of scale means (1 + 2 + 3 + 4) / 4


def test_broken_override_is_refused_with_its_field(alliance_home: Path, tmp_path: Path) -> None:
    key = tmp_path / "broken.toml"
    key.write_text('id = "wai_sr"\nname = 3\n')
    done = run("instruments", "add", key, home=alliance_home)
    assert done.returncode == 2
    assert "broken.toml" in done.stderr and "name" in done.stderr


def test_help_has_examples(alliance_home: Path) -> None:
    for args in (("--help",), ("score", "--help"), ("instruments", "show", "--help")):
        done = run(*args, home=alliance_home)
        assert done.returncode == 0
    assert "Examples" in run("score", "--help", home=alliance_home).stdout
