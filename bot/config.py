"""The shop's configuration file (``TOUCHPOINT_CONFIG``), validated with pydantic.

TOML, because Python reads it without another dependency and shops edit it by
hand. Anything not given falls back to ``bot/default_config.toml``.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import re
from typing import Any, Literal

from pydantic import BaseModel as _PydanticModel
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

SUPPORTED_LOCALES = ("en", "de", "es")
ID_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"


class BaseModel(_PydanticModel):
    """Every table of the config file: an unknown key (a typo) is an error at start-up, not ignored."""

    model_config = ConfigDict(extra="forbid")


class LocalText(BaseModel):
    """A text the shop writes itself (a category name, a survey question) in each language.

    English is required: it is the fallback, as in the catalogs.
    """

    en: str = Field(min_length=1)
    de: str | None = None
    es: str | None = None

    def get(self, locale: str | None) -> str:
        return getattr(self, locale or "en", None) or self.en


class Category(BaseModel):
    """A product category customers can pick as a favourite; the welcome code is ``percent`` off."""

    id: str = Field(pattern=ID_PATTERN)
    name: LocalText
    url: str = ""
    percent: int = Field(default=10, ge=1, le=40)  # the welcome discount, at most 40 %


class Discounts(BaseModel):
    max_favourites: int = Field(default=5, ge=1, le=20)
    valid_days: int = Field(default=30, ge=1)  # a welcome code's lifetime
    max_percent: int = Field(default=40, ge=1, le=40)
    # The link sent with each code; {url} is the category's url, {code} the code.
    link_template: str = "{url}?code={code}"


class Complaints(BaseModel):
    # A full match is required; the customer may also skip the order number.
    order_number_pattern: str = r"^[A-Za-z0-9-]{4,20}$"
    # Loyal: at least this many orders, or a customer for at least this many months
    # (profile attributes "order_count" and "customer_since", from the shop API).
    loyalty_min_orders: int = Field(default=5, ge=0)
    loyalty_min_months: int = Field(default=12, ge=0)
    loyalty_percent: int = Field(default=20, ge=1, le=40)
    loyalty_valid_days: int = Field(default=90, ge=1)

    @field_validator("order_number_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        re.compile(value)
        return value


class Support(BaseModel):
    """When people answer a handed-over conversation; the customer is told when to expect them."""

    timezone: str = "UTC"
    days: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])  # ISO weekdays, Monday = 1
    opens: str = Field(default="09:00", pattern=r"^\d{2}:\d{2}$")
    closes: str = Field(default="18:00", pattern=r"^\d{2}:\d{2}$")
    reply_within_minutes: int = Field(default=60, ge=1)


class ConversationRules(BaseModel):
    # A flow left for longer restarts politely instead of resuming where it stopped.
    resume_minutes: int = Field(default=24 * 60, ge=1)


class Intents(BaseModel):
    # 0..1: a phrase match (rapidfuzz) or a Rasa intent below this is not trusted.
    threshold: float = Field(default=0.8, ge=0, le=1)
    rasa_timeout_seconds: float = Field(default=2.0, gt=0)


class SurveyFollowUp(BaseModel):
    """Ask question ``ask`` next when the answer satisfies ``when`` ("<=2", ">=4", "==no")."""

    when: str = Field(pattern=r"^(<=|>=|==|<|>)\s*\S+$")
    ask: str


class SurveyQuestion(BaseModel):
    id: str = Field(pattern=ID_PATTERN)
    kind: Literal["rating5", "rating10", "choice", "text"]
    text: LocalText
    options: list[LocalText] = Field(default_factory=list)  # for kind "choice"; answers are 1-based indexes
    followups: list[SurveyFollowUp] = Field(default_factory=list)
    followup_only: bool = False  # asked only when a follow-up names it


class SurveyReward(BaseModel):
    percent: int = Field(default=5, ge=1, le=40)
    category: str | None = None  # None: the customer's first favourite, else the first catalog category
    valid_days: int = Field(default=30, ge=1)


class Survey(BaseModel):
    id: str = Field(pattern=ID_PATTERN)
    title: LocalText
    questions: list[SurveyQuestion] = Field(min_length=1)
    expire_hours: int = Field(default=72, ge=1)
    reward: SurveyReward | None = None

    @model_validator(mode="after")
    def _followups_exist(self) -> "Survey":
        ids = {q.id for q in self.questions}
        for question in self.questions:
            if question.kind == "choice" and not question.options:
                raise ValueError(f"survey {self.id}: choice question {question.id} has no options")
            for followup in question.followups:
                if followup.ask not in ids:
                    raise ValueError(f"survey {self.id}: follow-up {followup.ask!r} is not a question")
        return self

    def question(self, question_id: str) -> SurveyQuestion | None:
        return next((q for q in self.questions if q.id == question_id), None)


class ConsentPurpose(BaseModel):
    """One thing the shop asks permission for; wording lives in ``locales/``.

    ``version`` is stored with every answer so that a changed wording can be
    re-asked; ``marketing`` purposes are all withdrawn by STOP.
    """

    id: str = Field(pattern=ID_PATTERN)
    version: str = "1"
    marketing: bool = True


class ChannelRateLimit(BaseModel):
    """Sends per second; 0 switches a limit off."""

    per_second: float = Field(default=0.0, ge=0)
    per_chat_per_second: float = Field(default=0.0, ge=0)
    burst: float = Field(default=1.0, ge=1)
    chat_burst: float = Field(default=3.0, ge=1)


class QuietHours(BaseModel):
    """No marketing between ``start`` and ``end`` in the customer's own time zone (may span midnight)."""

    start: str = Field(default="21:00", pattern=r"^\d{2}:\d{2}$")
    end: str = Field(default="09:00", pattern=r"^\d{2}:\d{2}$")


