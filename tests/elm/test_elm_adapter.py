"""Elm327Adapter end to end: a scripted ELM327 on a real pseudo-terminal and on a loopback TCP socket.

The scripted adapter answers from a table, keeps the state the driver depends on (echo, selected
protocol, the protocol found) and records every command line it received, so the tests can prove what
the driver sent -- and that it never sent an empty line, which would make a real ELM327 repeat its last
command.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
import os
import re
import select
import socket
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from adapters.base import EcuReply
from adapters.elm327 import Elm327Adapter, ProtocolMemory, open_elm327
from adapters.errors import (
    AdapterProtocolError,
    AdapterSpecError,
    AdapterStatusError,
    AdapterUnavailableError,
    BufferFullError,
    BusFaultError,
    BusInitError,
    CanBusError,
    CommandRejectedError,
    FramingError,
    LinkError,
    LinkTimeoutError,
    StoppedError,
    UnableToConnectError,
)
from adapters.link import SerialLink, TcpLink


class Act(enum.Enum):
    """Scripted behaviours beyond printing an answer."""

    SILENT = "keep working until any character arrives, then print STOPPED"
    DEAF = "print nothing and stay idle, as if the prompt had been lost"
    DEAD = "never print anything again"
    CLOSE = "close the link"


Answer = str | Act | Callable[[str], "str | Act"] | list["str | Act"]

NAMES = {
    "1": "SAE J1850 PWM",
    "2": "SAE J1850 VPW",
    "3": "ISO 9141-2",
    "4": "ISO 14230-4 (KWP 5BAUD)",
    "5": "ISO 14230-4 (KWP FAST)",
    "6": "ISO 15765-4 (CAN 11/500)",
    "7": "ISO 15765-4 (CAN 29/500)",
    "8": "ISO 15765-4 (CAN 11/250)",
    "9": "ISO 15765-4 (CAN 29/250)",
}
FAILURE = (
    dict.fromkeys("6789", "CAN ERROR")
    | dict.fromkeys("345", "BUS INIT: ...ERROR")
    | dict.fromkeys("12", "NO DATA")
)
PROBE_11 = "7E8064100BE3FA813"
PROBE_29 = "18DAF110064100BE3FA813"
PROBE_KWP = "86F1124100983B2013D0"
VIN_TEXT = "7E81014490201575030\r7E8215A5A5A39395A54\r7E82253333932313234"  # ATS0: no spaces
VIN = b"\x49\x02\x01WP0ZZZ99ZTS392124"
CONFIGURE = ["ATE0", "ATL0", "ATS0", "ATH1", "ATAT1", "ATCAF1"]
INIT = ["ATD", "ATI", *CONFIGURE]


class ScriptedElm:
    """An ELM327 that answers from a table and records what it was sent."""

    def __init__(
        self,
        answers: dict[str, Answer] | None = None,
        *,
        firmware: str = "ELM327 v1.5",
        car: dict[str, str] | None = None,
        search_finds: bool = True,
        keep_echo: bool = False,
    ) -> None:
        self.answers = dict(answers or {})
        self.firmware = firmware
        self.car = {"6": PROBE_11} if car is None else car
        self.search_finds = search_finds
        self.keep_echo = keep_echo
        self.received: list[str] = []
        self.bytes_in = 0
        self.bytes_out = 0
        self.busy = False
        self.dead = False
        self._line = bytearray()
        self._reset()

    def _reset(self) -> None:
        self.echo = True
        self.auto = True
        self.selected = "0"
        self.active: str | None = None

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Take bytes from the host; return what the adapter prints and whether it closes the link."""
        self.bytes_in += len(data)
        out = bytearray()
        for byte in data:
            if self.dead:
                continue
            if self.busy:
                self.busy = False
                out += b"STOPPED\r\r>"  # the interrupting character itself is discarded
                continue
            if byte != 0x0D:
                self._line.append(byte)
                continue
            line = self._line.decode("ascii", "replace")
            self._line.clear()
            result = self._command(line)
            if result is Act.CLOSE:
                return bytes(out), True
            if self.echo:
                out += line.encode("ascii", "replace") + b"\r"
            if result is Act.SILENT:
                self.busy = True
            elif result is Act.DEAD:
                self.dead = True
            elif isinstance(result, str):
                out += result.encode("ascii") + b"\r\r>"
        self.bytes_out += len(out)
        return bytes(out), False

    def _command(self, line: str) -> str | Act:
        command = "".join(line.split()).upper()
        self.received.append(command)
        if command in self.answers:
            answer = self.answers[command]
            if isinstance(answer, list):
                answer = answer.pop(0) if len(answer) > 1 else answer[0]
            return answer(command) if callable(answer) else answer
        if command in ("ATZ", "ATWS"):
            self._reset()
            return "\r" + self.firmware
        if command == "ATI":
            return self.firmware
        if command in ("ATE0", "ATE1"):
            self.echo = command == "ATE1" or self.keep_echo
            return "OK"
        if command.startswith("ATSP"):
            self.auto, self.selected, self.active = True, "0", None
            return "OK"
        if command.startswith("ATTP"):
            self.auto, self.selected, self.active = False, command[4:], None
            return "OK"
        if command == "ATDPN":
            return ("A" if self.auto else "") + (self.active or "0")
        if command == "ATDP":
            name = NAMES.get(self.active or "", "AUTOMATIC")
            return f"AUTO, {name}" if self.auto else name
        if command.startswith("AT"):
            return "OK"
        if not command or not re.fullmatch(r"[0-9A-F]+", command):
            return "?"
        if self.active is None:
            if self.auto:
                found = next((p for p in "687912345" if p in self.car), None) if self.search_finds else None
                if found is None:
                    return "SEARCHING...\r...UNABLE TO CONNECT"
                self.active = found
                return "SEARCHING...\r" + self._car_answer(command)
            if self.selected not in self.car:
                return FAILURE.get(self.selected, "?")
            self.active = self.selected
        return self._car_answer(command)

    def _car_answer(self, command: str) -> str:
        assert self.active is not None
        return self.car[self.active] if command.startswith("0100") else "NO DATA"


