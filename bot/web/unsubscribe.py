"""``/unsubscribe/{token}``: the link in every marketing e-mail's List-Unsubscribe header.

GET shows a page with one button and changes nothing (mail scanners follow
links); POST withdraws every marketing purpose on that e-mail address, as
RFC 8058's one-click POST (``List-Unsubscribe=One-Click``) and the page's
button both do. The token is the address signed with
EMAIL_UNSUBSCRIBE_SECRET, so no lookup table is needed and a forged token
changes nothing.
"""

from __future__ import annotations

import html
from importlib import resources
from datetime import datetime, timezone
from typing import Any

from aiohttp import web
from sqlalchemy import select

from bot import store
from bot.appkeys import CONFIG, DB, SETTINGS
from bot.i18n import I18n
from bot.models import ChannelIdentity, Customer
from bot.turn import ConsentChange

_I18N: I18n | None = None


def _i18n() -> I18n:
    global _I18N
    if _I18N is None:
        _I18N = I18n.load()
    return _I18N


def _address(request: web.Request) -> str | None:
    from integrations.email import address_from_token

    secret = request.app[SETTINGS].email_unsubscribe_secret.get_secret_value()
    return address_from_token(request.match_info["token"], secret) if secret else None


def _customer(conn: Any, address: str) -> Any | None:
    identity_t, customer_t = ChannelIdentity.__table__, Customer.__table__
    return conn.execute(
        select(identity_t.c.customer_id, customer_t.c.locale)
        .join(customer_t, customer_t.c.id == identity_t.c.customer_id)
        .where(identity_t.c.channel == "email", identity_t.c.address == address)
    ).first()


# The markup lives in unsubscribe-page.html; the words come from the catalogs.
PAGE, _, FORM = resources.files("bot.web").joinpath("unsubscribe-page.html").read_text("utf-8").partition("<!-- form -->\n")


def _page(locale: str | None, msgid: str, *, form: bool = False) -> web.Response:
    """A minimal page: the message, and for the confirmation the one button that unsubscribes."""
    i18n = _i18n()
    title = html.escape(i18n.text(locale, msgid))
    button = FORM.format(label=html.escape(i18n.text(locale, "unsubscribe.button"))) if form else ""
    page = PAGE.format(lang=html.escape(locale or "en"), title=title, form=button)
    return web.Response(body=page.encode(), content_type="text/html", charset="utf-8")


async def show(request: web.Request) -> web.Response:
    address = _address(request)
    found = await request.app[DB].read(lambda conn: _customer(conn, address)) if address else None
    if found is None:
        return _page(None, "unsubscribe.unknown")
    return _page(found.locale, "unsubscribe.confirm", form=True)


async def confirm(request: web.Request) -> web.Response:
    address = _address(request)
    if address is None:
        return _page(None, "unsubscribe.unknown")
    marketing = [p for p in request.app[CONFIG].consent_purposes if p.marketing]
    now = datetime.now(timezone.utc)

    def unit(conn: Any) -> Any | None:
        found = _customer(conn, address)
        if found is None:
            return None
        current = {(c.purpose, c.channel): c for c in store.current_consents(conn, found.customer_id)}
        paused = store.paused_consents(conn, found.customer_id)  # off for now; the unsubscribe must outlast the pause
        withdrawn = [
            ConsentChange(p.id, "email", False, "unsubscribe", current[(p.id, "email")].wording_version)
            for p in marketing
            if (p.id, "email") in current and (current[(p.id, "email")].granted or (p.id, "email") in paused)
        ]
        store.apply_effects(conn, customer_id=found.customer_id, channel="email", address=address, effects=withdrawn, now=now)
        return found

    found = await request.app[DB].write(unit)
    if found is None:
        return _page(None, "unsubscribe.unknown")
    return _page(found.locale, "unsubscribe.done")


def setup(app: web.Application) -> None:
    app.router.add_get("/unsubscribe/{token}", show)
    app.router.add_post("/unsubscribe/{token}", confirm)
