"""The emulator on a real pseudo-terminal, driven with pyserial like a USB/Bluetooth ELM327."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import serial

from adapters.sim.elm327 import Elm327Emulator, EmulatorFaults, TimingModel
from adapters.sim.server import PtyServer

MakeEmulator = Callable[..., Elm327Emulator]
READ_TIMEOUT_S = 3.0


class Client:
    """A terminal program's view: write a line, read up to the prompt."""

    def __init__(self, path: str, timeout: float = READ_TIMEOUT_S) -> None:
        self.port = serial.Serial(path, baudrate=38400, timeout=timeout)

    def ask(self, command: bytes) -> bytes:
        self.port.write(command + b"\r")
        return self.read()

    def read(self) -> bytes:
        answer: bytes = self.port.read_until(b">")
        return answer

    def close(self) -> None:
        self.port.close()


@pytest.fixture
def serve_pty(make_emulator: MakeEmulator) -> Iterator[Callable[..., tuple[PtyServer, Client]]]:
    """``serve_pty("petrol", timing=..., faults=...)`` -> a started server and a connected client."""
    started: list[tuple[PtyServer, Client]] = []

    def start(scenario: str = "petrol", **options: object) -> tuple[PtyServer, Client]:
        server = PtyServer(make_emulator(scenario, **options))
        server.start()
        client = Client(server.path)
        started.append((server, client))
        return server, client

    yield start
    for server, client in started:
        client.close()
        server.stop()


def test_init_sequence_and_first_request_over_a_pty(
    serve_pty: Callable[..., tuple[PtyServer, Client]],
) -> None:
    server, elm = serve_pty()
    assert server.path.startswith("/dev/")
    assert elm.ask(b"ATZ") == b"ATZ\r\r\rELM327 v1.5\r\r>"
    assert elm.ask(b"ATE0") == b"ATE0\rOK\r\r>"
    assert elm.ask(b"ATH1") == b"OK\r\r>"
    assert elm.ask(b"ATL0") == b"OK\r\r>"
    assert elm.ask(b"ATSP0") == b"OK\r\r>"
    assert elm.ask(b"0100") == b"SEARCHING...\r7E8 06 41 00 98 18 00 13 \r7E9 06 41 00 80 08 00 00 \r\r>"
    assert elm.ask(b"ATDPN") == b"A6\r\r>"


def test_vin_over_a_pty_with_and_without_headers(serve_pty: Callable[..., tuple[PtyServer, Client]]) -> None:
    _, elm = serve_pty()
    elm.ask(b"ATE0")
    elm.ask(b"ATSP6")
    assert elm.ask(b"0902") == (
        b"014\r0: 49 02 01 57 56 57 \r1: 5A 5A 5A 43 44 5A 4D \r2: 57 31 32 33 34 35 30 \r\r>"
    )
    elm.ask(b"ATH1")
    assert elm.ask(b"0902") == (
        b"7E8 10 14 49 02 01 57 56 57 \r7E8 21 5A 5A 5A 43 44 5A 4D \r7E8 22 57 31 32 33 34 35 30 \r\r>"
    )


def test_bare_cr_after_clear_sends_the_clear_again(
    serve_pty: Callable[..., tuple[PtyServer, Client]],
) -> None:
    server, elm = serve_pty("diesel")
    elm.ask(b"ATE0")
    assert elm.ask(b"04") == b"SEARCHING...\r44 \r\r>"
    elm.port.write(b"\r")
    assert elm.read() == b"44 \r\r>"
    car = server.emulator.car
    assert [r.data for r in car.requests_for(0x04)] == [b"\x04", b"\x04"]


def test_kwp_car_over_a_pty(serve_pty: Callable[..., tuple[PtyServer, Client]]) -> None:
    _, elm = serve_pty("kwp")
    elm.ask(b"ATE0")
    elm.ask(b"ATH1")
    assert elm.ask(b"ATSP5") == b"OK\r\r>"
    assert elm.ask(b"0100") == b"BUS INIT: OK\r86 F1 10 41 00 98 18 00 13 8B \r\r>"
    vin = elm.ask(b"0902").split(b"\r")
    assert [line[:17] for line in vin[:5]] == [f"87 F1 10 49 02 {n:02X}".encode() for n in range(1, 6)]


