"""Starting an order survey for one customer: the entry point the shop API calls.

The survey itself is a dialog ("survey") started by a TRIGGER event, so it
runs in order with the customer's own messages under the conversation lock.
This module decides whether and where it may start: only with "surveys"
consent on a reachable channel, and once per order (the unique
survey_response row makes two concurrent calls start one survey).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from bot import store
from bot.config import ShopConfig

if TYPE_CHECKING:
    from bot.pipeline import Pipeline

log = logging.getLogger("touchpoint.surveys")

SURVEY_PURPOSE = "surveys"
SURVEY_DIALOG = "survey"


@dataclass(frozen=True, slots=True)
class StartResult:
    """``reason``: "started", "unknown_survey", "unknown_customer", "erased", "no_consent", "blocked" or "already_started"."""

    started: bool
    reason: str
    channel: str | None = None
    address: str | None = None


async def start_survey(
    pipeline: Pipeline, config: ShopConfig, customer_id: int, survey_id: str, order_ref: str
) -> StartResult:
    """Start survey ``survey_id`` about order ``order_ref`` for one customer, if allowed."""
    if config.survey(survey_id) is None:
        return StartResult(False, "unknown_survey")
    channels = frozenset(pipeline.adapters)
    now = datetime.now(timezone.utc)
    result = await pipeline.db.write(
        lambda conn: _claim(conn, customer_id, survey_id, order_ref, channels, now)
    )
    if not result.started:
        log.info("survey.not_started customer=%s survey=%s order=%s reason=%s", customer_id, survey_id, order_ref, result.reason)
        return result
    assert result.channel is not None and result.address is not None
    dialog, slots, event_id = survey_trigger(survey_id, order_ref)
    triggered = await pipeline.trigger(result.channel, result.address, dialog, slots, event_id=event_id)
    if not triggered:  # the same order's trigger was stored before (its row was erased since)
        return StartResult(False, "already_started", result.channel, result.address)
    log.info("survey.started customer=%s survey=%s order=%s channel=%s", customer_id, survey_id, order_ref, result.channel)
    return result


def survey_trigger(survey_id: str, order_ref: str) -> tuple[str, dict[str, str], str]:
    """The trigger that runs a survey: dialog, its slots, and an event id that is once per order."""
    return SURVEY_DIALOG, {"survey": survey_id, "order": order_ref}, f"survey:{survey_id}:{order_ref}"


def _claim(
    conn: Connection, customer_id: int, survey_id: str, order_ref: str, channels: frozenset[str], now: datetime
) -> StartResult:
    """Pick the channel and create the started row, in one transaction."""
    customer = conn.execute(
        select(store.customer_t.c.erased_at, store.customer_t.c.preferred_channel).where(store.customer_t.c.id == customer_id)
    ).first()
    if customer is None:
        return StartResult(False, "unknown_customer")
    if customer.erased_at is not None:
        return StartResult(False, "erased")
    consented = {c.channel for c in store.current_consents(conn, customer_id) if c.purpose == SURVEY_PURPOSE and c.granted}
    candidates = [i for i in _identities(conn, customer_id) if i.channel in consented and i.channel in channels]
    if not candidates:
        return StartResult(False, "no_consent")
    reachable = [i for i in candidates if i.blocked_at is None]
    if not reachable:
        return StartResult(False, "blocked")
    chosen = _choose(reachable, customer.preferred_channel)
    if not store.start_survey_row(conn, customer_id, survey_id, order_ref, chosen.channel, chosen.address, now):
        return StartResult(False, "already_started")
    return StartResult(True, "started", chosen.channel, chosen.address)


def _identities(conn: Connection, customer_id: int) -> list[Any]:
    identity_t, conversation_t = store.identity_t, store.conversation_t
    return list(
        conn.execute(
            select(identity_t.c.channel, identity_t.c.address, identity_t.c.blocked_at, conversation_t.c.last_inbound_at)
            .outerjoin(
                conversation_t,
                (conversation_t.c.channel == identity_t.c.channel) & (conversation_t.c.address == identity_t.c.address),
            )
            .where(identity_t.c.customer_id == customer_id)
            .order_by(identity_t.c.id)
        )
    )


def _choose(identities: list[Any], preferred: str | None) -> Any:
    """The preferred channel when it qualifies, else where the customer wrote last."""
    for identity in identities:
        if identity.channel == preferred:
            return identity
    never = datetime.min.replace(tzinfo=timezone.utc)
    return max(identities, key=lambda i: store.as_utc(i.last_inbound_at) or never)
