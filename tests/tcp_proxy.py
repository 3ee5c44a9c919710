"""A TCP proxy that tests control, to simulate a database server's outages without touching it.

Point a store (or a child process) at :attr:`TcpProxy.port` instead of the
server's, then break the network between them on purpose::

    with TcpProxy("127.0.0.1", 5432) as proxy:
        store = await chatledger.connect(proxy.url_for(url))
        proxy.cut()        # every connection reset at once, new ones refused: the server died
        proxy.blackhole()  # sockets stay open, no byte moves either way: the network hangs
        proxy.restore()    # bytes flow again; connections that were cut stay dead

The proxy runs on a daemon thread of its own (standard library only: socket,
selectors, threading), so it keeps forwarding while the test's event loop is
busy or blocked, and while the code under test runs in a subprocess. It
listens on 127.0.0.1 only, on a port the system picks, and stops when
closed (``close()`` or leaving the ``with`` block): it never retries anything
by itself, and a control call that the proxy thread does not answer within a
few seconds raises instead of waiting forever.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import queue
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Mode", "TcpProxy"]

_HOST = "127.0.0.1"
_CHUNK = 64 * 1024  # bytes read from a socket at a time
_BUFFER_LIMIT = 256 * 1024  # bytes held for one direction before its source is no longer read
_ANSWER_TIMEOUT = 5.0  # seconds a control call waits for the proxy thread
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, not FIN


class Mode(enum.Enum):
    """What the proxy does with the bytes and connections it is handed."""

    FORWARD = "forward"
    """Bytes go through both ways; new connections reach the target."""
    CUT = "cut"
    """No connection lives: each one accepted is reset at once."""
    BLACKHOLE = "blackhole"
    """Connections stay open and new ones are accepted, but no byte moves."""


class _Flow:
    """The bytes travelling one way through a pipe."""

    __slots__ = ("buffer", "eof", "shut")

    def __init__(self) -> None:
        self.buffer = bytearray()  # read from the source, not yet written to the destination
        self.eof = False  # the source has sent its last byte
        self.shut = False  # the destination has been told so (shutdown of its write side)


class _Pipe:
    """One proxied connection: the client's socket and the one to the target."""

    __slots__ = ("client", "closed", "connecting", "inbound", "outbound", "upstream")

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None  # None until dialled
        self.connecting = False  # the connection to the target is not yet established
        self.closed = False
        self.outbound = _Flow()  # client -> target
        self.inbound = _Flow()  # target -> client


def _abort(sock: socket.socket) -> None:
    """Close ``sock`` with a reset (RST), as when the process at the other end dies."""
    with contextlib.suppress(OSError):  # already dead: a plain close is all that is left
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


