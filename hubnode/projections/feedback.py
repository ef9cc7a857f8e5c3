"""The feedback view: service ratings, community monitoring reports and ideas (DESIGN §7).

Every submission is owned by the hub that sent it and keyed by (submitting hub, its id);
a later event of that same hub with the same id revises it (a hub's events arrive in seq
order, so "the latest" is the same everywhere). A service's rating counts one rating per
rating hub: that hub's latest about the service, by its own seq (every rating stays
listed with its comment), so one hub sending 60 one-star ratings moves the average as one
hub, not as sixty. Per-service totals are integer sums and counts, which commute, so the
order in which different hubs' feedback arrives never matters, and a rating of a service
this hub has not heard of yet counts just the same. Averages are computed when read, from
the sums, with integer arithmetic.

Rules (a breach is ignored with a reason, the same on every hub): a revision keeps what
its id is about — the same service for a rating, the same subject for a monitoring form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from hubnode.events.feedback import (
    GRADES,
    FeedbackSubmitted,
    IdeaSubmitted,
    MonitoringRecorded,
    ServiceRef,
)
from hubnode.events.ids import hub_display, parse_hub
from hubnode.events.verify import Event
from hubnode.projections.base import Projection, ProjectionTx
from hubnode.projections.runner import ProjectionRunner

NAME = "feedback"


class FeedbackProjection(Projection):
    name: ClassVar[str] = NAME
    version: ClassVar[int] = 2
    kinds: ClassVar[frozenset[str]] = frozenset(
        {"feedback.submitted", "monitoring.recorded", "idea.submitted"}
    )
    tables: ClassVar[dict[str, str]] = {
        "ratings": "submitter BLOB NOT NULL, feedback_id TEXT NOT NULL, "
        "service_hub BLOB NOT NULL, service_id TEXT NOT NULL, rating INTEGER NOT NULL, "
        "comment TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL, "
        "revisions INTEGER NOT NULL, PRIMARY KEY (submitter, feedback_id)",
        # Per service, the one rating of each rating hub that counts: its latest by seq.
        "counted": "service_hub BLOB NOT NULL, service_id TEXT NOT NULL, "
        "submitter BLOB NOT NULL, feedback_id TEXT NOT NULL, rating INTEGER NOT NULL, "
        "PRIMARY KEY (service_hub, service_id, submitter) WITHOUT ROWID",
        "services": "service_hub BLOB NOT NULL, service_id TEXT NOT NULL, "
        "count INTEGER NOT NULL, total INTEGER NOT NULL, PRIMARY KEY (service_hub, service_id) "
        "WITHOUT ROWID",
        "forms": "submitter BLOB NOT NULL, form_id TEXT NOT NULL, subject TEXT NOT NULL, "
        "period TEXT NOT NULL, comment TEXT NOT NULL, seq INTEGER NOT NULL, "
        "ts INTEGER NOT NULL, PRIMARY KEY (submitter, form_id)",
        "grades": "submitter BLOB NOT NULL, form_id TEXT NOT NULL, aspect TEXT NOT NULL, "
        "grade TEXT NOT NULL, PRIMARY KEY (submitter, form_id, aspect) WITHOUT ROWID",
        "ideas": "submitter BLOB NOT NULL, idea_id TEXT NOT NULL, title TEXT NOT NULL, "
        "description TEXT NOT NULL, tags TEXT NOT NULL, area TEXT NOT NULL, "
        "seq INTEGER NOT NULL, ts INTEGER NOT NULL, PRIMARY KEY (submitter, idea_id)",
    }

    def apply(self, event: Event, tx: ProjectionTx) -> None:
        body = event.body
        if isinstance(body, FeedbackSubmitted):
            self._rating(event, body, tx)
        elif isinstance(body, MonitoringRecorded):
            self._form(event, body, tx)
        elif isinstance(body, IdeaSubmitted):
            tx.execute(
                "INSERT OR REPLACE INTO {ideas} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event.hub,
                    body.idea,
                    body.title,
                    body.description,
                    json.dumps(list(body.tags)),
                    body.area,
                    event.seq,
                    event.ts,
                ),
            )

    def _rating(self, event: Event, body: FeedbackSubmitted, tx: ProjectionTx) -> None:
        service_hub = parse_hub(body.service.hub)
        key = (event.hub, body.feedback)
        old = tx.one(
            "SELECT service_hub, service_id, revisions FROM {ratings} "
            "WHERE submitter = ? AND feedback_id = ?",
            key,
        )
        if old is None:
            revisions = 0
        else:
            old_hub, old_id, revisions = old
            if (old_hub, old_id) != (service_hub, body.service.id):
                tx.ignore(
                    event,
                    f"feedback {body.feedback} is about {subject_of(old_hub, old_id)}; "
                    "a revision cannot move it to another service",
                )
                return
            revisions += 1
        self._count(event, body, service_hub, tx)
        tx.execute(
            "INSERT OR REPLACE INTO {ratings} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *key,
                service_hub,
                body.service.id,
                body.rating,
                body.comment,
                event.seq,
                event.ts,
                revisions,
            ),
        )

    def _count(
        self, event: Event, body: FeedbackSubmitted, service_hub: bytes, tx: ProjectionTx
    ) -> None:
        """Make this rating its hub's one counted rating of the service.

        A hub's events are applied in its seq order, so the event at hand is that hub's
        latest: it replaces whatever the hub had counted for the service before.
        """
        service = (service_hub, body.service.id)
        before = tx.one(
            "SELECT rating FROM {counted} WHERE service_hub = ? AND service_id = ? "
            "AND submitter = ?",
            (*service, event.hub),
        )
        if before is None:
            tx.execute(
                "INSERT INTO {services} VALUES (?, ?, 1, ?) ON CONFLICT DO UPDATE SET "
                "count = count + 1, total = total + excluded.total",
                (*service, body.rating),
            )
        else:
            tx.execute(
                "UPDATE {services} SET total = total + ? WHERE service_hub = ? AND service_id = ?",
                (body.rating - before[0], *service),
            )
        tx.execute(
            "INSERT OR REPLACE INTO {counted} VALUES (?, ?, ?, ?, ?)",
            (*service, event.hub, body.feedback, body.rating),
        )

    def _form(self, event: Event, body: MonitoringRecorded, tx: ProjectionTx) -> None:
        subject = subject_key(body.service, body.topic)
        key = (event.hub, body.form)
        old = tx.one("SELECT subject FROM {forms} WHERE submitter = ? AND form_id = ?", key)
        if old is not None and old[0] != subject:
            tx.ignore(
                event,
                f"monitoring form {body.form} is about {old[0]}; "
                "a revision cannot move it to another subject",
            )
            return
        tx.execute(
            "INSERT OR REPLACE INTO {forms} VALUES (?, ?, ?, ?, ?, ?, ?)",
            (*key, subject, body.period, body.comment, event.seq, event.ts),
        )
        if old is not None:  # a revision: its grades replace the form's
            tx.execute("DELETE FROM {grades} WHERE submitter = ? AND form_id = ?", key)
        tx.executemany(
            "INSERT INTO {grades} VALUES (?, ?, ?, ?)",
            [(*key, line.aspect, line.grade) for line in body.aspects],
        )


PROJECTIONS = (FeedbackProjection,)


# -- reading ----------------------------------------------------------------------------


def subject_of(hub: bytes, service_id: str) -> str:
    """How a service is written for people and on the command line: ``hub:…:SERVICE``."""
    return f"{hub_display(hub)}:{service_id}"


def subject_key(service: ServiceRef | None, topic: str | None) -> str:
    """The subject of a monitoring form as stored: ``hub:…:SERVICE`` or the topic."""
    if service is not None:
        return f"{service.hub}:{service.id}"
    assert topic is not None
    return topic


def average(total: int, count: int) -> float:
    """``total / count`` to 2 decimals, halves rounded up, in integer arithmetic."""
    hundredths = (total * 200 + count) // (2 * count)
    return hundredths / 100


class ServiceRating(NamedTuple):
    ratings: int
    """How many ratings count: one per rating hub, its latest about the service."""
    average: float


def service_summaries(runner: ProjectionRunner) -> dict[tuple[bytes, str], ServiceRating]:
    """(publishing hub, service id) → (number of ratings, average to 2 decimals).

    For other views (directory search shows it beside each service). Services nobody
    has rated are absent.
    """
    return {
        (hub, service): ServiceRating(count, average(total, count))
        for hub, service, count, total in runner.query(
            NAME, "SELECT service_hub, service_id, count, total FROM {services} WHERE count > 0"
        )
    }


@dataclass(frozen=True)
class Comment:
    submitter: str
    feedback_id: str
    rating: int
    comment: str
    ts: int
    revised: bool
    counted: bool
    """Whether this is its hub's latest rating of the service, the one that counts."""


