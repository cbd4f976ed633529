"""The terminal as a channel, for ``touchpoint shell``: numbered choices, plain text."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import aiohttp
import orjson

from bot.events import Inbound
from bot.messages import Outbound, SendResult
from integrations.base import InboxItem, Limits, numbered_choices


class ConsoleAdapter:
    channel = "console"
    limits = Limits(
        max_text=100_000, max_buttons=0, max_button_label=200, max_list_rows=0, max_list_label=200, max_payload_bytes=200
    )

    def __init__(self, write: Callable[[str], None] = print) -> None:
        self._write = write
        self._sent = 0

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        return False  # the console never arrives over HTTP

    def split(self, data: Any) -> list[InboxItem]:
        return []

    def item(self, event: Inbound) -> InboxItem:
        return InboxItem(event_id=event.event_id, address=event.address, body=orjson.dumps(event.to_dict()))

    def parse(self, body: bytes) -> Inbound | None:
        return Inbound.from_dict(orjson.loads(body))

    def render(self, address: str, out: Outbound) -> list[dict[str, Any]]:
        text = numbered_choices(out)
        if out.request_location:
            text += "\n(" + (out.location_label or "location") + ": type 'lat,lon')"
        return [{"method": "print", "text": text}]

    async def send(self, address: str, out: Outbound, *, start_part: int = 0) -> SendResult:
        for part in self.render(address, out)[start_part:]:
            self._write(part["text"])
        self._sent += 1
        return SendResult("sent", platform_message_id=f"console-{self._sent}", parts_sent=1)

    async def acknowledge(self, event: Inbound) -> None:
        return None

    def webhook_reply(self, out: Outbound) -> dict[str, Any] | None:
        return None

    async def register_webhook(self, url: str) -> str:
        return "console: nothing to register"

    async def start(self, session: aiohttp.ClientSession) -> None:
        return None

    async def close(self) -> None:
        return None
