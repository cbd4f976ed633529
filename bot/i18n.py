"""Customer-facing text: gettext catalogs read with Babel, English as fallback.

The ``.po`` files under ``locales/<lang>/LC_MESSAGES/`` are compiled in memory
at start-up (``read_po`` then ``write_mo`` into ``babel.support.Translations``),
so there is no build step and a shop can edit a catalog and restart. Message
ids are stable keys ("signup.welcome"); the English catalog holds the English
text, and every other catalog falls back to it for a missing or empty entry.
Texts use ``str.format`` placeholders ("Hi {name}!").
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from decimal import Decimal
from importlib import resources
from io import BytesIO
from pathlib import Path

from babel import Locale
from babel.dates import format_date as babel_format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency as babel_format_currency
from babel.numbers import format_percent as babel_format_percent
from babel.support import Translations

log = logging.getLogger(__name__)

FALLBACK_LOCALE = "en"
WORD_SEPARATOR = "|"  # catalog entries that list words ("yes|y|ok") use it


class _KeepMissing(dict):
    """Leaves an unknown ``{placeholder}`` visible instead of raising mid-conversation."""

    def __missing__(self, key: str) -> str:
        log.warning("i18n.missing_param %s", key)
        return "{" + key + "}"


def _format(template: str, params: dict[str, object]) -> str:
    if not params and "{" not in template:
        return template
    try:
        return template.format_map(_KeepMissing(params))
    except (ValueError, IndexError, AttributeError):
        log.warning("i18n.bad_template %r", template)
        return template


def _compile(po_path: Path, locale: str) -> Translations:
    with po_path.open("rb") as fh:
        catalog = read_po(fh, locale=locale)
    buf = BytesIO()
    write_mo(buf, catalog)  # skips fuzzy and empty entries, so they fall back
    buf.seek(0)
    return Translations(fp=buf)


def default_locales_dir() -> Path:
    """The directory of the installed ``locales`` package (ships the .po files)."""
    return Path(str(resources.files("locales")))


class I18n:
    """Translations for the available locales, with English behind every one."""

    def __init__(self, catalogs: dict[str, Translations]) -> None:
        if FALLBACK_LOCALE not in catalogs:
            raise ValueError("the English catalog is required: it is the fallback")
        self._catalogs = catalogs
        fallback = catalogs[FALLBACK_LOCALE]
        for code, translations in catalogs.items():
            if code != FALLBACK_LOCALE:
                translations.add_fallback(fallback)

    @classmethod
    def load(cls, locales_dir: Path | None = None) -> "I18n":
        """Read every ``<lang>/LC_MESSAGES/*.po`` below ``locales_dir``.

        One file per flow (messages.po, categories.po, complaint.po ...), all
        merged into the language's one catalog: ids are unique across files.
        """
        base = Path(locales_dir) if locales_dir is not None else default_locales_dir()
        catalogs: dict[str, Translations] = {}
        for po in sorted(base.glob("*/LC_MESSAGES/*.po")):
            lang = po.parent.parent.name
            compiled = _compile(po, lang)
            if lang in catalogs:
                catalogs[lang].merge(compiled)
            else:
                catalogs[lang] = compiled
        return cls(catalogs)

    @property
    def locales(self) -> tuple[str, ...]:
        return tuple(sorted(self._catalogs))

    def _translations(self, locale: str | None) -> Translations:
        return self._catalogs.get(locale or FALLBACK_LOCALE) or self._catalogs[FALLBACK_LOCALE]

    def text(self, locale: str | None, msgid: str, **params: object) -> str:
        return _format(self._translations(locale).gettext(msgid), params)

    def plural(self, locale: str | None, msgid: str, msgid_plural: str, n: int, **params: object) -> str:
        """The form of ``msgid`` for ``n`` under the locale's plural rule; ``{n}`` is filled in."""
        params.setdefault("n", n)
        return _format(self._translations(locale).ngettext(msgid, msgid_plural, n), params)

    def words(self, locale: str | None, msgid: str) -> tuple[str, ...]:
        """The ``|``-separated words of a catalog entry ("yes|y|ok"), empty ones dropped."""
        raw = self._translations(locale).gettext(msgid)
        if raw == msgid:
            return ()
        return tuple(w.strip() for w in raw.split(WORD_SEPARATOR) if w.strip())

    @staticmethod
    def native_name(locale: str) -> str:
        """A language's name in that language ("Deutsch", "Español"), from Babel's CLDR data."""
        name = Locale.parse(locale).get_display_name(locale) or locale
        return name[:1].upper() + name[1:]

    def format_percent(self, locale: str | None, value: float | Decimal, format: str | None = None) -> str:
        return babel_format_percent(value, format=format, locale=locale or FALLBACK_LOCALE)

    def format_date(self, locale: str | None, value: date | datetime, format: str = "medium") -> str:
        return babel_format_date(value, format=format, locale=locale or FALLBACK_LOCALE)

    def format_currency(
        self, locale: str | None, amount: float | Decimal, currency: str, format: str | None = None
    ) -> str:
        return babel_format_currency(amount, currency, format=format, locale=locale or FALLBACK_LOCALE)
