"""Test helpers: our own Mosquitto (from gateway.ops.procs) and a TCP proxy whose link we can cut (database
outage)."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from gateway.ops.procs import Mosquitto, free_port, wait_port

__all__ = ["Mosquitto", "Proxy", "free_port", "subscribe_and_wait", "wait_port", "wait_until"]


def wait_until(pred: Callable[[], object], timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll ``pred`` until it is truthy or ``timeout`` seconds pass; True if it became truthy."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return False


def subscribe_and_wait(client: paho.Client, filters: str | Iterable[str], timeout: float = 5.0, *,
                       qos: int = 1) -> list[ReasonCode]:
    """Subscribe a (paho 2.x, loop running) client to ``filters`` and return once the broker's SUBACK for
    this SUBSCRIBE is in: from then on the broker routes matching publishes to it, no sleep needed.

    Returns the SUBACK's reason codes, one per filter (``rc.is_failure`` where the broker refused one, e.g.
    by ACL); raises AssertionError if no SUBACK comes within ``timeout``. An ``on_subscribe`` the client
    already has is still called.
    """
    topics = [filters] if isinstance(filters, str) else list(filters)
    acked: dict[int, list[ReasonCode]] = {}
    cond = threading.Condition()
    previous = client.on_subscribe

    def on_subscribe(c: paho.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Any) -> None:
        with cond:  # the SUBACK may beat subscribe()'s return of the mid: keep every one
            acked[mid] = list(codes)
            cond.notify_all()
        if previous is not None:
            previous(c, userdata, mid, codes, props)

    client.on_subscribe = on_subscribe
    try:
        result, mid = client.subscribe([(t, qos) for t in topics])
        assert result == paho.MQTT_ERR_SUCCESS, f"SUBSCRIBE {topics} not sent: {paho.error_string(result)}"
        with cond:
            assert cond.wait_for(lambda: mid in acked, timeout), f"no SUBACK for {topics} within {timeout} s"
            return acked[mid]
    finally:
        client.on_subscribe = previous


class Proxy:
    """TCP proxy 127.0.0.1:port -> target; ``cut()`` drops every link and refuses new ones until ``heal()``."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self._up = threading.Event()
        self._up.set()
        self._stop = threading.Event()
        self._links: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open_listener()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _open_listener(self) -> None:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        end = time.monotonic() + 5
        while True:  # right after cut() the accept loop may still hold the old listener (its accept times out)
            try:
                ls.bind(("127.0.0.1", self.port))
                break
            except OSError:
                if time.monotonic() > end:
                    ls.close()
                    raise
                time.sleep(0.02)
        ls.listen(64)
        ls.settimeout(0.2)
        self._listener = ls

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            if not self._up.is_set() or self._listener is None:
                time.sleep(0.05)
                continue
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._links.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        socks = [a, b]
        try:
            while self._up.is_set():
                readable, _, _ = select.select(socks, [], [], 0.2)
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except OSError:
            return
        finally:
            for s in socks:
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        self._up.clear()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept loop up now (Linux)
            self._listener.close()
            self._listener = None
        with self._lock:
            for a, b in self._links:
                for s in (a, b):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                        s.close()
            self._links.clear()

    def heal(self) -> None:
        self._open_listener()
        self._up.set()

    def close(self) -> None:
        self._stop.set()
        self.cut()
