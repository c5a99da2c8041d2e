"""An ELM327 that talks to a virtual car: the text a real adapter prints, without the adapter.

The emulator is a state machine with no I/O of its own. ``feed()`` takes the bytes a client wrote
and returns what the adapter prints, as :class:`Chunk` pieces that each carry the delay the adapter
would take before printing them. The servers in ``adapters.sim.server`` pace those chunks onto a
pseudo-terminal or a TCP socket; the tests read the delays directly, so nothing waits on a clock.

What is emulated is documented ELM327 v1.5 behaviour, checked against real transcripts
(``shared/reference/captures``): echo, prompt, ``SEARCHING...``, headers and spaces, ISO-TP frame
layouts on CAN (``7E8 10 14 ...`` with headers, ``014`` + ``0:``/``1:`` without), legacy K-line and
J1850 lines with header and checksum bytes, the response-count digit, ``AT ST`` and adaptive timing,
``STOPPED`` on interrupting input, and the status strings of a failed bus.

Assumptions a client must not rely on beyond the emulator (real adapters differ):

* ``7F xx 78`` (response pending) is printed like any frame and the adapter keeps listening until
  the final answer arrives, which is printed before the prompt.
* An ECU whose next frame comes later than ``AT ST`` after the previous one is not heard (as on a
  real adapter); adaptive timing only shortens the wait after the last frame, it never loses one.
* A protocol search costs time only; the car's request log shows only what the client asked for.
* Timing decisions (frame order, the ``AT ST`` cut-off) use the timing model's figures even when
  pacing is off, so the printed text does not depend on whether delays are applied.
"""

from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import dataclass, field

from adapters.protocols import j1850_crc
from adapters.sim.car import EcuAnswer, LoggedRequest, VirtualCar, VirtualEcu

__all__ = [
    "CAN_PADDING",
    "DP_NAMES",
    "SEARCH_ORDER",
    "Chunk",
    "Elm327Emulator",
    "ElmSettings",
    "EmulatorFaults",
    "TimingModel",
    "isotp_frames",
    "legacy_messages",
]

_log = logging.getLogger(__name__)

CR = b"\r"
LF = b"\n"

# What AT DP prints for each protocol number (the ELM327's own short names).
DP_NAMES: dict[str, str] = {
    "1": "SAE J1850 PWM",
    "2": "SAE J1850 VPW",
    "3": "ISO 9141-2",
    "4": "ISO 14230-4 (KWP 5BAUD)",
    "5": "ISO 14230-4 (KWP FAST)",
    "6": "ISO 15765-4 (CAN 11/500)",
    "7": "ISO 15765-4 (CAN 29/500)",
    "8": "ISO 15765-4 (CAN 11/250)",
    "9": "ISO 15765-4 (CAN 29/250)",
    "A": "SAE J1939 (CAN 29/250)",
    "B": "USER1 (CAN 11/125)",
    "C": "USER2 (CAN 11/50)",
}
_CAN_KBAUD = {"6": 500, "7": 500, "8": 250, "9": 250, "A": 250, "B": 125, "C": 50}
_CAN29 = frozenset({"7", "9", "A"})
_KLINE = frozenset({"3", "4", "5"})
_J1850 = frozenset({"1", "2"})

# The order an automatic search tries protocols in. The ELM327's own order is not numeric and not
# fully documented; this is the order python-OBD falls back on, a fair stand-in for its cost.
SEARCH_ORDER: tuple[str, ...] = ("6", "8", "1", "7", "9", "2", "3", "4", "5")

# The byte our virtual ECUs fill unused CAN frame bytes with (real cars use 00, 55, AA or CC).
CAN_PADDING = 0x55

# Adaptive timing: the wait after the last frame shrinks toward factor x the slowest gap seen,
# never below the floor (ms), never above AT ST.
_ADAPTIVE = {1: (2.0, 20.0), 2: (1.25, 8.0)}

# AT commands that switch one setting on (1) or off (0).
_SWITCHES = {
    "E": "echo",
    "L": "linefeeds",
    "H": "headers",
    "S": "spaces",
    "M": "memory",
    "CAF": "caf",
    "CFC": "flow_control",
}

_HEX_RE = re.compile(r"[0-9A-F]+")
_FILTER_RE = re.compile(r"[0-9A-FX]{3}|[0-9A-FX]{8}")
_STOPPED = b"STOPPED"

