"""The test-controlled TCP proxy, and what the server stores do when the network between breaks.

The first tests need no database: the proxy sits in front of an echo
server. The ``server`` ones put it in front of PostgreSQL and MariaDB:
a cut must reach the caller as :class:`~chatledger.errors.StoreConnectionError`
from the reset itself, not through a timeout, never as a driver exception or a
hang, and the same store must work again once the network is restored.
"""

from __future__ import annotations

import asyncio
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

import chatledger
from chatledger.errors import StoreConnectionError
from chatledger.stores.base import PersistenceStore
from chatledger.testing import make_message, make_session
from tcp_proxy import Mode, TcpProxy

PATIENCE = 30.0  # seconds any single step may take before the test calls it a hang


def assert_not_a_timeout(error: BaseException) -> None:
    """``error`` reports the broken connection itself: no timeout on the way caused it.

    A store that noticed a cut only when some timeout expired would be slow to
    report it; one that sees the reset reports it as soon as it reads.
    """
    seen: BaseException | None = error
    while seen is not None:
        assert not isinstance(seen, TimeoutError), f"reported through a timeout: {seen!r}"
        seen = seen.__cause__ or seen.__context__


# --- an echo server, so the proxy can be tested without a database ----------------------


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        try:
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            pass  # reset by the proxy: that is what the tests do to it