class _Server:
    """Runs a ScriptedElm on one end of a real OS-level link, in a thread, until closed."""

    def __init__(self, elm: ScriptedElm) -> None:
        self.elm = elm
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def _serve(self, fileno: int, recv: Callable[[], bytes], send: Callable[[bytes], object]) -> str:
        """Serve one connection; say why it ended: "stop" (test over), "eof" (peer left), "close" (script)."""
        while True:
            ready, _, _ = select.select([fileno, self._stop_r], [], [])
            if self._stop_r in ready:
                return "stop"
            try:
                data = recv()
            except OSError:
                return "eof"
            if not data:
                return "eof"
            out, close = self.elm.feed(data)
            if out:
                send(out)
            if close:
                return "close"

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        os.close(self._stop_r)
        os.close(self._stop_w)


class PtyElm(_Server):
    """The scripted adapter behind a pseudo-terminal: the driver opens :attr:`path` like a USB port."""

    def __init__(self, elm: ScriptedElm) -> None:
        super().__init__(elm)
        self.master, self._slave = os.openpty()  # the slave stays open here, so the pty survives reopening
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self._master_open = True
        self._thread.start()

    def _run(self) -> None:
        outcome = self._serve(
            self.master, lambda: os.read(self.master, 4096), lambda out: os.write(self.master, out)
        )
        if outcome == "close":
            self._master_open = False
            os.close(self.master)  # the driver sees the pty hang up, like an unplugged USB adapter

    def close(self) -> None:
        super().close()
        if self._master_open:
            os.close(self.master)
        os.close(self._slave)


