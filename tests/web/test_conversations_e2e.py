"""Favourite categories and complaints end to end, through the real webhooks, on every platform.

A ``PlatformUser`` (tests/web/chat.py) posts signed webhooks in each
platform's shape; the app stores them in the inbox, runs the dialogs, queues
the replies in the outbox and sends them to the fake platform APIs, where
these tests read them. What the flows stored is read from the database.
Expected texts come from the catalogs and the shop's config, so a wording
change does not break a test but a wrong language or a wrong message does.

tests/web/test_conversations_surveys_e2e.py covers surveys,
tests/web/test_conversations_text_e2e.py free text, Rasa, resume and expiry,
and privacy.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from babel.lists import format_list
from sqlalchemy import update

from bot import store
from bot.appkeys import DB
from bot.complaints import KINDS
from bot.config import Category, LocalText
from tests.conftest import Touchpoint
from tests.web.chat import PLATFORMS, PlatformUser, Reply, media_ref, photo_body, sign_up_in, without_chat_pacing
from tests.web.test_signup_e2e import I18N, command_word, config, t, texts, welcome_offer

MAX_LIST_ROWS = 10  # a WhatsApp list
MAX_ROW_TITLE = 24  # characters of a WhatsApp list row title

# A catalog larger than any platform shows at once: (id, English, German, Spanish).
BIG_CATALOG = [
    ("shoes", "Shoes", "Schuhe", "Zapatos"),
    ("clothing", "Clothing", "Kleidung", "Ropa"),
    ("electronics", "Electronics", "Elektronik", "Electrónica"),
    ("home", "Home & garden", "Haus & Garten", "Hogar y jardín"),
    ("beauty", "Beauty", "Kosmetik", "Belleza"),
    ("sports", "Sports", "Sport", "Deportes"),
    ("toys", "Toys", "Spielzeug", "Juguetes"),
    ("books", "Books", "Bücher", "Libros"),
    ("music", "Music", "Musik", "Música"),
    ("films", "Films & series", "Filme & Serien", "Películas y series"),
    ("games", "Video games", "Videospiele", "Videojuegos"),
    ("kitchen", "Kitchen", "Küche", "Cocina"),
    ("furniture", "Furniture", "Möbel", "Muebles"),
    ("outdoor", "Outdoor & camping equipment", "Outdoor- & Campingausrüstung", "Acampada y aire libre"),
    ("pets", "Pet supplies", "Tierbedarf", "Mascotas"),
    ("baby", "Baby", "Baby", "Bebé"),
    ("jewellery", "Jewellery", "Schmuck", "Joyería"),
    ("watches", "Watches", "Uhren", "Relojes"),
    ("bags", "Bags", "Taschen", "Bolsos"),
    ("tools", "Tools", "Werkzeug", "Herramientas"),
    ("garden", "Garden", "Garten", "Jardín"),
    ("office", "Office supplies", "Bürobedarf", "Material de oficina"),
    ("food", "Food & drink", "Lebensmittel & Getränke", "Comida y bebida"),
]
BIG_CATALOG_PAGES = 3  # 23 categories, at most 10 choices a message with "Done" and "Back"/"More"
FAVOURITES = 5  # discounts.max_favourites of the default config


@pytest.fixture
def tp(touchpoint: Touchpoint) -> Touchpoint:
    return without_chat_pacing(touchpoint)


# ----------------------------------------------------------------------------- helpers


def everything(tp: Touchpoint, **answers: bool) -> dict[str, bool]:
    """Yes to every consent purpose, except those given."""
    return {p.id: answers.get(p.id, True) for p in config(tp).consent_purposes}


def big_catalog() -> list[Category]:
    return [
        Category(
            id=cid,
            name=LocalText(en=en, de=de, es=es),
            url=f"https://shop.example/c/{cid}",
            percent=5 + 5 * (i % 4),
        )
        for i, (cid, en, de, es) in enumerate(BIG_CATALOG)
    ]


def full_label(button: Any) -> str:
    """What the customer reads on a button: a WhatsApp row cut to 24 characters carries it whole below."""
    return button.description or button.label


def joined(*parts: str) -> str:
    return "\n\n".join(parts)


def when(value: Any) -> datetime:
    """A timestamp read back with plain SQL (SQLite hands back text), in UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def percent(locale: str, value: int) -> str:
    return I18N.format_percent(locale, value / 100)


