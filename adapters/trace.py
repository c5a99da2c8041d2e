"""Traces: the raw bytes between obdtool and an ELM327, written down so that a session can be replayed.

A trace answers "what exactly did the adapter say?" after the fact: a technician's failed session is sent
in as a file, replayed through the real driver (:mod:`adapters.replay`) and turned into a test. Because
the driver is deterministic given the adapter's answers, replaying the recorded answers reproduces the
session byte for byte -- including the point where a cable was pulled.

Format (version 1)
------------------
UTF-8 text, one item per line, LF line ends::

    # obdtool-trace 1
    # adapter: sim
    # spec: sim:petrol
    # link: /dev/pts/4
    # started: 2025-11-26T09:14:03Z
    0.000000 > "ATWS\\r"
    0.000350 < "ATWS\\r\\r\\rELM327 v1.5\\r\\r>"
    2.104817 ! "the adapter link closed: cable pulled or adapter switched off? (/dev/pts/4: ...)"

* The first line is exactly ``# obdtool-trace 1``: the format's name and version. A reader refuses any
  other version instead of guessing.
* Further lines starting with ``#`` are header entries (``# key: value``) or comments; they may appear
  anywhere. The header names the ``adapter`` kind, the adapter ``spec`` as given, the ``link`` (the port
  or address the bytes went through) and the UTC time the trace ``started``. It never holds a secret;
  a trace of a real car does hold its VIN, so treat the file like a record.
* Every other non-blank line is one event: ``<seconds> <direction> "<bytes>"``.

  - ``<seconds>``: time since the trace started, with exactly six decimals, never decreasing.
  - ``<direction>``: ``>`` host to adapter (one write), ``<`` adapter to host (one chunk as it was
    read), ``!`` the link failed (the payload is the error sentence; replay raises it at the same point),
    ``~`` a link setting changed (``"baud 9600"`` during baud-rate detection).
  - ``"<bytes>"``: the bytes in double quotes. Printable ASCII stands for itself except ``"`` and ``\\``;
    ``\\r``, ``\\n``, ``\\t``, ``\\\\`` and ``\\"`` are escapes; every other byte is ``\\xhh`` (two
    lower-case hex digits). Nothing follows the closing quote.

Every event is flushed when it is written, so the trace of a session that was killed is complete up to
the kill. A trace describes one link session; if an adapter is opened again, the new link's traffic
continues the same stream after a ``# reopened:`` comment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final, Literal, cast

from adapters.errors import AdapterSpecError, LinkError
from adapters.link import Link

if TYPE_CHECKING:
    from adapters.elm327 import Elm327Adapter

__all__ = [
    "FORMAT_LINE",
    "Trace",
    "TraceEvent",
    "TraceFormatError",
    "TraceWriter",
    "TracingLink",
    "escape_bytes",
    "is_trace_file",
    "read_trace",
    "trace_elm327",
    "traced_factory",
    "unescape_bytes",
]

_log = logging.getLogger(__name__)

#: The first line of every trace file: the format's name and version.
FORMAT_LINE: Final = "# obdtool-trace 1"
_FORMAT_PREFIX: Final = "# obdtool-trace"

Direction = Literal[">", "<", "!", "~"]
_EVENT_RE: Final = re.compile(r'(\d+\.\d{6}) ([<>!~]) "(.*)"')
_ESCAPES: Final = {0x0D: "\\r", 0x0A: "\\n", 0x09: "\\t", 0x5C: "\\\\", 0x22: '\\"'}
_UNESCAPES: Final = {"r": 0x0D, "n": 0x0A, "t": 0x09, "\\": 0x5C, '"': 0x22}


class TraceFormatError(AdapterSpecError):
    """A trace file cannot be read; the message names the file and the line."""


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One line of a trace: when, which way, what bytes (or the error sentence for ``!``)."""

    seconds: float
    direction: Direction
    data: bytes


@dataclass(frozen=True, slots=True)
class Trace:
    """A whole trace file: its header entries and its events in order."""

    path: Path
    header: dict[str, str]
    events: tuple[TraceEvent, ...]

    @property
    def host_bytes(self) -> bytes:
        """Everything the host wrote, as one stream."""
        return b"".join(e.data for e in self.events if e.direction == ">")

    def host_lines(self) -> list[str]:
        """The command lines the host sent, in order (bytes up to each CR, spaces removed, upper-case)."""
        text = self.host_bytes.decode("ascii", errors="replace")
        return ["".join(line.split()).upper() for line in text.split("\r")[:-1]]


