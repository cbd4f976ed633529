"""Benchmark of proactive sending: audience resolution, enqueueing, and the sender with and without a rate limit.

One command, loopback only, bounded (about a minute and a half):

    python bench/push.py [--customers 100000] [--limited 2000] [--limit 200]

It creates ``--customers`` customers in a fresh SQLite file (a third of them
with the campaign's category among their favourites and marketing consent on
Telegram), then runs Touchpoint in this process against a minimal Telegram
API in a separate process, and prints:

* seconds to resolve the campaign's audience and enqueue its pushes;
* seconds to decide them (consent, caps, quiet hours, channel) into the outbox;
* messages per second sent with rate limits off, until every one reached the fake API,
  and, in the same run, a bare aiohttp client's sends per second to the same fake
  API (the ratio shows what Touchpoint's bookkeeping costs per message);
* the measured rate against a configured Telegram limit (``--limit`` per second):
  it must be within 5 % of the limit and never above it;
* peak RSS of this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TOKEN = "7000000001:BENCH"

# A Telegram sendMessage endpoint that answers like the real one and counts per 100 ms.
FAKE_TELEGRAM = """
import asyncio, sys, time, itertools, json
from aiohttp import web
try:
    import uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
except ImportError:
    pass
ids = itertools.count(1)
stamps = []
BOT = {"id": 7000000001, "is_bot": True, "first_name": "Bench", "username": "BenchBot"}
async def handle(request):
    method = request.match_info["method"]
    if method == "getMe":
        return web.json_response({"ok": True, "result": {**BOT, "can_join_groups": True, "supports_inline_queries": False}})
    body = await request.post() if request.content_type != "application/json" else await request.json()
    stamps.append(time.monotonic())
    chat = {"id": int(body.get("chat_id", 1)), "type": "private"}
    return web.json_response({"ok": True, "result": {"message_id": next(ids), "from": BOT, "chat": chat, "date": int(time.time()), "text": "x"}})
async def stats(request):
    return web.json_response({"count": len(stamps), "stamps": stamps if request.query.get("all") else []})
async def reset(request):
    stamps.clear()
    return web.json_response({"ok": True})