class TcpElm(_Server):
    """The scripted adapter behind a loopback TCP server, like a WiFi ELM327."""

    def __init__(self, elm: ScriptedElm) -> None:
        super().__init__(elm)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._thread.start()

    def _run(self) -> None:
        while True:
            ready, _, _ = select.select([self.server, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            conn, _ = self.server.accept()
            with conn:
                outcome = self._serve(conn.fileno(), functools.partial(conn.recv, 4096), conn.sendall)
            if outcome == "stop":
                return

    def close(self) -> None:
        super().close()
        self.server.close()


_ServerT = TypeVar("_ServerT", bound=_Server)


def _scripted_servers(
    server_type: Callable[[ScriptedElm], _ServerT],
) -> Iterator[Callable[..., tuple[ScriptedElm, _ServerT]]]:
    """Scripted ELMs behind real servers; each one is checked at the end for an empty line sent to it."""
    made: list[_ServerT] = []

    def make(elm: ScriptedElm | None = None) -> tuple[ScriptedElm, _ServerT]:
        server = server_type(elm or ScriptedElm())
        made.append(server)
        return server.elm, server

    yield make
    for server in made:
        server.close()
        assert "" not in server.elm.received, "the driver sent an empty line"


@pytest.fixture
def pty_elm() -> Iterator[Callable[..., tuple[ScriptedElm, PtyElm]]]:
    yield from _scripted_servers(PtyElm)


@pytest.fixture
def tcp_elm() -> Iterator[Callable[..., tuple[ScriptedElm, TcpElm]]]:
    yield from _scripted_servers(TcpElm)


def on_pty(server: PtyElm, **kw: object) -> Elm327Adapter:
    kw.setdefault("link_margin", 0.3)
    return Elm327Adapter(SerialLink(server.path).open, **kw)  # type: ignore[arg-type]


def opened(server: PtyElm, **kw: object) -> Elm327Adapter:
    adapter = on_pty(server, **kw)
    adapter.open()
    return adapter


# ----------------------------------------------------------------------- opening


def test_open_sends_the_init_sequence_and_never_sleeps(
    pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]], monkeypatch: pytest.MonkeyPatch
) -> None:
    elm, server = pty_elm()

    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s")

    monkeypatch.setattr(time, "sleep", no_sleep)
    started = time.monotonic()
    with on_pty(server) as adapter:
        info = adapter.info
    assert time.monotonic() - started < 1.0
    assert elm.received == [*INIT, "ATST19", "ATSP0", "0100", "ATDPN"]
    assert info.kind == "elm327"
    assert info.description == f"ELM327 v1.5 on {server.path}"
    assert (info.protocol, info.protocol_id, info.is_can) == (
        "ISO 15765-4 CAN (11 bit ID, 500 kbaud)",
        "6",
        True,
    )
    assert info.probe_replies == (EcuReply("7E8", bytes.fromhex("4100BE3FA813")),)


def test_open_over_tcp(tcp_elm: Callable[..., tuple[ScriptedElm, TcpElm]]) -> None:
    elm, server = tcp_elm(ScriptedElm({"0902": VIN_TEXT}))
    with open_elm327(f"tcp://127.0.0.1:{server.port}", link_margin=0.3) as adapter:
        assert adapter.info.description == f"ELM327 v1.5 on tcp://127.0.0.1:{server.port}"
        assert adapter.request(b"\x09\x02") == [EcuReply("7E8", VIN)]
    assert elm.received[-1] == "0902"


def test_remembered_protocol_skips_the_search(
    pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]], tmp_path: Path
) -> None:
    elm, server = pty_elm(ScriptedElm(car={"8": PROBE_11}))
    memory = ProtocolMemory(tmp_path / "cache" / "protocols.json")
    with on_pty(server, remember=memory) as adapter:
        assert adapter.info.protocol_id == "8"
    assert "ATSP0" in elm.received
    assert json.loads(memory.path.read_text()) == {
        "version": 1,
        "protocols": {f"{server.path}|ELM327 v1.5": "8"},
    }
    elm.received.clear()
    with on_pty(server, remember=memory) as adapter:
        assert adapter.info.protocol_id == "8"
        assert adapter.info.protocol == "ISO 15765-4 CAN (11 bit ID, 250 kbaud)"
    assert elm.received == [*INIT, "ATST19", "ATTP8", "0100"]  # after ATTP 8 the adapter speaks 8


def test_remembered_protocol_that_fails_falls_back_to_the_search(
    pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]], tmp_path: Path
) -> None:
    elm, server = pty_elm(ScriptedElm(car={"6": PROBE_11}))
    memory = ProtocolMemory(tmp_path / "protocols.json")
    memory.put(f"{server.path}|ELM327 v1.5", "5")  # last car was on K-line
    with on_pty(server, remember=memory) as adapter:
        assert adapter.info.protocol_id == "6"
    assert elm.received == [*INIT, "ATTP5", "0100", "ATST19", "ATSP0", "0100", "ATDPN"]
    assert memory.get(f"{server.path}|ELM327 v1.5") == "6"


def test_protocols_tried_one_by_one_when_the_search_fails(
    pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]],
) -> None:
    elm, server = pty_elm(ScriptedElm(car={"9": PROBE_29}, search_finds=False))
    with on_pty(server, protocol_hint="7") as adapter:
        assert adapter.info.protocol_id == "9"
    tried = [cmd for cmd in elm.received if cmd.startswith(("ATTP", "ATSP"))]
    assert tried == ["ATTP7", "ATSP0", "ATTP6", "ATTP8", "ATTP9"]


