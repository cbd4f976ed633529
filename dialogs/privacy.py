"""Privacy in the chat: consents per purpose and channel, my data, delete me, pause offers; and stop.

``privacy`` lists this channel's consents with a toggle each, a line per
other channel the customer has answered on, and the actions "My data",
"Pause offers" and "Delete me" (buttons, or the same words typed while the
screen is open). ``stop`` withdraws every marketing purpose on this channel
at once. Every change is a ``ConsentChange`` effect that the pipeline appends
to the consent log with its source ("privacy", "pause", "erasure", "stop").

Another channel's consents can be switched *off* from here (a customer on
Telegram may want WhatsApp offers to stop), never on: consent is asked for in
the chat where the messages arrive, under that channel's wording.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.dialog import (
    NO,
    YES,
    Choice,
    Context,
    Dialog,
    Step,
    Transition,
    button,
    choice_id,
    end,
    go,
    literal_button,
    normalise,
    split_choice_id,
)
from bot.events import Kind
from bot.i18n import FALLBACK_LOCALE
from bot.turn import ConsentChange, EraseCustomer, PauseMarketing, SendMyData

# Button ids "on:<purpose>" / "off:<purpose>" say the state the customer asks for, as the
# label does, never "invert": a stale or double-tapped "Turn off X" must not turn X back on.
# Another channel's toggle names it too: "off:marketing@whatsapp".
ON = "on"
OFF = "off"
AT = "@"
DONE = "done"
MY_DATA = choice_id("privacy", "my_data")
PAUSE = choice_id("privacy", "pause")
ERASE = choice_id("privacy", "erase")
OTHER_CHATS = choice_id("privacy", "channels")
THIS_CHAT = choice_id("privacy", "here")
BACK = choice_id("back", "privacy")
CHANNEL = "channel"  # choice_id(CHANNEL, "whatsapp") picks a channel; also the slot holding it
ERASE_SUBJECT = "erase"

MAX_BUTTONS = 10  # a WhatsApp list shows at most 10 rows
PAUSE_DAYS = 30
# The words a customer may type on the privacy screen for each action, besides its label.
ACTION_WORDS = {MY_DATA: "privacy.words.my_data", PAUSE: "privacy.words.pause", ERASE: "privacy.words.erase"}

Consents = dict[tuple[str, str], tuple[bool, str]]


# ----------------------------------------------------------------------------- consents


def current_consents(ctx: Context) -> Consents:
    """(granted, wording version) per (purpose, channel) on every channel, this turn's changes included."""
    current = {(c.purpose, c.channel): (c.granted, c.wording_version) for c in ctx.customer.consents}
    for effect in ctx.effects:
        if isinstance(effect, ConsentChange):
            current[(effect.purpose, effect.channel)] = (effect.granted, effect.wording_version)
    return current


def _granted(consents: Consents, purpose: str, channel: str) -> bool:
    return consents.get((purpose, channel), (False, ""))[0]


def other_channels(ctx: Context, consents: Consents) -> list[str]:
    """Channels other than this one that the customer has answered a consent question on."""
    return sorted({channel for _, channel in consents} - {ctx.customer.channel})


def channel_name(ctx: Context, channel: str) -> str:
    """The channel's name ("WhatsApp", "E-Mail"); one the catalog does not know shows as its id."""
    name = ctx.t(f"privacy.channel.{channel}")
    return channel if name == f"privacy.channel.{channel}" else name


def _short_name(ctx: Context, purpose_id: str) -> str:
    """A purpose's name on its toggle button, short enough for a 24-character list row; else its name."""
    short = ctx.t(f"consent.{purpose_id}.short")
    return ctx.t(f"consent.{purpose_id}.name") if short == f"consent.{purpose_id}.short" else short


def consent_lines(ctx: Context, channel: str | None = None) -> list[str]:
    """One "✅ name: on" / "❌ name: off" line per configured purpose on ``channel`` (default: this one)."""
    channel = channel or ctx.customer.channel
    consents = current_consents(ctx)
    lines = []
    for purpose in ctx.config.consent_purposes:
        name = ctx.t(f"consent.{purpose.id}.name")
        msgid = "consent.line_on" if _granted(consents, purpose.id, channel) else "consent.line_off"
        lines.append(ctx.t(msgid, name=name))
    return lines


def _channel_line(ctx: Context, channel: str, consents: Consents) -> str:
    """Another channel on one line: "WhatsApp: Marketing messages ✅, Surveys ❌"."""
    states = []
    for purpose in ctx.config.consent_purposes:
        msgid = "privacy.channel_on" if _granted(consents, purpose.id, channel) else "privacy.channel_off"
        states.append(ctx.t(msgid, name=ctx.t(f"consent.{purpose.id}.name")))
    return ctx.t("privacy.channel_line", channel=channel_name(ctx, channel), consents=", ".join(states))


