"""The `touchpoint` command as an operator runs it: set-webhooks against the fake APIs, db upgrade, guards."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from integrations.fakes import FakePlatforms
from tests.conftest import REPO


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "VIBER_", "WHATSAPP_", "TOUCHPOINT_"))}
    full.update(env)
    full["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], env=full, cwd=cwd, capture_output=True, text=True, timeout=60
    )


async def test_set_webhooks_registers_telegram_and_viber_and_prints_whatsapp_values(tmp_path: Path) -> None:
    fake = FakePlatforms()
    base = await fake.start(port=0)
    try:
        env = {
            "TELEGRAM_BOT_TOKEN": "1:abc",
            "TELEGRAM_WEBHOOK_SECRET": "s3cret-token",
            "TELEGRAM_API_URL": f"{base}/telegram",
            "VIBER_AUTH_TOKEN": "viber-token",
            "VIBER_API_URL": f"{base}/viber",
            "WHATSAPP_ACCESS_TOKEN": "wa",
            "WHATSAPP_PHONE_NUMBER_ID": "106540000000101",
            "WHATSAPP_APP_SECRET": "app-secret",
            "WHATSAPP_VERIFY_TOKEN": "my-verify-token",
            "WHATSAPP_API_URL": f"{base}/whatsapp/v21.0",
        }
        import asyncio

        result = await asyncio.to_thread(run, ["set-webhooks", "--base-url", "https://bot.example.org"], env, tmp_path)
        assert result.returncode == 0, result.stderr
        set_webhook = [r for r in fake.requests if r.method == "setWebhook"]
        assert len(set_webhook) == 1
        body = set_webhook[0].json
        assert body["url"] == "https://bot.example.org/webhooks/telegram"
        assert body["secret_token"] == "s3cret-token"
        assert set(body["allowed_updates"]) == {"message", "edited_message", "callback_query", "my_chat_member"}
        viber = [r for r in fake.requests if r.platform == "viber" and r.method == "set_webhook"]
        assert len(viber) == 1 and viber[0].json["url"] == "https://bot.example.org/webhooks/viber"
        assert "https://bot.example.org/webhooks/whatsapp" in result.stdout
        assert "my-verify-token" in result.stdout
    finally:
        await fake.stop()


def test_set_webhooks_without_any_channel_says_what_to_set(tmp_path: Path) -> None:
    result = run(["set-webhooks", "--base-url", "https://bot.example.org"], {}, tmp_path)
    assert result.returncode == 2
    assert "TELEGRAM_BOT_TOKEN" in result.stderr


def test_db_upgrade_creates_every_table(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    result = run(["db", "upgrade"], {"TOUCHPOINT_DATABASE_URL": f"sqlite+aiosqlite:///{db}"}, tmp_path)
    assert result.returncode == 0, result.stderr
    tables = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"customer", "channel_identity", "conversation", "consent", "inbox", "outbox", "message_log"} <= tables


def test_worker_and_no_worker_serve_refuse_to_run_without_redis(tmp_path: Path) -> None:
    for args in (["worker"], ["serve", "--no-workers"]):
        result = run(args, {}, tmp_path)
        assert result.returncode == 2
        assert "TOUCHPOINT_REDIS_URL" in result.stderr


def test_shell_runs_the_signup_in_the_terminal(tmp_path: Path) -> None:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "VIBER_", "WHATSAPP_", "TOUCHPOINT_"))}
    full["PYTHONPATH"] = str(REPO)
    full["TOUCHPOINT_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 's.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "bot", "shell", "--name", "Ana", "--language", "es"],
        input="sí\nsí\nno\n1\n2\n",
        env=full, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "¡Hola, Ana!" in result.stdout or "Hola Ana" in result.stdout
    rows = list(sqlite3.connect(tmp_path / "s.db").execute(
        "SELECT purpose, granted, source FROM consent ORDER BY id"
    ))
    assert rows == [("marketing", 1, "signup"), ("personalised", 0, "signup"), ("location", 1, "signup"), ("surveys", 0, "signup")]


def test_a_bad_config_or_setting_stops_the_start_with_a_message_naming_it(tmp_path: Path) -> None:
    typo = tmp_path / "typo.toml"
    typo.write_text("[discounts]\nmax_favorites = 2\nmax_percent = 90\n", encoding="utf-8")
    broken = tmp_path / "broken.toml"
    broken.write_text("shop_name = \n", encoding="utf-8")
    db = {"TOUCHPOINT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 't.db'}"}
    cases = [
        ({"TOUCHPOINT_CONFIG": str(typo)}, ["discounts.max_favorites: unknown key (misspelt?)", "discounts.max_percent:"]),
        ({"TOUCHPOINT_CONFIG": str(broken)}, ["is not valid TOML", "line 1"]),
        ({"TOUCHPOINT_CONFIG": str(tmp_path / "missing.toml")}, ["cannot read the config file", "missing.toml"]),
        ({"TOUCHPOINT_PORT": "eighty"}, ["touchpoint_port:"]),
    ]
    for env, words in cases:
        for command in (["serve"], ["shell"]):
            result = run(command, {**db, **env}, tmp_path)
            assert result.returncode == 2, (env, command, result.stderr)
            assert "Traceback" not in result.stderr
            for word in words:
                assert word in result.stderr, (env, command, result.stderr)
