"""Test helpers that run real infrastructure processes of our own: a Mosquitto instance on a free port
(auth, ACL, restart and fault tests) and a TCP proxy whose link we can cut (database outage)."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


class Mosquitto:
    """A mosquitto of our own; ``extra`` goes into its config (auth, ACL, persistence...)."""

    def __init__(self, workdir: Path, extra: str = "allow_anonymous true\n", port: int | None = None) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise RuntimeError("mosquitto is not installed: run `make test` (it installs it through apt)")
        self.exe = exe
        self.port = port or free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\npersistence true\npersistence_location {workdir}/\n"
            "max_queued_messages 1000000\nmax_inflight_messages 1000\nautosave_interval 1\n"
            + ("user root\n" if os.geteuid() == 0 else "")  # keep access to the test's private tmp dir
            + extra
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log = (self.workdir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=self.log, stderr=self.log)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
            self.log.close()

    def restart(self) -> None:
        self.stop()
        self.start()


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
        ls.bind(("127.0.0.1", self.port))
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
