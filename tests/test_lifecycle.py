"""The referral lifecycle: one transition table read by the commands, the view and the docs."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from hubnode.commands.referral import COMMANDS
from hubnode.errors import IllegalTransition
from hubnode.events.lifecycle import (
    CLAIM,
    CLOSED,
    NEEDS_REASON,
    STATUSES,
    TERMINAL,
    TRANSITIONS,
    Party,
    Status,
    allowed_moves,
    check_transition,
)
from hubnode.projections.pathway_rules import Move, derive_lifecycle, judge

PARTIES: tuple[Party, ...] = ("referring", "receiving")
TRIPLES = list(itertools.product(STATUSES, STATUSES, PARTIES))
ALLOWED = [(f, t, p) for f, t, p in TRIPLES if TRANSITIONS[f].get(t) == p]
REFUSED = [(f, t, p) for f, t, p in TRIPLES if TRANSITIONS[f].get(t) != p]
DOC = Path(__file__).resolve().parents[1] / "docs" / "pathway.md"


def test_the_table_covers_every_status_and_names_one_party_per_move() -> None:
    assert set(TRANSITIONS) == set(STATUSES)
    for moves in TRANSITIONS.values():
        assert set(moves) <= set(STATUSES) and set(moves.values()) <= set(PARTIES)
    assert {"entered-in-error"} == TERMINAL
    assert CLAIM[1] in TRANSITIONS[CLAIM[0]]
    assert len(ALLOWED) == sum(map(len, TRANSITIONS.values()))


@pytest.mark.parametrize(("current", "to", "party"), ALLOWED)
def test_every_move_in_the_table_is_allowed_to_its_party(
    current: Status, to: Status, party: Party
) -> None:
    check_transition(current, to, party, "a reason")
    assert to in allowed_moves(current, party)


@pytest.mark.parametrize(("current", "to", "party"), REFUSED)
def test_every_other_move_is_refused_naming_from_to_and_role(
    current: Status, to: Status, party: Party
) -> None:
    with pytest.raises(IllegalTransition) as caught:
        check_transition(current, to, party, "a reason")
    e = caught.value
    assert (e.current, e.to, e.party) == (current, to, party)
    assert f"from {current} to {to}" in str(e)
    message = str(e)  # what the commands print
    assert f"from {current}" in message and to in message and f"the {party} hub" in message
    assert to not in allowed_moves(current, party)


@pytest.mark.parametrize(("current", "to", "party"), [m for m in ALLOWED if m[1] in NEEDS_REASON])
def test_moves_to_rejected_cancelled_on_hold_or_failed_need_a_reason(
    current: Status, to: Status, party: Party
) -> None:
    for blank in ("", "   "):
        with pytest.raises(IllegalTransition, match="needs a reason"):
            check_transition(current, to, party, blank)
    assert {"rejected", "cancelled", "on-hold", "failed"} == NEEDS_REASON


def test_closed_statuses_leave_only_entered_in_error() -> None:
    for status in CLOSED - TERMINAL:
        assert list(TRANSITIONS[status]) == ["entered-in-error"]


ROOT, OWNER, RECEIVER = b"\x00" * 32, b"\x01" * 32, b"\x02" * 32


def walk_to(status: Status) -> list[Move]:
    """Moves taking a referral (OWNER → RECEIVER) from requested to ``status``."""
    path: dict[Status, list[Status]] = {
        "requested": [],
        "accepted": ["accepted"],
        "rejected": ["rejected"],
        "cancelled": ["cancelled"],
        "in-progress": ["accepted", "in-progress"],
        "on-hold": ["accepted", "on-hold"],
        "completed": ["accepted", "completed"],
        "failed": ["accepted", "failed"],
        "entered-in-error": ["entered-in-error"],
    }
    moves, parent, current = [], ROOT, "requested"
    for i, to in enumerate(path[status], start=1):
        author = OWNER if TRANSITIONS[current][to] == "referring" else RECEIVER  # type: ignore[index]
        move_id = bytes([i]) * 32
        moves.append(Move(move_id, parent, author, i, i, 0, to, "because"))
        parent, current = move_id, to
    return moves


@pytest.mark.parametrize(("current", "to", "party"), TRIPLES)
def test_the_view_applies_exactly_the_moves_the_table_allows(
    current: Status, to: Status, party: Party
) -> None:
    before = walk_to(current)
    assert derive_lifecycle(ROOT, 0, OWNER, RECEIVER, frozenset(), before).status == current
    head = before[-1].id if before else ROOT
    author = OWNER if party == "referring" else RECEIVER
    move = Move(b"\xff" * 32, head, author, 99, 99, 0, to, "because")
    why = judge(move, current, RECEIVER, OWNER, frozenset())
    assert (why is None) == ((current, to, party) in ALLOWED), why


# -- the docs show the table as the code has it -----------------------------------------


def render_table() -> str:
    """The lifecycle table as docs/pathway.md shows it, built from TRANSITIONS."""
    rows = [
        "| from | to | who may make the move | reason | command |",
        "|---|---|---|---|---|",
    ]
    for current, moves in TRANSITIONS.items():
        if not moves:
            rows.append(f"| {current} | (final: no move) | | | |")
        for to, who in moves.items():
            reason = "required" if to in NEEDS_REASON else ""
            rows.append(
                f"| {current} | {to} | the {who} hub | {reason} | `referral {COMMANDS[to]}` |"
            )
    return "\n".join(rows)


def test_docs_pathway_shows_the_transition_table_of_the_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(r"<!-- transitions:start -->\n(.*?)\n<!-- transitions:end -->", text, re.S)
    assert found is not None, "docs/pathway.md lost its transitions markers"
    assert found.group(1) == render_table(), (
        "docs/pathway.md's table differs from lifecycle.TRANSITIONS; paste this:\n" + render_table()
    )


def test_every_status_and_the_claim_have_a_command() -> None:
    assert set(COMMANDS) == {"claim"} | (set(STATUSES) - {"requested"})
