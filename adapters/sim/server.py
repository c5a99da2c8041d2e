"""Put an emulated ELM327 where real clients look for one: a pseudo-terminal and a TCP port.

A USB/Bluetooth adapter is a serial device and a WiFi adapter is a TCP socket; serving the emulator
on both lets obdtool's real ELM327 backend, pyserial and a terminal program all talk to the virtual
car exactly as they would to hardware. Each server runs one thread that reads what the client
writes, feeds the :class:`~adapters.sim.elm327.Elm327Emulator` and writes its chunks, waiting each
chunk's delay and pacing bytes at the serial baud rate when timing is on. Input that arrives while
the adapter waits for the car interrupts the request (``STOPPED``), as on a real chip.

``stop()`` really stops: it wakes the thread through a pipe, joins it and closes every descriptor.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import select
import socket
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Self

from adapters.sim.car import VirtualCar
from adapters.sim.elm327 import Chunk, Elm327Emulator, EmulatorFaults, TimingModel
from adapters.sim.scenario import load_scenario

__all__ = ["PtyServer", "TcpServer", "serve"]

_log = logging.getLogger(__name__)

_JOIN_S = 1.0
_EOF = "eof"
_STOP = "stop"
_DISCONNECT = "disconnect"


def _interrupts(data: bytes) -> bool:
    """Whether client bytes count as input for the chip (it ignores control characters but CR)."""
    return any(b == 0x0D or b >= 0x20 for b in data)


class _Pump:
    """Moves bytes between one client connection and the emulator until EOF, stop or disconnect."""

    def __init__(self, emulator: Elm327Emulator, wake_fd: int, stopping: threading.Event) -> None:
        self.emulator = emulator
        self.wake_fd = wake_fd
        self.stopping = stopping

    def run(self, fd: int, read: Callable[[], bytes], write: Callable[[bytes], int]) -> str:
        """Serve the connection on ``fd``; returns why it ended (``eof``, ``stop``, ``disconnect``).

        With timing on, both directions move at the serial rate: a line reaches the adapter only when
        its last byte would have (``transmit_s`` after the client wrote it), and output leaves as one
        stream. A chunk's delay counts from the moment the adapter decided to print the chunk before
        it (the ECU answering, the frame gap, the listening window), not from the moment that chunk
        finished crossing the link: a real adapter receives the next CAN frame while it is still
        printing the previous one.
        """
        timing = self.emulator.timing
        pending: deque[Chunk] = deque()
        inbox = bytearray()
        inbox_ready = 0.0  # when the client's bytes so far have all reached the adapter
        event_at = 0.0  # when the adapter decided to print the previous chunk
        line_free = 0.0  # when the adapter's output line is idle again
        deadline: float | None = None  # when the head chunk has completely crossed the link
        while not self.stopping.is_set():
            timeout: float | None = None
            if not pending and inbox:
                now = time.monotonic()
                if now >= inbox_ready:
                    pending.extend(self.emulator.feed(bytes(inbox)))
                    inbox.clear()
                    event_at = inbox_ready
                    if self.emulator.disconnect_requested:
                        return _DISCONNECT
                    continue
                timeout = inbox_ready - now
            if pending:
                if deadline is None:
                    head = pending[0]
                    event_at += head.delay_s
                    deadline = max(event_at, line_free) + timing.transmit_s(len(head.data))
                timeout = max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([fd, self.wake_fd], [], [], timeout)
            if self.wake_fd in readable:
                return _STOP
            if fd in readable:
                try:
                    data = read()
                except BlockingIOError:
                    continue
                except OSError:
                    return _EOF
                if not data:
                    return _EOF
                _log.debug("client -> adapter %r", data)
                now = time.monotonic()
                waiting = deadline is not None and now < deadline
                if pending and pending[0].abortable and waiting and _interrupts(data):
                    pending = deque(self.emulator.interrupt())
                    deadline = None
                    event_at = now
                inbox += data
                inbox_ready = max(now, inbox_ready) + timing.transmit_s(len(data))
                continue
            if pending and deadline is not None and time.monotonic() >= deadline:
                chunk = pending.popleft()
                line_free, deadline = deadline, None
                if not self._write_all(fd, write, chunk.data):
                    return _EOF if not self.stopping.is_set() else _STOP
        return _STOP

    def _write_all(self, fd: int, write: Callable[[bytes], int], data: bytes) -> bool:
        view = memoryview(data)
        while view:
            try:
                sent = write(bytes(view))
            except BlockingIOError:
                sent = 0
            except OSError:
                return False
            view = view[sent:]
            if view:
                select.select([self.wake_fd], [fd], [], 0.1)
                if self.stopping.is_set():
                    return False
        if data:
            _log.debug("adapter -> client %r", data)
        return True


class _ServerBase:
    """Thread, wake pipe and lifecycle shared by the pty and TCP servers."""

    _thread_name = "elm327-server"

    def __init__(self, emulator: Elm327Emulator) -> None:
        self.emulator = emulator
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        """Open the device or port and start serving; returns once clients can connect.

        :raises OSError: when the pseudo-terminal or the port cannot be opened.
        :raises RuntimeError: when called twice.
        """
        if self._thread is not None or self._stopped:
            raise RuntimeError("a server can be started once")
        self._wake_r, self._wake_w = os.pipe()
        try:
            self._open()
        except BaseException:
            self._close_pipe()
            raise
        self._thread = threading.Thread(target=self._serve, name=self._thread_name)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close everything; idempotent, joins the thread within a second."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._stopping.set()
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(_JOIN_S)
            if self._thread.is_alive():
                _log.warning("%s did not stop within %.1f s", self._thread_name, _JOIN_S)
        self._close()
        self._close_pipe()

    @property
    def running(self) -> bool:
        """True while the serving thread is alive (false after stop or a dropped pty)."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _pump(self) -> _Pump:
        return _Pump(self.emulator, self._wake_r, self._stopping)

    def _close_pipe(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r, self._wake_w = -1, -1

    def _open(self) -> None:
        raise NotImplementedError

    def _serve(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class PtyServer(_ServerBase):
    """The emulator on a pseudo-terminal, like a USB or Bluetooth ELM327 on ``/dev/ttyUSB0``.

    ``path`` is the slave device (``/dev/pts/N``), to be opened with ``serial.Serial(path)``. The
    server keeps its own slave descriptor open so the device lasts across client reopenings. The
    ``disconnect_after`` fault closes the pseudo-terminal: the client's next read fails, like an
    adapter pulled out of the socket, and the device is gone for good.
    """

    _thread_name = "elm327-pty"

    def __init__(self, emulator: Elm327Emulator) -> None:
        super().__init__(emulator)
        self._master = -1
        self._slave = -1
        self._path: str | None = None
        self._fd_lock = threading.Lock()

    @property
    def path(self) -> str:
        """The device a client opens.

        :raises RuntimeError: before ``start()``.
        """
        if self._path is None:
            raise RuntimeError("the pty server is not started")
        return self._path

    def _open(self) -> None:
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            os.set_blocking(master, False)
            self._path = os.ttyname(slave)
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        self._master, self._slave = master, slave
        _log.info("ELM327 emulator on %s", self._path)

    def _serve(self) -> None:
        master = self._master
        reason = self._pump().run(
            master,
            lambda: os.read(master, 4096),
            lambda data: os.write(master, data),
        )
        if reason == _DISCONNECT:
            _log.info("pty %s: dropping the link (disconnect fault)", self._path)
            self._close()
        elif reason == _EOF:
            _log.info("pty %s: link closed", self._path)

    def _close(self) -> None:
        with self._fd_lock:
            for fd in (self._master, self._slave):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master, self._slave = -1, -1


class TcpServer(_ServerBase):
    """The emulator on a TCP port, like a WiFi ELM327 (which usually listens on 35000).

    One client at a time; others wait in the listen queue. The emulator's settings survive from one
    connection to the next, as a WiFi adapter's do. The ``disconnect_after`` fault closes the
    client's connection; the server then accepts the next one.
    """

    _thread_name = "elm327-tcp"

    def __init__(self, emulator: Elm327Emulator, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(emulator)
        self.host = host
        self.port = port
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None
        self._sock_lock = threading.Lock()

    @property
    def url(self) -> str:
        """``tcp://host:port`` as obdtool's adapter strings spell it.

        :raises RuntimeError: before ``start()``.
        """
        if self._listener is None:
            raise RuntimeError("the TCP server is not started")
        return f"tcp://{self.host}:{self.port}"

    def _open(self) -> None:
        listener = socket.create_server((self.host, self.port))
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        _log.info("ELM327 emulator on tcp://%s:%d", self.host, self.port)

    def _serve(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            readable, _, _ = select.select([listener.fileno(), self._wake_r], [], [])
            if self._wake_r in readable:
                return
            try:
                client, peer = listener.accept()
            except (BlockingIOError, OSError):
                continue
            with self._sock_lock:
                if self._stopping.is_set():
                    client.close()
                    return
                self._client = client
            _log.info("tcp client %s:%d connected", *peer[:2])
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.emulator.link_reset()
            reason = self._pump().run(client.fileno(), functools.partial(client.recv, 4096), client.send)
            with self._sock_lock:
                self._client = None
                with contextlib.suppress(OSError):
                    client.close()
            _log.info("tcp client %s:%d: %s", *peer[:2], reason)
            self.emulator.link_reset()
            if reason == _STOP:
                return

    def _close(self) -> None:
        with self._sock_lock:
            for sock in (self._client, self._listener):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()
            self._client = None


def serve(
    scenario_name: str,
    *,
    pty: bool = True,
    tcp_port: int | None = None,
    timing: TimingModel | None = None,
    on_ready: Callable[[str], None] = lambda line: None,
    faults: EmulatorFaults | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve a scenario's car behind emulated ELM327s until Ctrl-C (or ``stop`` is set).

    One car, one emulator per endpoint (each endpoint is its own adapter plugged into the car).
    ``on_ready`` gets one human line per endpoint: ``pty: /dev/pts/5``, ``tcp: tcp://127.0.0.1:35000``.

    :raises adapters.sim.scenario.ScenarioError: when the scenario cannot be loaded.
    :raises ValueError: when neither a pty nor a TCP port is asked for.
    :raises OSError: when the pty or the port cannot be opened.
    """
    if not pty and tcp_port is None:
        raise ValueError("nothing to serve: ask for a pty, a TCP port or both")
    car = VirtualCar(load_scenario(scenario_name))
    servers: list[PtyServer | TcpServer] = []
    waiter = stop if stop is not None else threading.Event()
    try:
        if pty:
            pty_server = PtyServer(Elm327Emulator(car, timing=timing, faults=faults))
            servers.append(pty_server)
            pty_server.start()
            on_ready(f"pty: {pty_server.path}")
        if tcp_port is not None:
            tcp_server = TcpServer(Elm327Emulator(car, timing=timing, faults=faults), port=tcp_port)
            servers.append(tcp_server)
            tcp_server.start()
            on_ready(f"tcp: {tcp_server.url}")
        while not waiter.wait(0.5):
            pass
    except KeyboardInterrupt:
        _log.info("interrupted; stopping the emulator")
    finally:
        for server in servers:
            server.stop()
