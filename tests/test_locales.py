"""The catalogs are complete and consistent, and the dialogs hold no customer-facing text.

Checks: every message id the code uses exists in en, de and es; all catalogs
have the same ids, the same placeholders per id and complete plural forms;
German and Spanish address the customer formally ("Sie", "usted");
typed words (yes/no, commands) never mean two things; and a source scan of
every module that renders catalog text (``dialogs/*.py``, ``bot/dialog.py``,
the "my data" report, the Rasa actions) finds no customer-facing literal and
no catalog id left unused.
"""

from __future__ import annotations

import ast
import re
import string
import unicodedata
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from bot.config import load_config
from bot.dialog import COMMANDS, normalise
from bot.i18n import I18n

ROOT = Path(__file__).resolve().parents[1]
LOCALES_DIR = ROOT / "locales"
LANGS = ("en", "de", "es")
# Every product module that renders catalog text: the dialogs and their engine,
# and the texts built outside a dialog turn (the "my data" report, the Rasa actions).
SCANNED = sorted((ROOT / "dialogs").glob("*.py")) + [
    ROOT / "bot" / "dialog.py",
    ROOT / "bot" / "mydata.py",
    ROOT / "bot" / "pushes.py",
    ROOT / "integrations" / "rasa_actions.py",
    ROOT / "bot" / "web" / "unsubscribe.py",
]
# Where product code lives; any module here that calls the catalog must be in SCANNED.
PRODUCT_DIRS = ("bot", "dialogs", "integrations")
CATALOG_CALLS = {"text", "plural", "words"}  # I18n's methods that look up a message id

# Where a message id goes: function or method name -> positions of msgid arguments.
MSGID_ARGS: dict[str, tuple[int, ...]] = {
    "say": (0,),
    "ask": (0,),
    "t": (0,),
    "tn": (0, 1),
    "button": (1,),
    "text": (1,),
    "plural": (2, 3),
    "words": (1,),
}
# Where text goes straight to the customer: these arguments must never be literals.
TEXT_ARGS: dict[str, tuple[int, ...]] = {
    "say_text": (0,),
    "ask_text": (0,),
    "Outbound": (0,),
    "Button": (1,),
    "literal_button": (1,),
    "utter_message": (0,),  # rasa-sdk's dispatcher: Rasa sends it to the customer as is
}
TEXT_KEYWORDS = {"text", "label"}
LOG_NAMES = {"log", "logger", "logging"}
MSGID_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
SENTENCE_RE = re.compile(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}")
CAPITALISED_WORD_RE = re.compile(r"\b[A-Z][a-z]{2,}")


# --------------------------------------------------------------------------- catalogs


def load_catalog(lang: str) -> Catalog:
    """Every ``.po`` file of a language merged into one catalog; an id defined twice fails."""
    merged = Catalog(locale=lang)
    for po in sorted((LOCALES_DIR / lang / "LC_MESSAGES").glob("*.po")):
        with po.open("rb") as fh:
            part = read_po(fh, locale=lang)
        for message in part:
            if not message.id:
                continue
            assert message.id not in merged, f"{lang}: {message.id!r} is defined twice ({po.name})"
            merged[message.id] = message
    return merged


@pytest.fixture(scope="module")
def catalogs() -> dict[str, Catalog]:
    return {lang: load_catalog(lang) for lang in LANGS}


def entries(catalog: Catalog) -> dict[str, list[str]]:
    """msgid -> its translations (one, or one per plural form); the header left out."""
    out = {}
    for message in catalog:
        if not message.id:
            continue
        msgid = message.id[0] if message.pluralizable else message.id
        out[msgid] = list(message.string) if message.pluralizable else [message.string]
    return out


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def test_every_catalog_has_the_same_ids(catalogs):
    english = set(entries(catalogs["en"]))
    assert len(english) > 40
    for lang in LANGS:
        assert set(entries(catalogs[lang])) == english, lang


def test_no_entry_is_empty_or_fuzzy(catalogs):
    for lang, catalog in catalogs.items():
        for message in catalog:
            if not message.id:
                continue
            assert not message.fuzzy, (lang, message.id)
            forms = message.string if message.pluralizable else [message.string]
            assert all(form.strip() for form in forms), (lang, message.id)


def test_placeholders_match_english(catalogs):
    english = {msgid: set().union(*map(placeholders, forms)) for msgid, forms in entries(catalogs["en"]).items()}
    for lang in LANGS:
        for msgid, forms in entries(catalogs[lang]).items():
            for form in forms:
                assert placeholders(form) == english[msgid], (lang, msgid, form)


