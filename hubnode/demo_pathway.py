"""The pathway story of ``hubnode demo`` (issue 6): two people come to the first hub.

Person 1 cares for her husband and agrees that the second hub — whose carers' café the
shared work published — may hold her details. The first hub (a point of access) logs her
enquiry and refers her to the café; the second hub accepts the referral and completes it,
recording the outcome; at follow-up she is not satisfied, so the first hub opens an
advocacy case, and later closes it. Person 2 needs transport and agrees that the third hub
may hold his details; the first hub refers him there and the third hub accepts. Then he
asks to be erased: every hub that held his key destroys it and confirms.

Every step goes through the actions the ``hubnode`` commands use
(:mod:`hubnode.casework`), at the hub that acts, over the log the demo holds open. The
nodes do the rest as they would for a command: they gossip the events, open the key boxes
sealed to their hub and honour the erasure (rotating their seal key and confirming). At the
end each hub says what it can read of each person.

Hubs are numbered from 0 here, as in :mod:`hubnode.demo_scenario`; the story needs three.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from rich import box
from rich.markup import escape
from rich.table import Table

from hubnode.casework import Casework
from hubnode.events.pathway import SubjectErasureConfirmed
from hubnode.projections.pathway_read import SubjectInfo

CAFE: Final = "carers-cafe"
"""The second hub's service (published in the shared work) that person 1 is referred to."""
ERASE_REASON: Final = "the person asked (UK GDPR art. 17)"


@dataclass(frozen=True)
class StoryStep:
    what: str
    """What happens, in a few words (rich markup escaped)."""
    act: Callable[[], Awaitable[None]]
    """The actions, at the hubs that make them."""
    ready: Callable[[], Awaitable[bool]] | None = None
    """What the nodes must have done, besides every hub holding every event, before the
    next step (open a key box, confirm an erasure)."""
    waiting_for: str = "convergence"


