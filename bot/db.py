"""The database: where the SQL in ``bot/store.py`` runs, and the group commit.

Store functions are synchronous SQLAlchemy Core functions of a connection.
``Database.write(unit)`` runs a unit in a committed transaction and returns its
result once it is durable; ``Database.read(query)`` runs a query.

Group commit: every unit submitted while the event loop is busy joins one
transaction, so under load dozens of units share one commit, while each
caller still waits for *its* commit (nothing is acknowledged before it is
durable). If a unit fails, the batch is rolled back and its units are re-run
one by one, so only the faulty one fails.

SQLite (the embedded default) runs inline on the event loop thread with the
standard ``sqlite3`` driver, WAL and ``synchronous=NORMAL``: a statement costs
tens of microseconds there, far less than handing each one to a driver thread
(aiosqlite) and fighting that thread for the GIL, which measured 20 ms per
message under load (see bench/README.md). Any other URL (PostgreSQL with
asyncpg) runs the same functions through ``AsyncConnection.run_sync``.
"""

from __future__ import annotations

import asyncio
import logging
import os

import orjson
from typing import Any, Callable, TypeVar

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

log = logging.getLogger("touchpoint.db")

T = TypeVar("T")
Unit = Callable[[Connection], Any]

MAX_BATCH = 500


def sync_sqlite_url(url: str) -> str:
    """``sqlite+aiosqlite:///x.db`` -> ``sqlite:///x.db`` (the URL stays async in settings)."""
    scheme, sep, rest = url.partition("://")
    return "sqlite" + sep + rest if scheme.startswith("sqlite") else url


def _json_dumps(value: Any) -> str:
    """JSON columns (slots, payloads, push variables) with orjson: a few times faster than json."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # The driver must not open transactions by itself; SQLAlchemy's begin() does.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Inline on the loop: never wait long for another process's lock (a shell on the same file).
    cursor.execute("PRAGMA busy_timeout=2000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.sync_engine: Engine | None = None
        self.async_engine: AsyncEngine | None = None
        if self.is_sqlite:
            self.sync_engine = create_engine(
                sync_sqlite_url(url),
                poolclass=StaticPool,  # one connection: one writer, no lock contention
                connect_args={"check_same_thread": False},
                json_serializer=_json_dumps,
                json_deserializer=orjson.loads,
            )
            event.listen(self.sync_engine, "connect", _sqlite_pragmas)
        else:
            self.async_engine = create_async_engine(
                url,
                pool_size=10,
                max_overflow=10,
                pool_pre_ping=True,
                json_serializer=_json_dumps,
                json_deserializer=orjson.loads,
            )
        # SQLite: one connection for the life of the process. Every use of it
        # runs to completion without awaiting, so reads and write batches never
        # interleave on it, and checking a connection out per call (a
        # measurable share of each message) is avoided.
        self._sqlite: Connection | None = None
        self._pending: list[tuple[Unit, asyncio.Future[Any]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.commits = 0  # transactions committed (benchmarks and tests read it)
        self.units = 0

    async def start(self) -> None:
        """Nothing to start: kept so callers need not know the strategy."""

    async def close(self) -> None:
        while self._pending or (self._flushing is not None and not self._flushing.done()):
            await asyncio.sleep(0.005)
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        if self.sync_engine is not None:
            self.sync_engine.dispose()
        if self.async_engine is not None:
            await self.async_engine.dispose()

    # --- public API ----------------------------------------------------------

    async def write(self, unit: Callable[[Connection], T]) -> T:
        """Run ``unit`` inside a committed transaction; returns its result once durable."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((unit, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        return await future

    def _sqlite_connection(self) -> Connection:
        if self._sqlite is None or self._sqlite.closed:
            assert self.sync_engine is not None
            self._sqlite = self.sync_engine.connect()
        return self._sqlite

    async def read(self, query: Callable[[Connection], T]) -> T:
        if self.sync_engine is not None:
            conn = self._sqlite_connection()
            try:
                return query(conn)
            finally:
                conn.rollback()  # end the read transaction; nothing was written
        assert self.async_engine is not None
        async with self.async_engine.connect() as conn:
            return await conn.run_sync(query)

    async def ping(self) -> bool:
        try:
            if self.sync_engine is not None and not self._sqlite_file_present():
                log.error("db.file_missing path=%s", self.sync_engine.url.database)
                return False
            await self.read(lambda conn: conn.execute(text("SELECT 1")).scalar_one())
            return True
        except Exception:  # noqa: BLE001 - readiness reports any failure
            log.exception("db.ping_failed")
            return False

    def _sqlite_file_present(self) -> bool:
        """An open connection keeps answering after its file was deleted; the data would be lost."""
        assert self.sync_engine is not None
        path = self.sync_engine.url.database
        return not path or path == ":memory:" or os.path.exists(path)

    # --- group commit ----------------------------------------------------------

    async def _flush(self) -> None:
        # Let every coroutine that is ready this loop iteration add its unit first.
        await asyncio.sleep(0)
        async with self._lock:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                batch = [(u, f) for u, f in batch if not f.cancelled()]
                if not batch:
                    continue
                try:
                    await self._run_batch(batch)
                except Exception:  # noqa: BLE001 - isolate the failing unit
                    for item in batch:
                        if item[1].done():
                            continue
                        try:
                            await self._run_batch([item])
                        except Exception as exc:  # noqa: BLE001
                            if not item[1].done():
                                item[1].set_exception(exc)

    async def _run_batch(self, batch: list[tuple[Unit, asyncio.Future[Any]]]) -> None:
        units = [unit for unit, _ in batch]

        def run_all(conn: Connection) -> list[Any]:
            return [unit(conn) for unit in units]

        if self.sync_engine is not None:
            conn = self._sqlite_connection()
            with conn.begin():
                results = run_all(conn)
        else:
            assert self.async_engine is not None
            async with self.async_engine.begin() as aconn:
                results = await aconn.run_sync(run_all)
        self.commits += 1
        self.units += len(batch)
        for (_unit, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)
