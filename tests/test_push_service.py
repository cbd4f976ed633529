"""The push machinery with a fixed clock: a real database, the real adapters, the fake platform APIs.

The app is built with ``run_workers=False``, so nothing moves unless the test
moves it: ``step(now)`` decides the due pushes at ``now``
(``PushService.dispatch_due``), sends what that put in the outbox through the
pipeline's sender to the fake platforms, and follows the sends
(``PushService.reconcile``). What a customer got is read off the fake's wire;
why is read from the push's status history.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import insert, select, text, update

from bot import shop_store
from bot.app import create_app
from bot.appkeys import CAMPAIGNS, CONFIG, DB, PIPELINE, PUSHES, TOUCHPOINTS
from bot.config import QuietHours
from bot.migrate import upgrade
from bot.models import ChannelIdentity, Consent, Conversation, Customer
from bot.models_shop import Push, PushEvent
from integrations.fakes import FakePlatforms, Recorded
from tests.conftest import API_KEY, Touchpoint, make_settings
from tests.test_pipeline import fresh_postgres_database
from tests.web.chat import PlatformUser, recipient

# No pacing unless a test asks for it: a test sends several pushes to one chat within milliseconds.
UNPACED = """
[rate_limits.telegram]
per_second = 0
per_chat_per_second = 0
[rate_limits.viber]
per_second = 0
[rate_limits.whatsapp]
per_second = 0
"""

# A purpose that STOP does not withdraw (not marketing), a transactional touchpoint that needs it,
# and a marketing touchpoint important enough to wait for the cap instead of being skipped.
EXTRA = """
[[consent_purposes]]
id = "marketing"
[[consent_purposes]]
id = "personalised"
[[consent_purposes]]
id = "location"
[[consent_purposes]]
id = "surveys"
[[consent_purposes]]
id = "service"
marketing = false

[touchpoints.order_shipped]
purpose = "service"
transactional = true
priority = 90
text = { en = "Your order {order} is on its way." }

[touchpoints.flash_sale]
purpose = "marketing"
priority = 90
text = { en = "Flash sale today: {message}" }
"""

QUIET_OFF = """
[policy]
quiet_hours = { start = "00:00", end = "00:00" }
"""

_addresses = itertools.count(1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """A stored time as aware UTC (SQLite hands back naive UTC, PostgreSQL aware)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def new_address(channel: str) -> str:
    """A fresh address in the channel's own spelling (Telegram chat id, Viber user id, WhatsApp number)."""
    n = next(_addresses)
    return {
        "telegram": f"{5550200000 + n}",
        "viber": f"svcTestViberUser{n:07d}==",
        "whatsapp": f"1555020{n:04d}",
        "sms": f"+1555030{n:04d}",
        "email": f"customer{n}@example.com",
    }[channel]


@dataclass
class Env:
    """A running app without background workers, and the fake platforms it talks to."""

    tp: Touchpoint
    url: str
    arrivals: list[tuple[float, Recorded]] = field(default_factory=list)  # (monotonic time, send call)

    @property
    def app(self) -> Any:
        return self.tp.app

    @property
    def fake(self) -> FakePlatforms:
        return self.tp.fake

    @property
    def db(self) -> Any:
        return self.app[DB]

    @property
    def pushes(self) -> Any:
        return self.app[PUSHES]

    @property
    def campaigns(self) -> Any:
        return self.app[CAMPAIGNS]

    @property
    def touchpoints(self) -> Any:
        return self.app[TOUCHPOINTS]

    @property
    def pipeline(self) -> Any:
        return self.app[PIPELINE]

    @property
    def config(self) -> Any:
        return self.app[CONFIG]

    # --- customers ------------------------------------------------------------

    async def customer(
        self,
        identities: dict[str, str] | list[str],
        *,
        consents: dict[str, list[str]] | None = None,
        timezone_: str | None = "UTC",
        preferred: str | None = None,
        locale: str = "en",
        first_name: str = "Alice",
        inbound: dict[str, datetime] | None = None,
        categories: list[str] | None = None,
        attributes: dict[str, Any] | None = None,
        external_id: str | None = None,
    ) -> Person:
        """A customer with identities on channels, consents per purpose (default: marketing everywhere).

        ``inbound``: when the customer last wrote on a channel (WhatsApp's window).
        """
        if isinstance(identities, list):
            identities = {channel: new_address(channel) for channel in identities}
        if consents is None:
            consents = {"marketing": list(identities)}
        created = utc(2025, 1, 1)

        def unit(conn: Any) -> int:
            customer_id = conn.execute(
                insert(Customer.__table__)
                .values(
                    first_name=first_name, locale=locale, timezone=timezone_, preferred_channel=preferred,
                    categories=categories, attributes=attributes, external_id=external_id,
                    created_at=created, updated_at=created,
                )
                .returning(Customer.__table__.c.id)
            ).scalar_one()
            for channel, address in identities.items():
                conn.execute(
                    insert(ChannelIdentity.__table__).values(
                        customer_id=customer_id, channel=channel, address=address, created_at=created
                    )
                )
                conn.execute(
                    insert(Conversation.__table__).values(
                        channel=channel, address=address, customer_id=customer_id, slots={}, offered=[],
                        mode="bot", misses=0, version=0, updated_at=created,
                        last_inbound_at=(inbound or {}).get(channel),
                    )
                )
            for purpose, channels in consents.items():
                for channel in channels:
                    conn.execute(
                        insert(Consent.__table__).values(
                            customer_id=customer_id, purpose=purpose, channel=channel, granted=True,
                            source="signup", wording_version="1", created_at=created,
                        )
                    )
            return customer_id

        return Person(await self.db.write(unit), dict(identities))

    async def sql(self, statement: str, **params: Any) -> list[Any]:
        return await self.db.read(lambda conn: list(conn.execute(text(statement), params)))

    async def execute(self, statement: str, **params: Any) -> None:
        await self.db.write(lambda conn: conn.execute(text(statement), params))

    async def wrote(self, channel: str, address: str, at: datetime) -> None:
        """The customer's last message on ``channel`` was at ``at`` (opens or closes WhatsApp's window)."""
        table = Conversation.__table__
        await self.db.write(
            lambda conn: conn.execute(
                update(table).where(table.c.channel == channel, table.c.address == address).values(last_inbound_at=at)
            )
        )

    # --- moving the machinery -------------------------------------------------------

    async def submit(self, touchpoint: str, customers: list[Person], now: datetime, **variables: Any) -> list[int]:
        made = await self.pushes.submit(touchpoint, [c.id for c in customers], variables, now=now)
        return [push_id for push_id, _ in made]

    async def flush(self) -> None:
        """Send every pending outbox row to the fake platforms, as the outbox consumer would."""
        for _ in range(50):
            keys = await self.sql(
                "SELECT DISTINCT channel, address FROM outbox WHERE status = 'pending' AND next_attempt_at IS NULL"
            )
            if not keys:
                return
            await asyncio.gather(*(self.pipeline.send_conversation(k.channel, k.address) for k in keys))
        raise AssertionError("the outbox did not drain")

    async def step(self, now: datetime) -> None:
        """Decide what is due at ``now``, send it, and follow the sends (twice: a failure moves on at once)."""
        for _ in range(3):
            await self.pushes.dispatch_due(now)
            await self.flush()
            await self.pushes.reconcile(now)

    async def push(self, push_id: int) -> PushView:
        def query(conn: Any) -> PushView:
            row = conn.execute(select(Push.__table__).where(Push.__table__.c.id == push_id)).one()
            history = conn.execute(
                select(PushEvent.__table__).where(PushEvent.__table__.c.push_id == push_id).order_by(PushEvent.__table__.c.id)
            ).all()
            return PushView(row, [(h.status, h.reason, h.channel, h.detail) for h in history])

        return await self.db.read(query)

    def sent_to(self, channel: str, address: str) -> list[Recorded]:
        return [r for r in self.fake.sent(channel) if recipient(r) == address]

    async def receive(self, user: PlatformUser, body: dict[str, Any]) -> None:
        """A webhook from the platform, handled now (there is no inbox worker)."""
        status, _ = await user.post(body)
        assert status == 200
        address = user.address
        await self.pipeline.drain_conversation(user.platform, address)