def test_input_while_waiting_for_the_car_stops_the_request(
    serve_pty: Callable[..., tuple[PtyServer, Client]],
) -> None:
    # The ECU takes a second to answer, so the second line surely arrives while the adapter waits.
    timing = TimingModel(ecu_response_ms=1000, st_ms=2000, adaptive=False)
    _, elm = serve_pty("diesel", timing=timing)
    elm.ask(b"ATSP6")
    elm.port.write(b"0100\r")
    assert elm.port.read(5) == b"0100\r"  # the echo: the adapter has the request and now waits
    elm.port.write(b"ATI\r")
    assert elm.read() == b"STOPPED\r\r>"
    assert elm.read() == b"ATI\rELM327 v1.5\r\r>"


def test_input_in_the_same_write_as_the_request_stops_it(
    serve_pty: Callable[..., tuple[PtyServer, Client]],
) -> None:
    # Whether the pty delivers both lines in one read or not, the second one beats the answer.
    _, elm = serve_pty("diesel", timing=TimingModel(ecu_response_ms=1000, st_ms=2000))
    elm.ask(b"ATSP6")
    elm.port.write(b"0100\rATI\r")
    assert elm.read() == b"0100\rSTOPPED\r\r>"
    assert elm.read() == b"ATI\rELM327 v1.5\r\r>"


def test_paced_output_arrives_intact(serve_pty: Callable[..., tuple[PtyServer, Client]]) -> None:
    timing = TimingModel(baud=115200, ecu_response_ms=5, st_ms=40, search_ms_can=5)
    _, elm = serve_pty(timing=timing)
    elm.ask(b"ATE0")
    assert elm.ask(b"0902 3") == b"SEARCHING...\r014\r0: 49 02 01 57 56 57 \r1: 5A 5A 5A 43 44 5A 4D \r" + (
        b"2: 57 31 32 33 34 35 30 \r\r>"
    )


def test_garbage_fault_over_a_pty(serve_pty: Callable[..., tuple[PtyServer, Client]]) -> None:
    _, elm = serve_pty(faults=EmulatorFaults(garbage=True))
    elm.ask(b"ATE0")
    elm.ask(b"ATSP6")
    answer = elm.ask(b"0100")
    assert answer.endswith(b"\r\r>") and not answer[:-3].isascii()


def test_silent_fault_leaves_the_client_without_a_prompt(
    serve_pty: Callable[..., tuple[PtyServer, Client]],
) -> None:
    server, elm = serve_pty(faults=EmulatorFaults(silent_after=1))
    elm.ask(b"ATE0")
    assert elm.ask(b"0100").endswith(b">")
    elm.port.timeout = 0.3
    assert elm.ask(b"0100") == b""
    assert server.running


def test_disconnect_fault_pulls_the_cable(serve_pty: Callable[..., tuple[PtyServer, Client]]) -> None:
    server, elm = serve_pty(faults=EmulatorFaults(disconnect_after=1))
    elm.ask(b"ATE0")
    assert elm.ask(b"0100").endswith(b">")
    with pytest.raises(serial.SerialException):
        elm.ask(b"0100")
        elm.read()  # in case the hang-up shows on the second read
    server.stop()
    assert not server.running


def test_server_lifecycle(make_emulator: MakeEmulator) -> None:
    server = PtyServer(make_emulator())
    with pytest.raises(RuntimeError):
        _ = server.path
    with server:
        assert server.running
        client = Client(server.path)
        client.close()
        client = Client(server.path)  # the device outlives a client closing it
        assert client.ask(b"ATI").endswith(b"ELM327 v1.5\r\r>")
        client.close()
    assert not server.running
    server.stop()  # idempotent
    with pytest.raises(RuntimeError):
        server.start()
