"""python-telegram-bot's HTTP transport over aiohttp instead of httpx.

Why: under load httpx/httpcore was the largest CPU cost of the server (its
pool checks every pooled connection with a syscall per request, and it
retries a failed ``import trio`` on every response). PTB's ``Bot`` stays; only
the wire changes. The contract is PTB's ``BaseRequest``: ``do_request``
returns ``(status, body)`` and raises only ``TimedOut`` (any timeout) or
``NetworkError`` (any other transport failure); ``BaseRequest`` maps status
codes to ``RetryAfter``, ``Forbidden``, ``BadRequest``, ... itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

if TYPE_CHECKING:
    from telegram._utils.types import ODVInput

FORM = "application/x-www-form-urlencoded"
# PTB marks "timeout not passed, use yours" with an instance of this (private) class.
DefaultValue = type(BaseRequest.DEFAULT_NONE)


class AiohttpRequest(BaseRequest):
    """PTB requests through an ``aiohttp.ClientSession``.

    By default the session is created by ``initialize()`` (with
    ``connection_limit`` connections) and closed by ``shutdown()``. After
    ``use_session(session)`` the caller's session is used instead; its
    connector decides the pool size, and ``shutdown()`` leaves it open.
    """

    __slots__ = (
        "_connection_limit",
        "_default_timeout",
        "_form_headers",
        "_headers",
        "_owns_session",
        "_session",
        "_timeout",
    )

    def __init__(self, *, timeout: float = 10.0, connection_limit: int = 64) -> None:
        self._timeout = timeout  # the default for each of PTB's read/write/connect/pool timeouts
        self._connection_limit = connection_limit
        self._default_timeout = _client_timeout(timeout, timeout, timeout, timeout)
        self._headers = {"User-Agent": self.USER_AGENT}  # built once: no per-request churn
        self._form_headers = {**self._headers, "Content-Type": FORM}
        self._session: aiohttp.ClientSession | None = None
        self._owns_session = False

    def use_session(self, session: aiohttp.ClientSession) -> None:
        """Send through ``session`` (owned by the caller) instead of a private one."""
        if self._owns_session and self._session is not None and not self._session.closed:
            raise RuntimeError("use_session() must come before initialize()")
        self._session = session
        self._owns_session = False

    @property
    def read_timeout(self) -> float | None:
        return self._timeout

    async def initialize(self) -> None:
        if self._session is not None and (not self._session.closed or not self._owns_session):
            return  # already open, or a shared session whose life the caller manages
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connection_limit),
            timeout=self._default_timeout,
        )
        self._owns_session = True

    async def shutdown(self) -> None:
        """Close our own session; a shared one belongs to the caller and stays open."""
        if self._owns_session and self._session is not None:
            session, self._session, self._owns_session = self._session, None, False
            await session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        session = self._session
        if session is None:
            raise RuntimeError("This AiohttpRequest is not initialized!")

        headers = self._headers
        data: bytes | aiohttp.FormData | None = None
        if request_data is not None:
            if request_data.contains_files:
                data = _multipart(request_data)
            else:
                fields = request_data.json_parameters
                if fields:
                    data = urlencode(fields).encode()
                    headers = self._form_headers

        timeout = self._default_timeout
        if not (
            isinstance(read_timeout, DefaultValue)
            and isinstance(write_timeout, DefaultValue)
            and isinstance(connect_timeout, DefaultValue)
            and isinstance(pool_timeout, DefaultValue)
        ):
            timeout = _client_timeout(
                self._timeout if isinstance(read_timeout, DefaultValue) else read_timeout,
                self._timeout if isinstance(write_timeout, DefaultValue) else write_timeout,
                self._timeout if isinstance(connect_timeout, DefaultValue) else connect_timeout,
                self._timeout if isinstance(pool_timeout, DefaultValue) else pool_timeout,
            )

        try:
            async with session.request(
                method, url, data=data, headers=headers, timeout=timeout, raise_for_status=False
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:  # aiohttp's ServerTimeoutError family subclasses it
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            # The class name says what happened when the message is empty.
            raise NetworkError(f"aiohttp.{exc.__class__.__name__}: {exc}") from exc


def _client_timeout(
    read: float | None, write: float | None, connect: float | None, pool: float | None
) -> aiohttp.ClientTimeout:
    """PTB's four timeouts in aiohttp's terms.

    aiohttp's ``connect`` covers waiting for a pooled connection plus opening
    one; it has no write timeout, so the total (the sum of all four phases)
    is what bounds a stuck upload. ``None`` anywhere means "no limit" there.
    """
    phases = (read, write, connect, pool)
    total = None if None in phases else sum(phases)  # type: ignore[arg-type]
    acquire = None if connect is None or pool is None else connect + pool
    return aiohttp.ClientTimeout(total=total, connect=acquire, sock_connect=connect, sock_read=read)


def _multipart(request_data: RequestData) -> aiohttp.FormData:
    """Form fields plus file parts, as PTB's httpx transport sends uploads."""
    form = aiohttp.FormData()
    for name, value in request_data.json_parameters.items():
        form.add_field(name, value)
    for name, (filename, content, mimetype) in request_data.multipart_data.items():
        form.add_field(name, content, filename=filename, content_type=mimetype)
    return form
