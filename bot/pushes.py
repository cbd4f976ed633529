"""Proactive messages: every push is decided by the same rules, recorded with its reasons, and sent through the outbox.

A push is one touchpoint for one customer. It is created ``queued`` (by an
event rule, a direct push or a campaign), then the dispatcher decides it:

* ``skipped`` with a reason (no consent on any channel, blocked, erased, cap),
* ``deferred`` until a time with a reason (quiet hours, a cap of an important push),
* or handed to the outbox on the chosen channel (``sending``), after which the
  reconciler follows the outbox row: ``sent``, ``delivered``, ``read``; a send
  that fails for good, or marketing not delivered within the receipt timeout,
  moves on to the next allowed channel (``tried`` remembers the used ones, so a
  late receipt of the first channel never causes a second copy).

Every step is a row in ``push_event`` so ``GET /api/v1/pushes/{id}`` and the
dry run explain what happened and why. Decisions read facts loaded in batches
(``push_store.load_facts``) and call the pure rules in ``bot.policy``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Sequence

from bot import policy, push_store, store
from bot.config import ShopConfig, TouchpointRule
from bot.db import Database
from bot.i18n import I18n
from bot.messages import Outbound, Place, Template
from bot.state.base import Locks
from bot.turn import IssueCode

log = logging.getLogger("touchpoint.pushes")

MARKETING_PRIORITY = 0  # outbox priority of marketing pushes; replies are 10
TRANSACTIONAL_PRIORITY = 5
RECEIPT_CHANNELS = frozenset({"whatsapp", "viber"})  # channels that report delivery
URL_RE = re.compile(r"^https?://", re.IGNORECASE)
DISPATCH_INTERVAL = 1.0
CAP_REASONS = frozenset({policy.CAP_DAY, policy.CAP_WEEK})
CAMPAIGN_CANCELLED = push_store.CAMPAIGN_CANCELLED
EMPTY_MESSAGE = "empty_message"  # the text came out empty (a null or "" variable)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(slots=True)
class Decision:
    """What the rules say about one push now."""

    action: str  # send, defer, skip
    reason: str | None = None
    until: datetime | None = None
    route: policy.Route | None = None
    held_back: list[tuple[str, str]] = field(default_factory=list)  # (channel, reason) of channels not used
    form: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "would_send": self.action == "send",
            "action": self.action,
            "reason": self.reason,
            "at": self.until.isoformat() if self.until else None,
            "channel": self.route.channel if self.route else None,
            "address": self.route.address if self.route else None,
            "form": self.route.form if self.route else None,
            "held_back": [{"channel": c, "reason": r} for c, r in self.held_back],
        }


def decide(
    rule: TouchpointRule,
    facts: push_store.Facts,
    config: ShopConfig,
    now: datetime,
    *,
    tried: Sequence[str] = (),
    enabled: Sequence[str] | None = None,
    allow_template: bool = True,
) -> Decision:
    """Consent per channel, STOP, blocks, WhatsApp's window, quiet hours and caps, in that order."""
    if facts.erased:
        return Decision("skip", policy.ERASED)
    reachable = [
        policy.Reachable(
            channel=identity.channel,
            address=identity.address,
            consented=_consented(rule, facts, identity.channel, config),
            blocked=identity.blocked,
            last_inbound_at=identity.last_inbound_at,
            stopped=_stopped(facts, identity.channel, config),
        )
        for identity in facts.identities
        if identity.channel not in tried
    ]
    plan = policy.plan_channels(
        reachable,
        preferred=facts.preferred_channel,
        policy=config.policy,
        now=now,
        has_template=allow_template and rule.whatsapp_template is not None,
        enabled=enabled,
    )
    if not plan.routes:
        reason = plan.skipped[0][1] if plan.skipped else policy.NO_IDENTITY
        if len({r for _, r in plan.skipped}) > 1:
            reason = policy.NO_CHANNEL
        return Decision("skip", reason, held_back=plan.skipped)
    if not rule.transactional:
        tz = policy.zone(facts.timezone, config.policy.timezone)
        quiet = policy.quiet_until(now, tz, config.policy.quiet_hours)
        if quiet is not None:
            return Decision("defer", policy.QUIET_HOURS, until=quiet, route=plan.routes[0], held_back=plan.skipped)
        cap = policy.cap_reason(facts.marketing_sent_at, now, config.policy.caps)
        if cap is not None:
            reason, frees_at = cap
            if rule.priority >= config.policy.caps.defer_priority:
                return Decision("defer", reason, until=frees_at, route=plan.routes[0], held_back=plan.skipped)
            return Decision("skip", reason, held_back=plan.skipped)
    return Decision("send", route=plan.routes[0], held_back=plan.skipped)


