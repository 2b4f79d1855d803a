"""The clinic finds instruments as every command does (issue 17): a form that cannot be
scored (the CALPAS without its key) is refused when an admin schedules it, naming why;
once the clinic installs the key, the same form is scheduled and its answers are scored."""

from __future__ import annotations

from pathlib import Path

from instrument_files import keyed_calpas
from sqlalchemy import select
from webclinic import Browser, Clinic, login

from alliance.io.home import install_instrument
from alliance.store.models import Patient


def _add(admin: Browser, clinic: Clinic, code: str):  # type: ignore[no-untyped-def]
    return admin.post(
        "/admin/patients",
        {
            "code": code,
            "therapist_id": str(clinic.users["t1"]),
            "language": "en",
            "schedule": ["calpas:patient"],
            "every": "1",
        },
    )


def test_an_unscorable_form_is_refused_at_scheduling_until_its_key_is_installed(
    sqlite_clinic: Clinic, tmp_path: Path
) -> None:
    admin = login(sqlite_clinic.app, "admin")
    page = admin.get("/admin").text
    assert 'value="calpas:patient" disabled' in page
    refused = _add(admin, sqlite_clinic, "CAL-1")
    assert refused.status_code == 422
    assert "schedule: calpas:patient: CALPAS-P cannot be scored" in refused.text
    with sqlite_clinic.db.read() as s:
        assert s.scalar(select(Patient).where(Patient.code == "CAL-1")) is None

    install_instrument(keyed_calpas(tmp_path))  # as `alliance instruments add` does
    assert 'value="calpas:patient" disabled' not in admin.get("/admin").text
    assert _add(admin, sqlite_clinic, "CAL-1").status_code == 200
    with sqlite_clinic.db.read() as s:
        patient = s.scalar(select(Patient).where(Patient.code == "CAL-1"))
        assert patient is not None
        assert [(e.instrument_id, e.form_id) for e in patient.schedule] == [("calpas", "patient")]