def _clock(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%H:%M:%S UTC")


class PathwayStory:
    """The story over the casework of each hub (``keep_keys=False``: the nodes keep the
    keyrings). Run :meth:`steps` in order, waiting after each; then :meth:`readers`."""

    def __init__(self, hubs: Sequence[tuple[str, Casework]]) -> None:
        assert len(hubs) >= 3, "the story needs three hubs"
        self.names = [escape(name) for name, _ in hubs]
        self.cw = [cw for _, cw in hubs]
        self.subjects: list[str] = []
        self._case = ""

    def _named(self, text: str) -> str:
        return text.format(*self.names)

    def steps(self) -> list[StoryStep]:
        a, b, c = self.cw[:3]
        referrals: list[tuple[bytes, str]] = []

        async def log_enquiries() -> None:
            first = await a.log_enquiry(
                name="Maureen Atkinson",
                phone="01325 000211",
                dob="1958-04-12",
                notes="cares for her husband since his stroke",
                needs=["carers"],
                channel="walk-in",
                area="DL3",
                consent=[b.me],
                purposes=["referral", "follow-up", "advocacy"],
            )
            second = await a.log_enquiry(
                name="Jan Kowalski",
                phone="07700 900456",
                needs=["transport"],
                channel="phone",
                area="DL1",
                consent=[c.me],
            )
            self.subjects = [first.subject, second.subject]
            for subject, service, hub, note in (
                (first.subject, (b.me, CAFE), None, "afternoons are easier for her"),
                (second.subject, None, c.me, "needs a wheelchair-accessible car"),
            ):
                made = await a.refer(subject, service=service, to_hub=hub, note=note)
                referrals.append(made.key)

        async def boxes_opened() -> bool:
            return b.keyring.has_key(a.me, self.subjects[0]) and c.keyring.has_key(
                a.me, self.subjects[1]
            )

        async def accept() -> None:
            await b.move(referrals[0], "accepted")
            await c.move(referrals[1], "accepted")

        async def complete_and_erase() -> None:
            await b.move(
                referrals[0], "completed", outcome="a place at the weekly café", satisfied=True
            )
            await a.erase(self.subjects[1], ERASE_REASON)

        async def follow_up() -> None:
            done = await a.record_followup(
                referrals[0], False, "the café clashes with his physiotherapy", advocacy=True
            )
            assert done.case is not None
            self._case = done.case

        async def close_case() -> None:
            await a.close_advocacy(self._case, "resolved", "a sitter now covers those mornings")

        return [
            StoryStep(
                self._named(
                    "{0} logged person 1 (a carer; she agreed {1} may hold her details) and "
                    "person 2 (transport; he agreed {2} may), and referred them to {1}'s "
                    "carers' café and to {2}; {1} and {2} opened their key boxes"
                ),
                log_enquiries,
                boxes_opened,
                "the key boxes opened",
            ),
            StoryStep(self._named("{1} accepted person 1's referral and {2} person 2's"), accept),
            StoryStep(
                self._named(
                    "{1} completed person 1's referral (outcome: a place at the weekly café); "
                    "person 2 asked {0} to erase him: {0} and {2} destroyed his key and confirmed"
                ),
                complete_and_erase,
                self._confirmed_everywhere,
                "the erasure confirmed",
            ),
            StoryStep(
                self._named(
                    "{0} followed person 1 up: not satisfied (a clash with her husband's "
                    "physiotherapy); {0} opened an advocacy case"
                ),
                follow_up,
            ),
            StoryStep(self._named("{0} closed the advocacy case as resolved"), close_case),
        ]

    def _holders(self) -> list[bytes]:
        """The hubs that held person 2's key: the point of access and his consent."""
        return [self.cw[0].me, self.cw[2].me]

    async def _confirmed_everywhere(self) -> bool:
        """Every hub holds the erasure confirmation of every hub that held the key."""
        for cw in self.cw:
            for holder in self._holders():
                found = await cw.log.events(hub=holder, kind="subject.erasure_confirmed")
                if not any(
                    isinstance(ev.body, SubjectErasureConfirmed)
                    and ev.body.subject == self.subjects[1]
                    for ev in found
                ):
                    return False
        return True

    async def readers(self) -> tuple[Table, list[str]]:
        """Who can read what, per hub, as each hub's own keyring and views say; and the
        erasure confirmations."""
        # Light rules, no outer frame: it reads as a different kind of table from the
        # framed ones that follow (events held, projection hashes).
        columns = (f"person {n} ({s})" for n, s in enumerate(self.subjects, 1))
        table = Table("hub", *columns, box=box.MINIMAL)
        for name, cw in zip(self.names, self.cw, strict=True):
            await cw.refresh()
            table.add_row(name, *(self._cell(cw, s) for s in self.subjects))
        owner = self.cw[0]
        info = owner.subject(self.subjects[1])
        return table, [self._confirmations(info)]

    def _cell(self, cw: Casework, subject: str) -> str:
        seen = cw.person(subject, self.cw[0].me)
        if seen.details:
            return "reads the details: " + escape(seen.details[0][1].name)
        if seen.info.erased:
            if seen.destroyed_ms is None:
                return "erased — never held the key"
            return f"erased — key destroyed at {_clock(seen.destroyed_ms)}"
        return "sealed — no key"

    def _confirmations(self, info: SubjectInfo) -> str:
        name = dict(zip((cw.me for cw in self.cw), self.names, strict=True))
        confirmed = ", ".join(f"{name[c.hub]} (seq {c.seq})" for c in info.confirmations)
        never = [name[cw.me] for cw in self.cw if cw.me not in {c.hub for c in info.confirmations}]
        return (
            f"person 2 erased by {name[info.owner]}: every hub that held the key confirmed "
            f"destroying it — {confirmed}"
            + (f"; {', '.join(never)} never held it" if never else "")
        )
