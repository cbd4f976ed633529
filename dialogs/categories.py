"""Favourite categories: a paged multi-select that ends with one discount code per new favourite.

Reached at the end of sign-up (with a welcome-offer intro, when marketing was
granted), from the menu ("My categories") and by the ``categories`` command;
the saved favourites start pre-selected.

Why pages of at most ``MAX_CHOICES`` buttons: that is the most every
platform shows as one choice list (a WhatsApp list has 10 rows), so the
catalog never degrades into a numbered text; "◀ Back" / "More ▶" reach every
category. The picks live in the dialog's slots until "Done" saves them.

Why the button ids say what they do ("pick:shoes", "unpick:shoes",
"page:2"): a double tap or a press in an older message repeats the wish
instead of flipping it back, so such presses are applied even when the
current page no longer offers them (they are idempotent).

Typed answers: the engine resolves a typed label or number against the page;
beyond that a category name in the customer's language (or English) picks or
unpicks it from any page, several names ("shoes, books and toys") pick them
all, and "done" / "next" / "back" words work as the buttons do.
"""

from __future__ import annotations

from babel.lists import format_list

from bot.codes import code_link, plan_welcome_codes, valid_code
from bot.config import Category
from bot.dialog import (
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
from bot.turn import IssueCode, SaveCategories

NAME = "categories"
MAX_CHOICES = 10  # buttons per message: the longest list every platform shows as one (WhatsApp: 10 rows)
MARKETING = "marketing"  # codes are offers: only with this purpose granted on the channel
PICK, UNPICK, PAGE, DONE = "pick", "unpick", "page", "done"
DONE_ID = choice_id(DONE, NAME)
MAX_TYPED_WORDS = 40  # a longer text is a message, not a list of category names


# ----------------------------------------------------------------------------- paging


def page_bounds(count: int) -> list[tuple[int, int]]:
    """[start, stop) of each page so that categories + navigation + "Done" fit ``MAX_CHOICES``.

    The first page has no "Back" and the last no "More", so they hold one
    category more than the pages in between; a catalog that fits on one page
    has no navigation at all. ``page_bounds(23)`` → [(0, 8), (8, 15), (15, 23)].
    """
    bounds: list[tuple[int, int]] = []
    start = 0
    while True:
        room = MAX_CHOICES - 1 - (1 if bounds else 0)  # "Done", and "Back" after the first page
        if count - start <= room:
            bounds.append((start, count))
            return bounds
        room -= 1  # "More"
        bounds.append((start, start + room))
        start += room


def _pages(ctx: Context) -> list[tuple[int, int]]:
    return page_bounds(len(ctx.config.categories))


def _page(ctx: Context) -> int:
    """The page shown, 1-based, kept within the catalog (it may have shrunk since)."""
    return min(max(int(ctx.slots.get("page", 1)), 1), len(_pages(ctx)))


# ----------------------------------------------------------------------------- picks


def _picks(ctx: Context) -> list[str]:
    return ctx.slots.setdefault("picks", [])


def _name(ctx: Context, category_id: str) -> str:
    category = ctx.config.category(category_id)
    return ctx.local(category.name) if category else category_id


def _names(ctx: Context, category_ids: list[str]) -> str:
    """"Shoes, Books and Toys" as the customer's language joins a list."""
    return format_list([_name(ctx, c) for c in category_ids], locale=ctx.locale)


def _set(ctx: Context, category_id: str, wanted: bool) -> bool:
    """Pick or unpick one category; False (and the limit said) when a pick does not fit."""
    picks = _picks(ctx)
    if ctx.config.category(category_id) is None or (category_id in picks) == wanted:
        return True  # unknown, or already as asked (a double tap): nothing changes
    if not wanted:
        picks.remove(category_id)
        return True
    limit = ctx.config.discounts.max_favourites
    if len(picks) >= limit:
        ctx.say_text(ctx.tn("categories.limit", "categories.limit.plural", limit))
        return False
    picks.append(category_id)
    return True


# ----------------------------------------------------------------------------- the list


def _begin(ctx: Context) -> Transition:
    if not ctx.config.categories:
        ctx.say("categories.empty")
        return end()
    limit = ctx.config.discounts.max_favourites
    saved = [c for c in ctx.customer.categories if ctx.config.category(c) is not None]
    ctx.slots.update(picks=saved[:limit], page=1, shown=False)
    return go("pick")


def _category_button(ctx: Context, category: Category) -> Choice:
    if category.id in _picks(ctx):
        return button(choice_id(UNPICK, category.id), "categories.label_picked", name=ctx.local(category.name))
    return literal_button(choice_id(PICK, category.id), ctx.local(category.name))


def _pick_prompt(ctx: Context) -> None:
    pages, page = _pages(ctx), _page(ctx)
    start, stop = pages[page - 1]
    limit, picks = ctx.config.discounts.max_favourites, _picks(ctx)
    done = ctx.t("buttons.done")

    lines = []
    if not ctx.slots.get("shown"):  # the explanation once; after a tap only where things stand
        ctx.slots["shown"] = True
        if ctx.slots.get("welcome"):
            lines += [ctx.tn("categories.welcome", "categories.welcome.plural", limit, done=done), ""]
        else:
            lines += [ctx.tn("categories.intro", "categories.intro.plural", limit, done=done), ""]
    if len(pages) > 1:
        lines.append(ctx.t("categories.page", page=page, pages=len(pages)))
    lines.append(ctx.tn("categories.picked", "categories.picked.plural", len(picks), max=limit))
    if picks:
        lines.append(ctx.t("categories.picked_names", names=_names(ctx, picks)))

    choices = [_category_button(ctx, c) for c in ctx.config.categories[start:stop]]
    if page > 1:
        choices.append(button(choice_id(PAGE, str(page - 1)), "categories.back"))
    if page < len(pages):
        choices.append(button(choice_id(PAGE, str(page + 1)), "categories.more"))
    choices.append(button(DONE_ID, "buttons.done"))
    ctx.ask_text("\n".join(lines), choices)


def _pick_chosen(ctx: Context, choice: str) -> Transition:
    action, subject = split_choice_id(choice)
    if action == DONE:
        return _done(ctx)
    if action == PAGE and subject.isdigit():
        ctx.slots["page"] = int(subject)
    elif action in (PICK, UNPICK):
        _set(ctx, subject, wanted=action == PICK)
    return go("pick")


def _pick_input(ctx: Context) -> Transition | None:
    """A press from an older message (applied: its id says what it wants) or a typed answer."""
    if ctx.event.kind is Kind.BUTTON:
        action, subject = split_choice_id(ctx.event.payload or "")
        known = ctx.config.category(subject) is not None if action in (PICK, UNPICK) else action == PAGE
        return _pick_chosen(ctx, ctx.event.payload or "") if known and subject else None
    if ctx.event.kind is not Kind.TEXT:
        return None
    typed = _typed_categories(ctx, ctx.event.text)
    if typed is not None:
        if len(typed) == 1:  # one name works like its button: it picks or unpicks
            _set(ctx, typed[0], wanted=typed[0] not in _picks(ctx))
        else:  # a list says "these": pick them all, as many as fit
            for category_id in typed:
                if not _set(ctx, category_id, wanted=True):
                    break
        return go("pick")
    word = normalise(ctx.event.text)
    if word in _words(ctx, "categories.words.done"):
        return _done(ctx)
    page, pages = _page(ctx), len(_pages(ctx))
    if word in _words(ctx, "categories.words.next") and page < pages:
        ctx.slots["page"] = page + 1
        return go("pick")
    if word in _words(ctx, "categories.words.back") and page > 1:
        ctx.slots["page"] = page - 1
        return go("pick")
    return None


# ----------------------------------------------------------------------------- typed answers


def _words(ctx: Context, msgid: str) -> set[str]:
    """The catalog's words in the customer's language and in English (as for yes/no), normalised."""
    return {normalise(w) for lang in {ctx.locale, FALLBACK_LOCALE} for w in ctx.i18n.words(lang, msgid)}


def _typed_categories(ctx: Context, text: str) -> list[str] | None:
    """The category ids a typed text names ("Schuhe", "shoes, books and toys"), or None.

    The whole text must be category names (in the customer's language or
    English), separated by commas or "and" words; anything else is not a
    list of categories and is left to the other readings.
    """
    skip = _words(ctx, "categories.words.and")
    names: dict[tuple[str, ...], str] = {}
    for category in ctx.config.categories:
        for label in (ctx.local(category.name), category.name.en):
            key = tuple(t for t in normalise(label).split() if t not in skip)
            if key:
                names.setdefault(key, category.id)
    tokens = [t for t in normalise(text).split() if t not in skip]
    if not tokens or len(tokens) > MAX_TYPED_WORDS or not names:
        return None
    longest = max(len(key) for key in names)
    parsed: dict[int, list[str] | None] = {len(tokens): []}

    def parse(i: int) -> list[str] | None:  # the names from token i on, longest name first
        if i not in parsed:
            parsed[i] = None
            for j in range(min(len(tokens), i + longest), i, -1):
                found, rest = names.get(tuple(tokens[i:j])), None
                if found is not None and (rest := parse(j)) is not None:
                    parsed[i] = [found, *rest]
                    break
        return parsed[i]

    ids = parse(0)
    return list(dict.fromkeys(ids)) if ids else None


# ----------------------------------------------------------------------------- done


def _done(ctx: Context) -> Transition:
    picks = list(_picks(ctx))
    word = ctx.command_word(NAME)
    if not picks:
        if ctx.customer.categories:
            # Every saved favourite was unpicked on purpose, one tap each: that is a wish to clear them.
            ctx.emit(SaveCategories(()))
            ctx.say("categories.cleared", categories=word)
        else:
            ctx.say("categories.none", categories=word)
        return end()

    ctx.emit(SaveCategories(tuple(picks)))
    lines = [ctx.t("categories.saved", names=_names(ctx, picks))]
    if ctx.granted(MARKETING):
        issued = plan_welcome_codes(ctx.config, picks, ctx.customer.codes, ctx.now)
        for code in issued:
            ctx.emit(code)
        lines += _code_lines(ctx, picks, issued)
    else:
        lines += ["", ctx.t("categories.no_consent", privacy=ctx.command_word("privacy"), categories=word)]
    lines += ["", ctx.t("categories.change_howto", categories=word)]
    ctx.say_text("\n".join(lines))
    return end()


def _code_lines(ctx: Context, picks: list[str], issued: list[IssueCode]) -> list[str]:
    """The new codes under one heading, then the codes the customer already holds, each with its link."""
    new = {code.category: code for code in issued}
    fresh: list[str] = []
    held: list[str] = []
    for category_id in picks:
        name = _name(ctx, category_id)
        if category_id in new:
            code = new[category_id]
            msgid, block = "categories.code_new", fresh
        elif (current := valid_code(ctx.customer.codes, category_id, ctx.now)) is not None:
            code, msgid, block = current, "categories.code_valid", held
        else:
            continue
        block.append(
            ctx.t(msgid, name=name, percent=ctx.percent(code.percent), code=code.code, date=ctx.date(code.expires_at))
        )
        link = code_link(ctx.config, category_id, code.code)
        if link:
            block.append(link)
    lines: list[str] = []
    if fresh:
        lines += ["", ctx.tn("categories.new_codes", "categories.new_codes.plural", len(issued)), *fresh]
    if held:
        lines += ["", *held]
    return lines


CATEGORIES = Dialog(
    name=NAME,
    commands=(NAME,),
    begin=_begin,
    steps={"pick": Step(prompt=_pick_prompt, on_choice=_pick_chosen, on_input=_pick_input)},
)