def test_no_protocol_at_all(pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]]) -> None:
    elm, server = pty_elm(ScriptedElm(car={}))
    adapter = on_pty(server)
    with pytest.raises(UnableToConnectError, match="ignition"):
        adapter.open()
    tried = [cmd for cmd in elm.received if cmd.startswith(("ATTP", "ATSP"))]
    assert tried == ["ATSP0", *(f"ATTP{p}" for p in "687912345")]
    with pytest.raises(RuntimeError):
        _ = adapter.info  # closed again after the failure


def test_busy_adapter_is_stopped_at_open(pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]]) -> None:
    elm, server = pty_elm()
    elm.busy = True  # e.g. left in monitor mode by another program
    with on_pty(server) as adapter:
        assert adapter.info.protocol_id == "6"
    # "A" of ATD interrupted it; "TD" was answered "?"; the second ATD found the adapter ready.
    assert elm.received[:3] == ["TD", "ATD", "ATI"]


def test_adapter_that_refuses_atd_gets_a_warm_start(
    pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]],
) -> None:
    elm, server = pty_elm(ScriptedElm({"ATD": "?"}))
    with on_pty(server) as adapter:
        assert adapter.info.description.startswith("ELM327 v1.5 on ")
    assert elm.received[:3] == ["ATD", "ATWS", "ATE0"]


def test_adapter_whose_ati_names_nothing_gets_a_warm_start(
    pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]],
) -> None:
    elm, server = pty_elm(ScriptedElm({"ATI": ""}))
    with on_pty(server) as adapter:
        assert adapter.info.description.startswith("ELM327 v1.5 on ")  # from the warm start's banner
    assert elm.received[:4] == ["ATD", "ATI", "ATWS", "ATE0"]


def test_the_probe_answers_are_kept_for_the_read_out(
    pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]], tmp_path: Path
) -> None:
    two = f"{PROBE_11}\r7E9064100BE1FA813"
    elm, server = pty_elm(ScriptedElm(car={"6": two}))
    memory = ProtocolMemory(tmp_path / "protocols.json")
    memory.put(f"{server.path}|ELM327 v1.5", "6")
    with on_pty(server, remember=memory) as adapter:
        assert adapter.info.probe_replies == (
            EcuReply("7E8", bytes.fromhex("4100BE3FA813")),
            EcuReply("7E9", bytes.fromhex("4100BE1FA813")),
        )
    assert elm.received.count("0100") == 1


@pytest.mark.parametrize(("protocol", "probe", "timer"), [("6", PROBE_11, ["ATST19"]), ("5", PROBE_KWP, [])])
def test_the_timer_is_100_ms_on_can_and_the_adapter_default_elsewhere(
    pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]], protocol: str, probe: str, timer: list[str]
) -> None:
    elm, server = pty_elm(ScriptedElm(car={protocol: probe}))
    with on_pty(server, protocol_hint=protocol) as adapter:
        adapter.request(b"\x01\x00")
    assert elm.received == [*INIT, *timer, f"ATTP{protocol}", "0100", "0100"]


def test_adapter_that_keeps_echo_on(pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]]) -> None:
    _, server = pty_elm(ScriptedElm({"0902": VIN_TEXT}, keep_echo=True))
    with on_pty(server) as adapter:
        assert adapter.request(b"\x09\x02") == [EcuReply("7E8", VIN)]


def test_silent_port_is_unavailable(pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]]) -> None:
    elm, server = pty_elm()
    elm.dead = True
    adapter = on_pty(server, link_margin=0.1)
    started = time.monotonic()
    with pytest.raises(AdapterUnavailableError, match=re.escape(server.path)):
        adapter.open()
    assert time.monotonic() - started < 2.5


# ----------------------------------------------------------------------- requests


def test_physical_addressing_headers_sent_only_on_change(
    pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]],
) -> None:
    elm, server = pty_elm(ScriptedElm({"0902": VIN_TEXT, "010D": "7E9 03 41 0D 00"}))
    adapter = opened(server)
    elm.received.clear()
    assert adapter.request(b"\x09\x02", ecu="7E8") == [EcuReply("7E8", VIN)]
    adapter.request(b"\x09\x02", ecu="7e8")
    adapter.request(b"\x01\x0d", ecu="7E9")
    adapter.request(b"\x01\x0d")
    adapter.request(b"\x01\x0d")
    adapter.close()
    assert elm.received == [
        "ATSH7E0",
        "ATCRA7E8",
        "0902",
        "0902",
        "ATSH7E1",
        "ATCRA7E9",
        "010D",
        "ATSH7DF",
        "ATCRA",
        "010D",
        "010D",
    ]


