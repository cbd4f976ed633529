"""``create_app``: the one composition root.

It builds the database, the state backend, the channel adapters, the dialog
engine and the pipeline, and ties each resource's life to the app through
``cleanup_ctx``, so tests, ``serve`` and ``worker`` assemble exactly the same
thing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import IO, TYPE_CHECKING, AsyncIterator, Mapping

import aiohttp
from aiohttp import web
from sqlalchemy.engine import make_url

from bot.appkeys import ADAPTERS, BACKEND, CAMPAIGNS, CONFIG, DB, PIPELINE, PUSHES, SETTINGS, TOUCHPOINTS
from bot.config import ShopConfig, load_config
from bot.db import Database
from bot.migrate import upgrade
from bot.pipeline import Pipeline, RateLimit
from bot.settings import Settings
from bot.state.factory import create_backend
from integrations.base import ChannelAdapter

if TYPE_CHECKING:
    from bot.intents import NluBackend
    from integrations.rasa_nlu import RasaNlu

log = logging.getLogger("touchpoint.app")

HOW_TO_ENABLE = {
    "telegram": "set TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET",
    "viber": "set VIBER_AUTH_TOKEN (and VIBER_BOT_NAME)",
    "whatsapp": "set WHATSAPP_ACCESS_TOKEN, WHATSAPP_PHONE_NUMBER_ID, WHATSAPP_APP_SECRET and WHATSAPP_VERIFY_TOKEN",
    "email": "set SMTP_HOST and SMTP_FROM (and SMTP_USERNAME/SMTP_PASSWORD)",
    "sms": "set SMS_GATEWAY_TOKEN (and SMS_GATEWAY_URL, SMS_FROM, SMS_WEBHOOK_SECRET)",
}


def build_adapters(settings: Settings, config: ShopConfig | None = None) -> dict[str, ChannelAdapter]:
    """One adapter per configured channel; a channel is enabled when its token is set."""
    adapters: dict[str, ChannelAdapter] = {}
    if settings.telegram_enabled:
        from integrations.telegram import TelegramAdapter

        adapters["telegram"] = TelegramAdapter(
            settings.telegram_bot_token.get_secret_value(),
            settings.telegram_webhook_secret.get_secret_value(),
            settings.telegram_api_url,
        )
    if settings.viber_enabled:
        from integrations.viber import ViberAdapter

        adapters["viber"] = ViberAdapter(
            settings.viber_auth_token.get_secret_value(), settings.viber_bot_name, settings.viber_api_url
        )
    if settings.whatsapp_enabled:
        from integrations.whatsapp import WhatsAppAdapter

        adapters["whatsapp"] = WhatsAppAdapter(
            settings.whatsapp_access_token.get_secret_value(),
            settings.whatsapp_phone_number_id,
            settings.whatsapp_app_secret.get_secret_value(),
            settings.whatsapp_verify_token.get_secret_value(),
            settings.whatsapp_api_url,
        )
    if settings.email_enabled:
        from integrations.email import EmailAdapter

        unsubscribe_secret = settings.email_unsubscribe_secret.get_secret_value()
        unsubscribe_url = settings.email_unsubscribe_url
        if unsubscribe_secret and not unsubscribe_url:
            unsubscribe_url = f"{settings.public_url}/unsubscribe/{{token}}"
        if not unsubscribe_secret and "{token}" in unsubscribe_url:
            log.warning("email.unsubscribe_disabled: set EMAIL_UNSUBSCRIBE_SECRET to sign unsubscribe links")
            unsubscribe_url = ""
        adapters["email"] = EmailAdapter(
            settings.smtp_host,
            settings.smtp_port,
            sender=settings.smtp_from,
            shop_name=settings.smtp_from_name or (config.shop_name if config else "Shop"),
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value(),
            starttls=settings.smtp_starttls,
            use_tls=settings.smtp_tls,
            cert_bundle=settings.smtp_ca_bundle or None,
            unsubscribe_url=unsubscribe_url,
            unsubscribe_mailto=settings.email_unsubscribe_mailto,
            unsubscribe_secret=unsubscribe_secret,
        )
    if settings.sms_enabled:
        from integrations.sms import SmsAdapter, SmsGateway

        gateway = SmsGateway(**{**(config.sms_gateway if config else {}), "url": settings.sms_gateway_url})
        adapters["sms"] = SmsAdapter(
            gateway,
            settings.sms_gateway_token.get_secret_value(),
            settings.sms_from,
            settings.sms_webhook_secret.get_secret_value(),
        )
    return adapters


def build_engine(config: ShopConfig, nlu: NluBackend | None = None):  # type: ignore[no-untyped-def]
    """The dialog engine; ``nlu`` (Rasa) is asked for intents first, the phrase matcher otherwise."""
    from bot.dialog import DialogEngine
    from bot.i18n import I18n

    return DialogEngine(config, I18n.load(), nlu=nlu)


def build_nlu(settings: Settings, config: ShopConfig) -> RasaNlu | None:
    """The Rasa client when ``RASA_URL`` is set; it owns an HTTP session the caller closes."""
    if not settings.rasa_url:
        log.info("intents.backend name=phrases; set RASA_URL to use a Rasa server")
        return None
    from integrations.rasa_nlu import RasaNlu

    nlu = RasaNlu(settings.rasa_url, timeout_seconds=config.intents.rasa_timeout_seconds)
    log.info("intents.backend name=rasa url=%s fallback=phrases", nlu.endpoint.with_query(None))
    return nlu


def rate_limits(config: ShopConfig) -> dict[str, RateLimit]:
    return {channel: RateLimit(**limit.model_dump()) for channel, limit in config.rate_limits.items()}


async def migrate(url: str) -> None:
    # Alembic's env.py runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(upgrade, url)


class AlreadyRunning(RuntimeError):
    """Another process runs the workers on this database without Redis."""


def claim_single_process(database_url: str) -> IO[bytes] | None:
    """Without Redis, queues and locks live inside one process: a second one would send twice.

    An exclusive lock on a file beside the SQLite database makes a second
    ``serve`` refuse to start; it is released when the process ends, however
    it ends. (For PostgreSQL without Redis, run exactly one process.)
    """
    path = make_url(database_url).database if database_url.startswith("sqlite") else None
    if not path or path == ":memory:":
        return None
    try:
        import fcntl
    except ImportError:  # not on POSIX: nothing to lock with
        return None
    handle = open(f"{path}.lock", "wb")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise AlreadyRunning(
            f"another touchpoint process is already running the workers on {path} without Redis; "
            "stop it, or set TOUCHPOINT_REDIS_URL to run several processes"
        ) from None
    return handle


def create_app(
    settings: Settings,
    *,
    run_workers: bool = True,
    run_migrations: bool | None = None,
    adapters: Mapping[str, ChannelAdapter] | None = None,
) -> web.Application:
    """Build the aiohttp application.

    ``run_workers``: also consume the inbox and outbox in this process (serve's
    default). ``run_migrations``: apply migrations at start (default: only for
    SQLite, the embedded mode; scaled deployments run ``touchpoint db upgrade``).
    """
    from bot.web import health, push_api, rasa, shop_api, unsubscribe, webhooks

    config = load_config(settings.touchpoint_config or None)
    app = web.Application(client_max_size=settings.touchpoint_max_body_bytes)
    app[SETTINGS] = settings
    app[CONFIG] = config
    chosen = dict(adapters) if adapters is not None else build_adapters(settings, config)
    app[ADAPTERS] = chosen
    for channel in ("telegram", "viber", "whatsapp", "sms", "email"):
        if channel not in chosen:
            route = f" route=/webhooks/{channel} answers 404;" if channel != "email" else ""
            log.info("channel.disabled channel=%s%s to enable: %s", channel, route, HOW_TO_ENABLE[channel])
    if "telegram" in chosen and not settings.telegram_webhook_secret.get_secret_value():
        log.warning("telegram.no_secret: set TELEGRAM_WEBHOOK_SECRET, otherwise anyone can post updates")
    if not settings.api_keys:
        log.info("shop_api.disabled: set TOUCHPOINT_API_KEYS to use /api/v1")

    async def database_ctx(app: web.Application) -> AsyncIterator[None]:
        url = settings.touchpoint_database_url
        # First of all, before anything could be sent: one process only without Redis.
        guard = claim_single_process(url) if run_workers and not settings.touchpoint_redis_url else None
        if run_migrations if run_migrations is not None else url.startswith("sqlite"):
            await migrate(url)
        db = Database(url)
        await db.start()
        app[DB] = db
        # Categories the shop sent over the API join the config's before any dialog runs.
        from bot.web.shop_api import load_stored_categories

        await load_stored_categories(app)
        yield
        await db.close()
        if guard is not None:
            guard.close()

    async def backend_ctx(app: web.Application) -> AsyncIterator[None]:
        backend = await create_backend(settings.touchpoint_redis_url or None)
        app[BACKEND] = backend
        log.info("state.backend name=%s", backend.name)
        yield
        await backend.close()

    async def adapters_ctx(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=15),
            connector=aiohttp.TCPConnector(limit=200),
        )
        for adapter in chosen.values():
            await adapter.start(session)
        yield
        for adapter in chosen.values():
            await adapter.close()
        await session.close()

    async def pipeline_ctx(app: web.Application) -> AsyncIterator[None]:
        nlu = build_nlu(settings, config)
        pipeline = Pipeline(
            db=app[DB],
            backend=app[BACKEND],
            adapters=chosen,
            engine=build_engine(config, nlu),
            rate_limits=rate_limits(config),
        )
        app[PIPELINE] = pipeline
        if run_workers:
            await pipeline.recover()
            pipeline.start_workers()
        yield
        await pipeline.stop()
        if nlu is not None:
            await nlu.close()  # after the last turn that could ask it

    async def touchpoints_ctx(app: web.Application) -> AsyncIterator[None]:
        from bot.campaigns import Campaigns
        from bot.i18n import I18n
        from bot.pushes import PushService
        from bot.touchpoints import Touchpoints

        pipeline = app[PIPELINE]
        pushes = PushService(
            app[DB],
            config,
            I18n.load(),
            public_url=settings.public_url,
            enabled_channels=list(chosen),
            wake_sender=pipeline.wake_sender,
            start_survey=pipeline.survey_starter(config),
            locks=app[BACKEND].locks,
        )
        app[PUSHES] = pushes
        app[TOUCHPOINTS] = touchpoints = Touchpoints(app[DB], config, pushes)
        pipeline.on_location = touchpoints.shared_location
        app[CAMPAIGNS] = campaigns = Campaigns(app[DB], pushes, app[BACKEND].locks)
        tasks = []
        if run_workers:
            tasks = [asyncio.create_task(pushes.run()), asyncio.create_task(campaigns.run())]
        yield
        pushes.stop()
        campaigns.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    app.cleanup_ctx.extend([database_ctx, backend_ctx, adapters_ctx, pipeline_ctx, touchpoints_ctx])
    health.setup(app)
    webhooks.setup(app)
    shop_api.setup(app)
    push_api.setup(app)
    unsubscribe.setup(app)
    rasa.setup(app)
    return app
