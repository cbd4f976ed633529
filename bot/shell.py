"""``touchpoint shell``: chat with the real dialogs in a terminal.

The same pipeline as the server (inbox, dialog engine, outbox, sender) with
the console as the channel, on the configured database, so what you do here
lands in the same tables.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import datetime, timezone

from bot.app import build_engine, migrate
from bot.config import load_config
from bot import store
from bot.db import Database
from bot.surveys import start_survey
from bot.events import Inbound, Kind
from bot.pipeline import Pipeline
from bot.settings import Settings
from bot.state.memory import MemoryBackend
from integrations.console import ConsoleAdapter


def to_event(line: str, address: str, name: str | None, language: str | None) -> Inbound:
    text = line.strip()
    common = dict(
        channel="console",
        address=address,
        event_id=uuid.uuid4().hex,
        received_at=datetime.now(timezone.utc),
        first_name=name,
        language_code=language,
    )
    if text.startswith("/"):
        command, _, args = text[1:].partition(" ")
        return Inbound(kind=Kind.COMMAND, command=command.lower(), text=args.strip(), context=args.strip() or None, **common)
    parts = text.split(",")
    if len(parts) == 2:
        try:
            lat, lon = float(parts[0]), float(parts[1])
            return Inbound(kind=Kind.LOCATION, location=(lat, lon), **common)
        except ValueError:
            pass
    return Inbound(kind=Kind.TEXT, text=text, **common)


async def run_shell(settings: Settings, *, user: str, name: str | None, language: str | None) -> None:
    config = load_config(settings.touchpoint_config or None)
    if settings.touchpoint_database_url.startswith("sqlite"):
        await migrate(settings.touchpoint_database_url)
    db = Database(settings.touchpoint_database_url)
    await db.start()
    console = ConsoleAdapter(write=lambda text: print(f"\nbot> {text.replace(chr(10), chr(10) + '     ')}"))
    pipeline = Pipeline(db=db, backend=MemoryBackend(), adapters={"console": console}, engine=build_engine(config))
    address = f"console:{user}"
    print(f"Touchpoint shell — you are '{user}' on channel 'console'. Type text, a number to pick a choice,")
    print("'lat,lon' to share a location, /start to begin, Ctrl-D to quit.")
    print("Shell only: '!survey ORDER' starts the order survey for you, as the shop's order.delivered does.")

    async def say(line: str) -> None:
        event = to_event(line, address, name, language)
        await pipeline.accept("console", [console.item(event)])
        await pipeline.drain_conversation("console", address)
        await pipeline.send_conversation("console", address)

    async def shell_command(line: str) -> None:
        command, _, argument = line[1:].strip().partition(" ")
        if command != "survey" or not argument.strip():
            print("shell> unknown; try '!survey A-1001'")
            return
        loaded = await db.read(lambda conn: store.load_conversation(conn, "console", address))
        if loaded is None or not config.surveys:
            print("shell> nobody to ask yet (say something first) or no survey configured")
            return
        result = await start_survey(pipeline, config, loaded.customer.id, config.surveys[0].id, argument.strip())
        print(f"shell> survey {config.surveys[0].id} for order {argument.strip()}: {result.reason}")
        await pipeline.drain_conversation("console", address)
        await pipeline.send_conversation("console", address)

    try:
        known = await db.read(lambda conn: store.load_conversation(conn, "console", address))
        if known is None:
            await say("/start")  # a first contact: the sign-up begins
        else:
            print("(you have talked to the bot before: type 'menu' to see what you can do)")
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, _prompt)
            if line is None:
                break
            if line.startswith("!"):
                await shell_command(line)
            elif line.strip():
                await say(line)
    finally:
        await pipeline.stop()
        await db.close()
        print()


def _prompt() -> str | None:
    try:
        return input("\nyou> ")
    except EOFError:
        return None
    except KeyboardInterrupt:
        return None


def main(settings: Settings, user: str, name: str | None, language: str | None) -> int:
    try:
        asyncio.run(run_shell(settings, user=user, name=name, language=language))
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
    return 0