def service_feedback(runner: ProjectionRunner, hub: bytes, service_id: str) -> list[Comment]:
    """Every rating of one service, oldest first (by the authors' clocks: display only).

    Each says whether it is the one its hub has counted (its latest about the service).
    """
    rows = runner.query(
        NAME,
        "SELECT r.submitter, r.feedback_id, r.rating, r.comment, r.ts, r.revisions, "
        "c.submitter IS NOT NULL FROM {ratings} r LEFT JOIN {counted} c "
        "ON c.service_hub = r.service_hub AND c.service_id = r.service_id "
        "AND c.submitter = r.submitter AND c.feedback_id = r.feedback_id "
        "WHERE r.service_hub = ? AND r.service_id = ? ORDER BY r.ts, r.submitter, r.feedback_id",
        (hub, service_id),
    )
    return [
        Comment(hub_display(sub), fid, rating, comment, ts, revisions > 0, bool(counted))
        for sub, fid, rating, comment, ts, revisions, counted in rows
    ]


@dataclass(frozen=True)
class AspectTally:
    aspect: str
    counts: dict[str, int]
    """Grade (A-D) → how many forms gave it."""


@dataclass(frozen=True)
class MonitoringReport:
    subject: str
    period: str
    forms: int
    aspects: list[AspectTally]