def test_physical_addressing_29_bit(pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]]) -> None:
    elm, server = pty_elm(ScriptedElm(car={"7": PROBE_29}))
    adapter = opened(server)
    assert adapter.info.protocol_id == "7"
    elm.received.clear()
    assert adapter.request(b"\x01\x00", ecu="18DAF110") == [
        EcuReply("18DAF110", bytes.fromhex("4100BE3FA813"))
    ]
    adapter.request(b"\x01\x00")
    adapter.close()
    assert elm.received == ["ATSHDA10F1", "ATCRA18DAF110", "0100", "ATSHDB33F1", "ATCRA", "0100"]


def test_old_firmware_resets_the_filter_with_atar(pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]]) -> None:
    elm, server = pty_elm(ScriptedElm({"ATCRA": "?"}))
    with opened(server) as adapter:
        adapter.request(b"\x01\x00", ecu="7E8")
        adapter.request(b"\x01\x00")
    assert elm.received[-3:] == ["ATCRA", "ATAR", "0100"]


def test_physical_addressing_refused_off_can(pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]]) -> None:
    _, server = pty_elm(ScriptedElm(car={"5": PROBE_KWP}))
    with opened(server) as adapter:
        assert adapter.info.protocol_id == "5"
        assert adapter.info.is_can is False
        with pytest.raises(AdapterSpecError, match="physical addressing not supported on K-line"):
            adapter.request(b"\x01\x00", ecu="12")
        assert adapter.request(b"\x01\x00") == [EcuReply("12", bytes.fromhex("4100983B2013"))]


@pytest.mark.parametrize("ecu", ["7E", "8E8", "007", "18DA10F1", "hello"])
def test_bad_ecu_addresses(pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]], ecu: str) -> None:
    _, server = pty_elm()
    with opened(server) as adapter, pytest.raises(AdapterSpecError):
        adapter.request(b"\x01\x00", ecu=ecu)


@pytest.mark.parametrize(
    ("firmware", "expect", "sent"),
    [
        ("ELM327 v1.5", 1, "010C1"),
        ("ELM327 v1.5", 15, "010CF"),
        ("ELM327 v1.5", None, "010C"),
        ("ELM327 v1.5", 16, "010C"),
        ("ELM327 v1.5", 0, "010C"),
        ("ELM327 v2.3", 3, "010C3"),
        ("ELM327 v1.2", 1, "010C"),
        ("OBDII to RS232 Interpreter", 1, "010C"),
    ],
)
def test_response_count_digit(
    pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]], firmware: str, expect: int | None, sent: str
) -> None:
    elm, server = pty_elm(ScriptedElm({sent: "7E8 04 41 0C 1A F8"}, firmware=firmware))
    with opened(server) as adapter:
        assert adapter.request(b"\x01\x0c", expect=expect) == [EcuReply("7E8", bytes.fromhex("410C1AF8"))]
    assert elm.received[-1] == sent


def test_timeout_sets_the_adapter_timer_only_when_it_changes(
    pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]],
) -> None:
    elm, server = pty_elm()
    with opened(server) as adapter:
        elm.received.clear()
        adapter.request(b"\x01\x00", timeout=0.5)
        adapter.request(b"\x01\x00", timeout=0.5)
        adapter.request(b"\x01\x00")
        adapter.request(b"\x01\x00", timeout=5)
    assert elm.received == ["ATST7D", "0100", "0100", "ATST19", "0100", "ATSTFF", "0100"]


def test_st_ms_is_sent_at_open(pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]]) -> None:
    elm, server = pty_elm()
    with opened(server, st_ms=100):
        pass
    assert elm.received[: len(INIT) + 1] == [*INIT, "ATST19"]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("CAN ERROR", CanBusError),
        ("BUS INIT: ...ERROR", BusInitError),
        ("UNABLE TO CONNECT", UnableToConnectError),
        ("BUFFER FULL", BufferFullError),
        ("?", CommandRejectedError),
        ("STOPPED", StoppedError),
        ("BUS BUSY", BusFaultError),
        ("ERR94", CanBusError),
        ("7E8 06 41 00 BE 3F A8 13 <RX ERROR", BusFaultError),
        ("ACT ALERT", AdapterStatusError),
    ],
)
def test_status_words_raise_and_the_adapter_stays_usable(
    pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]], answer: str, error: type[AdapterStatusError]
) -> None:
    _, server = pty_elm(ScriptedElm({"0902": [answer, VIN_TEXT]}))
    with opened(server) as adapter:
        with pytest.raises(error) as caught:
            adapter.request(b"\x09\x02")
        assert type(caught.value) is error
        assert adapter.request(b"\x09\x02") == [EcuReply("7E8", VIN)]