# One-shot faults (EmulatorFaults.<name>_after) that replace the answer with a status word.
_STATUS_FAULTS: dict[str, bytes] = {
    "no_data": b"NO DATA",
    "can_error": b"CAN ERROR",
    "bus_init_error": b"BUS INIT: ...ERROR",
    "stopped": _STOPPED,
}
_ONE_SHOT_FAULTS = (*_STATUS_FAULTS, "stall", "noise", "buffer_full", "truncate", "bad_sequence")
_STALL_S = 3600.0  # a stalled adapter "answers" only after an hour, unless input interrupts it


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of adapter output and the time the adapter takes before printing it.

    ``abortable`` marks chunks the adapter is still *waiting* for (bus answers, the end of the
    listening window): input that arrives during their delay interrupts the request (``STOPPED``).
    """

    delay_s: float
    data: bytes
    abortable: bool = False


@dataclass(frozen=True, slots=True)
class TimingModel:
    """How long a real adapter and car take, as data the servers and the benchmark can use.

    Rules (the ELM327's, as ``shared/reference/obd-facts.md`` section 3.3 lists them):

    * Bytes travel at ``baud / 10`` per second (8N1: ten bits a byte), both ways: the servers hold a
      command back until its last byte would have arrived, and print output as one stream, so a
      frame that arrives while the previous line is still being printed waits for the line.
    * Every ECU answers after its response time (the scenario ECU's ``response_ms``, else the
      scenario's ``timing.ecu_response_ms``, else ``ecu_response_ms`` here); the frames of a
      multi-frame answer follow ``frame_gap_ms`` apart (``legacy_frame_gap_ms`` off CAN).
    * After the last answer the adapter keeps listening for ``AT ST`` (``st_ms``, 200 ms by default,
      ``AT ST 00`` restores it) in case another ECU answers; adaptive timing (``AT AT1``/``AT AT2``)
      shortens that wait toward a multiple of the gaps it has measured, ``AT ST`` staying the
      maximum. A request's response-count digit ends the request as soon as that many frames are in,
      without any wait. NO DATA (nobody answers) costs the whole ``AT ST``.
    * A search tries protocols in :data:`SEARCH_ORDER` (the stored one first): each CAN or J1850
      protocol that does not answer costs ``search_ms_can``, each K-line init ``search_ms_kline``
      (a 5-baud address byte alone takes two seconds). The protocol that answers costs only its bus
      init (K-line) and the ECU's answer, as on a real adapter, which stops searching at the first
      answer. ``AT Z`` and ``AT WS`` take ``reset_ms``; ``AT D`` and other AT commands answer at once.

    With ``enabled`` off every delay is zero (``TimingModel.off()``, what the emulator uses when
    given no model); ``TimingModel()`` is on.
    """

    baud: int = 38400
    ecu_response_ms: float = 20
    st_ms: float = 200
    adaptive: bool = True
    search_ms_can: float = 150
    search_ms_kline: float = 2500
    enabled: bool = True
    frame_gap_ms: float = 1.0
    legacy_frame_gap_ms: float = 25.0
    response_pending_ms: float = 100.0
    reset_ms: float = 1000.0

    @classmethod
    def off(cls) -> TimingModel:
        """The emulator's default: the same decisions, no delays."""
        return cls(enabled=False)

    def seconds(self, ms: float) -> float:
        """``ms`` as a delay in seconds, or 0 when timing is off."""
        return ms / 1000.0 if self.enabled else 0.0

    def transmit_s(self, nbytes: int) -> float:
        """Time for ``nbytes`` on the serial link (10 bits per byte), or 0 when timing is off."""
        return nbytes * 10.0 / self.baud if self.enabled else 0.0


@dataclass(slots=True)
class EmulatorFaults:
    """Misbehaviour to inject, for the read-out and reliability tests; all off by default.

    Mutable on purpose: a test may turn the ignition off in the middle of a session.
    """

    ignition_off: bool = False
    silent_after: int | None = None  # after N OBD requests: no answer at all any more, no prompt
    disconnect_after: int | None = None  # after N OBD requests: the server drops the link
    garbage: bool = False  # every OBD request is answered with random non-ELM bytes
    echo_quirk: bool = False  # echoes commands even after ATE0 (some clones)
    lowercase: bool = False  # prints hex digits in lowercase
    blank_lines: bool = False  # stray blank lines between answer lines
    padding_quirk: bool = False  # prints the CAN padding after single frames (like pyobd257)
    no_echo: bool = False  # never echoes, not even before AT E0 (some clones)
    no_warm_start: bool = False  # answers ? to AT WS, so the host has to fall back to AT Z (old clones)
    # One-shot faults: the first N OBD requests are answered well, the next one (N + 1) goes wrong.
    noise_after: int | None = None  # line noise: a few stray bytes with the high bit set in the answer
    truncate_after: int | None = None  # the first multi-frame CAN answer from then on loses its last frame
    bad_sequence_after: int | None = None  # ... numbers its first consecutive frame 2: a frame "lost"
    no_data_after: int | None = None  # NO DATA instead of the answer
    can_error_after: int | None = None  # CAN ERROR
    bus_init_error_after: int | None = None  # BUS INIT: ...ERROR
    buffer_full_after: int | None = None  # the answer is cut short by BUFFER FULL
    stopped_after: int | None = None  # STOPPED instead of the answer
    stall_after: int | None = None  # no answer and no prompt until the host sends a character (STOPPED)


@dataclass(slots=True)
class ElmSettings:
    """The adapter's switchable settings; ``AT Z``/``AT D`` bring back these defaults."""

    echo: bool = True
    linefeeds: bool = False
    headers: bool = False
    spaces: bool = True
    caf: bool = True
    flow_control: bool = True
    protocol: str = "0"
    auto: bool = True
    st_ms: float = 200.0
    adaptive: int = 1
    header: str | None = None
    receive_filter: str | None = None
    fc_mode: int = 0
    memory: bool = False


@dataclass(slots=True)
class _Event:
    """One frame (or K-line message) arriving from an ECU, with its printed lines."""

    t_ms: float
    order: tuple[float, int, int]
    lines: list[str]
    ecu: str
    interim: bool = False
    final: bool = False


@dataclass(slots=True)
class _Output:
    """Chunks under construction: delays accumulate until the next printed piece."""

    timing: TimingModel
    chunks: list[Chunk] = field(default_factory=list)
    wait_ms: float = 0.0

    def wait(self, ms: float) -> None:
        self.wait_ms += ms

    def emit(self, data: bytes, *, abortable: bool = False) -> None:
        self.chunks.append(Chunk(self.timing.seconds(self.wait_ms), data, abortable))
        self.wait_ms = 0.0


def _is_pending(message: bytes) -> bool:
    return len(message) >= 3 and message[0] == 0x7F and message[2] == 0x78


def isotp_frames(message: bytes) -> list[bytes]:
    """The ISO 15765-2 frames (PCI included, no padding) that carry ``message`` on classic CAN."""
    if len(message) <= 7:
        return [bytes([len(message)]) + message]
    size = len(message)
    frames = [bytes([0x10 | (size >> 8), size & 0xFF]) + message[:6]]
    for sn, start in enumerate(range(6, size, 7), start=1):
        frames.append(bytes([0x20 | (sn & 0x0F)]) + message[start : start + 7])
    return frames


def legacy_messages(message: bytes) -> list[bytes]:
    """Split a CAN-shaped service message into the messages a K-line/J1850 ECU sends.

    DTC answers lose the count byte and carry three DTCs per message (``00 00`` padded); Service 09
    answers carry a sequence byte and four data bytes per message, the first one padded at the front
    (a VIN's 17 bytes become ``00 00 00`` + 17); bitmaps get sequence byte 01. Anything else is one
    message as it stands.
    """
    sid = message[0]
    if sid in (0x43, 0x47, 0x4A) and len(message) >= 2:
        body = message[2:]
        groups = [body[i : i + 6] for i in range(0, len(body), 6)] or [b""]
        return [bytes([sid]) + g.ljust(6, b"\0") for g in groups]
    if sid == 0x49 and len(message) >= 3:
        itid = message[1]
        if itid % 0x20 == 0:
            return [bytes([sid, itid, 0x01]) + message[2:6]]
        data = message[3:]
        data = bytes((-len(data)) % 4) + data
        return [bytes([sid, itid, n + 1]) + data[4 * n : 4 * n + 4] for n in range(len(data) // 4)]
    return [message]


class Elm327Emulator:
    """An ELM327 v1.5 in front of a :class:`VirtualCar`; see the module docstring for the rules.

    :param car: the car behind the adapter; requests reach it through ``car.respond``.
    :param timing: how long things take; ``None`` means no delays (the decisions stay the same).
    :param faults: misbehaviour to inject; ``None`` means a well-behaved adapter.

    Public state, for servers and tests: ``settings`` (:class:`ElmSettings`), ``connected`` (the
    bus is up, no search needed), ``command_log`` (every line received, a bare CR as ``""``),
    ``obd_requests`` (OBD requests seen), ``silent`` and ``disconnect_requested`` (set by faults).
    The car keeps its own ``request_log`` of what reached it.
    """

    def __init__(
        self,
        car: VirtualCar,
        *,
        timing: TimingModel | None = None,
        faults: EmulatorFaults | None = None,
    ) -> None:
        self.car = car
        self.timing = timing if timing is not None else TimingModel.off()
        self.faults = faults if faults is not None else EmulatorFaults()
        self.firmware = car.scenario.firmware
        self.command_log: list[str] = []
        self.obd_requests = 0
        self.silent = False
        self.disconnect_requested = False
        self._stored_protocol = ("0", True)
        self.settings = self._defaults()
        self.connected = False
        self._adaptive_ms: float | None = None
        self._buffer = bytearray()
        self._last_command: str | None = None
        self._armed: str | None = None  # a multi-frame fault waiting for the next multi-frame answer

    # -- the byte interface ----------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Chunk]:
        """Take client bytes; return what the adapter prints for every line they complete.

        A line ends at CR; spaces and control characters other than CR are ignored, like the chip
        does. When more input follows a request in the same ``data``, it arrived while the adapter
        was waiting for the car, so that request ends in ``STOPPED``.
        """
        out: list[Chunk] = []
        for index, byte in enumerate(data):
            if byte == 0x0D:
                line = self._buffer.decode("ascii", "replace")
                self._buffer.clear()
                rest = data[index + 1 :]
                more = any(b == 0x0D or b >= 0x20 for b in rest)
                out.extend(self._line(line, interrupted=more))
            elif byte >= 0x20:
                self._buffer.append(byte)
        return out

    def interrupt(self) -> list[Chunk]:
        """What the adapter prints when input arrives while it waits for the bus."""
        _log.debug("request interrupted by input")
        return [Chunk(0.0, _STOPPED + self._eol * 2 + b">")]

    def link_reset(self) -> None:
        """Forget half-typed input and a pending disconnect (a new client took over the link)."""
        self._buffer.clear()
        self.disconnect_requested = False

    # -- properties ------------------------------------------------------------------------------

    @property
    def protocol_number(self) -> str:
        """What ``AT DPN`` prints (``A6``, ``7``, ``A0`` before a search)."""
        s = self.settings
        return ("A" if s.auto else "") + s.protocol

    @property
    def _eol(self) -> bytes:
        return CR + LF if self.settings.linefeeds else CR

    # -- lines -----------------------------------------------------------------------------------

    def _defaults(self) -> ElmSettings:
        protocol, auto = self._stored_protocol
        return ElmSettings(
            protocol=protocol,
            auto=auto,
            st_ms=self.timing.st_ms,
            adaptive=1 if self.timing.adaptive else 0,
        )

    def _line(self, raw: str, *, interrupted: bool) -> list[Chunk]:
        self.command_log.append(raw)
        if self.silent or self.disconnect_requested:
            return []
        command = raw.replace(" ", "").upper()
        if not command:
            if self._last_command is None:
                return self._respond(raw, ["?"])
            command = self._last_command
        else:
            self._last_command = command
        _log.debug("command %r", command)
        if command.startswith("AT"):
            return self._at(raw, command[2:])
        return self._obd(raw, command, interrupted=interrupted)

    def _echo(self, raw: str) -> bytes:
        if self.faults.no_echo:
            return b""
        if self.settings.echo or self.faults.echo_quirk:
            return raw.encode("ascii", "replace") + self._eol
        return b""

    def _respond(self, raw: str, lines: list[str]) -> list[Chunk]:
        """An immediate answer: echo, the lines, a blank line and the prompt."""
        eol = self._eol
        body = b"".join(line.encode("ascii") + eol for line in lines)
        return [Chunk(0.0, self._echo(raw) + body + eol + b">")]

    # -- AT commands -----------------------------------------------------------------------------

    def _at(self, raw: str, cmd: str) -> list[Chunk]:
        s = self.settings
        if cmd == "WS" and self.faults.no_warm_start:
            return self._respond(raw, ["?"])
        if cmd in ("Z", "WS"):
            echo = self._echo(raw)
            self._reset()
            eol = self._eol
            banner = eol * 2 + self.firmware.encode("ascii") + eol * 2 + b">"
            chunks = [Chunk(0.0, echo)] if echo else []
            return [*chunks, Chunk(self.timing.seconds(self.timing.reset_ms), banner)]
        if cmd == "D":
            echo = self._echo(raw)
            self._reset()
            eol = self._eol
            return [Chunk(0.0, echo + b"OK" + eol * 2 + b">")]
        match = re.fullmatch(r"(E|L|H|S|M|CAF|CFC)([01])", cmd)
        if match:
            echo = self._echo(raw)  # the echo uses the setting in force when the line arrived
            setattr(s, _SWITCHES[match[1]], match[2] == "1")
            return [Chunk(0.0, echo + b"OK" + self._eol * 2 + b">")]
        lines = self._at_lines(cmd)
        return self._respond(raw, lines if lines is not None else ["?"])

    def _at_lines(self, cmd: str) -> list[str] | None:
        """The answer to an AT command that changes no output format; ``None`` means ``?``."""
        s = self.settings
        simple = {
            "I": self.firmware,
            "@1": "OBDII to RS232 Interpreter",
            "RV": f"{self.car.scenario.voltage:.1f}V",
            "IGN": "OFF" if self.faults.ignition_off else "ON",
            "DP": self._describe_protocol(),
            "DPN": self.protocol_number,
        }
        if cmd in simple:
            return [simple[cmd]]
        if cmd in ("AL", "NL"):
            return ["OK"]
        if cmd == "PC":
            self.connected = False
            return ["OK"]
        match = re.fullmatch(r"(SP|TP)(A?)([0-9A-C])", cmd)
        if match:
            kind, auto, number = match.groups()
            auto_on = bool(auto) or number == "0"
            s.protocol, s.auto = number, auto_on
            if kind == "SP":
                self._stored_protocol = (number, auto_on)
            self.connected = False
            self._adaptive_ms = None
            return ["OK"]
        match = re.fullmatch(r"ST([0-9A-F]{2})", cmd)
        if match:
            value = int(match[1], 16)
            s.st_ms = value * 4.0 if value else self.timing.st_ms
            self._adaptive_ms = None
            return ["OK"]
        match = re.fullmatch(r"AT([012])", cmd)
        if match:
            s.adaptive = int(match[1])
            self._adaptive_ms = None
            return ["OK"]
        match = re.fullmatch(r"SH([0-9A-F]{3}|[0-9A-F]{6}|[0-9A-F]{8})", cmd)
        if match:
            s.header = match[1]
            return ["OK"]
        if cmd == "CRA":
            s.receive_filter = None
            return ["OK"]
        match = re.fullmatch(r"CRA(.+)", cmd)
        if match and _FILTER_RE.fullmatch(match[1]):
            s.receive_filter = match[1]
            return ["OK"]
        match = re.fullmatch(r"FCSM([0-2])", cmd)
        if match:
            s.fc_mode = int(match[1])
            return ["OK"]
        return None  # BRD (baud switching is not emulated) and everything else

    def _reset(self) -> None:
        self.settings = self._defaults()
        self.connected = False
        self._adaptive_ms = None

    def _describe_protocol(self) -> str:
        s = self.settings
        if s.protocol == "0":
            return "AUTO"
        name = DP_NAMES[s.protocol]
        return f"AUTO, {name}" if s.auto else name

    # -- OBD requests ----------------------------------------------------------------------------

    def _obd(self, raw: str, command: str, *, interrupted: bool) -> list[Chunk]:
        if not _HEX_RE.fullmatch(command) or len(command) < 2:
            return self._respond(raw, ["?"])
        count: int | None = None
        if len(command) % 2:
            count = int(command[-1], 16)
            command = command[:-1]
            if count == 0:
                return self._respond(raw, ["?"])
        data = bytes.fromhex(command)
        if len(data) > self._max_request_bytes():
            return self._respond(raw, ["?"])

        self.obd_requests += 1
        f = self.faults
        if f.silent_after is not None and self.obd_requests > f.silent_after:
            _log.debug("silent from request %d on", self.obd_requests)
            self.silent = True
            return []
        if f.disconnect_after is not None and self.obd_requests == f.disconnect_after + 1:
            _log.debug("link drops at request %d", self.obd_requests)
            self.disconnect_requested = True
            return []

        out = _Output(self.timing)
        echo = self._echo(raw)
        if echo:
            out.emit(echo)
        if not self._open_link(out):
            return self._finish(out, interrupted)
        fault = self._one_shot_fault()
        if fault in _STATUS_FAULTS:
            out.wait(self.settings.st_ms)
            out.emit(_STATUS_FAULTS[fault] + self._eol, abortable=True)
            out.emit(self._eol + b">")
            return self._finish(out, interrupted)
        if fault == "stall":
            out.chunks.append(Chunk(_STALL_S, b"NO DATA" + self._eol * 2 + b">", abortable=True))
            return self._finish(out, interrupted)
        if fault in ("truncate", "bad_sequence"):
            self._armed = fault
        if f.garbage:
            self._send(data)  # the car hears the request; the answer is what goes wrong
            noise = random.Random(self.obd_requests).randbytes(16)
            out.wait(self._response_ms(None))
            out.emit(bytes(0x80 | b for b in noise) + self._eol * 2 + b">", abortable=True)
            return self._finish(out, interrupted)
        answers = self._send(data)
        if answers is None:
            out.wait(self.settings.st_ms)
            out.emit(b"NO DATA" + self._eol, abortable=True)
            out.emit(self._eol + b">")
            return self._finish(out, interrupted)
        self._print_answers(answers, count, out)
        if fault == "noise":
            self._add_noise(out)
        elif fault == "buffer_full":
            out.chunks.insert(len(out.chunks) - 1, Chunk(0.0, b"BUFFER FULL" + self._eol, abortable=True))
        return self._finish(out, interrupted)

    def _one_shot_fault(self) -> str | None:
        """The one-shot fault due at this OBD request (see EmulatorFaults), if any."""
        for name in _ONE_SHOT_FAULTS:
            after = getattr(self.faults, f"{name}_after")
            if after is not None and self.obd_requests == after + 1:
                _log.debug("injecting %s at request %d", name, self.obd_requests)
                return name
        return None

    def _add_noise(self, out: _Output) -> None:
        """Line noise on a loose connector: a few bytes with the high bit set inside the answer text.

        High-bit bytes are what a UART framing error produces; they never form a ``>`` or a CR, so the
        answer keeps its shape and only its characters are wrong.
        """
        rng = random.Random(self.obd_requests)
        for index, chunk in enumerate(out.chunks):
            end = chunk.data.find(b">")
            room = len(chunk.data) if end < 0 else end
            if room < 4:
                continue
            data = bytearray(chunk.data)
            for _ in range(rng.randint(2, 4)):
                data.insert(rng.randrange(1, room), 0x80 | rng.randrange(0x80))
                room += 1
            out.chunks[index] = Chunk(chunk.delay_s, bytes(data), chunk.abortable)
            return

    def _max_request_bytes(self) -> int:
        s = self.settings
        can_or_unknown = s.protocol in _CAN_KBAUD or s.protocol == "0"
        return 8 if can_or_unknown and not s.caf else 7

    def _finish(self, out: _Output, interrupted: bool) -> list[Chunk]:
        """Close a request's chunks; input that already arrived cuts the waiting part short."""
        if not interrupted:
            return out.chunks
        kept: list[Chunk] = []
        for chunk in out.chunks:
            if chunk.abortable:
                break
            kept.append(chunk)
        return kept + self.interrupt()

    def _open_link(self, out: _Output) -> bool:
        """Search or initialise the bus when needed; print what the adapter prints on the way."""
        s = self.settings
        eol = self._eol
        car_protocol = self.car.scenario.protocol
        if s.auto and not self.connected:
            out.emit(b"SEARCHING..." + eol, abortable=True)
            preferred = s.protocol if s.protocol != "0" else None
            order = [preferred, *(p for p in SEARCH_ORDER if p != preferred)] if preferred else SEARCH_ORDER
            for protocol in order:
                if protocol == car_protocol and not self.faults.ignition_off:
                    if protocol in _KLINE:
                        out.wait(self.timing.search_ms_kline)  # the init itself; CAN needs none
                    s.protocol = protocol
                    self.connected = True
                    return True
                out.wait(self._try_cost(protocol))
            out.emit(b"...UNABLE TO CONNECT" + eol, abortable=True)
            out.emit(eol + b">")
            return False
        if self.connected:
            return True
        failure = self._explicit_failure(s.protocol)
        if failure is not None:
            status, cost = failure
            out.wait(cost)
            out.emit(status.encode("ascii") + eol, abortable=True)
            out.emit(eol + b">")
            return False
        if s.protocol in _KLINE:
            out.wait(self.timing.search_ms_kline)
            dots = "" if s.protocol == "5" else "..."
            out.emit(f"BUS INIT: {dots}OK".encode("ascii") + eol, abortable=True)
        self.connected = True
        return True

    def _try_cost(self, protocol: str) -> float:
        return self.timing.search_ms_kline if protocol in _KLINE else self.timing.search_ms_can

    def _explicit_failure(self, protocol: str) -> tuple[str, float] | None:
        """The status a protocol chosen by hand ends in when the car does not answer on it."""
        car_protocol = self.car.scenario.protocol
        if protocol == car_protocol and not self.faults.ignition_off:
            return None
        if protocol in _KLINE:
            dots = "" if protocol == "5" else "..."
            return f"BUS INIT: {dots}ERROR", self.timing.search_ms_kline
        if protocol in _J1850:
            return "NO DATA", self.settings.st_ms
        # CAN: the car's controllers acknowledge frames at the same bit rate even when no ECU
        # answers that identifier width; otherwise nobody acknowledges and the adapter reports it.
        same_rate = car_protocol in _CAN_KBAUD and _CAN_KBAUD[car_protocol] == _CAN_KBAUD[protocol]
        if same_rate and not self.faults.ignition_off:
            return "NO DATA", self.settings.st_ms
        return "CAN ERROR", self.timing.search_ms_can

    def _target(self) -> str | None:
        """The physical target set by ``AT SH``, or ``None`` for a functional request."""
        header = self.settings.header
        if header is None:
            return None
        protocol = self.settings.protocol
        if protocol in _CAN29:
            full = "18" + header if len(header) == 6 else header  # AT CP 18 is the default priority
            return None if full[2:4] == "DB" else full
        if protocol in _CAN_KBAUD:
            ident = int(header, 16) & 0x7FF
            return None if ident == 0x7DF else f"{ident:03X}"
        if len(header) != 6:
            return None
        target = header[2:4]
        return None if target in ("33", "6A") else target

    def _send(self, data: bytes) -> list[EcuAnswer] | None:
        """Put the request on the bus; ``None`` when nobody can answer (ignition off, bad frame)."""
        if self.faults.ignition_off:
            return None
        s = self.settings
        if s.protocol in _CAN_KBAUD and not s.caf:
            pci = data[0]
            if not 1 <= pci <= 7 or len(data) < pci + 1:
                return None  # not a single frame: the ECUs' ISO-TP layers drop it
            data = data[1 : 1 + pci]
        target = self._target()
        if target is not None and not any(e.request_address == target for e in self.car.ecus):
            # Nobody listens on that identifier: the frame is on the bus (so it is logged) but no
            # ECU receives it. ``car.respond`` would also accept an ECU's *response* address here.
            self.car.request_log.append(LoggedRequest(time.monotonic(), target, bytes(data)))
            return None
        answers = self.car.respond(data, target)
        if s.receive_filter is not None:
            answers = [a for a in answers if _matches(s.receive_filter, a.ecu.address)]
        return answers or None

    def _response_ms(self, ecu: VirtualEcu | None) -> float:
        if ecu is not None and ecu.spec.response_ms is not None:
            return float(ecu.spec.response_ms)
        if self.car.scenario.ecu_response_ms > 0:
            return self.car.scenario.ecu_response_ms
        return float(self.timing.ecu_response_ms)

    # -- answers ---------------------------------------------------------------------------------

    def _events(self, answers: list[EcuAnswer]) -> list[_Event]:
        """Every frame of every answer, timed and in the order the bus delivers them."""
        legacy = self.settings.protocol not in _CAN_KBAUD
        gap = self.timing.legacy_frame_gap_ms if legacy else self.timing.frame_gap_ms
        events: list[_Event] = []
        for index, answer in enumerate(answers):
            ecu = answer.ecu
            rank = index if legacy else int(ecu.address, 16)
            t = self._response_ms(ecu)
            last_message = len(answer.messages) - 1
            for m_index, message in enumerate(answer.messages):
                pieces = self._legacy_lines(ecu, message) if legacy else self._can_lines(ecu, message)
                for f_index, lines in enumerate(pieces):
                    events.append(
                        _Event(
                            t_ms=t,
                            order=(t, rank, len(events)),
                            lines=lines,
                            ecu=ecu.address,
                            interim=_is_pending(message),
                            final=m_index == last_message and f_index == len(pieces) - 1,
                        )
                    )
                    t += gap
                t += self.timing.response_pending_ms - gap if _is_pending(message) else 0.0
        events.sort(key=lambda e: e.order)
        return events

    def _print_answers(self, answers: list[EcuAnswer], count: int | None, out: _Output) -> None:
        s = self.settings
        eol = self._eol
        heard: list[_Event] = []
        waiting: set[str] = set()
        last_t = 0.0
        frames = 0
        for event in self._events(answers):
            if event.t_ms - last_t > s.st_ms and not waiting:
                break  # the adapter stopped listening before this frame came
            heard.append(event)
            if event.interim:
                waiting.add(event.ecu)
            elif event.final:
                waiting.discard(event.ecu)
            last_t = event.t_ms
            if not event.interim:
                frames += 1
            if count is not None and frames >= count:
                break
        if not heard:
            out.wait(s.st_ms)
            out.emit(b"NO DATA" + eol, abortable=True)
            out.emit(eol + b">")
            return
        previous = 0.0
        max_gap = 0.0
        printed = 0
        for event in heard:
            gap = event.t_ms - previous
            max_gap = max(max_gap, gap)
            previous = event.t_ms
            out.wait(gap)
            data = b""
            for line in event.lines:
                if self.faults.blank_lines and printed:
                    data += eol
                data += (line.lower() if self.faults.lowercase else line).encode("ascii") + eol
                printed += 1
            out.emit(data, abortable=True)
        if count is not None and frames >= count:
            out.emit(eol + b">")
        else:
            out.wait(self._listen_ms(max_gap))
            out.emit(eol + b">", abortable=True)

    def _listen_ms(self, max_gap: float) -> float:
        """How long the adapter keeps listening after the last frame; learns with AT1/AT2."""
        s = self.settings
        if s.adaptive == 0:
            return s.st_ms
        current = self._adaptive_ms if self._adaptive_ms is not None else s.st_ms
        factor, floor = _ADAPTIVE[s.adaptive]
        target = factor * max_gap
        learned = target if target >= current else (current + target) / 2
        self._adaptive_ms = min(s.st_ms, max(floor, learned))
        return current

    def _hex(self, data: bytes) -> str:
        return (" " if self.settings.spaces else "").join(f"{b:02X}" for b in data)

    def _frame_line(self, prefix: str, data: bytes) -> str:
        if not self.settings.spaces:
            return prefix + self._hex(data)
        return (prefix + " " if prefix else "") + self._hex(data) + " "

    def _can_header(self, ecu: VirtualEcu) -> str:
        address = ecu.address
        if len(address) == 8 and self.settings.spaces:
            return " ".join(address[i : i + 2] for i in range(0, 8, 2))
        return address

    def _can_lines(self, ecu: VirtualEcu, message: bytes) -> list[list[str]]:
        """Printed lines per CAN frame of one message (a frame may print two lines with H0)."""
        s = self.settings
        frames = isotp_frames(message)
        if self._armed is not None and len(frames) > 1:
            frames = self._mangle(frames)
        if not s.caf and not s.flow_control:
            frames = frames[:1]  # no flow control: the ECU never sends its consecutive frames
        header = self._can_header(ecu) if s.headers else ""
        single = len(frames) == 1
        pieces: list[list[str]] = []
        for index, frame in enumerate(frames):
            padded = frame.ljust(8, bytes([CAN_PADDING]))
            if not s.caf:
                pieces.append([self._frame_line(header, padded)])
            elif s.headers:
                shown = frame if single and not self.faults.padding_quirk else padded
                pieces.append([self._frame_line(header, shown)])
            elif single:
                shown = padded[1:] if self.faults.padding_quirk else frame[1:]
                pieces.append([self._frame_line("", shown)])
            elif index == 0:
                sep = " " if s.spaces else ""
                pieces.append([f"{len(message):03X}", f"0:{sep}" + self._frame_line("", frame[2:]).lstrip()])
            else:
                sep = " " if s.spaces else ""
                label = f"{frame[0] & 0x0F:X}:"
                pieces.append([label + sep + self._frame_line("", padded[1:]).lstrip()])
        return pieces

    def _mangle(self, frames: list[bytes]) -> list[bytes]:
        """Break one multi-frame answer as the armed fault says: lose its last frame, or misnumber one."""
        fault, self._armed = self._armed, None
        _log.debug("injecting %s into a %d-frame answer", fault, len(frames))
        if fault == "truncate":
            return frames[:-1]
        return [frames[0], bytes([0x22]) + frames[1][1:], *frames[2:]]

    def _legacy_lines(self, ecu: VirtualEcu, message: bytes) -> list[list[str]]:
        """Printed lines of one K-line/J1850 answer, header and check byte shown with AT H1."""
        protocol = self.settings.protocol
        pieces: list[list[str]] = []
        for part in legacy_messages(message):
            if len(part) > 7:
                _log.debug("dropping %s: longer than a legacy OBD message", part.hex())
                continue
            if not self.settings.headers:
                pieces.append([self._frame_line("", part)])
                continue
            source = int(ecu.address, 16)
            if protocol in _KLINE - {"3"}:
                head = bytes([0x80 | len(part), 0xF1, source])
            elif protocol == "1":
                head = bytes([0x41, 0x6B, source])
            else:
                head = bytes([0x48, 0x6B, source])
            body = head + part
            check = j1850_crc(body) if protocol in _J1850 else sum(body) & 0xFF
            pieces.append([self._frame_line("", body + bytes([check]))])
        return pieces


def _matches(pattern: str, address: str) -> bool:
    """``AT CRA`` match: same length, ``X`` matches any digit."""
    return len(pattern) == len(address) and all(p in ("X", a) for p, a in zip(pattern, address, strict=True))
