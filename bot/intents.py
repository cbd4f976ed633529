"""What a free-text message is about: an intent name and a confidence.

The engine asks for an intent only when a text is neither a command word nor
an answer to the open question (see ``bot.dialog``). Two backends answer:

- ``PhraseMatcher`` (the default, offline): per-language phrase lists in
  ``locales/<lang>/intents.toml``, English always checked as well, so a
  German customer who writes "talk to a person" is understood.
- an NLU service (``integrations.rasa_nlu.RasaNlu`` when ``RASA_URL`` is set),
  behind the ``NluBackend`` protocol; when it cannot answer, the phrase
  matcher does.

How the phrase matcher scores, and why. Messages are short and typed on
phones, so every word is first corrected to the nearest word of the phrase
lists (rapidfuzz's optimal string alignment distance, so a swap of two
letters is one typo): one typo is allowed in words of 4 to 7 letters, two in
longer ones, none in words of 3 letters or fewer, and the first letter must
be right. That keeps "hlep" → "help" and "mnu" → "menu" while "ok", "no", a
name or a number stay unknown. A phrase matches when its words (weighted by
length, order ignored) are in the message; the confidence is

    coverage × (1 - typo penalty) × (0.7 + 0.3 × how much of the message it explains)

so a complete phrase that is most of the message scores near 1, a typo costs
a little, and a lone "hi" at the start of a long complaint loses to the
complaint. ``config.intents.threshold`` (0.8 by default) decides what is
acted on; the engine applies it to every backend alike.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping, Protocol

from rapidfuzz import process
from rapidfuzz.distance import OSA

from bot.dialog import normalise
from bot.i18n import FALLBACK_LOCALE, default_locales_dir

# Every intent the phrase lists may name; the engine decides what each one does.
INTENTS = ("greeting", "help", "menu", "stop", "complaint", "human", "language", "categories", "privacy", "thanks")
PHRASES_FILE = "intents.toml"

MIN_COVERAGE = 0.75  # share of a phrase's letters the message must contain
BASE_CONFIDENCE = 0.7  # a complete phrase inside a long message starts here ...
EXPLAIN_CHARS = 24  # ... and reaches 1 when it covers this many letters (or the whole message)
TYPO_COST = 0.5  # a typo in every letter would halve the confidence
MAX_WORDS = 40  # a longer message is judged by its first words
MIN_FUZZY_LENGTH = 3  # shorter words must be spelt exactly
CORRECTIONS_CACHED = 20_000  # typed words remembered per language before the cache starts over
# The stop intent switches marketing off, so "please don't stop sending me offers"
# must not be read as "stop sending me offers": a negation the phrase lacks rules it out.
NEGATION_GUARDED = frozenset({"stop"})
NEGATIONS = frozenset({"dont", "not", "never", "nicht", "nie", "kein", "keine", "no", "nunca"})


@dataclass(frozen=True, slots=True)
class Intent:
    """An intent name (one of ``INTENTS``, or whatever an NLU service calls it) and a confidence 0..1."""

    name: str
    confidence: float


class IntentMatcher(Protocol):
    """Classifies a text offline, within a turn (no I/O)."""

    def match(self, text: str, locale: str) -> Intent | None: ...


class NluBackend(Protocol):
    """An NLU service asked before the turn runs (it may do I/O)."""

    async def parse(self, text: str, *, message_id: str | None = None) -> Intent | None:
        """The service's intent for ``text`` (possibly below the threshold); None when it could not answer."""
        ...


def typo_budget(length: int) -> int:
    """Typos tolerated between a typed word and a known word, by the longer one's length."""
    if length <= 3:
        return 0
    return 1 if length <= 7 else 2


@dataclass(frozen=True, slots=True)
class _Phrase:
    intent: str
    words: frozenset[str]
    weight: int  # letters in its distinct words


