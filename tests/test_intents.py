"""The offline phrase matcher: typo-tolerant in three languages, and quiet on short answers.

Every intent is recognised with a typo or in other words in en, de and es;
English works for every language; short replies, names and numbers never
reach the threshold; the phrase lists load, validate and stay fast.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.config import load_config
from bot.dialog import GREETING, INTENT_COMMANDS, THANKS, normalise
from bot.i18n import I18n
from bot.intents import INTENTS, Intent, PhraseMatcher, default_matcher, typo_budget

LOCALES_DIR = Path(__file__).resolve().parents[1] / "locales"
THRESHOLD = load_config(None).intents.threshold
LANGS = ("en", "de", "es")


@pytest.fixture(scope="module")
def matcher() -> PhraseMatcher:
    return PhraseMatcher.load(LOCALES_DIR)


def understood(matcher: PhraseMatcher, text: str, locale: str) -> str | None:
    """The intent the engine would act on (at the shipped threshold), or None."""
    intent = matcher.match(text, locale)
    return intent.name if intent is not None and intent.confidence >= THRESHOLD else None


TYPED = [
    # English: typos, missing letters, swapped letters, other words
    ("en", "helo", "greeting"),
    ("en", "good mornign", "greeting"),
    ("en", "hlep", "help"),
    ("en", "can you hlep me?", "help"),
    ("en", "mnu", "menu"),
    ("en", "show me the manu", "menu"),
    ("en", "stop sending me mesages", "stop"),
    ("en", "unsubscibe me", "stop"),
    ("en", "my coupon didn't work", "complaint"),
    ("en", "my cupon didnt work!!", "complaint"),
    ("en", "I was charged full price", "complaint"),
    ("en", "talk to a persn", "human"),
    ("en", "can i speak to someone please", "human"),
    ("en", "cange language", "language"),
    ("en", "my favourite categries", "categories"),
    ("en", "privacy setings", "privacy"),
    ("en", "delete my dta", "privacy"),
    ("en", "thnaks", "thanks"),
    ("en", "thank you so much!", "thanks"),
    # German
    ("de", "Hallo!", "greeting"),
    ("de", "guten morgn", "greeting"),
    ("de", "hilef", "help"),
    ("de", "ich brauch hilfe", "help"),
    ("de", "hauptmenü bitte", "menu"),
    ("de", "menue", "menu"),
    ("de", "keine werbung mehr bitte", "stop"),
    ("de", "bitte nicht mehr kontaktiren", "stop"),
    ("de", "die Lieferung ist nicht angekommen", "complaint"),
    ("de", "beschwerde lieferung kaputt", "complaint"),
    ("de", "gutschein funktionert nicht", "complaint"),
    ("de", "mit einem mitarbieter sprechen", "human"),
    ("de", "sprache ändern", "language"),
    ("de", "sprache wechlsen", "language"),
    ("de", "meine kategorien ändern", "categories"),
    ("de", "meine daten löschen", "privacy"),
    ("de", "datenshutz", "privacy"),
    ("de", "lösche mich", "privacy"),
    ("de", "bitte löschen sie mich!", "privacy"),
    ("de", "danek", "thanks"),
    ("de", "vielen dank!", "thanks"),
    # Spanish, with and without accents
    ("es", "bórrame", "privacy"),
    ("es", "borrame por favor", "privacy"),
    ("es", "hola", "greeting"),
    ("es", "buenos dias", "greeting"),
    ("es", "ayduda", "help"),
    ("es", "necesito ayuda", "help"),
    ("es", "menú principal", "menu"),
    ("es", "volver al meni", "menu"),
    ("es", "no quiero mas mensajes", "stop"),
    ("es", "quiero darmee de baja", "stop"),
    ("es", "mi cupon no funciona", "complaint"),
    ("es", "el pedido llegó roto", "complaint"),
    ("es", "mi cupón no funsiona", "complaint"),
    ("es", "hablar con una presona", "human"),
    ("es", "camiar idioma", "language"),
    ("es", "mis categorias", "categories"),
    ("es", "borrar mis datos", "privacy"),
    ("es", "privasidad", "privacy"),
    ("es", "grasias", "thanks"),
    ("es", "muchas gracias!", "thanks"),
]


@pytest.mark.parametrize(("locale", "text", "intent"), TYPED)
def test_typed_text_is_understood(matcher, locale, text, intent):
    assert understood(matcher, text, locale) == intent


def test_every_intent_is_understood_with_a_typo_in_every_language():
    covered = {(locale, intent) for locale, _, intent in TYPED}
    assert covered == {(locale, intent) for locale in LANGS for intent in INTENTS}


def test_an_exact_phrase_is_certain_and_a_typo_costs_a_little(matcher):
    assert matcher.match("My coupon didn't work!", "en") == Intent("complaint", 1.0)
    assert matcher.match("El cupón no funciona", "es") == Intent("complaint", 1.0)
    typo = matcher.match("my cupon didnt work", "en")
    assert typo is not None and typo.name == "complaint" and THRESHOLD <= typo.confidence < 1.0


@pytest.mark.parametrize("locale", ["de", "es"])
def test_english_phrases_work_in_every_language(matcher, locale):
    assert understood(matcher, "talk to a person", locale) == "human"
    assert understood(matcher, "my coupon didn't work", locale) == "complaint"


def test_other_languages_are_not_checked_for_english(matcher):
    assert understood(matcher, "die Lieferung ist nicht angekommen", "en") is None
    assert understood(matcher, "el pedido llegó roto", "en") is None


def test_an_unknown_language_uses_the_english_phrases(matcher):
    assert understood(matcher, "hlep", "fr") == "help"


SHORT_OR_UNRELATED = [
    "ok", "okay", "no", "yes", "yep", "nope", "sure", "y", "n", "ja", "nein", "nö", "si", "sí", "vale", "claro",
    "Alice", "Maria", "Jürgen", "José", "Tom", "Carlos", "Berlin", "42", "12345", "#2", "👍", "?", "...",
    "top", "tops", "blue", "size 42", "maybe", "later", "what", "lol", "purple", "what is this about?",
    "where is my parcel", "I want to buy shoes",
]  # fmt: skip


@pytest.mark.parametrize("locale", LANGS)
@pytest.mark.parametrize("text", SHORT_OR_UNRELATED)
def test_short_answers_names_and_numbers_never_reach_the_threshold(matcher, locale, text):
    assert understood(matcher, text, locale) is None


def test_a_complaint_with_a_greeting_is_a_complaint(matcher):
    assert understood(matcher, "Hi! My coupon didn't work and I'm annoyed", "en") == "complaint"
    long = ("I ordered a jacket last week, tried my coupon at checkout and it didn't work, "
            "so I was charged full price")  # fmt: skip
    assert understood(matcher, long, "en") == "complaint"


def test_a_lone_greeting_word_does_not_swallow_a_longer_request(matcher):
    intent = matcher.match("hello i want to buy a blue sweater", "en")
    assert intent is not None and intent.name == "greeting" and intent.confidence < THRESHOLD


def test_a_negated_stop_is_not_a_stop(matcher):
    assert understood(matcher, "stop sending me offers", "en") == "stop"
    assert understood(matcher, "please don't stop sending me offers", "en") is None


@pytest.mark.parametrize(
    ("length", "typos"), [(2, 0), (3, 0), (4, 1), (7, 1), (8, 2), (15, 2)]
)
def test_typo_budget_grows_with_the_word(length, typos):
    assert typo_budget(length) == typos


def test_a_word_with_a_wrong_first_letter_is_not_corrected(matcher):
    assert understood(matcher, "elp", "en") is None
    assert understood(matcher, "xhanks", "en") is None


# --------------------------------------------------------------------------- the phrase lists


def test_every_language_lists_every_intent_and_the_engine_acts_on_each():
    assert set(INTENT_COMMANDS) | {GREETING, THANKS} == set(INTENTS)
    import tomllib

    for lang in LANGS:
        data = tomllib.loads((LOCALES_DIR / lang / "intents.toml").read_text("utf-8"))
        assert set(data) == set(INTENTS), lang
        for intent, phrases in data.items():
            assert len(phrases) >= 15, (lang, intent)


def test_no_phrase_is_a_yes_or_no_word():
    """A typed yes/no answers the open question; a phrase list must not claim it."""
    import tomllib

    i18n = I18n.load(LOCALES_DIR)
    for lang in LANGS:
        words = [w for code in (lang, "en") for key in ("words.yes", "words.no") for w in i18n.words(code, key)]
        answers = {normalise(w) for w in words}
        data = tomllib.loads((LOCALES_DIR / lang / "intents.toml").read_text("utf-8"))
        clashes = {p for phrases in data.values() for p in phrases if normalise(p) in answers}
        assert clashes == set(), lang


def test_loading_rejects_unknown_intents_and_phrases_with_two_meanings(tmp_path):
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "intents.toml").write_text('help = ["help me"]\nweather = ["is it raining"]\n', "utf-8")
    with pytest.raises(ValueError, match="unknown intent 'weather'"):
        PhraseMatcher.load(tmp_path)
    (tmp_path / "en" / "intents.toml").write_text('help = ["Help me!"]\nhuman = ["help me"]\n', "utf-8")
    with pytest.raises(ValueError, match="'help me' is listed for both"):
        PhraseMatcher.load(tmp_path)
    (tmp_path / "en" / "intents.toml").write_text('help = "help me"\n', "utf-8")
    with pytest.raises(ValueError, match="must be a list"):
        PhraseMatcher.load(tmp_path)


def test_a_language_phrase_that_contradicts_english_is_rejected(tmp_path):
    for lang, body in (("en", 'help = ["hilfe"]\n'), ("de", 'human = ["Hilfe"]\n')):
        (tmp_path / lang).mkdir()
        (tmp_path / lang / "intents.toml").write_text(body, "utf-8")
    with pytest.raises(ValueError, match="'hilfe' is listed for both"):
        PhraseMatcher.load(tmp_path)


def test_the_default_matcher_reads_the_installed_lists_once():
    assert default_matcher() is default_matcher()
    assert set(LANGS) <= set(default_matcher().locales)


def test_matching_is_fast(matcher):
    texts = [(locale, text) for locale, text, _ in TYPED] + [("en", t) for t in SHORT_OR_UNRELATED]
    cold = PhraseMatcher.load(LOCALES_DIR)  # nothing cached yet: every typo corrected afresh
    started = time.perf_counter()
    for locale, text in texts:
        cold.match(text, locale)
    per_match = (time.perf_counter() - started) / len(texts)
    assert per_match < 0.0005, f"{per_match * 1e6:.0f} µs per match"


def test_loading_without_the_english_phrases_fails_loudly(tmp_path):
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "intents.toml").write_text('help = ["hilfe"]\n', "utf-8")
    with pytest.raises(FileNotFoundError, match="English phrases are required"):
        PhraseMatcher.load(tmp_path)
