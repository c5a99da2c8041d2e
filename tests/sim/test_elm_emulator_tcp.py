"""The emulator on a real TCP socket, like a WiFi ELM327; and ``serve()`` for ``obdtool sim``."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from adapters.sim.elm327 import Elm327Emulator, EmulatorFaults
from adapters.sim.server import TcpServer, serve

MakeEmulator = Callable[..., Elm327Emulator]
READ_TIMEOUT_S = 3.0


class Client:
    """A WiFi-adapter app's view: send a line, read up to the prompt."""

    def __init__(self, host: str, port: int, timeout: float = READ_TIMEOUT_S) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)

    def ask(self, command: bytes) -> bytes:
        self.sock.sendall(command + b"\r")
        return self.read()

    def read(self) -> bytes:
        answer = b""
        while not answer.endswith(b">"):
            data = self.sock.recv(4096)
            if not data:
                break
            answer += data
        return answer

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def tcp_server(make_emulator: MakeEmulator) -> Iterator[Callable[..., TcpServer]]:
    """``tcp_server("petrol", faults=...)`` -> a started server on an ephemeral loopback port."""
    started: list[TcpServer] = []

    def start(scenario: str = "petrol", **options: object) -> TcpServer:
        server = TcpServer(make_emulator(scenario, **options))
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_init_and_vin_over_tcp(tcp_server: Callable[..., TcpServer]) -> None:
    server = tcp_server()
    assert server.url == f"tcp://127.0.0.1:{server.port}"
    elm = Client(server.host, server.port)
    assert elm.ask(b"ATZ") == b"ATZ\r\r\rELM327 v1.5\r\r>"
    assert elm.ask(b"ATE0") == b"ATE0\rOK\r\r>"
    assert elm.ask(b"ATH1") == b"OK\r\r>"
    assert elm.ask(b"0100") == b"SEARCHING...\r7E8 06 41 00 98 18 00 13 \r7E9 06 41 00 80 08 00 00 \r\r>"
    assert elm.ask(b"0902") == (
        b"7E8 10 14 49 02 01 57 56 57 \r7E8 21 5A 5A 5A 43 44 5A 4D \r7E8 22 57 31 32 33 34 35 30 \r\r>"
    )
    elm.close()


def test_29bit_car_over_tcp(tcp_server: Callable[..., TcpServer]) -> None:
    server = tcp_server("can29")
    elm = Client(server.host, server.port)
    elm.ask(b"ATE0")
    elm.ask(b"ATH1")
    answer = elm.ask(b"0902")
    assert answer.startswith(b"SEARCHING...\r18 DA F1 10 10 14 49 02 01 4A 48 4D \r18 DA F1 10 21 ")
    elm.close()


def test_settings_survive_a_reconnection(tcp_server: Callable[..., TcpServer]) -> None:
    server = tcp_server()
    first = Client(server.host, server.port)
    first.ask(b"ATE0")
    first.sock.sendall(b"ATH")  # half a line, then the client goes away
    first.close()
    second = Client(server.host, server.port)
    assert second.ask(b"ATDPN") == b"A0\r\r>"  # no echo: ATE0 held; the half line was dropped
    second.close()


def test_one_client_at_a_time(tcp_server: Callable[..., TcpServer]) -> None:
    server = tcp_server()
    first = Client(server.host, server.port)
    assert first.ask(b"ATI") == b"ATI\rELM327 v1.5\r\r>"
    waiting = Client(server.host, server.port, timeout=0.3)
    waiting.sock.sendall(b"ATRV\r")
    with pytest.raises(TimeoutError):
        waiting.sock.recv(100)
    first.close()
    waiting.sock.settimeout(READ_TIMEOUT_S)
    assert waiting.read() == b"ATRV\r12.4V\r\r>"
    waiting.close()


def test_disconnect_fault_drops_the_connection_and_the_adapter_takes_the_next(
    tcp_server: Callable[..., TcpServer],
) -> None:
    server = tcp_server(faults=EmulatorFaults(disconnect_after=1))
    elm = Client(server.host, server.port)
    elm.ask(b"ATE0")
    assert elm.ask(b"0100").endswith(b">")
    with contextlib.suppress(ConnectionResetError):  # also what a pulled cable can look like
        assert elm.ask(b"0100") == b""
    elm.close()
    again = Client(server.host, server.port)
    assert again.ask(b"0100").endswith(b"41 00 80 08 00 00 \r\r>")
    again.close()
    assert [r.data for r in server.emulator.car.request_log] == [b"\x01\x00", b"\x01\x00"]


def test_garbage_fault_over_tcp(tcp_server: Callable[..., TcpServer]) -> None:
    server = tcp_server(faults=EmulatorFaults(garbage=True))
    elm = Client(server.host, server.port)
    elm.ask(b"ATE0")
    answer = elm.ask(b"0100")
    assert answer.startswith(b"SEARCHING...\r") and not answer[13:-3].isascii()
    elm.close()


def test_stop_with_a_client_connected(make_emulator: MakeEmulator) -> None:
    server = TcpServer(make_emulator())
    with server:
        elm = Client(server.host, server.port)
        assert elm.ask(b"ATI").endswith(b"ELM327 v1.5\r\r>")
    assert not server.running
    assert elm.sock.recv(10) == b""
    elm.close()
    server.stop()


def test_serve_offers_a_pty_and_a_tcp_port_until_stopped() -> None:
    ready: list[str] = []
    ready_event = threading.Event()
    stop = threading.Event()

    def on_ready(line: str) -> None:
        ready.append(line)
        if len(ready) == 2:
            ready_event.set()

    runner = threading.Thread(
        target=serve,
        args=("diesel",),
        kwargs={"pty": True, "tcp_port": 0, "on_ready": on_ready, "stop": stop},
    )
    runner.start()
    try:
        assert ready_event.wait(READ_TIMEOUT_S)
        assert ready[0].startswith("pty: /dev/")
        assert ready[1].startswith("tcp: tcp://127.0.0.1:")
        port = int(ready[1].rsplit(":", 1)[1])
        elm = Client("127.0.0.1", port)
        assert elm.ask(b"ATI") == b"ATI\rELM327 v1.5\r\r>"
        elm.close()
    finally:
        stop.set()
        runner.join(READ_TIMEOUT_S)
    assert not runner.is_alive()


def test_serve_needs_something_to_serve() -> None:
    with pytest.raises(ValueError, match="nothing to serve"):
        serve("petrol", pty=False, tcp_port=None)