def test_no_data_is_an_empty_list(pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]]) -> None:
    _, server = pty_elm()
    with opened(server) as adapter:
        assert adapter.request(b"\x01\xa6") == []


def test_silent_adapter_times_out_then_is_stopped_and_usable(
    pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]],
) -> None:
    elm, server = pty_elm(ScriptedElm({"0902": [Act.SILENT, VIN_TEXT]}))
    with opened(server, link_margin=0.2) as adapter:
        started = time.monotonic()
        with pytest.raises(LinkTimeoutError, match="0902"):
            adapter.request(b"\x09\x02", timeout=0.1)
        assert time.monotonic() - started < 1.5
        assert elm.busy is False  # our interrupt reached it
        assert adapter.request(b"\x09\x02") == [EcuReply("7E8", VIN)]


def test_adapter_that_lost_its_prompt_is_resynchronised(
    pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]],
) -> None:
    elm, server = pty_elm(ScriptedElm({"0902": [Act.DEAF, VIN_TEXT]}))
    with opened(server, link_margin=0.2) as adapter:
        with pytest.raises(LinkTimeoutError):
            adapter.request(b"\x09\x02", timeout=0.1)
        assert elm.received[-2:] == ["0902", "ATI"]  # " " + "ATI\r" reached it as one line
        assert adapter.request(b"\x09\x02") == [EcuReply("7E8", VIN)]


def test_dead_adapter_keeps_raising_timeouts(pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]]) -> None:
    _, server = pty_elm(ScriptedElm({"0902": Act.DEAD}))
    with opened(server, link_margin=0.1) as adapter:
        with pytest.raises(LinkTimeoutError):
            adapter.request(b"\x09\x02", timeout=0.1)
        with pytest.raises(LinkTimeoutError, match="not answering"):
            adapter.request(b"\x01\x00", timeout=0.1)


def test_garbage_answer_is_a_protocol_error(pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]]) -> None:
    _, server = pty_elm(ScriptedElm({"0902": ["HELLO WORLD", VIN_TEXT]}))
    with opened(server) as adapter:
        with pytest.raises(AdapterProtocolError, match="HELLO WORLD"):
            adapter.request(b"\x09\x02")
        assert adapter.request(b"\x09\x02") == [EcuReply("7E8", VIN)]


def test_low_voltage_reset_reconfigures_the_adapter(
    pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]],
) -> None:
    elm, server = pty_elm(ScriptedElm({"010C": ["LV RESET", "7E8 04 41 0C 1A F8"]}))
    with opened(server) as adapter:
        elm.received.clear()
        with pytest.raises(AdapterStatusError) as caught:
            adapter.request(b"\x01\x0c")
        assert caught.value.status == "LV RESET"
        assert adapter.request(b"\x01\x0c") == [EcuReply("7E8", bytes.fromhex("410C1AF8"))]
    assert elm.received == ["010C", *CONFIGURE, "ATTP6", "ATST19", "010C"]


def test_response_pending_then_answer(pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]]) -> None:
    _, server = pty_elm(ScriptedElm({"1101": "7ED037F1178\r7ED025101", "2711": "7ED037F2778"}))
    with opened(server) as adapter:
        assert adapter.request(b"\x11\x01", ecu="7ED") == [EcuReply("7ED", b"\x51\x01")]
        with pytest.raises(LinkTimeoutError, match="response pending"):
            adapter.request(b"\x27\x11", ecu="7ED")


def test_response_pending_counted_as_the_answer_is_a_count_too_low(
    pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]],
) -> None:
    # An adapter that counts the "response pending" line stops before the real answer.
    elm, server = pty_elm(ScriptedElm({"032": "7E8037F0378\r7E90443010715", "03": "7E90443010715"}))
    with opened(server) as adapter:
        with pytest.raises(FramingError, match="response pending"):
            adapter.request(b"\x03", expect=2)
        assert adapter.request(b"\x03") == [EcuReply("7E9", bytes.fromhex("43010715"))]
    assert elm.received[-2:] == ["032", "03"]


def test_tcp_socket_closed_mid_request(tcp_elm: Callable[..., tuple[ScriptedElm, TcpElm]]) -> None:
    _, server = tcp_elm(ScriptedElm({"0902": Act.CLOSE}))
    adapter = open_elm327(f"tcp://127.0.0.1:{server.port}", link_margin=0.3)
    adapter.open()
    with pytest.raises(LinkError, match="closed") as caught:
        adapter.request(b"\x09\x02")
    assert not isinstance(caught.value, LinkTimeoutError)
    adapter.close()
    adapter.close()


