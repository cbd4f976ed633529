"""Every field of every fixture replaced by a wrong value: split + parse must stay within the contract.

An authentic but malformed body may be refused by ``split`` (``WebhookError``,
answered 200) or cut down to fewer items; ``parse`` may return ``None``. Nothing
else may happen: no other exception (a 500, or a poisoned inbox row), no inbox
item with an unusable key, no ``Inbound`` whose fields break their declared
types (the dialogs call ``.strip()`` on text, the inbox binds ids as strings).
Deterministic: the mutations are a fixed list, applied to every path in turn.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime
from typing import Any, Iterator

import orjson
import pytest
from adapter_support import fixture_json, fixture_names, telegram_adapter, viber_adapter, whatsapp_adapter

from bot.events import Inbound, Kind, Media, Receipt
from integrations.base import InboxItem, WebhookError

DELETE = object()  # the field is removed altogether
MUTANTS: list[Any] = [
    DELETE,
    None,
    True,
    5,
    0,
    -1,
    3016.5,
    2**64 - 1,  # the largest integer JSON parsers keep as an integer
    2**64,  # becomes a float on the way through JSON
    -(2**63),
    "",
    " ",
    "5",
    "x" * 5000,
    "\ud800",  # a lone surrogate, as JSON may escape it
    [],
    [1],
    {},
    {"x": 1},
]
ADAPTERS = {"telegram": telegram_adapter, "viber": viber_adapter, "whatsapp": whatsapp_adapter}
CASES = [(platform, name) for platform in ADAPTERS for name in fixture_names(platform)]
OPTIONAL_TEXT = ("payload", "command", "first_name", "language_code", "contact_phone", "context", "reply_token")


def paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every path to a value inside ``node`` (object keys and list indices), outermost first."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield prefix + (key,)
        yield from paths(value, prefix + (key,))


def mutated(data: Any, path: tuple, value: Any) -> bytes:
    """The body with the value at ``path`` replaced (or removed), as JSON text the webhook would receive."""
    copy = orjson.loads(orjson.dumps(data))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    # stdlib json writes integers beyond 64 bits and lone surrogates (as \ud800) like any sender could
    return json.dumps(copy).encode()


def problems_with_item(item: Any) -> list[str]:
    if not isinstance(item, InboxItem):
        return [f"split returned {type(item).__name__}"]
    found = []
    if not isinstance(item.event_id, str) or not 0 < len(item.event_id) <= 512:
        found.append(f"event_id {item.event_id!r:.80}")
    if not isinstance(item.address, str) or not 0 < len(item.address) <= 128:
        found.append(f"address {item.address!r:.80}")
    if not isinstance(item.body, bytes):
        found.append("body is not bytes")
    return found


def problems_with_event(event: Inbound, item: InboxItem) -> list[str]:
    """What is wrong with ``event``'s field types, checked independently of the adapters' own guard."""
    found = []
    if (event.event_id, event.address) != (item.event_id, item.address):
        found.append(f"stored as {(item.event_id, item.address)} but parsed as {(event.event_id, event.address)}")
    if not isinstance(event.kind, Kind):
        found.append(f"kind {event.kind!r}")
    if not isinstance(event.received_at, datetime) or event.received_at.tzinfo is None:
        found.append(f"received_at {event.received_at!r}")
    if not isinstance(event.text, str):
        found.append(f"text {event.text!r:.80}")
    for name in OPTIONAL_TEXT:
        value = getattr(event, name)
        if value is not None and not isinstance(value, str):
            found.append(f"{name} {value!r:.80}")
    if event.chat_type not in ("private", "group"):
        found.append(f"chat_type {event.chat_type!r:.80}")
    if event.location is not None:
        ok = isinstance(event.location, tuple) and len(event.location) == 2 and all(type(v) is float and math.isfinite(v) for v in event.location)
        if not ok or abs(event.location[0]) > 90 or abs(event.location[1]) > 180:
            found.append(f"location {event.location!r:.80}")
    if event.media is not None:
        media = event.media
        if not isinstance(media, Media) or not isinstance(media.type, str) or not isinstance(media.ref, str) or not media.ref:
            found.append(f"media {media!r:.80}")
        elif not all(v is None or isinstance(v, str) for v in (media.mime_type, media.file_name)):
            found.append(f"media {media!r:.80}")
    if event.receipt is not None:
        receipt = event.receipt
        ok = isinstance(receipt, Receipt) and isinstance(receipt.platform_message_id, str) and receipt.platform_message_id
        ok = ok and isinstance(receipt.status, str) and isinstance(receipt.unreachable, bool)
        ok = ok and all(v is None or isinstance(v, str) for v in (receipt.error_code, receipt.error))
        if not ok:
            found.append(f"receipt {receipt!r:.80}")
    return found


@pytest.mark.parametrize("platform,name", CASES)
def test_every_field_mutated_to_a_wrong_type_stays_within_the_contract(platform, name, caplog):
    adapter = ADAPTERS[platform]()
    data = fixture_json(platform, name)
    failures: list[str] = []
    events = 0
    with caplog.at_level(logging.WARNING, logger="integrations.base"):
        for path in paths(data):
            for value in MUTANTS:
                where = f"{'.'.join(map(str, path))}={value!r:.20}"
                try:
                    body = orjson.loads(mutated(data, path, value))
                except orjson.JSONDecodeError:
                    continue  # the webhook handler answers 200 before any adapter sees it
                try:
                    items = adapter.split(body)
                except WebhookError:
                    continue
                except Exception as exc:  # noqa: BLE001 - the point of the test
                    failures.append(f"{where}: split raised {exc!r:.120}")
                    continue
                for item in items:
                    problems = problems_with_item(item)
                    if problems:
                        failures.append(f"{where}: item {problems}")
                        continue
                    try:
                        event = adapter.parse(item.body)
                    except Exception as exc:  # noqa: BLE001
                        failures.append(f"{where}: parse raised {exc!r:.120}")
                        continue
                    if event is not None:
                        events += 1
                        failures += [f"{where}: {p}" for p in problems_with_event(event, item)]
    # The adapters type their fields themselves; the last-resort guard must never have to drop an event.
    failures += [r.getMessage() for r in caplog.records if "mistyped" in r.getMessage()]
    assert failures == [], "\n".join(failures[:40])
    if name != "webhook_check.json":  # Viber's registration check is never an event
        assert events > 0  # most single-field mutations leave a usable event


def test_the_mutations_reach_every_field():
    data = fixture_json("whatsapp", "text_plain.json")
    reached = {p[-1] for p in paths(data)}
    assert {"entry", "changes", "metadata", "phone_number_id", "contacts", "wa_id", "messages", "from", "id", "text", "body"} <= reached
