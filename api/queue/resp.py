"""A lean asyncio Redis connection for the prediction hot path: RESP2 over one socket.

The prediction client needs two things from Redis per batch: one ``LPUSH`` and one pub/sub
message. redis-py's asyncio client (with hiredis) costs measurably more per batch (connection
pool, retries, observability hooks, a task per timed read): ``bench/ablation.py`` measured the
API's ``/predict`` throughput with each, and by the project's rule (keep our own code only
when it is more than 10% faster) this connection stayed. It writes the command bytes and
parses the few reply types those two commands produce. Everything else the API does with Redis
goes through redis-py, and so does the meaning of ``REDIS_URL`` here: :func:`redis_address`
asks redis-py to parse it, so every form redis-py accepts (user and password, database,
``rediss://`` with its ``ssl_*`` options, ``unix://``, ``client_name``...) means the same to
this connection, TLS context included.

One :class:`RespConnection` is either a command connection (replies are matched to commands
in order) or a subscriber (after :meth:`RespConnection.subscribe`, every pushed message goes
to a callback). A lost connection fails whatever waits on it; reconnecting is the caller's
choice.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio.connection import ConnectionPool, SSLConnection, UnixDomainSocketConnection
from redis.credentials import UsernamePasswordCredentialProvider

from shared.stores import REDIS_UNACKNOWLEDGED_TIMEOUT_MS

__all__ = ["RedisAddress", "RespConnection", "RespError", "RespProtocolError", "redis_address"]


class RespError(Exception):
    """An error reply from Redis (``-ERR ...``)."""


class RespProtocolError(ConnectionError):
    """The connection carried something that is not RESP2; it is closed."""


def encode_command(*parts: bytes | str | int) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Incomplete(Exception):
    pass


_INCOMPLETE = _Incomplete()


class RespParser:
    """Incremental RESP2 parser: :meth:`feed` bytes, then take complete replies from
    :meth:`replies`. Bulk strings come out as bytes, simple strings as str, errors as
    :class:`RespError` instances (returned, not raised)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def replies(self) -> list[Any]:
        out = []
        pos = 0
        buf = self._buf
        while pos < len(buf):
            try:
                value, pos = self._parse(buf, pos)
            except _Incomplete:
                break
            out.append(value)
        if pos:
            del buf[:pos]
        return out

    def _parse(self, buf: bytearray, pos: int) -> tuple[Any, int]:
        end = buf.find(b"\r\n", pos)
        if end < 0:
            raise _INCOMPLETE
        kind = buf[pos]
        line = bytes(buf[pos + 1 : end])
        pos = end + 2
        if kind == 36:  # $ bulk string
            length = int(line)
            if length < 0:
                return None, pos
            if len(buf) < pos + length + 2:
                raise _INCOMPLETE
            return bytes(buf[pos : pos + length]), pos + length + 2
        if kind == 58:  # : integer
            return int(line), pos
        if kind == 42:  # * array
            count = int(line)
            if count < 0:
                return None, pos
            items = []
            for _ in range(count):
                item, pos = self._parse(buf, pos)
                items.append(item)
            return items, pos
        if kind == 43:  # + simple string
            return line.decode(), pos
        if kind == 45:  # - error
            return RespError(line.decode(errors="replace")), pos
        raise RespProtocolError(f"unexpected RESP type byte {kind!r}")


@dataclass(frozen=True)
class RedisAddress:
    """Where and how to connect, as redis-py understands a URL."""

    host: str
    port: int
    #: the socket of a ``unix://`` URL (then host and port are unused)
    path: str | None
    #: a ``rediss://`` URL's context, built by redis-py from its ``ssl_*`` options
    tls: ssl.SSLContext | None
    #: the AUTH arguments: (), (password,) or (user, password)
    credentials: tuple[str, ...]
    db: int
    client_name: str | None
    connect_timeout: float | None


