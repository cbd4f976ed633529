"""Fake Telegram, Viber and WhatsApp APIs and an SMS gateway on one local aiohttp server.

Tests, the benchmark and a newcomer without platform accounts point the
adapters here through ``TELEGRAM_API_URL``, ``VIBER_API_URL`` and
``WHATSAPP_API_URL`` (and the SMS adapter's gateway URL at ``sms_gateway_url``,
a Vonage Messages API look-alike). Every request is recorded; replies and
errors have the real platforms' shapes (PLATFORMS.md), so the real client
libraries parse them. ``fail_next`` scripts the failures a sender must survive;
``sms_inbound`` builds a signed inbound SMS webhook as the gateway would post it.

    fake = FakePlatforms()
    base = await fake.start(port=0)
    ...  TelegramAdapter(token, secret, f"{base}/telegram") ...
    await fake.wait_for(1, "telegram")
    await fake.stop()

Run ``python -m integrations.fakes --port 8081`` to watch replies arrive.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import itertools
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Callable

import orjson
from aiohttp import web

PLATFORMS = ("telegram", "viber", "whatsapp", "sms")
FAILURE_KINDS = ("429", "500", "blocked", "timeout")
# The calls that deliver a message to a customer (what ``sent`` and ``wait_for`` count).
SEND_METHODS = {
    "telegram": {"sendMessage", "sendLocation"},
    "viber": {"send_message"},
    "whatsapp": {"messages"},
    "sms": {"messages"},
}
BOT_USER = {"id": 7000000001, "is_bot": True, "first_name": "Example Shop", "username": "ExampleShopBot"}
# Telegram form fields that are plain strings; every other field is JSON-encoded by clients.
TELEGRAM_TEXT_FIELDS = {"text", "caption", "url", "secret_token", "callback_query_id", "parse_mode", "ip_address"}


@dataclass(frozen=True, slots=True)
class Recorded:
    platform: str
    method: str
    json: dict[str, Any]
    headers: dict[str, str]
    accepted: bool = True  # False when a scripted failure answered instead


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


class FakePlatforms:
    def __init__(self, *, on_request: Callable[[Recorded], None] | None = None) -> None:
        self.requests: list[Recorded] = []
        self.timeout_delay = 15.0  # seconds a "timeout" failure stalls; longer than the adapters' 10 s
        self._on_request = on_request
        self._failures: dict[str, deque[str | None]] = {p: deque() for p in PLATFORMS}
        self._scripted: dict[str, deque[tuple[str | None, int, dict[str, Any]]]] = {p: deque() for p in PLATFORMS}
        self._sent: list[Recorded] = []
        self._sent_count: Counter[str] = Counter()
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # --- control -------------------------------------------------------------

    async def start(self, port: int = 0, host: str = "127.0.0.1") -> str:
        """Serve on ``host:port`` (0 picks a free port); returns the base URL."""
        app = web.Application()
        app.router.add_route("*", "/telegram/bot{token}/{method}", self._telegram)
        app.router.add_post("/viber/{endpoint}", self._viber)
        app.router.add_post("/whatsapp/{version}/{phone_number_id}/{endpoint}", self._whatsapp)
        app.router.add_post("/sms/v1/{endpoint}", self._sms)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        self._stopping.set()  # releases handlers stalled by a "timeout" failure
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def env(self) -> dict[str, str]:
        """The ``*_API_URL`` settings that point the adapters here."""
        return {
            "TELEGRAM_API_URL": f"{self.base_url}/telegram",
            "VIBER_API_URL": f"{self.base_url}/viber",
            "WHATSAPP_API_URL": f"{self.base_url}/whatsapp/v21.0",
        }

    @property
    def sms_gateway_url(self) -> str:
        """The send URL for ``SmsGateway(url=...)`` (the default mapping fits it)."""
        return f"{self.base_url}/sms/v1/messages"

    def fail_next(self, platform: str, kind: str, times: int = 1, *, after: int = 0) -> None:
        """Answer ``times`` send calls on ``platform`` with the platform's ``kind`` error.

        ``after`` lets that many send calls succeed first (to fail the second
        part of a long message, for example).
        """
        if platform not in PLATFORMS or kind not in FAILURE_KINDS:
            raise ValueError(f"unknown platform {platform!r} or failure kind {kind!r}")
        self._failures[platform].extend([None] * after + [kind] * times)

    def answer_next(self, platform: str, status: int, body: dict[str, Any], *, method: str | None = None) -> None:
        """Answer the next call of ``method`` (default: the next send call) with exactly this.

        For error shapes ``fail_next`` does not name (WhatsApp 131056, Viber
        status 5, a Telegram 400, ...).
        """
        if platform not in PLATFORMS:
            raise ValueError(f"unknown platform {platform!r}")
        self._scripted[platform].append((method, status, body))

    def sent(self, platform: str | None = None) -> list[Recorded]:
        """Accepted send calls (the messages a customer would see), in arrival order."""
        return [r for r in self._sent if platform is None or r.platform == platform]

    async def wait_for(self, n: int, platform: str | None = None, timeout: float = 5) -> list[Recorded]:
        """Wait until at least ``n`` send calls were accepted; returns them."""

        def count() -> int:
            return self._sent_count[platform] if platform else sum(self._sent_count.values())

        async with asyncio.timeout(timeout):
            while count() < n:
                self._changed.clear()
                await self._changed.wait()
        return self.sent(platform)

    # --- shared plumbing -----------------------------------------------------

    def _record(self, platform: str, method: str, body: dict[str, Any], request: web.Request, accepted: bool) -> None:
        recorded = Recorded(platform, method, body, dict(request.headers), accepted)
        self.requests.append(recorded)
        if accepted and method in SEND_METHODS[platform]:
            self._sent.append(recorded)
            self._sent_count[platform] += 1
            self._changed.set()
        if self._on_request is not None:
            self._on_request(recorded)

    def _scripted_answer(
        self, platform: str, method: str, body: dict[str, Any], request: web.Request
    ) -> web.Response | None:
        queue = self._scripted[platform]
        if not queue:
            return None
        wanted, status, answer = queue[0]
        if wanted != method and not (wanted is None and method in SEND_METHODS[platform]):
            return None
        queue.popleft()
        self._record(platform, method, body, request, accepted=False)
        return _json(answer, status)

    async def _failure(self, platform: str, method: str) -> str | None:
        """The scripted failure for this call, after stalling if it is a timeout."""
        queue = self._failures[platform]
        if method not in SEND_METHODS[platform] or not queue:
            return None
        kind = queue.popleft()
        if kind == "timeout":
            try:
                await asyncio.wait_for(self._stopping.wait(), self.timeout_delay)
            except TimeoutError:
                pass
        return kind

    # --- Telegram: /telegram/bot<token>/<method> ------------------------------

    async def _telegram(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body = await _telegram_params(request)
        scripted = self._scripted_answer("telegram", method, body, request)
        if scripted is not None:
            return scripted
        failure = await self._failure("telegram", method)
        self._record("telegram", method, body, request, accepted=failure is None)
        if failure == "429":
            return _tg_error(429, "Too Many Requests: retry after 1", parameters={"retry_after": 1})
        if failure == "500":
            return _tg_error(500, "Internal Server Error")
        if failure == "blocked":
            return _tg_error(403, "Forbidden: bot was blocked by the user")
        if failure == "timeout":
            return _tg_error(504, "Gateway Timeout")
        if method in ("sendMessage", "sendLocation"):
            chat_id = body.get("chat_id")
            chat = {"id": chat_id, "type": "private"} if _positive(chat_id) else {"id": chat_id, "type": "supergroup"}
            message: dict[str, Any] = {"message_id": next(self._ids), "from": BOT_USER, "chat": chat, "date": int(time.time())}
            if method == "sendMessage":
                message["text"] = body.get("text", "")
            else:
                message["location"] = {"latitude": body.get("latitude"), "longitude": body.get("longitude")}
            return _json({"ok": True, "result": message})
        if method == "getMe":
            return _json({"ok": True, "result": {**BOT_USER, "can_join_groups": True, "supports_inline_queries": False}})
        if method in ("answerCallbackQuery", "setWebhook", "deleteWebhook"):
            return _json({"ok": True, "result": True})
        return _tg_error(404, "Not Found")

    # --- Viber: /viber/<endpoint> ---------------------------------------------

    async def _viber(self, request: web.Request) -> web.Response:
        endpoint = request.match_info["endpoint"]
        body = await _json_body(request)
        scripted = self._scripted_answer("viber", endpoint, body, request)
        if scripted is not None:
            return scripted
        failure = await self._failure("viber", endpoint)
        authorized = bool(request.headers.get("X-Viber-Auth-Token"))
        self._record("viber", endpoint, body, request, accepted=failure is None and authorized)
        if not authorized:
            return _json({"status": 2, "status_message": "invalidAuthToken"})
        if failure == "429":
            return _json({"status": 12, "status_message": "tooManyRequests"})
        if failure == "500":
            return web.Response(status=500, text="Internal Server Error")
        if failure == "blocked":
            return _json({"status": 6, "status_message": "receiverNotSubscribed"})
        if failure == "timeout":
            return web.Response(status=504, text="Gateway Timeout")
        if endpoint == "send_message":
            token = 5741311803571800000 + next(self._ids)  # above 2^53, like the real ones
            return _json({"status": 0, "status_message": "ok", "message_token": token, "billing_status": 1})
        if endpoint == "set_webhook":
            return _json({"status": 0, "status_message": "ok", "event_types": body.get("event_types") or []})
        if endpoint == "get_account_info":
            return _json({"status": 0, "status_message": "ok", "id": "pa:fake", "name": "Example Shop", "uri": "exampleshop"})
        return _json({"status": 3, "status_message": "badData"})

    # --- WhatsApp: /whatsapp/<version>/<phone_number_id>/messages --------------

    async def _whatsapp(self, request: web.Request) -> web.Response:
        endpoint = request.match_info["endpoint"]
        body = await _json_body(request)
        scripted = self._scripted_answer("whatsapp", endpoint, body, request)
        if scripted is not None:
            return scripted
        failure = await self._failure("whatsapp", endpoint)
        authorization = request.headers.get("Authorization", "")
        authorized = authorization.startswith("Bearer ") and len(authorization) > len("Bearer ")
        self._record("whatsapp", endpoint, body, request, accepted=failure is None and authorized)
        if not authorized:
            return _json(_wa_error(190, "Invalid OAuth access token - Cannot parse access token"), 401)
        if failure == "429":
            return _json(_wa_error(130429, "Rate limit hit"), 429)
        if failure == "500":
            return _json(_wa_error(1, "An unknown error occurred"), 500)
        if failure == "blocked":
            return _json(_wa_error(131026, "Message undeliverable"), 400)
        if failure == "timeout":
            return web.Response(status=504, text="Gateway Timeout")
        if endpoint != "messages":
            return _json(_wa_error(100, "Invalid parameter"), 400)
        to = body.get("to", "")
        return _json(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": f"wamid.fake{next(self._ids):012d}"}],
            }
        )

    # --- SMS gateway (Vonage Messages API shape): /sms/v1/messages --------------

    async def _sms(self, request: web.Request) -> web.Response:
        endpoint = request.match_info["endpoint"]
        body = await _json_body(request)
        scripted = self._scripted_answer("sms", endpoint, body, request)
        if scripted is not None:
            return scripted
        failure = await self._failure("sms", endpoint)
        authorization = request.headers.get("Authorization", "")
        authorized = authorization.startswith("Basic ") and len(authorization) > len("Basic ")
        invalid = _sms_invalid(body) if endpoint == "messages" else "unknown endpoint"
        self._record("sms", endpoint, body, request, accepted=failure is None and authorized and invalid is None)
        if not authorized:
            return _json(_sms_error("unauthorized", "Unauthorized", "You did not provide correct credentials."), 401)
        if failure == "429":
            response = _json(_sms_error("messages#1000", "Throttled", "Please wait and retry."), 429)
            response.headers["Retry-After"] = "1"
            return response
        if failure == "500":
            return _json(_sms_error("messages#1030", "Internal error", "There was an error processing your request."), 500)
        if failure == "blocked":
            return _json(_sms_error("messages#1050", "Number barred", "The number may not receive messages."), 422)
        if failure == "timeout":
            return web.Response(status=504, text="Gateway Timeout")
        if invalid is not None:
            status = 404 if endpoint != "messages" else 422
            return _json(_sms_error("messages#1020", "Invalid params", invalid), status)
        return _json({"message_uuid": str(uuid.uuid4())}, 202)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        data = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


async def _telegram_params(request: web.Request) -> dict[str, Any]:
    """Bot API parameters from a JSON body, a query string or a form (PTB sends forms)."""
    if request.content_type == "application/json":
        return await _json_body(request)
    fields = dict(request.query)
    if request.can_read_body:
        fields.update(await request.post())
    params: dict[str, Any] = {}
    for key, value in fields.items():
        if not isinstance(value, str) or key in TELEGRAM_TEXT_FIELDS:
            params[key] = value
            continue
        try:
            params[key] = orjson.loads(value)  # numbers, booleans, reply_markup, allowed_updates
        except orjson.JSONDecodeError:
            params[key] = value  # e.g. "@channelusername"
    return params


def _tg_error(code: int, description: str, **extra: Any) -> web.Response:
    return _json({"ok": False, "error_code": code, "description": description, **extra}, code)


def _positive(chat_id: Any) -> bool:
    try:
        return int(chat_id) > 0
    except (TypeError, ValueError):
        return True


def _sms_invalid(body: dict[str, Any]) -> str | None:
    """Why the gateway would refuse ``body`` (a 422), or ``None``."""
    to, sender, text = body.get("to"), body.get("from"), body.get("text")
    if body.get("channel") != "sms" or body.get("message_type") != "text":
        return "channel must be sms and message_type text"
    if not (isinstance(to, str) and to.isascii() and to.isdigit() and 6 <= len(to) <= 15):
        return "to must be an E.164 number without a leading +"
    if not isinstance(sender, str) or not sender:
        return "from is required"
    if not isinstance(text, str) or not text or len(text) > 1000:
        return "text must have 1 to 1000 characters"
    return None


def _sms_error(code: str, title: str, detail: str) -> dict[str, Any]:
    """An RFC 7807 problem as the gateway answers it."""
    return {
        "type": f"https://developer.vonage.com/api-errors/{code}",
        "title": title,
        "detail": detail,
        "instance": str(uuid.uuid4()),
    }


def sms_inbound(
    secret: str,
    number: str,
    text: str,
    *,
    message_id: str | None = None,
    to: str = "447700900000",
    status: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A signed inbound-SMS webhook (or, with ``status``, a delivery report) as the gateway posts it.

    ``number`` is the customer's, in the gateway's spelling (digits, no "+").
    Returns the body and the headers, JWT included; post both to /webhooks/sms.
    """
    message_id = message_id or str(uuid.uuid4())
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if status is None:
        data: dict[str, Any] = {
            "channel": "sms", "message_type": "text", "message_uuid": message_id,
            "from": number, "to": to, "text": text, "timestamp": stamp, "sms": {"num_messages": "1"},
        }
    else:
        data = {"channel": "sms", "message_uuid": message_id, "from": to, "to": number, "status": status, "timestamp": stamp}
    body = orjson.dumps(data)
    return body, {"Content-Type": "application/json", "Authorization": f"Bearer {sign_jwt(secret, body)}"}


