"""SQL behind the shop's events: what customers did in the shop, and who a touchpoint concerns.

Synchronous Core functions of a connection (see ``bot/store.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import and_, delete, select, update
from sqlalchemy.engine import Connection

from bot.models import Customer
from bot.models_shop import Cart, CustomerLocation, Product, ProductInterest, ShopOrder, Store
from bot.store import _insert_ignore

customer_t = Customer.__table__
product_t = Product.__table__
store_t = Store.__table__
interest_t = ProductInterest.__table__
cart_t = Cart.__table__
location_t = CustomerLocation.__table__
order_t = ShopOrder.__table__


def customer_id_for(conn: Connection, external_id: str) -> int | None:
    """Our id of the shop's customer (erased customers are not found)."""
    row = conn.execute(
        select(customer_t.c.id).where(customer_t.c.external_id == external_id, customer_t.c.erased_at.is_(None))
    ).first()
    return None if row is None else row.id


def product(conn: Connection, product_id: str) -> Any | None:
    return conn.execute(select(product_t).where(product_t.c.id == product_id)).first()


def unknown_products(conn: Connection, product_ids: list[str]) -> list[str]:
    """The ids among ``product_ids`` the catalog does not hold, in their order."""
    known: set[str] = set()
    for start in range(0, len(product_ids), 500):
        chunk = product_ids[start : start + 500]
        known.update(conn.execute(select(product_t.c.id).where(product_t.c.id.in_(chunk))).scalars())
    return [p for p in product_ids if p not in known]


def set_stock(conn: Connection, product_id: str, in_stock: bool, now: datetime) -> None:
    conn.execute(update(product_t).where(product_t.c.id == product_id).values(in_stock=in_stock, updated_at=now))


def set_available_on(conn: Connection, product_id: str, available_on: str | None, now: datetime) -> None:
    conn.execute(update(product_t).where(product_t.c.id == product_id).values(available_on=available_on, updated_at=now))


def add_interest(conn: Connection, customer_id: int, product_id: str, kind: str, now: datetime) -> None:
    conn.execute(
        _insert_ignore(conn, interest_t, ["product_id", "customer_id", "kind"]),
        {"customer_id": customer_id, "product_id": product_id, "kind": kind, "created_at": now},
    )


def interested_in(conn: Connection, product_id: str) -> list[int]:
    """Customers who subscribed to or viewed the product: the only audience of its back-in-stock alert."""
    rows = conn.execute(select(interest_t.c.customer_id).where(interest_t.c.product_id == product_id).distinct())
    return sorted(r.customer_id for r in rows)


def with_favourite(conn: Connection, category: str) -> list[int]:
    """Customers whose favourite categories include ``category`` (a JSON list; filtered here for portability)."""
    rows = conn.execute(
        select(customer_t.c.id, customer_t.c.categories).where(
            customer_t.c.categories.is_not(None), customer_t.c.erased_at.is_(None)
        )
    )
    return [r.id for r in rows if category in (r.categories or [])]


def set_cart(conn: Connection, customer_id: int, items: Sequence[dict[str, Any]], now: datetime) -> None:
    values = {"items": list(items), "updated_at": now}
    changed = conn.execute(update(cart_t).where(cart_t.c.customer_id == customer_id).values(**values)).rowcount
    if not changed:
        conn.execute(cart_t.insert().values(customer_id=customer_id, **values))


def cart(conn: Connection, customer_id: int) -> list[dict[str, Any]]:
    row = conn.execute(select(cart_t.c["items"]).where(cart_t.c.customer_id == customer_id)).first()
    return list(row.items or []) if row is not None else []


def set_location(conn: Connection, customer_id: int, latitude: float, longitude: float, source: str, now: datetime) -> None:
    values = {"latitude": latitude, "longitude": longitude, "source": source, "at": now}
    changed = conn.execute(update(location_t).where(location_t.c.customer_id == customer_id).values(**values)).rowcount
    if not changed:
        conn.execute(location_t.insert().values(customer_id=customer_id, **values))


def location(conn: Connection, customer_id: int) -> Any | None:
    return conn.execute(select(location_t).where(location_t.c.customer_id == customer_id)).first()


def stores(conn: Connection) -> list[Any]:
    return list(conn.execute(select(store_t).order_by(store_t.c.id)))


def record_order(
    conn: Connection, order_id: str, customer_id: int, code: str | None, total: float | None, now: datetime
) -> bool:
    """Store an order once; False when it was already known (a repeated event)."""
    result = conn.execute(
        _insert_ignore(conn, order_t, ["id"]),
        {"id": order_id, "customer_id": customer_id, "code": code, "total": total, "created_at": now, "push_id": None},
    )
    return bool(result.rowcount)


def attribute(conn: Connection, order_id: str, push_id: int | None) -> None:
    conn.execute(update(order_t).where(order_t.c.id == order_id).values(push_id=push_id))


def order_owner(conn: Connection, order_id: str) -> int | None:
    """The customer an order id was first reported for (None: not seen yet)."""
    return conn.execute(select(order_t.c.customer_id).where(order_t.c.id == order_id)).scalar()


def mark_delivered(conn: Connection, order_id: str, customer_id: int, now: datetime) -> None:
    changed = conn.execute(
        update(order_t).where(and_(order_t.c.id == order_id, order_t.c.customer_id == customer_id)).values(delivered_at=now)
    ).rowcount
    if not changed:
        conn.execute(
            _insert_ignore(conn, order_t, ["id"]),
            {"id": order_id, "customer_id": customer_id, "created_at": now, "delivered_at": now, "push_id": None},
        )


def forget_cart(conn: Connection, customer_id: int) -> None:
    conn.execute(delete(cart_t).where(cart_t.c.customer_id == customer_id))