# The house tone is formal: German "Sie", Spanish "usted". These words only ever
# address the customer informally ("du", "dir", "dein"; "tú", "te", "tu", "puedes").
INFORMAL = {
    "de": re.compile(r"\b(du|dich|dir|dein|deine[mnrs]?|hast|kannst|möchtest|willst|bist|musst)\b", re.IGNORECASE),
    "es": re.compile(r"\b(tú|te|ti|tu|tus|contigo|puedes|quieres|tienes|eres|estás|has)\b", re.IGNORECASE),
}


def _typed_words(msgid: str) -> bool:
    """Entries that list what a customer may type (their words, not ours)."""
    return msgid.startswith(("words.", "commands.")) or ".words." in msgid


def test_informal_address_is_recognised():
    assert INFORMAL["de"].search("Das hast du gewählt:") and INFORMAL["de"].search("Ich schreibe dir")
    assert not INFORMAL["de"].search("Ich schreibe Ihnen auf Deutsch. Das haben Sie gewählt:")
    assert INFORMAL["es"].search("Te escribiré en español.") and INFORMAL["es"].search("lo que has elegido")
    assert not INFORMAL["es"].search("Le escribiré en español. Esto es lo que ha elegido; parte de sus datos.")


@pytest.mark.parametrize("lang", sorted(INFORMAL))
def test_german_and_spanish_address_the_customer_formally(catalogs, lang):
    informal = [
        (msgid, form)
        for msgid, forms in entries(catalogs[lang]).items()
        if not _typed_words(msgid)
        for form in forms
        if INFORMAL[lang].search(form)
    ]
    assert informal == []


def test_plural_forms_are_declared_and_complete(catalogs):
    for lang, catalog in catalogs.items():
        header = dict(catalog.mime_headers)
        assert "nplurals=" in header["Plural-Forms"], lang
        plurals = [m for m in catalog if m.id and m.pluralizable]
        assert plurals, f"{lang} has no plural entries"
        for message in plurals:
            assert len(message.string) == catalog.num_plurals, (lang, message.id)


def test_plurals_pick_the_right_form():
    i18n = I18n.load(LOCALES_DIR)
    assert i18n.plural("en", "stop.done", "stop.done.plural", 1).startswith("Done. I've switched off 1 option ")
    assert i18n.plural("en", "stop.done", "stop.done.plural", 3).startswith("Done. I've switched off 3 options ")
    assert "1 Option " in i18n.plural("de", "stop.done", "stop.done.plural", 1)
    assert "2 Optionen " in i18n.plural("de", "stop.done", "stop.done.plural", 2)
    assert "1 opción " in i18n.plural("es", "stop.done", "stop.done.plural", 1)
    assert "4 opciones " in i18n.plural("es", "stop.done", "stop.done.plural", 4)


def test_every_configured_purpose_has_a_question_and_a_name(catalogs):
    for purpose in load_config(None).consent_purposes:
        for lang in LANGS:
            ids = entries(catalogs[lang])
            assert f"consent.{purpose.id}.question" in ids, (lang, purpose.id)
            assert f"consent.{purpose.id}.name" in ids, (lang, purpose.id)


def test_typed_words_never_mean_two_things():
    """A yes-word is never a no-word or a command, in any language (English words work everywhere)."""
    i18n = I18n.load(LOCALES_DIR)
    meanings: dict[str, set[str]] = {}
    groups = ["words.yes", "words.no"] + [f"commands.{c}" for c in COMMANDS]
    for lang in LANGS:
        for group in groups:
            words = i18n.words(lang, group)
            assert words, (lang, group)
            for word in words:
                key = normalise(word)
                assert key, (lang, group, word)
                meanings.setdefault(key, set()).add(group)
    clashes = {word: groups for word, groups in meanings.items() if len(groups) > 1}
    assert clashes == {}


def test_fixed_button_labels_fit_whatsapp_reply_buttons():
    i18n = I18n.load(LOCALES_DIR)
    fixed = ["buttons.yes", "buttons.no", "buttons.done", "buttons.choose", "menu.privacy", "menu.language", "menu.help",
             "signup.start", "signup.continue", "signup.change_language"]  # fmt: skip
    for lang in LANGS:
        for msgid in fixed:
            assert len(i18n.text(lang, msgid)) <= 20, (lang, msgid)


# --------------------------------------------------------------------------- I18n


def test_i18n_loads_the_installed_catalogs_by_default():
    i18n = I18n.load()
    assert set(LANGS) <= set(i18n.locales)
    assert i18n.text("de", "buttons.yes") == "Ja"


