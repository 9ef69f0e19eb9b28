"""Loopback TCP relays that cut a broker's clients without touching the broker.

:class:`Relay` forwards ``127.0.0.1:port`` to ``127.0.0.1:target`` and can close every
relayed connection (an outage that keeps the broker's data); :class:`ClientRelay` reads the
``client.id`` of each new Kafka connection and can cut the clients of one id alone (one
replica's lost uplink while the others go on). :class:`tests.services.kafka.KafkaBroker`
puts one in front of Tansu when asked to (``proxied=True``).
"""

from __future__ import annotations

import contextlib
import socket
import threading


class Relay:
    """A TCP relay on ``127.0.0.1:port`` to ``127.0.0.1:target``, one thread per direction.

    :meth:`close` stops listening and cuts every relayed connection; :meth:`open` listens
    again on the same port.
    """

    def __init__(self, port: int, target: int) -> None:
        self.port = port
        self.target = target
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()

    def open(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            _shut(listener)
        with self._lock:
            cut, self._sockets = self._sockets, set()
        for sock in cut:
            _shut(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _shut(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _shut(client)
                    _shut(upstream)
                    return
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        _shut(src)
        _shut(dst)
        with self._lock:
            self._sockets -= {src, dst}


class ClientRelay(Relay):
    """A :class:`Relay` that can also cut the clients of one ``client.id`` alone.

    Every Kafka request starts with its size, API key, version, correlation id and the
    client's ``client.id`` (request header v1 and v2); the relay reads a new connection's
    first request for it before connecting upstream. :meth:`cut_client` closes the open
    connections of the clients whose id starts with a prefix and closes every new one of
    theirs after its first request: those clients cannot reach the broker (a lost uplink),
    while the others go on through the same relay. :meth:`mend_client` lets them through again.
    """

    def __init__(self, port: int, target: int) -> None:
        super().__init__(port, target)
        self._cut_ids: set[str] = set()
        self._deaf_ids: set[str] = set()
        self._by_client: dict[socket.socket, str] = {}
        self._upstreams: set[socket.socket] = set()

    def cut_client(self, prefix: str, *, replies_only: bool = False) -> None:
        """Cut the clients whose id starts with ``prefix``; with ``replies_only`` their
        requests still reach the broker but its answers are dropped (acknowledgements lost
        on the way back), until :meth:`mend_client` closes those connections."""
        with self._lock:
            if replies_only:
                self._deaf_ids.add(prefix)
                return
            self._cut_ids.add(prefix)
            cut = [s for s, cid in self._by_client.items() if cid.startswith(prefix)]
        for sock in cut:
            _shut(sock)

    def mend_client(self, prefix: str) -> None:
        with self._lock:
            self._cut_ids.discard(prefix)
            deaf = prefix in self._deaf_ids
            self._deaf_ids.discard(prefix)
            # a connection whose answers were dropped is out of step: the client reconnects
            stale = [s for s, c in self._by_client.items() if deaf and c.startswith(prefix)]
        for sock in stale:
            _shut(sock)

    def _is_cut(self, client_id: str) -> bool:
        with self._lock:
            return any(client_id.startswith(p) for p in self._cut_ids)

    def _is_deaf(self, sock: socket.socket) -> bool:
        with self._lock:
            client_id = self._by_client.get(sock)
            if sock not in self._upstreams or client_id is None:
                return False
            return any(client_id.startswith(p) for p in self._deaf_ids)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._connect, args=(listener, client), daemon=True).start()

    def _connect(self, listener: socket.socket, client: socket.socket) -> None:
        try:
            client.settimeout(10)
            size = _read(client, 4)
            first = _read(client, int.from_bytes(size, "big"))
            length = int.from_bytes(first[8:10], "big", signed=True)
            client_id = first[10 : 10 + length].decode(errors="replace") if length > 0 else ""
            if self._is_cut(client_id):
                raise OSError(f"client {client_id!r} is cut")
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            upstream.settimeout(None)
            client.settimeout(None)
            upstream.sendall(size + first)
        except OSError:
            _shut(client)
            return
        with self._lock:
            if self._listener is not listener:  # closed meanwhile
                _shut(client)
                _shut(upstream)
                return
            self._sockets |= {client, upstream}
            self._upstreams.add(upstream)
            self._by_client[client] = self._by_client[upstream] = client_id
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self._is_deaf(src):
                    dst.sendall(data)
        except OSError:
            pass
        _shut(src)
        _shut(dst)
        with self._lock:
            self._sockets -= {src, dst}
            self._upstreams -= {src, dst}
            self._by_client.pop(src, None)
            self._by_client.pop(dst, None)


def _read(sock: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes from ``sock`` (``OSError`` when it closes first)."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
