"""The single path for all inbound work, and the outbox sender.

inbox row -> (wake-up "channel|address") -> per-conversation lock -> every
pending inbox row of that conversation, in id order -> parse -> dialog turn ->
one unit of work (state, effects, outbox rows, inbox row done) -> outbox
wake-up -> sender (same per-conversation ordering) -> adapter.

Wake-ups name a conversation, not a row, and the worker drains all of that
conversation's pending rows under its lock. So a duplicate, late or lost
wake-up is harmless (the sweeper re-issues lost ones), and arrival order holds
even when several processes consume the queue.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import contextlib
import json
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator, Mapping, Protocol

import orjson

from bot import metrics, push_store, shop_store, store
from bot.db import Database
from bot.events import Inbound, Kind
from bot.messages import Outbound, SendResult
from bot.state.base import QueueItem, StateBackend
from bot.turn import TurnInput, TurnResult
from integrations.base import ChannelAdapter, InboxItem

if TYPE_CHECKING:
    from bot.config import ShopConfig
    from bot.i18n import I18n

log = logging.getLogger("touchpoint.pipeline")

UNLIMITED = 1e9  # sends per second of a bucket whose limit is switched off
INBOX = "inbox"
OUTBOX = "outbox"
# Replies in a conversation and transactional pushes: their own consumer and lanes,
# so they never wait behind the wake-ups of a campaign (which go to OUTBOX).
OUTBOX_URGENT = "outbox-urgent"
MAX_SEND_ATTEMPTS = 8
BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0
SWEEP_INTERVAL = 5.0
STALE_INBOX_AFTER = 10.0  # seconds a pending inbox row may wait before the sweeper re-wakes it
MAX_INBOX_ATTEMPTS = 5
# Inbox bodies of triggers start with this; a platform's body is JSON and never does.
TRIGGER_BODY_PREFIX = b"touchpoint-trigger\n"


REACHABLE_AGAIN = frozenset(
    {Kind.TEXT, Kind.BUTTON, Kind.COMMAND, Kind.LOCATION, Kind.MEDIA, Kind.CONTACT, Kind.SUBSCRIBED, Kind.RESUBSCRIBED}
)


class DialogFailed(Exception):
    """The dialog engine raised for an event; the event is set aside, not retried."""


class UnknownAddress(LookupError):
    """A trigger named a conversation nobody has started: we may only write to people who wrote to us."""


class Engine(Protocol):
    async def handle(self, inp: TurnInput) -> TurnResult: ...


def conversation_key(channel: str, address: str) -> str:
    return f"{channel}|{address}"


def split_key(key: str) -> tuple[str, str]:
    channel, _, address = key.partition("|")
    return channel, address


def trigger_item(channel: str, address: str, dialog: str, slots: Mapping[str, Any], event_id: str) -> InboxItem:
    """The inbox row of a trigger: a TRIGGER event naming the dialog to start and its slots."""
    event = Inbound(
        channel=channel,
        address=address,
        event_id=event_id,
        kind=Kind.TRIGGER,
        payload=json.dumps({"dialog": dialog, "slots": dict(slots)}),
    )
    return InboxItem(event_id=event_id, address=address, body=TRIGGER_BODY_PREFIX + orjson.dumps(event.to_dict()))


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Sends per second for a whole channel and for one chat; 0 disables a limit."""

    per_second: float = 0.0
    per_chat_per_second: float = 0.0
    burst: float = 1.0
    chat_burst: float = 3.0