def test_pty_closed_mid_request(pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]]) -> None:
    _, server = pty_elm(ScriptedElm({"0902": Act.CLOSE}))
    with opened(server) as adapter, pytest.raises(LinkError, match="cable pulled"):
        adapter.request(b"\x09\x02")


def test_stats_count_requests_and_every_byte(pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]]) -> None:
    elm, server = pty_elm(ScriptedElm({"0902": VIN_TEXT}))
    with opened(server) as adapter:
        adapter.request(b"\x09\x02")
        adapter.request(b"\x09\x02", ecu="7E8")
        adapter.request(b"\x01\x00")
        stats = adapter.stats
    assert stats.requests == 4  # the 0100 probe at open and three requests; AT commands are not counted
    assert stats.per_service == {0x01: 2, 0x09: 2}
    assert (stats.bytes_out, stats.bytes_in) == (elm.bytes_in, elm.bytes_out)


def test_requests_the_adapter_cannot_send(pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]]) -> None:
    _, server = pty_elm()
    with opened(server) as adapter:
        with pytest.raises(AdapterSpecError):
            adapter.request(b"")
        with pytest.raises(AdapterSpecError):
            adapter.request(bytes(8))
        with pytest.raises(AdapterSpecError):
            adapter.request(b"\x01\x00", timeout=0)


def test_close_is_idempotent_and_requests_after_close_fail(
    pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]],
) -> None:
    _, server = pty_elm()
    adapter = opened(server)
    assert adapter.open() is adapter.info  # open again: nothing new happens
    adapter.close()
    adapter.close()
    with pytest.raises(LinkError, match="not open"):
        adapter.request(b"\x01\x00")


# ----------------------------------------------------------------------- baud-rate detection


class MemoryLine:
    """A serial line in memory whose adapter only understands ``adapter_rate``; other rates give noise."""

    description = "memory-line"
    needs_baud_detection = True

    def __init__(self, elm: ScriptedElm, adapter_rate: int | None) -> None:
        self.elm = elm
        self.adapter_rate = adapter_rate
        self.rate = 38400
        self.tried: list[int] = []
        self._pending = bytearray()

    def set_baudrate(self, baudrate: int) -> None:
        self.rate = baudrate
        self.tried.append(baudrate)

    def write(self, data: bytes) -> None:
        if self.rate == self.adapter_rate:
            self._pending += self.elm.feed(data)[0]
        else:
            self._pending += b"\xe0\x3e"  # line noise, even a stray ">"

    def read(self, max_wait: float) -> bytes:
        data = bytes(self._pending)
        self._pending.clear()
        return data

    def close(self) -> None:
        pass


def test_baud_rate_detection_tries_rates_in_order() -> None:
    elm = ScriptedElm()
    line = MemoryLine(elm, adapter_rate=115200)
    with Elm327Adapter(lambda: line) as adapter:
        assert adapter.info.protocol_id == "6"
    assert line.tried == [38400, 9600, 115200]
    assert elm.received[:3] == ["ATI", "ATD", "ATI"]


def test_baud_rate_detection_gives_up_with_the_rates_tried() -> None:
    line = MemoryLine(ScriptedElm(), adapter_rate=None)
    with pytest.raises(AdapterUnavailableError, match="38400, 9600, 115200, 230400, 57600, 19200"):
        Elm327Adapter(lambda: line).open()
    assert line.tried == [38400, 9600, 115200, 230400, 57600, 19200]


def test_no_baud_detection_on_a_pty(pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]]) -> None:
    _, server = pty_elm()
    assert SerialLink(server.path).needs_baud_detection is False
    assert SerialLink("loop://").needs_baud_detection is False
    assert SerialLink("/dev/ttyUSB0", 115200).needs_baud_detection is False


# ----------------------------------------------------------------------- adapter strings


@pytest.mark.parametrize(
    "spec",
    [
        "bluetooth:00:11:22",
        "ttyUSB0",
        "loop://",
        "socket://localhost:35000",
        "tcp://",
        "tcp://host:notaport",
        "tcp://host:35000/path",
        "tcp://host:35000?x=1",
        "serial://",
        "serial:///dev/ttyUSB0?speed=115200",
        "serial:///dev/ttyUSB0?baud=fast",
        "serial:///dev/ttyUSB0?baud=10",
        "serial://ttyUSB0",
        "",
    ],
)
def test_unknown_specs_are_refused(spec: str) -> None:
    with pytest.raises(AdapterSpecError):
        open_elm327(spec)