@dataclass(frozen=True)
class Person:
    id: int
    address: dict[str, str]


@dataclass(frozen=True)
class PushView:
    row: Any
    history: list[tuple[str, str | None, str | None, str | None]]

    @property
    def status(self) -> str:
        return self.row.status

    @property
    def statuses(self) -> list[str]:
        return [h[0] for h in self.history]


def text_of(recorded: Recorded) -> str:
    body = recorded.json
    value = body.get("text", "")
    return value.get("body", "") if isinstance(value, dict) else str(value)


EnvFactory = Callable[..., Awaitable[Env]]


@pytest.fixture(params=["sqlite"])
def database(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per session, copied for each app (migrating costs half a second)."""
    path = tmp_path_factory.mktemp("template") / "push.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
async def make_env(
    tmp_path: Path, request: pytest.FixtureRequest, database: str, migrated_sqlite: Path
) -> AsyncIterator[EnvFactory]:
    """``await make_env(config_toml)``: an app on a fresh database with the built-in config plus ``config_toml``.

    ``rate_limits``: the ``[rate_limits.*]`` tables (default: no pacing).
    """
    made: list[tuple[TestServer, aiohttp.ClientSession, FakePlatforms]] = []

    async def make(config: str = "", *, rate_limits: str = UNPACED, **settings: Any) -> Env:
        arrivals: list[tuple[float, Recorded]] = []
        fake = FakePlatforms(on_request=lambda r: arrivals.append((time.monotonic(), r)))
        await fake.start(port=0)
        if database == "postgres":
            url = await fresh_postgres_database(request.getfixturevalue("postgres_url"))
        else:
            path = tmp_path / f"push{len(made)}.db"
            shutil.copyfile(migrated_sqlite, path)
            url = f"sqlite+aiosqlite:///{path}"
        shop = tmp_path / f"shop{len(made)}.toml"
        shop.write_text(rate_limits + config, encoding="utf-8")
        values: dict[str, Any] = {"touchpoint_config": str(shop), "touchpoint_public_url": "https://touchpoint.example"}
        values.update(settings)
        options = make_settings(fake.base_url, url, **values)
        app = create_app(options, run_workers=False, run_migrations=database == "postgres")
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        session = aiohttp.ClientSession()
        made.append((server, session, fake))
        return Env(Touchpoint(server=server, session=session, fake=fake, settings=options), url, arrivals)

    yield make
    for server, session, fake in made:
        await session.close()
        await server.close()
        await fake.stop()


@pytest.fixture
async def env(make_env: EnvFactory) -> Env:
    return await make_env(EXTRA)


# ----------------------------------------------------------------------------- quiet hours


@pytest.mark.parametrize("database", ["sqlite", "postgres"], indirect=True)
async def test_the_same_instant_sends_in_one_zone_and_defers_to_nine_local_in_others(env: Env):
    berlin = await env.customer(["telegram"], timezone_="Europe/Berlin", first_name="Jonas")
    new_york = await env.customer(["telegram"], timezone_="America/New_York", first_name="Emma")
    tokyo = await env.customer(["telegram"], timezone_="Asia/Tokyo", first_name="Yui")
    now = utc(2026, 6, 10, 2, 0)  # 04:00 in Berlin, 22:00 (June 9) in New York, 11:00 in Tokyo
    pushes = await env.submit("announcement", [berlin, new_york, tokyo], now, message="Summer sale starts today")
    await env.step(now)

    assert [text_of(r) for r in env.sent_to("telegram", tokyo.address["telegram"])] == ["Summer sale starts today"]
    assert env.sent_to("telegram", berlin.address["telegram"]) == []
    assert env.sent_to("telegram", new_york.address["telegram"]) == []
    b, n, t = [await env.push(p) for p in pushes]
    assert (t.status, t.row.channel) == ("sent", "telegram")
    assert (b.status, b.row.reason) == ("deferred", "quiet_hours")
    assert (n.status, n.row.reason) == ("deferred", "quiet_hours")
    # 09:00 on the customer's own wall clock: CEST is UTC+2, EDT is UTC-4.
    assert as_utc(b.row.due_at) == utc(2026, 6, 10, 7, 0)
    assert as_utc(n.row.due_at) == utc(2026, 6, 10, 13, 0)

    await env.step(utc(2026, 6, 10, 6, 59))
    assert env.sent_to("telegram", berlin.address["telegram"]) == []
    await env.step(utc(2026, 6, 10, 7, 0))
    assert len(env.sent_to("telegram", berlin.address["telegram"])) == 1
    assert env.sent_to("telegram", new_york.address["telegram"]) == []
    await env.step(utc(2026, 6, 10, 13, 0))
    assert [text_of(r) for r in env.sent_to("telegram", new_york.address["telegram"])] == ["Summer sale starts today"]

    b, n, t = [await env.push(p) for p in pushes]
    assert b.statuses == ["queued", "deferred", "sending", "sent"] == n.statuses
    assert t.statuses == ["queued", "sending", "sent"]
    assert len(env.fake.sent("telegram")) == 3  # deferred, not dropped, and nobody twice


@pytest.mark.parametrize(
    "evening, nine_local",
    [
        # 22:00 CEST on Saturday 24 October; the clocks go back that night, so 09:00 Sunday is CET (UTC+1).
        (utc(2026, 10, 24, 20, 0), utc(2026, 10, 25, 8, 0)),
        # 22:00 CET on Saturday 28 March; the clocks go forward that night, so 09:00 Sunday is CEST (UTC+2).
        (utc(2026, 3, 28, 21, 0), utc(2026, 3, 29, 7, 0)),
    ],
    ids=["autumn", "spring"],
)
async def test_quiet_hours_end_at_nine_on_the_wall_clock_across_a_daylight_saving_change(env: Env, evening, nine_local):
    berlin = await env.customer(["telegram"], timezone_="Europe/Berlin")
    [push_id] = await env.submit("announcement", [berlin], evening, message="Neue Herbstkollektion")
    await env.step(evening)
    deferred = await env.push(push_id)
    assert (deferred.status, deferred.row.reason, as_utc(deferred.row.due_at)) == ("deferred", "quiet_hours", nine_local)

    # 09:00 by the offset of the evening before is still quiet on the customer's wall (autumn),
    # and a minute before nine nothing goes either.
    await env.step(nine_local - timedelta(hours=1))
    await env.step(nine_local - timedelta(minutes=1))
    assert env.sent_to("telegram", berlin.address["telegram"]) == []
    await env.step(nine_local)
    assert [text_of(r) for r in env.sent_to("telegram", berlin.address["telegram"])] == ["Neue Herbstkollektion"]
    assert (await env.push(push_id)).status == "sent"



# ----------------------------------------------------------------------------- caps


@pytest.mark.parametrize("database", ["sqlite", "postgres"], indirect=True)
async def test_two_a_day_and_five_a_week_across_days_transactional_exempt(env: Env):
    alice = await env.customer(["telegram"], consents={"marketing": ["telegram"], "service": ["telegram"]})
    chat = alice.address["telegram"]

    async def offer(at: datetime, what: str) -> PushView:
        [push_id] = await env.submit("announcement", [alice], at, message=what)
        await env.step(at)
        return await env.push(push_id)

    assert (await offer(utc(2026, 6, 1, 10, 0), "mon 1")).status == "sent"
    assert (await offer(utc(2026, 6, 1, 11, 0), "mon 2")).status == "sent"
    third = await offer(utc(2026, 6, 1, 12, 0), "mon 3")
    assert (third.status, third.row.reason) == ("skipped", "frequency_cap_day")
    # Transactional messages neither wait for the cap nor count towards it.
    [shipped] = await env.submit("order_shipped", [alice], utc(2026, 6, 1, 12, 5), order="1024")
    await env.step(utc(2026, 6, 1, 12, 5))
    assert (await env.push(shipped)).status == "sent"

    # Rolling windows: Tuesday 10:30 only Monday 11:00 is within 24 hours.
    assert (await offer(utc(2026, 6, 2, 10, 30), "tue 1")).status == "sent"
    assert (await offer(utc(2026, 6, 2, 11, 30), "tue 2")).status == "sent"
    assert (await offer(utc(2026, 6, 3, 10, 0), "wed 1")).row.reason == "frequency_cap_day"
    assert (await offer(utc(2026, 6, 3, 12, 0), "wed 2")).status == "sent"  # the fifth this week
    thursday = await offer(utc(2026, 6, 4, 12, 0), "thu 1")
    assert (thursday.status, thursday.row.reason) == ("skipped", "frequency_cap_week")

    assert [text_of(r) for r in env.sent_to("telegram", chat)] == [
        "mon 1", "mon 2", "Your order 1024 is on its way.", "tue 1", "tue 2", "wed 2",
    ]


@pytest.mark.parametrize("database", ["sqlite", "postgres"], indirect=True)
async def test_an_important_push_waits_for_the_cap_and_then_goes(env: Env):
    bob = await env.customer(["telegram"])
    chat = bob.address["telegram"]
    for day in range(1, 6):  # one a day, Monday to Friday: the week is full
        [push_id] = await env.submit("announcement", [bob], utc(2026, 6, day, 10, 0), message=f"day {day}")
        await env.step(utc(2026, 6, day, 10, 0))
        assert (await env.push(push_id)).status == "sent"

    saturday = utc(2026, 6, 6, 12, 0)
    [ordinary] = await env.submit("announcement", [bob], saturday, message="ordinary")
    [important] = await env.submit("flash_sale", [bob], saturday, message="50 % off")
    await env.step(saturday)
    assert ((await env.push(ordinary)).status, (await env.push(ordinary)).row.reason) == ("skipped", "frequency_cap_week")
    waiting = await env.push(important)
    assert (waiting.status, waiting.row.reason) == ("deferred", "frequency_cap_week")
    # The week frees when Monday's send is seven days old.
    assert as_utc(waiting.row.due_at) == utc(2026, 6, 8, 10, 0)

    await env.step(utc(2026, 6, 8, 9, 59))
    assert len(env.sent_to("telegram", chat)) == 5
    await env.step(utc(2026, 6, 8, 10, 0))
    assert text_of(env.sent_to("telegram", chat)[-1]) == "Flash sale today: 50 % off"
    sent = await env.push(important)
    assert sent.statuses == ["queued", "deferred", "sending", "sent"]
    assert len(env.sent_to("telegram", chat)) == 6


# ----------------------------------------------------------------------------- consent per channel, STOP

NOON = utc(2026, 6, 10, 12, 0)


async def test_consent_on_one_channel_but_not_another_picks_the_consented_one(env: Env):
    carol = await env.customer(
        ["whatsapp", "telegram"], preferred="whatsapp", consents={"marketing": ["telegram"]},
        inbound={"whatsapp": NOON - timedelta(hours=1)},
    )
    [push_id] = await env.submit("announcement", [carol], NOON, message="New arrivals")
    await env.step(NOON)
    assert env.sent_to("whatsapp", carol.address["whatsapp"]) == []
    assert [text_of(r) for r in env.sent_to("telegram", carol.address["telegram"])] == ["New arrivals"]
    push = await env.push(push_id)
    assert (push.status, push.row.channel) == ("sent", "telegram")
    assert push.history[1] == ("sending", None, "telegram", "text; held back whatsapp: no_consent")

    # Without consent anywhere the customer gets nothing, and the push says why.
    dan = await env.customer(["whatsapp", "telegram"], consents={})
    [nothing] = await env.submit("announcement", [dan], NOON, message="New arrivals")
    await env.step(NOON)
    skipped = await env.push(nothing)
    assert (skipped.status, skipped.row.reason) == ("skipped", "no_consent")
    assert env.sent_to("telegram", dan.address["telegram"]) == env.sent_to("whatsapp", dan.address["whatsapp"]) == []


async def test_stop_on_a_channel_keeps_transactional_messages_off_it(env: Env):
    erin = await env.customer(
        ["telegram", "viber"], preferred="telegram",
        consents={"marketing": ["telegram", "viber"], "service": ["telegram", "viber"]},
    )
    user = PlatformUser(env.tp, "telegram", address=erin.address["telegram"], name="Erin Example")
    await env.receive(user, user.text_body("STOP"))
    await env.flush()
    [stop_reply] = env.sent_to("telegram", erin.address["telegram"])
    assert "marketing" in text_of(stop_reply).lower()

    [push_id] = await env.submit("order_shipped", [erin], NOON, order="2048")
    await env.step(NOON)
    assert len(env.sent_to("telegram", erin.address["telegram"])) == 1  # only the answer to STOP
    assert [text_of(r) for r in env.sent_to("viber", erin.address["viber"])] == ["Your order 2048 is on its way."]
    push = await env.push(push_id)
    assert (push.status, push.row.channel) == ("sent", "viber")
    # The customer still consents to service messages on Telegram; what holds them back is the STOP.
    assert push.history[1][3] == "text; held back telegram: stopped"


async def test_stop_without_any_marketing_consent_still_stops_transactional_messages(env: Env):
    """A customer who only allowed order updates on Telegram and then types STOP gets no more of them there."""
    finn = await env.customer(["telegram"], consents={"service": ["telegram"]})
    user = PlatformUser(env.tp, "telegram", address=finn.address["telegram"], name="Finn Example")
    await env.receive(user, user.text_body("STOP"))
    await env.flush()
    answered = len(env.sent_to("telegram", finn.address["telegram"]))

    [push_id] = await env.submit("order_shipped", [finn], NOON, order="4096")
    await env.step(NOON)
    assert len(env.sent_to("telegram", finn.address["telegram"])) == answered
    assert (await env.push(push_id)).status == "skipped"


# ----------------------------------------------------------------------------- the fallback chain


async def test_the_preferred_channel_goes_first(env: Env):
    gina = await env.customer(
        ["whatsapp", "viber", "telegram"], preferred="viber", inbound={"whatsapp": NOON - timedelta(hours=2)}
    )
    [push_id] = await env.submit("announcement", [gina], NOON, message="Hello from the shop")
    await env.step(NOON)
    assert [text_of(r) for r in env.sent_to("viber", gina.address["viber"])] == ["Hello from the shop"]
    assert env.sent_to("whatsapp", gina.address["whatsapp"]) == env.sent_to("telegram", gina.address["telegram"]) == []
    assert (await env.push(push_id)).row.channel == "viber"


async def test_whatsapp_outside_the_window_sends_the_template_or_falls_back_without_one(env: Env):
    last_week = NOON - timedelta(days=6)
    hana = await env.customer(["whatsapp", "telegram"], preferred="whatsapp", first_name="Hana", inbound={"whatsapp": last_week})
    number = hana.address["whatsapp"]

    [with_template] = await env.submit(
        "back_in_stock", [hana], NOON, product="Trail Runner 2", url="https://shop.example/p/sku-42"
    )
    await env.step(NOON)
    [call] = env.sent_to("whatsapp", number)
    assert call.json["type"] == "template"
    template = call.json["template"]
    assert (template["name"], template["language"]["code"]) == ("back_in_stock", "en")
    first_name, product, link = [p["text"] for p in template["components"][0]["parameters"]]
    assert (first_name, product) == ("Hana", "Trail Runner 2")
    assert link.startswith("https://touchpoint.example/l/")  # tracked in the template too
    push = await env.push(with_template)
    assert (push.status, push.row.channel, push.history[1][3]) == ("sent", "whatsapp", "template")

    # The same customer, a touchpoint without a template: WhatsApp is held back, Telegram gets it.
    [without] = await env.submit("product_launched", [hana], NOON + timedelta(hours=1),
                                 product="Trail Runner 3", category="Shoes", available_on="2026-07-01",
                                 url="https://shop.example/p/sku-43")
    await env.step(NOON + timedelta(hours=1))
    assert len(env.sent_to("whatsapp", number)) == 1
    [message] = env.sent_to("telegram", hana.address["telegram"])
    assert "Trail Runner 3" in text_of(message)
    push = await env.push(without)
    assert (push.status, push.row.channel) == ("sent", "telegram")
    assert push.history[1][3] == "text; held back whatsapp: whatsapp_window_closed"

    # The next day she writes; inside the window WhatsApp gets free text.
    tomorrow = NOON + timedelta(days=1)
    await env.wrote("whatsapp", number, tomorrow - timedelta(hours=1))
    [inside] = await env.submit("announcement", [hana], tomorrow, message="Thanks for writing")
    await env.step(tomorrow)
    last = env.sent_to("whatsapp", number)[-1]
    assert (last.json["type"], text_of(last)) == ("text", "Thanks for writing")
    assert (await env.push(inside)).row.channel == "whatsapp"


@pytest.mark.parametrize("database", ["sqlite", "postgres"], indirect=True)
async def test_a_send_that_fails_for_good_moves_on_to_the_next_channel(env: Env):
    ivan = await env.customer(["whatsapp", "viber", "telegram"], inbound={"whatsapp": NOON - timedelta(hours=1)})
    env.fake.fail_next("whatsapp", "blocked")  # 131026: the number cannot receive messages
    env.fake.answer_next("viber", 200, {"status": 3, "status_message": "badData"})  # a permanent refusal
    [push_id] = await env.submit("announcement", [ivan], NOON, message="Autumn collection")
    await env.step(NOON)

    assert env.sent_to("whatsapp", ivan.address["whatsapp"]) == env.sent_to("viber", ivan.address["viber"]) == []
    assert [text_of(r) for r in env.sent_to("telegram", ivan.address["telegram"])] == ["Autumn collection"]
    push = await env.push(push_id)
    assert (push.status, push.row.channel, push.row.tried) == ("sent", "telegram", ["whatsapp", "viber", "telegram"])
    assert [(status, reason, channel) for status, reason, channel, _ in push.history] == [
        ("queued", None, None),
        ("sending", None, "whatsapp"),
        ("queued", "whatsapp_blocked", None),
        ("sending", None, "viber"),
        ("queued", "viber_failed", None),
        ("sending", None, "telegram"),
        ("sent", None, "telegram"),
    ]


async def test_when_every_channel_fails_the_push_fails(env: Env):
    jana = await env.customer(["viber", "telegram"])
    env.fake.answer_next("viber", 200, {"status": 3, "status_message": "badData"})
    env.fake.answer_next("telegram", 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"})
    [push_id] = await env.submit("announcement", [jana], NOON, message="Anyone there?")
    await env.step(NOON)
    push = await env.push(push_id)
    assert push.status == "failed"
    assert push.statuses == ["queued", "sending", "queued", "sending", "queued", "failed"]
    assert push.history[2][1] == "viber_failed" and push.history[4][1] == "telegram_failed"
    assert env.sent_to("viber", jana.address["viber"]) == env.sent_to("telegram", jana.address["telegram"]) == []
    # The reason names what went wrong last, not a missing identity (she has two).
    assert push.row.reason == "telegram_failed"
    # Nothing is retried later either.
    await env.step(NOON + timedelta(hours=3))
    assert (await env.push(push_id)).status == "failed"
    assert len([r for r in env.fake.requests if r.method in ("send_message", "sendMessage")]) == 2


# ----------------------------------------------------------------------------- receipts decide the fallback too


def whatsapp_status(user: PlatformUser, wamid: str, state: str) -> dict[str, Any]:
    """WhatsApp's status webhook for our message ``wamid`` (the fixture's shape)."""
    body = user._whatsapp("status_delivered.json")
    status = body["entry"][0]["changes"][0]["value"]["statuses"][0]
    status.update(id=wamid, status=state, recipient_id=user.address, timestamp=str(int(time.time())))
    return body


async def platform_id(env: Env, push_id: int) -> str:
    [row] = await env.sql("SELECT platform_message_id FROM outbox WHERE id = (SELECT outbox_id FROM push WHERE id = :p)", p=push_id)
    return row.platform_message_id


@pytest.mark.parametrize("database", ["sqlite", "postgres"], indirect=True)
async def test_undelivered_marketing_moves_on_and_a_late_receipt_sends_no_second_copy(env: Env):
    kim = await env.customer(["whatsapp", "telegram"], inbound={"whatsapp": NOON - timedelta(hours=1)})
    number, chat = kim.address["whatsapp"], kim.address["telegram"]
    [push_id] = await env.submit("announcement", [kim], NOON, message="Weekend offer")
    await env.step(NOON)
    [first] = env.sent_to("whatsapp", number)
    wamid = await platform_id(env, push_id)
    assert (await env.push(push_id)).status == "sent"

    timeout = timedelta(minutes=env.config.policy.receipt_timeout_minutes)
    await env.step(NOON + timeout - timedelta(minutes=1))  # still within the time a receipt may take
    assert env.sent_to("telegram", chat) == []
    await env.step(NOON + timeout + timedelta(minutes=1))
    assert [text_of(r) for r in env.sent_to("telegram", chat)] == ["Weekend offer"]
    push = await env.push(push_id)
    assert (push.status, push.row.channel, push.row.tried) == ("sent", "telegram", ["whatsapp", "telegram"])
    assert ("queued", "receipt_timeout", "whatsapp") in [h[:3] for h in push.history]

    # WhatsApp's receipt for the first message arrives after all.
    user = PlatformUser(env.tp, "whatsapp", address=number)
    await env.receive(user, whatsapp_status(user, wamid, "delivered"))
    [row] = await env.sql("SELECT delivery_status FROM outbox WHERE platform_message_id = :w", w=wamid)
    assert row.delivery_status == "delivered"
    for hours in (2, 5, 30):
        await env.step(NOON + timedelta(hours=hours))
    assert env.sent_to("whatsapp", number) == [first]
    assert len(env.sent_to("telegram", chat)) == 1
    push = await env.push(push_id)
    assert (push.status, push.row.channel) == ("sent", "telegram")


async def test_without_another_channel_a_missing_receipt_leaves_the_push_sent(env: Env):
    """Only WhatsApp: after the receipt timeout there is nowhere to move on to; the message did go out."""
    olga = await env.customer(["whatsapp"], inbound={"whatsapp": NOON - timedelta(hours=1)})
    [push_id] = await env.submit("announcement", [olga], NOON, message="Only on WhatsApp")
    await env.step(NOON)
    await env.step(NOON + timedelta(minutes=61))
    push = await env.push(push_id)
    assert (push.status, push.row.channel) == ("sent", "whatsapp")
    assert len(env.sent_to("whatsapp", olga.address["whatsapp"])) == 1
    # The receipt comes late, and it still counts.
    user = PlatformUser(env.tp, "whatsapp", address=olga.address["whatsapp"])
    await env.receive(user, whatsapp_status(user, await platform_id(env, push_id), "delivered"))
    await env.step(NOON + timedelta(minutes=90))
    assert (await env.push(push_id)).status == "delivered"


async def test_the_receipt_timeout_counts_from_the_send_not_from_the_decision(env: Env):
    """A push that waited in the outbox (a long, rate-limited campaign) gets the full time for its receipt."""
    pia = await env.customer(["whatsapp", "telegram"], inbound={"whatsapp": NOON - timedelta(hours=1)})
    [push_id] = await env.submit("announcement", [pia], NOON, message="Big campaign")
    await env.pushes.dispatch_due(NOON)  # decided and queued at noon ...
    await env.pushes.reconcile(NOON + timedelta(minutes=90))
    assert (await env.push(push_id)).status == "sending"
    await env.flush()  # ... and sent an hour and a half later
    await env.step(NOON + timedelta(minutes=91))
    await env.step(NOON + timedelta(minutes=95))  # four minutes after the send: no receipt yet, and that is fine
    assert env.sent_to("telegram", pia.address["telegram"]) == []
    push = await env.push(push_id)
    assert (push.status, push.row.channel) == ("sent", "whatsapp")
    timeout = timedelta(minutes=env.config.policy.receipt_timeout_minutes)
    await env.step(NOON + timedelta(minutes=91) + timeout + timedelta(minutes=1))
    assert len(env.sent_to("telegram", pia.address["telegram"])) == 1  # now it moves on


async def test_pushes_that_reached_their_final_state_do_not_crowd_out_newer_ones(env: Env, monkeypatch):
    """``reconcile`` reads at most ``in_flight``'s limit (2000) of pushes per round.

    Telegram reports no delivery, so a push sent there stays ``sent`` for good;
    once more of them exist than the limit, newer pushes must still be followed.
    The limit is lowered to 3 here so that 3 old pushes stand for 2,000.
    """
    from functools import partial

    from bot import push_store

    monkeypatch.setattr(push_store, "in_flight", partial(push_store.in_flight, limit=3))
    old = [await env.customer(["telegram"]) for _ in range(3)]
    await env.submit("announcement", old, NOON, message="Earlier campaign")
    await env.step(NOON)
    rosa = await env.customer(["whatsapp", "telegram"], inbound={"whatsapp": NOON + timedelta(hours=1)})
    [push_id] = await env.submit("announcement", [rosa], NOON + timedelta(hours=2), message="Today's offer")
    await env.step(NOON + timedelta(hours=2))
    assert len(env.sent_to("whatsapp", rosa.address["whatsapp"])) == 1
    assert (await env.push(push_id)).status == "sent"


async def test_following_pushes_ends_when_more_are_waiting_for_receipts_than_one_batch(env: Env, monkeypatch):
    """WhatsApp reports ``sent`` for every message before ``delivered``; those pushes wait for news.

    ``reconcile`` reads them in batches of ``IN_FLIGHT_BATCH`` (2000) and reads
    again while a batch comes back full; with more waiting pushes than that it
    must still return (here the batch is 2 and three pushes wait).
    """
    from functools import partial

    from bot import push_store

    monkeypatch.setattr(push_store, "IN_FLIGHT_BATCH", 2)
    monkeypatch.setattr(push_store, "in_flight", partial(push_store.in_flight, limit=2))
    people = [await env.customer(["whatsapp"], inbound={"whatsapp": NOON - timedelta(hours=1)}) for _ in range(3)]
    pushes = await env.submit("announcement", people, NOON, message="Weekend offer")
    await env.step(NOON)
    for person, push_id in zip(people, pushes):
        user = PlatformUser(env.tp, "whatsapp", address=person.address["whatsapp"])
        await env.receive(user, whatsapp_status(user, await platform_id(env, push_id), "sent"))
    await asyncio.wait_for(env.pushes.reconcile(NOON + timedelta(minutes=5)), timeout=2)
    assert [(await env.push(p)).status for p in pushes] == ["sent", "sent", "sent"]


async def test_transactional_messages_do_not_move_on_for_a_missing_receipt(env: Env):
    lea = await env.customer(["whatsapp", "telegram"], consents={"service": ["whatsapp", "telegram"]},
                             inbound={"whatsapp": NOON - timedelta(hours=1)})
    [push_id] = await env.submit("order_shipped", [lea], NOON, order="77")
    await env.step(NOON)
    await env.step(NOON + timedelta(hours=5))
    assert len(env.sent_to("whatsapp", lea.address["whatsapp"])) == 1
    assert env.sent_to("telegram", lea.address["telegram"]) == []
    assert (await env.push(push_id)).row.channel == "whatsapp"


# ----------------------------------------------------------------------------- delivery and read receipts


def viber_receipt(user: PlatformUser, token: str, event: str) -> dict[str, Any]:
    """Viber's delivered / seen callback for our message ``token`` (the fixture's shape)."""
    body = user._viber(f"{event}.json")
    body.update(message_token=int(token), user_id=user.address, timestamp=int(time.time() * 1000))
    return body


@pytest.mark.parametrize("database", ["sqlite", "postgres"], indirect=True)
async def test_whatsapp_and_viber_receipts_move_pushes_to_delivered_and_read(env: Env):
    wa = await env.customer(["whatsapp"], inbound={"whatsapp": NOON - timedelta(hours=1)})
    vb = await env.customer(["viber"])
    [wa_push, vb_push] = await env.submit("announcement", [wa, vb], NOON, message="Your wishlist item is on sale")
    await env.step(NOON)
    assert [(await env.push(p)).status for p in (wa_push, vb_push)] == ["sent", "sent"]
    wa_user = PlatformUser(env.tp, "whatsapp", address=wa.address["whatsapp"])
    vb_user = PlatformUser(env.tp, "viber", address=vb.address["viber"])
    wamid, token = await platform_id(env, wa_push), await platform_id(env, vb_push)

    await env.receive(wa_user, whatsapp_status(wa_user, wamid, "delivered"))
    await env.receive(vb_user, viber_receipt(vb_user, token, "delivered"))
    await env.step(NOON + timedelta(minutes=5))
    assert [(await env.push(p)).status for p in (wa_push, vb_push)] == ["delivered", "delivered"]

    await env.receive(wa_user, whatsapp_status(wa_user, wamid, "read"))
    await env.receive(vb_user, viber_receipt(vb_user, token, "seen"))
    await env.step(NOON + timedelta(minutes=10))
    for push_id, channel in ((wa_push, "whatsapp"), (vb_push, "viber")):
        push = await env.push(push_id)
        assert push.statuses == ["queued", "sending", "sent", "delivered", "read"]
        assert {h[2] for h in push.history[1:]} == {channel}

    # Delivered and read, nothing moves on after the receipt timeout, and a repeated receipt changes nothing.
    await env.receive(wa_user, whatsapp_status(wa_user, wamid, "delivered"))
    await env.step(NOON + timedelta(hours=3))
    assert [(await env.push(p)).status for p in (wa_push, vb_push)] == ["read", "read"]
    assert len(env.fake.sent()) == 2


async def test_a_read_receipt_without_a_delivered_one_still_counts_as_read(env: Env):
    wa = await env.customer(["whatsapp"], inbound={"whatsapp": NOON - timedelta(hours=1)})
    [push_id] = await env.submit("announcement", [wa], NOON, message="New in: rain jackets")
    await env.step(NOON)
    user = PlatformUser(env.tp, "whatsapp", address=wa.address["whatsapp"])
    await env.receive(user, whatsapp_status(user, await platform_id(env, push_id), "read"))
    await env.step(NOON + timedelta(minutes=1))
    assert (await env.push(push_id)).status == "read"


async def test_a_failed_whatsapp_receipt_moves_marketing_on_and_blocks_the_number(env: Env):
    mia = await env.customer(["whatsapp", "telegram"], inbound={"whatsapp": NOON - timedelta(hours=1)})
    [push_id] = await env.submit("announcement", [mia], NOON, message="Last chance")
    await env.step(NOON)
    user = PlatformUser(env.tp, "whatsapp", address=mia.address["whatsapp"])
    await env.receive(user, user.undeliverable_status_body(await platform_id(env, push_id)))
    await env.step(NOON + timedelta(minutes=2))
    assert [text_of(r) for r in env.sent_to("telegram", mia.address["telegram"])] == ["Last chance"]
    push = await env.push(push_id)
    assert (push.status, push.row.channel) == ("sent", "telegram")
    assert ("queued", "whatsapp_undelivered") in [h[:2] for h in push.history]
    [identity] = await env.sql("SELECT blocked_at FROM channel_identity WHERE channel = 'whatsapp' AND customer_id = :c", c=mia.id)
    assert identity.blocked_at is not None


# ----------------------------------------------------------------------------- rate limits

PACED = """
[rate_limits.telegram]
per_second = 20
burst = 5
per_chat_per_second = 0
"""


async def test_a_campaign_is_sent_at_the_configured_rate_of_its_channel(make_env: EnvFactory):
    env = await make_env(QUIET_OFF, rate_limits=PACED)
    recipients = [await env.customer(["telegram"]) for _ in range(60)]
    env.pipeline.start_workers()  # the real outbox consumer does the sending here
    campaign_id = await env.campaigns.create("paced", "announcement", {"channel": "telegram"}, {"message": "Sale"}, None)
    assert await env.campaigns.run_due() == 1
    started = time.monotonic()
    await env.pushes.dispatch_due()
    sent = await env.fake.wait_for(60, "telegram", timeout=10)
    assert sorted(recipient(r) for r in sent) == sorted(c.address["telegram"] for c in recipients)

    times = [at for at, r in env.arrivals if r.method == "sendMessage"]
    assert len(times) == 60
    # 5 at once, then 20 a second: the last one leaves about 2.75 s after the first.
    assert times[-1] - started >= 2.5
    assert times[-1] - times[0] >= 2.5
    # In no stretch of time did more reach the wire than the rate allows plus the burst
    # (one message of slack, about 50 ms, for the jitter between the sender and the fake).
    excess = max(j - i + 1 - 20 * (times[j] - times[i]) for i in range(60) for j in range(i, 60))
    assert excess <= 5 + 1
    await env.tp.idle()  # the last send recorded
    await env.pushes.reconcile()
    assert (await env.campaigns.status(campaign_id))["by_status"] == {"sent": 60}


# ----------------------------------------------------------------------------- links, conversions, stats

AUTH = {"Authorization": f"Bearer {API_KEY}"}
SNEAKER = {"id": "sku-42", "name": "Trail Runner 2", "category": "shoes", "url": "https://shop.example/p/sku-42", "price": 89.9, "in_stock": True}
PRODUCT = {"product": "Trail Runner 2", "url": "https://shop.example/p/sku-42"}
MITTE = {"id": "berlin-mitte", "name": "Berlin Mitte", "address": "Rosenthaler Str. 1", "latitude": 52.5290, "longitude": 13.4010, "radius_m": 300}


def tracked_token(message: Recorded) -> str:
    words = text_of(message).split()
    [link] = [w for w in words if w.startswith("https://touchpoint.example/l/")]
    return link.removeprefix("https://touchpoint.example/l/")


async def click(env: Env, token: str) -> aiohttp.ClientResponse:
    async with env.tp.session.get(f"{env.tp.url}/l/{token}", allow_redirects=False) as response:
        await response.read()
        return response


async def order(env: Env, external_id: str, order_id: str, now: datetime, **extra: Any) -> dict[str, Any]:
    return await env.touchpoints.handle({"type": "order.placed", "customer_id": external_id, "order_id": order_id, **extra}, now)


async def test_a_tracked_link_records_the_click_and_an_order_within_the_window_converts(env: Env):
    alice = await env.customer(["telegram"], external_id="c-alice")
    bob = await env.customer(["telegram"], external_id="c-bob")
    pushes = await env.submit("back_in_stock", [alice, bob], NOON, **PRODUCT)
    await env.step(NOON)
    tokens = {}
    for who in (alice, bob):
        [message] = env.sent_to("telegram", who.address["telegram"])
        assert "https://shop.example/p/sku-42" not in text_of(message)  # every link goes through /l/
        tokens[who.id] = tracked_token(message)
    assert tokens[alice.id] != tokens[bob.id]

    response = await click(env, tokens[alice.id])
    assert (response.status, response.headers["Location"]) == (302, "https://shop.example/p/sku-42")
    assert (await click(env, "no-such-token")).status == 404
    clicked = await env.push(pushes[0])
    assert clicked.row.clicked_at is not None and clicked.statuses[-1] == "clicked"
    clicked_at = as_utc(clicked.row.clicked_at)

    # Within the attribution window the order counts; Bob's, after it, does not.
    assert await click(env, tokens[bob.id])
    days = env.config.policy.attribution_days
    assert (await order(env, "c-alice", "o-1", clicked_at + timedelta(days=days - 1)))["converted_push_id"] == pushes[0]
    assert (await order(env, "c-bob", "o-2", clicked_at + timedelta(days=days, hours=1)))["converted_push_id"] is None
    assert (await env.push(pushes[0])).row.converted_at is not None
    assert (await env.push(pushes[1])).row.converted_at is None
    # The same order told twice converts once.
    assert (await order(env, "c-alice", "o-1", clicked_at + timedelta(days=1))).get("duplicate") is True


async def test_an_order_with_the_code_of_a_cart_offer_converts_that_offer(env: Env):
    env.config.policy.quiet_hours = QuietHours(start="00:00", end="00:00")  # events run on the wall clock here
    now = datetime.now(UTC)
    await env.db.write(lambda conn: shop_store.upsert_stores(conn, [MITTE], now))
    await env.db.write(lambda conn: shop_store.upsert_products(conn, [SNEAKER], now))
    nora = await env.customer(["telegram"], external_id="c-nora", consents={"location": ["telegram"]})
    chat = nora.address["telegram"]
    cart = {"type": "cart.updated", "customer_id": "c-nora", "items": [{"product_id": "sku-42", "quantity": 1}]}
    assert (await env.touchpoints.handle(cart, now))["reason"] == "no_location"
    near = {"type": "customer.location", "customer_id": "c-nora", "latitude": 52.5291, "longitude": 13.4012}
    [made] = (await env.touchpoints.handle(near, now))["pushes"]
    await env.step(datetime.now(UTC))
    offer, pin = env.sent_to("telegram", chat)
    assert pin.method == "sendLocation"
    [code] = await env.sql("SELECT code, redeemed_at FROM discount_code WHERE customer_id = :c", c=nora.id)
    assert code.code in text_of(offer) and code.redeemed_at is None

    answer = await order(env, "c-nora", "o-9", now + timedelta(hours=2), code=code.code, total=89.9)
    assert answer["converted_push_id"] == made["push_id"]
    [code] = await env.sql("SELECT code, redeemed_at FROM discount_code WHERE customer_id = :c", c=nora.id)
    assert code.redeemed_at is not None
    push = await env.push(made["push_id"])
    assert push.row.converted_at is not None and push.statuses[-1] == "converted"


async def test_an_event_handled_at_a_given_time_creates_its_pushes_at_that_time(env: Env):
    """``Touchpoints.handle(event, now)``: the pushes it creates are queued and due at ``now``, like ``submit(now=)``."""
    await env.db.write(lambda conn: shop_store.upsert_stores(conn, [MITTE], NOON))
    await env.db.write(lambda conn: shop_store.upsert_products(conn, [SNEAKER], NOON))
    await env.customer(["telegram"], external_id="c-otto", consents={"location": ["telegram"]})
    await env.touchpoints.handle({"type": "cart.updated", "customer_id": "c-otto", "items": [{"product_id": "sku-42", "quantity": 1}]}, NOON)
    near = {"type": "customer.location", "customer_id": "c-otto", "latitude": 52.5291, "longitude": 13.4012}
    [made] = (await env.touchpoints.handle(near, NOON))["pushes"]
    push = await env.push(made["push_id"])
    assert (as_utc(push.row.created_at), as_utc(push.row.due_at)) == (NOON, NOON)
    # So the store's cooldown counts from the offer's own time: eight days later the next offer is due.
    later = NOON + timedelta(days=8)
    assert len((await env.touchpoints.handle(near, later))["pushes"]) == 1


async def test_stats_count_every_outcome_of_a_touchpoint(env: Env):
    sent_at = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=2)
    read = await env.customer(["whatsapp"], external_id="c-read", inbound={"whatsapp": sent_at - timedelta(hours=1)})
    delivered = await env.customer(["viber"], external_id="c-delivered")
    stopped = await env.customer(["telegram"], external_id="c-stopped")
    no_consent = await env.customer(["telegram"], external_id="c-none", consents={})
    blocked = await env.customer(["viber"], external_id="c-blocked")
    await env.execute("UPDATE channel_identity SET blocked_at = created_at WHERE customer_id = :c", c=blocked.id)
    pushes = await env.submit("back_in_stock", [read, delivered, stopped, no_consent, blocked], sent_at, **PRODUCT)
    await env.step(sent_at)

    wa = PlatformUser(env.tp, "whatsapp", address=read.address["whatsapp"])
    await env.receive(wa, whatsapp_status(wa, await platform_id(env, pushes[0]), "read"))
    vb = PlatformUser(env.tp, "viber", address=delivered.address["viber"])
    await env.receive(vb, viber_receipt(vb, await platform_id(env, pushes[1]), "delivered"))
    tg = PlatformUser(env.tp, "telegram", address=stopped.address["telegram"], name="Stefan Stop")
    await env.receive(tg, tg.text_body("STOP"))
    await env.flush()
    await env.step(sent_at + timedelta(minutes=10))
    [message] = env.sent_to("whatsapp", read.address["whatsapp"])
    # A WhatsApp text message carries the tracked link in its body.
    assert (await click(env, tracked_token(message))).status == 302
    await order(env, "c-read", "o-1", datetime.now(UTC))

    async with env.tp.session.get(f"{env.tp.url}/api/v1/stats", params={"touchpoint": "back_in_stock"}, headers=AUTH) as response:
        assert response.status == 200
        stats = await response.json()
    counts = {k: stats[k] for k in ("targeted", "sent", "delivered", "read", "clicked", "converted", "opted_out", "skipped")}
    assert counts == {
        "targeted": 5, "sent": 3, "delivered": 2, "read": 1, "clicked": 1, "converted": 1, "opted_out": 1, "skipped": 2,
    }
    assert stats["skipped_by_reason"] == {"no_consent": 1, "blocked": 1}
    assert stats["pending"] == 0 and stats["failed"] == 0


async def test_a_stop_long_after_a_push_is_not_counted_as_caused_by_it(env: Env):
    """stats.py: a withdrawal on the same channel *within a week* after a push counts as its opt-out."""
    recent = await env.customer(["telegram"])
    old = await env.customer(["telegram"])
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    await env.submit("back_in_stock", [recent], today - timedelta(days=2), **PRODUCT)
    await env.step(today - timedelta(days=2))
    [long_ago] = await env.submit("announcement", [old], today - timedelta(days=30), message="Old news")
    await env.step(today - timedelta(days=30))
    assert (await env.push(long_ago)).status == "sent"
    for who in (recent, old):
        user = PlatformUser(env.tp, "telegram", address=who.address["telegram"])
        await env.receive(user, user.text_body("STOP"))
    async with env.tp.session.get(f"{env.tp.url}/api/v1/stats", params={"touchpoint": "back_in_stock"}, headers=AUTH) as response:
        assert (await response.json())["opted_out"] == 1
    async with env.tp.session.get(f"{env.tp.url}/api/v1/stats", params={"touchpoint": "announcement"}, headers=AUTH) as response:
        assert (await response.json())["opted_out"] == 0
