"""The fake platform server: recording, waiting, scripted failures, and the watch-it CLI."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from bot.messages import Button, Outbound
from integrations.fakes import FakePlatforms
from integrations.whatsapp import WhatsAppAdapter

REPO = Path(__file__).resolve().parents[2]


async def test_wait_for_returns_when_enough_sends_arrived(fake, live):
    waiter = asyncio.create_task(fake.wait_for(2, "viber"))
    await asyncio.sleep(0)
    assert not waiter.done()
    await live["viber"].send("u1", Outbound("one"))
    await live["whatsapp"].send("1555", Outbound("other platform"))
    await live["viber"].send("u2", Outbound("two"))
    sent = await waiter
    assert [r.json["text"] for r in sent] == ["one", "two"]
    assert len(fake.sent()) == 3


async def test_wait_for_times_out(fake):
    with pytest.raises(TimeoutError):
        await fake.wait_for(1, timeout=0.05)


async def test_failed_calls_are_recorded_but_not_sent(fake, live):
    fake.fail_next("whatsapp", "blocked")
    await live["whatsapp"].send("1555", Outbound("hi"))
    [request] = [r for r in fake.requests if r.platform == "whatsapp"]
    assert (request.method, request.accepted) == ("messages", False)
    assert fake.sent("whatsapp") == []


def test_fail_next_rejects_unknown_kinds():
    fake = FakePlatforms()
    with pytest.raises(ValueError):
        fake.fail_next("telegram", "teapot")
    with pytest.raises(ValueError):
        fake.fail_next("signal", "500")


async def test_telegram_json_bodies_are_accepted_too(fake, session):
    url = f"{fake.env()['TELEGRAM_API_URL']}/bot123:abc/sendMessage"
    async with session.post(url, json={"chat_id": 42, "text": "curl works"}) as response:
        data = await response.json()
    assert data["ok"] is True and data["result"]["text"] == "curl works"
    assert fake.sent("telegram")[0].json == {"chat_id": 42, "text": "curl works"}


async def test_unknown_telegram_method_is_404(fake, session):
    async with session.post(f"{fake.env()['TELEGRAM_API_URL']}/bot123:abc/sendDice", json={}) as response:
        assert response.status == 404
        assert (await response.json())["ok"] is False


async def test_cli_prints_the_urls_and_every_reply(session):
    process = subprocess.Popen(
        [sys.executable, "-m", "integrations.fakes", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [await asyncio.to_thread(process.stdout.readline) for _ in range(4)]
        exports = dict(line.strip().removeprefix("export ").split("=", 1) for line in lines[1:4])
        assert set(exports) == {"TELEGRAM_API_URL", "VIBER_API_URL", "WHATSAPP_API_URL"}
        adapter = WhatsAppAdapter("token", "106540000000101", "secret", "verify", exports["WHATSAPP_API_URL"])
        await adapter.start(session)
        result = await adapter.send("15550100201", Outbound("Your order shipped", (Button("track", "Track"),)))
        assert result.status == "sent"
        await asyncio.to_thread(process.stdout.readline)  # "(any token works ...)"
        line = await asyncio.to_thread(process.stdout.readline)
        assert "whatsapp" in line and "15550100201" in line and "Your order shipped" in line and "[Track=track]" in line
    finally:
        process.terminate()
        process.wait(timeout=5)
        process.stdout.close()
