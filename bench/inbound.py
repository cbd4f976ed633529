"""Benchmark of the inbound path: webhook acks, end-to-end replies, latency under a fixed rate.

One command, loopback only, bounded in count and time (about a minute):

    python bench/inbound.py [--seconds 5] [--messages 3000] [--rate 300]

It starts, as separate processes, a bare aiohttp server (read the body,
answer 200) and ``touchpoint serve`` on a fresh SQLite file, with the
Telegram API played by ``integrations.fakes`` inside this process, and prints:

* webhook acks per second (closed loop, 32 connections, distinct users) for
  both servers and their ratio, measured in the same run with the same client;
* the end-to-end rate: updates posted until each one's reply reached the fake API,
  for first contacts (a new customer and the sign-up greeting) and for an
  ordinary conversation turn (an answer and the next question);
* p50 / p99 end-to-end latency at a fixed offered rate (open loop: every
  update is posted at its scheduled time whether or not earlier ones were
  answered, so a stall shows in the tail);
* the server's peak RSS.

The load generator shares the machine with the server; on a 2-core machine it
uses the other core. Figures drift between runs on shared machines: compare
ratios from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from integrations.fakes import FakePlatforms, Recorded  # noqa: E402

TOKEN = "7000000001:BENCH"
SECRET = "bench-secret"
CONNECTIONS = 32

BARE_SERVER = """
import asyncio, sys
from aiohttp import web
try:  # the same event loop as `touchpoint serve` uses, so the ratio compares handlers only
    import uvloop
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
except ImportError:
    pass
async def handle(request):
    await request.read()
    return web.Response(text="ok")
