"""Complaint intake: kind, order number, description, attachments, summary, ticket and follow-up."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from bot.complaints import KINDS, TICKET_ALPHABET, follow_up, is_loyal, new_ticket_number, valid_order_number
from bot.config import Category, LocalText
from bot.dialog import DialogEngine
from bot.events import Kind, Media
from bot.turn import ConsentChange, Handoff, IssueCode
from tests.dialogs.conftest import Chat

NOW = datetime(2026, 11, 18, 10, 0, tzinfo=timezone.utc)  # a Wednesday, within support hours
RECENT = NOW - timedelta(days=30)  # a new customer: not loyal by age
PHOTO = Media(type="photo", ref="AgACAgIAAxkBAAIBQ2", mime_type="image/jpeg")
RECEIPT = Media(type="document", ref="wamid.media.4711", mime_type="application/pdf", file_name="receipt.pdf")


def returning(chat, lang: str = "en", **attributes):
    """A customer who signed up a month ago (so not loyal by age), talking at a fixed time.

    Built from the records, not by chatting through the sign-up, so these tests
    do not depend on what the sign-up offers next.
    """
    chat.now, chat.created_at, chat.attributes, chat.locale = NOW, RECENT, dict(attributes), lang
    for purpose in chat.engine.config.consent_purposes:
        chat.consent_log.append(ConsentChange(purpose.id, chat.channel, True, "signup", purpose.version))
    chat.turns = 1  # not a new identity: the first message does not start the sign-up
    return chat


@pytest.fixture
def new_chat(make_chat):
    async def make(lang: str = "en", **attributes):
        return returning(make_chat(language_code=lang), lang, **attributes)

    return make


def kind_question(t, lang: str) -> str:
    return t(lang, "complaint.kind_question", coupon=t(lang, "complaint.kind.coupon_failed"))


def attachment(media: Media) -> dict:
    return {"type": media.type, "ref": media.ref, "mime_type": media.mime_type, "file_name": media.file_name}


async def to_summary(chat, kind="delivery", order="A-10023", description="The parcel never arrived."):
    """Buttons through to the summary (no attachment)."""
    await chat.command("complaint")
    await chat.press(f"kind:{kind}")
    await (chat.press("skip:order") if order is None else chat.send(order))
    await chat.send(description)
    await chat.press("skip:attachment")
    assert chat.state.step == "summary", chat.text


def summary_text(i18n, lang, kind, order, description, files=0) -> str:
    """The summary as the customer should see it, line by line."""
    t = i18n.text
    lines = [
        t(lang, "complaint.summary_title"),
        "",
        t(lang, "complaint.summary_kind", kind=t(lang, f"complaint.kind.{kind}")),
        t(lang, "complaint.summary_order", order=order) if order else t(lang, "complaint.summary_no_order"),
        t(lang, "complaint.summary_description", description=description),
        i18n.plural(lang, "complaint.summary_attachments", "complaint.summary_attachments.plural", files)
        if files
        else t(lang, "complaint.summary_no_attachments"),
    ]
    return "\n".join(lines)


def more_files(i18n, lang: str, n: int) -> str:
    done = i18n.text(lang, "buttons.done")
    return i18n.plural(lang, "complaint.attachment_more", "complaint.attachment_more.plural", n, done=done)


# ----------------------------------------------------------------------------- the whole flow


@pytest.mark.parametrize("lang", ["en", "de", "es"])
async def test_whole_complaint_by_buttons(new_chat, t, i18n, joined, lang):
    chat = await new_chat(lang)

    await chat.command("complaint")
    assert chat.texts == [joined(t(lang, "complaint.intro"), kind_question(t, lang))]
    assert chat.labels == [t(lang, f"complaint.kind.{kind}") for kind in KINDS]
    assert all(len(label) <= 20 for label in chat.labels)

    await chat.press("kind:delivery")
    assert chat.texts == [t(lang, "complaint.order_question", skip=t(lang, "complaint.skip"))]
    assert chat.labels == [t(lang, "complaint.skip")]

    await chat.send("A-10023")
    assert chat.texts == [t(lang, "complaint.description_question")]
    await chat.event(Kind.LOCATION, location=(52.52, 13.40))  # the question asks for typing, not for options
    assert chat.texts == [joined(t(lang, "fallback.type_answer"), t(lang, "complaint.description_question"))]
    assert chat.effects == []

    await chat.send("The parcel never arrived.")
    assert chat.texts == [t(lang, "complaint.attachment_question", skip=t(lang, "complaint.no_attachment"))]

    await chat.event(Kind.MEDIA, media=PHOTO)
    assert chat.texts == [more_files(i18n, lang, 1)]
    assert chat.labels == [t(lang, "buttons.done")]

    await chat.press("done:attachment")
    assert chat.texts == [summary_text(i18n, lang, "delivery", "A-10023", "The parcel never arrived.", files=1)]
    summary_labels = ["send", "edit_kind", "edit_order", "edit_description", "cancel"]
    assert chat.labels == [t(lang, f"complaint.{name}") for name in summary_labels]
    assert all(len(label) <= 20 for label in chat.labels)
    assert chat.tickets == []  # nothing is sent before the customer confirms

    await chat.press("send:complaint")
    [ticket] = chat.tickets
    assert (ticket.kind, ticket.order_number, ticket.description) == (
        "delivery",
        "A-10023",
        "The parcel never arrived.",
    )
    assert ticket.attachments == (attachment(PHOTO),)
    assert ticket.refund_requested is False
    assert chat.texts == [
        joined(
            t(lang, "complaint.sent", number=ticket.number),
            t(lang, "complaint.person_question", number=ticket.number),
        )
    ]
    assert chat.labels == [t(lang, "complaint.talk_to_person"), t(lang, "complaint.all_done")]

    await chat.press("done:complaint")
    assert chat.texts == [t(lang, "complaint.closing", number=ticket.number)]
    assert chat.state.dialog is None and chat.state.mode == "bot"
    assert chat.handoffs == [] and chat.codes == []


@pytest.mark.parametrize(
    ("lang", "description"),
    [
        ("en", "The shoes fell apart after a week."),
        ("de", "Die Schuhe waren nach einer Woche kaputt."),
        ("es", "Los zapatos se rompieron al cabo de una semana."),
    ],  # fmt: skip
)
async def test_whole_complaint_by_typed_answers(new_chat, t, i18n, lang, description):
    chat = await new_chat(lang)

    await chat.send(i18n.words(lang, "commands.complaint")[0])  # "complaint", "beschwerde", "queja"
    assert chat.state.dialog == "complaint" and chat.state.step == "kind"
    await chat.send(t(lang, "complaint.kind.quality").upper())  # a typed label, in any case
    assert chat.state.step == "order"
    await chat.send("#B-7781")  # the "#" people put in front is not part of the number
    await chat.send(description)
    await chat.send(i18n.words(lang, "words.no")[0])  # "no" / "nein": no attachment
    assert chat.state.step == "summary", chat.text
    assert chat.texts == [summary_text(i18n, lang, "quality", "B-7781", description)]
    await chat.send(t(lang, "complaint.send"))  # the Send label, typed
    [ticket] = chat.tickets
    assert (ticket.kind, ticket.order_number, ticket.description, ticket.attachments) == (
        "quality",
        "B-7781",
        description,
        (),
    )
    assert t(lang, "complaint.sent", number=ticket.number) in chat.text
    await chat.send(i18n.words(lang, "words.no")[0])  # no person, thanks
    assert chat.texts == [t(lang, "complaint.closing", number=ticket.number)]
    assert chat.state.dialog is None


async def test_the_menu_starts_a_complaint(new_chat, t, joined):
    chat = await new_chat()
    await chat.command("menu")
    await chat.press("complaint")
    assert chat.texts == [joined(t("en", "complaint.intro"), kind_question(t, "en"))]


# ----------------------------------------------------------------------------- order number


async def test_a_wrong_order_number_says_what_is_expected_and_asks_again(new_chat, t, joined):
    chat = await new_chat()
    await chat.command("complaint")
    await chat.press("kind:delivery")
    await chat.send("my order from last week")
    skip = t("en", "complaint.skip")
    assert chat.texts == [
        joined(t("en", "complaint.order_invalid", skip=skip), t("en", "complaint.order_question", skip=skip))
    ]
    assert chat.state.step == "order" and chat.state.misses == 0
    await chat.send("x1")  # too short for the pattern
    assert chat.state.step == "order"
    await chat.send("  #A-10023 ")
    assert chat.state.step == "description"
    assert chat.state.slots["complaint"]["order_number"] == "A-10023"


async def test_the_order_number_can_be_skipped(new_chat, t):
    chat = await new_chat()
    await to_summary(chat, order=None)
    assert t("en", "complaint.summary_no_order") in chat.text
    await chat.press("send:complaint")
    assert chat.tickets[0].order_number is None


async def test_no_is_no_order_number_rather_than_one(new_chat):
    chat = await new_chat("de")
    await chat.command("complaint")
    await chat.press("kind:delivery")
    await chat.send("nope")  # four letters would pass the default pattern; it means "no"
    assert chat.state.step == "description"
    assert chat.state.slots["complaint"]["order_number"] is None


# ----------------------------------------------------------------------------- attachments


async def test_photos_and_documents_are_stored_as_platform_references(new_chat, t, i18n, joined):
    chat = await new_chat()
    await chat.command("complaint")
    await chat.press("kind:quality")
    await chat.event(Kind.MEDIA, media=PHOTO)  # a screenshot first, while the order number is asked
    assert chat.texts[0].startswith(t("en", "complaint.attachment_kept"))
    assert chat.state.step == "order"
    await chat.press("skip:order")
    await chat.send("The zip broke on the first day.")
    await chat.event(Kind.MEDIA, media=RECEIPT)
    await chat.event(Kind.MEDIA, media=Media(type="sticker", ref="CAACAgIAAxkBAAIB"))  # no evidence
    assert chat.texts == [joined(t("en", "fallback.media"), more_files(i18n, "en", 2))]
    await chat.press("done:attachment")
    await chat.press("send:complaint")
    assert chat.tickets[0].attachments == (attachment(PHOTO), attachment(RECEIPT))


async def test_a_photo_with_a_caption_is_the_description_and_an_attachment(new_chat):
    chat = await new_chat()
    await chat.command("complaint")
    await chat.press("kind:quality")
    await chat.press("skip:order")
    await chat.event(Kind.MEDIA, media=PHOTO, text="The screen arrived cracked")
    assert chat.state.step == "attachment"
    await chat.press("done:attachment")
    await chat.press("send:complaint")
    assert chat.tickets[0].description == "The screen arrived cracked"
    assert chat.tickets[0].attachments == (attachment(PHOTO),)


async def test_attachments_stop_at_the_limit_and_go_to_the_summary(new_chat):
    chat = await new_chat()
    await chat.command("complaint")
    await chat.press("kind:quality")
    await chat.press("skip:order")
    await chat.send("Broken.")
    for n in range(5):
        await chat.event(Kind.MEDIA, media=Media(type="photo", ref=f"ref-{n}"))
    assert chat.state.step == "summary"
    await chat.press("send:complaint")
    assert [a["ref"] for a in chat.tickets[0].attachments] == [f"ref-{n}" for n in range(5)]


# ----------------------------------------------------------------------------- summary: edit and cancel


async def test_edit_kind_order_and_description_from_the_summary(new_chat, t, i18n):
    chat = await new_chat()
    await to_summary(chat)

    await chat.press("edit:order")
    assert chat.state.step == "order"
    await chat.send("A-20001")
    assert chat.state.step == "summary"

    await chat.press("edit:kind")
    await chat.press("kind:coupon_failed")
    assert chat.state.step == "summary"

    await chat.press("edit:description")
    keep = t("en", "complaint.keep")
    assert chat.texts == [t("en", "complaint.description_draft", text="The parcel never arrived.", keep=keep)]
    assert chat.labels == [keep]
    await chat.send("The code SUMMER20 was refused at checkout.")
    assert chat.texts == [
        summary_text(i18n, "en", "coupon_failed", "A-20001", "The code SUMMER20 was refused at checkout.")
    ]

    await chat.press("edit:description")
    await chat.press("keep:description")  # keeping it changes nothing
    assert chat.state.step == "summary"

    await chat.press("send:complaint")
    [ticket] = chat.tickets
    assert (ticket.kind, ticket.order_number, ticket.description) == (
        "coupon_failed", "A-20001", "The code SUMMER20 was refused at checkout.")  # fmt: skip


async def test_cancel_discards_the_complaint(new_chat, t, i18n):
    chat = await new_chat()
    await to_summary(chat)
    await chat.press("cancel:complaint")
    assert chat.texts == [t("en", "complaint.cancelled", complaint=i18n.words("en", "commands.complaint")[0])]
    assert chat.tickets == [] and chat.state.dialog is None
    await chat.press("send:complaint")  # a late press on the old summary sends nothing
    assert chat.tickets == []


async def test_a_double_tapped_send_opens_one_ticket(new_chat, t):
    chat = await new_chat()
    await to_summary(chat)
    await chat.press("send:complaint")
    question = chat.texts[-1].split("\n\n")[-1]
    await chat.press("send:complaint")
    assert len(chat.tickets) == 1
    assert chat.texts == [question]  # the open question again, nothing recorded


# ----------------------------------------------------------------------------- a sentence that started it


async def test_the_sentence_that_started_a_complaint_is_offered_as_its_description(new_chat, t):
    chat = await new_chat()
    await chat.command("complaint", "I was charged the full price, the code did not apply")
    await chat.press("kind:coupon_failed")
    await chat.press("skip:order")
    keep = t("en", "complaint.keep")
    assert chat.texts == [
        t("en", "complaint.description_draft", text="I was charged the full price, the code did not apply", keep=keep)
    ]
    await chat.send("ok")  # typed agreement keeps it, like the button
    assert chat.state.step == "attachment"
    await chat.press("skip:attachment")
    await chat.press("send:complaint")
    assert chat.tickets[0].description == "I was charged the full price, the code did not apply"


@pytest.mark.parametrize(
    ("lang", "sentence"), [("en", "my coupon didn't work"), ("de", "die Lieferung ist nicht angekommen")]
)
async def test_a_complaint_in_free_text_starts_the_flow_with_it_as_the_draft(new_chat, t, joined, lang, sentence):
    chat = await new_chat(lang)
    await chat.send(sentence)  # the intent step routes it to the complaint command
    assert chat.texts == [joined(t(lang, "complaint.intro"), kind_question(t, lang))]
    await chat.press("kind:coupon_failed")
    await chat.press("skip:order")
    keep = t(lang, "complaint.keep")
    assert chat.texts == [t(lang, "complaint.description_draft", text=sentence, keep=keep)]


async def test_a_command_word_alone_is_no_description(new_chat, t):
    chat = await new_chat("de")
    await chat.send("/complaint")
    await chat.press("kind:delivery")
    await chat.press("skip:order")
    assert chat.texts == [t("de", "complaint.description_question")]
    await chat.send("Reklamation")  # starts the complaint again rather than describing it
    assert chat.state.step == "kind"


# ----------------------------------------------------------------------------- follow-up rules


async def test_a_coupon_that_did_not_work_opens_a_refund_request(new_chat, t, joined):
    chat = await new_chat("de")
    await to_summary(chat, kind="coupon_failed", description="Der Code wurde nicht abgezogen.")
    await chat.press("send:complaint")
    [ticket] = chat.tickets
    assert ticket.refund_requested is True
    assert chat.texts == [
        joined(
            t("de", "complaint.sent", number=ticket.number),
            t("de", "complaint.refund"),
            t("de", "complaint.person_question", number=ticket.number),
        )
    ]


async def test_other_kinds_open_no_refund_request(new_chat, t):
    chat = await new_chat()
    await to_summary(chat, kind="discount_low")
    await chat.press("send:complaint")
    assert chat.tickets[0].refund_requested is False
    assert t("en", "complaint.refund") not in chat.text


@pytest.mark.parametrize(
    "attributes",
    [{"order_count": 5}, {"order_count": "12"}, {"customer_since": "2024-06-01"}, {"customer_since": "2025-11-18"}],
)
async def test_a_loyal_customer_is_offered_a_loyalty_discount(new_chat, t, i18n, attributes):
    chat = await new_chat(**attributes)
    await to_summary(chat)
    await chat.press("send:complaint")
    [ticket] = chat.tickets
    offer = i18n.plural("en", "complaint.loyalty_offer", "complaint.loyalty_offer.plural", 90, percent="20%")
    assert chat.texts == ["\n\n".join([t("en", "complaint.sent", number=ticket.number), offer])]
    assert chat.state.step == "loyalty"


@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {"order_count": 4},
        {"customer_since": "2025-11-19"},
        {"order_count": "many", "customer_since": "last year"},
        {"order_count": True, "customer_since": 2019},
    ],  # fmt: skip
)
async def test_a_customer_who_is_not_loyal_gets_no_offer(new_chat, t, attributes):
    chat = await new_chat(**attributes)
    await to_summary(chat)
    await chat.press("send:complaint")
    assert chat.state.step == "person"
    assert chat.labels == [t("en", "complaint.talk_to_person"), t("en", "complaint.all_done")]


async def test_loyal_by_the_age_of_the_profile_when_the_shop_sent_no_date(new_chat):
    chat = await new_chat()
    chat.created_at = NOW - timedelta(days=400)
    await to_summary(chat)
    await chat.press("send:complaint")
    assert chat.state.step == "loyalty"


@pytest.mark.parametrize("lang", ["en", "de", "es"])
async def test_the_loyalty_pick_issues_one_code_of_20_percent_for_90_days(new_chat, t, i18n, lang):
    chat = await new_chat(lang, order_count=9)
    chat.categories = ("books", "beauty")
    await to_summary(chat)
    await chat.press("send:complaint")
    ticket = chat.tickets[0]
    names = {c.id: c.name.get(lang) for c in chat.engine.config.categories}
    assert chat.button_ids[:3] == ["loyalty:books", "loyalty:beauty", "loyalty:shoes"]  # favourites first
    assert chat.labels[:2] == [names["books"], names["beauty"]]
    assert chat.labels[-1] == t(lang, "complaint.no_thanks")
    assert len(chat.labels) == len(names) + 1

    await chat.press("loyalty:beauty")
    [code] = chat.codes
    assert (code.category, code.percent, code.source, code.reference) == ("beauty", 20, "loyalty", ticket.number)
    assert code.expires_at == NOW + timedelta(days=90)
    percent = i18n.format_percent(lang, 0.2)
    expiry = i18n.format_date(lang, code.expires_at)
    shown = t(lang, "complaint.loyalty_code", code=code.code, percent=percent, category=names["beauty"], date=expiry)
    link = t(lang, "complaint.loyalty_link", link=f"https://shop.example/c/beauty?code={code.code}")
    assert chat.texts == ["\n\n".join([f"{shown}\n{link}", t(lang, "complaint.person_question", number=ticket.number)])]

    await chat.press("loyalty:books")  # a second tap on the old list issues nothing more
    assert len(chat.codes) == 1


async def test_no_thanks_issues_no_code(new_chat, t):
    chat = await new_chat(order_count=20)
    await to_summary(chat)
    await chat.press("send:complaint")
    await chat.send("no thanks")
    assert chat.codes == []
    assert chat.texts == [t("en", "complaint.person_question", number=chat.tickets[0].number)]


async def test_a_customer_holding_a_loyalty_code_is_not_offered_another(new_chat):
    chat = await new_chat(order_count=20)
    chat.codes.append(IssueCode("K7QX-M2PA-WZ3", "shoes", 20, NOW + timedelta(days=30), "loyalty", "C-AAAAAA"))
    await to_summary(chat)
    await chat.press("send:complaint")
    assert chat.state.step == "person"


async def test_the_loyalty_list_shows_at_most_nine_categories(config, i18n):
    many = [Category(id=f"cat{n}", name=LocalText(en=f"Category {n}")) for n in range(12)]
    chat = returning(Chat(DialogEngine(config.model_copy(update={"categories": many}), i18n)), order_count=5)
    chat.categories = ("cat11",)
    await to_summary(chat)
    await chat.press("send:complaint")
    assert chat.button_ids == ["loyalty:cat11", *[f"loyalty:cat{n}" for n in range(8)], "no:loyalty"]


# ----------------------------------------------------------------------------- talk to a person


async def test_talk_to_a_person_hands_this_ticket_over(new_chat, t, i18n):
    chat = await new_chat()
    await to_summary(chat)
    await chat.press("send:complaint")
    number = chat.tickets[0].number
    await chat.press("handoff:complaint")
    assert chat.handoffs == [Handoff(ticket=number, reason="complaint")]
    assert chat.state.mode == "agent" and chat.state.dialog is None
    within = i18n.plural("en", "handoff.reply_within", "handoff.reply_within.plural", 60)
    quiet = t("en", "handoff.quiet", stop=i18n.words("en", "commands.stop")[0])
    assert chat.texts == ["\n\n".join([t("en", "handoff.passed_ticket", ticket=number), within, quiet])]
    assert await chat.send("Hello? Is anyone there?") == []
    assert len(chat.tickets) == 1


# ----------------------------------------------------------------------------- domain rules


def test_ticket_numbers_are_short_readable_and_distinct():
    numbers = {new_ticket_number() for _ in range(2000)}
    assert len(numbers) == 2000
    for number in numbers:
        assert re.fullmatch(rf"C-[{TICKET_ALPHABET}]{{6}}", number)
        assert not set(number[2:]) & set("01OI")


def test_order_numbers_must_match_the_whole_pattern(config):
    assert valid_order_number(config, "A-10023")
    assert not valid_order_number(config, "A-10023 and more")
    assert not valid_order_number(config, "ab")
    strict = config.model_copy(
        update={"complaints": config.complaints.model_copy(update={"order_number_pattern": r"\d{6}"})}
    )
    assert valid_order_number(strict, "123456") and not valid_order_number(strict, "1234567")


def test_loyalty_rules(config):
    assert is_loyal(config, {"order_count": 5}, None, NOW)
    assert is_loyal(config, {"order_count": 5.0}, None, NOW)
    assert not is_loyal(config, {"order_count": -3}, None, NOW)
    assert is_loyal(config, {"customer_since": "2025-11-18"}, None, NOW)  # exactly twelve months
    assert is_loyal(config, {"customer_since": "2025-11-18T23:00:00+00:00"}, None, NOW)
    assert not is_loyal(config, {"customer_since": "2025-11-19"}, None, NOW)
    # the shop's date wins over the profile's age; a bad one falls back to it
    assert not is_loyal(config, {"customer_since": "2026-01-01"}, NOW - timedelta(days=900), NOW)
    assert is_loyal(config, {"customer_since": "soon"}, NOW - timedelta(days=900), NOW)
    assert not is_loyal(config, {"customer_since": "9999-12-31"}, None, NOW)  # the future: never an error
    assert not is_loyal(config, {"customer_since": None, "order_count": None}, None, NOW)
    off = config.model_copy(
        update={"complaints": config.complaints.model_copy(update={"loyalty_min_orders": 0, "loyalty_min_months": 0})}
    )
    assert not is_loyal(off, {"order_count": 50, "customer_since": "2001-01-01"}, None, NOW)  # 0 switches a rule off


def test_follow_up(config):
    loyal = follow_up(config, "coupon_failed", {"order_count": 8}, None, NOW)
    assert (loyal.refund, loyal.loyalty_percent, loyal.loyalty_valid_days, loyal.offer_person) == (True, 20, 90, True)
    plain = follow_up(config, "delivery", {}, NOW, NOW)
    assert (plain.refund, plain.loyalty_percent, plain.loyalty_valid_days, plain.offer_person) == (
        False,
        None,
        None,
        True,
    )


def test_every_complaint_button_fits_a_whatsapp_reply_button(i18n):
    labels = ["skip", "keep", "no_attachment", "send", "edit_kind", "edit_order", "edit_description", "cancel"]
    labels += ["no_thanks", "talk_to_person", "all_done", *[f"kind.{kind}" for kind in KINDS]]
    for lang in ("en", "de", "es"):
        for name in labels:
            assert len(i18n.text(lang, f"complaint.{name}")) <= 20, (lang, name)


async def test_the_loyalty_list_leaves_out_categories_with_a_valid_code(new_chat):
    chat = await new_chat(order_count=20)
    chat.codes.append(IssueCode("WELC-OME0-SHO", "shoes", 10, NOW + timedelta(days=30), "welcome"))
    await to_summary(chat)
    await chat.press("send:complaint")
    assert chat.state.step == "loyalty"
    assert "loyalty:shoes" not in chat.button_ids and "loyalty:clothing" in chat.button_ids