class _PhraseIndex:
    """The phrases one language is matched against, prepared once."""

    def __init__(self, phrases: Iterable[tuple[str, str]]) -> None:
        self.exact: dict[str, str] = {}
        self.phrases: list[_Phrase] = []
        self.postings: dict[str, list[int]] = {}
        for intent, text in phrases:
            other = self.exact.setdefault(text, intent)
            if other != intent:
                raise ValueError(f"the phrase {text!r} is listed for both {other!r} and {intent!r}")
            words = frozenset(text.split())
            for word in words:
                self.postings.setdefault(word, []).append(len(self.phrases))
            self.phrases.append(_Phrase(intent, words, sum(map(len, words))))
        self.by_initial: dict[str, list[str]] = {}
        for word in self.postings:
            self.by_initial.setdefault(word[0], []).append(word)
        self._corrections: dict[str, tuple[str, int] | None] = {}

    def correct(self, word: str) -> tuple[str, int] | None:
        """(known word, typos) for a typed word, or None when no known word is close enough."""
        if word in self.postings:
            return word, 0
        if len(word) < MIN_FUZZY_LENGTH:
            return None
        if word in self._corrections:
            return self._corrections[word]
        found = None
        candidates = self.by_initial.get(word[0], ())
        for known, typos, _ in process.extract(
            word, candidates, scorer=OSA.distance, score_cutoff=typo_budget(len(word) + 2), limit=3
        ):
            if typos <= typo_budget(max(len(word), len(known))):
                found = (known, int(typos))
                break
        if len(self._corrections) >= CORRECTIONS_CACHED:
            self._corrections.clear()
        self._corrections[word] = found
        return found

    def best(self, text: str) -> Intent | None:
        intent = self.exact.get(text)
        if intent is not None:
            return Intent(intent, 1.0)
        words = text.split()[:MAX_WORDS]
        matched: dict[int, int] = {}  # phrase -> letters of its words found in the message
        typos: dict[int, int] = {}
        seen: set[str] = set()
        for word in words:
            hit = self.correct(word)
            if hit is None or hit[0] in seen:
                continue
            known, edits = hit
            seen.add(known)
            for phrase in self.postings[known]:
                matched[phrase] = matched.get(phrase, 0) + len(known)
                if edits:
                    typos[phrase] = typos.get(phrase, 0) + edits
        span = min(sum(map(len, words)), EXPLAIN_CHARS)
        negations = NEGATIONS.intersection(words)
        best: Intent | None = None
        for index, letters in matched.items():
            phrase = self.phrases[index]
            coverage = letters / phrase.weight
            if coverage < MIN_COVERAGE:
                continue
            if negations and phrase.intent in NEGATION_GUARDED and not negations <= phrase.words:
                continue
            penalty = TYPO_COST * typos.get(index, 0) / letters
            explained = min(1.0, letters / span)
            confidence = coverage * (1 - penalty) * (BASE_CONFIDENCE + (1 - BASE_CONFIDENCE) * explained)
            if best is None or confidence > best.confidence:
                best = Intent(phrase.intent, round(confidence, 3))
        return best


class PhraseMatcher:
    """The offline matcher: phrase lists per language, English as a fallback for every language."""

    def __init__(self, phrases: Mapping[str, Mapping[str, Iterable[str]]]) -> None:
        """``phrases``: language → intent → phrases (any spelling; they are normalised here)."""
        normalised: dict[str, list[tuple[str, str]]] = {}
        for lang, by_intent in phrases.items():
            entries = normalised.setdefault(lang, [])
            for intent, texts in by_intent.items():
                if intent not in INTENTS:
                    raise ValueError(f"{lang}: unknown intent {intent!r} (known: {', '.join(INTENTS)})")
                entries.extend((intent, key) for key in dict.fromkeys(map(normalise, texts)) if key)
        english = normalised.get(FALLBACK_LOCALE, [])
        self._indexes = {
            lang: _PhraseIndex(dict.fromkeys(entries + (english if lang != FALLBACK_LOCALE else [])))
            for lang, entries in normalised.items()
        }
        self._fallback = self._indexes.get(FALLBACK_LOCALE) or _PhraseIndex([])

    @classmethod
    def load(cls, locales_dir: Path | None = None) -> PhraseMatcher:
        """Read ``<lang>/intents.toml`` below ``locales_dir`` (default: the installed ``locales``)."""
        base = Path(locales_dir) if locales_dir is not None else default_locales_dir()
        phrases: dict[str, dict[str, list[str]]] = {}
        for path in sorted(base.glob(f"*/{PHRASES_FILE}")):
            with path.open("rb") as fh:
                data = tomllib.load(fh)
            lang = path.parent.name
            for intent, texts in data.items():
                if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                    raise ValueError(f"{path}: {intent} must be a list of phrases")
            phrases[lang] = data
        if FALLBACK_LOCALE not in phrases:
            # A package built without them would understand no free text at all, silently.
            raise FileNotFoundError(f"no {FALLBACK_LOCALE}/{PHRASES_FILE} in {base}: the English phrases are required")
        return cls(phrases)

    @property
    def locales(self) -> tuple[str, ...]:
        return tuple(sorted(self._indexes))

    def match(self, text: str, locale: str) -> Intent | None:
        """The best intent for ``text`` with its confidence, or None; the caller applies the threshold."""
        normal = normalise(text)
        if not any(ch.isalpha() for ch in normal):  # numbers, emoji, punctuation: never an intent
            return None
        return self._indexes.get(locale, self._fallback).best(normal)


@lru_cache(maxsize=1)
def default_matcher() -> PhraseMatcher:
    """The phrase lists shipped in ``locales/``, read once per process (every engine shares them)."""
    return PhraseMatcher.load()
