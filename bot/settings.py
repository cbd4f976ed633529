"""Settings from the environment (and a ``.env`` file), names fixed by DESIGN.md.

One frozen object built at start-up and handed to ``create_app``; secrets are
``SecretStr`` so they never appear in logs or reprs.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    touchpoint_host: str = "127.0.0.1"
    touchpoint_port: int = 8080
    touchpoint_database_url: str = "sqlite+aiosqlite:///touchpoint.db"
    touchpoint_redis_url: str = ""
    touchpoint_api_keys: SecretStr = SecretStr("")
    touchpoint_config: str = ""
    # Largest webhook body accepted; platforms send a few KB.
    touchpoint_max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    touchpoint_log_level: str = "INFO"

    telegram_bot_token: SecretStr = SecretStr("")
    telegram_webhook_secret: SecretStr = SecretStr("")
    telegram_api_url: str = "https://api.telegram.org"

    viber_auth_token: SecretStr = SecretStr("")
    viber_bot_name: str = "Shop"
    viber_api_url: str = "https://chatapi.viber.com/pa"

    whatsapp_access_token: SecretStr = SecretStr("")
    whatsapp_phone_number_id: str = ""
    whatsapp_app_secret: SecretStr = SecretStr("")
    whatsapp_verify_token: SecretStr = SecretStr("")
    whatsapp_api_url: str = "https://graph.facebook.com/v21.0"

    # Rasa server for free-text intents (POST <url>/model/parse); empty: the built-in phrase matcher.
    rasa_url: str = ""
    # When set, POST /rasa/webhook (the action server) requires ?token=... or a Bearer token.
    touchpoint_rasa_token: SecretStr = SecretStr("")
    # Where customers reach this server from outside: tracked links (/l/...) and unsubscribe links.
    touchpoint_public_url: str = ""

    # E-mail (empty SMTP_HOST: the channel is off).
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_from: str = ""
    smtp_from_name: str = ""
    smtp_starttls: bool = True
    smtp_tls: bool = False
    smtp_ca_bundle: str = ""
    email_unsubscribe_url: str = ""  # e.g. https://shop.example/unsubscribe/{token}; default: this server's
    email_unsubscribe_mailto: str = ""
    email_unsubscribe_secret: SecretStr = SecretStr("")

    # SMS through an HTTP gateway (empty token: the channel is off); the mapping is [sms_gateway] in the config.
    sms_gateway_url: str = "https://api.nexmo.com/v1/messages"
    sms_gateway_token: SecretStr = SecretStr("")
    sms_from: str = ""
    sms_webhook_secret: SecretStr = SecretStr("")

    @property
    def api_keys(self) -> list[str]:
        return [k.strip() for k in self.touchpoint_api_keys.get_secret_value().split(",") if k.strip()]

    @property
    def telegram_enabled(self) -> bool:
        return bool(self.telegram_bot_token.get_secret_value())

    @property
    def viber_enabled(self) -> bool:
        return bool(self.viber_auth_token.get_secret_value())

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host and self.smtp_from)

    @property
    def sms_enabled(self) -> bool:
        return bool(self.sms_gateway_token.get_secret_value())

    @property
    def public_url(self) -> str:
        return (self.touchpoint_public_url or f"http://{self.touchpoint_host}:{self.touchpoint_port}").rstrip("/")

    @property
    def whatsapp_enabled(self) -> bool:
        return bool(self.whatsapp_access_token.get_secret_value() and self.whatsapp_phone_number_id)
