"""Feedback kinds: ratings of services, community monitoring forms and ideas.

From the seeds: people rate the services they used (1 to 5, with a short comment);
street reps and community champions fill in monitoring forms that grade named aspects of
a neighbourhood agreement or a service from A ("no problem at all") to D ("a really big
issue which is unacceptable"); and anyone may put forward an idea for a new service.

A rating or form is about a service by its publishing hub and service id: the service
need not be known here yet (the directory may arrive later or never). Each submission
carries an id chosen by the submitting hub; the same hub sending the same id again
revises it. Comments are short and hold no personal data (names, phone numbers, emails).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from hubnode.events.fields import REFUSED_CHARS, HubId, LocalId, line, text
from hubnode.events.kinds import KINDS, Body

Grade = Literal["A", "B", "C", "D"]
GRADES: tuple[Grade, ...] = ("A", "B", "C", "D")
GRADE_MEANINGS: dict[Grade, str] = {
    "A": "no problem at all",
    "B": "a bit of an issue but acceptable",
    "C": "problem becoming unacceptable",
    "D": "a really big issue, unacceptable",
}

ServiceId = Annotated[
    str,
    msgspec.Meta(
        pattern=rf"^[^\s{REFUSED_CHARS}]{{1,128}}\Z", description="the publisher's service id"
    ),
]
Rating = Annotated[int, msgspec.Meta(ge=1, le=5, description="1 (poor) to 5 (excellent)")]
Comment = Annotated[str, text(max_length=500)]
Aspect = Annotated[str, line(min_length=1, max_length=80)]
Topic = Annotated[str, line(min_length=1, max_length=120)]
Period = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[0-9]{4}(-(0[1-9]|1[0-2])|-Q[1-4])?\Z",
        description="a year (2026), quarter (2026-Q4) or month (2026-11)",
    ),
]
Title = Annotated[str, line(min_length=1, max_length=120)]
Description = Annotated[str, text(min_length=1, max_length=2000)]
Tag = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,39}\Z")]
Area = Annotated[str, line(max_length=120)]


class ServiceRef(msgspec.Struct, frozen=True, kw_only=True):
    """A service by its publishing hub and the id that hub gave it."""

    hub: HubId
    id: ServiceId


class AspectGrade(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a monitoring form: an aspect and its grade A-D."""

    aspect: Aspect
    grade: Grade


class FeedbackSubmitted(Body, frozen=True, kw_only=True):
    """A rating (1-5) of a service with an optional short comment; same id again revises it."""

    feedback: LocalId
    service: ServiceRef
    rating: Rating
    comment: Comment = ""


class MonitoringRecorded(Body, frozen=True, kw_only=True):
    """A community monitoring form: grades A-D of named aspects of a subject for a period."""

    form: LocalId
    service: ServiceRef | None = None
    topic: Topic | None = None
    """A named local agreement or topic, when the form is not about one service."""
    period: Period
    aspects: Annotated[tuple[AspectGrade, ...], msgspec.Meta(min_length=1, max_length=50)]
    comment: Comment = ""

    def __post_init__(self) -> None:
        if (self.service is None) == (self.topic is None):
            raise ValueError("a monitoring form is about either a service or a topic, not both")
        if self.topic is not None and self.topic != self.topic.strip():
            raise ValueError(f"topic {self.topic!r} must not start or end with spaces")
        seen: set[str] = set()
        for graded in self.aspects:
            if graded.aspect != graded.aspect.strip():
                raise ValueError(f"aspect {graded.aspect!r} must not start or end with spaces")
            if graded.aspect.casefold() in seen:
                raise ValueError(f"aspect {graded.aspect!r} is graded twice; grade each once")
            seen.add(graded.aspect.casefold())


class IdeaSubmitted(Body, frozen=True, kw_only=True):
    """An idea for a new or better service; same id again revises it."""

    idea: LocalId
    title: Title
    description: Description
    tags: Annotated[tuple[Tag, ...], msgspec.Meta(max_length=10)] = ()
    area: Area = ""

    def __post_init__(self) -> None:
        if len(set(self.tags)) != len(self.tags):
            raise ValueError(f"tags must not repeat: {list(self.tags)}")


KINDS.register("feedback.submitted", FeedbackSubmitted, max_body=4096)
KINDS.register("monitoring.recorded", MonitoringRecorded, max_body=24576)
KINDS.register("idea.submitted", IdeaSubmitted, max_body=16384)
