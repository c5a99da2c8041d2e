"""``replay:FILE``: a recorded session plays the car, behind the real ELM327 driver.

Replay puts a :class:`~adapters.link.Link` that answers from a file under the real
:class:`~adapters.elm327.Elm327Adapter`, so every replayed byte goes through the same driver and the same
line parser (:mod:`adapters.elm_lines`) as a workshop's USB adapter. Two kinds of file are understood:

**obdtool traces** (``# obdtool-trace 1``, written by ``--trace``, format in :mod:`adapters.trace`) are
replayed *strictly* by :class:`ReplayLink`. The driver must write exactly the bytes the recording shows,
in the same order; the adapter's recorded output is handed over once the host has written everything
that preceded it in the recording; a recorded link failure (``!``) is raised again at the same point;
a recorded silence is waited out in real time (the driver's own deadlines decide, as they did live).
Anything the driver writes that the recording does not show ends the replay with an
:class:`~adapters.errors.AdapterProtocolError` naming both lines ("the replayed trace expected 'ATE0'
but the tool sent 'ATL0'"). The protocol the recording started with (``ATTP h`` or the search with
``ATSP0``) and an ``ATST`` sent at open are taken from the trace, so the driver behaves as it did then.

**Plain ELM327 terminal logs** (a ``>`` prompt and the command on one line, the adapter's answer on the
following lines, ``#`` lines are comments; as in ``fixtures/captures/ltsa11-*.txt``) were typed by a
person or another program, so the driver's own init sequence cannot match them. :class:`LogReplayLink`
replays them *tolerantly*, by these rules:

1. Reading the log: a line starting with ``>`` holds a command; the lines up to the next prompt are its
   answer (blank lines dropped). A command on the first line without a prompt, and an ``AT`` command
   line where an answer was expected (the poster cut the prompt), start an exchange too.
2. The log's state is followed as it goes: ``ATSP h``/``ATTP h`` set the protocol selection (``0`` and
   ``A h`` mean automatic search), ``ATH0``/``ATH1`` the headers, ``ATZ``/``ATWS``/``ATD`` set headers
   off again (the ELM327 default).
3. AT commands from the driver: ``ATZ``/``ATWS``/``ATI`` answer the firmware string the log shows (else
   ``ELM327 v1.5``); ``ATSP h``/``ATTP h`` answer ``OK`` and select which part of the log is served;
   ``ATDPN`` answers the number the driver selected, else the ``protocol=`` option, else the log's own
   ``ATDPN`` answer; ``ATDP`` likewise; any other AT command answers as the log answered it the first
   time, and ``OK`` when the log never shows it.
4. OBD requests (hex, a response-count digit ignored on both sides) are answered with the logged answers
   to the same request, recorded under the same protocol selection (a log that never selects one matches
   any), in the order logged; when they are used up the last one is served again (a car answers the same
   question the same way). Answers logged with headers off are skipped: the driver always reads with
   headers on and could not tell the ECUs apart. A request the log never shows answered is ``NO DATA``.

The answers are served with CR line ends and the ``>`` prompt, as an ELM327 with ``ATL0`` prints them.
``replay:FILE?strict=off`` applies these tolerant rules to a trace as well (each command line the host
sent, with what the adapter printed up to its prompt, is one exchange): a trace recorded by another
obdtool version, whose driver opened the adapter differently, still serves its car's answers.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from adapters.base import Adapter, EcuReply, LinkInfo
from adapters.errors import AdapterProtocolError, AdapterSpecError, LinkError
from adapters.link import Link
from adapters.trace import Trace, TraceWriter, escape_bytes, is_trace_file, read_trace

__all__ = [
    "LogReplayLink",
    "LoggedExchange",
    "ReplayAdapter",
    "ReplayLink",
    "TerminalLog",
    "find_replay_file",
    "log_from_trace",
    "parse_terminal_log",
    "read_terminal_log",
]

_log = logging.getLogger(__name__)

_DEFAULT_FIRMWARE: Final = "ELM327 v1.5"
_AT_LINE: Final = re.compile(r"AT[A-Z@][A-Z0-9@ ]*")
_SELECT: Final = re.compile(r"AT(?:SP|TP)(A?)([0-9A-C])")
_OBD: Final = re.compile(r"(?:[0-9A-F]{2})+[0-9A-F]?")
_SHOWN: Final = 40


def _normalise(command: str) -> str:
    """A command as the ELM327 reads it: spaces ignored, case ignored."""
    return "".join(command.split()).upper()


def _selection(command: str) -> str | None:
    """The protocol an ``ATSP``/``ATTP`` command selects (``0`` = automatic), or ``None``."""
    match = _SELECT.fullmatch(command)
    if match is None:
        return None
    auto, number = match.groups()
    return "0" if auto or number == "0" else number


def _request_key(command: str) -> str | None:
    """The hex request without a response-count digit, or ``None`` when ``command`` is not a request."""
    if not _OBD.fullmatch(command) or len(command) < 2:
        return None
    return command[:-1] if len(command) % 2 else command


def _is_command(command: str) -> bool:
    """Whether a normalised line is something an ELM327 takes: an AT command or an OBD request."""
    return bool(_AT_LINE.fullmatch(command)) or _request_key(command) is not None


def _show(data: bytes) -> str:
    """A line of host bytes for a message: up to the first CR, escaped, shortened."""
    line = data.split(b"\r", 1)[0]
    text = escape_bytes(line)
    if len(text) > _SHOWN:
        text = text[: _SHOWN - 3] + "..."
    return f"'{text}'"


def find_replay_file(name: str) -> Path:
    """``petrol`` -> the shipped ``fixtures/traces/petrol.trace``; any existing path is taken as it is.

    :raises AdapterSpecError: when neither exists.
    """
    candidate = Path(name)
    if candidate.is_file():
        return candidate
    shipped = Path(__file__).resolve().parents[1] / "fixtures" / "traces"
    for suffix in (".trace", ".log"):
        path = shipped / f"{name}{suffix}"
        if path.is_file():
            return path
    raise AdapterSpecError(
        f"there is no trace or terminal log {name!r} to replay (give a file, or one of the shipped ones: "
        f"{', '.join(sorted(p.stem for p in shipped.glob('*.trace')))})"
    )


# -- strict replay of obdtool traces ----------------------------------------------------------------------


class ReplayLink:
    """Serves a trace's recorded adapter output to a driver that must write what the trace shows.

    :param trace: the recording.
    :param sleep: how a recorded silence is waited out (injectable for tests).
    """

    def __init__(self, trace: Trace, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._trace = trace
        self._events = trace.events
        self._expected = trace.host_bytes
        self._settings = [e.data.decode("ascii", "replace") for e in trace.events if e.direction == "~"]
        self._sleep = sleep
        self._sent = 0  # host bytes written and matched so far
        self._played = 0  # host bytes covered by the '>' events played so far
        self._cursor = 0  # the next event to play
        self._out = bytearray()
        self._closed = False
        self._play()

    @property
    def description(self) -> str:
        """The link the recording went through (``/dev/pts/4``), from the trace header."""
        return self._trace.header.get("link") or "the recorded link"

    @property
    def needs_baud_detection(self) -> bool:
        """True when the recording shows baud-rate detection (``~ "baud N"`` events)."""
        return bool(self._settings)

    @property
    def finished(self) -> bool:
        """True when every recorded event has been played."""
        return self._cursor >= len(self._events) and not self._out

    def set_baudrate(self, baudrate: int) -> None:
        """Check the rate against the next one the recording shows.

        :raises adapters.errors.AdapterProtocolError: when the recording shows another rate (or none).
        """
        wanted = f"baud {baudrate}"
        expected = self._settings.pop(0) if self._settings else "no further rate change"
        if expected != wanted:
            raise AdapterProtocolError(
                f"the replayed trace expected {expected!r} but the tool asked for {wanted!r}"
            )

    def write(self, data: bytes) -> None:
        """Match ``data`` against the recording and release the adapter output that follows it.

        :raises adapters.errors.LinkError: when the recording shows the link failing here.
        :raises adapters.errors.AdapterProtocolError: when the recording shows other bytes, or ends.
        """
        self._check_open()
        failure = self._failure()
        if failure is not None:
            raise LinkError(failure)
        expected = self._expected[self._sent : self._sent + len(data)]
        if expected != data:
            ahead = self._expected[self._sent :]
            if not ahead:
                raise AdapterProtocolError(
                    f"the replayed trace ends here, but the tool sent {_show(data)}: "
                    "the recording is shorter than this session"
                )
            raise AdapterProtocolError(
                f"the replayed trace expected {_show(ahead)} but the tool sent {_show(data)}"
            )
        self._sent += len(data)
        self._play()

    def read(self, max_wait: float) -> bytes:
        """The recorded output released so far; a recorded failure; or silence for ``max_wait`` seconds.

        :raises adapters.errors.LinkError: when the recording shows the link failing here.
        :raises adapters.errors.AdapterProtocolError: when the host waits for output after the last
            recorded event (the recording was cut short, e.g. the process was killed).
        """
        self._check_open()
        if self._out:
            chunk = bytes(self._out)
            self._out.clear()
            return chunk
        failure = self._failure()
        if failure is not None:
            raise LinkError(failure)
        if max_wait > 0 and self._cursor >= len(self._events):
            raise AdapterProtocolError(
                "the replayed trace ends here, before the adapter answered: the recording was cut short"
            )
        if max_wait > 0:
            self._sleep(max_wait)
        return b""

    def close(self) -> None:
        """Stop replaying. Idempotent; never raises."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise LinkError("the replayed link is closed")

    def _failure(self) -> str | None:
        if self._cursor < len(self._events) and self._events[self._cursor].direction == "!":
            return self._events[self._cursor].data.decode("utf-8", errors="replace")
        return None

    def _play(self) -> None:
        """Release every event up to the next host write not yet made (or a recorded failure)."""
        while self._cursor < len(self._events):
            event = self._events[self._cursor]
            if event.direction == ">":
                if self._played + len(event.data) > self._sent:
                    return
                self._played += len(event.data)
            elif event.direction == "<":
                self._out += event.data
            elif event.direction == "!":
                return
            self._cursor += 1


