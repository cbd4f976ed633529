"""The ``touchpoint`` command (also ``python -m bot``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from typing import Any

from pydantic import ValidationError

from bot.config import ConfigError, describe_errors
from bot.settings import Settings


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # httpx (python-telegram-bot's transport) logs every request at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _use_uvloop() -> None:
    """uvloop makes the event loop 10-30 % faster (../shared/PERFORMANCE.md); optional."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import AlreadyRunning, create_app

    if args.no_workers and not settings.touchpoint_redis_url:
        print(
            "touchpoint serve --no-workers needs TOUCHPOINT_REDIS_URL: without Redis the queues live inside "
            "this process and nothing else could consume them.",
            file=sys.stderr,
        )
        return 2
    # Bind before anything starts: a second `serve` on a busy port must not run workers.
    try:
        sock = socket.create_server((settings.touchpoint_host, settings.touchpoint_port), reuse_port=False)
    except OSError as exc:
        print(f"cannot listen on {settings.touchpoint_host}:{settings.touchpoint_port}: {exc.strerror}", file=sys.stderr)
        return 2
    app = create_app(settings, run_workers=not args.no_workers)
    _use_uvloop()
    try:
        _run(app, sock)
    except AlreadyRunning as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


def _run(app: Any, sock: socket.socket) -> None:
    from aiohttp import web

    web.run_app(
        app,
        sock=sock,
        access_log=None,
        print=lambda text: logging.getLogger("touchpoint").info(text.strip()),
    )


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from bot.worker import run_worker

    if not settings.touchpoint_redis_url:
        print(
            "touchpoint worker needs TOUCHPOINT_REDIS_URL: without Redis the queues live inside one process, "
            "so run `touchpoint serve` alone (it runs the workers itself).",
            file=sys.stderr,
        )
        return 2
    asyncio.run(run_worker(settings))
    return 0


def cmd_shell(settings: Settings, args: argparse.Namespace) -> int:
    from bot.shell import main

    return main(settings, user=args.user, name=args.name, language=args.language)


def cmd_set_webhooks(settings: Settings, args: argparse.Namespace) -> int:
    from bot.webhook_setup import register_all

    return asyncio.run(register_all(settings, args.base_url))


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    from bot.migrate import upgrade

    upgrade(settings.touchpoint_database_url, args.revision)
    print(f"database is at revision {args.revision}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="touchpoint", description="Touchpoint customer-engagement bot service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="HTTP server: webhooks, shop API, and (by default) the workers")
    serve.add_argument("--no-workers", action="store_true", help="only serve HTTP; run `touchpoint worker` separately (needs Redis)")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="only the queue consumers (needs TOUCHPOINT_REDIS_URL)")
    worker.set_defaults(func=cmd_worker)

    shell = sub.add_parser("shell", help="chat with the dialogs in the terminal (channel 'console')")
    shell.add_argument("--user", default="me", help="who you are in the console channel")
    shell.add_argument("--name", default=None, help="your first name, as a platform would give it")
    shell.add_argument("--language", default=None, help="your app's language code, e.g. de or es")
    shell.set_defaults(func=cmd_shell)

    hooks = sub.add_parser("set-webhooks", help="register the webhook with every configured platform")
    hooks.add_argument("--base-url", required=True, help="public HTTPS base URL of this server, e.g. https://bot.example.org")
    hooks.set_defaults(func=cmd_set_webhooks)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_upgrade = db_sub.add_parser("upgrade", help="apply migrations (Alembic)")
    db_upgrade.add_argument("revision", nargs="?", default="head")
    db_upgrade.set_defaults(func=cmd_db)

    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"touchpoint: the environment settings are not valid:\n{describe_errors(exc)}", file=sys.stderr)
        return 2
    _setup_logging(settings.touchpoint_log_level)
    if args.command in ("shell",):
        logging.getLogger().setLevel(logging.WARNING)
    try:
        return args.func(settings, args)
    except ConfigError as exc:
        print(f"touchpoint: the shop config cannot be used: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
