"""The endorsements projection, tested with hubnode's in-memory twin (no node, no network).

Plain functions with no fixtures, so hubnode's own suite can run them by path too.
"""

from __future__ import annotations

from hubnode_endorsements import EndorsementsProjection, ranking

from hubnode.events.ids import hub_display
from hubnode.events.network import HubAdmitted, HubRegistered
from hubnode.testing import ChainWriter, ProjectionHarness


def registered(name: str) -> HubRegistered:
    return HubRegistered(name=name, roles=("gateway",), area="Darlington", contact="x@example.org")


def admit(hub: ChainWriter) -> HubAdmitted:
    return HubAdmitted(hub=hub_display(hub.hub))


def test_counts_each_endorsing_hub_once() -> None:
    with ProjectionHarness(EndorsementsProjection) as h:
        a, b, c = h.writer(), h.writer(), h.writer()
        h.feed(
            [
                a.next("hub.registered", registered("A")),
                a.next("hub.admitted", admit(c)),
                a.next("hub.admitted", admit(c)),  # A vouching twice is still one endorser
                b.next("hub.admitted", admit(c)),
                b.next("hub.admitted", admit(a)),
            ]
        )
        assert ranking(h.runner) == [(hub_display(c.hub), 2), (hub_display(a.hub), 1)]
        assert h.status("endorsements").status == "serving"


def test_a_hub_endorsing_itself_is_ignored_with_a_reason() -> None:
    with ProjectionHarness(EndorsementsProjection) as h:
        a = h.writer()
        h.feed([a.next("hub.admitted", admit(a))])
        assert ranking(h.runner) == []
        assert h.ignored("endorsements") == {(a.hub, 1): "a hub cannot endorse itself"}


def test_every_arrival_order_gives_the_same_hash() -> None:
    a, b, c = ChainWriter("test-net"), ChainWriter("test-net"), ChainWriter("test-net")
    from_a = [a.next("hub.admitted", admit(c)), a.next("hub.admitted", admit(b))]
    from_b = [b.next("hub.admitted", admit(c)), b.next("hub.admitted", admit(b))]
    from_c = [c.next("hub.admitted", admit(a))]
    hashes = set()
    for order in (from_a + from_b + from_c, from_c + from_b + from_a, from_b + from_c + from_a):
        with ProjectionHarness(EndorsementsProjection) as h:
            h.feed(order)
            hashes.add(h.hash("endorsements"))
    assert len(hashes) == 1
    with ProjectionHarness(EndorsementsProjection) as h:
        h.feed(from_a + from_b)  # without C's endorsement of A: a different state
        assert h.hash("endorsements") not in hashes
