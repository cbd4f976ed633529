"""The conversations, listed explicitly: no discovery by module or function name.

Add a dialog by writing its module and appending it to ``DIALOGS``.
"""

from __future__ import annotations

from bot.dialog import Dialog, Registry
from dialogs.categories import CATEGORIES
from dialogs.common import HELP, LANGUAGE, MENU
from dialogs.complaint import COMPLAINT
from dialogs.handoff import HANDOFF
from dialogs.privacy import PRIVACY, STOP
from dialogs.signup import SIGNUP
from dialogs.survey import SURVEY

DIALOGS: tuple[Dialog, ...] = (SIGNUP, MENU, HELP, LANGUAGE, PRIVACY, STOP, SURVEY, COMPLAINT, HANDOFF, CATEGORIES)


def build_registry() -> Registry:
    return Registry(DIALOGS)
