"""The shop's configuration file (``TOUCHPOINT_CONFIG``), validated with pydantic.

TOML, because Python reads it without another dependency and shops edit it by
hand. Anything not given falls back to ``bot/default_config.toml``.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, Field, field_validator

SUPPORTED_LOCALES = ("en", "de", "es")


class ConsentPurpose(BaseModel):
    """One thing the shop asks permission for; wording lives in ``locales/``.

    ``version`` is stored with every answer so that a changed wording can be
    re-asked; ``marketing`` purposes are all withdrawn by STOP.
    """

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    version: str = "1"
    marketing: bool = True


class ChannelRateLimit(BaseModel):
    """Sends per second; 0 switches a limit off."""

    per_second: float = Field(default=0.0, ge=0)
    per_chat_per_second: float = Field(default=0.0, ge=0)
    burst: float = Field(default=1.0, ge=1)
    chat_burst: float = Field(default=3.0, ge=1)


class ShopConfig(BaseModel):
    shop_name: str = "Shop"
    default_locale: str = "en"
    locales: list[str] = Field(default_factory=lambda: list(SUPPORTED_LOCALES))
    consent_purposes: list[ConsentPurpose]
    rate_limits: dict[str, ChannelRateLimit] = Field(default_factory=dict)

    @field_validator("locales")
    @classmethod
    def _known_locales(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in SUPPORTED_LOCALES]
        if unknown:
            raise ValueError(f"unsupported locales {unknown}; supported: {list(SUPPORTED_LOCALES)}")
        return value

    def purpose(self, purpose_id: str) -> ConsentPurpose | None:
        return next((p for p in self.consent_purposes if p.id == purpose_id), None)


def load_config(path: str | None) -> ShopConfig:
    """Read the built-in defaults, then overlay the shop's file when given."""
    data = tomllib.loads(resources.files("bot").joinpath("default_config.toml").read_text("utf-8"))
    if path:
        override = tomllib.loads(Path(path).read_text("utf-8"))
        limits = {**data.get("rate_limits", {}), **override.pop("rate_limits", {})}
        data.update(override)
        data["rate_limits"] = limits
    return ShopConfig.model_validate(data)
