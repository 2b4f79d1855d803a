"""Text packs: a clinic's official wordings, validated against the instrument and installed."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from alliance.instruments.textpack import TextPackError
from alliance.io.textpacks import install_text_pack, installed_languages, installed_text


def pack_rows(n: int = 4, instrument: str = "srs", language: str = "en") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "instrument": instrument,
            "language": language,
            "item": range(1, n + 1),
            "text": [f"wording {i}" for i in range(1, n + 1)],
        }
    )


def test_csv_pack_installs_and_is_found(tmp_path: Path) -> None:
    path = tmp_path / "srs_en.csv"
    pack_rows().to_csv(path, index=False)
    (pack,) = install_text_pack(path)
    assert (pack.instrument, pack.language) == ("srs", "en")
    assert installed_languages("srs") == ["en"]
    assert installed_text("srs", "en") == {i: f"wording {i}" for i in range(1, 5)}
    assert installed_text("srs", "de") is None


def test_json_pack_in_object_form(tmp_path: Path) -> None:
    path = tmp_path / "pack.json"
    body = {
        "instrument": "wai_sr",
        "language": "de-CH",
        "items": {str(i): f"t{i}" for i in range(1, 13)},
    }
    path.write_text(json.dumps(body))
    install_text_pack(path)
    assert installed_languages("wai_sr") == ["de-CH"]


def test_item_mismatch_is_named_and_nothing_is_installed(tmp_path: Path) -> None:
    rows = pd.concat([pack_rows(3), pack_rows(1).assign(item=7)])
    path = tmp_path / "bad.csv"
    rows.to_csv(path, index=False)
    with pytest.raises(
        TextPackError,
        match=r"srs \(en\): 4 item\(s\) given, SRS has 4; "
        r"missing item\(s\) \[4\]; unknown item\(s\) \[7\]",
    ):
        install_text_pack(path)
    assert installed_languages("srs") == []


def test_every_problem_is_reported_together(tmp_path: Path) -> None:
    rows = pack_rows(4)
    rows.loc[1, "text"] = " "
    rows.loc[2, "item"] = 1
    path = tmp_path / "bad.csv"
    rows.to_csv(path, index=False)
    with pytest.raises(TextPackError) as caught:
        install_text_pack(path)
    message = str(caught.value)
    assert "item(s) [1] appear more than once" in message
    assert "row(s) 2: text is empty" in message
    assert "missing item(s) [3]" in message


def test_unknown_instrument_and_bad_language(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    pd.concat([pack_rows(4, language="English"), pack_rows(2, instrument="phq9")]).to_csv(
        path, index=False
    )
    with pytest.raises(TextPackError) as caught:
        install_text_pack(path)
    assert "unknown instrument 'phq9'" in str(caught.value)
    assert "language 'English' is not a language tag" in str(caught.value)


def test_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    pack_rows().drop(columns="text").to_csv(path, index=False)
    with pytest.raises(TextPackError, match=r"lacks column\(s\) \['text'\]"):
        install_text_pack(path)