def day(locale: str, value: Any) -> str:
    return I18N.format_date(locale, when(value))


def link(tp: Touchpoint, category_id: str, code: str) -> str:
    category = config(tp).category(category_id)
    assert category is not None
    return config(tp).discounts.link_template.format(url=category.url, code=code, category=category_id)


async def customer_id(tp: Touchpoint, user: PlatformUser) -> int:
    [row] = await tp.query(
        "SELECT customer_id FROM channel_identity WHERE channel = :c AND address = :a", c=user.platform, a=user.address
    )
    return int(row.customer_id)


async def codes(tp: Touchpoint, user: PlatformUser) -> list[Any]:
    return await tp.query(
        "SELECT code, category, percent, expires_at, source, reference FROM discount_code"
        " WHERE customer_id = :c ORDER BY id",
        c=await customer_id(tp, user),
    )


async def tickets(tp: Touchpoint, user: PlatformUser) -> list[Any]:
    return await tp.query(
        "SELECT number, kind, order_number, description, attachments, refund_requested, status, channel, address"
        " FROM ticket WHERE customer_id = :c ORDER BY id",
        c=await customer_id(tp, user),
    )


async def conversation(tp: Touchpoint, user: PlatformUser) -> Any:
    [row] = await tp.query(
        "SELECT dialog, step, mode FROM conversation WHERE channel = :c AND address = :a", c=user.platform, a=user.address
    )
    return row


async def set_attributes(tp: Touchpoint, user: PlatformUser, attributes: dict[str, Any]) -> None:
    """What the shop API would have told us about the customer (orders, customer since)."""
    cid = await customer_id(tp, user)
    statement = update(store.customer_t).where(store.customer_t.c.id == cid).values(attributes=attributes)
    await tp.app[DB].write(lambda conn: conn.execute(statement))


def assert_fits_the_platform(platform: str, reply: Reply) -> None:
    if platform == "whatsapp":
        assert reply.widget == "list", reply.widget
        assert len(reply.buttons) <= MAX_LIST_ROWS
        assert all(len(b.label) <= MAX_ROW_TITLE for b in reply.buttons), reply.labels
    else:
        assert reply.widget in ("inline_keyboard", "keyboard")
        assert len(reply.buttons) <= MAX_LIST_ROWS


def picked_line(locale: str, n: int) -> str:
    """ "3 categories picked out of 5": where the multi-select stands."""
    return I18N.plural(locale, "categories.picked", "categories.picked.plural", n, max=FAVOURITES)