@dataclass
class Pipeline:
    db: Database
    backend: StateBackend
    adapters: Mapping[str, ChannelAdapter]
    engine: Engine
    rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)
    concurrency: int = 64  # conversations handled at once by one consumer
    busy_concurrency: int = 2  # ... while webhooks are arriving
    busy_pause: float = 0.003  # and each waits this long (or until receipt stops) before a turn
    # For effects that need texts or shop data (the my-data report) and for the
    # background jobs; default: the engine's own.
    config: ShopConfig | None = None
    i18n: I18n | None = None
    # A location the customer shared in the chat, with location consent: (customer id,
    # latitude, longitude, when) -> the store offer check of bot.touchpoints (set by the app).
    on_location: Callable[[int, float, float, datetime], Awaitable[Any]] | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _bulk_gates: dict[str, asyncio.Lock] = field(default_factory=dict)  # per channel, see _respect_rate_limits
    _triggered: set[str] = field(default_factory=set)  # conversations given a trigger inside someone's unit
    _stopping: bool = False
    _ingesting: int = 0
    _ingestion_idle: asyncio.Event = field(default_factory=asyncio.Event)

    # --- ingestion (web process) ------------------------------------------

    async def accept(self, channel: str, items: list[InboxItem]) -> list[int | None]:
        """Store authentic events durably (deduplicated) and wake a worker.

        Returns the new inbox id per item, None for a duplicate.
        """
        rows = [store.NewInboxRow(channel, i.event_id, i.address, i.body) for i in items]
        ids = await self.db.write(lambda conn: store.inbox_append(conn, rows))
        woken: set[str] = set()
        for item, new_id in zip(items, ids):
            if new_id is None:
                metrics.INBOX_DUPLICATES.labels(channel).inc()
                log.info("inbox.duplicate channel=%s event=%s", channel, item.event_id)
                continue
            metrics.INBOX_ACCEPTED.labels(channel).inc()
            key = conversation_key(channel, item.address)
            if not item.inline and key not in woken:
                woken.add(key)
                await self.backend.queue.put(INBOX, key)
        return ids

    async def trigger(self, channel: str, address: str, dialog: str, slots: Mapping[str, Any], event_id: str) -> bool:
        """Start ``dialog`` with ``slots`` in an existing conversation, through the inbox like a webhook.

        So a trigger is durable, deduplicated on (channel, event_id) and runs
        in order with the customer's own messages. Returns False for a
        duplicate. Raises ``UnknownAddress`` when nobody has written to us from
        (channel, address).
        """
        if channel not in self.adapters:
            raise LookupError(f"channel {channel} is not configured")
        if not await self.db.read(lambda conn: store.identity_exists(conn, channel, address)):
            raise UnknownAddress(f"no customer has written from {channel}:{address}; a trigger needs a known conversation")
        ids = await self.accept(channel, [trigger_item(channel, address, dialog, slots, event_id)])
        return ids[0] is not None

    def survey_starter(self, config: ShopConfig) -> Callable[..., bool]:
        """A survey start for callers that decide inside their own unit of work (a push's route).

        The returned ``start(conn, customer_id, survey_id, order_ref, channel,
        address, now) -> bool`` writes the survey row and the trigger's inbox
        row in the caller's transaction (False: unknown survey, or this
        order's survey exists already); ``wake_sender`` for that conversation,
        after the commit, then wakes its inbox too.
        """
        from bot import surveys  # surveys names the pipeline only for type checking

        def start(conn: Any, customer_id: int, survey_id: str, order_ref: str, channel: str, address: str, now: datetime) -> bool:
            if config.survey(survey_id) is None:
                log.warning("survey.unknown survey=%s customer=%s", survey_id, customer_id)
                return False
            if not store.start_survey_row(conn, customer_id, survey_id, order_ref, channel, address, now):
                return False
            dialog, slots, event_id = surveys.survey_trigger(survey_id, order_ref)
            item = trigger_item(channel, address, dialog, slots, event_id)
            store.inbox_append(conn, [store.NewInboxRow(channel, item.event_id, address, item.body)])
            self._triggered.add(conversation_key(channel, address))
            return True

        return start

    async def wake_sender(self, channel: str, address: str, urgent: bool = False) -> None:
        """Messages were queued for this conversation outside a turn (a push): send them.

        ``urgent``: in a single process with no webhook waiting, start sending
        now rather than through the outbox queue. A conversation given a
        trigger by ``survey_starter`` gets its inbox woken as well.
        """
        key = conversation_key(channel, address)
        if key in self._triggered:
            self._triggered.discard(key)
            await self.backend.queue.put(INBOX, key)
        if urgent and not self.backend.multi_process and not self._ingesting:
            self._spawn(self.send_conversation(channel, address))
        else:
            await self.backend.queue.put(OUTBOX_URGENT if urgent else OUTBOX, key)

    async def inline_reply(self, channel: str, item: InboxItem, inbox_id: int | None) -> Outbound | None:
        """The reply that travels in the HTTP response of an inline event.

        A first delivery is handled now; a redelivery (the platform never got
        our response) gets the reply stored the first time, not a second turn.
        """
        if inbox_id is not None:
            replies = await self.process_inline(channel, item.address, inbox_id)
            return replies[0] if replies else None
        stored = await self.db.read(lambda conn: store.inline_reply_for(conn, channel, item.event_id))
        return Outbound.from_dict(stored) if stored else None

    async def process_inline(self, channel: str, address: str, inbox_id: int) -> list[Outbound]:
        """Handle one conversation now and return the replies to ``inbox_id``.

        Used for Viber's conversation_started, whose single welcome message
        must travel in the HTTP response instead of through the outbox.
        """
        captured: dict[int, list[Outbound]] = {}
        await self.drain_conversation(channel, address, inline={inbox_id: captured})
        return captured.get(inbox_id, [])

    # --- consuming the inbox (worker) --------------------------------------

    async def drain_conversation(
        self, channel: str, address: str, inline: dict[int, dict[int, list[Outbound]]] | None = None
    ) -> int:
        """Process every pending inbox row of one conversation, in arrival order."""
        handled = 0
        async with self.backend.locks.hold(f"conv:{conversation_key(channel, address)}", ttl=60):
            while True:
                rows = await self.db.read(lambda conn: store.inbox_pending(conn, channel, address))
                if not rows:
                    break
                for row in rows:
                    sink = inline.get(row.id) if inline else None
                    if sink is None:
                        await self._yield_to_ingestion()
                    await self._process_row(channel, address, row, sink)
                    handled += 1
                if len(rows) < 50:
                    break
        return handled

    async def _process_row(self, channel: str, address: str, row: Any, sink: dict[int, list[Outbound]] | None) -> None:
        adapter = self.adapters.get(channel)
        started = time.perf_counter()
        try:
            if adapter is None:
                raise LookupError(f"channel {channel} is not configured")
            if row.body.startswith(TRIGGER_BODY_PREFIX):
                event: Inbound | None = Inbound.from_dict(orjson.loads(row.body[len(TRIGGER_BODY_PREFIX):]))
            else:
                event = adapter.parse(row.body)
        except Exception as exc:  # noqa: BLE001 - a poison event must not stall the conversation
            log.warning("inbox.unparsable id=%s channel=%s error=%r", row.id, channel, exc)
            error = repr(exc)[:500]  # `exc` is unbound after the block; the unit may run later
            await self.db.write(lambda conn: store.inbox_finish(conn, row.id, "ignored", error))
            return
        if event is None:
            log.info("inbox.ignored id=%s channel=%s event=%s", row.id, channel, row.event_id)
            await self.db.write(lambda conn: store.inbox_finish(conn, row.id, "ignored"))
            return
        try:
            if event.kind is Kind.RECEIPT:
                await self._record_receipt(event, row.id)
            else:
                await self._run_turn(event, row.id, sink)
        except store.VersionConflict:
            log.warning("conversation.version_conflict channel=%s address=%s; will retry", channel, address)
            raise
        except DialogFailed as exc:
            # Deterministic: the same event would fail the same way again, and
            # retrying it would hold up this customer's later messages.
            log.error("inbox.dialog_failed id=%s channel=%s", row.id, channel, exc_info=exc.__cause__)
            error = repr(exc.__cause__)[:500]
            await self.db.write(lambda conn: store.inbox_finish(conn, row.id, "failed", error))
            return
        except Exception as exc:  # noqa: BLE001 - storage or network: worth retrying
            log.exception("inbox.failed id=%s channel=%s", row.id, channel)
            status = "failed" if row.attempts + 1 >= MAX_INBOX_ATTEMPTS else "pending"
            error = repr(exc)[:500]
            await self.db.write(lambda conn: store.inbox_finish(conn, row.id, status, error))
            if status == "pending":
                raise
            return
        metrics.TURN_SECONDS.labels(channel).observe(time.perf_counter() - started)
        if adapter is not None and event.kind is Kind.BUTTON:
            self._spawn(adapter.acknowledge(event))

    async def _record_receipt(self, event: Inbound, inbox_id: int) -> None:
        receipt = event.receipt
        assert receipt is not None

        def unit(conn: Any) -> None:
            store.outbox_receipt(conn, event.channel, receipt.platform_message_id, receipt.status)
            if receipt.unreachable:
                store.block_identity(conn, event.channel, event.address)
            store.inbox_finish(conn, inbox_id, "done")

        await self.db.write(unit)
        if receipt.unreachable:
            log.info("identity.unreachable channel=%s address=%s", event.channel, event.address)

    async def _run_turn(self, event: Inbound, inbox_id: int, sink: dict[int, list[Outbound]] | None) -> None:
        channel, address = event.channel, event.address
        loaded = await self.db.read(lambda conn: store.load_conversation(conn, channel, address))
        # These belong to a conversation and never start one: without one (a trigger, or a
        # late press, edit or block from an address whose customer was erased) nobody is
        # there to talk to, and only a real message starts a sign-up.
        answers_a_conversation = (Kind.TRIGGER, Kind.BUTTON, Kind.EDITED, Kind.UNSUBSCRIBED, Kind.RESUBSCRIBED, Kind.RECEIPT)
        if loaded is None and event.kind in answers_a_conversation:
            reason = f"no conversation for a {event.kind} event"
            log.info("inbox.no_conversation channel=%s kind=%s", channel, event.kind)
            await self.db.write(lambda conn: store.inbox_forget(conn, inbox_id, reason))
            return
        if loaded is None:
            loaded = await self.db.write(
                lambda conn: store.create_identity(conn, channel, address, event.first_name, event.language_code)
            )
        token = _link_token(event)
        if token is not None:
            loaded = await self._bind_account(event, token, loaded)
        try:
            result = await self.engine.handle(TurnInput(event=event, state=loaded.state, customer=loaded.customer))
        except Exception as exc:  # noqa: BLE001 - a dialog bug must not jam the conversation
            raise DialogFailed(str(exc)) from exc
        messages = list(result.messages)
        inline_reply: list[Outbound] = []
        if sink is not None:
            # Exactly one reply may travel in the HTTP response (Viber's welcome rule).
            inline_reply, dropped = messages[:1], messages[1:]
            if dropped:
                log.warning("inline.extra_messages_dropped channel=%s count=%d", channel, len(dropped))
            messages = []
        blocked = loaded.blocked
        # A customer who writes to us can be reached again (Viber re-subscribes
        # on any message; Telegram delivers nothing from a user who blocked us).
        unblock = blocked and event.kind in REACHABLE_AGAIN
        if unblock:
            blocked = False
        # Only the customer's own messages count as "last heard from" (the resume
        # time, WhatsApp's 24-hour window); a trigger is the shop speaking.
        customer_spoke = event.kind not in (Kind.UNSUBSCRIBED, Kind.RESUBSCRIBED, Kind.TRIGGER)
        inbound_at = event.received_at if customer_spoke else None
        if any(getattr(e, "blocked", None) is False for e in result.effects):
            blocked = False
        config, i18n = self._config_and_i18n()

        def unit(conn: Any) -> int:
            if unblock:
                store.set_blocked(conn, channel, address, blocked=False)
            conversation = {"channel": channel, "address": address, "customer_id": loaded.customer.id}
            heard = event.text or event.payload or event.command or ""
            said = inline_reply if inline_reply else ([] if blocked else messages)
            # Logged before the effects run, so that an erasure in this turn erases these rows too.
            store.log_messages(
                conn,
                [{**conversation, "direction": "in", "kind": str(event.kind), "text": heard, "platform_message_id": event.event_id}]
                + [{**conversation, "direction": "out", "kind": "text", "text": m.text} for m in said],
            )
            # Effects run before this turn's messages are queued: an erasure drops
            # the customer's pending messages, but not the reply that confirms it.
            extra = store.save_turn(
                conn,
                loaded=loaded,
                channel=channel,
                address=address,
                new_state=result.state,
                effects=result.effects,
                inbound_at=inbound_at,
                inbox_id=inbox_id,
                i18n=i18n,
                config=config,
            )
            if extra and not blocked:
                store.log_messages(conn, [{**conversation, "direction": "out", "kind": "text", "text": m.text} for m in extra])
            queued = 0
            if inline_reply:
                store.outbox_add(
                    conn,
                    channel=channel,
                    address=address,
                    customer_id=loaded.customer.id,
                    messages=inline_reply,
                    inbox_id=inbox_id,
                    status="sent",
                )
            if (messages or extra) and not blocked:
                queued = store.outbox_add(
                    conn,
                    channel=channel,
                    address=address,
                    customer_id=loaded.customer.id,
                    messages=[*messages, *extra],
                    inbox_id=inbox_id,
                    priority=10,
                )
            store.inbox_finish(conn, inbox_id, "done")
            return queued

        queued = await self.db.write(unit)
        if event.kind is Kind.LOCATION and event.location is not None and self.on_location is not None:
            consent = loaded.customer.consent("location")
            if consent is not None and consent.granted:
                latitude, longitude = event.location
                self._spawn(self.on_location(loaded.customer.id, latitude, longitude, event.received_at))
        if sink is not None:
            sink[inbox_id] = inline_reply
        if queued:
            if self.backend.multi_process or self._ingesting:
                await self.backend.queue.put(OUTBOX_URGENT, conversation_key(channel, address))
            else:
                # One process owns every queue and no webhook is waiting for its 200:
                # start the send now instead of a round trip through the outbox queue
                # and its lanes (the sweeper still covers a crash).
                self._spawn(self.send_conversation(channel, address))

    # --- sending -------------------------------------------------------------

    async def _bind_account(self, event: Inbound, token: str, loaded: store.Loaded) -> store.Loaded:
        """The customer opened a shop's account link: this identity joins the shop's customer.

        The turn then runs on the shop customer's snapshot (consents, favourites,
        codes), still as a first contact if it is one, so the sign-up greets them.
        """
        channel, address, at = event.channel, event.address, event.received_at
        bound = await self.db.write(lambda conn: shop_store.bind_link_token(conn, token, channel, address, at))
        if bound is None:
            log.info("account_link.refused channel=%s", channel)
            return loaded
        log.info("account_link.bound channel=%s customer=%s", channel, bound)
        reloaded = await self.db.read(lambda conn: store.load_conversation(conn, channel, address))
        if reloaded is None:
            return loaded
        reloaded.customer = dataclasses.replace(reloaded.customer, is_new=loaded.customer.is_new)
        return reloaded

    async def send_conversation(self, channel: str, address: str, *, bulk: bool = False) -> int:
        """Send the pending outbox rows of one conversation, strictly in order.

        ``bulk``: woken through the campaign lane (OUTBOX); see ``_respect_rate_limits``.

        Stops at the first row that must wait (retry back-off), so later
        messages never overtake it; a timer and the sweeper wake it again.
        """
        adapter = self.adapters.get(channel)
        if adapter is None:
            log.error("outbox.no_adapter channel=%s", channel)
            return 0
        sent = 0
        async with self.backend.locks.hold(f"send:{conversation_key(channel, address)}", ttl=120):
            rows = await self.db.read(lambda conn: store.outbox_pending(conn, channel, address))
            if not rows:
                return 0
            if rows[0].blocked_at is not None:
                await self.db.write(lambda conn: store.outbox_block_pending(conn, channel, address))
                return 0
            now = datetime.now(timezone.utc)
            for index, row in enumerate(rows):
                due = store.as_utc(row.next_attempt_at)
                if due is not None and due > now:
                    self._wake_later(channel, address, (due - now).total_seconds())
                    break
                await self._yield_to_ingestion()
                waited = await self._respect_rate_limits(channel, address, bulk=bulk)
                # A block may have arrived, or the message been withdrawn (a cancelled campaign),
                # while we waited or sent the previous row.
                if (waited or index) and not await self.db.read(
                    lambda conn, row=row: store.outbox_still_sendable(conn, channel, address, row.id)
                ):
                    if await self.db.read(lambda conn: store.is_blocked(conn, channel, address)):
                        await self.db.write(lambda conn: store.outbox_block_pending(conn, channel, address))
                        break
                    continue
                result = await adapter.send(address, Outbound.from_dict(row.payload), start_part=row.parts_sent)
                if not await self._record_send(channel, address, row, result):
                    break
                sent += 1
        return sent

    async def _respect_rate_limits(self, channel: str, address: str, *, bulk: bool = False) -> float:
        """Wait for the channel's and the chat's buckets; returns the seconds waited.

        Buckets are consulted even with a limit switched off, because a
        platform's 429 pauses them (see ``_record_send``). A bucket hands out
        future send slots in the order they are asked for, so bulk sends (a
        campaign) ask one at a time per channel: a reply asking meanwhile gets
        the next slot instead of one behind a whole lane of campaign messages.
        """
        limit = self.rate_limits.get(channel) or RateLimit()
        if bulk and limit.per_second:
            gate = self._bulk_gates.setdefault(channel, asyncio.Lock())
            async with gate:
                return await self._wait_for_buckets(channel, address, limit)
        return await self._wait_for_buckets(channel, address, limit)

    async def _wait_for_buckets(self, channel: str, address: str, limit: RateLimit) -> float:
        limiter = self.backend.limiter
        wait = max(
            await limiter.acquire(f"rate:{channel}", rate=limit.per_second or UNLIMITED, burst=limit.burst),
            await limiter.acquire(
                f"rate:{channel}:{address}", rate=limit.per_chat_per_second or UNLIMITED, burst=limit.chat_burst
            ),
        )
        if wait > 0:
            await asyncio.sleep(wait)
        return wait

    async def _record_send(self, channel: str, address: str, row: Any, result: SendResult) -> bool:
        """Persist a send outcome; True when the next message may go out now."""
        now = datetime.now(timezone.utc)
        metrics.SENDS.labels(channel, result.status).inc()
        if result.status == "sent":
            def unit_sent(conn: Any) -> None:
                still_pending = store.outbox_mark_sent(
                    conn, row.id, sent_at=now, attempts=row.attempts + 1,
                    parts_sent=result.parts_sent, platform_message_id=result.platform_message_id, last_error=None,
                )
                if not still_pending:  # withdrawn while it was on the wire: its push says what happened
                    push_store.left_after_all(conn, row.id, now)

            await self.db.write(unit_sent)
            return True
        if result.status == "blocked":
            log.info("identity.blocked channel=%s address=%s reason=%s", channel, address, result.error)

            def unit_blocked(conn: Any) -> None:
                store.outbox_update(conn, row.id, attempts=row.attempts + 1, parts_sent=result.parts_sent, last_error=result.error)
                store.block_identity(conn, channel, address)

            await self.db.write(unit_blocked)
            return False
        if result.status == "failed" or row.attempts + 1 >= MAX_SEND_ATTEMPTS:
            log.warning("outbox.failed id=%s channel=%s error=%s", row.id, channel, result.error)
            await self.db.write(
                lambda conn: store.outbox_update(
                    conn, row.id, status="failed", attempts=row.attempts + 1,
                    parts_sent=result.parts_sent, last_error=(result.error or result.status)[:500],
                )
            )
            return True
        # retry: honour the platform's retry_after exactly, otherwise exponential back-off with full jitter
        if result.retry_after is not None:
            delay = result.retry_after
            scope_key = f"rate:{channel}" if result.scope == "channel" else f"rate:{channel}:{address}"
            await self.backend.limiter.pause(scope_key, delay)
        else:
            delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** row.attempts)) + 0.05
        log.info("outbox.retry id=%s channel=%s in=%.2fs error=%s", row.id, channel, delay, result.error)
        await self.db.write(
            lambda conn: store.outbox_update(
                conn, row.id, attempts=row.attempts + 1, parts_sent=result.parts_sent,
                next_attempt_at=now + timedelta(seconds=delay), last_error=(result.error or "retry")[:500],
            )
        )
        self._wake_later(channel, address, delay)
        return False

    def _wake_later(self, channel: str, address: str, delay: float) -> None:
        async def wake() -> None:
            await asyncio.sleep(delay)
            await self.backend.queue.put(OUTBOX, conversation_key(channel, address))

        self._spawn(wake())

    # --- workers ---------------------------------------------------------------

    async def run_consumer(self, topic: str) -> None:
        """Take wake-ups from ``topic`` and handle them concurrently, one task per conversation."""
        if topic == INBOX:
            handler: Any = self.drain_conversation
        elif topic == OUTBOX:
            handler = functools.partial(self.send_conversation, bulk=True)
        else:
            handler = self.send_conversation
        running: dict[str, asyncio.Task[Any]] = {}
        # One lane per channel: a channel that waits (rate limit, a 429 pause,
        # a slow API) fills only its own lane, never the other channels'.
        lanes: dict[str, set[asyncio.Task[Any]]] = {}
        waiting: dict[str, dict[str, QueueItem]] = {}  # per lane, by conversation: wake-ups not started

        def dispatch(channel: str) -> None:
            if self._stopping:
                return
            lane = lanes.setdefault(channel, set())
            queued = waiting.get(channel, {})
            # Ingestion first: while webhooks are being received, only a few
            # conversations are worked on, so the platforms get their 200s fast
            # and a burst waits in the durable inbox instead of in their retry queues.
            while queued and len(lane) < (self.busy_concurrency if self._ingesting else self.concurrency):
                item = queued.pop(next(iter(queued)))  # oldest first
                task = asyncio.create_task(self._handle_wakeup(topic, handler, item, running))
                lane.add(task)
                self._tasks.add(task)  # so that stop() cancels it
                task.add_done_callback(lambda t, c=channel: (lanes[c].discard(t), self._tasks.discard(t), dispatch(c)))

        while not self._stopping:
            backlog = any(waiting.values())
            items = await self.backend.queue.take(topic, max_items=self.concurrency, timeout=0.05 if backlog else 1.0)
            duplicates = []
            for item in items:
                channel, _address = split_key(item.data)
                queued = waiting.setdefault(channel, {})
                if item.data in queued:
                    duplicates.append(item)  # the same conversation is already waiting its turn
                else:
                    queued[item.data] = item
            if duplicates:
                await self.backend.queue.ack(topic, duplicates)
            for channel in list(waiting):
                dispatch(channel)

    async def _yield_to_ingestion(self) -> None:
        """Before each turn or send: while webhooks arrive, pause briefly so acks go first."""
        if self._ingesting:
            self._ingestion_idle.clear()
            try:
                await asyncio.wait_for(self._ingestion_idle.wait(), self.busy_pause)
            except asyncio.TimeoutError:
                pass

    @contextlib.contextmanager
    def ingesting(self) -> Iterator[None]:
        """Wrap the receipt of one webhook (see ``_wait_for_capacity``)."""
        self._ingesting += 1
        try:
            yield
        finally:
            self._ingesting -= 1
            if not self._ingesting:
                self._ingestion_idle.set()

    async def _handle_wakeup(self, topic: str, handler: Any, item: QueueItem, running: dict[str, asyncio.Task[Any]]) -> None:
        channel, address = split_key(item.data)
        previous = running.get(item.data)
        current = asyncio.current_task()
        assert current is not None
        running[item.data] = current
        try:
            if previous is not None:
                # The same conversation is already being drained; drain once more after it.
                await asyncio.wait([previous])
            await handler(channel, address)
            await self.backend.queue.ack(topic, [item])
        except Exception:  # noqa: BLE001 - left unacknowledged; the sweeper or reclaim retries it
            log.exception("worker.wakeup_failed topic=%s key=%s", topic, item.data)
        finally:
            if running.get(item.data) is current:
                del running[item.data]

    async def sweep_once(self) -> int:
        """Re-issue wake-ups for work that is due but nobody is doing (crash, lost wake-up)."""
        now = datetime.now(timezone.utc)
        stale = await self.db.read(lambda conn: store.inbox_stale_keys(conn, now - timedelta(seconds=STALE_INBOX_AFTER)))
        due = await self.db.read(lambda conn: store.outbox_due_keys(conn, now))
        issued = 0
        for topic, keys in ((INBOX, stale), (OUTBOX, due)):
            for channel, address in keys:
                key = conversation_key(channel, address)
                # Every process sweeps; one re-issue per conversation and interval is enough.
                if await self.backend.dedup.first_seen(f"sweep:{topic}:{key}", ttl=SWEEP_INTERVAL * 0.8):
                    await self.backend.queue.put(topic, key)
                    issued += 1
        return issued

    async def recover(self) -> int:
        """At start-up: every pending inbox row and due outbox row gets a wake-up."""
        now = datetime.now(timezone.utc)
        pending = await self.db.read(lambda conn: store.inbox_stale_keys(conn, now + timedelta(days=1), limit=100_000))
        due = await self.db.read(lambda conn: store.outbox_due_keys(conn, now + timedelta(days=3650), limit=100_000))
        for channel, address in pending:
            await self.backend.queue.put(INBOX, conversation_key(channel, address))
        for channel, address in due:
            await self.backend.queue.put(OUTBOX, conversation_key(channel, address))
        if pending or due:
            log.info("recovery.requeued inbox=%d outbox=%d", len(pending), len(due))
        return len(pending) + len(due)

    def _config_and_i18n(self) -> tuple[ShopConfig | None, I18n | None]:
        return (
            self.config if self.config is not None else getattr(self.engine, "config", None),
            self.i18n if self.i18n is not None else getattr(self.engine, "i18n", None),
        )

    async def run_jobs(self, now: datetime | None = None) -> dict[str, int]:
        """The timed domain jobs: end marketing pauses that have passed, expire unanswered surveys.

        Each starts with one indexed read and writes nothing when nothing is due.
        """
        now = now or datetime.now(timezone.utc)
        config, _i18n = self._config_and_i18n()
        done = {"marketing_resumed": 0, "surveys_expired": 0}
        due = await self.db.read(lambda conn: store.paused_customers_due(conn, now))
        for customer_id in due:
            await self.db.write(lambda conn, c=customer_id: store.resume_marketing(conn, c, now))
            log.info("marketing.resumed customer=%s", customer_id)
        done["marketing_resumed"] = len(due)
        lifetimes = [(s.id, s.expire_hours) for s in config.surveys] if config is not None else []
        if lifetimes:
            oldest = await self.db.read(store.oldest_started_survey)
            if oldest is not None and oldest <= now - timedelta(hours=min(h for _s, h in lifetimes)):
                done["surveys_expired"] = await self.db.write(lambda conn: store.expire_surveys(conn, lifetimes, now))
                if done["surveys_expired"]:
                    log.info("surveys.expired count=%d", done["surveys_expired"])
        return done

    async def run_sweeper(self) -> None:
        while not self._stopping:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                await self.sweep_once()
            except Exception:  # noqa: BLE001
                log.exception("sweeper.failed")
            try:
                # Every process sweeps; one of them runs the jobs per interval.
                if await self.backend.dedup.first_seen("jobs", ttl=SWEEP_INTERVAL * 0.8):
                    await self.run_jobs()
            except Exception:  # noqa: BLE001
                log.exception("jobs.failed")

    def start_workers(self) -> list[asyncio.Task[Any]]:
        tasks = [
            asyncio.create_task(self.run_consumer(INBOX), name="inbox-consumer"),
            asyncio.create_task(self.run_consumer(OUTBOX), name="outbox-consumer"),
            asyncio.create_task(self.run_consumer(OUTBOX_URGENT), name="outbox-urgent-consumer"),
            asyncio.create_task(self.run_sweeper(), name="sweeper"),
        ]
        self._tasks.update(tasks)
        return tasks

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._tasks.clear()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _link_token(event: Inbound) -> str | None:
    """An account-link token the event carries: a Telegram start parameter, a Viber context, or in a text."""
    if event.kind not in (Kind.COMMAND, Kind.STARTED, Kind.SUBSCRIBED, Kind.TEXT):
        return None
    if event.context and event.context.startswith(shop_store.LINK_PREFIX):
        return shop_store.token_in_text(event.context)
    if event.kind is Kind.TEXT and shop_store.LINK_PREFIX in event.text:
        return shop_store.token_in_text(event.text)
    return None
