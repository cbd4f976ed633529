"""The database: async engines and a group-commit writer.

SQLite (the default) allows one writer at a time, and every commit through the
async ORM costs about a millisecond (../shared/PERFORMANCE.md). So all writes
go through one ``Database.write`` queue: a single task takes whatever units of
work are waiting, runs them in one transaction and commits once. Callers still
wait for *their* commit before going on (nothing is acknowledged before it is
durable); under load, dozens of units share one commit. If one unit fails, the
batch is rolled back and its units are retried one by one, so only the faulty
one fails. Reads use a separate small pool (WAL lets readers run beside the
writer). PostgreSQL uses the same code with an ordinary pool.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, TypeVar

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger("touchpoint.db")

T = TypeVar("T")
Unit = Callable[[AsyncConnection], Awaitable[Any]]

MAX_BATCH = 200


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            # One writer connection; a few readers.
            self.write_engine = create_async_engine(url, pool_size=1, max_overflow=0)
            self.read_engine = create_async_engine(url, pool_size=4, max_overflow=0)
            for engine in (self.write_engine, self.read_engine):
                event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            self.write_engine = create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)
            self.read_engine = create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
        self._queue: asyncio.Queue[tuple[Unit, asyncio.Future[Any]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.commits = 0  # for benchmarks and tests: how many transactions were committed
        self.units = 0

    @property
    def engine(self) -> AsyncEngine:
        return self.write_engine

    async def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="db-writer")

    async def close(self) -> None:
        if self._writer is not None:
            # Let queued units finish, then stop.
            while not self._queue.empty():
                await asyncio.sleep(0.01)
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                pass
            self._writer = None
        await self.write_engine.dispose()
        await self.read_engine.dispose()

    async def write(self, unit: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``unit`` inside a committed transaction; returns its result once durable."""
        if self._writer is None:
            await self.start()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((unit, future))
        return await future

    async def read(self, query: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async with self.read_engine.connect() as conn:
            return await query(conn)

    async def ping(self) -> bool:
        try:
            async with self.read_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - readiness reports any failure
            log.exception("db.ping_failed")
            return False

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [(u, f) for u, f in batch if not f.cancelled()]
            if not batch:
                continue
            try:
                await self._run_batch(batch)
            except Exception:  # noqa: BLE001 - isolate the failing unit
                if len(batch) == 1:
                    continue  # its future already carries the exception
                for item in batch:
                    if not item[1].done():
                        try:
                            await self._run_batch([item])
                        except Exception:  # noqa: BLE001
                            pass

    async def _run_batch(self, batch: list[tuple[Unit, asyncio.Future[Any]]]) -> None:
        results: list[Any] = []
        try:
            async with self.write_engine.begin() as conn:
                for unit, _future in batch:
                    results.append(await unit(conn))
        except Exception as exc:
            if len(batch) == 1 and not batch[0][1].done():
                batch[0][1].set_exception(exc)
            raise
        self.commits += 1
        self.units += len(batch)
        for (_unit, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)
