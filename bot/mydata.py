"""The "my data" report: a readable summary of everything stored about one customer.

Built inside the unit of work of the turn that asked for it (the ``SendMyData``
effect), so it shows exactly what is in the database at that moment, in the
customer's language (texts in ``locales/<lang>/LC_MESSAGES/mydata.po``, dates
and percentages formatted by Babel). The shop's own texts (category names,
survey questions) come from the config.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from bot.config import ShopConfig
from bot.i18n import I18n
from bot.models import ChannelIdentity, Customer, DiscountCode, SurveyResponse, Ticket
from bot.store import as_utc, current_consents

BULLET = "• "
SHOWN_ATTRIBUTES_ELSEWHERE = ("order_count", "customer_since")


class _Texts:
    """The catalog bound to one locale, with the few formatting helpers the report needs."""

    def __init__(self, i18n: I18n, locale: str | None) -> None:
        self.i18n, self.locale = i18n, locale

    def __call__(self, msgid: str, default: str | None = None, **params: object) -> str:
        """The text of ``msgid``; ``default`` when the catalog lacks it (a purpose or kind the shop added)."""
        text = self.i18n.text(self.locale, msgid, **params)
        return default if default is not None and text == msgid else text

    def plural(self, msgid: str, msgid_plural: str, n: int, **params: object) -> str:
        return self.i18n.plural(self.locale, msgid, msgid_plural, n, **params)

    def channel(self, channel: str) -> str:
        name = self.i18n.text(self.locale, f"mydata.channel_name.{channel}")
        return channel if name.startswith("mydata.") else name

    def date(self, value: date | datetime | None) -> str:
        return "" if value is None else self.i18n.format_date(self.locale, value)

    def percent(self, value: int) -> str:
        return self.i18n.format_percent(self.locale, value / 100)


def build_report(conn: Connection, customer_id: int, i18n: I18n, locale: str | None, config: ShopConfig) -> str:
    """Profile, consents, favourite categories, codes, tickets and survey answers of one customer."""
    customer = conn.execute(select(Customer.__table__).where(Customer.__table__.c.id == customer_id)).first()
    t = _Texts(i18n, locale or (customer.locale if customer is not None else None))
    if customer is None or customer.erased_at is not None:
        return t("mydata.nothing")
    lines = [t("mydata.title", shop=config.shop_name)]
    for heading, items in (
        (t("mydata.section.profile"), _profile(conn, customer, t)),
        (t("mydata.section.consents"), _consents(conn, customer_id, t)),
        (t("mydata.section.categories"), _categories(customer, config, t)),
        *_codes(conn, customer_id, config, t),
        (t("mydata.section.tickets"), _tickets(conn, customer_id, t)),
        (t("mydata.section.surveys"), _surveys(conn, customer_id, config, t)),
    ):
        lines += ["", heading]
        lines += [BULLET + item for item in items] or [BULLET + t("mydata.none")]
    privacy = next(iter(i18n.words(t.locale, "commands.privacy")), "privacy")
    lines += ["", t("mydata.footer", privacy=privacy)]
    return "\n".join(lines)


def _profile(conn: Connection, customer: Any, t: _Texts) -> list[str]:
    items = []
    if customer.first_name:
        items.append(t("mydata.name", name=customer.first_name))
    if customer.locale:
        items.append(t("mydata.language", language=I18n.native_name(customer.locale)))
    if customer.email:
        items.append(t("mydata.email", email=customer.email))
    if customer.phone:
        items.append(t("mydata.phone", phone=customer.phone))
    identity_t = ChannelIdentity.__table__
    for identity in conn.execute(
        select(identity_t.c.channel, identity_t.c.address).where(identity_t.c.customer_id == customer.id).order_by(identity_t.c.id)
    ):
        items.append(t("mydata.channel", channel=t.channel(identity.channel), address=identity.address))
    items.append(t("mydata.since", date=t.date(as_utc(customer.created_at))))
    attributes = dict(customer.attributes or {})
    shop_since = _iso_date(attributes.get("customer_since"))
    if shop_since is not None:
        items.append(t("mydata.shop_since", date=t.date(shop_since)))
    orders = attributes.get("order_count")
    if isinstance(orders, int):
        items.append(t.plural("mydata.orders", "mydata.orders.plural", orders))
    for key, value in sorted(attributes.items()):
        if key not in SHOWN_ATTRIBUTES_ELSEWHERE and value not in (None, "", [], {}):
            items.append(t("mydata.fact", name=key, value=value))
    return items


def _consents(conn: Connection, customer_id: int, t: _Texts) -> list[str]:
    items = []
    for consent in current_consents(conn, customer_id):
        msgid = "mydata.consent.granted" if consent.granted else "mydata.consent.withdrawn"
        items.append(
            t(
                msgid,
                purpose=t(f"consent.{consent.purpose}.name", default=consent.purpose),
                channel=t.channel(consent.channel),
                date=t.date(consent.updated_at),
            )
        )
    return items


def _category_name(config: ShopConfig, category_id: str, t: _Texts) -> str:
    category = config.category(category_id)
    return category.name.get(t.locale) if category is not None else category_id


def _categories(customer: Any, config: ShopConfig, t: _Texts) -> list[str]:
    picked = list(customer.categories or [])
    return [", ".join(_category_name(config, c, t) for c in picked)] if picked else []


def _codes(conn: Connection, customer_id: int, config: ShopConfig, t: _Texts) -> list[tuple[str, list[str]]]:
    code_t = DiscountCode.__table__
    rows = list(conn.execute(select(code_t).where(code_t.c.customer_id == customer_id).order_by(code_t.c.id)))
    now = datetime.now(timezone.utc)
    items = []
    for row in rows:
        values = {"code": row.code, "percent": t.percent(row.percent), "category": _category_name(config, row.category, t)}
        expires = as_utc(row.expires_at)
        if row.redeemed_at is not None:
            items.append(t("mydata.code.redeemed", date=t.date(as_utc(row.redeemed_at)), **values))
        elif expires is not None and expires <= now:
            items.append(t("mydata.code.expired", date=t.date(expires), **values))
        else:
            items.append(t("mydata.code.valid", date=t.date(expires), **values))
    heading = t.plural("mydata.section.codes", "mydata.section.codes.plural", len(rows))
    return [(heading, items)]


def _tickets(conn: Connection, customer_id: int, t: _Texts) -> list[str]:
    ticket_t = Ticket.__table__
    return [
        t(
            "mydata.ticket",
            number=row.number,
            kind=t(f"mydata.ticket_kind.{row.kind}", default=row.kind),
            status=t(f"mydata.ticket_status.{row.status}", default=row.status),
            date=t.date(as_utc(row.created_at)),
        )
        for row in conn.execute(select(ticket_t).where(ticket_t.c.customer_id == customer_id).order_by(ticket_t.c.id))
    ]


def _surveys(conn: Connection, customer_id: int, config: ShopConfig, t: _Texts) -> list[str]:
    survey_t = SurveyResponse.__table__
    items = []
    for row in conn.execute(select(survey_t).where(survey_t.c.customer_id == customer_id).order_by(survey_t.c.id)):
        survey = config.survey(row.survey)
        title = survey.title.get(t.locale) if survey is not None else row.survey
        lines = [t("mydata.survey", title=title, order=row.order_ref, date=t.date(as_utc(row.started_at)))]
        for question_id, answer in dict(row.answers or {}).items():
            question = survey.question(question_id) if survey is not None else None
            text = question.text.get(t.locale) if question is not None else question_id
            if question is not None and question.kind == "choice" and str(answer).isdigit():
                index = int(answer) - 1
                if 0 <= index < len(question.options):
                    answer = question.options[index].get(t.locale)
            lines.append("   " + t("mydata.answer", question=text, answer=answer))
        items.append("\n".join(lines))
    return items


def _iso_date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None