# ----------------------------------------------------------------------------- 1. categories


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_welcome_categories_paged_limited_to_five_one_code_each_never_twice(tp: Touchpoint, platform: str) -> None:
    config(tp).categories = big_catalog()
    assert config(tp).discounts.max_favourites == FAVOURITES
    names = {c.id: c.name.en for c in config(tp).categories}
    nav = {t("en", "categories.back"), t("en", "categories.more"), t("en", "buttons.done")}
    user = PlatformUser(tp, platform)

    page = await sign_up_in(user, "en", everything(tp), keep_offer=True)
    assert welcome_offer(tp, "en") in page.text

    # every category is reachable through the pages, each page fits the platform
    shown: list[str] = []
    for number in range(1, BIG_CATALOG_PAGES + 1):
        assert t("en", "categories.page", page=number, pages=BIG_CATALOG_PAGES) in page.text
        assert picked_line("en", 0) in page.text
        assert_fits_the_platform(platform, page)
        labels = [full_label(b) for b in page.buttons]
        assert labels[-1] == t("en", "buttons.done")
        assert (t("en", "categories.back") in labels) == (number > 1)
        assert (t("en", "categories.more") in labels) == (number < BIG_CATALOG_PAGES)
        shown += [label for label in labels if label not in nav]
        if number < BIG_CATALOG_PAGES:
            (page,) = await user.press(t("en", "categories.more"))
    assert shown == list(names.values())

    # five picks over three pages; a sixth is refused with the limit
    picks = ["garden", "outdoor", "films", "shoes", "beauty"]
    (reply,) = await user.press(names["garden"])
    assert t("en", "categories.label_picked", name=names["garden"]) in reply.labels
    assert picked_line("en", 1) in reply.text
    await user.press(t("en", "categories.back"))
    (reply,) = await user.press(names["outdoor"])  # 27 characters: a cut row title on WhatsApp
    if platform == "whatsapp":
        row = next(b for b in reply.buttons if b.description == t("en", "categories.label_picked", name=names["outdoor"]))
        assert len(row.label) <= MAX_ROW_TITLE and row.label != row.description
    await user.press(names["films"])
    await user.press(t("en", "categories.back"))
    await user.press(names["shoes"])
    (reply,) = await user.press(names["beauty"])
    assert picked_line("en", 5) in reply.text
    assert t("en", "categories.picked_names", names=format_list([names[c] for c in picks], locale="en")) in reply.text

    (refused,) = await user.press(names["books"])
    assert refused.text.startswith(I18N.plural("en", "categories.limit", "categories.limit.plural", FAVOURITES))
    assert picked_line("en", 5) in refused.text
    assert names["books"] in refused.labels  # not picked
    assert t("en", "categories.label_picked", name=names["books"]) not in refused.labels
    assert await codes(tp, user) == []  # nothing before "Done"

    (saved,) = await user.press(t("en", "buttons.done"))
    assert saved.buttons == ()
    assert saved.text.startswith(t("en", "categories.saved", names=format_list([names[c] for c in picks], locale="en")))
    assert I18N.plural("en", "categories.new_codes", "categories.new_codes.plural", 5) in saved.text
    issued = await codes(tp, user)
    assert sorted(c.category for c in issued) == sorted(picks)
    assert len({c.code for c in issued}) == 5
    now = datetime.now(timezone.utc)
    for code in issued:
        category = config(tp).category(code.category)
        assert category is not None
        assert (code.source, code.percent) == ("welcome", category.percent)
        lifetime = when(code.expires_at) - now
        assert timedelta(days=config(tp).discounts.valid_days) - timedelta(minutes=5) < lifetime
        assert lifetime <= timedelta(days=config(tp).discounts.valid_days)
        line = t(
            "en",
            "categories.code_new",
            name=names[code.category],
            percent=percent("en", code.percent),
            code=code.code,
            date=day("en", code.expires_at),
        )
        assert line in saved.text
        assert link(tp, code.category, code.code) in saved.text
    [profile] = await tp.query("SELECT categories FROM customer WHERE id = :c", c=await customer_id(tp, user))
    assert json.loads(profile.categories) == picks  # in the order picked

    # later, from the menu: the picks come pre-selected; swap one; one new code only
    (menu,) = await user.say(command_word("en", "menu"))
    assert menu.text.endswith(t("en", "menu.question"))
    (again,) = await user.press(t("en", "menu.categories"))
    intro = I18N.plural("en", "categories.intro", "categories.intro.plural", FAVOURITES, done=t("en", "buttons.done"))
    assert intro in again.text
    assert picked_line("en", 5) in again.text
    assert t("en", "categories.label_picked", name=names["shoes"]) in [full_label(b) for b in again.buttons]
    await user.press(t("en", "categories.label_picked", name=names["shoes"]))  # unpick
    (reply,) = await user.press(names["books"])
    assert picked_line("en", 5) in reply.text
    (resaved,) = await user.press(t("en", "buttons.done"))
    kept = ["garden", "outdoor", "films", "beauty"]
    assert resaved.text.startswith(
        t("en", "categories.saved", names=format_list([names[c] for c in [*kept, "books"]], locale="en"))
    )
    assert I18N.plural("en", "categories.new_codes", "categories.new_codes.plural", 1) in resaved.text
    after = await codes(tp, user)
    assert after[:5] == issued  # nothing taken back, nothing re-issued
    [new] = after[5:]
    assert (new.category, new.source) == ("books", "welcome")
    assert new.code in resaved.text
    for code in issued:
        if code.category in kept:  # still valid: shown again, never a second code
            line = t(
                "en",
                "categories.code_valid",
                name=names[code.category],
                percent=percent("en", code.percent),
                code=code.code,
                date=day("en", code.expires_at),
            )
            assert line in resaved.text
    assert [c.category for c in after].count("garden") == 1