def _protocol_hint(trace: Trace) -> str | None:
    """The protocol the recording's driver tried first (``ATTP h`` before any search), else ``None``.

    A driver with a remembered protocol starts with ``ATTP h``; without one it searches (``ATSP0``).
    Replaying with that hint makes the driver start the same way, whatever this computer remembers.
    """
    for line in trace.host_lines():
        if line == "ATSP0":
            return None
        match = re.fullmatch(r"ATTP([1-9A-C])", line)
        if match:
            return match[1]
    return None


# -- tolerant replay of terminal logs ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoggedExchange:
    """One command of a terminal log and the answer the adapter printed.

    :ivar protocol: the protocol selection in force in the log (``0`` = automatic), ``None`` = never set.
    :ivar headers: whether headers were on in the log at that point, ``None`` = unknown.
    """

    line: int
    command: str
    answer: tuple[str, ...]
    protocol: str | None
    headers: bool | None


@dataclass(frozen=True, slots=True)
class TerminalLog:
    """A terminal log read into exchanges; ``comments`` keeps its ``#`` lines (the source header)."""

    path: Path | None
    comments: tuple[str, ...]
    exchanges: tuple[LoggedExchange, ...]

    def answer_to(self, *commands: str) -> tuple[str, ...] | None:
        """The first logged answer to any of ``commands`` (normalised), echo and ``OK`` lines dropped."""
        for exchange in self.exchanges:
            if exchange.command in commands:
                lines = [
                    line.strip()
                    for line in exchange.answer
                    if _normalise(line) not in (exchange.command, "OK") and line.strip()
                ]
                return tuple(lines)
        return None