class Caps(BaseModel):
    """Marketing touchpoints per customer over rolling windows; transactional ones do not count."""

    per_day: int = Field(default=2, ge=0)
    per_week: int = Field(default=5, ge=0)
    # A push at least this important is deferred until the cap allows it instead of skipped.
    defer_priority: int = Field(default=80, ge=0, le=100)


CHANNELS = ("whatsapp", "viber", "telegram", "sms", "email")


class Policy(BaseModel):
    timezone: str = "UTC"  # for customers whose time zone the shop did not send
    quiet_hours: QuietHours = Field(default_factory=QuietHours)
    caps: Caps = Field(default_factory=Caps)
    fallback_order: list[str] = Field(default_factory=lambda: list(CHANNELS))
    # A marketing message not delivered within this time goes to the next allowed channel.
    receipt_timeout_minutes: int = Field(default=60, ge=1)
    # An order within this time after a click on a push's link counts as its conversion.
    attribution_days: int = Field(default=7, ge=1)

    @field_validator("fallback_order")
    @classmethod
    def _known_channels(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in CHANNELS]
        if unknown:
            raise ValueError(f"unknown channels {unknown}; known: {list(CHANNELS)}")
        return value


class WhatsAppTemplate(BaseModel):
    """An approved template; ``params`` name the push variables that fill {{1}}, {{2}} ..."""

    name: str
    language: str = "en"
    params: list[str] = Field(default_factory=list)


class TouchpointRule(BaseModel):
    """One kind of proactive message: who may get it, how important it is, and its words."""

    purpose: str  # the consent purpose it needs on the chosen channel
    transactional: bool = False  # exempt from caps and quiet hours, never from STOP
    priority: int = Field(default=50, ge=0, le=100)
    text: LocalText  # str.format with the push's variables, e.g. {first_name}, {product}, {url}
    subject: LocalText | None = None  # e-mail subject
    whatsapp_template: WhatsAppTemplate | None = None
    cooldown_days: int = Field(default=0, ge=0)  # e.g. one cart offer per store per N days
    discount_percent: int | None = Field(default=None, ge=1, le=40)  # a code issued with it (cart offer)


