"""The domain effects (codes, tickets, handoff, surveys, pause, my data, erasure) on SQLite and PostgreSQL.

Effects are written by ``store.apply_effects`` (inside a turn through the
real pipeline, or on their own as the Rasa action endpoint does) and read
back through ``store.load_conversation``, the snapshot every dialog sees.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import text

from bot import store
from bot.app import migrate
from bot.config import ShopConfig, Survey, load_config
from bot.db import Database
from bot.events import Inbound, Kind
from bot.i18n import I18n
from bot.messages import Outbound
from bot.mydata import build_report
from bot.pipeline import Pipeline
from bot.state.factory import create_backend
from bot.turn import (
    ConsentChange,
    EraseCustomer,
    Handoff,
    IssueCode,
    OpenTicket,
    PauseMarketing,
    SaveCategories,
    SendMyData,
    SetCustomer,
    SurveyAnswer,
    SurveyStatus,
    TurnInput,
    TurnResult,
)
from integrations.console import ConsoleAdapter
from tests.test_pipeline import fresh_postgres_database

NOW = datetime.now(timezone.utc).replace(microsecond=0)
CHANNEL = "console"


def shop_config() -> ShopConfig:
    survey = Survey.model_validate(
        {
            "id": "order",
            "title": {"en": "Your order", "de": "Ihre Bestellung"},
            "expire_hours": 48,
            "questions": [
                {"id": "rating", "kind": "rating5", "text": {"en": "How was it?", "de": "Wie war es?"}},
                {
                    "id": "channel",
                    "kind": "choice",
                    "text": {"en": "How did you find us?", "de": "Wie haben Sie uns gefunden?"},
                    "options": [{"en": "Friends", "de": "Freunde"}, {"en": "Search", "de": "Suche"}],
                },
            ],
        }
    )
    return load_config(None).model_copy(update={"surveys": [survey]})


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url = await fresh_postgres_database(request.getfixturevalue("postgres_url"))
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'tp.db'}"
    await migrate(url)
    return url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.start()
    yield database
    await database.close()


class ScriptedEngine:
    """Answers each text with what ``script`` returns for it: (messages, effects, state changes)."""

    def __init__(self) -> None:
        self.script: dict[str, tuple[list[str], list[Any], dict[str, Any]]] = {}
        self.seen: list[TurnInput] = []

    async def handle(self, inp: TurnInput) -> TurnResult:
        self.seen.append(inp)
        texts, effects, changes = self.script.get(inp.event.text, ([f"echo {inp.event.text}"], [], {}))
        state = dataclasses.replace(inp.state, **changes)
        return TurnResult(state=state, messages=[Outbound(text=t) for t in texts], effects=list(effects))


PipelineFactory = Callable[..., Awaitable[Pipeline]]


@pytest.fixture
async def make_pipeline(db_url: str) -> AsyncIterator[PipelineFactory]:
    made: list[Pipeline] = []

    async def make(engine: Any, lines: list[str] | None = None, config: ShopConfig | None = None) -> Pipeline:
        db = Database(db_url)
        await db.start()
        adapter = ConsoleAdapter(write=(lines.append if lines is not None else lambda _l: None))
        p = Pipeline(
            db=db,
            backend=await create_backend(None),
            adapters={CHANNEL: adapter},
            engine=engine,
            config=config or shop_config(),
            i18n=I18n.load(),
        )
        made.append(p)
        return p

    yield make
    for p in made:
        await p.stop()
        await p.db.close()
        await p.backend.close()


async def say(p: Pipeline, address: str, message: str, **fields: Any) -> None:
    """A customer message through the inbox, handled and sent before returning."""
    event = Inbound(channel=CHANNEL, address=address, event_id=uuid.uuid4().hex, kind=Kind.TEXT, text=message, **fields)
    await p.accept(CHANNEL, [p.adapters[CHANNEL].item(event)])  # type: ignore[attr-defined]
    await p.drain_conversation(CHANNEL, address)
    await p.send_conversation(CHANNEL, address)


async def new_customer(db: Database, address: str, first_name: str = "Ana") -> store.Loaded:
    return await db.write(lambda conn: store.create_identity(conn, CHANNEL, address, first_name, "en"))


async def apply(db: Database, loaded: store.Loaded, *effects: Any, address: str = "a1", now: datetime = NOW) -> list[Outbound]:
    """Effects applied on their own, outside any turn (as the Rasa action endpoint does)."""
    return await db.write(
        lambda conn: store.apply_effects(
            conn, customer_id=loaded.customer.id, channel=CHANNEL, address=address, effects=effects, now=now
        )
    )


async def load(db: Database, address: str, now: datetime | None = None) -> store.Loaded:
    loaded = await db.read(lambda conn: store.load_conversation(conn, CHANNEL, address, now))
    assert loaded is not None
    return loaded


async def rows(db: Database, sql: str, **params: Any) -> list[Any]:
    return await db.read(lambda conn: list(conn.execute(text(sql), params)))


def code(value: str, category: str = "shoes", days: int = 30, source: str = "welcome", reference: str | None = None) -> IssueCode:
    return IssueCode(value, category, 10, NOW + timedelta(days=days), source, reference)


# --------------------------------------------------------------------------- loading


async def test_effects_are_persisted_and_the_snapshot_shows_them(db: Database) -> None:
    loaded = await new_customer(db, "a1")
    assert loaded.customer.is_new and loaded.customer.created_at is not None
    until = NOW + timedelta(days=30)
    await apply(
        db,
        loaded,
        SetCustomer(locale="de"),
        SaveCategories(("shoes", "beauty")),
        code("WELCOME-SHOES"),
        code("WELCOME-BEAUTY", "beauty", days=10),
        code("OLD-ONE", days=-1),  # expired
        code("USED-ONE", "home"),
        PauseMarketing(until=until),
    )
    await db.write(lambda conn: store.redeem_code(conn, "USED-ONE", NOW))
    await db.write(
        lambda conn: conn.execute(
            store.customer_t.update().values(attributes={"order_count": 7, "customer_since": "2023-05-01"})
        )
    )
    spoke = NOW - timedelta(minutes=5)
    await db.write(
        lambda conn: store.save_turn(
            conn, loaded=loaded, channel=CHANNEL, address="a1", new_state=loaded.state, effects=[], inbound_at=spoke
        )
    )

    again = await load(db, "a1")
    customer = again.customer
    assert customer.is_new is False
    assert customer.locale == "de"
    assert customer.categories == ("shoes", "beauty")
    assert [(c.code, c.category, c.percent, c.source) for c in customer.codes] == [
        ("WELCOME-SHOES", "shoes", 10, "welcome"),
        ("WELCOME-BEAUTY", "beauty", 10, "welcome"),
    ]
    assert customer.code_for("beauty") is not None and customer.code_for("beauty").expires_at == NOW + timedelta(days=10)
    assert customer.attributes == {"order_count": 7, "customer_since": "2023-05-01"}
    assert customer.marketing_paused_until == until
    assert customer.created_at == loaded.customer.created_at
    assert again.state.last_inbound_at == spoke
    # codes are "usable at load time": eleven days on, the beauty code is gone
    later = await load(db, "a1", now=NOW + timedelta(days=11))
    assert [c.code for c in later.customer.codes] == ["WELCOME-SHOES"]


async def test_a_customer_without_anything_loads_empty(db: Database) -> None:
    await new_customer(db, "a1")
    customer = (await load(db, "a1")).customer
    assert (customer.categories, customer.codes, dict(customer.attributes), customer.marketing_paused_until) == ((), (), {}, None)


async def test_a_code_with_a_reference_is_issued_once(db: Database) -> None:
    loaded = await new_customer(db, "a1")
    await apply(db, loaded, code("SURVEY-1", source="survey", reference="order:A1"))
    await apply(db, loaded, code("SURVEY-2", source="survey", reference="order:A1"), code("SURVEY-3", source="survey", reference="order:B2"))
    await apply(db, loaded, code("PLAIN-1"), code("PLAIN-2"))  # no reference: every issue counts
    stored = await rows(db, "SELECT code FROM discount_code ORDER BY id")
    assert [r.code for r in stored] == ["SURVEY-1", "SURVEY-3", "PLAIN-1", "PLAIN-2"]
    # another customer may get the reward of their own order A1
    other = await new_customer(db, "a2")
    await apply(db, other, code("SURVEY-4", source="survey", reference="order:A1"), address="a2")
    assert len(await rows(db, "SELECT id FROM discount_code WHERE reference = 'order:A1'")) == 2


async def test_ticket_and_handoff_outside_a_turn_switch_the_conversation_to_an_agent(db: Database) -> None:
    loaded = await new_customer(db, "a1")
    ticket = OpenTicket("C-ABC123", "coupon_failed", "charged full price", "A-1001", ({"type": "photo", "ref": "f1"},), True)
    await apply(db, loaded, ticket)
    [row] = await rows(db, "SELECT * FROM ticket")
    assert (row.number, row.kind, row.status, row.order_number, row.address) == ("C-ABC123", "coupon_failed", "open", "A-1001", "a1")
    assert bool(row.refund_requested) is True

    await apply(db, loaded, Handoff(ticket="C-ABC123"))
    assert [r.status for r in await rows(db, "SELECT status FROM ticket")] == ["waiting_agent"]
    after = await load(db, "a1")
    assert after.state.mode == "agent"
    assert after.state.version == loaded.state.version + 1  # a turn that loaded before is retried

    # Handoff without a ticket opens a "handoff" ticket that waits
    other = await new_customer(db, "a2")
    await apply(db, other, Handoff(), address="a2")
    [handoff] = await rows(db, "SELECT number, kind, status, customer_id FROM ticket WHERE kind = 'handoff'")
    assert (handoff.status, handoff.customer_id) == ("waiting_agent", other.customer.id)
    assert handoff.number.startswith("C-")
    assert (await load(db, "a2")).state.mode == "agent"


async def test_survey_answers_are_kept_one_by_one_and_the_status_ends_it(db: Database) -> None:
    loaded = await new_customer(db, "a1")
    await apply(db, loaded, SurveyAnswer("order", "A-1", "rating", "2"))
    [row] = await rows(db, "SELECT status, answers, finished_at FROM survey_response")
    assert row.status == "started" and row.finished_at is None
    await apply(db, loaded, SurveyAnswer("order", "A-1", "channel", "1"), SurveyAnswer("order", "A-1", "rating", "3"))
    await apply(db, loaded, SurveyStatus("order", "A-1", "completed"))
    [row] = await db.read(lambda conn: list(conn.execute(store.survey_t.select())))
    assert row.answers == {"rating": "3", "channel": "1"}
    assert row.status == "completed" and row.finished_at is not None


# --------------------------------------------------------------------------- inside a turn


async def test_a_turn_persists_its_effects_and_queues_the_my_data_report_after_its_reply(
    make_pipeline: PipelineFactory,
) -> None:
    engine = ScriptedEngine()
    lines: list[str] = []
    p = await make_pipeline(engine, lines)
    engine.script["my data"] = (["Here it comes."], [SaveCategories(("shoes",)), code("W-1"), SendMyData()], {})
    await say(p, "a1", "hello", first_name="Ana")
    await say(p, "a1", "my data")
    assert lines[0] == "echo hello"
    assert lines[1] == "Here it comes."
    report = lines[2]
    assert "Ana" in report and "Shoes" in report and "W-1" in report and "console account: a1" in report
    # the next turn sees the favourites, the code and when the customer last wrote
    engine.script.clear()
    await say(p, "a1", "again")
    seen = engine.seen[-1]
    assert seen.customer.categories == ("shoes",)
    assert [c.code for c in seen.customer.codes] == ["W-1"]
    assert seen.state.last_inbound_at == engine.seen[-2].event.received_at
    logged = await rows(p.db, "SELECT direction, text FROM message_log WHERE direction = 'out' ORDER BY id")
    assert [r.text for r in logged][-3:] == ["Here it comes.", report, "echo again"]


# --------------------------------------------------------------------------- my data


async def test_the_my_data_report_shows_everything_held_in_english_and_german(db: Database) -> None:
    loaded = await new_customer(db, "a1", first_name="Ana")
    config = shop_config()
    await apply(
        db,
        loaded,
        ConsentChange("marketing", CHANNEL, True, "signup", "1"),
        ConsentChange("surveys", CHANNEL, False, "signup", "1"),
        SaveCategories(("shoes", "home")),
        code("W-SHOES-1"),
        OpenTicket("C-XYZ789", "delivery", "late"),
        SurveyAnswer("order", "A-7", "rating", "5"),
        SurveyAnswer("order", "A-7", "channel", "2"),
    )
    await db.write(lambda conn: conn.execute(store.customer_t.update().values(attributes={"order_count": 3})))
    i18n = I18n.load()
    english = await db.read(lambda conn: build_report(conn, loaded.customer.id, i18n, "en", config))
    german = await db.read(lambda conn: build_report(conn, loaded.customer.id, i18n, "de", config))
    for expected in ("Name: Ana", "console account: a1", "Shoes, Home & garden", "W-SHOES-1", "C-XYZ789", "delivery",
                     "You have placed 3 orders with the shop.", "How was it? 5", "How did you find us? Search",
                     "Your order (order A-7"):
        assert expected in english, (expected, english)
    assert "1 discount code" in english and ": yes, since" in english and ": no, since" in english
    for expected in ("Schuhe, Haus & Garten", "W-SHOES-1", "C-XYZ789", "Lieferung", "Sie haben 3 Bestellungen",
                     "Wie haben Sie uns gefunden? Suche", "1 Rabattcode", "10\u00a0%"):
        assert expected in german, (expected, german)
    assert len(english) < 4000


# --------------------------------------------------------------------------- erasure


async def test_erasure_leaves_only_the_anonymised_consent_record_and_the_next_message_is_a_new_customer(
    make_pipeline: PipelineFactory,
) -> None:
    engine = ScriptedEngine()
    lines: list[str] = []
    p = await make_pipeline(engine, lines)
    engine.script["sign up"] = (
        ["Welcome!"],
        [
            SetCustomer(first_name="Ana Maria"),
            ConsentChange("marketing", CHANNEL, True, "signup", "1"),
            SaveCategories(("shoes",)),
            code("ERASE-ME"),
            OpenTicket("C-ERASE1", "quality", "torn seam", "A-55", ({"type": "photo", "ref": "file-1"},)),
            SurveyAnswer("order", "A-55", "rating", "1"),
        ],
        {},
    )
    engine.script["delete me"] = (
        ["All your data has been deleted."],
        [ConsentChange("marketing", CHANNEL, False, "erasure", "1"), EraseCustomer()],
        {},
    )
    await say(p, "a1", "sign up", first_name="Ana")
    customer_id = engine.seen[-1].customer.id
    # a message that was waiting for a retry when the customer asked to be forgotten
    await p.db.write(
        lambda conn: store.outbox_add(
            conn, channel=CHANNEL, address="a1", customer_id=customer_id, messages=[Outbound("Ana, 10% on shoes!")], inbox_id=None
        )
    )
    await p.db.write(lambda conn: conn.execute(text("UPDATE outbox SET next_attempt_at = :t WHERE status = 'pending'"), {"t": NOW + timedelta(hours=1)}))
    await say(p, "a1", "delete me")

    assert lines == ["Welcome!", "All your data has been deleted."]  # the reply of the erasing turn still went out
    [customer] = await rows(p.db, "SELECT * FROM customer WHERE id = :id", id=customer_id)
    assert customer.erased_at is not None
    assert (customer.first_name, customer.categories, customer.attributes, customer.email, customer.phone, customer.external_id) == (
        None, None, None, None, None, None,
    )
    consents = await rows(p.db, "SELECT purpose, granted, source FROM consent WHERE customer_id = :id ORDER BY id", id=customer_id)
    assert [(c.purpose, bool(c.granted), c.source) for c in consents] == [("marketing", True, "signup"), ("marketing", False, "erasure")]
    for table in ("discount_code", "survey_response", "channel_identity", "conversation"):
        assert await rows(p.db, f"SELECT id FROM {table} WHERE customer_id = :id", id=customer_id) == [], table
    [ticket] = await rows(p.db, "SELECT * FROM ticket")
    assert (ticket.description, ticket.order_number, ticket.address, ticket.status) == ("", None, "", "closed")
    assert "file-1" not in str(ticket.attachments)
    assert await rows(p.db, "SELECT id FROM message_log WHERE customer_id = :id OR address = 'a1'", id=customer_id) == []
    outbox = await rows(p.db, "SELECT payload, status FROM outbox WHERE address = 'a1'")
    assert len(outbox) == 1 and "deleted" in str(outbox[0].payload)  # only the confirmation, sent
    bodies = await rows(p.db, "SELECT body FROM inbox WHERE address = 'a1'")
    assert all(bytes(b.body) == b"" for b in bodies)
    everything = ""
    for table in ("customer", "ticket", "message_log", "inbox", "outbox", "conversation", "channel_identity"):
        everything += " ".join(str(r) for r in await rows(p.db, f"SELECT * FROM {table}"))
    assert "Ana" not in everything and "ERASE-ME" not in everything and "torn seam" not in everything

    await say(p, "a1", "hello again", first_name="Ana")
    newcomer = engine.seen[-1].customer
    assert newcomer.id != customer_id and newcomer.is_new and newcomer.consents == () and newcomer.categories == ()


# --------------------------------------------------------------------------- jobs


async def test_a_pause_ends_by_itself_but_a_choice_made_during_it_stands(make_pipeline: PipelineFactory) -> None:
    p = await make_pipeline(ScriptedEngine())
    loaded = await new_customer(p.db, "a1")
    until = NOW + timedelta(days=30)
    signup = [ConsentChange(purpose, CHANNEL, True, "signup", "2") for purpose in ("marketing", "surveys", "location")]
    pause = [ConsentChange(purpose, CHANNEL, False, "pause", "2") for purpose in ("marketing", "surveys", "location")]
    await apply(p.db, loaded, *signup, *pause, PauseMarketing(until=until))
    # during the pause the customer switches surveys on again and location off for good
    await apply(p.db, loaded, ConsentChange("surveys", CHANNEL, True, "privacy", "2"), ConsentChange("location", CHANNEL, False, "privacy", "2"))

    assert await p.run_jobs(now=until - timedelta(minutes=1)) == {"marketing_resumed": 0, "surveys_expired": 0}
    assert (await p.run_jobs(now=until))["marketing_resumed"] == 1
    customer = (await load(p.db, "a1")).customer
    assert customer.marketing_paused_until is None
    current = {c.purpose: c.granted for c in customer.consents}
    assert current == {"marketing": True, "surveys": True, "location": False}
    newest = await rows(p.db, "SELECT purpose, source, wording_version FROM consent ORDER BY id DESC LIMIT 1")
    assert [(r.purpose, r.source, r.wording_version) for r in newest] == [("marketing", "pause_ended", "2")]
    # nothing more to do: no new rows
    count = len(await rows(p.db, "SELECT id FROM consent"))
    await p.run_jobs(now=until + timedelta(days=1))
    assert len(await rows(p.db, "SELECT id FROM consent")) == count


async def test_unanswered_surveys_expire_after_their_surveys_hours(make_pipeline: PipelineFactory) -> None:
    p = await make_pipeline(ScriptedEngine())  # survey "order" expires after 48 hours
    loaded = await new_customer(p.db, "a1")

    async def started(order: str, hours_ago: float, status: str = "started") -> None:
        at = NOW - timedelta(hours=hours_ago)
        await p.db.write(lambda conn: store.start_survey_row(conn, loaded.customer.id, "order", order, CHANNEL, "a1", at))
        if status != "started":
            await apply(p.db, loaded, SurveyStatus("order", order, status))

    await started("OLD", 49)
    await started("NEW", 47)
    await started("DONE", 60, status="completed")
    assert (await p.run_jobs(now=NOW))["surveys_expired"] == 1
    statuses = {r.order_ref: r.status for r in await rows(p.db, "SELECT order_ref, status FROM survey_response")}
    assert statuses == {"OLD": "expired", "NEW": "started", "DONE": "completed"}
    assert (await p.run_jobs(now=NOW + timedelta(hours=2)))["surveys_expired"] == 1
