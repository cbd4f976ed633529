"""Discount codes: how they look, which welcome codes a customer is due, and their links.

Pure domain logic, shared by the categories dialog and the Rasa action
endpoint, so both issue exactly the same codes for the same picks. Nothing
here touches the database: callers turn the returned ``IssueCode`` values
into effects, and the store's unique index on the code is the last guard.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from bot.config import ShopConfig
from bot.turn import CodeState, IssueCode

# Letters and digits a customer cannot mistake for one another when typing a
# code from a screen: no 0/O, no 1/I/L. 31 symbols carry log2(31) ≈ 4.95 bits.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_GROUPS = (4, 4, 3)  # "K7QX-M2PA-WZ3": 11 symbols ≈ 54 bits, unguessable and unique in practice
CODE_SEPARATOR = "-"
WELCOME_SOURCE = "welcome"


def new_code() -> str:
    """A fresh code like "K7QX-M2PA-WZ3", drawn from the OS's cryptographic random source.

    Why 54 bits: guessing a valid code must be hopeless even with millions of
    codes out, and two codes colliding stays negligible (about 1 in 30,000
    after a million codes); the database's unique index catches the rest.
    """
    return CODE_SEPARATOR.join(
        "".join(secrets.choice(CODE_ALPHABET) for _ in range(size)) for size in CODE_GROUPS
    )


def valid_code(usable: Sequence[CodeState], category: str, now: datetime) -> CodeState | None:
    """The customer's code for ``category`` that can still be used at ``now``, whatever its source."""
    return next((c for c in usable if c.category == category and c.expires_at > now), None)


def plan_welcome_codes(
    config: ShopConfig, categories: Sequence[str], usable: Sequence[CodeState], now: datetime
) -> list[IssueCode]:
    """One welcome code per picked category that has no usable code yet.

    A category that already has a valid code (a welcome code from an earlier
    pick, a loyalty or survey reward ...) gets none, so re-picking never
    hands out a second code; once that code expired or was redeemed (it is
    then no longer in ``usable``), a new pick earns a new one. Unknown
    category ids are skipped; repeated ids count once.
    """
    expires_at = now + timedelta(days=config.discounts.valid_days)
    planned: list[IssueCode] = []
    seen: set[str] = set()
    for category_id in categories:
        category = config.category(category_id)
        if category is None or category_id in seen or valid_code(usable, category_id, now) is not None:
            continue
        seen.add(category_id)
        planned.append(
            IssueCode(
                code=new_code(),
                category=category_id,
                percent=min(category.percent, config.discounts.max_percent),
                expires_at=expires_at,
                source=WELCOME_SOURCE,
            )
        )
    return planned


def code_link(config: ShopConfig, category_id: str, code: str) -> str:
    """The shop link that applies ``code`` in the category (``discounts.link_template``).

    "" when the category is unknown or has no url: a link without its page
    would lead nowhere, so callers leave the line out. The template may use
    ``{url}``, ``{code}`` and ``{category}`` (the category id).
    """
    category = config.category(category_id)
    if category is None or not category.url:
        return ""
    return config.discounts.link_template.format(url=category.url, code=code, category=category_id)