TYPED_CATEGORIES = {
    # platform, locale: one name, then two names joined by the language's "and"
    ("telegram", "de"): ("Jonas Weber", "Schuhe", "Bücher und Spielzeug"),
    ("whatsapp", "es"): ("Lucía Gómez", "zapatos", "Libros y Juguetes"),
}


@pytest.mark.parametrize("platform,locale", sorted(TYPED_CATEGORIES))
async def test_categories_by_typed_names_in_german_and_spanish(tp: Touchpoint, platform: str, locale: str) -> None:
    name, one, two = TYPED_CATEGORIES[(platform, locale)]
    local = {c.id: c.name.get(locale) for c in config(tp).categories}
    user = PlatformUser(tp, platform, name=name, language_code=locale)

    offer = await sign_up_in(user, locale, everything(tp), keep_offer=True)
    assert welcome_offer(tp, locale) in offer.text
    assert [full_label(b) for b in offer.buttons] == [*local.values(), t(locale, "buttons.done")]

    (reply,) = await user.say(one)
    assert picked_line(locale, 1) in reply.text
    assert t(locale, "categories.label_picked", name=local["shoes"]) in reply.labels
    (reply,) = await user.say(two)
    assert picked_line(locale, 3) in reply.text
    (reply,) = await user.say(one)  # a name typed again unpicks it, as a second tap does
    assert picked_line(locale, 2) in reply.text
    assert local["shoes"] in reply.labels

    (saved,) = await user.say(I18N.words(locale, "categories.words.done")[0])
    picked = format_list([local["books"], local["toys"]], locale=locale)
    assert saved.text.startswith(t(locale, "categories.saved", names=picked))
    issued = await codes(tp, user)
    assert sorted(c.category for c in issued) == ["books", "toys"]
    for code in issued:
        line = t(
            locale,
            "categories.code_new",
            name=local[code.category],
            percent=percent(locale, code.percent),
            code=code.code,
            date=day(locale, code.expires_at),
        )
        assert line in saved.text
    assert saved.text.endswith(t(locale, "categories.change_howto", categories=command_word(locale, "categories")))


# ----------------------------------------------------------------------------- 2. complaints


def kind_question(locale: str) -> str:
    return t(locale, "complaint.kind_question", coupon=t(locale, "complaint.kind.coupon_failed"))


def complaint_opening(locale: str) -> str:
    return joined(t(locale, "complaint.intro"), kind_question(locale))


def summary(locale: str, kind: str, order: str | None, description: str, files: int = 0) -> str:
    lines = [
        t(locale, "complaint.summary_title"),
        "",
        t(locale, "complaint.summary_kind", kind=t(locale, f"complaint.kind.{kind}")),
        t(locale, "complaint.summary_order", order=order) if order else t(locale, "complaint.summary_no_order"),
        t(locale, "complaint.summary_description", description=description),
        I18N.plural(locale, "complaint.summary_attachments", "complaint.summary_attachments.plural", files)
        if files
        else t(locale, "complaint.summary_no_attachments"),
    ]
    return "\n".join(lines)


