"""A customer on Telegram, Viber or WhatsApp, for end-to-end tests through the real webhooks.

``PlatformUser`` builds webhook bodies in each platform's own shape (starting
from the shared fixture files), signs and posts them, waits until the app is
idle and returns what the bot sent this customer, read back off the wire from
the fake platform APIs. A button press sends exactly what the platform would:
Telegram a ``callback_query`` with the button's ``callback_data``, Viber a
text message carrying the ``ActionBody``, WhatsApp an interactive
``button_reply`` / ``list_reply`` with the id. So the tests exercise
parsing, the dialog, the database, rendering and sending together.

    user = PlatformUser(touchpoint, "telegram")
    intro = await user.start()               # /start promo_AUTUMN26
    question = await user.press("Continue")   # by the label the customer sees
    await user.say("yes")
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

from integrations.fakes import Recorded
from tests.conftest import Touchpoint, fixture_json, signed_headers

PLATFORMS = ("telegram", "viber", "whatsapp")
# Unique per process, so no two bodies of a test session collide in the inbox's dedup key.
_serial = itertools.count(1)
VIBER_TOKEN_BASE = 5741311803572000000  # above 2^53, like Viber's real message tokens
# Work the app still has to do now: unhandled inbox rows and due, unsent replies.
BUSY = (
    "SELECT (SELECT count(*) FROM inbox WHERE status = 'pending')"
    " + (SELECT count(*) FROM outbox WHERE status = 'pending' AND next_attempt_at IS NULL) AS n"
)


@dataclass(frozen=True, slots=True)
class WireButton:
    """A button as the platform shows it; ``token`` is what pressing it sends back."""

    label: str
    token: str
    description: str = ""  # WhatsApp list rows: the full label when the title was cut


@dataclass(frozen=True, slots=True)
class Reply:
    """One message the bot sent, as the platform received it."""

    text: str
    buttons: tuple[WireButton, ...]
    widget: str  # "text", "inline_keyboard", "keyboard" (Viber), "button" / "list" (WhatsApp)
    body: dict[str, Any]

    @property
    def labels(self) -> list[str]:
        return [b.label for b in self.buttons]


def recipient(recorded: Recorded) -> str:
    body = recorded.json
    return str(body.get("chat_id") or body.get("receiver") or body.get("to") or "")


def read_reply(platform: str, body: dict[str, Any]) -> Reply:
    """Text and buttons of one send call (or of Viber's welcome in a webhook response)."""
    if platform == "telegram":
        markup = body.get("reply_markup") or {}
        rows = markup.get("inline_keyboard") or []
        buttons = tuple(WireButton(b["text"], b["callback_data"]) for row in rows for b in row)
        return Reply(body.get("text", ""), buttons, "inline_keyboard" if rows else "text", body)
    if platform == "viber":
        keys = (body.get("keyboard") or {}).get("Buttons") or []
        buttons = tuple(WireButton(b.get("Text", ""), b.get("ActionBody", "")) for b in keys)
        return Reply(body.get("text", ""), buttons, "keyboard" if keys else "text", body)
    if body.get("type") == "text":
        return Reply(body["text"]["body"], (), "text", body)
    interactive = body.get("interactive") or {}
    action = interactive.get("action") or {}
    text = (interactive.get("body") or {}).get("text", "")
    if interactive.get("type") == "button":
        buttons = tuple(WireButton(b["reply"]["title"], b["reply"]["id"]) for b in action.get("buttons", []))
    else:
        rows = [r for s in action.get("sections", []) for r in s.get("rows", [])]
        buttons = tuple(WireButton(r["title"], r["id"], r.get("description", "")) for r in rows)
    return Reply(text, buttons, interactive.get("type", ""), body)


class PlatformUser:
    """One customer of one platform, talking to a running Touchpoint."""

    def __init__(
        self,
        touchpoint: Touchpoint,
        platform: str,
        *,
        address: str | None = None,
        name: str = "Alice Novak",
        language_code: str | None = "en",
    ) -> None:
        if platform not in PLATFORMS:
            raise ValueError(platform)
        self.tp = touchpoint
        self.platform = platform
        self.address = address or _default_address(platform)
        self.name = name
        self.language_code = language_code if platform != "whatsapp" else None  # WhatsApp sends none
        self.replies: list[Reply] = []  # everything this customer received, in order
        self.last_body: bytes = b""
        self.last_response: bytes = b""

    # --- what the customer does ---------------------------------------------

    async def start(self, payload: str | None = "promo_AUTUMN26") -> list[Reply]:
        """First contact: Telegram /start deep link, Viber conversation_started, WhatsApp a greeting."""
        if self.platform == "telegram":
            return await self.say(f"/start {payload}" if payload else "/start")
        if self.platform == "viber":
            return await self.open_viber_chat(payload)
        return await self.say("Hi")

    async def say(self, text: str) -> list[Reply]:
        return await self.send(self.text_body(text))

    async def press(self, label: str) -> list[Reply]:
        """Press the button labelled ``label`` on the newest message that has buttons."""
        return await self.send(self.press_body(self.button(label)))

    async def send(self, body: dict[str, Any]) -> list[Reply]:
        """Post ``body`` as the platform would, wait until the app is idle, return the new replies."""
        before = len(self.tp.fake.sent(self.platform))
        status, _ = await self.post(body)
        assert status == 200, status
        await self.settle()
        return self.collect(before)

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until the app is idle: what ``Touchpoint.idle`` waits for, polled every 10 ms.

        ``idle`` confirms with a fixed 50 ms sleep, which made this file take
        twice as long. One check is enough here: the inbox row exists before
        the 200, a turn marks it done in the same transaction that queues its
        replies, and a reply stays pending until its send is recorded (or a
        retry is scheduled), which is after the fake recorded the call.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (await self.tp.query(BUSY))[0].n:
            if loop.time() > deadline:
                raise AssertionError("pipeline did not become idle")
            await asyncio.sleep(0.01)

    async def post(self, body: dict[str, Any] | bytes) -> tuple[int, bytes]:
        """Sign and post one webhook body; (HTTP status, response body). No waiting."""
        raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        self.last_body = raw
        url = f"{self.tp.url}/webhooks/{self.platform}"
        async with self.tp.session.post(url, data=raw, headers=signed_headers(self.platform, raw)) as response:
            self.last_response = await response.read()
            return response.status, self.last_response

    async def open_viber_chat(self, context: str | None = "promo_AUTUMN26") -> list[Reply]:
        """Viber's conversation_started: the welcome comes back in the HTTP response, not via the API."""
        body = self._viber("conversation_started.json")
        body["user"] = self._viber_user()
        body["context"] = context or ""
        # now, not the fixture's old time: an event from long ago reads as a customer back after too long
        body["timestamp"] = int(time.time() * 1000)
        status, raw = await self.post(body)
        assert status == 200, status
        welcome = json.loads(raw)
        reply = read_reply("viber", welcome)
        self.replies.append(reply)
        await self.settle()
        return [reply]

    def collect(self, before: int) -> list[Reply]:
        """Accepted send calls to this customer since the ``before``-th send of the platform."""
        new = [
            read_reply(self.platform, r.json)
            for r in self.tp.fake.sent(self.platform)[before:]
            if recipient(r) == self.address
        ]
        self.replies.extend(new)
        return new

    # --- the keyboard the customer sees ----------------------------------------

    @property
    def keyboard(self) -> tuple[WireButton, ...]:
        for reply in reversed(self.replies):
            if reply.buttons:
                return reply.buttons
        raise AssertionError(f"{self.platform}: no message with buttons so far")

    def button(self, label: str) -> WireButton:
        for button in self.keyboard:
            if label in (button.label, button.description):
                return button
        raise AssertionError(f"{self.platform}: no button {label!r} in {[b.label for b in self.keyboard]}")

    # --- webhook bodies, in each platform's shape --------------------------------

    def text_body(self, text: str) -> dict[str, Any]:
        n = next(_serial)
        if self.platform == "telegram":
            body = self._telegram("text_plain.json")
            message = body["message"]
            message.update(message_id=100_000 + n, date=int(time.time()), text=text)
            message.update(self._telegram_people())
            if text.startswith("/"):
                command = text.split()[0]
                message["entities"] = [{"offset": 0, "length": len(command), "type": "bot_command"}]
            body["update_id"] = 920_000_000 + n
            return body
        if self.platform == "viber":
            body = self._viber("message_text.json")
            body.update(message_token=VIBER_TOKEN_BASE + n, timestamp=int(time.time() * 1000))
            body["sender"] = self._viber_user()
            body["message"] = {"type": "text", "text": text}
            return body
        body = self._whatsapp("text_plain.json")
        body["entry"][0]["changes"][0]["value"]["messages"][0].update(
            id=_wamid(n), timestamp=str(int(time.time())), text={"body": text}
        )
        return body

    def press_body(self, button: WireButton) -> dict[str, Any]:
        n = next(_serial)
        if self.platform == "telegram":
            body = self._telegram("callback_query.json")
            query = body["callback_query"]
            people = self._telegram_people()
            query.update(id=f"43829100{n:011d}", data=button.token)
            query["from"] = people["from"]
            shown = next(r for r in reversed(self.replies) if r.buttons)  # the message the button sits on
            query["message"].update(message_id=200_000 + n, chat=people["chat"], date=int(time.time()))
            query["message"].update(text=shown.text, reply_markup=shown.body.get("reply_markup", {}))
            body["update_id"] = 920_000_000 + n
            return body
        if self.platform == "viber":
            return self.text_body(button.token)  # a reply button sends its ActionBody as text
        list_row = self._last_widget() == "list"
        name = "interactive_list_reply.json" if list_row else "interactive_button_reply.json"
        body = self._whatsapp(name)
        message = body["entry"][0]["changes"][0]["value"]["messages"][0]
        message.update(id=_wamid(n), timestamp=str(int(time.time())))
        kind = "list_reply" if list_row else "button_reply"
        message["interactive"] = {"type": kind, kind: {"id": button.token, "title": button.label}}
        return body

    def quick_reply_body(self, payload: str, text: str) -> dict[str, Any]:
        """WhatsApp template quick reply (``type: button``), e.g. STOP_PROMOS."""
        body = self._whatsapp("button_quick_reply.json")
        message = body["entry"][0]["changes"][0]["value"]["messages"][0]
        message.update(id=_wamid(next(_serial)), timestamp=str(int(time.time())))
        message["button"] = {"payload": payload, "text": text}
        return body

    def blocked_body(self) -> dict[str, Any]:
        """Telegram: the customer blocked the bot. Viber: the customer unsubscribed."""
        n = next(_serial)
        if self.platform == "telegram":
            body = self._telegram("my_chat_member_blocked.json")
            people = self._telegram_people()
            body["my_chat_member"].update(chat=people["chat"], date=int(time.time()))
            body["my_chat_member"]["from"] = people["from"]
            body["update_id"] = 920_000_000 + n
            return body
        if self.platform == "viber":
            body = self._viber("unsubscribed.json")
            body.update(user_id=self.address, message_token=VIBER_TOKEN_BASE + n, timestamp=int(time.time() * 1000))
            return body
        raise ValueError("WhatsApp has no block event; use undeliverable_status_body()")

    def undeliverable_status_body(self, wamid: str) -> dict[str, Any]:
        """WhatsApp: our message ``wamid`` failed with 131026 (not on WhatsApp / blocked us)."""
        body = self._whatsapp("status_failed_131026.json")
        status = body["entry"][0]["changes"][0]["value"]["statuses"][0]
        status.update(id=wamid, recipient_id=self.address, timestamp=str(int(time.time())))
        return body

    # --- internals ----------------------------------------------------------------

    def _last_widget(self) -> str:
        return next(r.widget for r in reversed(self.replies) if r.buttons)

    def _first_name(self) -> str:
        return self.name.split()[0]

    def _telegram(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(fixture_json("telegram", name))

    def _telegram_people(self) -> dict[str, Any]:
        user_id = int(self.address)
        first, _, last = self.name.partition(" ")
        person: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first}
        chat: dict[str, Any] = {"id": user_id, "first_name": first, "type": "private"}
        if last:
            person["last_name"] = chat["last_name"] = last
        if self.language_code:
            person["language_code"] = self.language_code
        return {"from": person, "chat": chat}

    def _viber(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(fixture_json("viber", name))

    def _viber_user(self) -> dict[str, Any]:
        user = dict(fixture_json("viber", "message_text.json")["sender"])
        user.update(id=self.address, name=self.name)
        if self.language_code:
            user["language"] = self.language_code
        else:
            user.pop("language", None)
        return user

    def _whatsapp(self, name: str) -> dict[str, Any]:
        body = copy.deepcopy(fixture_json("whatsapp", name))
        value = body["entry"][0]["changes"][0]["value"]
        if "contacts" in value:
            value["contacts"] = [{"profile": {"name": self.name}, "wa_id": self.address}]
        for message in value.get("messages", []):
            message["from"] = self.address
        return body


def _default_address(platform: str) -> str:
    return {"telegram": "5550100301", "viber": "e2eTestUserViber0000001==", "whatsapp": "15550100301"}[platform]


def _wamid(n: int) -> str:
    return f"wamid.E2E{n:020d}AA=="


# --- helpers for the conversation flows (tests/web/test_conversations_*.py) ------------


def photo_body(user: PlatformUser, caption: str | None = None) -> dict[str, Any]:
    """A photo from ``user`` in the platform's own media message shape (the shared fixture files).

    Telegram sends ``photo`` sizes, Viber a ``picture`` message with a media
    URL, WhatsApp an ``image`` with a media id; ``caption`` None sends none.
    """
    n = next(_serial)
    if user.platform == "telegram":
        body = user._telegram("photo.json")
        message = body["message"]
        message.update(message_id=100_000 + n, date=int(time.time()))
        message.update(user._telegram_people())
        if caption is None:
            message.pop("caption", None)
        else:
            message["caption"] = caption
        body["update_id"] = 920_000_000 + n
        return body
    if user.platform == "viber":
        body = user._viber("message_picture.json")
        body.update(message_token=VIBER_TOKEN_BASE + n, timestamp=int(time.time() * 1000))
        body["sender"] = user._viber_user()
        body["message"]["text"] = caption or ""
        return body
    body = user._whatsapp("image.json")
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    message.update(id=_wamid(n), timestamp=str(int(time.time())))
    if caption is None:
        message["image"].pop("caption", None)
    else:
        message["image"]["caption"] = caption
    return body


def media_ref(platform: str, body: dict[str, Any]) -> str:
    """The platform's reference to the media in ``body`` (what a ticket stores, never the bytes)."""
    if platform == "telegram":
        return str(body["message"]["photo"][-1]["file_id"])  # the largest size
    if platform == "viber":
        return str(body["message"]["media"])
    return str(body["entry"][0]["changes"][0]["value"]["messages"][0]["image"]["id"])


async def bot_speaks(user: PlatformUser, action: Any) -> list[Reply]:
    """Await ``action`` (something that makes the bot write first, e.g. a survey trigger),
    wait until the app is idle and return what ``user`` received meanwhile."""
    before = len(user.tp.fake.sent(user.platform))
    await action
    await user.settle()
    return user.collect(before)


async def sign_up_in(
    user: PlatformUser, locale: str, answers: dict[str, bool], *, keep_offer: bool = False
) -> Reply:
    """The whole sign-up in ``locale`` by button presses; returns the summary.

    Telegram and Viber customers must come with ``language_code=locale`` (the
    app greets them in it); a WhatsApp customer, greeted in English, picks the
    language with the button. With marketing granted the summary carries the
    welcome offer: ``keep_offer`` leaves it open, otherwise "Done" closes it.
    """
    from bot.appkeys import CONFIG
    from bot.i18n import I18n

    i18n = I18n.load()
    purposes = user.tp.app[CONFIG].consent_purposes
    await user.start()
    if user.platform == "whatsapp" and locale != "en":
        await user.press(i18n.text("en", "signup.change_language"))
        await user.press(i18n.native_name(locale))
    else:
        assert user.platform == "whatsapp" or user.language_code == locale, "greeted in another language"
        await user.press(i18n.text(locale, "signup.start" if user.platform == "viber" else "signup.continue"))
    replies: list[Reply] = []
    for purpose in purposes:
        replies = await user.press(i18n.text(locale, "buttons.yes" if answers[purpose.id] else "buttons.no"))
    assert len(replies) == 1 and replies[0].text.startswith(i18n.text(locale, "signup.summary")), replies
    summary = replies[0]
    if summary.buttons and not keep_offer:
        await user.press(i18n.text(locale, "buttons.done"))
    return summary


def without_chat_pacing(touchpoint: Touchpoint) -> Touchpoint:
    """The app without Telegram's per-chat pacing of one message a second.

    Test customers answer within milliseconds; a real one takes seconds, so the
    pacing would only make every Telegram conversation take seconds. The
    channel-wide limits stay as configured.
    """
    from bot.pipeline import RateLimit

    limits = dict(touchpoint.pipeline.rate_limits)
    if "telegram" in limits:
        limits["telegram"] = RateLimit(per_second=limits["telegram"].per_second, burst=limits["telegram"].burst)
    touchpoint.pipeline.rate_limits = limits
    return touchpoint
