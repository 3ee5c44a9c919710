"""Serving the dashboard: check where it may bind, open the database, run uvicorn.

The dashboard binds to 127.0.0.1 unless told otherwise, and refuses a host
other machines can reach unless a token guards it (:func:`check_exposure`).
It opens the database without migrating it: an old schema is refused with
the command that upgrades it, as the ``chatledger`` command's reading
commands do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import webbrowser
from collections.abc import Callable, Iterator
from typing import Final

from chatledger.errors import PersistenceError
from chatledger.stores.base import PersistenceStore
from chatledger.stores.opening import open_current
from chatledger.stores.urls import redact
from chatledger.ui.app import create_app
from chatledger.ui.security import is_loopback

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "TOKEN_VARIABLE",
    "UnsafeBindError",
    "check_exposure",
    "serve",
    "serve_async",
    "serve_store",
]

logger = logging.getLogger(__name__)

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8765
TOKEN_VARIABLE: Final = "CHATLEDGER_UI_TOKEN"  # noqa: S105  (a variable's name, not a token)
"""The environment variable the command reads the token from when --token is not given."""


class UnsafeBindError(ValueError):
    """The dashboard was asked to listen where other machines reach it, with no token."""


def check_exposure(host: str, token: str | None) -> None:
    """Refuse a non-loopback ``host`` without a token; refuse an empty token."""
    if token is not None and not token.strip():
        raise UnsafeBindError("the token is empty; give a long random one, or none on localhost")
    if token is None and not is_loopback(host):
        raise UnsafeBindError(
            f"--host {host} lets other machines reach the dashboard; give it a token too "
            f"(--token TOKEN or ${TOKEN_VARIABLE}), or keep the default --host {DEFAULT_HOST}"
        )


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket, or an error that says the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every response after the first on a kept-alive connection waits ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def address(host: str, port: int) -> str:
    """The dashboard's address for a browser."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


async def serve_store(
    store: PersistenceStore,
    sock: socket.socket,
    *,
    allow_delete: bool = False,
    token: str | None = None,
    database_url: str | None = None,
    open_browser: bool = False,
) -> None:
    """Serve the dashboard over an open ``store`` on a listening socket until stopped."""
    import uvicorn  # the ui extra's server, imported when a server is started

    class Server(uvicorn.Server):
        """uvicorn's server, stopped by our signal handlers instead of its own.

        uvicorn re-raises the signal it caught once it has stopped, which
        would cancel this coroutine and turn a Ctrl+C into a traceback or an
        error status; ours only ask the server to stop, so the store is
        closed and the command ends normally.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    app = create_app(store, allow_delete=allow_delete, token=token, database_url=database_url)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5
    )
    server = Server(config)

    def stop() -> None:
        if server.should_exit:  # a second Ctrl+C: do not wait for open connections
            server.force_exit = True
        server.should_exit = True

    loop = asyncio.get_running_loop()
    handled = []
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, stop)
            handled.append(number)
    sealing = asyncio.create_task(_keep_periods_sealed(store))
    try:
        if open_browser:
            # The socket listens already: the browser's first request waits for the server.
            host, port = sock.getsockname()[:2]
            target = address(host, port) + ("" if token is None else f"?token={token}")
            await asyncio.to_thread(webbrowser.open, target)
        await server.serve(sockets=[sock])
    finally:
        sealing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sealing
        for number in handled:
            loop.remove_signal_handler(number)


SEAL_EVERY = 3600.0
"""Seconds between two sealings of complete months and weeks while the dashboard runs."""


async def _keep_periods_sealed(store: PersistenceStore) -> None:
    """Seal complete months and weeks now and hourly, so that long ranges read their rows.

    A failure (the database down, a read-only file) is logged and tried again
    an hour later; pages are served either way, from the days' rows.
    """
    while True:
        try:
            await store.seal_periods()
        except PersistenceError as exc:
            logger.warning("chatledger ui could not seal complete months and weeks: %s", exc)
        await asyncio.sleep(SEAL_EVERY)


async def serve_async(
    url: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    allow_delete: bool = False,
    token: str | None = None,
    open_browser: bool = False,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Open the database at ``url`` and serve the dashboard on ``host:port`` until stopped.

    ``on_ready`` is called with the dashboard's address once the port is
    bound and the database open, before the first request is served.
    """
    check_exposure(host, token)
    sock = _bind(host, port)
    try:
        store = await open_current(url)
    except BaseException:
        sock.close()
        raise
    try:
        bound = address(host, sock.getsockname()[1])
        logger.info("serving %s at %s", redact(url), bound)
        if on_ready is not None:
            on_ready(bound)
        await serve_store(
            store,
            sock,
            allow_delete=allow_delete,
            token=token,
            database_url=url,
            open_browser=open_browser,
        )
    finally:
        sock.close()
        await store.close()


def serve(
    url: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    allow_delete: bool = False,
    token: str | None = None,
    open_browser: bool = False,
) -> None:
    """Serve the dashboard over the database at ``url`` until interrupted (Ctrl+C)."""
    asyncio.run(
        serve_async(
            url, host, port, allow_delete=allow_delete, token=token, open_browser=open_browser
        )
    )