def escape_bytes(data: bytes) -> str:
    """``data`` as the quoted payload of a trace line, without the quotes (see the module docstring)."""
    out: list[str] = []
    for byte in data:
        if byte in _ESCAPES:
            out.append(_ESCAPES[byte])
        elif 0x20 <= byte <= 0x7E:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def unescape_bytes(text: str) -> bytes:
    """The bytes a trace payload stands for; the inverse of :func:`escape_bytes`.

    :raises ValueError: for a dangling or unknown escape, a bare ``"``, or a character outside
        printable ASCII.
    """
    out = bytearray()
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            code = text[index + 1 : index + 2]
            if code in _UNESCAPES:
                out.append(_UNESCAPES[code])
                index += 2
                continue
            digits = text[index + 2 : index + 4]
            if code == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", digits):
                out.append(int(digits, 16))
                index += 4
                continue
            raise ValueError(f"unknown escape {text[index : index + 4]!r}")
        if char == '"' or not " " <= char <= "~":
            raise ValueError(f"unescaped character {char!r}")
        out.append(ord(char))
        index += 1
    return bytes(out)


def is_trace_file(path: Path) -> bool:
    """Whether ``path`` starts like a trace (as opposed to, say, a terminal log).

    :raises OSError: when the file cannot be read.
    """
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    return first.startswith(_FORMAT_PREFIX)