def _toggles(ctx: Context, channel: str, consents: Consents) -> list[Choice]:
    """This channel: on and off for each purpose. Another channel: off for what is granted there."""
    here = channel == ctx.customer.channel
    toggles = []
    for purpose in ctx.config.consent_purposes:
        name = _short_name(ctx, purpose.id)
        subject = purpose.id if here else f"{purpose.id}{AT}{channel}"
        if _granted(consents, purpose.id, channel):
            toggles.append(button(choice_id(OFF, subject), "privacy.turn_off", name=name))
        elif here:
            toggles.append(button(choice_id(ON, subject), "privacy.turn_on", name=name))
    return toggles


def _toggle(ctx: Context, choice: str) -> None:
    """Record the state a pressed toggle asks for, unless it already holds (a second tap)."""
    setting, subject = split_choice_id(choice)
    purpose_id, _, channel = subject.partition(AT)
    channel = channel or ctx.customer.channel
    purpose = ctx.config.purpose(purpose_id)
    wanted = setting == ON
    if purpose is None or setting not in (ON, OFF):
        return
    if _granted(current_consents(ctx), purpose.id, channel) != wanted:
        ctx.emit(ConsentChange(purpose.id, channel, wanted, "privacy", purpose.version))


def _paused_until(ctx: Context) -> datetime | None:
    """The end of a running pause of offers, None when none runs."""
    until = ctx.customer.marketing_paused_until
    return until if until is not None and until > ctx.now else None


# ----------------------------------------------------------------------------- the privacy screen


def _list_prompt(ctx: Context) -> None:
    here = ctx.customer.channel
    consents = current_consents(ctx)
    others = other_channels(ctx, consents)
    actions = [button(MY_DATA, "privacy.my_data"), button(PAUSE, "privacy.pause"), button(ERASE, "privacy.erase")]
    if others:
        actions.insert(0, button(OTHER_CHATS, "privacy.other_channels"))
    done = button(DONE, "buttons.done")
    toggles = _toggles(ctx, here, consents)
    if len(toggles) + len(actions) + 1 > MAX_BUTTONS:
        toggles = [button(THIS_CHAT, "privacy.this_channel")]  # many purposes: on a screen of their own

    lines = [ctx.t("privacy.title"), *consent_lines(ctx)]
    if others:
        lines += ["", ctx.t("privacy.other_title"), *(_channel_line(ctx, c, consents) for c in others)]
    paused = _paused_until(ctx)
    if paused is not None:
        lines += ["", ctx.t("privacy.paused_line", date=ctx.date(paused))]
    lines += ["", ctx.t("privacy.howto", done=ctx.t("buttons.done"))]
    ctx.ask_text("\n".join(lines), [*toggles, *actions, done])


def _list_chosen(ctx: Context, choice: str) -> Transition:
    if choice == DONE:
        ctx.say("privacy.saved", privacy=ctx.command_word("privacy"))
        return end()
    if choice == MY_DATA:
        ctx.emit(SendMyData())
        ctx.say("privacy.my_data_sent")
        return end()
    if choice == PAUSE:
        return _pause(ctx)
    if choice == ERASE:
        return go("erase")
    if choice == THIS_CHAT:
        return _open_channel(ctx, ctx.customer.channel)
    if choice == OTHER_CHATS:
        others = other_channels(ctx, current_consents(ctx))
        return _open_channel(ctx, others[0]) if len(others) == 1 else go("channels")
    _toggle(ctx, choice)
    return go("list")


def _typed_action(ctx: Context) -> Transition | None:
    """Typed "meine daten", "delete me", "pausar ofertas" (the customer's language or English)."""
    if ctx.event.kind is not Kind.TEXT:
        return None
    typed = normalise(ctx.event.text)
    for action, msgid in ACTION_WORDS.items():
        words = {normalise(w) for lang in (ctx.locale, FALLBACK_LOCALE) for w in ctx.i18n.words(lang, msgid)}
        if typed and typed in words:
            return _list_chosen(ctx, action)
    return None


# ----------------------------------------------------------------------------- one channel


def _open_channel(ctx: Context, channel: str) -> Transition:
    ctx.slots[CHANNEL] = channel
    return go("channel")


def _channels_prompt(ctx: Context) -> None:
    """Which other chat to look at, when there are several (each gets a screen of its own)."""
    choices = [
        literal_button(choice_id(CHANNEL, channel), channel_name(ctx, channel))
        for channel in other_channels(ctx, current_consents(ctx))
    ]
    ctx.ask("privacy.channels_question", [*choices, button(BACK, "privacy.back")])


def _channels_chosen(ctx: Context, choice: str) -> Transition:
    action, channel = split_choice_id(choice)
    if action == CHANNEL:
        return _open_channel(ctx, channel)
    return go("list")


