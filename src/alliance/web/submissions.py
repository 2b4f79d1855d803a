"""Group commit of patient submissions.

Requests hand their answers to one writer thread per process and wait. The writer takes
every submission waiting at that moment (up to ``MAX_BATCH``), looks their links up in one
query, validates and scores each instrument's forms in one vectorised call of the scoring
core (:func:`alliance.web.forms.score_batch`), and stores all valid ones in one transaction:
links consumed (atomically, so a link works once), responses, audit entries. Only after the
commit does any waiting request get its answer, so every acknowledged submission is durable.
A rejected submission changes nothing; the others in its batch are unaffected.

After the commit the writer hands the batch's patients to ``on_commit`` (the app's
:class:`alliance.web.monitoring.AnalyticsWorker`), which only queues them: the analytics
run in their own thread and never delay an acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import bindparam, exists, insert, select, update
from sqlalchemy.orm import Session

from alliance.store import repo
from alliance.store.db import Database
from alliance.store.models import (
    AuditEntry,
    Link,
    Patient,
    Response,
    ScheduleEntry,
    TherapySession,
    utcnow,
)
from alliance.web.forms import (
    FieldIssue,
    Scored,
    SubmissionInvalid,
    form_languages,
    language_issue,
    score_batch,
)

log = logging.getLogger("alliance.web")
MAX_BATCH = 256


# The batch's statements, built once: SQLAlchemy then reuses their compiled form, and
# running them on the session's connection skips the ORM layer, whose per-statement cost
# exceeded the database's own for these small batches.
_LINKS = (
    select(
        Link.token_hash,
        Link.id,
        Link.session_id,
        Link.expires_at,
        Link.used_at,
        Link.kiosk,
        TherapySession.number,
        TherapySession.patient_id,
        Patient.language,
        ScheduleEntry.id.label("entry_id"),
        ScheduleEntry.instrument_id,
        ScheduleEntry.form_id,
        ScheduleEntry.every,
        exists()
        .where(Response.session_id == Link.session_id, Response.respondent == "client")
        .label("answered"),
    )
    .join(TherapySession, Link.session_id == TherapySession.id)
    .join(Patient, TherapySession.patient_id == Patient.id)
    .outerjoin(
        ScheduleEntry,
        (ScheduleEntry.patient_id == Patient.id) & (ScheduleEntry.respondent == "client"),
    )
    .where(Link.token_hash.in_(bindparam("hashes", expanding=True)))
    .order_by(Link.id, ScheduleEntry.id)
)
_CONSUME = (
    update(Link)
    .where(Link.id.in_(bindparam("links", expanding=True)), Link.used_at.is_(None))
    .values(used_at=bindparam("now"))
    .returning(Link.id)
)
_INSERT_RESPONSES = insert(Response)
_INSERT_AUDITS = insert(AuditEntry)
_MARK_STALE = (
    update(Patient)
    .where(Patient.id.in_(bindparam("patients", expanding=True)))
    .values(alerts_stale=True)
)


@dataclass
class Stored:
    """The submission is committed."""

    kiosk: bool
    forms: list[str]


@dataclass
class Invalid:
    """The answers broke the instruments' rules; nothing was stored."""

    issues: list[FieldIssue]


@dataclass
class LinkProblem:
    """The link is unknown, used or expired (``reason``), or the forms were already done."""

    reason: str


Outcome = Stored | Invalid | LinkProblem


@dataclass
class _Job:
    token: str
    data: Mapping[str, str]
    source: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Outcome]
    token_hash: str = ""


@dataclass
class _LinkInfo:
    link_id: int
    session_id: int
    number: int
    patient_id: int
    language: str
    kiosk: bool
    answered: bool  # the session's client forms are already in
    entries: list[tuple[str, str]] = field(default_factory=list)


