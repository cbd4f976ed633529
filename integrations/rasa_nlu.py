"""Rasa NLU as the intent backend: ``POST {RASA_URL}/model/parse``.

When ``RASA_URL`` is set, the engine asks Rasa for the intent of a free text
before the turn runs (``bot.dialog.DialogEngine.handle``). Rasa answers
``{"text", "intent": {"name", "confidence"}, "entities", "intent_ranking"}``;
only the top intent is used, and only above ``intents.threshold``.

Name the intents of your Rasa model like ours (``bot.intents.INTENTS``:
greeting, help, menu, stop, complaint, human, language, categories, privacy,
thanks); any other intent is understood as "nothing we act on". A Rasa server
started with ``--auth-token`` is reached with the token in the URL
(``RASA_URL=http://rasa:5005?token=...``).

Rasa being slow or down must never hold up a conversation: after
``intents.rasa_timeout_seconds``, or on any error, ``parse`` returns None and
the engine's phrase matcher answers instead. The log says so at most once a
minute per client, so an outage does not flood it.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import aiohttp
from yarl import URL

from bot.intents import Intent

log = logging.getLogger(__name__)

PARSE_PATH = "model/parse"
WARN_EVERY_SECONDS = 60.0


class RasaNlu:
    """An ``NluBackend`` that asks a Rasa server; owns its HTTP session unless given one."""

    def __init__(
        self, url: str, *, timeout_seconds: float, session: aiohttp.ClientSession | None = None
    ) -> None:
        base = URL(url)
        self.endpoint = base.with_path(f"{base.path.rstrip('/')}/{PARSE_PATH}").with_query(base.query)
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session = session
        self._owns_session = session is None
        self._warned_at: float | None = None
        self._failures = 0  # since the last warning

    async def parse(self, text: str, *, message_id: str | None = None) -> Intent | None:
        """Rasa's top intent for ``text`` (Intent("", 0.0) when it has none); None when Rasa cannot answer."""
        body: dict[str, Any] = {"text": text}
        if message_id:
            body["message_id"] = message_id
        try:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            async with self._session.post(self.endpoint, json=body, timeout=self._timeout) as response:
                if response.status != 200:
                    raise RasaError(f"HTTP {response.status}")
                data = await response.json(content_type=None)
            intent = _top_intent(data)
        except (aiohttp.ClientError, TimeoutError, ValueError, RasaError) as exc:
            self._unavailable(exc)
            return None
        if self._warned_at is not None:
            log.info("rasa.available again after %d failed requests", self._failures)
            self._warned_at, self._failures = None, 0
        return intent

    def _unavailable(self, exc: BaseException) -> None:
        self._failures += 1
        now = time.monotonic()
        if self._warned_at is None or now - self._warned_at >= WARN_EVERY_SECONDS:
            reason = str(exc) or type(exc).__name__
            log.warning(
                "rasa.unavailable url=%s error=%s failures=%d; using phrase matcher",
                self.endpoint.with_query(None),
                reason,
                self._failures,
            )
            self._warned_at, self._failures = now, 0

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None


class RasaError(Exception):
    """Rasa answered, but not with a parse result."""


def _top_intent(data: Any) -> Intent:
    if not isinstance(data, dict):
        raise RasaError("the answer is not a JSON object")
    intent = data.get("intent") or {}
    if not isinstance(intent, dict):
        raise RasaError("'intent' is not an object")
    name, confidence = intent.get("name"), intent.get("confidence", 0.0)
    if name is None:
        return Intent("", 0.0)  # Rasa understood nothing (e.g. an empty text)
    if not isinstance(name, str) or not isinstance(confidence, (int, float)) or isinstance(confidence, bool):
        raise RasaError("'intent' has no name and confidence")
    if not math.isfinite(confidence) or not 0 <= confidence <= 1:
        raise RasaError(f"confidence {confidence!r} is not between 0 and 1")
    return Intent(name, float(confidence))
