"""Typed keys for the resources the app owns (aiohttp ``AppKey``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from aiohttp import web

if TYPE_CHECKING:
    from bot.campaigns import Campaigns
    from bot.config import ShopConfig
    from bot.db import Database
    from bot.pipeline import Pipeline
    from bot.pushes import PushService
    from bot.settings import Settings
    from bot.state.base import StateBackend
    from bot.touchpoints import Touchpoints
    from integrations.base import ChannelAdapter

SETTINGS = web.AppKey("settings", "Settings")
CONFIG = web.AppKey("config", "ShopConfig")
DB = web.AppKey("db", "Database")
BACKEND = web.AppKey("backend", "StateBackend")
ADAPTERS = web.AppKey("adapters", "Mapping[str, ChannelAdapter]")
PIPELINE = web.AppKey("pipeline", "Pipeline")
PUSHES = web.AppKey("pushes", "PushService")
TOUCHPOINTS = web.AppKey("touchpoints", "Touchpoints")
CAMPAIGNS = web.AppKey("campaigns", "Campaigns")