def handed_over(reply: Reply, locale: str, ticket: str) -> None:
    """The handoff message: passed on with the ticket, when to expect an answer, the bot keeps quiet."""
    assert reply.text.startswith(t(locale, "handoff.passed_ticket", ticket=ticket))
    assert reply.text.endswith(t(locale, "handoff.quiet", stop=command_word(locale, "stop")))
    assert reply.buttons == ()


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_complaint_from_the_menu_with_photo_refund_and_handoff(tp: Touchpoint, platform: str) -> None:
    user = PlatformUser(tp, platform)
    await sign_up_in(user, "en", everything(tp))

    await user.say(command_word("en", "menu"))
    (opening,) = await user.press(t("en", "menu.complaint"))
    assert opening.text == complaint_opening("en")
    assert [full_label(b) for b in opening.buttons] == [t("en", f"complaint.kind.{k}") for k in KINDS]

    skip = t("en", "complaint.skip")
    assert texts(await user.press(t("en", "complaint.kind.coupon_failed"))) == [
        t("en", "complaint.order_question", skip=skip)
    ]
    assert texts(await user.say("12")) == [
        joined(t("en", "complaint.order_invalid", skip=skip), t("en", "complaint.order_question", skip=skip))
    ]
    assert texts(await user.say("#A-10023")) == [t("en", "complaint.description_question")]
    description = "The code SAVE10 was rejected at checkout and I paid full price."
    assert texts(await user.say(description)) == [
        t("en", "complaint.attachment_question", skip=t("en", "complaint.no_attachment"))
    ]

    photo = photo_body(user)
    (kept,) = await user.send(photo)
    done = t("en", "buttons.done")
    assert kept.text == I18N.plural("en", "complaint.attachment_more", "complaint.attachment_more.plural", 1, done=done)
    assert kept.labels == [done]
    (check,) = await user.press(done)
    assert check.text == summary("en", "coupon_failed", "A-10023", description, files=1)
    assert await tickets(tp, user) == []  # nothing before the customer confirms

    (sent,) = await user.press(t("en", "complaint.send"))
    [ticket] = await tickets(tp, user)
    assert sent.text == joined(
        t("en", "complaint.sent", number=ticket.number),
        t("en", "complaint.refund"),
        t("en", "complaint.person_question", number=ticket.number),
    )
    assert (ticket.kind, ticket.order_number, ticket.description) == ("coupon_failed", "A-10023", description)
    assert bool(ticket.refund_requested) and ticket.status == "open"
    assert (ticket.channel, ticket.address) == (platform, user.address)
    attachments = json.loads(ticket.attachments)
    assert [a["ref"] for a in attachments] == [media_ref(platform, photo)]

    (handoff,) = await user.press(t("en", "complaint.talk_to_person"))
    handed_over(handoff, "en", ticket.number)
    [ticket] = await tickets(tp, user)
    assert ticket.status == "waiting_agent"
    assert (await conversation(tp, user)).mode == "agent"

    # a person has the conversation now: the bot says nothing, whatever comes
    assert await user.say("Hello? Is anyone there?") == []
    assert await user.say(command_word("en", "menu")) == []
    [pending] = await tp.query("SELECT count(*) AS n FROM inbox WHERE address = :a AND status = 'pending'", a=user.address)
    assert pending.n == 0  # handled, not stuck


COMPLAINT_SENTENCES = {
    # platform, locale: a sentence with a typo that reads like a complaint
    ("telegram", "en"): ("Alice Novak", "my copon didnt work"),
    ("whatsapp", "de"): ("Jonas Weber", "Die Lieferung ist nicht angekomen"),
    ("viber", "es"): ("Lucía Gómez", "mi cupon no funsiona"),
}