def sign_jwt(secret: str, body: bytes, **claims: Any) -> str:
    """An HS256 JWT like the gateway's webhook signature: ``payload_hash`` is the body's hex SHA-256."""

    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    now = int(time.time())
    payload = {"iat": now, "jti": str(uuid.uuid4()), "iss": "Vonage", "payload_hash": hashlib.sha256(body).hexdigest(), **claims}
    signing_input = part(orjson.dumps({"alg": "HS256", "typ": "JWT"})) + "." + part(orjson.dumps(payload))
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


def _wa_error(code: int, message: str) -> dict[str, Any]:
    return {
        "error": {
            "message": f"(#{code}) {message}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": message},
            "fbtrace_id": "AFakeTraceId",
        }
    }


def describe(recorded: Recorded) -> str:
    """One human line for a recorded request: platform, method, recipient, text, buttons."""
    body = recorded.json
    text = body.get("text")
    if isinstance(text, dict):  # WhatsApp text message
        text = text.get("body")
    interactive = body.get("interactive") or {}
    if interactive:
        text = (interactive.get("body") or {}).get("text")
    place = body.get("location") if isinstance(body.get("location"), dict) else None
    if recorded.method == "sendLocation" or place:
        place = place or body
        lat, lon = place.get("latitude", place.get("lat")), place.get("longitude", place.get("lon"))
        text = f"📍 {lat}, {lon} {place.get('name') or ''}".rstrip()
    template = body.get("template") if isinstance(body.get("template"), dict) else None
    if template:
        params = [p.get("text", "") for c in template.get("components", []) for p in c.get("parameters", [])]
        text = f"template {template.get('name')} {params}"
    labels = _labels(body)
    to = body.get("chat_id") or body.get("receiver") or body.get("to") or ""
    line = f"{recorded.platform:<8} {recorded.method:<19} {to!s:<26} {text or ''}"
    if labels:
        line += "  [" + " | ".join(labels) + "]"
    if not recorded.accepted:
        line += "  (answered with a scripted failure)"
    return line