def _tune(sock: socket.socket) -> None:
    """Non-blocking, and no Nagle delay: database protocols send many small messages."""
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class TcpProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target_host:target_port``, run by a daemon thread.

    It starts listening and forwarding when constructed; :meth:`close` (or the
    end of a ``with`` block) resets every connection and stops the thread.
    :meth:`cut`, :meth:`blackhole` and :meth:`restore` take effect before
    they return. Connections accepted while blackholed reach the target only
    once restored, as a connection attempt would over a healed network.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        """Listen on a free port of 127.0.0.1 and forward to ``target_host:target_port``."""
        family, kind, proto, _, address = socket.getaddrinfo(
            target_host, target_port, type=socket.SOCK_STREAM
        )[0]
        self.target_host = target_host
        self.target_port = target_port
        self._target = (family, kind, proto, address)
        self._mode = Mode.FORWARD
        self._pipes: set[_Pipe] = set()
        self._watched: dict[socket.socket, int] = {}  # socket -> events it is registered for
        self._accepted = 0
        self._refused = 0
        self._commands: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = (
            queue.SimpleQueue()
        )
        self._stopping = False
        self._selector = selectors.DefaultSelector()
        self._listener = socket.create_server((_HOST, 0), backlog=64)
        self._listener.setblocking(False)
        self._waker, self._wake_reader = socket.socketpair()
        self._waker.setblocking(False)
        self._wake_reader.setblocking(False)
        self._selector.register(self._listener, _READ, self._accept)
        self._selector.register(self._wake_reader, _READ, self._drain_wakes)
        self.host = _HOST
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(
            target=self._run, name=f"TcpProxy:{self.port}->{target_port}", daemon=True
        )
        self._thread.start()

    # --- what tests use --------------------------------------------------------------

    def __enter__(self) -> Self:
        """The running proxy."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the proxy."""
        self.close()

    def __repr__(self) -> str:
        """Where it listens, where it forwards, and its mode."""
        return (
            f"TcpProxy({self.host}:{self.port} -> {self.target_host}:{self.target_port}, "
            f"{self._mode.value}, {len(self._pipes)} live)"
        )

    @property
    def mode(self) -> Mode:
        """What the proxy does now."""
        return self._mode

    @property
    def connections_accepted(self) -> int:
        """Connections accepted since the start, those reset at once while cut included."""
        return self._accepted

    @property
    def connections_refused(self) -> int:
        """Connections reset as soon as they were accepted, because the proxy was cut."""
        return self._refused

    @property
    def live_connections(self) -> int:
        """Connections open now (forwarding, blackholed, or waiting for the target)."""
        return len(self._pipes)

    def url_for(self, url: str) -> str:
        """``url`` (``scheme://user:password@host:port/db?…``) pointing at the proxy instead."""
        parts = urlsplit(url)
        credentials, at, _ = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{credentials}{at}{self.host}:{self.port}"))

    def cut(self) -> None:
        """Reset every live connection at once and refuse new ones, until :meth:`restore`.

        Both sockets of each connection are closed with SO_LINGER 0, so the
        client (and the server) sees a reset, as when a server dies.
        """
        self._call(self._cut)

    def blackhole(self) -> None:
        """Keep connections open but move no byte either way, until :meth:`restore`.

        New connections are accepted and stay silent. Bytes already in the
        kernel's buffers wait there, and go through once restored.
        """
        self._call(self._blackhole)

    def restore(self) -> None:
        """Forward normally again; connections that were cut stay dead."""
        self._call(self._restore)

    def close(self) -> None:
        """Reset every connection, stop listening, and end the thread (idempotent)."""
        if self._thread.is_alive():
            self._stopping = True
            self._wake()
            self._thread.join(_ANSWER_TIMEOUT)
            if self._thread.is_alive():
                raise RuntimeError(f"{self!r}: its thread did not stop")
        else:
            self._teardown()  # the thread never ran, or died: release what it held

    # --- talking to the proxy thread ------------------------------------------------------

    def _call(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the proxy thread; return once it has run."""
        if threading.current_thread() is self._thread:
            action()
            return
        if not self._thread.is_alive():
            raise RuntimeError(f"{self!r} is closed")
        done = threading.Event()
        self._commands.put((action, done))
        self._wake()
        if not done.wait(_ANSWER_TIMEOUT):
            raise RuntimeError(f"{self!r}: its thread did not answer within {_ANSWER_TIMEOUT} s")
        if self._stopping:  # closed meanwhile: the thread let go of the call without running it
            raise RuntimeError(f"{self!r} is closed")

    def _wake(self) -> None:
        # closed, or its buffer full of wake-ups already: the thread will look either way
        with contextlib.suppress(OSError):
            self._waker.send(b"!")

    def _drain_wakes(self, _events: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_reader.recv(4096):
                pass

    # --- the proxy thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                for key, events in self._selector.select(timeout=0.5):
                    key.data(events)
                while True:
                    try:
                        action, done = self._commands.get_nowait()
                    except queue.Empty:
                        break
                    try:
                        action()
                    finally:
                        done.set()
        finally:
            self._teardown()

    def _teardown(self) -> None:
        self._stopping = True
        for pipe in list(self._pipes):
            self._reset(pipe)
        for sock in (self._listener, self._wake_reader, self._waker):
            sock.close()
        self._selector.close()
        while True:  # nobody may wait for a command that will never run
            try:
                _, done = self._commands.get_nowait()
            except queue.Empty:
                break
            done.set()

    def _cut(self) -> None:
        self._mode = Mode.CUT
        for pipe in list(self._pipes):
            self._reset(pipe)

    def _blackhole(self) -> None:
        self._mode = Mode.BLACKHOLE
        for pipe in list(self._pipes):
            self._update(pipe)

    def _restore(self) -> None:
        self._mode = Mode.FORWARD
        for pipe in list(self._pipes):
            if pipe.upstream is None:
                self._dial(pipe)
            self._update(pipe)

    def _accept(self, _events: int) -> None:
        try:
            client, _ = self._listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        self._accepted += 1
        if self._mode is Mode.CUT:
            self._refused += 1
            _abort(client)
            return
        _tune(client)
        pipe = _Pipe(client)
        self._pipes.add(pipe)
        if self._mode is Mode.FORWARD:
            self._dial(pipe)
        self._update(pipe)

    def _dial(self, pipe: _Pipe) -> None:
        """Start connecting ``pipe`` to the target (once; a failure resets the client)."""
        family, kind, proto, address = self._target
        upstream = socket.socket(family, kind, proto)
        _tune(upstream)
        pipe.upstream = upstream
        code = upstream.connect_ex(address)
        if code in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            pipe.connecting = True
        elif code != 0:
            self._reset(pipe)

    def _on_event(self, pipe: _Pipe, sock: socket.socket, events: int) -> None:
        """Move what ``sock`` is ready for; a socket error resets the whole pipe."""
        if pipe.closed:  # reset by an earlier event of the same round
            return
        client_side = sock is pipe.client
        source, destination = (
            (pipe.outbound, pipe.inbound) if client_side else (pipe.inbound, pipe.outbound)
        )
        peer = pipe.upstream if client_side else pipe.client
        assert peer is not None
        if not client_side and pipe.connecting:  # the target answered the connection attempt
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self._reset(pipe)  # refused: the client sees a reset
                return
            pipe.connecting = False
            self._update(pipe)
            return
        try:
            if events & _READ:
                self._receive(sock, source, peer)
            if events & _WRITE:
                self._send(sock, destination)
        except OSError:
            self._reset(pipe)
            return
        if pipe.outbound.shut and pipe.inbound.shut:  # both sides said all they had to
            self._close(pipe)
        else:
            self._update(pipe)

    def _receive(self, sock: socket.socket, flow: _Flow, peer: socket.socket) -> None:
        try:
            data = sock.recv(_CHUNK)
        except BlockingIOError:
            return
        if data:
            flow.buffer += data
        else:
            flow.eof = True
        self._send(peer, flow)

    def _send(self, sock: socket.socket, flow: _Flow) -> None:
        if flow.buffer:
            try:
                sent = sock.send(flow.buffer)
            except BlockingIOError:
                return
            del flow.buffer[:sent]
        if flow.eof and not flow.buffer and not flow.shut:
            sock.shutdown(socket.SHUT_WR)
            flow.shut = True

    def _update(self, pipe: _Pipe) -> None:
        """Watch each socket of ``pipe`` for what it may do in the current mode."""
        if pipe.closed:
            return
        client_events = upstream_events = 0
        if pipe.connecting:
            upstream_events = _WRITE  # writable once connected (or failed)
        elif self._mode is Mode.FORWARD and pipe.upstream is not None:
            out, into = pipe.outbound, pipe.inbound
            if not out.eof and len(out.buffer) < _BUFFER_LIMIT:
                client_events |= _READ
            if into.buffer:
                client_events |= _WRITE
            if not into.eof and len(into.buffer) < _BUFFER_LIMIT:
                upstream_events |= _READ
            if out.buffer:
                upstream_events |= _WRITE
        self._watch(pipe, pipe.client, client_events)
        if pipe.upstream is not None:
            self._watch(pipe, pipe.upstream, upstream_events)

    def _watch(self, pipe: _Pipe, sock: socket.socket, events: int) -> None:
        current = self._watched.get(sock)
        if current == events or (current is None and not events):
            return
        if not events:
            self._selector.unregister(sock)
            del self._watched[sock]
            return

        def handle(ready: int) -> None:
            self._on_event(pipe, sock, ready)

        if current is None:
            self._selector.register(sock, events, handle)
        else:
            self._selector.modify(sock, events, handle)
        self._watched[sock] = events

    def _forget(self, pipe: _Pipe) -> list[socket.socket]:
        pipe.closed = True
        self._pipes.discard(pipe)
        sockets = [sock for sock in (pipe.client, pipe.upstream) if sock is not None]
        for sock in sockets:
            if self._watched.pop(sock, None) is not None:
                self._selector.unregister(sock)
        return sockets

    def _close(self, pipe: _Pipe) -> None:
        """Close ``pipe`` after both sides finished: a plain close, no reset."""
        for sock in self._forget(pipe):
            sock.close()

    def _reset(self, pipe: _Pipe) -> None:
        """Close both sockets of ``pipe`` with a reset."""
        for sock in self._forget(pipe):
            _abort(sock)