app = web.Application()
app.router.add_post("/webhooks/telegram", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

CONFIG = """
shop_name = "Bench Shop"
[rate_limits.telegram]
per_second = 0
per_chat_per_second = 0
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def update(update_id: int, user_id: int, text: str = "hello") -> bytes:
    user = {"id": user_id, "is_bot": False, "first_name": "Bench", "language_code": "en"}
    return orjson.dumps(
        {
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "from": user,
                "chat": {"id": user_id, "first_name": "Bench", "type": "private"},
                "date": int(time.time()),
                "text": text,
            },
        }
    )


class Replies:
    """Counts sendMessage calls per chat; ``waiters[(chat, n)]`` resolves at the n-th one."""

    def __init__(self) -> None:
        self.count: dict[int, int] = {}
        self.waiters: dict[tuple[int, int], asyncio.Future[float]] = {}

    def __call__(self, recorded: Recorded) -> None:
        if recorded.method != "sendMessage":
            return
        chat = int(recorded.json.get("chat_id", 0))
        n = self.count[chat] = self.count.get(chat, 0) + 1
        waiter = self.waiters.pop((chat, n), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(time.perf_counter())

    async def e2e(self, url: str, headers: dict[str, str], users: list[int], text: str, first_id: int) -> float:
        """Post one update per user (32 connections); messages/s until each got its next reply."""
        loop = asyncio.get_running_loop()
        futures = []
        for uid in users:
            future = loop.create_future()
            self.waiters[(uid, self.count.get(uid, 0) + 1)] = future
            futures.append(future)
        bodies = iter([update(first_id + i, uid, text) for i, uid in enumerate(users)])
        started = time.perf_counter()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTIONS)) as session:

            async def poster() -> None:
                for body in bodies:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()

            await asyncio.gather(*(poster() for _ in range(CONNECTIONS)))
            await asyncio.wait_for(asyncio.gather(*futures), timeout=120)
        return len(users) / (time.perf_counter() - started)


async def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def closed_loop(url: str, seconds: float, bodies: Any, headers: dict[str, str]) -> tuple[int, float]:
    """CONNECTIONS workers posting back to back for ``seconds``; returns (acks, elapsed)."""
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    acks = 0
    errors = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal acks, errors
            while time.perf_counter() < deadline:
                body = next(bodies)
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        acks += 1
                    else:
                        errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - started
    if errors:
        print(f"  ({errors} non-200 answers)")
    return acks, elapsed


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def main(args: argparse.Namespace) -> None:
    replies = Replies()
    fake = FakePlatforms(on_request=replies)
    base = await fake.start(port=0)
    work = Path(tempfile.mkdtemp(prefix="touchpoint-bench-"))
    (work / "config.toml").write_text(CONFIG)
    bare_port, tp_port = free_port(), free_port()
    env = {
        **os.environ,
        "TOUCHPOINT_PORT": str(tp_port),
        "TOUCHPOINT_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'bench.db'}",
        "TOUCHPOINT_CONFIG": str(work / "config.toml"),
        "TOUCHPOINT_LOG_LEVEL": "WARNING",
        "TOUCHPOINT_REDIS_URL": "",
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "TELEGRAM_API_URL": f"{base}/telegram",
        "PYTHONPATH": str(REPO),
    }
    for key in ("VIBER_AUTH_TOKEN", "WHATSAPP_ACCESS_TOKEN"):
        env.pop(key, None)
    bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(bare_port)], cwd=work)
    server = subprocess.Popen([sys.executable, "-m", "bot", "serve"], env=env, cwd=work)
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
    tp_url = f"http://127.0.0.1:{tp_port}/webhooks/telegram"
    bare_url = f"http://127.0.0.1:{bare_port}/webhooks/telegram"
    next_id = iter(range(1, 10**9))
    user_base = 6_000_000_000

    def fresh_bodies() -> Any:
        while True:
            n = next(next_id)
            yield update(n, user_base + n)

    try:
        await wait_http(f"http://127.0.0.1:{tp_port}/healthz")
        await wait_http(f"http://127.0.0.1:{bare_port}/webhooks/telegram")
        print(f"Touchpoint inbound benchmark — {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, SQLite, in-process queues")

        # warm-up: imports, caches, the first customers
        await closed_loop(tp_url, 1.0, fresh_bodies(), headers)
        await closed_loop(bare_url, 1.0, fresh_bodies(), headers)
        await asyncio.sleep(2.0)

        acks_bare, t_bare = await closed_loop(bare_url, args.seconds, fresh_bodies(), headers)
        acks_tp, t_tp = await closed_loop(tp_url, args.seconds, fresh_bodies(), headers)
        rate_bare, rate_tp = acks_bare / t_bare, acks_tp / t_tp
        print(f"webhook acks/s, closed loop, {CONNECTIONS} connections:")
        print(f"  bare aiohttp      {rate_bare:8.0f} /s")
        print(f"  touchpoint        {rate_tp:8.0f} /s   ratio {rate_tp / rate_bare:.2f} of bare (target >= 0.30)")

        # let the backlog of the ack phase drain before measuring end to end
        drain_deadline = time.perf_counter() + 120
        while sum(replies.count.values()) < next(next_id) - 50 and time.perf_counter() < drain_deadline:
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)

        # end-to-end rate: M new users write once (first contact: customer created, sign-up
        # greeting), then each answers (a consent question follows); done when every reply arrived
        count = args.messages
        first_user = user_base + next(next_id) + 10_000
        users = list(range(first_user, first_user + count))
        first_contact = await replies.e2e(tp_url, headers, users, "hello", 10**8)
        await asyncio.sleep(1.0)
        conversation = await replies.e2e(tp_url, headers, users, "yes", 10**8 + count)
        print(f"end-to-end: {count} users, each update posted until its reply reached the fake API:")
        print(f"  first contact (new customer, sign-up greeting)   {first_contact:6.0f} messages/s")
        print(f"  conversation turn (answer, next question)        {conversation:6.0f} messages/s (target >= 600)")
        await asyncio.sleep(1.0)
        loop = asyncio.get_running_loop()

        # latency at a fixed offered rate (open loop)
        rate, seconds = args.rate, args.latency_seconds
        total = int(rate * seconds)
        first_user = first_user + count + 10_000
        latencies: list[float] = []
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector) as session:
            t0 = time.perf_counter() + 0.2

            async def one(i: int) -> None:
                uid = first_user + i
                scheduled = t0 + i / rate
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                waiter = loop.create_future()
                replies.waiters[(uid, 1)] = waiter
                async with session.post(tp_url, data=update(2 * 10**8 + i, uid), headers=headers) as response:
                    await response.read()
                arrived = await asyncio.wait_for(waiter, timeout=60)
                latencies.append(arrived - scheduled)

            await asyncio.gather(*(one(i) for i in range(total)))
        print(f"latency at {rate} messages/s offered for {seconds:.0f} s (open loop, {total} updates, update scheduled -> reply at the API):")
        print(f"  p50 {percentile(latencies, 0.50) * 1000:7.1f} ms   p99 {percentile(latencies, 0.99) * 1000:7.1f} ms"
              f"   max {max(latencies) * 1000:7.1f} ms   mean {statistics.mean(latencies) * 1000:.1f} ms (target p99 < 100 ms)")
        print(f"peak RSS of the touchpoint server: {peak_rss_mb(server.pid):.0f} MB")
    finally:
        for process in (server, bare):
            process.terminate()
        for process in (server, bare):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        await fake.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each closed-loop ack run")
    parser.add_argument("--messages", type=int, default=3000, help="updates in the end-to-end run")
    parser.add_argument("--rate", type=float, default=300.0, help="offered rate of the latency run")
    parser.add_argument("--latency-seconds", type=float, default=10.0, help="duration of the latency run")
    asyncio.run(main(parser.parse_args()))