def _labels(body: dict[str, Any]) -> list[str]:
    """Each button as "label=data", so whoever plays the customer by hand knows what a press sends."""
    markup = body.get("reply_markup")
    if isinstance(markup, dict):
        rows = markup.get("inline_keyboard") or markup.get("keyboard") or []
        return [_labelled(b.get("text", ""), b.get("callback_data")) for row in rows for b in row]
    keyboard = body.get("keyboard") or {}
    if keyboard:
        return [_labelled(b.get("Text", ""), b.get("ActionBody")) for b in keyboard.get("Buttons", [])]
    action = (body.get("interactive") or {}).get("action") or {}
    if "buttons" in action:
        return [_labelled(b["reply"]["title"], b["reply"].get("id")) for b in action["buttons"]]
    return [_labelled(r["title"], r.get("id")) for s in action.get("sections", []) for r in s.get("rows", [])]


def _labelled(label: str, data: Any) -> str:
    return f"{label}={data}" if data and data != label else label


async def _serve(host: str, port: int) -> None:
    fake = FakePlatforms(on_request=lambda r: print(describe(r), flush=True))
    await fake.start(port=port, host=host)
    print(f"fake platform APIs on {fake.base_url}; export:")
    for name, value in fake.env().items():
        print(f"  export {name}={value}")
    print("(any token works; Ctrl+C stops)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake Telegram/Viber/WhatsApp APIs that print what the bot sends.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    try:
        asyncio.run(_serve(args.host, args.port))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise SystemExit(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; pick another --port") from None


if __name__ == "__main__":
    main()