class EchoServer(socketserver.ThreadingTCPServer):
    """Echoes every byte back, a thread per connection; counts its connections."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.connections = 0
        self.port: int = self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1
        super().process_request(request, client_address)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    """An echo server on 127.0.0.1, served by a thread."""
    server = EchoServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[TcpProxy]:
    """A proxy in front of the echo server."""
    with TcpProxy("127.0.0.1", echo.port) as running:
        yield running


@pytest.fixture
def connect(proxy: TcpProxy) -> Iterator[Callable[[], socket.socket]]:
    """Opens client sockets to the proxy (2 s timeouts), all closed after the test."""
    opened: list[socket.socket] = []

    def open_one() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        opened.append(sock)
        return sock

    yield open_one
    for sock in opened:
        sock.close()


def echoed(sock: socket.socket, data: bytes) -> bytes:
    """Send ``data`` and read as many bytes back."""
    sock.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def assert_reset(sock: socket.socket) -> None:
    """The connection was reset: the next read fails with the reset, not with its timeout."""
    with pytest.raises(ConnectionResetError):  # a timeout would be TimeoutError
        sock.recv(1)


def assert_refused(port: int) -> None:
    """A new connection is reset: by the time connect() returns, or at the first read.

    The kernel completes the handshake before the proxy accepts and resets
    the connection; on loopback the reset can beat connect() itself.
    """
    with (
        pytest.raises(ConnectionResetError),
        socket.create_connection(("127.0.0.1", port), timeout=2) as sock,
    ):
        sock.recv(1)


def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition still false after the timeout"
        time.sleep(0.01)


# --- the proxy on its own -------------------------------------------------------------------


def test_forwards_both_ways_and_counts_connections(
    proxy: TcpProxy, connect: Callable[[], socket.socket]
) -> None:
    """Bytes go through; a connection closed by its client is closed behind the proxy too."""
    client = connect()
    assert echoed(client, b"hello") == b"hello"
    assert (proxy.connections_accepted, proxy.live_connections) == (1, 1)
    assert proxy.mode is Mode.FORWARD
    client.shutdown(socket.SHUT_WR)  # a half close reaches the server, whose close comes back
    assert client.recv(1) == b""
    eventually(lambda: proxy.live_connections == 0)


def test_large_transfers_go_through_whole(
    proxy: TcpProxy, connect: Callable[[], socket.socket]
) -> None:
    """More bytes than the proxy buffers: it stops reading until the other side catches up."""
    client = connect()
    payload = bytes(range(256)) * 16 * 1024  # 4 MiB
    sender = threading.Thread(target=client.sendall, args=(payload,))
    sender.start()
    received = bytearray()
    while len(received) < len(payload):
        chunk = client.recv(1 << 20)
        assert chunk
        received += chunk
    sender.join(PATIENCE)
    assert received == payload


def test_cut_resets_live_connections_and_refuses_new_ones(
    proxy: TcpProxy, echo: EchoServer, connect: Callable[[], socket.socket]
) -> None:
    """After cut() every connection is reset; after restore() new ones work, old ones stay dead."""
    first, second = connect(), connect()
    assert echoed(first, b"a") == b"a"
    assert echoed(second, b"b") == b"b"
    proxy.cut()
    assert proxy.mode is Mode.CUT
    assert proxy.live_connections == 0
    assert_reset(first)
    assert_reset(second)
    assert_refused(proxy.port)
    assert proxy.connections_refused == 1
    proxy.restore()
    assert echoed(connect(), b"again") == b"again"
    assert first.recv(1) == b""  # still dead
    assert (proxy.connections_accepted, proxy.live_connections, echo.connections) == (4, 1, 3)


def test_blackhole_holds_bytes_until_restored(
    proxy: TcpProxy, echo: EchoServer, connect: Callable[[], socket.socket]
) -> None:
    """While blackholed nothing moves, new connections stay silent; restore() delivers it all."""
    old = connect()
    assert echoed(old, b"before") == b"before"
    proxy.blackhole()
    assert proxy.mode is Mode.BLACKHOLE
    new = connect()
    for sock in (old, new):
        sock.settimeout(0.3)
        sock.sendall(b"held")
        with pytest.raises(TimeoutError):
            sock.recv(4)
    assert (proxy.live_connections, echo.connections) == (2, 1)  # the new one is not dialled
    proxy.restore()
    for sock in (old, new):
        sock.settimeout(2)
        assert sock.recv(4) == b"held"
    assert echo.connections == 2


def test_a_target_that_refuses_resets_the_client_once() -> None:
    """Nothing listens at the target: the client is reset, and the proxy does not retry."""
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        free_port = placeholder.getsockname()[1]
    with TcpProxy("127.0.0.1", free_port) as proxy:
        assert_refused(proxy.port)
        eventually(lambda: proxy.live_connections == 0)
        assert proxy.connections_accepted == 1


def test_a_child_process_goes_through_while_the_test_blocks(proxy: TcpProxy) -> None:
    """The proxy's own thread serves a subprocess while this thread waits for it."""
    script = textwrap.dedent(
        """
        import socket, sys
        try:  # a reset may come as soon as connect(), or at the first send or read
            with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as sock:
                sock.sendall(b"from the child")
                print(sock.recv(100).decode())
        except (ConnectionResetError, BrokenPipeError):
            print("reset")
        """
    )

    def child() -> str:
        done = subprocess.run(
            [sys.executable, "-c", script, str(proxy.port)],
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert child() == "from the child"
    proxy.cut()
    assert child() == "reset"
    proxy.restore()
    assert child() == "from the child"


def test_url_for_points_a_url_at_the_proxy(proxy: TcpProxy) -> None:
    """Host and port change; scheme, credentials, database and options stay."""
    port = proxy.port
    assert (
        proxy.url_for("postgresql://app:s3cret@db.example:5432/ledger?sslmode=disable")
        == f"postgresql://app:s3cret@127.0.0.1:{port}/ledger?sslmode=disable"
    )
    assert proxy.url_for("mysql://root@localhost/test") == f"mysql://root@127.0.0.1:{port}/test"
    assert proxy.url_for("postgresql://127.0.0.1:5432/x") == f"postgresql://127.0.0.1:{port}/x"


def test_close_resets_connections_and_stops_listening(echo: EchoServer) -> None:
    """After close() the port refuses, live connections are reset, and controls raise."""
    with TcpProxy("127.0.0.1", echo.port) as proxy:
        client = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        with client:
            assert echoed(client, b"x") == b"x"
            proxy.close()
            assert_reset(client)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()
    with pytest.raises(RuntimeError, match="closed"):
        proxy.cut()
    proxy.close()  # a second close does nothing


# --- the server stores behind the proxy -----------------------------------------------------


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.server) for name in ("pg", "mysql")])
def database_url(request: pytest.FixtureRequest) -> str:
    """This module's scratch database on each server in turn."""
    return str(request.getfixturevalue("postgres_url" if request.param == "pg" else "mysql_url"))