def monitoring_reports(
    runner: ProjectionRunner, subject: str | None = None, period: str | None = None
) -> list[MonitoringReport]:
    """Counts per grade per aspect, for each (subject, period), sorted by subject, period."""
    where, params = _filters(subject, period, "")
    joined_where, _ = _filters(subject, period, "f.")
    forms = runner.query(
        NAME,
        f"SELECT subject, period, COUNT(*) FROM {{forms}}{where} "
        "GROUP BY subject, period ORDER BY subject, period",
        params,
    )
    tallies = runner.query(
        NAME,
        "SELECT f.subject, f.period, g.aspect, g.grade, COUNT(*) FROM {forms} f "
        "JOIN {grades} g ON g.submitter = f.submitter AND g.form_id = f.form_id"
        f"{joined_where} "
        "GROUP BY f.subject, f.period, g.aspect, g.grade",
        params,
    )
    by_report: dict[tuple[str, str], dict[str, dict[str, int]]] = {}
    for subj, per, aspect, grade, n in tallies:
        counts = by_report.setdefault((subj, per), {}).setdefault(aspect, dict.fromkeys(GRADES, 0))
        counts[grade] = n
    return [
        MonitoringReport(
            subj,
            per,
            n,
            [AspectTally(a, c) for a, c in sorted(by_report.get((subj, per), {}).items())],
        )
        for subj, per, n in forms
    ]


def _filters(subject: str | None, period: str | None, alias: str) -> tuple[str, list[str]]:
    clauses, params = [], []
    if subject is not None:
        clauses.append(f"{alias}subject = ?")
        params.append(subject)
    if period is not None:
        clauses.append(f"{alias}period = ?")
        params.append(period)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


@dataclass(frozen=True)
class Idea:
    submitter: str
    idea_id: str
    title: str
    description: str
    tags: list[str]
    area: str
    ts: int


def ideas(runner: ProjectionRunner, tag: str | None = None) -> list[Idea]:
    """Every idea (or those with ``tag``), oldest first by the authors' clocks."""
    rows = runner.query(
        NAME,
        "SELECT submitter, idea_id, title, description, tags, area, ts FROM {ideas} "
        "ORDER BY ts, submitter, idea_id",
    )
    found = [
        Idea(hub_display(sub), iid, title, desc, json.loads(tags), area, ts)
        for sub, iid, title, desc, tags, area, ts in rows
    ]
    return [i for i in found if tag is None or tag in i.tags]


def own_rating_subject(runner: ProjectionRunner, hub: bytes, feedback_id: str) -> str | None:
    """The service (``hub:…:SERVICE``) this hub's feedback ``feedback_id`` is about, if any."""
    rows = runner.query(
        NAME,
        "SELECT service_hub, service_id FROM {ratings} WHERE submitter = ? AND feedback_id = ?",
        (hub, feedback_id),
    )
    return subject_of(*rows[0]) if rows else None


def own_form_subject(runner: ProjectionRunner, hub: bytes, form_id: str) -> str | None:
    """The subject this hub's monitoring form ``form_id`` is about, if any."""
    rows = runner.query(
        NAME, "SELECT subject FROM {forms} WHERE submitter = ? AND form_id = ?", (hub, form_id)
    )
    return str(rows[0][0]) if rows else None
