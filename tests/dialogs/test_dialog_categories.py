"""Favourite categories and welcome codes, as the customer sees them, plus the code rules beneath."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from bot.codes import CODE_ALPHABET, code_link, new_code, plan_welcome_codes
from bot.config import Category, LocalText, ShopConfig
from bot.dialog import DialogEngine
from bot.turn import CodeState, IssueCode, SaveCategories
from dialogs.categories import MAX_CHOICES, page_bounds
from integrations.whatsapp import WhatsAppAdapter
from tests.dialogs.conftest import Chat

PURPOSES = ("marketing", "personalised", "location", "surveys")
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)  # welcome codes of T0 are valid until Apr 1, 2026
DEFAULT_IDS = ["shoes", "clothing", "electronics", "home", "beauty", "sports", "toys", "books"]
CODE_RE = re.compile(r"^[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{3}$")


async def sign_up(chat: Chat, *, marketing: bool = True) -> Chat:
    """The whole sign-up by button presses; only marketing is granted (or nothing)."""
    chat.now = chat.now or T0
    await chat.command("start")
    await chat.press("continue")
    for purpose in PURPOSES:
        await chat.press(f"{'yes' if marketing and purpose == 'marketing' else 'no'}:{purpose}")
    return chat


async def with_favourites(chat: Chat, *picks: str) -> Chat:
    """Signed up with marketing, the welcome offer taken with ``picks``: the flow is over."""
    await sign_up(chat)
    for category_id in picks:
        await chat.press(f"pick:{category_id}")
    await chat.press("done:categories")
    assert chat.state.dialog is None and chat.categories == picks
    return chat


def pick_ids(chat: Chat) -> list[str]:
    return [b.split(":", 1)[1] for b in chat.button_ids if b.split(":")[0] in ("pick", "unpick")]


def picked(chat: Chat) -> list[str]:
    return [b.split(":", 1)[1] for b in chat.button_ids if b.startswith("unpick:")]


def big_catalog(config: ShopConfig, count: int = 23) -> ShopConfig:
    """A catalog of ``count`` categories; the first and last have the longest names a list row shows."""
    categories = [
        Category(
            id=f"c{i:02d}",
            name=LocalText(en=f"Category {i}", de=f"Kategorie {i}", es=f"Categoría {i}"),
            url=f"https://shop.example/c/{i}",
        )
        for i in range(1, count + 1)
    ]
    categories[0] = Category(
        id="outdoor",
        name=LocalText(en="Outdoor & camping gear", de="Outdoor & Campingzubehör", es="Acampada y aire libre"),
        url="https://shop.example/c/outdoor",
    )
    categories[-1] = Category(
        id="kitchen",
        name=LocalText(en="Kitchen & dining tables", de="Küche & Esszimmer", es="Cocina y comedor"),
    )
    return config.model_copy(update={"categories": categories})


@pytest.fixture
def big_chat(config, i18n):
    def make(**kwargs) -> Chat:
        return Chat(DialogEngine(big_catalog(config), i18n), **kwargs)

    return make


# ----------------------------------------------------------------------------- codes


def test_new_code_is_typable_unguessable_and_does_not_repeat():
    assert len(CODE_ALPHABET) ** 11 >= 2**50  # 11 symbols carry at least 50 bits
    assert not set("0O1IL") & set(CODE_ALPHABET)
    codes = [new_code() for _ in range(10_000)]
    assert all(CODE_RE.match(code) for code in codes), codes[:3]
    assert all(set(code.replace("-", "")) <= set(CODE_ALPHABET) for code in codes)
    assert len(set(codes)) == len(codes)
    # every symbol turns up: drawn from the whole alphabet, not a part of it
    assert set("".join(codes).replace("-", "")) == set(CODE_ALPHABET)


def test_plan_welcome_codes_skips_categories_holding_a_usable_code_whatever_its_source(config):
    usable = [
        CodeState("LOYA-LTYC-ODE", "books", 20, T0 + timedelta(days=5), "loyalty"),
        CodeState("OLDW-ELCO-ME2", "beauty", 15, T0 - timedelta(seconds=1), "welcome"),  # expired by now
    ]
    plan = plan_welcome_codes(config, ["shoes", "books", "beauty", "nonexistent", "shoes"], usable, T0)
    assert [(c.category, c.percent, c.source, c.reference) for c in plan] == [
        ("shoes", 10, "welcome", None),
        ("beauty", 15, "welcome", None),
    ]
    assert all(c.expires_at == T0 + timedelta(days=30) for c in plan)
    assert len({c.code for c in plan}) == 2 and all(CODE_RE.match(c.code) for c in plan)
    assert plan_welcome_codes(config, [], usable, T0) == []


def test_plan_welcome_codes_caps_the_percent_and_follows_the_validity(config):
    # Built without validation, as a shop API update could lower the cap below a category's percent.
    discounts = config.discounts.model_copy(update={"max_percent": 12, "valid_days": 7})
    capped = config.model_copy(update={"discounts": discounts})
    plan = plan_welcome_codes(capped, ["beauty", "electronics"], [], T0)
    assert [(c.category, c.percent) for c in plan] == [("beauty", 12), ("electronics", 5)]
    assert plan[0].expires_at == T0 + timedelta(days=7)


def test_code_link_uses_the_template_and_skips_categories_without_a_page(config):
    assert code_link(config, "shoes", "K7QX-M2PA-WZ3") == "https://shop.example/c/shoes?code=K7QX-M2PA-WZ3"
    assert code_link(config, "nonexistent", "K7QX-M2PA-WZ3") == ""
    discounts = config.discounts.model_copy(update={"link_template": "https://shop.example/r/{category}/{code}"})
    custom = config.model_copy(update={"discounts": discounts})
    assert code_link(custom, "toys", "AB23-CD45-EF6") == "https://shop.example/r/toys/AB23-CD45-EF6"
    assert code_link(big_catalog(config), "kitchen", "AB23-CD45-EF6") == ""  # no url configured


# ----------------------------------------------------------------------------- after sign-up


async def test_signup_with_marketing_leads_into_the_welcome_offer_and_issues_codes(make_chat, t):
    chat = await sign_up(make_chat())
    assert len(chat.messages) == 1 and chat.state.dialog == "categories"
    text = chat.texts[0]
    assert text.startswith(t("en", "signup.summary") + "\n✅ Marketing messages: on")
    assert text.endswith(
        "\n\n🎁 Here's a welcome gift: pick up to 5 favourite categories and you'll get a discount code for each "
        "one. Tap a category to pick it (tap it again to unpick it), then tap “Done”.\n\n"
        "0 categories picked out of 5"
    )
    assert chat.button_ids == [f"pick:{c}" for c in DEFAULT_IDS] + ["done:categories"]
    assert chat.labels[:2] == ["Shoes", "Clothing"] and chat.labels[-1] == "Done"

    await chat.press("pick:shoes")
    assert chat.texts == ["1 category picked out of 5\n✅ Shoes"]
    assert chat.buttons[0] == ("unpick:shoes", "✅ Shoes") and picked(chat) == ["shoes"]
    await chat.press("pick:beauty")
    assert chat.texts == ["2 categories picked out of 5\n✅ Shoes and Beauty"]
    assert chat.effects == [] and chat.codes == []  # nothing is saved before "Done"

    await chat.press("done:categories")
    shoes, beauty = chat.codes
    assert [(c.category, c.percent, c.source, c.expires_at) for c in chat.codes] == [
        ("shoes", 10, "welcome", T0 + timedelta(days=30)),
        ("beauty", 15, "welcome", T0 + timedelta(days=30)),
    ]
    assert chat.effects == [SaveCategories(("shoes", "beauty")), shoes, beauty]
    assert chat.categories == ("shoes", "beauty")
    assert chat.texts == [
        "Saved! Your favourite categories: Shoes and Beauty.\n"
        "\n"
        "2 new discount codes for you:\n"
        f"🎁 Shoes: 10% off with code {shoes.code}, valid until Apr 1, 2026\n"
        f"https://shop.example/c/shoes?code={shoes.code}\n"
        f"🎁 Beauty: 15% off with code {beauty.code}, valid until Apr 1, 2026\n"
        f"https://shop.example/c/beauty?code={beauty.code}\n"
        "\n"
        "Type categories whenever you'd like to change your favourites."
    ]
    assert chat.buttons == [] and chat.state.dialog is None


async def test_signup_without_marketing_ends_with_the_summary(make_chat, t):
    chat = await sign_up(make_chat(), marketing=False)
    assert chat.state.dialog is None and chat.buttons == []
    assert chat.texts[0].startswith(t("en", "signup.summary")) and "🎁" not in chat.text


async def test_signup_with_an_empty_catalog_ends_with_the_summary(config, i18n):
    chat = await sign_up(Chat(DialogEngine(config.model_copy(update={"categories": []}), i18n)))
    assert chat.state.dialog is None and chat.buttons == []
    await chat.send("categories")
    assert chat.texts == ["There are no categories to choose from right now. Please check back later."]
    assert chat.state.dialog is None


@pytest.mark.parametrize(
    ("favourites", "reasked", "invited"),
    [((), "marketing", True), (("toys",), "marketing", False), ((), "surveys", False)],
)
async def test_a_returning_customer_is_invited_after_a_new_marketing_yes_without_favourites(
    make_chat, favourites, reasked, invited
):
    chat = await with_favourites(make_chat(), *favourites)
    chat.consent_log = [c for c in chat.consent_log if c.purpose != reasked]  # as if its wording changed
    await chat.command("start")
    await chat.press("continue")
    await chat.answer("yes")
    assert chat.texts[0].startswith("All set!")
    assert ("🎁 Here's a welcome gift" in chat.text) is invited
    assert chat.state.dialog == ("categories" if invited else None)


# ----------------------------------------------------------------------------- paging


def test_page_bounds_cover_every_category_within_ten_buttons():
    assert page_bounds(8) == [(0, 8)] and page_bounds(9) == [(0, 9)]
    assert page_bounds(10) == [(0, 8), (8, 10)]
    assert page_bounds(23) == [(0, 8), (8, 15), (15, 23)]
    for count in range(1, 80):
        bounds = page_bounds(count)
        assert [i for start, stop in bounds for i in range(start, stop)] == list(range(count))
        for number, (start, stop) in enumerate(bounds, 1):
            navigation = (number > 1) + (number < len(bounds))
            assert 1 <= stop - start and stop - start + navigation + 1 <= MAX_CHOICES, (count, bounds)


def test_fixed_labels_fit_a_reply_button_and_a_picked_mark_costs_two_characters(i18n):
    for lang in ("en", "de", "es"):
        for msgid in ("categories.back", "categories.more", "buttons.done"):
            assert 0 < len(i18n.text(lang, msgid)) <= 20, (lang, msgid)
        assert i18n.text(lang, "categories.label_picked", name="X") == "✅ X"


async def test_23_categories_page_through_whatsapp_lists_reaching_every_one(big_chat, config):
    chat = await sign_up(big_chat(channel="whatsapp"))
    adapter = WhatsAppAdapter("token", "1", "secret", "verify", "http://127.0.0.1:9")
    catalog = [c.id for c in big_catalog(config).categories]
    seen: list[str] = []
    for page in (1, 2, 3):
        message = chat.messages[-1]
        assert len(message.buttons) <= 10
        assert all(len(b.label) <= 24 for b in message.buttons), chat.labels
        assert f"Page {page} of 3\n0 categories picked out of 5" in message.text
        widget = adapter.render("15550100201", message)[-1]["interactive"]
        assert widget["type"] == "list"  # one list per page, never a numbered text
        rows = widget["action"]["sections"][0]["rows"]
        assert [r["title"] for r in rows] == chat.labels  # nothing truncated
        seen += pick_ids(chat)
        navigation = chat.labels[len(pick_ids(chat)) : -1]
        assert navigation == {1: ["More ▶"], 2: ["◀ Back", "More ▶"], 3: ["◀ Back"]}[page]
        assert chat.button_ids[-1] == "done:categories"
        if page < 3:
            await chat.press(f"page:{page + 1}")
    assert seen == catalog

    await chat.press("pick:kitchen")  # the longest label on the last page, picked
    assert ("unpick:kitchen", "✅ Kitchen & dining tables") in chat.buttons
    assert chat.texts == ["Page 3 of 3\n1 category picked out of 5\n✅ Kitchen & dining tables"]
    await chat.press("page:2")
    await chat.press("page:1")
    await chat.press("pick:outdoor")
    assert chat.buttons[0] == ("unpick:outdoor", "✅ Outdoor & camping gear")
    assert chat.texts == ["Page 1 of 3\n2 categories picked out of 5\n✅ Kitchen & dining tables and Outdoor & camping gear"]
    await chat.press("done:categories")
    assert chat.categories == ("kitchen", "outdoor")
    assert [c.category for c in chat.codes] == ["kitchen", "outdoor"]
    assert "https://shop.example/c/outdoor?code=" in chat.text
    kitchen = chat.text.split("\n").index(f"🎁 Kitchen & dining tables: 10% off with code {chat.codes[0].code}, valid until Apr 1, 2026")
    assert chat.text.split("\n")[kitchen + 1].startswith("🎁 Outdoor")  # no link without a category page


async def test_typed_next_and_back_words_turn_pages_in_german(big_chat, t):
    chat = await sign_up(big_chat(language_code="de"))
    assert "Seite 1 von 3\n0 Kategorien gewählt (höchstens 5)" in chat.text
    await chat.send("mehr")
    assert chat.texts == ["Seite 2 von 3\n0 Kategorien gewählt (höchstens 5)"]
    await chat.send("Weiter ▶")  # the English "More ▶" is "Mehr ▶" here; a typed "weiter" works as well
    assert chat.texts[0].startswith("Seite 3 von 3")
    await chat.send("weiter")  # no page after the last: not understood, the page is shown again
    assert chat.texts == [f"{t('de', 'fallback.retry')}\n\nSeite 3 von 3\n0 Kategorien gewählt (höchstens 5)"]
    await chat.send("zurück")
    assert chat.texts[0].startswith("Seite 2 von 3")
    await chat.send("Kategorie 3")  # a name from another page picks it there
    assert chat.texts == ["Seite 2 von 3\n1 Kategorie gewählt (höchstens 5)\n✅ Kategorie 3"]
    assert pick_ids(chat)[0] == "c09" and picked(chat) == []


# ----------------------------------------------------------------------------- the limit and "Done"


async def test_a_sixth_pick_says_the_limit_and_changes_nothing(make_chat):
    chat = await sign_up(make_chat())
    for category_id in DEFAULT_IDS[:5]:
        await chat.press(f"pick:{category_id}")
    assert chat.texts == ["5 categories picked out of 5\n✅ Shoes, Clothing, Electronics, Home & garden, and Beauty"]
    await chat.press("pick:sports")
    assert chat.texts == [
        "You can pick up to 5 categories. Unpick one first if you'd like another one.\n\n"
        "5 categories picked out of 5\n✅ Shoes, Clothing, Electronics, Home & garden, and Beauty"
    ]
    assert picked(chat) == DEFAULT_IDS[:5] and ("pick:sports", "Sports") in chat.buttons
    await chat.press("unpick:clothing")
    await chat.press("pick:sports")
    await chat.press("done:categories")
    assert chat.categories == ("shoes", "electronics", "home", "beauty", "sports")
    assert len(chat.codes) == 5


async def test_the_limit_follows_the_config_in_every_language(config, i18n, t):
    discounts = config.discounts.model_copy(update={"max_favourites": 1})
    chat = await sign_up(Chat(DialogEngine(config.model_copy(update={"discounts": discounts}), i18n), language_code="es"))
    assert "elija hasta 1 categoría favorita y recibirá un código de descuento para ella" in chat.text
    await chat.send("zapatos")
    await chat.send("libros")
    assert chat.texts == [
        "Puede elegir como máximo 1 categoría. Si prefiere otra, quite primero la elegida.\n\n"
        "1 categoría elegida (máximo 1)\n✅ Zapatos"
    ]


async def test_done_with_nothing_picked_leaves_politely_without_saving(make_chat):
    chat = await sign_up(make_chat())
    await chat.press("done:categories")
    assert chat.texts == ["No categories picked — no problem. Type categories whenever you'd like to choose your favourites."]
    assert chat.effects == [] and chat.state.dialog is None
    await chat.send("categories")  # and they can come back to it
    assert chat.texts[0].startswith("Pick up to 5 favourite categories.")


async def test_unpicking_every_favourite_then_done_clears_them_and_keeps_the_codes(make_chat):
    chat = await with_favourites(make_chat(), "shoes", "books")
    await chat.send("categories")
    await chat.press("unpick:shoes")
    await chat.press("unpick:books")
    assert chat.texts == ["0 categories picked out of 5"]
    await chat.press("done:categories")
    assert chat.effects == [SaveCategories(())]
    assert chat.texts == ["Done — I've cleared your favourite categories. Type categories whenever you'd like to pick new ones."]
    assert chat.categories == () and len(chat.codes) == 2


# ----------------------------------------------------------------------------- later, from the menu or the command


async def test_reopening_preselects_favourites_and_never_issues_a_second_code(make_chat):
    chat = await with_favourites(make_chat(), "shoes", "books")
    shoes, books = chat.codes
    await chat.send("menu")
    await chat.press("categories")
    assert chat.texts == [
        "Pick up to 5 favourite categories. Tap a category to pick it (tap it again to unpick it), then tap “Done”.\n\n"
        "2 categories picked out of 5\n✅ Shoes and Books"
    ]
    assert picked(chat) == ["shoes", "books"]

    await chat.press("unpick:books")
    await chat.press("pick:books")  # re-picked in the same visit
    await chat.press("pick:toys")
    await chat.press("done:categories")
    toys = chat.codes[-1]
    assert len(chat.codes) == 3 and toys.category == "toys"
    assert chat.effects == [SaveCategories(("shoes", "books", "toys")), toys]
    assert chat.texts == [
        "Saved! Your favourite categories: Shoes, Books, and Toys.\n"
        "\n"
        "1 new discount code for you:\n"
        f"🎁 Toys: 10% off with code {toys.code}, valid until Apr 1, 2026\n"
        f"https://shop.example/c/toys?code={toys.code}\n"
        "\n"
        f"Shoes: your code {shoes.code} (10% off) is still valid until Apr 1, 2026.\n"
        f"https://shop.example/c/shoes?code={shoes.code}\n"
        f"Books: your code {books.code} (5% off) is still valid until Apr 1, 2026.\n"
        f"https://shop.example/c/books?code={books.code}\n"
        "\n"
        "Type categories whenever you'd like to change your favourites."
    ]

    # Dropped and picked again on a later visit: still the one code.
    await chat.send("categories")
    await chat.press("unpick:shoes")
    await chat.press("done:categories")
    await chat.send("categories")
    await chat.press("pick:shoes")
    await chat.press("done:categories")
    assert len(chat.codes) == 3 and [e for e in chat.effects if isinstance(e, IssueCode)] == []
    assert f"Shoes: your code {shoes.code} (10% off) is still valid until Apr 1, 2026." in chat.text


async def test_a_code_from_another_source_counts_as_the_categorys_code(make_chat):
    chat = await sign_up(make_chat())
    loyalty = IssueCode("LYAL-TY23-456", "shoes", 20, T0 + timedelta(days=90), "loyalty")
    chat.codes.append(loyalty)
    await chat.press("pick:shoes")
    await chat.press("done:categories")
    assert chat.codes == [loyalty] and chat.effects == [SaveCategories(("shoes",))]
    assert "Shoes: your code LYAL-TY23-456 (20% off) is still valid until May 31, 2026." in chat.text
    assert "new discount code" not in chat.text


async def test_an_expired_or_redeemed_code_is_replaced_on_the_next_pick(make_chat):
    chat = await with_favourites(make_chat(), "shoes", "books")
    old_shoes, old_books = chat.codes
    chat.redeemed.add(old_books.code)
    chat.now = T0 + timedelta(days=10)
    await chat.send("categories")
    await chat.press("done:categories")
    new_books = chat.codes[-1]
    assert len(chat.codes) == 3 and new_books.category == "books" and new_books.code != old_books.code
    assert new_books.expires_at == chat.now + timedelta(days=30)
    assert f"Shoes: your code {old_shoes.code} (10% off) is still valid until Apr 1, 2026." in chat.text

    chat.now = T0 + timedelta(days=31)  # the first shoes code expired yesterday
    await chat.send("categories")
    await chat.press("done:categories")
    issued = [e for e in chat.effects if isinstance(e, IssueCode)]
    assert [c.category for c in issued] == ["shoes"] and issued[0].code != old_shoes.code
    assert f"Books: your code {new_books.code} (5% off) is still valid until Apr 11, 2026." in chat.text


async def test_without_marketing_consent_favourites_are_saved_but_no_code_is_issued(make_chat):
    chat = await sign_up(make_chat(), marketing=False)
    await chat.command("categories")
    await chat.press("pick:toys")
    await chat.press("done:categories")
    assert chat.effects == [SaveCategories(("toys",))] and chat.codes == []
    assert chat.texts == [
        "Saved! Your favourite categories: Toys.\n"
        "\n"
        "Discount codes come with our offers, and marketing messages are switched off in this chat. "
        "Type privacy to switch them on, then categories to get your codes.\n"
        "\n"
        "Type categories whenever you'd like to change your favourites."
    ]
    # Consent given later: the next visit issues the code.
    await chat.send("privacy")
    await chat.press("on:marketing")
    await chat.press("done")
    await chat.send("categories")
    await chat.press("done:categories")
    assert [c.category for c in chat.codes] == ["toys"]


# ----------------------------------------------------------------------------- typed answers


async def test_typed_answers_in_german(make_chat):
    chat = await sign_up(make_chat(language_code="de"))
    await chat.send("Schuhe")
    assert chat.texts == ["1 Kategorie gewählt (höchstens 5)\n✅ Schuhe"]
    await chat.send("bücher, spielzeug und sport")  # a list picks them all
    assert picked(chat) == ["shoes", "sports", "toys", "books"]
    await chat.send("SCHUHE")  # one name works like its button: picked, so it unpicks
    await chat.send("shoes")  # English names work in every language
    await chat.send("2")  # a number picks the button at that place: Kleidung
    assert chat.texts == ["5 Kategorien gewählt (höchstens 5)\n✅ Bücher, Spielzeug, Sport, Schuhe und Kleidung"]
    await chat.send("Kosmetik")
    assert chat.texts[0].startswith("Sie können höchstens 5 Kategorien wählen.")
    await chat.send("ich weiß nicht")
    assert chat.texts[0].startswith("Das habe ich leider nicht verstanden.") and len(picked(chat)) == 5
    await chat.send("fertig")
    assert chat.categories == ("books", "toys", "sports", "shoes", "clothing")
    assert chat.texts[0].startswith(
        "Gespeichert! Ihre Lieblingskategorien: Bücher, Spielzeug, Sport, Schuhe und Kleidung.\n\n5 neue Rabattcodes für Sie:\n"
        f"🎁 Bücher: 5\xa0% Rabatt mit dem Code {chat.codes[0].code}, gültig bis 01.04.2026\n"
    )
    assert chat.texts[0].endswith("\n\nSchreiben Sie kategorien, wann immer Sie Ihre Lieblingskategorien ändern möchten.")


async def test_a_word_close_to_a_category_name_picks_nothing(make_chat):
    # No typo tolerance here: "Schule" (school) is one letter from "Schuhe", "Becher" (cup)
    # from "Bücher", and a favourite picked by mistake would earn a code for it.
    chat = await sign_up(make_chat(language_code="de"))
    for word in ("Schule", "Becher", "Spot"):
        await chat.send(word)
        assert "nicht verstanden" in chat.texts[0]
    assert picked(chat) == []


async def test_typed_answers_in_spanish(make_chat):
    chat = await sign_up(make_chat(language_code="es"))
    assert "elija hasta 5 categorías favoritas" in chat.text and chat.labels[-1] == "Listo"
    await chat.send("Hogar y jardín")  # "y" inside a name is part of the name
    await chat.send("libros y juguetes")  # ... and between names it joins them
    await chat.send("zapatos")
    assert chat.texts == ["4 categorías elegidas (máximo 5)\n✅ Hogar y jardín, Libros, Juguetes y Zapatos"]
    await chat.send("listo")
    assert chat.categories == ("home", "books", "toys", "shoes")
    toys = chat.codes[2]
    assert f"🎁 Juguetes: 10\xa0% de descuento con el código {toys.code}, válido hasta el 1 abr 2026" in chat.text
    assert chat.text.endswith("Escriba categorías cuando quiera cambiar sus categorías favoritas.")


@pytest.mark.parametrize(("language_code", "word"), [("en", "that's all"), ("de", "Das wars!"), ("es", "ya está"), ("de", "done")])
async def test_done_words_finish(make_chat, language_code, word):
    chat = await sign_up(make_chat(language_code=language_code))
    await chat.send("1")
    await chat.send(word)
    assert chat.categories == ("shoes",) and chat.state.dialog is None


# ----------------------------------------------------------------------------- stale and double taps


async def test_double_taps_repeat_the_wish_and_never_flip_it_back(make_chat):
    chat = await sign_up(make_chat())
    await chat.press("pick:shoes")
    await chat.press("pick:shoes")  # the second tap of a double tap
    assert picked(chat) == ["shoes"] and chat.texts == ["1 category picked out of 5\n✅ Shoes"]
    await chat.press("unpick:shoes")
    await chat.press("unpick:shoes")
    assert picked(chat) == [] and chat.effects == []
    await chat.press("pick:nonexistent")  # no such category: nothing changes, the list again
    await chat.press("frobnicate:shoes")
    assert picked(chat) == [] and chat.texts == ["0 categories picked out of 5"]


async def test_a_press_in_an_older_page_message_still_does_what_it_says(big_chat):
    chat = await sign_up(big_chat())
    await chat.press("page:2")
    await chat.press("page:2")  # a double tap on "More": still page 2, not page 3
    assert chat.texts[0].startswith("Page 2 of 3")
    await chat.press("pick:outdoor")  # from the page-1 message above
    assert chat.texts == ["Page 2 of 3\n1 category picked out of 5\n✅ Outdoor & camping gear"]
    await chat.press("pick:outdoor")
    assert chat.texts == ["Page 2 of 3\n1 category picked out of 5\n✅ Outdoor & camping gear"]


async def test_a_double_tapped_done_issues_nothing_twice(make_chat, t, joined):
    chat = await sign_up(make_chat())
    await chat.press("pick:toys")
    await chat.press("done:categories")
    await chat.press("done:categories")
    assert chat.effects == [] and len(chat.codes) == 1 and chat.categories == ("toys",)
    assert chat.texts == [joined(t("en", "fallback.idle"), t("en", "menu.question"))]


async def test_language_and_help_interrupt_and_the_picks_survive(make_chat, t):
    chat = await sign_up(make_chat())
    await chat.press("pick:books")
    await chat.send("language")
    await chat.press("de")
    assert chat.texts == [f"{t('de', 'language.changed')}\n\n1 Kategorie gewählt (höchstens 5)\n✅ Bücher"]
    assert chat.labels[-1] == "Fertig" and ("unpick:books", "✅ Bücher") in chat.buttons
    await chat.send("hilfe")
    assert chat.texts[0].endswith("\n\n1 Kategorie gewählt (höchstens 5)\n✅ Bücher")
    await chat.press("done:categories")
    assert chat.categories == ("books",) and "Gespeichert!" in chat.text