def _channel_prompt(ctx: Context) -> None:
    channel = ctx.slots.get(CHANNEL) or ctx.customer.channel
    here = channel == ctx.customer.channel
    name = channel_name(ctx, channel)
    back = button(BACK, "privacy.back")
    howto = ctx.t("privacy.howto", done=ctx.t("privacy.back")) if here else ctx.t("privacy.channel_howto", channel=name)
    text = "\n".join([ctx.t("privacy.channel_title", channel=name), *consent_lines(ctx, channel), "", howto])
    ctx.ask_text(text, [*_toggles(ctx, channel, current_consents(ctx)), back])


def _channel_chosen(ctx: Context, choice: str) -> Transition:
    if choice == BACK:
        return go("list")
    _toggle(ctx, choice)
    return go("channel")


# ----------------------------------------------------------------------------- actions


def _pause(ctx: Context) -> Transition:
    """Withdraw every granted marketing purpose on every channel for 30 days; the store restores them."""
    paused = []
    for (purpose_id, channel), (granted, version) in current_consents(ctx).items():
        purpose = ctx.config.purpose(purpose_id)
        if granted and purpose is not None and purpose.marketing:
            ctx.emit(ConsentChange(purpose_id, channel, False, "pause", version))
            if purpose_id not in paused:
                paused.append(purpose_id)
    if not paused:
        ctx.say("privacy.nothing_to_pause")
        return go("list")
    until = ctx.now + timedelta(days=PAUSE_DAYS)
    ctx.emit(PauseMarketing(until=until))
    names = [ctx.t("list.item", item=ctx.t(f"consent.{p.id}.name")) for p in ctx.config.consent_purposes if p.id in paused]
    howto = ctx.t("privacy.paused_howto", privacy=ctx.command_word("privacy"))
    ctx.say_text("\n".join([ctx.t("privacy.paused", date=ctx.date(until)), *names, "", howto]))
    return end()


def _erase_prompt(ctx: Context) -> None:
    ctx.ask(
        "privacy.erase_question",
        [
            button(choice_id(YES, ERASE_SUBJECT), "privacy.erase_yes", means=YES),
            button(choice_id(NO, ERASE_SUBJECT), "privacy.erase_no", means=NO),
        ],
    )


def _erase_chosen(ctx: Context, choice: str) -> Transition:
    if split_choice_id(choice)[0] != YES:
        ctx.say("privacy.erase_kept")
        return go("list")
    # Withdraw first, so the anonymised record that stays says what was withdrawn and under which wording.
    for (purpose_id, channel), (granted, version) in current_consents(ctx).items():
        if granted:
            ctx.emit(ConsentChange(purpose_id, channel, False, "erasure", version))
    ctx.emit(EraseCustomer())
    ctx.say("privacy.erased")
    return end(resume=False)


PRIVACY = Dialog(
    name="privacy",
    commands=("privacy",),
    begin=lambda ctx: go("list"),
    steps={
        "list": Step(prompt=_list_prompt, on_choice=_list_chosen, on_input=_typed_action),
        "channels": Step(prompt=_channels_prompt, on_choice=_channels_chosen),
        "channel": Step(prompt=_channel_prompt, on_choice=_channel_chosen),
        "erase": Step(prompt=_erase_prompt, on_choice=_erase_chosen),
    },
)

# ----------------------------------------------------------------------------- stop


def _stop(ctx: Context) -> Transition:
    """Withdraw every marketing purpose on this channel at once; no question asked.

    While offers are paused (until the job ends the pause, even one whose date
    has passed) the paused purposes are off only for the time being: stop
    withdraws those too, under its own source, so the end of the pause leaves
    them off. The snapshot has no consent sources, so every answered purpose
    that is off counts then.
    """
    paused = ctx.customer.marketing_paused_until is not None
    withdrawn = []
    for purpose in ctx.config.consent_purposes:
        if not purpose.marketing:
            continue
        current = ctx.consent(purpose.id)
        # Every marketing purpose gets a "stop" row, answered or not: the push rules read it as
        # "stopped on this channel", which holds back even transactional touchpoints.
        ctx.emit(ConsentChange(purpose.id, ctx.customer.channel, False, "stop", current[1] if current else purpose.version))
        if current is not None and (current[0] or paused):
            withdrawn.append(ctx.t("list.item", item=ctx.t(f"consent.{purpose.id}.name")))
    howto = ctx.t("stop.howto", privacy=ctx.command_word("privacy"))
    if withdrawn:
        head = ctx.tn("stop.done", "stop.done.plural", len(withdrawn))
        ctx.say_text("\n".join([head, *withdrawn, "", howto]))
    else:
        ctx.say_text("\n\n".join([ctx.t("stop.nothing"), howto]))
    return end(resume=False)


STOP = Dialog(name="stop", commands=("stop",), begin=_stop, resets=True)
