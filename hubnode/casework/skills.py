"""The skills exchange and time credits of one hub: one copy of the rules for the
``hubnode skills …`` / ``hubnode time …`` commands and the staff console.

Every action checks its input against this hub's own view first (ids already used, a
transfer that is unknown, already confirmed or not this hub's to confirm, an overdraft
beyond ``time_overdraft_seconds``) and raises :class:`~hubnode.casework.InvalidInput`
naming the field, appending nothing. Messages name the command-line options, as the
commands print them unchanged; nothing is printed here.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import msgspec

from hubnode.casework.inputs import InvalidInput
from hubnode.config import HubFolder
from hubnode.events.fields import explain
from hubnode.events.ids import hub_display, parse_hub
from hubnode.events.kinds import Body
from hubnode.events.skills import (
    SkillOffered,
    SkillRequested,
    SkillWithdrawn,
    TransferConfirmed,
    TransferProposed,
    TransferReversed,
)
from hubnode.projections.runner import ProjectionRunner
from hubnode.store.log import EventLog

B = TypeVar("B", bound=Body)

_TAG: Final = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*\Z")
_DISTRICT: Final = re.compile(r"^[A-Z]{1,2}[0-9][0-9A-Z]?\Z")
_AT_FIELD: Final = re.compile(r"at `\$\.([a-z_]+)")


def body_of(kind: type[B], fields: dict[str, Any]) -> B:
    """``fields`` validated as ``kind`` (constraints included), or InvalidInput naming
    the field (``title``, ``description``, …)."""
    # A browser sends a textarea's line breaks as CRLF; bodies hold text with LF only.
    fields = {k: v.replace("\r\n", "\n") if isinstance(v, str) else v for k, v in fields.items()}
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as e:
        found = _AT_FIELD.search(str(e))
        field = found.group(1) if found else "form"
        raise InvalidInput(field, f"{explain(str(e))}; fix that value and try again") from None


def parse_tags(values: list[str]) -> list[str]:
    """Skill tags from ``values`` (each may hold several, comma-separated), deduplicated."""
    tags = [t.strip().lower() for v in values for t in v.split(",") if t.strip()]
    if not tags:
        raise InvalidInput("tags", "--tag: give at least one skill tag, e.g. --tag gardening")
    for tag in tags:
        if not _TAG.match(tag) or len(tag) > 40:
            raise InvalidInput(
                "tags",
                f"--tag {tag!r}: tags are lower-case slugs of letters, digits and single "
                "hyphens, up to 40 characters (e.g. form-filling)",
            )
    return list(dict.fromkeys(tags))


def parse_area(values: list[str]) -> list[str]:
    """Postcode districts from ``values`` (comma-separated too), upper case, deduplicated."""
    area = [d.strip().upper() for v in values for d in v.split(",") if d.strip()]
    if not area:
        raise InvalidInput("area", "--area: give at least one postcode district, e.g. --area DL1")
    for district in area:
        if not _DISTRICT.match(district):
            raise InvalidInput(
                "area",
                f"--area {district!r} is not a postcode district; use the part before the "
                "space of a postcode, e.g. DL1 or DL14",
            )
    return list(dict.fromkeys(area))


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def item_ref(text: str, option: str, field: str | None = None) -> tuple[str, str]:
    """``hub:…/ID`` → (hub display, id); ``option`` names it in a refusal, ``field`` (by
    default the option without dashes) for a form."""
    name = field or option.lstrip("-")
    hub, sep, item_id = text.partition("/")
    if not sep or not item_id:
        raise InvalidInput(
            name, f"{option} {text!r}: write it as HUB/ID, e.g. hub:ab…/offer-1a2b3c4d"
        )
    try:
        return hub_display(parse_hub(hub)), item_id
    except ValueError as e:
        raise InvalidInput(name, f"{option}: {e}") from None


def shown(hub: bytes, item_id: str) -> str:
    """How an offer, request or transfer is named: ``hub:…/ID``."""
    return f"{hub_display(hub)}/{item_id}"


@dataclass(frozen=True)
class Proposed:
    transfer: str
    seconds: int
    seq: int
    other: str
    """The hub that must confirm it (display id)."""


@dataclass(frozen=True)
class Settled:
    transfer: str
    seconds: int
    seq: int


class Skills:
    """This hub's skills and time-credit actions over its open log and views (brought up
    to date by the caller)."""

    def __init__(
        self,
        folder: HubFolder,
        log: EventLog,
        views: ProjectionRunner,
        *,
        staff: str | None = None,
    ) -> None:
        self.folder = folder
        self.log = log
        self.views = views
        self.staff = staff
        """The pseudonym (``st-…``) of the staff member acting, recorded on every body
        appended; None from the command line, where the hub's operator acts."""

    @property
    def me(self) -> bytes:
        return self.folder.hub

    async def _append(self, kind: str, body: Body) -> int:
        if self.staff is not None:
            body = msgspec.structs.replace(body, staff=self.staff)
        return (await self.log.append(kind, body)).seq

    # -- skills -------------------------------------------------------------------------

    async def offer(
        self,
        *,
        tags: list[str],
        title: str,
        area: list[str],
        description: str = "",
        hours: float | None = None,
        item_id: str | None = None,
    ) -> tuple[str, int]:
        """Offer a skill to the network: (offer id, seq)."""
        if hours is not None and not 0 < hours <= 168:
            raise InvalidInput(
                "hours", f"--hours {hours:g}: hours per week must be above 0 and at most 168"
            )
        offer_id = item_id or new_id("offer")
        body = body_of(
            SkillOffered,
            {
                "offer_id": offer_id,
                "tags": parse_tags(tags),
                "title": title,
                "description": description,
                "area": parse_area(area),
                "hours_per_week": hours,
            },
        )
        return await self._post("an offer", "offers", "offer_id", offer_id, body)

    async def request(
        self,
        *,
        tags: list[str],
        title: str,
        area: list[str],
        description: str = "",
        needed_by: str | None = None,
        item_id: str | None = None,
    ) -> tuple[str, int]:
        """Ask the network for a skill: (request id, seq)."""
        if needed_by is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", needed_by):
            raise InvalidInput(
                "needed_by", f"--needed-by {needed_by!r}: write the date as YYYY-MM-DD"
            )
        request_id = item_id or new_id("request")
        body = body_of(
            SkillRequested,
            {
                "request_id": request_id,
                "tags": parse_tags(tags),
                "title": title,
                "description": description,
                "area": parse_area(area),
                "needed_by": needed_by,
            },
        )
        return await self._post("a request", "requests", "request_id", request_id, body)

    async def _post(
        self, what: str, table: str, column: str, item_id: str, body: SkillOffered | SkillRequested
    ) -> tuple[str, int]:
        """Append a new offer or request, unless this hub already used its id: (id, seq)."""
        if self.views.query(
            "skills",
            f"SELECT 1 FROM {{{table}}} WHERE hub = ? AND {column} = ?",
            (self.me, item_id),
        ):
            raise InvalidInput(
                "id", f"--id {item_id!r}: this hub already has {what} with that id; choose another"
            )
        kind = "skill.offered" if isinstance(body, SkillOffered) else "skill.requested"
        return item_id, await self._append(kind, body)

    async def withdraw(self, *, offer: str | None = None, request: str | None = None) -> int:
        """Withdraw one of this hub's own offers or requests: its seq."""
        if (offer is None) == (request is None):
            raise InvalidInput("item", "give exactly one of --offer ID or --request ID")
        item, item_id = ("offer", offer) if offer is not None else ("request", request)
        rows = self.views.query(
            "skills",
            f"SELECT status FROM {{{item}s}} WHERE hub = ? AND {item}_id = ?",
            (self.me, item_id),
        )
        if not rows:
            raise InvalidInput(item, f"--{item} {item_id!r}: this hub has no {item} with that id")
        if rows[0][0] != "open":
            raise InvalidInput(item, f"--{item} {item_id!r} is already withdrawn")
        body = (
            SkillWithdrawn(offer_id=offer)
            if offer is not None
            else SkillWithdrawn(request_id=request)
        )
        return await self._append("skill.withdrawn", body)

    def items(self, item: str) -> list[dict[str, Any]]:
        """Every open offer (``item="offer"``) or request of the network, newest first."""
        extra = "hours_per_week" if item == "offer" else "needed_by"
        rows = self.views.query(
            "skills",
            f"SELECT hub, {item}_id, title, description, tags, area, {extra} FROM {{{item}s}} "
            f"WHERE status = 'open' ORDER BY seq DESC, hub, {item}_id",
        )
        return [
            {
                "hub": hub,
                "id": item_id,
                "ref": shown(hub, item_id),
                "title": title,
                "description": description,
                "tags": json.loads(tags),
                "area": json.loads(area),
                extra: value,
            }
            for hub, item_id, title, description, tags, area, value in rows
        ]

    def matches(self, *, mine: bool = False) -> list[dict[str, Any]]:
        """Open offers and requests of different hubs sharing a skill tag and a district,
        soonest needed first (``mine``: only those with an offer or request of this hub)."""
        found = self.views.query(
            "skills",
            "SELECT m.offer_hub, m.offer_id, o.title, m.request_hub, m.request_id, r.title, "
            "r.needed_by, m.tags, m.districts FROM {matches} m "
            "JOIN {offers} o ON o.hub = m.offer_hub AND o.offer_id = m.offer_id "
            "JOIN {requests} r ON r.hub = m.request_hub AND r.request_id = m.request_id "
            "ORDER BY r.needed_by IS NULL, r.needed_by, m.offer_hub, m.offer_id, "
            "m.request_hub, m.request_id",
        )
        return [
            {
                "offer": shown(offer_hub, offer_id),
                "offer_title": offer_title,
                "request": shown(request_hub, request_id),
                "request_title": request_title,
                "needed_by": needed_by,
                "tags": json.loads(tags),
                "districts": json.loads(districts),
            }
            for (
                offer_hub,
                offer_id,
                offer_title,
                request_hub,
                request_id,
                request_title,
                needed_by,
                tags,
                districts,
            ) in found
            if not mine or self.me in (offer_hub, request_hub)
        ]

    # -- time credits -------------------------------------------------------------------

    def headroom(self) -> tuple[int, int]:
        """(balance, seconds this hub may still be debited) under its overdraft limit.

        Own proposals that debit this hub and await the other party's confirmation count
        as spent: they may become confirmed without this hub signing anything more.
        """
        rows = self.views.query(
            "skills", "SELECT seconds FROM {balances} WHERE hub = ?", (self.me,)
        )
        balance = int(rows[0][0]) if rows else 0
        ((pending,),) = self.views.query(
            "skills",
            "SELECT COALESCE(SUM(seconds), 0) FROM {transfers} "
            "WHERE proposer = ? AND from_hub = ? AND state = 'proposed'",
            (self.me, self.me),
        )
        return balance, balance - int(pending) + self.folder.config.time_overdraft_seconds

    def _check_overdraft(self, seconds: int) -> None:
        limit = self.folder.config.time_overdraft_seconds
        balance, headroom = self.headroom()
        if seconds > headroom:
            raise InvalidInput(
                "seconds",
                f"overdraft: debiting {seconds} s would take this hub below its limit of "
                f"-{limit} s (balance {balance} s, {balance + limit - headroom} s in own "
                f"proposals awaiting confirmation); raise time_overdraft_seconds in "
                f"{self.folder.path / 'hubnode.toml'} or transfer less",
            )

    async def propose(
        self,
        *,
        to: str | None = None,
        from_: str | None = None,
        seconds: int | None = None,
        hours: float | None = None,
        memo: str = "",
        offer: str | None = None,
        request: str | None = None,
        transfer_id: str | None = None,
    ) -> Proposed:
        """Propose a time-credit transfer; it counts once the other hub confirms it."""
        if (to is None) == (from_ is None):
            raise InvalidInput(
                "direction", "give exactly one of --to HUB (this hub pays) or --from HUB "
                "(that hub pays)"
            )  # fmt: skip
        if (seconds is None) == (hours is None):
            raise InvalidInput("seconds", "give exactly one of --seconds N or --hours H")
        amount = seconds if seconds is not None else round((hours or 0) * 3600)
        if amount <= 0:
            given = f"--seconds {seconds}" if seconds is not None else f"--hours {hours:g}"
            raise InvalidInput(
                "seconds", f"{given}: a transfer moves a positive amount of time; give more than 0"
            )
        me = self.folder.config.hub_id
        option = "to" if to is not None else "from"
        other_text = to if to is not None else from_
        assert other_text is not None
        try:
            other = hub_display(parse_hub(other_text))
        except ValueError as e:
            raise InvalidInput("hub", f"--{option}: {e}") from None
        if other == me:
            raise InvalidInput(
                "hub", "a transfer is between two hubs: the other hub cannot be this hub itself"
            )
        tid = transfer_id or new_id("t")
        fields: dict[str, Any] = {
            "transfer_id": tid,
            "from_hub": me if to is not None else other,
            "to_hub": other if to is not None else me,
            "seconds": amount,
            "memo": memo,
        }
        if offer is not None:
            hub, item_id = item_ref(offer, "--offer")
            fields["offer"] = {"hub": hub, "id": item_id}
        if request is not None:
            hub, item_id = item_ref(request, "--request")
            fields["request"] = {"hub": hub, "id": item_id}
        body = body_of(TransferProposed, fields)
        if self.views.query(
            "skills",
            "SELECT 1 FROM {transfers} WHERE proposer = ? AND transfer_id = ?",
            (self.me, tid),
        ):
            raise InvalidInput(
                "id", f"--id {tid!r}: this hub already proposed a transfer with that id"
            )
        if to is not None:
            self._check_overdraft(amount)
        seq = await self._append("time.transfer_proposed", body)
        return Proposed(f"{me}/{tid}", amount, seq, other)

    def _transfer(self, proposer: bytes, transfer_id: str) -> tuple[bytes, bytes, int, str]:
        """(from, to, seconds, state) of a transfer this hub holds."""
        rows = self.views.query(
            "skills",
            "SELECT from_hub, to_hub, seconds, state FROM {transfers} "
            "WHERE proposer = ? AND transfer_id = ?",
            (proposer, transfer_id),
        )
        if not rows:
            raise InvalidInput(
                "transfer",
                f"unknown transfer {shown(proposer, transfer_id)}: its proposal is not in this "
                "hub's log; check the id, or let the node sync (`hubnode run`) and retry",
            )
        from_hub, to_hub, seconds, state = rows[0]
        return from_hub, to_hub, int(seconds), str(state)

    async def confirm(self, transfer: str) -> Settled:
        """Confirm a transfer the other hub proposed to this one: from then on it counts."""
        hub, tid = item_ref(transfer, "TRANSFER", "transfer")
        proposer = parse_hub(hub)
        if proposer == self.me:
            raise InvalidInput(
                "transfer", f"{transfer} is this hub's own proposal; only the other hub confirms it"
            )
        from_hub, to_hub, seconds, state = self._transfer(proposer, tid)
        if self.me not in (from_hub, to_hub):
            raise InvalidInput(
                "transfer",
                f"{transfer} is between {hub_display(from_hub)} and {hub_display(to_hub)}",
            )
        confirmed = self.views.query(
            "skills",
            "SELECT seq FROM {confirmations} WHERE hub = ? AND proposer = ? AND transfer_id = ?",
            (self.me, proposer, tid),
        )
        if confirmed or state != "proposed":
            raise InvalidInput(
                "transfer", f"{transfer} is already confirmed ({state}); nothing to do"
            )
        if from_hub == self.me:
            self._check_overdraft(seconds)
        body = TransferConfirmed(proposer=hub_display(proposer), transfer_id=tid)
        return Settled(transfer, seconds, await self._append("time.transfer_confirmed", body))

    async def reverse(self, transfer: str, reason: str) -> Settled:
        """Reverse a confirmed transfer this hub is a party to; its amount stops counting."""
        hub, tid = item_ref(transfer, "TRANSFER", "transfer")
        proposer = parse_hub(hub)
        if not reason.strip():
            raise InvalidInput("reason", "--reason: say why the transfer is reversed")
        from_hub, to_hub, seconds, state = self._transfer(proposer, tid)
        if self.me not in (from_hub, to_hub):
            raise InvalidInput("transfer", f"{transfer}: only its two parties may reverse it")
        if state == "proposed":
            raise InvalidInput(
                "transfer", f"{transfer} is not confirmed yet, so there is nothing to reverse"
            )
        if state == "reversed":
            raise InvalidInput("transfer", f"{transfer} is already reversed")
        body = body_of(
            TransferReversed,
            {"proposer": hub_display(proposer), "transfer_id": tid, "reason": reason.strip()},
        )
        return Settled(transfer, seconds, await self._append("time.transfer_reversed", body))

    def balance(self) -> dict[str, Any]:
        """This hub's balance and headroom, every hub's balance and this hub's transfers
        (``awaiting``: the hub that has still to confirm, for a proposal)."""
        limit = self.folder.config.time_overdraft_seconds
        balance, headroom = self.headroom()
        balances = self.views.query(
            "skills", "SELECT hub, seconds, negative FROM {balances} ORDER BY seconds DESC, hub"
        )
        transfers = self.views.query(
            "skills",
            "SELECT proposer, transfer_id, from_hub, to_hub, seconds, memo, state, "
            "reversal_reason FROM {transfers} WHERE from_hub = ? OR to_hub = ? "
            "ORDER BY proposer, transfer_id",
            (self.me, self.me),
        )
        return {
            "hub": self.folder.config.hub_id,
            "seconds": balance,
            "overdraft_limit": limit,
            "available": headroom,
            "balances": [
                {"hub": hub_display(h), "seconds": s, "negative": bool(n)} for h, s, n in balances
            ],
            "transfers": [
                {
                    "transfer": shown(p, t),
                    "from": hub_display(f),
                    "to": hub_display(to),
                    "seconds": s,
                    "memo": m,
                    "state": st,
                    "awaiting": (hub_display(to if p == f else f) if st == "proposed" else None),
                    "reversal_reason": why,
                }
                for p, t, f, to, s, m, st, why in transfers
            ],
        }