def _resolve(future: asyncio.Future[Outcome], outcome: Outcome | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class SubmissionWriter:
    """One writer thread per process that validates, scores and commits in batches."""

    def __init__(
        self,
        db: Database,
        max_batch: int = MAX_BATCH,
        on_commit: Callable[[Iterable[int]], None] | None = None,
    ) -> None:
        self.db = db
        self.max_batch = max_batch
        self.on_commit = on_commit
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def submit(self, token: str, data: Mapping[str, str], source: str) -> Outcome:
        """Queue one submission and wait until it is committed or rejected."""
        self._ensure_thread()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._queue.put(_Job(token, data, source, loop, future, repo.hash_token(token)))
        return await future

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="alliance-submissions", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            outcomes = self._process_or_split(batch)
            for job, outcome in zip(batch, outcomes, strict=True):
                job.loop.call_soon_threadsafe(_resolve, job.future, outcome)

    def _process_or_split(self, batch: list[_Job]) -> list[Outcome | BaseException]:
        """Process the batch; if it fails as a whole (nothing committed), retry each
        submission on its own so that one bad apple cannot fail its neighbours."""
        try:
            return list(self.process(batch))
        except Exception as exc:
            log.error("submission batch of %d failed (%s)", len(batch), type(exc).__name__)
            if len(batch) == 1:
                return [exc]
        return [self._process_or_split([job])[0] for job in batch]

    # -- one batch -----------------------------------------------------------------------
    def process(self, batch: list[_Job]) -> list[Outcome]:
        """Validate, score and store a batch in one transaction; one outcome per job."""
        outcomes: list[Outcome | None] = [None] * len(batch)
        patients: set[int] = set()
        with self.db.write() as s:
            links = self._links(s, [job.token_hash for job in batch])
            seen: set[str] = set()
            usable: list[int] = []
            for i, job in enumerate(batch):
                info = links.get(job.token_hash)
                if isinstance(info, str):
                    outcomes[i] = LinkProblem(info)
                elif job.token_hash in seen:
                    outcomes[i] = LinkProblem("used")
                else:
                    seen.add(job.token_hash)
                    usable.append(i)
            scored = self._score(batch, usable, links, outcomes)
            if scored:
                patients = self._store(s, batch, scored, links, outcomes)
        if patients and self.on_commit is not None:
            self._committed(patients)
        return [o if o is not None else LinkProblem("used") for o in outcomes]

    def _committed(self, patients: set[int]) -> None:
        """Hand the committed batch's patients on; a failure here never fails the batch."""
        try:
            assert self.on_commit is not None
            self.on_commit(patients)
        except Exception as exc:  # the answers are stored; their analytics stay stale
            log.warning("queueing analytics failed (%s)", type(exc).__name__)

    def _links(self, s: Session, hashes: list[str]) -> dict[str, _LinkInfo | str]:
        """Usable links by token hash (with the client forms due), or the reason not;
        one query (links, sessions, patients, their client schedule and whether the
        session's client forms are already in)."""
        now = utcnow()
        found: dict[str, _LinkInfo | str] = {h: "unknown" for h in hashes}
        for row in s.connection().execute(_LINKS, {"hashes": list(found)}):
            if row.used_at is not None:
                found[row.token_hash] = "used"
            elif repo.aware(row.expires_at) < now:
                found[row.token_hash] = "expired"
            else:
                info = found[row.token_hash]
                if not isinstance(info, _LinkInfo):
                    info = _LinkInfo(
                        row.id,
                        row.session_id,
                        row.number,
                        row.patient_id,
                        row.language,
                        row.kiosk,
                        bool(row.answered),
                    )
                    found[row.token_hash] = info
                due = row.entry_id is not None and (row.number - 1) % max(row.every, 1) == 0
                if due:
                    info.entries.append((row.instrument_id, row.form_id))
        return found

    def _score(
        self,
        batch: list[_Job],
        usable: list[int],
        links: dict[str, _LinkInfo | str],
        outcomes: list[Outcome | None],
    ) -> dict[int, list[tuple[str, str, Scored]]]:
        """Score every due form of every usable job, one core call per instrument form."""
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i in usable:
            info = links[batch[i].token_hash]
            assert isinstance(info, _LinkInfo)
            for key in info.entries:
                groups[key].append(i)
        results: dict[int, list[tuple[str, str, Scored]]] = {i: [] for i in usable}
        issues: dict[int, list[FieldIssue]] = defaultdict(list)
        for i in usable:
            info = links[batch[i].token_hash]
            assert isinstance(info, _LinkInfo)
            offered = form_languages((key[0] for key in info.entries), info.language)
            wrong = language_issue(batch[i].data.get("lang"), offered)
            if wrong:
                issues[i].append(wrong)
        for (instrument_id, form_id), members in groups.items():
            verdicts = score_batch(instrument_id, form_id, [batch[i].data for i in members])
            for i, verdict in zip(members, verdicts, strict=True):
                if isinstance(verdict, SubmissionInvalid):
                    issues[i].extend(verdict.issues)
                else:
                    results[i].append((instrument_id, form_id, verdict))
        for i, found in issues.items():
            outcomes[i] = Invalid(found)
            results.pop(i, None)
        return results

    def _store(
        self,
        s: Session,
        batch: list[_Job],
        scored: dict[int, list[tuple[str, str, Scored]]],
        links: dict[str, _LinkInfo | str],
        outcomes: list[Outcome | None],
    ) -> set[int]:
        """Consume the links, insert responses and audit entries (caller's transaction);
        returns the patients whose answers were stored."""
        infos = {i: links[batch[i].token_hash] for i in scored}
        conn = s.connection()
        wanted: dict[int, int] = {}
        for i, info in infos.items():
            assert isinstance(info, _LinkInfo)
            if info.answered or info.session_id in wanted.values():
                outcomes[i] = LinkProblem("done")
            else:
                wanted[i] = info.session_id
        link_ids = [infos[i].link_id for i in wanted]  # type: ignore[union-attr]
        consumed = (
            set(conn.execute(_CONSUME, {"links": link_ids, "now": utcnow()}).scalars())
            if link_ids
            else set()
        )
        responses, audits, patients = [], [], set[int]()
        now = utcnow()
        for i in wanted:
            info = infos[i]
            assert isinstance(info, _LinkInfo)
            if info.link_id not in consumed:
                outcomes[i] = LinkProblem("used")
                continue
            language = batch[i].data.get("lang") or info.language  # checked in _score
            source = "kiosk" if info.kiosk else batch[i].source
            for instrument_id, form_id, result in scored[i]:
                responses.append(
                    _response_row(info, instrument_id, form_id, result, source, language, now)
                )
            audits.append(_audit_row(info, now))
            patients.add(info.patient_id)
            outcomes[i] = Stored(info.kiosk, [r[0] for r in scored[i]])
        if responses:
            conn.execute(_INSERT_RESPONSES, responses)
            conn.execute(_INSERT_AUDITS, audits)
            conn.execute(_MARK_STALE, {"patients": list(patients)})
        return patients


def _response_row(
    info: _LinkInfo,
    instrument_id: str,
    form_id: str,
    result: Scored,
    source: str,
    language: str,
    now: Any,
) -> dict[str, Any]:
    return {
        "session_id": info.session_id,
        "patient_id": info.patient_id,
        "instrument_id": instrument_id,
        "form_id": form_id,
        "respondent": "client",
        "language": language[:16],
        "items": result.items,
        "scores": result.scores,
        "source": source,
        "submitted_at": now,
    }


def _audit_row(info: _LinkInfo, now: Any) -> dict[str, Any]:
    return {
        "at": now,
        "user_id": None,
        "actor": "patient-link",
        "action": "submit",
        "entity": "response",
        "entity_id": str(info.session_id),
        "patient_id": info.patient_id,
        "detail": "",
    }


_ = date