def parse_terminal_log(text: str, *, path: Path | None = None) -> TerminalLog:
    """Read a terminal log into exchanges (rules 1 and 2 of the module docstring).

    :raises AdapterSpecError: when the text holds no command at all.
    """
    comments: list[str] = []
    raw: list[tuple[int, str, list[str]]] = []
    current: tuple[int, str, list[str]] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped)
            continue
        if stripped.startswith(">"):
            command = stripped[1:].strip()
            current = (number, command, []) if command else None
            if current is not None:
                raw.append(current)
            continue
        if not stripped:
            continue
        if current is None:
            if _is_command(_normalise(stripped)):
                current = (number, stripped, [])  # a command typed before the first prompt
                raw.append(current)
            continue
        upper = _normalise(stripped)
        is_echo = not current[2] and upper == _normalise(current[1])
        if not is_echo and _AT_LINE.fullmatch(stripped.upper()):
            current = (number, stripped, [])  # the poster cut the prompt before this command
            raw.append(current)
            continue
        current[2].append(line.rstrip())
    if not any(_is_command(_normalise(command)) for _, command, _ in raw):
        where = f"{path}: " if path else ""
        raise AdapterSpecError(f"{where}no ELM327 command found: a terminal log has lines such as '>0100'")
    return TerminalLog(path, tuple(comments), _follow_state(raw))