@pytest.mark.parametrize(
    ("spec", "kind", "where", "baudrate"),
    [
        ("/dev/ttyUSB0", SerialLink, "/dev/ttyUSB0", None),
        ("/dev/rfcomm0", SerialLink, "/dev/rfcomm0", None),
        ("COM3", SerialLink, "COM3", None),
        ("com12", SerialLink, "com12", None),
        ("serial:///dev/ttyUSB0?baud=115200", SerialLink, "/dev/ttyUSB0", 115200),
        ("serial://COM3?baud=38400", SerialLink, "COM3", 38400),
        ("tcp://192.168.0.10:35000", TcpLink, "tcp://192.168.0.10:35000", None),
        ("tcp://192.168.0.10", TcpLink, "tcp://192.168.0.10:35000", None),
        ("TCP://[::1]:23", TcpLink, "tcp://[::1]:23", None),
    ],
)
def test_specs_build_without_io(spec: str, kind: type, where: str, baudrate: int | None) -> None:
    adapter = open_elm327(spec)
    link = adapter._link_factory.__self__  # type: ignore[attr-defined]
    assert isinstance(link, kind)
    assert link.description == where
    if baudrate is not None:
        assert link.baudrate == baudrate
    with pytest.raises(RuntimeError):
        _ = adapter.info  # nothing was opened


def test_missing_serial_device_names_the_port() -> None:
    port = "/dev/ttyUSB-obdtool-test-missing"
    with pytest.raises(AdapterUnavailableError) as caught:
        open_elm327(port).open()
    assert str(caught.value) == f"cannot open {port}: no such device — is the adapter plugged in?"


def test_refused_tcp_connection_names_the_address() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(AdapterUnavailableError, match=f"127.0.0.1:{port}: connection refused"):
        open_elm327(f"tcp://127.0.0.1:{port}").open()


def test_bad_adapter_options() -> None:
    with pytest.raises(AdapterSpecError):
        Elm327Adapter(lambda: MemoryLine(ScriptedElm(), 38400), protocol_hint="Z")  # type: ignore[arg-type,return-value]
    with pytest.raises(AdapterSpecError):
        Elm327Adapter(lambda: MemoryLine(ScriptedElm(), 38400), st_ms=2000)  # type: ignore[arg-type,return-value]


# ----------------------------------------------------------------------- protocol memory


def test_protocol_memory_round_trip(tmp_path: Path) -> None:
    memory = ProtocolMemory(tmp_path / "deep" / "dir" / "protocols.json")
    assert memory.get("a") is None
    memory.put("a", "6")
    memory.put("b", "5")
    assert (memory.get("a"), memory.get("b")) == ("6", "5")
    assert ProtocolMemory(memory.path).get("a") == "6"
    assert not list(memory.path.parent.glob("*.tmp"))
    with pytest.raises(AdapterSpecError):
        memory.put("a", "X")


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[]", b'{"protocols": 3}', b'{"protocols": {"a": 6, "b": "Q"}}', b"\xff\xfe{"],
)
def test_corrupt_protocol_memory_is_ignored_and_overwritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = tmp_path / "protocols.json"
    path.write_bytes(content)
    memory = ProtocolMemory(path)
    with caplog.at_level(logging.DEBUG, logger="adapters.elm327"):
        assert memory.get("a") is None
    assert "protocol memory" in caplog.text
    memory.put("a", "7")
    assert memory.get("a") == "7"
    assert json.loads(path.read_text())["protocols"] == {"a": "7"}


def test_unwritable_protocol_memory_only_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    memory = ProtocolMemory(blocker / "protocols.json")  # its directory is a file
    with caplog.at_level(logging.WARNING, logger="adapters.elm327"):
        memory.put("a", "6")
    assert "cannot remember" in caplog.text
    assert memory.get("a") is None


def test_debug_log_shows_raw_traffic(
    pty_elm: Callable[..., tuple[ScriptedElm, PtyElm]], caplog: pytest.LogCaptureFixture
) -> None:
    _, server = pty_elm()
    with caplog.at_level(logging.DEBUG, logger="adapters.elm327"), opened(server):
        pass
    assert "b'ATD\\r'" in caplog.text
    assert "ELM327 v1.5" in caplog.text
