"""The built-in touchpoints: which shop event concerns which customers, and with what.

* ``product.back_in_stock``: customers who subscribed to or viewed the product.
* ``product.launched``: customers whose favourite categories include its category.
* ``cart.updated`` / ``customer.location``: when the customer is inside a store's
  radius with a non-empty cart, one offer naming the store (and sharing its
  location) with a discount code, at most once per store per ``cooldown_days``.
* ``order.delivered``: the order feedback survey.
* ``order.placed``: no message; redeems the code and counts the conversion.

Each rule only *creates* pushes (deduplicated by a key: the same product alert
at most once); whether, when and where each is sent is ``bot.pushes``' job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from bot import codes, event_store, push_store
from bot.config import ShopConfig
from bot.db import Database
from bot.pushes import PushService
from bot.turn import IssueCode

EARTH_RADIUS_M = 6_371_000.0


class UnknownReference(ValueError):
    """The event names a customer or product the shop never sent (a 422 naming the field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Concern:
    """Whether an event would address this customer, and with which touchpoint (for the dry run)."""

    touchpoint: str | None
    reason: str | None = None  # why the customer is not in the event's audience


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine); plenty for store radii of tens to thousands of metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


class Touchpoints:
    def __init__(self, db: Database, config: ShopConfig, pushes: PushService) -> None:
        self.db = db
        self.config = config
        self.pushes = pushes

    async def handle(self, event: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
        """Apply one shop event; returns what it did (pushes created, conversions) for the API answer."""
        now = now or datetime.now(timezone.utc)
        kind = event["type"]
        handler = getattr(self, "_" + kind.replace(".", "_"))
        return await handler(event, now)

    # ------------------------------------------------------------------ helpers

    async def _own_order(self, order_id: str, customer_id: int) -> None:
        """An order belongs to one customer: another's survey or conversion must not be triggered."""
        await self.db.read(lambda conn: _check_owner(conn, order_id, customer_id, allow_new=True))

    async def _known_products(self, items: list[dict[str, Any]]) -> None:
        ids = [item["product_id"] for item in items]
        unknown = await self.db.read(lambda conn: event_store.unknown_products(conn, ids)) if ids else []
        if unknown:
            index = ids.index(unknown[0])
            raise UnknownReference(
                f"items.{index}.product_id",
                f"unknown product_id {unknown[0]!r} (send it with POST /api/v1/catalog/products first)",
            )

    async def _customer(self, external_id: str) -> int:
        found = await self.db.read(lambda conn: event_store.customer_id_for(conn, external_id))
        if found is None:
            raise UnknownReference("customer_id", f"unknown customer_id {external_id!r} (upsert it with POST /api/v1/customers first)")
        return found

    async def _product(self, product_id: str) -> Any:
        found = await self.db.read(lambda conn: event_store.product(conn, product_id))
        if found is None:
            raise UnknownReference("product_id", f"unknown product_id {product_id!r} (send it with POST /api/v1/catalog/products first)")
        return found

    async def _push(
        self, touchpoint: str, customer_ids: list[int], variables: dict[str, Any], key: Any, now: datetime
    ) -> dict[str, Any]:
        if touchpoint not in self.config.touchpoints or not customer_ids:
            return {"pushes": []}
        made = await self.pushes.submit(touchpoint, customer_ids, variables, dedup_key=key, now=now)
        return {
            "pushes": [
                {"push_id": push_id, "customer_id": cid, "duplicate": not created}
                for cid, (push_id, created) in zip(customer_ids, made)
            ]
        }

    @staticmethod
    def _product_vars(product: Any) -> dict[str, Any]:
        return {"product": product.name, "url": product.url, "product_id": product.id, "category": product.category}

    # ------------------------------------------------------------------ products

    async def _product_back_in_stock(self, event: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        product = await self._product(event["product_id"])

        def unit(conn: Any) -> list[int]:
            event_store.set_stock(conn, product.id, True, now)
            return event_store.interested_in(conn, product.id)

        audience = await self.db.write(unit)
        return await self._push("back_in_stock", audience, self._product_vars(product), f"product:{product.id}", now)

    async def _product_launched(self, event: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        product = await self._product(event["product_id"])
        available_on = str(event.get("available_on") or product.available_on or "")

        def unit(conn: Any) -> list[int]:
            event_store.set_available_on(conn, product.id, available_on or None, now)
            return event_store.with_favourite(conn, product.category)

        audience = await self.db.write(unit)
        variables = self._product_vars(product)
        variables["category_id"] = product.category  # named in each customer's language when rendered
        variables["available_on"] = available_on
        return await self._push("product_launched", audience, variables, f"launch:{product.id}", now)

    async def _product_subscribed(self, event: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        return await self._interest(event, "subscribed", now)

    async def _product_viewed(self, event: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        return await self._interest(event, "viewed", now)

    async def _interest(self, event: Mapping[str, Any], kind: str, now: datetime) -> dict[str, Any]:
        customer_id = await self._customer(event["customer_id"])
        product = await self._product(event["product_id"])
        await self.db.write(lambda conn: event_store.add_interest(conn, customer_id, product.id, kind, now))
        return {"pushes": []}

    # ------------------------------------------------------------------ cart and location

    async def _cart_updated(self, event: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        customer_id = await self._customer(event["customer_id"])
        items = [dict(i) for i in event.get("items", [])]
        await self._known_products(items)
        await self.db.write(lambda conn: event_store.set_cart(conn, customer_id, items, now))
        return await self.near_store(customer_id, now)

    async def _customer_location(self, event: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        customer_id = await self._customer(event["customer_id"])
        lat, lon = float(event["latitude"]), float(event["longitude"])
        await self.db.write(lambda conn: event_store.set_location(conn, customer_id, lat, lon, "event", now))
        return await self.near_store(customer_id, now)

    async def shared_location(self, customer_id: int, latitude: float, longitude: float, now: datetime) -> dict[str, Any]:
        """A location the customer shared in the chat (the caller checked location consent)."""
        await self.db.write(lambda conn: event_store.set_location(conn, customer_id, latitude, longitude, "chat", now))
        return await self.near_store(customer_id, now)

    async def near_store(self, customer_id: int, now: datetime) -> dict[str, Any]:
        """The cart offer when the customer's last location is inside a store's radius and the cart is not empty."""
        rule = self.config.touchpoints.get("cart_nearby")
        if rule is None:
            return {"pushes": []}
        shop, reason = await self._store_offer(customer_id, now)
        if shop is None:
            return {"pushes": [], "reason": reason}
        variables: dict[str, Any] = {
            "store": shop.name,
            "address": shop.address,
            "_store": {"latitude": shop.latitude, "longitude": shop.longitude, "name": shop.name, "address": shop.address},
        }
        if rule.discount_percent:
            # Issued with the send (bot.pushes), so a skipped offer leaves no unused code behind.
            code = self._cart_code(rule.discount_percent, now)
            variables.update(code=code.code, percent=code.percent)
            variables["_code"] = {
                "code": code.code,
                "category": code.category,
                "percent": code.percent,
                "expires_at": code.expires_at.isoformat(),
                "source": code.source,
            }
        return await self._push("cart_nearby", [customer_id], variables, f"store:{shop.id}:{now.isoformat()}", now)

    async def _store_offer(
        self, customer_id: int, now: datetime, *, location: tuple[float, float] | None = None, items: list[Any] | None = None
    ) -> tuple[Any | None, str | None]:
        """The nearest store whose radius holds the customer, unless the cart is empty or the cooldown holds."""
        rule = self.config.touchpoints["cart_nearby"]

        def facts(conn: Any) -> tuple[Any, list[Any], list[Any]]:
            return event_store.location(conn, customer_id), event_store.cart(conn, customer_id), event_store.stores(conn)

        where, cart, shops = await self.db.read(facts)
        if location is not None:
            lat, lon = location
        elif where is not None:
            lat, lon = where.latitude, where.longitude
        else:
            return None, "no_location"
        if not (cart if items is None else items):
            return None, "cart_empty"
        inside = sorted(
            (distance_m(lat, lon, s.latitude, s.longitude), s.id, s)
            for s in shops
            if distance_m(lat, lon, s.latitude, s.longitude) <= s.radius_m
        )
        if not inside:
            return None, "not_near_a_store"
        shop = inside[0][2]
        since = now - timedelta(days=rule.cooldown_days)
        recent = await self.db.read(
            lambda conn: push_store.last_push_for(conn, customer_id, "cart_nearby", f"store:{shop.id}:", since)
        )
        if recent is not None:
            return None, "store_offer_cooldown"
        return shop, None

    async def concerns(self, event: Mapping[str, Any], customer_id: int, now: datetime | None = None) -> Concern:
        """Whether ``event`` would address this customer (the dry run): the audience rules, without writing."""
        now = now or datetime.now(timezone.utc)
        kind = event["type"]
        if kind in ("product.back_in_stock", "product.launched"):
            product = await self._product(event["product_id"])
            if kind == "product.back_in_stock":
                touchpoint, key = "back_in_stock", f"product:{product.id}"
                audience = await self.db.read(lambda conn: event_store.interested_in(conn, product.id))
                outside = None if customer_id in audience else "not_interested_in_product"
            else:
                touchpoint, key = "product_launched", f"launch:{product.id}"
                audience = await self.db.read(lambda conn: event_store.with_favourite(conn, product.category))
                outside = None if customer_id in audience else "category_not_a_favourite"
            if outside is None and await self.db.read(
                lambda conn: push_store.already_pushed(conn, customer_id, touchpoint, key)
            ):
                outside = "already_sent"  # the same alert goes at most once
            return Concern(touchpoint, outside)
        if kind in ("cart.updated", "customer.location"):
            if "cart_nearby" not in self.config.touchpoints:
                return Concern(None, "touchpoint_not_configured")
            location = (float(event["latitude"]), float(event["longitude"])) if kind == "customer.location" else None
            items = list(event.get("items", [])) if kind == "cart.updated" else None
            await self._known_products([dict(i) for i in items or []])
            shop, reason = await self._store_offer(customer_id, now, location=location, items=items)
            return Concern("cart_nearby", reason)
        if kind == "order.placed":
            await self._own_order(str(event["order_id"]), customer_id)
            return Concern(None, "sends_nothing")
        if kind == "order.delivered":
            await self._own_order(str(event["order_id"]), customer_id)
            if not self.config.surveys:
                return Concern(None, "no_survey")
            key = f"order:{event['order_id']}"
            if await self.db.read(lambda conn: push_store.already_pushed(conn, customer_id, "order_feedback", key)):
                return Concern("order_feedback", "already_sent")  # one survey per order
            return Concern("order_feedback", None)
        return Concern(None, "sends_nothing")

    def _cart_code(self, percent: int, now: datetime) -> IssueCode:
        return IssueCode(
            code=codes.new_code(),
            category="cart",
            percent=min(percent, self.config.discounts.max_percent),
            expires_at=now + timedelta(days=1),
            source="cart_offer",
        )

    # ------------------------------------------------------------------ orders

    async def _order_placed(self, event: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        customer_id = await self._customer(event["customer_id"])
        order_id, code = str(event["order_id"]), event.get("code")
        window = timedelta(days=self.config.policy.attribution_days)

        def unit(conn: Any) -> dict[str, Any]:
            fresh = event_store.record_order(conn, order_id, customer_id, code, event.get("total"), now)
            _check_owner(conn, order_id, customer_id)  # after the insert, which decides between two at once
            if not fresh:
                return {"pushes": [], "duplicate": True}
            push_id = push_store.attribute_order(conn, customer_id, code, event.get("push_id"), now, window)
            event_store.attribute(conn, order_id, push_id)
            event_store.forget_cart(conn, customer_id)
            return {"pushes": [], "converted_push_id": push_id}

        return await self.db.write(unit)

    async def _order_delivered(self, event: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        customer_id = await self._customer(event["customer_id"])
        order_id = str(event["order_id"])

        def unit(conn: Any) -> None:
            event_store.mark_delivered(conn, order_id, customer_id, now)
            _check_owner(conn, order_id, customer_id)  # after the insert, which decides between two at once

        await self.db.write(unit)
        survey = next(iter(self.config.surveys), None)
        if survey is None:
            return {"pushes": []}
        variables = {"order": order_id, "survey": survey.id}
        return await self._push("order_feedback", [customer_id], variables, f"order:{order_id}", now)


def _check_owner(conn: Any, order_id: str, customer_id: int, *, allow_new: bool = False) -> None:
    owner = event_store.order_owner(conn, order_id)
    if (owner is None and not allow_new) or (owner is not None and owner != customer_id):
        raise UnknownReference("order_id", f"order {order_id!r} was reported for another customer")
