"""SQLite schema of the local log (DESIGN §4). One database per hub."""

from __future__ import annotations

from typing import Final

SCHEMA_VERSION: Final = 1

# Durability: WAL + synchronous=FULL, so a commit is on disk (WAL fsynced) before
# append()/ingest() return. NORMAL would be faster but can lose the last commits on power
# loss, which would let a hub sign a second event with a seq it already gave out: a fork.
PRAGMAS: Final = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
)

TABLES: Final = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value ANY  NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS events (
    pos  INTEGER PRIMARY KEY,      -- local order: append/ingest order on this hub
    hub  BLOB    NOT NULL,
    seq  INTEGER NOT NULL,
    id   BLOB    NOT NULL UNIQUE,  -- sha256 of raw
    kind TEXT    NOT NULL,
    ts   INTEGER NOT NULL,
    raw  BLOB    NOT NULL,         -- the wire record exactly as signed and received
    UNIQUE (hub, seq)
) STRICT;

-- Per-hub state that is not derivable from events: where a hub forked.
CREATE TABLE IF NOT EXISTS hubs (
    hub        BLOB PRIMARY KEY,
    forked_seq INTEGER
) STRICT;

-- Two validly signed, different events with the same (hub, seq). Never deleted.
CREATE TABLE IF NOT EXISTS fork_proofs (
    hub         BLOB    NOT NULL,
    seq         INTEGER NOT NULL,
    id_a        BLOB    NOT NULL,
    raw_a       BLOB    NOT NULL,
    id_b        BLOB    NOT NULL,
    raw_b       BLOB    NOT NULL,
    detected_ms INTEGER NOT NULL,
    PRIMARY KEY (hub, seq, id_a, id_b)
) STRICT;

-- Per UTC day and hub: the records stored from elsewhere (ingest) and their bytes, added
-- to in the transaction that stores them. The storage budget reads it (intake.py).
CREATE TABLE IF NOT EXISTS received_daily (
    day     TEXT    NOT NULL,      -- YYYY-MM-DD, UTC, when this log stored them
    hub     BLOB    NOT NULL,
    records INTEGER NOT NULL,
    bytes   INTEGER NOT NULL,      -- the length of their wire records
    PRIMARY KEY (day, hub)
) STRICT, WITHOUT ROWID;
"""
