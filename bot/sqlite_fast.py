"""Hand-written SQLite statements for the few queries every message runs.

SQLAlchemy Core costs about 60 µs per statement here, the sqlite3 driver
itself about 3 µs; on the hot path (about nine statements per message) that
difference was a third of the server's CPU (bench/README.md). These functions
run on the driver connection *inside* the SQLAlchemy transaction of the
caller, and read and write exactly the formats SQLAlchemy uses for the same
columns (ISO text for times without zone, JSON text, 0/1 for booleans), so
the rest of the code and PostgreSQL keep using ``bot/store.py``'s Core
statements. ``tests/test_pipeline.py`` runs the pipeline on both databases.
"""

from __future__ import annotations

import json
import sqlite3
from collections import namedtuple
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.engine import Connection


def driver(conn: Connection) -> sqlite3.Connection | None:
    """The sqlite3 connection under ``conn``, or None on any other database."""
    if conn.dialect.name != "sqlite":
        return None
    return conn.connection.driver_connection  # type: ignore[return-value]


def to_db(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


def from_db_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=timezone.utc)


InboxRow = namedtuple("InboxRow", "id body attempts event_id")
OutboxRow = namedtuple("OutboxRow", "blocked_at id payload attempts parts_sent next_attempt_at customer_id")
ConversationRow = namedtuple(
    "ConversationRow",
    "id customer_id dialog step slots offered locale mode misses version first_name customer_locale "
    "identity_id blocked_at consent_purpose consent_channel consent_granted consent_at consent_version "
    "last_inbound_at categories attributes customer_created_at marketing_paused_until codes",
)

_INBOX_PENDING = (
    "SELECT id, body, attempts, event_id FROM inbox "
    "WHERE channel = ? AND address = ? AND status = 'pending' ORDER BY id LIMIT ?"
)
_INBOX_FINISH = "UPDATE inbox SET status = ?, error = ?, processed_at = ?, attempts = attempts + 1 WHERE id = ?"
_OUTBOX_PENDING = (
    "SELECT (SELECT blocked_at FROM channel_identity WHERE channel = ?1 AND address = ?2), "
    "id, payload, attempts, parts_sent, next_attempt_at, customer_id FROM outbox "
    "WHERE channel = ?1 AND address = ?2 AND status = 'pending' ORDER BY id LIMIT ?3"
)
_CONVERSATION = (
    "SELECT conv.id, conv.customer_id, conv.dialog, conv.step, conv.slots, conv.offered, conv.locale, conv.mode, "
    "conv.misses, conv.version, cu.first_name, cu.locale, ci.id, ci.blocked_at, "
    "co.purpose, co.channel, co.granted, co.created_at, co.wording_version, "
    "conv.last_inbound_at, cu.categories, cu.attributes, cu.created_at, cu.marketing_paused_until, "
    # The usable codes as one JSON array ('[]' when none): one index probe, no extra statement.
    "(SELECT json_group_array(json_array(dc.id, dc.code, dc.category, dc.percent, dc.expires_at, dc.source)) "
    "  FROM discount_code AS dc WHERE dc.customer_id = conv.customer_id AND dc.redeemed_at IS NULL "
    "  AND dc.expires_at > ?3) "
    "FROM conversation AS conv "
    "JOIN customer AS cu ON cu.id = conv.customer_id "
    "JOIN channel_identity AS ci ON ci.channel = conv.channel AND ci.address = conv.address "
    "LEFT OUTER JOIN consent AS co ON co.id IN ("
    "  SELECT max(c2.id) FROM consent AS c2 WHERE c2.customer_id = conv.customer_id GROUP BY c2.purpose, c2.channel) "
    "WHERE conv.channel = ?1 AND conv.address = ?2 ORDER BY co.id"
)


def inbox_pending(db: sqlite3.Connection, channel: str, address: str, limit: int) -> list[InboxRow]:
    return [InboxRow(*r) for r in db.execute(_INBOX_PENDING, (channel, address, limit))]


def inbox_finish(db: sqlite3.Connection, inbox_id: int, status: str, error: str | None, at: datetime) -> None:
    db.execute(_INBOX_FINISH, (status, error, to_db(at), inbox_id))


def outbox_pending(db: sqlite3.Connection, channel: str, address: str, limit: int) -> list[OutboxRow]:
    return [
        OutboxRow(r[0], r[1], json.loads(r[2]), r[3], r[4], from_db_time(r[5]), r[6])
        for r in db.execute(_OUTBOX_PENDING, (channel, address, limit))
    ]


def conversation_rows(db: sqlite3.Connection, channel: str, address: str, now: datetime) -> list[ConversationRow]:
    """The conversation joined with its customer, identity, current consents and codes usable at ``now``."""
    rows = []
    for r in db.execute(_CONVERSATION, (channel, address, to_db(now))):
        r = list(r)
        r[4] = json.loads(r[4]) if r[4] is not None else {}
        r[5] = json.loads(r[5]) if r[5] is not None else []
        r[17] = from_db_time(r[17])
        if not rows:  # the customer's columns repeat on every consent row; decode them once
            r[19] = from_db_time(r[19])
            r[20] = json.loads(r[20]) if r[20] is not None else None
            r[21] = json.loads(r[21]) if r[21] is not None else None
            r[22] = from_db_time(r[22])
            r[23] = from_db_time(r[23])
            r[24] = json.loads(r[24])
        rows.append(ConversationRow(*r))
    return rows


# Generic row writes for the per-message inserts and updates; table and column
# names always come from our own code.


def insert(db: sqlite3.Connection, table: str, row: dict[str, Any]) -> int:
    """Insert one row; returns its id."""
    sql = f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})"
    cursor = db.execute(sql, tuple(map(to_db, row.values())))
    return cursor.lastrowid  # type: ignore[return-value]


def insert_many(db: sqlite3.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    """Insert rows with the same keys, in order."""
    keys = list(rows[0])
    sql = f"INSERT INTO {table} ({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))})"
    db.executemany(sql, [tuple(to_db(row[k]) for k in keys) for row in rows])


def update(db: sqlite3.Connection, table: str, values: dict[str, Any], where: dict[str, Any]) -> int:
    """UPDATE ... SET values WHERE every ``where`` column equals; returns the row count."""
    sets = ", ".join(f"{name} = ?" for name in values)
    conditions = " AND ".join(f"{name} = ?" for name in where)
    cursor = db.execute(
        f"UPDATE {table} SET {sets} WHERE {conditions}",
        (*map(to_db, values.values()), *map(to_db, where.values())),
    )
    return cursor.rowcount