def read_trace(path: str | os.PathLike[str]) -> Trace:
    """Read and check a trace file.

    :raises TraceFormatError: when the file is missing, unreadable, of another version, or a line is not
        a header, comment or event (the message names the line).
    """
    where = Path(path)
    try:
        text = where.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TraceFormatError(f"there is no trace file {where}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceFormatError(f"the trace file {where} cannot be read ({exc})") from exc
    lines = text.split("\n")
    if not lines or lines[0].rstrip("\r") != FORMAT_LINE:
        found = lines[0][:40] if lines else ""
        if found.startswith(_FORMAT_PREFIX):
            raise TraceFormatError(
                f"{where} is a trace of another format version ({found!r}): update obdtool"
            )
        raise TraceFormatError(f"{where} is not an obdtool trace: its first line must be {FORMAT_LINE!r}")
    header: dict[str, str] = {}
    events: list[TraceEvent] = []
    last = 0.0
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep and key.strip() and " " not in key.strip() and key.strip() not in header:
                header[key.strip()] = value.strip()
            continue
        match = _EVENT_RE.fullmatch(line)
        if match is None:
            raise TraceFormatError(
                f'{where}, line {number}: expected <seconds> <direction> "<bytes>", got {line[:60]!r}'
            )
        seconds = float(match[1])
        if seconds < last:
            raise TraceFormatError(f"{where}, line {number}: time goes backwards ({seconds} after {last})")
        last = seconds
        try:
            data = unescape_bytes(match[3])
        except ValueError as exc:
            raise TraceFormatError(f"{where}, line {number}: {exc}") from None
        events.append(TraceEvent(seconds, cast(Direction, match[2]), data))
    return Trace(where, header, tuple(events))


class TraceWriter:
    """Writes one trace file. Building one does no I/O; the file is created by :meth:`start`.

    A failure to write the trace never breaks the session with the car: the first failed write is logged
    as a warning and tracing stops. Only :meth:`start` raises, so a trace that cannot even be created is
    reported before anything is sent to the car.

    :param path: the trace file; replaced if it exists.
    :param adapter: the adapter kind for the header (``elm327``, ``sim``, ``replay``).
    :param spec: the adapter string as given, for the header.
    :param clock: the source of seconds (monotonic); injectable for tests.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        adapter: str = "elm327",
        spec: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._adapter = adapter
        self._spec = spec
        self._clock = clock
        self._handle: IO[str] | None = None
        self._start: float | None = None
        self._broken = False
        self._sessions = 0

    def start(self, link_description: str) -> None:
        """Open the file (first time: create it and write the header; later: append) for one link.

        :raises TraceFormatError: when the file cannot be created or written.
        """
        if self._handle is not None:
            self._line(f"# reopened: {link_description}")
            return
        first = self._sessions == 0
        try:
            handle = self.path.open("w" if first else "a", encoding="utf-8", newline="\n")
        except OSError as exc:
            raise TraceFormatError(
                f"cannot write the trace file {self.path} ({exc.strerror or exc})"
            ) from exc
        self._handle = handle
        self._sessions += 1
        if first:
            self._start = self._clock()
            started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            lines = [FORMAT_LINE, f"# adapter: {self._adapter}"]
            if self._spec:
                lines.append(f"# spec: {self._spec}")
            lines += [f"# link: {link_description}", f"# started: {started}"]
            for text in lines:
                self._line(text)
            if self._broken:
                raise TraceFormatError(f"cannot write the trace file {self.path}")
        else:
            self._line(f"# reopened: {link_description}")

    def host(self, data: bytes) -> None:
        """Record bytes the host wrote."""
        self._event(">", data)

    def adapter(self, data: bytes) -> None:
        """Record a chunk the adapter sent."""
        self._event("<", data)

    def failure(self, message: str) -> None:
        """Record that the link failed with ``message``."""
        self._event("!", message.encode("utf-8", errors="replace"))

    def setting(self, text: str) -> None:
        """Record a link setting change (``baud 9600``)."""
        self._event("~", text.encode("ascii", errors="replace"))

    def close(self) -> None:
        """Close the file; idempotent, never raises. A later :meth:`start` appends."""
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()

    def _event(self, direction: Direction, data: bytes) -> None:
        if self._handle is None or self._start is None:
            return
        seconds = max(0.0, self._clock() - self._start)
        self._line(f'{seconds:.6f} {direction} "{escape_bytes(data)}"')

    def _line(self, text: str) -> None:
        handle = self._handle
        if handle is None or self._broken:
            return
        try:
            handle.write(text + "\n")
            handle.flush()  # a killed process leaves a trace that is complete up to the kill
        except OSError as exc:
            self._broken = True
            _log.warning("stopped writing the trace %s: %s", self.path, exc.strerror or exc)

    def __repr__(self) -> str:
        return f"TraceWriter({str(self.path)!r})"


class TracingLink:
    """A :class:`~adapters.link.Link` that writes every byte crossing it to a :class:`TraceWriter`.

    It changes nothing on the way: the same bytes, the same errors. Baud-rate detection is passed
    through (and recorded), so wrapping a USB adapter's serial link keeps its rate detection working.

    :raises TraceFormatError: when the trace file cannot be created.
    """

    def __init__(self, link: Link, writer: TraceWriter) -> None:
        self._link = link
        self._writer = writer
        writer.start(link.description)

    @property
    def description(self) -> str:
        """The wrapped link's description."""
        return self._link.description

    @property
    def needs_baud_detection(self) -> bool:
        """Whatever the wrapped link says (False for links without a baud rate)."""
        return bool(getattr(self._link, "needs_baud_detection", False))

    def set_baudrate(self, baudrate: int) -> None:
        """Pass a rate change to the wrapped link and record it.

        :raises adapters.errors.LinkError: when the wrapped link has no baud rate or refuses it.
        """
        setter = getattr(self._link, "set_baudrate", None)
        if setter is None:
            raise LinkError(f"{self.description} has no baud rate to set")
        self._writer.setting(f"baud {baudrate}")
        setter(baudrate)

    def write(self, data: bytes) -> None:
        """Write through; record the bytes, or the failure."""
        try:
            self._link.write(data)
        except LinkError as exc:
            self._writer.failure(str(exc))
            raise
        self._writer.host(data)

    def read(self, max_wait: float) -> bytes:
        """Read through; record what arrived, or the failure."""
        try:
            chunk = self._link.read(max_wait)
        except LinkError as exc:
            self._writer.failure(str(exc))
            raise
        if chunk:
            self._writer.adapter(chunk)
        return chunk

    def close(self) -> None:
        """Close the wrapped link and the trace file. Idempotent; never raises."""
        try:
            self._link.close()
        finally:
            self._writer.close()


def traced_factory(factory: Callable[[], Link], writer: TraceWriter) -> Callable[[], Link]:
    """A link factory that wraps every link ``factory`` opens in a :class:`TracingLink`."""

    def open_traced() -> Link:
        link = factory()
        try:
            return TracingLink(link, writer)
        except BaseException:
            link.close()
            raise

    return open_traced


def trace_elm327(adapter: Elm327Adapter, writer: TraceWriter) -> None:
    """Make an ELM327 adapter (serial or TCP, not yet open) write its link traffic to ``writer``.

    The driver takes its link from a factory given at construction; wrapping that factory is the one
    place where every byte passes, so the driver itself needs no tracing code.
    """
    adapter._link_factory = traced_factory(adapter._link_factory, writer)