def test_i18n_falls_back_to_english_and_keeps_unknown_placeholders(tmp_path):
    (tmp_path / "en" / "LC_MESSAGES").mkdir(parents=True)
    (tmp_path / "de" / "LC_MESSAGES").mkdir(parents=True)
    (tmp_path / "en" / "LC_MESSAGES" / "messages.po").write_text(
        'msgid ""\nmsgstr "Content-Type: text/plain; charset=utf-8\\n"\n\n'
        'msgid "greet"\nmsgstr "Hello {name}"\n\nmsgid "only.en"\nmsgstr "English only"\n',
        "utf-8",
    )
    (tmp_path / "de" / "LC_MESSAGES" / "messages.po").write_text(
        'msgid ""\nmsgstr "Content-Type: text/plain; charset=utf-8\\n"\n\n'
        'msgid "greet"\nmsgstr "Hallo {name}"\n\nmsgid "only.en"\nmsgstr ""\n',
        "utf-8",
    )
    i18n = I18n.load(tmp_path)
    assert i18n.locales == ("de", "en")
    assert i18n.text("de", "greet", name="Ana") == "Hallo Ana"
    assert i18n.text("de", "only.en") == "English only"  # empty entry: English
    assert i18n.text("fr", "greet", name="Ana") == "Hello Ana"  # unknown locale: English
    assert i18n.text("de", "greet") == "Hallo {name}"  # a forgotten parameter never crashes a turn


def test_i18n_formats_numbers_dates_and_money_per_locale():
    i18n = I18n.load(LOCALES_DIR)
    assert i18n.format_percent("en", 0.15) == "15%"
    assert i18n.format_percent("de", 0.15) == "15\xa0%"
    assert i18n.format_date("de", date(2026, 11, 18)) == "18.11.2026"
    assert i18n.format_date("en", date(2026, 11, 18), "long") == "November 18, 2026"
    assert i18n.format_currency("es", Decimal("12.50"), "EUR") == "12,50\xa0€"
    assert i18n.format_currency("en", Decimal("12.50"), "EUR") == "€12.50"
    assert [i18n.native_name(code) for code in LANGS] == ["English", "Deutsch", "Español"]


# --------------------------------------------------------------------------- source scan


def _call_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _is_log_call(call: ast.Call) -> bool:
    func = call.func
    return isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in LOG_NAMES


def _exempt_nodes(tree: ast.AST) -> set[int]:
    """Docstrings, annotations, log calls, raised errors and a push's history ``detail``: for developers
    and the shop, not customers."""
    exempt: set[int] = set()
    for node in ast.walk(tree):
        roots: list[ast.AST] = []
        if isinstance(node, ast.arg) and node.annotation is not None:
            roots.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            roots.append(node)  # a docstring or a bare string statement
        elif isinstance(node, ast.Raise):
            roots.append(node)
        elif isinstance(node, ast.Call) and _is_log_call(node):
            roots.append(node)
        elif isinstance(node, ast.keyword) and node.arg == "detail":
            roots.append(node.value)
        for root in roots:
            exempt.update(id(n) for n in ast.walk(root))
    return exempt


def _looks_customer_facing(text: str) -> bool:
    if any(unicodedata.category(ch) in ("Lu", "Ll", "Lt", "Lo") and not ch.isascii() for ch in text):
        return True
    return bool(SENTENCE_RE.search(text) or CAPITALISED_WORD_RE.search(text))


