"""Instrument roles, the monitoring order of alliance measures, and post-session signals.

The example file is docs/examples/identity_rupture.toml (a clinic-added question); its
sources and their levels are in docs/instruments.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from alliance import instruments
from alliance.instruments import (
    InstrumentDefinitionError,
    Signal,
    alliance_measures,
    get_instrument,
    list_instruments,
    parse_instrument,
    register,
)

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "identity_rupture.toml"
ALLIANCE = str(Path(sys.executable).parent / "alliance")


def run(*args: str | Path, home: Path) -> subprocess.CompletedProcess[str]:
    """The console script as a user runs it (as in tests/cli/test_score_cli.py)."""
    env = {**os.environ, "ALLIANCE_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [ALLIANCE, *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


def example_text() -> str:
    return EXAMPLE.read_text(encoding="utf-8")


def signal_block(**fields: str) -> str:
    """The example file with its [[signals]] entry rebuilt from ``fields`` (TOML values)."""
    base = {
        "id": '"identity_rupture"',
        "item": "1",
        "values": "[1]",
        "title": '"Felt dismissed"',
        "severity": '"warning"',
        "guidance": '"A prompt for reflection in our own words, two sentences. Really."',
        "sources": '["owen2014"]',
        "key_status": '"unverified"',
    }
    base.update(fields)
    head = example_text().split("[[signals]]")[0]
    return head + "[[signals]]\n" + "\n".join(f"{k} = {v}" for k, v in base.items()) + "\n"


# -- roles --------------------------------------------------------------------------------
def test_role_defaults_to_alliance_with_order_100() -> None:
    text = example_text().replace('role = "post_session"\n', "")
    text = text.replace('id = "identity_rupture"', 'id = "clinic_scale"', 1)
    inst = parse_instrument(text, "clinic_scale.toml")
    assert inst.role == "alliance"
    assert inst.monitoring_order == 100


def test_psq_is_post_session_and_the_others_alliance() -> None:
    roles = {i.id: i.role for i in list_instruments()}
    assert roles["psq"] == "post_session"
    assert {roles[i] for i in ("wai", "wai_s", "wai_sr", "haq2", "calpas", "srs")} == {"alliance"}


def test_an_unknown_role_is_refused_naming_the_field() -> None:
    text = example_text().replace('role = "post_session"', 'role = "rupture"')
    with pytest.raises(InstrumentDefinitionError, match=r"x\.toml: role: Input should be"):
        parse_instrument(text, "x.toml")


def test_alliance_measures_in_the_order_the_web_used() -> None:
    assert alliance_measures() == ("wai_sr", "wai_s", "wai", "haq2", "calpas", "srs")


def test_alliance_measures_include_installed_ones_in_their_order() -> None:
    wai_sr = get_instrument("wai_sr")
    register(wai_sr.model_copy(update={"id": "clinic_alliance", "monitoring_order": 2}))
    register(parse_instrument(example_text(), "identity_rupture.toml"))
    # Order 2 ties with wai_s: ties go by id ("clinic_alliance" < "wai_s").
    assert alliance_measures() == (
        "wai_sr",
        "clinic_alliance",
        "wai_s",
        "wai",
        "haq2",
        "calpas",
        "srs",
    )
    assert "identity_rupture" not in alliance_measures()


# -- signals ------------------------------------------------------------------------------
def test_the_example_file_parses_with_its_signal() -> None:
    inst = parse_instrument(example_text(), str(EXAMPLE))
    assert (inst.id, inst.role, inst.key_status) == (
        "identity_rupture",
        "post_session",
        "unverified",
    )
    assert [f.respondent for f in inst.forms] == ["client"]
    assert len(inst.items) == 1 and inst.item_scale(1).kind == "binary"
    assert inst.get_score("dismissed").kind == "item"
    assert inst.get_score("dismissed").key_status == "unverified"
    (signal,) = inst.signals
    assert isinstance(signal, Signal)
    assert (signal.id, signal.item, signal.values, signal.severity) == (
        "identity_rupture",
        1,
        (1.0,),
        "warning",
    )
    assert signal.key_status == "unverified"
    assert set(signal.sources) <= {c.key for c in inst.citations}
    assert {c.doi for c in inst.citations} >= {"10.1037/a0037420", "10.1080/14733145.2010.491551"}
    sentences = [s for s in signal.guidance.replace("?", ".").split(". ") if s.strip()]
    assert 2 <= len(sentences) <= 4
    assert inst.signals_on(1) == (signal,)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"item": "2"}, r"signals\.0 \('identity_rupture'\)\.item: names no item 2 "),
        ({"values": "[2]"}, r"signals\.0 \('identity_rupture'\)\.values: 2 is not an answer"),
        ({"values": "[0.5]"}, r"\.values: 0\.5 is not an answer on item 1's scale 0\.\.1"),
        ({"sources": '["nobody2020"]'}, r"\.sources: cites unknown \['nobody2020'\]"),
        ({"sources": "[]"}, r"signals\.0\.sources: Tuple should have at least 1 item"),
        ({"severity": '"red"'}, r"signals\.0\.severity: Input should be 'warning' or 'high'"),
        ({"id": '"Identity Rupture"'}, r"signals\.0\.id: String should match pattern"),
        ({"key_status": '"likely"'}, r"signals\.0\.key_status: Input should be"),
    ],
)
def test_a_bad_signal_is_refused_naming_file_field_and_rule(
    fields: dict[str, str], message: str
) -> None:
    with pytest.raises(InstrumentDefinitionError, match=rf"^clinic\.toml: .*{message}"):
        parse_instrument(signal_block(**fields), "clinic.toml")


def test_duplicate_signal_ids_are_refused() -> None:
    text = signal_block()
    second = text[text.index("[[signals]]") :]
    with pytest.raises(
        InstrumentDefinitionError,
        match=r"signals\.1 \('identity_rupture'\)\.id: signal ids must be unique",
    ):
        parse_instrument(text + second, "clinic.toml")


def test_signal_values_follow_the_item_scale_not_the_instruments() -> None:
    # psq: instrument scale 1..5, item 1 binary 0..1 -> 0 is fine on item 1, not on item 2.
    psq = (resources.files("alliance.instruments") / "data" / "psq.toml").read_text()
    entry = (
        '\n[[signals]]\nid = "s"\nitem = {item}\nvalues = [0]\ntitle = "t t"\n'
        'severity = "high"\nguidance = "Twenty characters or more of guidance."\n'
        'sources = ["muran2009"]\nkey_status = "unverified"\n'
    )
    assert parse_instrument(psq + entry.format(item=1), "psq.toml").signals[0].values == (0.0,)
    with pytest.raises(InstrumentDefinitionError, match=r"item 2's scale 1\.\.5 in steps of 1"):
        parse_instrument(psq + entry.format(item=2), "psq.toml")


# -- installing through the CLI ---------------------------------------------------------
def test_cli_installs_the_example_as_a_new_instrument(alliance_home: Path, tmp_path: Path) -> None:
    added = run("instruments", "add", EXAMPLE, home=alliance_home)
    assert added.returncode == 0, added.stderr
    assert "installed new instrument 'identity_rupture'" in added.stdout
    assert (alliance_home / "instruments" / "identity_rupture.toml").is_file()

    listed = run("instruments", "list", home=alliance_home)
    assert "identity_rupture" in listed.stdout.replace("…", "")
    shown = run("instruments", "show", "identity_rupture", home=alliance_home)
    assert shown.returncode == 0, shown.stderr
    assert "Role: post-session" in shown.stdout
    assert "Signal identity_rupture (warning)" in shown.stdout
    assert "[owen2014]" in shown.stdout and "10.1037/a0037420" in shown.stdout

    # `alliance score` infers it from its column, and still infers wai_sr beside it.
    answers = tmp_path / "post.csv"
    pd.DataFrame({"patient_id": ["a", "b"], "identity_rupture_1": [1, 0]}).to_csv(
        answers, index=False
    )
    scored = run("score", answers, "--format", "json", home=alliance_home)
    assert scored.returncode == 0, scored.stderr
    assert '"identity_rupture_dismissed":1.0' in scored.stdout
    assert "unverified" in scored.stderr
    both = tmp_path / "both.csv"
    pd.DataFrame(
        {
            "patient_id": ["a"],
            **{f"wai_sr_{i}": [4] for i in range(1, 13)},
            "identity_rupture_1": [1],
        }
    ).to_csv(both, index=False)
    scored = run("score", both, "--format", "json", home=alliance_home)
    assert scored.returncode == 0, scored.stderr
    assert '"wai_sr_total":4.0' in scored.stdout


def test_a_file_with_a_shipped_id_is_still_an_override(alliance_home: Path, tmp_path: Path) -> None:
    psq = (resources.files("alliance.instruments") / "data" / "psq.toml").read_text()
    key = tmp_path / "psq.toml"
    key.write_text(psq.replace('short_name = "PSQ rupture"', 'short_name = "PSQ (clinic)"'))
    added = run("instruments", "add", key, home=alliance_home)
    assert added.returncode == 0, added.stderr
    assert "it now overrides the shipped definition" in added.stdout
    shown = run("instruments", "show", "psq", home=alliance_home)
    assert "PSQ (clinic)" in shown.stdout


def test_a_broken_copy_exits_2_and_installs_nothing(alliance_home: Path, tmp_path: Path) -> None:
    broken = tmp_path / "identity_rupture.toml"
    broken.write_text(example_text().replace("values = [1]", "values = [3]"))
    done = run("instruments", "add", broken, home=alliance_home)
    assert done.returncode == 2
    assert "identity_rupture.toml" in done.stderr
    assert "signals.0 ('identity_rupture').values: 3 is not an answer" in done.stderr
    assert not (alliance_home / "instruments" / "identity_rupture.toml").exists()
    listed = run("instruments", "list", home=alliance_home)
    assert "identity" not in listed.stdout
    assert "identity_rupture" not in instruments._overrides