def _consented(rule: TouchpointRule, facts: push_store.Facts, channel: str, config: ShopConfig) -> bool:
    granted, _ = facts.consents.get((rule.purpose, channel), (False, ""))
    # Transactional messages skip caps, never a STOP: a channel where the customer
    # said stop gets nothing, whatever the touchpoint's purpose.
    return granted and not (rule.transactional and _stopped(facts, channel, config))


def _stopped(facts: push_store.Facts, channel: str, config: ShopConfig) -> bool:
    """The customer said STOP on this channel (a marketing purpose withdrawn by "stop" or an unsubscribe)."""
    for purpose in config.consent_purposes:
        state = facts.consents.get((purpose.id, channel))
        if purpose.marketing and state is not None and not state[0] and state[1] in ("stop", "unsubscribe"):
            return True
    return False


class PushService:
    """Creates, decides and follows pushes; one per process, driven by ``run``."""

    def __init__(
        self,
        db: Database,
        config: ShopConfig,
        i18n: I18n,
        *,
        public_url: str,
        enabled_channels: Sequence[str],
        wake_sender: Callable[[str, str, bool], Any],
        start_survey: Callable[..., Any] | None = None,
        locks: Locks | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.i18n = i18n
        self.public_url = public_url.rstrip("/")
        self.enabled = list(enabled_channels)
        self._wake_sender = wake_sender  # (channel, address, urgent) -> awaitable
        self.locks = locks
        self._start_survey = start_survey
        self._wake = asyncio.Event()
        self._stopping = False

    # ------------------------------------------------------------------ creating

    async def submit(
        self,
        touchpoint: str,
        customer_ids: Sequence[int],
        variables: Mapping[str, Any],
        *,
        dedup_key: str | Callable[[int], str] | None = None,
        campaign_id: int | None = None,
        now: datetime | None = None,
    ) -> list[tuple[int, bool]]:
        """Queue ``touchpoint`` for each customer; returns (push id, newly created) per customer."""
        rule = self.config.touchpoints[touchpoint]
        now = now or utcnow()
        rows = []
        for customer_id in customer_ids:
            key = dedup_key(customer_id) if callable(dedup_key) else (dedup_key or f"push:{secrets.token_hex(8)}")
            rows.append(
                {
                    "customer_id": customer_id,
                    "touchpoint": touchpoint,
                    "dedup_key": key,
                    "variables": dict(variables),
                    "priority": rule.priority,
                    "transactional": rule.transactional,
                    "campaign_id": campaign_id,
                }
            )
        result = await self.db.write(lambda conn: push_store.create_pushes(conn, rows, now))
        self._wake.set()
        return result

    # ------------------------------------------------------------------ deciding

    async def dispatch_due(self, now: datetime | None = None) -> int:
        """Decide every push that is due; returns how many were decided.

        One process at a time (a lock in the state backend): two deciding the same
        rows would queue every message twice.
        """
        if self.locks is None:
            return await self._dispatch_due(now)
        async with self.locks.hold("pushes:dispatch", ttl=120.0):
            return await self._dispatch_due(now)

    async def _dispatch_due(self, now: datetime | None) -> int:
        total = 0
        while True:
            now_ = now or utcnow()
            handled = await self.db.write(lambda conn: self._dispatch_batch(conn, now_))
            total += len(handled)
            for channel, address, urgent in {(c, a, u) for c, a, u in handled if c}:
                await self._wake_sender(channel, address, urgent)
            if len(handled) < push_store.BATCH:
                return total

    def _dispatch_batch(self, conn: Any, now: datetime) -> list[tuple[str | None, str | None, bool]]:
        rows = push_store.due(conn, now)
        if not rows:
            return []
        facts = push_store.load_facts(conn, [r.customer_id for r in rows], now)
        cancelled = push_store.cancelled_campaigns(conn, {r.campaign_id for r in rows if r.campaign_id is not None})
        batch = push_store.Batch(now)
        woken: list[tuple[str | None, str | None, bool]] = []
        for row in rows:
            if row.campaign_id in cancelled:  # cancelled between its enqueueing and now
                if push_store.probably_arrived(row):  # no fallback now
                    batch.record(row.id, "sent", reason=CAMPAIGN_CANCELLED, channel=row.channel)
                else:
                    batch.record(row.id, "skipped", reason=CAMPAIGN_CANCELLED)
                woken.append((None, None, False))
                continue
            rule = self.config.touchpoints.get(row.touchpoint)
            customer = facts.get(row.customer_id)
            if rule is None or customer is None:
                batch.record(row.id, "skipped", reason="unknown_touchpoint" if rule is None else policy.ERASED)
                woken.append((None, None, False))
                continue
            own = push_store.as_utc(row.sent_at) if row.sent_at is not None else None
            if own is not None and own in customer.marketing_sent_at:
                customer.marketing_sent_at.remove(own)  # a push moving to its next channel does not count against itself
            else:
                own = None
            decision = decide(
                rule, customer, self.config, now, tried=row.tried or [], enabled=self.enabled,
                allow_template=not self._is_survey(row.touchpoint),
            )
            woken.append(self._apply(conn, batch, row, rule, customer, decision, now))
            if own is not None and decision.action == "defer":
                customer.marketing_sent_at.append(own)  # still waiting for its next channel: it still counts
            if decision.action == "send" and not rule.transactional and woken[-1][0] is not None:
                customer.marketing_sent_at.append(now)  # the next push of this batch sees it
        batch.flush(conn)
        return woken

    def _apply(
        self,
        conn: Any,
        batch: push_store.Batch,
        row: Any,
        rule: TouchpointRule,
        facts: push_store.Facts,
        decision: Decision,
        now: datetime,
    ) -> tuple[str | None, str | None, bool]:
        detail = ", ".join(f"{c}: {r}" for c, r in decision.held_back) or None
        if decision.action == "skip":
            if row.tried and row.reason == "receipt_timeout" and row.outbox_id is not None:
                # Sent, just not confirmed, and no other channel may have it: it stays sent
                # on its channel, where a late receipt still counts.
                batch.record(row.id, "sent", reason=push_store.NO_FALLBACK, channel=row.channel, detail=detail)
                return None, None, False
            if row.tried and decision.reason not in CAP_REASONS:
                # Every allowed channel was tried: the push failed, for the last channel's reason.
                batch.record(row.id, "failed", reason=row.reason or decision.reason, detail=detail)
                return None, None, False
            batch.record(row.id, "skipped", reason=decision.reason, detail=detail)
            return None, None, False
        if decision.action == "defer":
            if row.status == "deferred" and row.reason == decision.reason:
                batch.set_due(row.id, decision.until)  # type: ignore[arg-type]
            else:
                batch.record(row.id, "deferred", reason=decision.reason, detail=detail, due_at=decision.until)
            return None, None, False
        route = decision.route
        assert route is not None
        tried = [*(row.tried or []), route.channel]
        if self._is_survey(row.touchpoint):
            batch.record(row.id, "sent", channel=route.channel, detail=detail, address=route.address, tried=tried, sent_at=now)
            variables = dict(row.variables or {})
            if self._start_survey is not None:
                survey_id, order = variables.get("survey", "order_feedback"), str(variables.get("order", ""))
                self._start_survey(conn, row.customer_id, survey_id, order, route.channel, route.address, now)
            return route.channel, route.address, False
        variables = dict(row.variables or {})
        links_before = len(batch.links)
        message = self.render(batch, row.id, rule, facts, variables, route, now)
        if not message.text.strip() and message.template is None and message.place is None:
            # E.g. an announcement whose {message} came as null or "": nothing worth a message.
            del batch.links[links_before:]
            batch.record(row.id, "skipped", reason=EMPTY_MESSAGE, channel=route.channel)
            return None, None, False
        if isinstance(variables.get("_code"), dict):
            spec = variables["_code"]
            code = IssueCode(
                code=spec["code"],
                category=spec["category"],
                percent=int(spec["percent"]),
                expires_at=datetime.fromisoformat(spec["expires_at"]),
                source=spec["source"],
                reference=f"push:{row.id}",
            )
            store.apply_effects(conn, customer_id=row.customer_id, channel=route.channel, address=route.address, effects=[code], now=now)
        change = batch.record(
            row.id,
            "sending",
            channel=route.channel,
            detail=route.form + (f"; held back {detail}" if detail else ""),
            address=route.address,
            tried=tried,
            sent_at=now,
        )
        batch.enqueue(
            change,
            channel=route.channel,
            address=route.address,
            customer_id=row.customer_id,
            message=message,
            priority=TRANSACTIONAL_PRIORITY if rule.transactional else MARKETING_PRIORITY,
        )
        return route.channel, route.address, bool(rule.transactional)

    # ------------------------------------------------------------------ rendering

    def render(
        self,
        batch: push_store.Batch,
        push_id: int,
        rule: TouchpointRule,
        facts: push_store.Facts,
        variables: dict[str, Any],
        route: policy.Route,
        now: datetime,
    ) -> Outbound:
        """The touchpoint's text in the customer's language, links tracked, as text or as a template."""
        locale = facts.locale if facts.locale in self.config.locales else self.config.default_locale
        values: dict[str, Any] = {"first_name": facts.first_name or "", "shop": self.config.shop_name}
        values.update({k: v for k, v in variables.items() if not k.startswith("_")})
        category = self.config.category(str(variables.get("category_id", "")))
        if category is not None:
            values["category"] = category.name.get(locale)  # in the customer's language
        if "percent" in values and isinstance(values["percent"], (int, float)) and not isinstance(values["percent"], bool):
            values["percent"] = self.i18n.format_percent(locale, values["percent"] / 100)
        for key, value in values.items():
            if isinstance(value, bool):  # the customer reads "Yes"/"Ja", not Python's "True"
                values[key] = self.i18n.text(locale, "buttons.yes" if value else "buttons.no")
            elif value is None:
                values[key] = ""
        links = []
        for key, value in list(values.items()):
            # Only the shop's links are tracked (a "url" variable or "*_url"): a customer's name that
            # looks like a URL must not become a redirect on the shop's own domain.
            if (key == "url" or key.endswith("_url")) and isinstance(value, str) and URL_RE.match(value):
                token = secrets.token_urlsafe(12)
                links.append({"token": token, "push_id": push_id, "url": value, "created_at": now})
                values[key] = f"{self.public_url}/l/{token}"
        batch.links.extend(links)
        text = _fill(rule.text.get(locale), values)
        subject = _fill(rule.subject.get(locale), values) if rule.subject else self.config.shop_name
        template = None
        if route.form == "template" and rule.whatsapp_template is not None:
            spec = rule.whatsapp_template
            template = Template(spec.name, spec.language, tuple(str(values.get(p, "")) for p in spec.params))
        place = None
        store = variables.get("_store")
        if isinstance(store, dict):
            place = Place(float(store["latitude"]), float(store["longitude"]), str(store.get("name", "")), str(store.get("address", "")))
        return Outbound(text=text, transactional=rule.transactional, subject=subject, template=template, place=place)

    # ------------------------------------------------------------------ surveys

    def _is_survey(self, touchpoint: str) -> bool:
        return touchpoint == "order_feedback"

    # ------------------------------------------------------------------ following

    async def reconcile(self, now: datetime | None = None) -> int:
        """Follow pushes in the outbox: sent, delivered, read, or on to the next channel (one process at a time)."""
        if self.locks is None:
            return await self._reconcile(now)
        async with self.locks.hold("pushes:reconcile", ttl=120.0):
            return await self._reconcile(now)

    async def _reconcile(self, now: datetime | None) -> int:
        now = now or utcnow()
        timeout = timedelta(minutes=self.config.policy.receipt_timeout_minutes)

        def unit(conn: Any) -> tuple[int, int]:
            batch = push_store.Batch(now)
            moved = 0
            rows = push_store.in_flight(conn, receipt_channels=sorted(RECEIPT_CHANNELS), timed_out_before=now - timeout)
            for row in rows:
                sent_at = push_store.as_utc(row.sent_at)
                if row.status == "sending":
                    if row.outbox_status == "sent":
                        status = row.delivery_status if row.delivery_status in ("delivered", "read") else "sent"
                        # The receipt timeout counts from when it left (seen now), not from the decision.
                        batch.record(row.id, status, channel=row.channel, sent_at=now)
                    elif row.outbox_status in ("failed", "blocked") and row.parts_sent:
                        # Part of it reached the customer: another channel would repeat it.
                        batch.record(row.id, "sent", reason="partly_delivered", channel=row.channel, detail=row.last_error)
                    elif row.outbox_status == "cancelled":
                        batch.record(row.id, "skipped", reason=CAMPAIGN_CANCELLED)
                    elif row.outbox_status in ("failed", "blocked"):
                        reason = f"{row.channel}_{row.outbox_status}"
                        batch.record(row.id, "queued", reason=reason, detail=row.last_error, due_at=now)
                    else:
                        continue
                elif row.status == "sent":
                    if row.delivery_status in ("delivered", "read"):
                        batch.record(row.id, row.delivery_status, channel=row.channel)
                    elif row.delivery_status == "failed":
                        batch.record(row.id, "queued", reason=f"{row.channel}_undelivered", due_at=now)
                    elif (
                        not row.transactional
                        and row.channel in RECEIPT_CHANNELS
                        and sent_at is not None
                        and now - sent_at > timeout
                    ):
                        batch.record(row.id, "queued", reason="receipt_timeout", channel=row.channel, due_at=now)
                    else:
                        continue
                elif row.status == "delivered" and row.delivery_status == "read":
                    batch.record(row.id, "read", channel=row.channel)
                else:
                    continue
                moved += 1
            batch.flush(conn)
            return moved, len(rows)

        total = 0
        while True:
            moved, scanned = await self.db.write(unit)
            total += moved
            if scanned < push_store.IN_FLIGHT_BATCH or moved == 0:
                break  # a full batch that changed nothing would come back unchanged
        if total:
            self._wake.set()
        return total

    # ------------------------------------------------------------------ dry run

    async def dry_run(
        self, customer_id: int, touchpoint: str, variables: Mapping[str, Any] | None = None, now: datetime | None = None
    ) -> dict[str, Any]:
        """What would happen to this touchpoint for this customer now, without sending or counting anything.

        With ``variables`` (a push's), an empty text is reported as the push would be: ``empty_message``.
        """
        now = now or utcnow()
        rule = self.config.touchpoints[touchpoint]
        facts = (await self.db.read(lambda conn: push_store.load_facts(conn, [customer_id], now))).get(customer_id)
        if facts is None:
            return {"would_send": False, "action": "skip", "reason": "unknown_customer", "held_back": []}
        decision = decide(rule, facts, self.config, now, enabled=self.enabled, allow_template=not self._is_survey(touchpoint))
        if variables is not None and decision.route is not None and not self._is_survey(touchpoint):
            scratch = push_store.Batch(now)  # links and history go nowhere
            message = self.render(scratch, 0, rule, facts, dict(variables), decision.route, now)
            if not message.text.strip() and message.template is None and message.place is None:
                decision = Decision("skip", EMPTY_MESSAGE, held_back=decision.held_back)
        answer = decision.as_dict()
        answer["touchpoint"] = touchpoint
        answer["transactional"] = rule.transactional
        return answer

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        """Decide due pushes and follow sent ones, woken by new pushes or once a second."""
        while not self._stopping:
            try:
                await self.dispatch_due()
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bad batch must not stop the loop; it is retried
                log.exception("pushes.loop_failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), DISPATCH_INTERVAL)
            except asyncio.TimeoutError:
                pass

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """End ``run`` after the current round, even if a library swallowed the task's cancellation
        (redis-py 8.2 can, when a cancel lands inside a command)."""
        self._stopping = True
        self._wake.set()


class _Missing(dict):
    def __missing__(self, key: str) -> str:
        return ""


def _fill(template: str, values: Mapping[str, Any]) -> str:
    try:
        return template.format_map(_Missing(values))
    except (ValueError, IndexError, AttributeError):
        log.warning("pushes.bad_template %r", template)
        return template