@pytest.mark.parametrize("platform,locale", sorted(COMPLAINT_SENTENCES))
async def test_complaint_from_free_text_with_a_typo_keeps_the_sentence(tp: Touchpoint, platform: str, locale: str) -> None:
    """The whole complaint in the customer's language; the sentence that started it becomes the description."""
    name, sentence = COMPLAINT_SENTENCES[(platform, locale)]
    user = PlatformUser(tp, platform, name=name, language_code=locale)
    await sign_up_in(user, locale, everything(tp))

    (opening,) = await user.say(sentence)
    assert opening.text == complaint_opening(locale)
    (asked,) = await user.press(t(locale, "complaint.kind.delivery"))
    assert asked.text == t(locale, "complaint.order_question", skip=t(locale, "complaint.skip"))
    (draft,) = await user.press(t(locale, "complaint.skip"))
    keep = t(locale, "complaint.keep")
    assert draft.text == t(locale, "complaint.description_draft", text=sentence, keep=keep)
    assert draft.labels == [keep]
    (attach,) = await user.press(keep)
    assert attach.text == t(locale, "complaint.attachment_question", skip=t(locale, "complaint.no_attachment"))
    (check,) = await user.press(t(locale, "complaint.no_attachment"))
    assert check.text == summary(locale, "delivery", None, sentence)
    assert check.labels[0] == t(locale, "complaint.send")

    (sent,) = await user.press(t(locale, "complaint.send"))
    [ticket] = await tickets(tp, user)
    assert sent.text == joined(
        t(locale, "complaint.sent", number=ticket.number), t(locale, "complaint.person_question", number=ticket.number)
    )
    assert (ticket.kind, ticket.order_number, ticket.description) == ("delivery", None, sentence)
    assert not ticket.refund_requested  # only a code that did not work asks for a refund
    assert (await codes(tp, user)) == []  # a new customer is not loyal: no loyalty code

    assert texts(await user.press(t(locale, "complaint.all_done"))) == [
        t(locale, "complaint.closing", number=ticket.number)
    ]
    state = await conversation(tp, user)
    assert (state.dialog, state.mode) == (None, "bot")
    [ticket] = await tickets(tp, user)
    assert ticket.status == "open"


@pytest.mark.parametrize("platform", ["whatsapp", "telegram"])
async def test_loyal_customer_gets_a_loyalty_code_on_a_category_of_their_choice(tp: Touchpoint, platform: str) -> None:
    user = PlatformUser(tp, platform)
    await sign_up_in(user, "en", everything(tp))
    orders = config(tp).complaints.loyalty_min_orders + 4
    await set_attributes(tp, user, {"order_count": orders})
    rules = config(tp).complaints
    assert (rules.loyalty_percent, rules.loyalty_valid_days) == (20, 90)

    await user.say(command_word("en", "complaint"))
    await user.press(t("en", "complaint.kind.quality"))
    await user.say("B-7781")
    await user.say("The zip broke on the first day.")
    await user.press(t("en", "complaint.no_attachment"))
    (offer,) = await user.press(t("en", "complaint.send"))
    [ticket] = await tickets(tp, user)
    loyalty = I18N.plural(
        "en", "complaint.loyalty_offer", "complaint.loyalty_offer.plural", 90, percent=percent("en", 20)
    )
    assert offer.text == joined(t("en", "complaint.sent", number=ticket.number), loyalty)
    names = [c.name.en for c in config(tp).categories]
    assert [full_label(b) for b in offer.buttons] == [*names, t("en", "complaint.no_thanks")]
    if platform == "whatsapp":
        assert_fits_the_platform(platform, offer)

    (code_reply,) = await user.press("Books")
    [code] = await codes(tp, user)
    assert (code.category, code.percent, code.source, code.reference) == ("books", 20, "loyalty", ticket.number)
    lifetime = when(code.expires_at) - datetime.now(timezone.utc)
    assert timedelta(days=90) - timedelta(minutes=5) < lifetime <= timedelta(days=90)
    granted = t(
        "en",
        "complaint.loyalty_code",
        code=code.code,
        percent=percent("en", 20),
        category="Books",
        date=day("en", code.expires_at),
    )
    assert code_reply.text == joined(
        "\n".join([granted, t("en", "complaint.loyalty_link", link=link(tp, "books", code.code))]),
        t("en", "complaint.person_question", number=ticket.number),
    )
    assert code_reply.labels == [t("en", "complaint.talk_to_person"), t("en", "complaint.all_done")]

    # a person, by the typed "yes": agent mode, the ticket waits for the team
    (handoff,) = await user.say(I18N.words("en", "words.yes")[0])
    handed_over(handoff, "en", ticket.number)
    assert (await conversation(tp, user)).mode == "agent"
    [ticket] = await tickets(tp, user)
    assert ticket.status == "waiting_agent"
    assert await user.say("thanks") == []
