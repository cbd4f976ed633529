"""Rasa NLU as the intent backend, against a local fake of Rasa's ``POST /model/parse``.

The fake is a real aiohttp server on 127.0.0.1 that answers in Rasa's shape
(``{"text", "intent": {"name", "confidence"}, "entities", "intent_ranking"}``)
or fails the way a real one can: closed port, HTTP 500, too slow, not JSON.
Whatever happens, the customer gets an answer: Rasa's intent above the
threshold, else the phrase matcher, and the log says which.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.app import build_nlu, create_app
from bot.appkeys import PIPELINE
from bot.config import load_config
from bot.dialog import DialogEngine
from bot.i18n import I18n
from bot.intents import Intent
from bot.settings import Settings
from integrations.rasa_nlu import RasaNlu
from tests.dialogs.conftest import Chat, signed_up
from tests.dialogs.test_dialog_intents import QUIET_SIGNUP, stand_in_registry

LOCALES_DIR = Path(__file__).resolve().parents[2] / "locales"
LOGGER = "integrations.rasa_nlu"


class FakeRasa:
    """Rasa's parse endpoint: ``intents`` maps a text to (name, confidence); ``mode`` breaks it."""

    def __init__(self) -> None:
        self.intents: dict[str, tuple[str, float]] = {}
        self.mode = "ok"  # ok | error | slow | garbage
        self.requests: list[dict[str, Any]] = []
        self.queries: list[dict[str, str]] = []
        self.release = asyncio.Event()  # lets a "slow" answer finish at teardown
        app = web.Application()
        app.router.add_post("/model/parse", self.parse)
        self.server = TestServer(app, host="127.0.0.1")

    async def parse(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.queries.append(dict(request.query))
        if self.mode == "error":
            return web.json_response({"error": "model not loaded"}, status=500)
        if self.mode == "slow":
            await self.release.wait()
        if self.mode == "garbage":
            return web.Response(text="<html>proxy error</html>", content_type="text/html")
        name, confidence = self.intents.get(body["text"], ("nlu_fallback", 0.3))
        top = {"name": name, "confidence": confidence}
        ranking = [top, {"name": "greeting", "confidence": 0.01}]
        return web.json_response({"text": body["text"], "intent": top, "entities": [], "intent_ranking": ranking})

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


@pytest.fixture
async def rasa() -> AsyncIterator[FakeRasa]:
    fake = FakeRasa()
    await fake.server.start_server()
    yield fake
    fake.release.set()
    await fake.server.close()


@pytest.fixture
async def clients() -> AsyncIterator[list[RasaNlu]]:
    made: list[RasaNlu] = []
    yield made
    for client in made:
        await client.close()


@pytest.fixture
def chat_with(clients, i18n_catalog):
    """A signed-up customer whose engine asks Rasa at ``url`` first."""

    async def make(url: str, timeout: float = 2.0, lang: str = "en") -> Chat:
        client = RasaNlu(url, timeout_seconds=timeout)
        clients.append(client)
        engine = DialogEngine(load_config(None), i18n_catalog, stand_in_registry(), nlu=client)
        chat = await signed_up(Chat(engine, language_code=lang), QUIET_SIGNUP)
        return chat

    return make


@pytest.fixture(scope="module")
def i18n_catalog() -> I18n:
    return I18n.load(LOCALES_DIR)


@pytest.fixture
def t(i18n_catalog):
    return i18n_catalog.text


def idle_fallback(t) -> list[str]:
    """What a customer sees for text nobody understood: the apology and the menu, in one message."""
    return [t("en", "fallback.idle") + "\n\n" + t("en", "menu.question")]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def fallback_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


# ----------------------------------------------------------------------------- Rasa answers


async def test_rasas_intent_above_the_threshold_is_used(rasa, chat_with):
    rasa.intents["the heel came off after one day"] = ("complaint", 0.93)
    chat = await chat_with(rasa.url)
    await chat.send("the heel came off after one day")  # no phrase list knows this one
    assert chat.state.dialog == "complaint"
    assert chat.state.slots["complaint"] == {"heard": "the heel came off after one day", "intent": "complaint"}
    assert rasa.requests[-1]["text"] == "the heel came off after one day"
    assert rasa.requests[-1]["message_id"]  # the platform event id, for Rasa's logs


async def test_rasas_intent_below_the_threshold_is_ignored(rasa, chat_with, t):
    rasa.intents["hlep"] = ("help", 0.55)
    chat = await chat_with(rasa.url)
    await chat.send("hlep")  # the phrase matcher would say help: Rasa's unsure answer stands
    assert chat.texts == idle_fallback(t)


async def test_an_intent_we_do_not_know_is_not_acted_on(rasa, chat_with, t):
    rasa.intents["order status"] = ("check_order_status", 0.97)
    chat = await chat_with(rasa.url)
    await chat.send("order status")
    assert chat.texts == idle_fallback(t)


async def test_buttons_commands_and_answers_never_go_to_rasa(rasa, chat_with):
    chat = await chat_with(rasa.url)
    before = len(rasa.requests)
    await chat.send("menu")
    await chat.press("language")
    await chat.send("Deutsch")
    await chat.command("help")
    assert len(rasa.requests) == before


async def test_a_token_in_rasa_url_reaches_rasa_and_never_the_log(rasa, clients, caplog):
    client = RasaNlu(f"{rasa.url}/?token=s3cret", timeout_seconds=2)
    clients.append(client)
    rasa.intents["hello"] = ("greeting", 0.99)
    assert await client.parse("hello") == Intent("greeting", 0.99)
    assert rasa.queries[-1] == {"token": "s3cret"}
    rasa.mode = "error"
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert await client.parse("hello") is None
    assert fallback_warnings(caplog) and "s3cret" not in caplog.text


# ----------------------------------------------------------------------------- Rasa down


async def test_rasa_not_listening_the_phrase_matcher_answers_and_the_log_says_so(chat_with, caplog, t):
    chat = await chat_with(f"http://127.0.0.1:{closed_port()}")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await chat.send("hlep")
    assert chat.texts[0].startswith(t("en", "help.text").split("\n")[0])
    [warning] = fallback_warnings(caplog)
    assert warning.startswith("rasa.unavailable") and warning.endswith("using phrase matcher")


async def test_rasa_failing_with_500_the_phrase_matcher_answers(rasa, chat_with, caplog):
    rasa.mode = "error"
    chat = await chat_with(rasa.url, lang="de")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await chat.send("die Lieferung ist nicht angekommen")
    assert chat.state.dialog == "complaint"
    [warning] = fallback_warnings(caplog)
    assert "HTTP 500" in warning and "using phrase matcher" in warning


async def test_rasa_too_slow_the_phrase_matcher_answers_within_the_timeout(rasa, chat_with, caplog):
    chat = await chat_with(rasa.url, timeout=0.2, lang="es")
    rasa.mode = "slow"
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await chat.send("mi cupon no funciona")
    assert time.perf_counter() - started < 1.5
    assert chat.state.dialog == "complaint"
    [warning] = fallback_warnings(caplog)
    assert "using phrase matcher" in warning


async def test_rasa_answering_garbage_counts_as_down(rasa, clients, caplog):
    rasa.mode = "garbage"
    client = RasaNlu(rasa.url, timeout_seconds=2)
    clients.append(client)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert await client.parse("hi") is None
    assert fallback_warnings(caplog)


async def test_an_outage_is_logged_once_a_minute_and_the_recovery_once(rasa, clients, caplog):
    client = RasaNlu(rasa.url, timeout_seconds=2)
    clients.append(client)
    rasa.mode = "error"
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(5):
            assert await client.parse("hi") is None
        rasa.mode = "ok"
        assert await client.parse("hi") == Intent("nlu_fallback", 0.3)
        assert await client.parse("hi") == Intent("nlu_fallback", 0.3)
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(fallback_warnings(caplog)) == 1
    assert [m for m in messages if m.startswith("rasa.available")] == ["rasa.available again after 4 failed requests"]


async def test_an_answer_without_an_intent_is_no_intent(rasa, clients):
    client = RasaNlu(rasa.url, timeout_seconds=2)
    clients.append(client)
    rasa.intents[""] = (None, 0.0)  # type: ignore[assignment]  # Rasa's answer to an empty text
    assert await client.parse("") == Intent("", 0.0)


# ----------------------------------------------------------------------------- settings and app


def test_rasa_url_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("RASA_URL", "http://rasa.internal:5005")
    assert Settings(_env_file=None).rasa_url == "http://rasa.internal:5005"
    monkeypatch.delenv("RASA_URL")
    assert Settings(_env_file=None).rasa_url == ""


async def test_without_rasa_url_there_is_no_nlu_client():
    assert build_nlu(Settings(_env_file=None), load_config(None)) is None


async def test_the_app_asks_rasa_and_closes_its_session_on_shutdown(rasa, tmp_path):
    settings = Settings(_env_file=None, touchpoint_database_url=f"sqlite+aiosqlite:///{tmp_path / 'tp.db'}",
                        rasa_url=rasa.url)  # fmt: skip
    server = TestServer(create_app(settings, run_workers=False), host="127.0.0.1")
    await server.start_server()
    try:
        nlu = server.app[PIPELINE].engine.nlu
        assert isinstance(nlu, RasaNlu) and str(nlu.endpoint) == f"{rasa.url}/model/parse"
        rasa.intents["hi"] = ("greeting", 0.98)
        assert await nlu.parse("hi") == Intent("greeting", 0.98)
        session = nlu._session
        assert session is not None and not session.closed
    finally:
        await server.close()
    assert session.closed