class Links(BaseModel):
    """Where the account-link deep links point (shop API link tokens); empty: that channel is left out."""

    telegram_bot_username: str = Field(default="", pattern=r"^(@?[A-Za-z][A-Za-z0-9_]{4,31})?$")
    viber_chat_uri: str = ""
    whatsapp_number: str = ""  # with country code; "+" and spaces are ignored
    # The message a WhatsApp link pre-fills; it carries the token back to us, so {token} is required.
    whatsapp_text: LocalText = Field(
        default_factory=lambda: LocalText(en="Hello! Please link my customer account. Code: {token}")
    )

    @field_validator("whatsapp_text")
    @classmethod
    def _has_token(cls, value: LocalText) -> LocalText:
        for lang in ("en", "de", "es"):
            text = getattr(value, lang)
            if text is not None and "{token}" not in text:
                raise ValueError(f"links.whatsapp_text.{lang} must contain {{token}}")
        return value


class ShopConfig(BaseModel):
    shop_name: str = "Shop"
    default_locale: str = "en"
    locales: list[str] = Field(default_factory=lambda: list(SUPPORTED_LOCALES))
    consent_purposes: list[ConsentPurpose]
    rate_limits: dict[str, ChannelRateLimit] = Field(default_factory=dict)
    categories: list[Category] = Field(default_factory=list)
    discounts: Discounts = Field(default_factory=Discounts)
    complaints: Complaints = Field(default_factory=Complaints)
    support: Support = Field(default_factory=Support)
    conversation: ConversationRules = Field(default_factory=ConversationRules)
    intents: Intents = Field(default_factory=Intents)
    surveys: list[Survey] = Field(default_factory=list)
    policy: Policy = Field(default_factory=Policy)
    links: Links = Field(default_factory=Links)
    # The SMS gateway's request/response mapping (integrations.sms.SmsGateway); the URL and token are settings.
    sms_gateway: dict[str, Any] = Field(default_factory=dict)
    touchpoints: dict[str, TouchpointRule] = Field(default_factory=dict)

    @field_validator("locales")
    @classmethod
    def _known_locales(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in SUPPORTED_LOCALES]
        if unknown:
            raise ValueError(f"unsupported locales {unknown}; supported: {list(SUPPORTED_LOCALES)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ShopConfig":
        if self.complaints.loyalty_percent > self.discounts.max_percent:
            raise ValueError(
                f"complaints.loyalty_percent {self.complaints.loyalty_percent} is above the {self.discounts.max_percent} % cap"
            )
        for category in self.categories:
            if category.percent > self.discounts.max_percent:
                raise ValueError(f"category {category.id}: {category.percent} % is above the {self.discounts.max_percent} % cap")
        for name, rule in self.touchpoints.items():
            if self.purpose(rule.purpose) is None:
                raise ValueError(f"touchpoint {name}: unknown consent purpose {rule.purpose!r}")
        for kind in ("categories", "surveys"):
            ids = [item.id for item in getattr(self, kind)]
            if len(ids) != len(set(ids)):
                raise ValueError(f"duplicate {kind} ids")
        return self

    def purpose(self, purpose_id: str) -> ConsentPurpose | None:
        return next((p for p in self.consent_purposes if p.id == purpose_id), None)

    def category(self, category_id: str) -> Category | None:
        return next((c for c in self.categories if c.id == category_id), None)

    def survey(self, survey_id: str) -> Survey | None:
        return next((s for s in self.surveys if s.id == survey_id), None)


class ConfigError(ValueError):
    """The shop's config file cannot be used; the message names the file and each bad key."""


def load_config(path: str | None) -> ShopConfig:
    """Read the built-in defaults, then overlay the shop's file when given."""
    data = tomllib.loads(resources.files("bot").joinpath("default_config.toml").read_text("utf-8"))
    if path:
        try:
            override = tomllib.loads(Path(path).read_text("utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        # Tables keyed by name merge per key, so a shop can change one touchpoint or one channel.
        merged = {key: {**data.get(key, {}), **override.pop(key, {})} for key in ("rate_limits", "touchpoints")}
        data.update(override)
        data.update(merged)
    try:
        return ShopConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path or 'the built-in config'}:\n{describe_errors(exc)}") from None


def describe_errors(exc: ValidationError) -> str:
    """One line per bad key: where it is and what is wrong, without pydantic's internals."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = "unknown key (misspelt?)" if error["type"] == "extra_forbidden" else error["msg"]
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)