def _follow_state(raw: list[tuple[int, str, list[str]]]) -> tuple[LoggedExchange, ...]:
    """Exchanges with the protocol selection and header state in force at each (rule 2)."""
    exchanges: list[LoggedExchange] = []
    protocol: str | None = None
    headers: bool | None = None
    for number, command, answer in raw:
        normal = _normalise(command)
        selected = _selection(normal)
        if selected is not None:
            protocol = selected
        elif normal in ("ATZ", "ATWS", "ATD"):
            headers = False
        elif normal in ("ATH0", "ATH1"):
            headers = normal == "ATH1"
        exchanges.append(LoggedExchange(number, normal, tuple(answer), protocol, headers))
    return tuple(exchanges)


def log_from_trace(trace: Trace) -> TerminalLog:
    """A trace read as a terminal log, for tolerant replay (``replay:FILE?strict=off``).

    Each command line the host sent becomes an exchange whose answer is what the adapter printed up to its
    next prompt. Recorded link failures are left out: without the recorded order they have no place. This
    lets a trace recorded by an older obdtool (whose driver opened the adapter differently) still serve
    its car's answers.
    """
    raw: list[tuple[int, str, list[str]]] = []
    line = bytearray()
    answer = bytearray()
    command: str | None = None

    def close_exchange() -> None:
        if command is not None:
            text = answer.split(b">", 1)[0].decode("ascii", errors="replace")
            lines = [part for part in re.split(r"[\r\n]+", text) if part.strip()]
            raw.append((len(raw) + 1, command, lines))

    for event in trace.events:
        if event.direction == ">":
            for byte in event.data:
                if byte == 0x0D:
                    close_exchange()
                    command, answer = line.decode("ascii", errors="replace"), bytearray()
                    line.clear()
                elif byte >= 0x20:
                    line.append(byte)
        elif event.direction == "<":
            answer += event.data
    close_exchange()
    if not raw:
        raise AdapterSpecError(f"{trace.path}: the trace holds no command to replay")
    return TerminalLog(trace.path, (), _follow_state(raw))


def read_terminal_log(path: str | Path) -> TerminalLog:
    """Read a terminal log file.

    :raises AdapterSpecError: when it cannot be read or holds no command.
    """
    where = Path(path)
    try:
        text = where.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise AdapterSpecError(f"the terminal log {where} cannot be read ({exc.strerror or exc})") from exc
    return parse_terminal_log(text, path=where)