def _msgid_pattern(node: ast.AST) -> str | None:
    """A literal msgid, or a regex for an f-string one (f"consent.{p}.question"); None otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.escape(node.value)
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(re.escape(str(value.value)))
            else:
                parts.append(r"[a-z0-9_]+")
        return "".join(parts)
    return None


def scan(source: str, known_ids: set[str]) -> tuple[list[str], set[str]]:
    """Problems found in ``source``, and the msgid patterns it uses.

    A problem is a customer-facing literal (a sentence, a capitalised word, a
    non-ASCII letter) outside docstrings, logs and raised errors; a literal
    passed where the customer sees it directly (``say_text``, ``Outbound``,
    ``Button`` labels); or a message id that no catalog has.
    """
    tree = ast.parse(source)
    exempt = _exempt_nodes(tree)
    problems: list[str] = []
    used: set[str] = set()

    checked: set[int] = set()

    def check_msgid(node: ast.AST) -> None:
        checked.update(id(n) for n in ast.walk(node))
        pattern = _msgid_pattern(node)
        if pattern is None:
            return  # computed elsewhere; the literal that feeds it is checked on its own
        used.add(pattern)
        if not any(re.fullmatch(pattern, known) for known in known_ids):
            problems.append(f"line {node.lineno}: unknown message id {ast.unparse(node)}")

    for node in ast.walk(tree):
        if id(node) in exempt:
            continue
        if isinstance(node, ast.Call):
            name = _call_name(node)
            for position in MSGID_ARGS.get(name or "", ()):
                if position < len(node.args):
                    check_msgid(node.args[position])
            for keyword in node.keywords:
                if keyword.arg == "msgid":
                    check_msgid(keyword.value)
            direct = [node.args[p] for p in TEXT_ARGS.get(name or "", ()) if p < len(node.args)]
            if name in TEXT_ARGS:
                direct += [k.value for k in node.keywords if k.arg in TEXT_KEYWORDS]
            for arg in direct:
                if isinstance(arg, (ast.Constant, ast.JoinedStr)):
                    problems.append(f"line {arg.lineno}: literal text sent to the customer: {ast.unparse(arg)}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in checked:
            text = node.value
            if _looks_customer_facing(text):
                problems.append(f"line {node.lineno}: customer-facing literal {text!r}")
            elif MSGID_RE.match(text) and text.split(".")[0] in {k.split(".")[0] for k in known_ids}:
                used.add(re.escape(text))
                if text not in known_ids:
                    problems.append(f"line {node.lineno}: unknown message id {text!r}")
    return problems, used


@pytest.fixture(scope="module")
def known_ids(catalogs) -> dict[str, set[str]]:
    """Every id a catalog answers to, plural ids ("stop.done.plural") included."""
    ids: dict[str, set[str]] = {}
    for lang, catalog in catalogs.items():
        ids[lang] = set(entries(catalog))
        ids[lang] |= {m.id[1] for m in catalog if m.id and m.pluralizable}
    return ids


def test_scanner_catches_literals_in_a_sample(known_ids):
    bad = '''
def step(ctx):
    ctx.say("Hello there")
    ctx.say("hello")
    ctx.say("signup.no_such_key")
    ctx.ask("signup.language_check", [button("yes", "Yes please")])
    ctx.say_text("Thanks")
    ctx.messages.append(Outbound(text="ok"))
    greeting = "Welcome"
    farewell = "¡adiós!"
    ctx.say_text(f"Hi {ctx.first_name}")
    dispatcher.utter_message(text="ok")
'''
    problems, _ = scan(bad, known_ids["en"])
    joined = "\n".join(problems)
    for line in range(3, 13):
        assert f"line {line}:" in joined, (line, joined)

    good = '''
"""Module docstring with Sentences and Ünïcode."""
import logging
log = logging.getLogger(__name__)

def step(ctx, purpose):
    """Docstring: Says Hello."""
    log.info("dialog.something happened for %s", purpose)
    if purpose is None:
        raise ValueError(f"Unknown purpose {purpose!r}")
    msgid = "privacy.turn_off" if ctx.granted(purpose) else "privacy.turn_on"
    ctx.say_text("\\n".join([ctx.t("privacy.title"), ctx.t(msgid, name=purpose), ""]))
    ctx.ask(f"consent.{purpose}.question", [button("yes", "buttons.yes", means="yes")], shop=ctx.config.shop_name)
    return {"id": "t:" + purpose, "means": "no"}
'''
    assert scan(good, known_ids["en"])[0] == []


def test_dialog_code_has_no_customer_facing_literals_and_only_known_ids(known_ids):
    for path in SCANNED:
        for lang in LANGS:
            problems, _ = scan(path.read_text("utf-8"), known_ids[lang])
            assert problems == [], f"{path.relative_to(ROOT)} ({lang}):\n" + "\n".join(problems)


def unused_ids(known: set[str], paths: list[Path]) -> set[str]:
    """The ids of ``known`` that no module of ``paths`` uses, literally or through an f-string pattern."""
    used: set[str] = set()
    for path in paths:
        used |= scan(path.read_text("utf-8"), known)[1]
    return {msgid for msgid in known if not any(re.fullmatch(p, msgid) for p in used)}


def test_every_catalog_id_is_used_by_the_code(known_ids):
    assert unused_ids(known_ids["en"], SCANNED) == set()


def test_an_id_no_code_uses_is_reported(known_ids):
    never_said = {"signup.never_said", "mydata.never_said", "rasa.never_said"}
    assert unused_ids(known_ids["en"] | never_said, SCANNED) == never_said


def _calls_the_catalog(source: str) -> bool:
    """Whether ``source`` looks up a message id: ``<something>i18n.text/plural/words(...)``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CATALOG_CALLS:
            receiver = ast.unparse(node.func.value)
            if receiver.split(".")[-1] == "i18n":
                return True
    return False


def test_every_module_that_renders_catalog_text_is_scanned():
    assert _calls_the_catalog("def f(self):\n    return self.i18n.text(self.locale, 'mydata.title')\n")
    renders = {
        path.relative_to(ROOT)
        for folder in PRODUCT_DIRS
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.name != "i18n.py" and _calls_the_catalog(path.read_text("utf-8"))
    }
    assert renders, "the catalog must be called somewhere"
    assert renders <= {path.relative_to(ROOT) for path in SCANNED}