@pytest.fixture
async def proxied(database_url: str) -> AsyncIterator[tuple[TcpProxy, PersistenceStore]]:
    """A proxy in front of the server, and a store (pool of up to 2) that goes through it."""
    target = urlsplit(database_url)
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 0) as proxy:
        store = await asyncio.wait_for(
            chatledger.connect(proxy.url_for(database_url), max_size=2), PATIENCE
        )
        try:
            yield proxy, store
        finally:
            proxy.restore()
            await asyncio.wait_for(store.close(), PATIENCE)


async def test_a_cut_is_a_store_connection_error_and_restore_recovers(
    proxied: tuple[TcpProxy, PersistenceStore],
) -> None:
    """While cut, reads and writes fail fast as StoreConnectionError; then the same store works."""
    proxy, store = proxied
    session = make_session()
    await store.create_session(session)
    assert await store.get_session(session.id) == session
    proxy.cut()
    operations: list[Callable[[], Awaitable[object]]] = [
        lambda: store.get_session(session.id),
        lambda: store.save_message(make_message(session)),
    ]
    for operation in operations:
        with pytest.raises(StoreConnectionError) as caught:
            await asyncio.wait_for(operation(), PATIENCE)
        assert_not_a_timeout(caught.value)
    proxy.restore()
    message = make_message(session)
    await asyncio.wait_for(store.save_message(message), PATIENCE)
    assert await store.get_message(message.id) == message
    assert [saved.id for saved in await store.get_session_messages(session.id)] == [message.id]


@pytest.mark.parametrize("kind", ["read", "write"])
async def test_a_cut_during_an_operation_is_a_store_connection_error(
    proxied: tuple[TcpProxy, PersistenceStore], kind: str
) -> None:
    """An operation whose request is on the wire when the server dies fails fast, cleanly."""
    proxy, store = proxied
    session = make_session()
    await store.create_session(session)
    proxy.blackhole()  # the request leaves the client but gets no answer...
    work = (
        store.get_session(session.id)
        if kind == "read"
        else store.save_message(make_message(session))
    )
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=0.2)
    assert not done
    proxy.cut()  # ...then the server dies
    with pytest.raises(StoreConnectionError) as caught:
        await asyncio.wait_for(task, PATIENCE)
    assert_not_a_timeout(caught.value)
    proxy.restore()
    assert await asyncio.wait_for(store.get_session(session.id), PATIENCE) == session


async def test_a_blackholed_operation_waits_and_completes_once_restored(
    proxied: tuple[TcpProxy, PersistenceStore],
) -> None:
    """A hung network holds an operation (no early failure); restored, the same call completes."""
    proxy, store = proxied
    session = make_session()
    await store.create_session(session)
    proxy.blackhole()
    task = asyncio.ensure_future(store.get_session(session.id))
    try:
        done, _ = await asyncio.wait({task}, timeout=1.0)
        assert not done
        proxy.restore()
        assert await asyncio.wait_for(task, PATIENCE) == session
    finally:
        task.cancel()


@pytest.mark.parametrize(
    "database_url",
    [
        pytest.param("pg", marks=pytest.mark.server),
        pytest.param(
            "mysql",
            marks=pytest.mark.server,
        ),
    ],
    indirect=True,
)
async def test_connecting_through_a_hung_network_times_out(database_url: str) -> None:
    """A server that accepts TCP but never answers: connect() gives up after its timeout."""
    target = urlsplit(database_url)
    timeout = {"timeout": 1.0} if database_url.startswith("postgres") else {"connect_timeout": 1}
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 0) as proxy:
        proxy.blackhole()
        # The driver's own timeout ends it (StoreConnectionError), not this safety net's.
        with pytest.raises(StoreConnectionError, match="cannot reach"):
            await asyncio.wait_for(
                chatledger.connect(proxy.url_for(database_url), **timeout), PATIENCE
            )
