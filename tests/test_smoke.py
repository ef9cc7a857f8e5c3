from hubnode import EventLog, Status

from .conftest import chain, registered


async def test_append_then_ingest_elsewhere(log: EventLog, tmp_path):
    done = await log.append("hub.registered", registered())
    assert done.seq == 1
    _, records = chain(3)
    outcomes = await log.ingest(records)
    assert [o.status for o in outcomes] == [Status.ACCEPTED] * 3