app = web.Application()
app.router.add_post("/telegram/bot{token}/{method}", handle)
app.router.add_get("/stats", stats)
app.router.add_post("/reset", reset)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(path: str, customers: int) -> int:
    """Customers, Telegram identities and conversations, consents and favourites, straight into SQLite."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    db = sqlite3.connect(path)
    rng = random.Random(7)
    matching = 0
    with db:
        db.executemany(
            "INSERT INTO customer (id, first_name, locale, categories, attributes, timezone, created_at, updated_at) "
            "VALUES (?, ?, 'en', ?, '{}', 'UTC', ?, ?)",
            (
                (i, f"C{i}", json.dumps(["shoes", "books"] if i % 3 == 0 else [rng.choice(["toys", "home"])]), now, now)
                for i in range(1, customers + 1)
            ),
        )
        db.executemany(
            "INSERT INTO channel_identity (customer_id, channel, address, created_at) VALUES (?, 'telegram', ?, ?)",
            ((i, str(10_000_000 + i), now) for i in range(1, customers + 1)),
        )
        db.executemany(
            "INSERT INTO conversation (channel, address, customer_id, slots, offered, mode, misses, version, updated_at) "
            "VALUES ('telegram', ?, ?, '{}', '[]', 'bot', 0, 0, ?)",
            ((str(10_000_000 + i), i, now) for i in range(1, customers + 1)),
        )
        rows = []
        for i in range(1, customers + 1):
            granted = i % 3 == 0 or rng.random() < 0.5
            rows.append((i, "marketing", "telegram", int(granted), "signup", "1", now))
            matching += i % 3 == 0
        db.executemany(
            "INSERT INTO consent (customer_id, purpose, channel, granted, source, wording_version, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    db.close()
    return matching


async def wait_count(session: aiohttp.ClientSession, fake: str, expected: int, timeout: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        async with session.get(f"{fake}/stats") as r:
            if (await r.json())["count"] >= expected:
                return time.perf_counter()
        await asyncio.sleep(0.05)
    raise SystemExit(f"only part of {expected} messages arrived within {timeout} s")


async def bare_client(fake: str, count: int) -> float:
    """Sends per second of a bare aiohttp client posting the same requests to the same fake."""
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = iter(range(count))

        async def worker() -> None:
            for i in queue:
                async with session.post(f"{fake}/telegram/bot{TOKEN}/sendMessage", json={"chat_id": 10_000_000 + i, "text": "x"}) as r:
                    await r.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(64)))
        return count / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> None:
    from bot.appkeys import CAMPAIGNS, CONFIG, PIPELINE, PUSHES
    from bot.app import create_app
    from bot.config import QuietHours
    from bot.migrate import upgrade
    from bot.pipeline import RateLimit
    from bot.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="tp-bench-push-"))
    db_path = tmp / "bench.db"
    url = f"sqlite+aiosqlite:///{db_path}"
    await asyncio.to_thread(upgrade, url)
    started = time.perf_counter()
    matching = seed(str(db_path), args.customers)
    print(f"seeded {args.customers:,} customers ({matching:,} match) in {time.perf_counter() - started:.1f} s")

    port = free_port()
    fake_proc = subprocess.Popen([sys.executable, "-c", FAKE_TELEGRAM, str(port)])
    fake = f"http://127.0.0.1:{port}"
    (tmp / "config.toml").write_text(
        'shop_name = "Bench"\n[rate_limits.telegram]\nper_second = 0\nper_chat_per_second = 0\n'
        "[policy]\nquiet_hours = { start = \"00:00\", end = \"00:00\" }\ncaps = { per_day = 100, per_week = 100 }\n"
    )
    settings = Settings(
        _env_file=None,
        touchpoint_database_url=url,
        touchpoint_config=str(tmp / "config.toml"),
        telegram_bot_token=TOKEN,
        telegram_webhook_secret="bench",
        telegram_api_url=f"{fake}/telegram",
        touchpoint_log_level="WARNING",
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(f"{fake}/stats"):
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            app = create_app(settings, run_migrations=False)
            runner = __import__("aiohttp").web.AppRunner(app)
            await runner.setup()
            try:
                await run(app, session, fake, matching, args, CAMPAIGNS, CONFIG, PIPELINE, PUSHES, QuietHours, RateLimit)
            finally:
                await runner.cleanup()
    finally:
        fake_proc.terminate()
        fake_proc.wait()


async def run(app, session, fake, matching, args, CAMPAIGNS, CONFIG, PIPELINE, PUSHES, QuietHours, RateLimit) -> None:  # type: ignore[no-untyped-def]
    campaigns, pushes, pipeline = app[CAMPAIGNS], app[PUSHES], app[PIPELINE]
    pipeline.concurrency = int(os.environ.get("BENCH_CONCURRENCY", pipeline.concurrency))
    audience = {"categories_any": ["shoes"], "consent_purpose": "marketing", "channel": "telegram"}

    # 1. resolve the audience and enqueue the pushes
    campaign = await campaigns.create("bench", "announcement", audience, {"message": "Hello!"}, None)
    started = time.perf_counter()
    enqueued = await campaigns.enqueue(campaign)
    enqueue_s = time.perf_counter() - started
    assert enqueued == matching, (enqueued, matching)
    # 2. decisions into the outbox, and 3. the sender, limits off: every message on the wire
    started = time.perf_counter()
    await pushes.dispatch_due()
    decide_s = time.perf_counter() - started
    done = await wait_count(session, fake, matching, timeout=300)
    overall_rate = matching / (done - started)
    async with session.get(f"{fake}/stats?all=1") as r:
        arrivals = sorted((await r.json())["stamps"])
    send_rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    async with session.post(f"{fake}/reset"):
        pass
    bare_rate = await bare_client(fake, min(matching, 20_000))

    # 4. the same sender under a configured limit
    async with session.post(f"{fake}/reset"):
        pass
    pipeline.rate_limits = {"telegram": RateLimit(per_second=args.limit, burst=1)}
    limited_ids = list(range(3, 3 * args.limited + 1, 3))  # customers that were already sent once: caps are high
    await pushes.submit("announcement", limited_ids, {"message": "Again"}, dedup_key="bench:limited")
    await wait_count(session, fake, args.limited, timeout=args.limited / args.limit * 3 + 30)
    async with session.get(f"{fake}/stats?all=1") as r:
        stamps = sorted((await r.json())["stamps"])
    window = stamps[-1] - stamps[0]
    measured = (len(stamps) - 1) / window if window > 0 else float("inf")
    busiest = max(sum(1 for s in stamps if t <= s < t + 1.0) for t in stamps)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print()
    print(f"audience of {matching:,} of {args.customers:,} resolved and enqueued: {enqueue_s:.1f} s (target < 20 s)")
    print(f"decided into the outbox: {decide_s:.1f} s")
    print(
        f"sent, limits off: {send_rate:,.0f} msg/s from the first to the last arrival (target >= 1,500); "
        f"{overall_rate:,.0f} msg/s including the decisions"
    )
    print(f"bare aiohttp client to the same fake API: {bare_rate:,.0f} req/s; ratio {send_rate / bare_rate:.2f}")
    deviation = (measured - args.limit) / args.limit * 100
    print(
        f"sent at a limit of {args.limit:.0f}/s: {measured:.1f} msg/s ({deviation:+.1f} %, must be within -5 % and never above); "
        f"busiest second {busiest}"
    )
    print(f"peak RSS: {rss_mb:.0f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--limited", type=int, default=2000, help="messages sent under the limit")
    parser.add_argument("--limit", type=float, default=200.0, help="Telegram sends per second in the limited run")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(parser.parse_args()))