def redis_address(url: str, connect_timeout: float | None = None) -> RedisAddress:
    """Parse ``url`` with redis-py (``ConnectionPool.from_url``): the connection it would make,
    read but never opened. ``connect_timeout`` applies unless the URL sets its own."""
    options = {} if connect_timeout is None else {"socket_connect_timeout": connect_timeout}
    conn = ConnectionPool.from_url(url, **options).make_connection()
    credentials: tuple[str, ...] = ()
    if conn.credential_provider is not None or conn.username or conn.password:
        provider = conn.credential_provider or UsernamePasswordCredentialProvider(
            conn.username, conn.password
        )
        credentials = tuple(provider.get_credentials())
    is_unix = isinstance(conn, UnixDomainSocketConnection)
    return RedisAddress(
        host="" if is_unix else str(getattr(conn, "host", "localhost")),
        port=0 if is_unix else int(getattr(conn, "port", 6379)),
        path=conn.path if is_unix else None,
        tls=conn.ssl_context.get() if isinstance(conn, SSLConnection) else None,
        credentials=credentials,
        db=int(conn.db or 0),
        client_name=conn.client_name or None,
        connect_timeout=conn.socket_connect_timeout,
    )


class RespConnection(asyncio.Protocol):
    """One Redis connection; create with :meth:`open`."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = RespParser()
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._on_message: Callable[[bytes], None] | None = None
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- set-up -------------------------------------------------------------------------------

    @classmethod
    async def open(cls, address: RedisAddress, timeout: float = 1.0) -> RespConnection:
        """Connect (within the address's connect timeout), then AUTH, SELECT and name the
        connection as redis-py would, all within ``timeout``."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            async with asyncio.timeout(address.connect_timeout):
                if address.path is not None:
                    _, conn = await loop.create_unix_connection(cls, address.path)
                else:
                    _, conn = await loop.create_connection(
                        cls, address.host, address.port, ssl=address.tls
                    )
            try:
                if address.credentials:
                    await conn.command("AUTH", *address.credentials)
                if address.db:
                    await conn.command("SELECT", address.db)
                if address.client_name:
                    await conn.command("CLIENT", "SETNAME", address.client_name)
            except BaseException:
                conn.close()
                raise
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # a cut link closes the connection in half a second (see shared.stores)
            sock.setsockopt(
                socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, REDIS_UNACKNOWLEDGED_TIMEOUT_MS
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        error = ConnectionError(f"Redis connection lost: {exc or 'closed'}")
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        if not self._closed.done():
            self._closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        try:
            replies = self._parser.replies()
        except (RespProtocolError, ValueError) as exc:
            self._abort(exc)
            return
        for reply in replies:
            if self._on_message is not None and type(reply) is list and len(reply) == 3:
                kind = reply[0]
                if kind == b"message":
                    self._on_message(reply[2])
                    continue
                if kind == b"subscribe" and self._waiting:
                    self._resolve(reply)
                    continue
            self._resolve(reply)

    def _resolve(self, reply: Any) -> None:
        if not self._waiting:
            return  # a reply nobody waits for (a pong after its waiter timed out)
        waiter = self._waiting.popleft()
        if waiter.done():
            return
        if isinstance(reply, RespError):
            waiter.set_exception(reply)
        else:
            waiter.set_result(reply)

    def _abort(self, exc: BaseException) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- use ----------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def send(self, *parts: bytes | str | int) -> asyncio.Future[Any]:
        """Write one command; the future gets its reply (or the error)."""
        if self._transport is None or self._transport.is_closing():
            raise ConnectionError("Redis connection is closed")
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._transport.write(encode_command(*parts))
        return waiter

    async def command(self, *parts: bytes | str | int) -> Any:
        return await self.send(*parts)

    async def subscribe(self, channel: str, on_message: Callable[[bytes], None]) -> None:
        """From now on every message published on ``channel`` goes to ``on_message``."""
        self._on_message = on_message
        await self.command("SUBSCRIBE", channel)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    def close(self) -> None:
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.close()