class LogReplayLink:
    """Answers the driver from a terminal log by the tolerant rules of the module docstring.

    :param log: the parsed log.
    :param protocol: the protocol number the logged car answered on, when the log does not say.
    :param sleep: how silence is waited out (injectable for tests).
    """

    def __init__(
        self, log: TerminalLog, *, protocol: str | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        from adapters.elm327 import PROTOCOL_NAMES

        self._log = log
        self._names = PROTOCOL_NAMES
        self._protocol_option = protocol
        self._sleep = sleep
        banner = log.answer_to("ATZ", "ATWS", "ATI")
        self._firmware = banner[-1] if banner else _DEFAULT_FIRMWARE
        self._host_protocol: str | None = None
        self._served: dict[str, int] = {}
        self._line = bytearray()
        self._out = bytearray()
        self._closed = False

    @property
    def description(self) -> str:
        """The log file's name."""
        return f"terminal log {self._log.path.name}" if self._log.path else "a terminal log"

    def write(self, data: bytes) -> None:
        """Take the driver's bytes; every completed line gets its answer (see the module docstring).

        :raises adapters.errors.AdapterProtocolError: when the log cannot say which protocol answered.
        """
        self._check_open()
        for byte in data:
            if byte == 0x0D:
                command = _normalise(self._line.decode("ascii", errors="replace"))
                self._line.clear()
                lines = self._answer(command)
                self._out += b"".join(line.encode("ascii", "replace") + b"\r" for line in lines) + b"\r>"
            elif byte >= 0x20:
                self._line.append(byte)

    def read(self, max_wait: float) -> bytes:
        """What the log answered so far; silence (``max_wait`` seconds) when there is nothing."""
        self._check_open()
        if self._out:
            chunk = bytes(self._out)
            self._out.clear()
            return chunk
        if max_wait > 0:
            self._sleep(max_wait)
        return b""

    def close(self) -> None:
        """Stop replaying. Idempotent; never raises."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise LinkError("the replayed link is closed")

    def _answer(self, command: str) -> list[str]:
        if not command:
            return ["?"]
        if command in ("ATZ", "ATWS"):
            return ["", self._firmware, ""]
        if command == "ATI":
            return [self._firmware]
        selected = _selection(command)
        if selected is not None:
            self._host_protocol = selected
            return ["OK"]
        if command == "ATDPN":
            return [self._protocol_number()]
        if command == "ATDP":
            logged = self._log.answer_to("ATDP")
            if self._host_protocol in (None, "0") and self._protocol_option is None and logged:
                return list(logged)
            name = self._names.get(self._protocol_number().removeprefix("A"), "AUTO")
            return [f"AUTO, {name}" if self._host_protocol == "0" else name]
        if command.startswith("AT"):
            logged = self._log.answer_to(command)
            if logged is None:
                return ["OK"]
            return list(logged) or ["OK"]
        key = _request_key(command)
        if key is None:
            return ["?"]
        return self._obd(key)

    def _protocol_number(self) -> str:
        host = self._host_protocol
        if host is not None and host != "0":
            return host
        if self._protocol_option is not None:
            return f"A{self._protocol_option}"
        logged = self._log.answer_to("ATDPN")
        if logged:
            return logged[0]
        raise AdapterProtocolError(
            f"the replayed {self.description} does not say which protocol the car answered on "
            "(no ATDPN in it): replay it with replay:FILE?protocol=6 (or the right number)"
        )

    def _obd(self, key: str) -> list[str]:
        host = self._host_protocol
        candidates = [
            exchange
            for exchange in self._log.exchanges
            if _request_key(exchange.command) == key
            and exchange.headers is not False
            and (exchange.protocol is None or host is None or exchange.protocol == host)
        ]
        if not candidates:
            _log.debug("the log shows no answer to %s (protocol %s): NO DATA", key, host)
            return ["NO DATA"]
        slot = f"{host}|{key}"
        index = self._served.get(slot, 0)
        self._served[slot] = index + 1
        chosen = candidates[min(index, len(candidates) - 1)]
        _log.debug("answering %s with line %d of the log", key, chosen.line)
        return [line for line in chosen.answer if line.strip()] or ["NO DATA"]


# -- the adapter ------------------------------------------------------------------------------------------


class ReplayAdapter(Adapter):
    """Plays a trace or a terminal log back as if it were the car, through the real ELM327 driver.

    Loading the file happens here (a local file, like a scenario), so a missing or malformed file is
    reported before anything else; the replay itself starts at :meth:`open`.

    :param path: a trace (``.trace``), a terminal log, or the name of a shipped one (``petrol``).
    :param options: ``strict=off`` replays a trace by the tolerant rules of terminal logs (for a trace
        recorded by another obdtool version); ``protocol=h``: the protocol the logged car answered on,
        for a log that does not say.
    :raises AdapterSpecError: for a missing or malformed file or an unknown option.
    """

    def __init__(self, path: str, /, **options: str) -> None:
        super().__init__()
        known = {"protocol", "strict"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise AdapterSpecError(
                f"unknown replay option(s): {', '.join(unknown)} (known: strict=on|off, protocol=1..9,A..C)"
            )
        if not path:
            raise AdapterSpecError("replay: needs a file, e.g. replay:fixtures/traces/petrol.trace")
        self.path = find_replay_file(path)
        protocol = options.get("protocol")
        if protocol is not None:
            protocol = protocol.strip().upper()
            if protocol not in [str(n) for n in range(1, 10)] + ["A", "B", "C"]:
                raise AdapterSpecError(
                    f"replay option protocol={protocol!r}: use an ELM327 number 1..9, A..C"
                )
        strict_option = options.get("strict", "on").strip().lower()
        if strict_option not in ("on", "off", "1", "0", "yes", "no", "true", "false"):
            raise AdapterSpecError(f"replay option strict={strict_option!r}: use on or off")
        try:
            is_trace = is_trace_file(self.path)
        except OSError as exc:
            raise AdapterSpecError(f"{self.path} cannot be read ({exc.strerror or exc})") from exc
        strict = is_trace and strict_option in ("on", "1", "yes", "true")
        if strict and protocol is not None:
            raise AdapterSpecError(
                "replay option protocol= needs strict=off: a strict replay follows the trace"
            )
        self.trace: Trace | None = read_trace(self.path) if is_trace else None
        self.log: TerminalLog | None = None
        if not strict:
            self.log = log_from_trace(self.trace) if self.trace is not None else read_terminal_log(self.path)
        self._strict = strict
        self._protocol_option = protocol
        self._writer: TraceWriter | None = None
        self._inner: Adapter | None = None
        self.link: ReplayLink | LogReplayLink | None = None

    def trace_to(self, writer: TraceWriter) -> None:
        """Write the replayed traffic to ``writer`` too (a trace of a replay replays the same)."""
        self._writer = writer

    def _open_link(self) -> Link:
        link: ReplayLink | LogReplayLink
        if self._strict and self.trace is not None:
            link = ReplayLink(self.trace)
        else:
            assert self.log is not None
            link = LogReplayLink(self.log, protocol=self._protocol_option)
        self.link = link
        if self._writer is not None:
            from adapters.trace import TracingLink

            return TracingLink(link, self._writer)
        return link

    def open(self) -> LinkInfo:
        """Start the replay: the real driver opens the recorded adapter. Idempotent.

        :raises adapters.errors.AdapterError: whatever the recording makes the driver raise.
        """
        if self._inner is not None and self._info is not None:
            return self._info
        from adapters.elm327 import Elm327Adapter

        hint = _protocol_hint(self.trace) if self._strict and self.trace is not None else None
        inner = Elm327Adapter(self._open_link, protocol_hint=hint)
        inner.stats = self.stats
        self._inner = inner
        try:
            found = inner.open()
        except BaseException:
            self.close()
            raise
        # Everything the driver found (protocol, probe answers ...) is passed on, as the recording's
        # adapter did, so the read-out asks what it asked then.
        self._info = replace(
            found, kind="replay", description=f"replay of {self.path.name}: {found.description}"
        )
        return self._info

    def request(
        self, data: bytes, *, ecu: str | None = None, expect: int | None = None, timeout: float | None = None
    ) -> list[EcuReply]:
        """Through the real driver, answered from the file."""
        if self._inner is None:
            raise LinkError("the replay is not open")
        return self._inner.request(data, ecu=ecu, expect=expect, timeout=timeout)

    def close(self) -> None:
        """Close the driver and the replayed link. Idempotent; never raises."""
        inner, self._inner = self._inner, None
        self._info = None
        if inner is not None:
            inner.close()
