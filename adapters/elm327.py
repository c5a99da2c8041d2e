"""ELM327 (and compatible) adapters over serial, Bluetooth or WiFi.

The driver turns service bytes into ELM327 commands, waits for the ``>`` prompt and hands the printed
text to the pure reader in :mod:`adapters.elm_lines`. It never sleeps for a fixed time: every wait ends
when the prompt arrives, and the deadlines only matter when the adapter stays silent.

Opening (see :meth:`Elm327Adapter.open`):

1. On a real UART with no rate given, find the baud rate: ``ATI`` at 38400, 9600, 115200, 230400,
   57600, 19200 baud, 0.2 s each, until a prompt comes back in readable text.
2. Every setting a previous program may have left behind (echo, headers, spaces, receive filters,
   masks, the transmit header, CAN formatting, timers, the selected protocol) goes back to its
   default, see :meth:`Elm327Adapter._reset`. ``ATD`` ("set all to defaults") does exactly that and
   answers ``OK`` at once; ``ATI`` then names the firmware. A warm start (``ATWS``, ``ATZ`` if the
   clone does not know it) resets the same settings but restarts the chip, which takes up to a second
   on a genuine ELM327 (``ATZ`` adds the LED test): it is kept for an adapter that does not answer
   ``ATD`` with ``OK`` -- one that does not know it, or one so confused that only a restart helps. A
   bare CR is never sent to wake the adapter: an ELM327 repeats its last command on an empty line,
   and that last command may have been ``04`` (clear fault memory). If the adapter was busy, the
   first character of our command stops it (``STOPPED``); the rest of the line is then answered on
   its own, and that second prompt is read too, so no stale prompt is left behind.
3. ``ATE0`` (no echo), ``ATL0`` (CR only), ``ATS0`` (no spaces: a third fewer bytes on slow links),
   ``ATH1`` (headers: needed to tell ECUs apart and to reassemble ISO-TP per ECU), ``ATAT1`` (adaptive
   timing, normal: ``ATAT2`` saves a little time but drops late answers of slow ECUs), ``ATCAF1`` (the
   adapter adds/strips ISO-TP PCI and sends flow control), ``ATST hh`` when ``st_ms`` is given.
4. The protocol, see :meth:`Elm327Adapter._find_protocol`: the remembered (or hinted) protocol is tried
   with ``ATTP h``; if ``0100`` gets no answer, ``ATSP0`` and the adapter's own search; if that fails
   too, ``ATTP h`` for 6, 8, 7, 9, 1, 2, 3, 4, 5. After a search ``ATDPN`` names the protocol found
   (after ``ATTP h`` it can only say ``h``); it is remembered for the next connect. The answers to the
   ``0100`` that proved the protocol are kept (:attr:`adapters.base.LinkInfo.probe_replies`), so the
   read-out does not ask it again.

On CAN the NO DATA timer is set to 100 ms (``ATST19``) unless ``st_ms`` says otherwise. ISO 15765-4
gives an OBD ECU 50 ms (P2CAN) to answer or to say "response pending"; the ELM327's default of 200 ms
is four times that, and the adapter waits that long after the last answer of every request whose
answer count it was not told (adaptive timing shortens the wait only once it has measured the car).

``ATSP h`` is not used for the remembered protocol: it writes the adapter's EEPROM on every connect and
disables the fallback search, so the adapter would refuse a different car. ``ATTP h`` selects the
protocol for this session only, and the driver falls back to the search itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from adapters.base import Adapter, EcuReply, LinkInfo
from adapters.elm_lines import (
    LegacyChecksum,
    decode_response,
    parse_at_reply,
    split_status,
)
from adapters.errors import (
    AdapterError,
    AdapterProtocolError,
    AdapterSpecError,
    AdapterStatusError,
    AdapterUnavailableError,
    CommandRejectedError,
    FramingError,
    LinkError,
    LinkTimeoutError,
    UnableToConnectError,
)
from adapters.link import BaudRateLink, Link, SerialLink, TcpLink
from adapters.protocols import CAN_29BIT_PROTOCOLS, PROTOCOL_NAMES

__all__ = [
    "BAUD_RATES",
    "PROTOCOL_NAMES",
    "SEARCH_ORDER",
    "Elm327Adapter",
    "ProtocolMemory",
    "open_elm327",
]

_log = logging.getLogger(__name__)

_CAN_29 = CAN_29BIT_PROTOCOLS
_CAN = frozenset("6789ABC")
_J1850 = frozenset("12")

#: Protocols tried one by one when the adapter's own search fails: CAN first (every car since 2008 in
#: the EU, 2008 in the US), then J1850 and the K-line protocols, whose slow inits come last.
SEARCH_ORDER: tuple[str, ...] = ("6", "8", "7", "9", "1", "2", "3", "4", "5")

#: Baud rates tried on a real UART, most common first (38400 is the ELM327 power-on default).
BAUD_RATES: tuple[int, ...] = (38400, 9600, 115200, 230400, 57600, 19200)

_FUNCTIONAL_11 = "7DF"
# 29-bit headers are set as the low three bytes; the priority byte (AT CP) stays at its default 18.
# The three-byte ATSH works on every ELM327 version, the four-byte form only on newer ones.
_FUNCTIONAL_29 = "DB33F1"

_BAUD_PROBE_WAIT = 0.2  # per rate: an ELM327 answers ATI within milliseconds
_RESET_WAIT = 1.5  # ATZ on a genuine ELM327 takes about a second (LED test); ATWS is quicker
_AT_WAIT = 1.0
_PROBE_WAIT = 10.0  # one protocol: a 5-baud K-line init alone takes about 3 s
_SEARCH_WAIT = 30.0  # the adapter's own search through every protocol
_STREAM_LIMIT = 30.0  # seconds an adapter may keep printing without reaching its prompt
_ANSWER_LIMIT = 64 * 1024  # bytes; far above the longest ISO-TP answer (4095 bytes, about 12 kB printed)
_DEFAULT_ST = 0x32  # the ELM327's default NO DATA timer, in 4 ms steps
_CAN_ST = 0x19  # 100 ms: twice the 50 ms an OBD ECU on CAN has to answer (ISO 15765-4 P2CAN)
_PROBE = b"\x01\x00"


class ProtocolMemory:
    """Which protocol each adapter found last time, in a small JSON file.

    Keyed by the link and the adapter's firmware string, so a technician who plugs the same adapter into
    the same kind of car skips the protocol search. The file is only a speed-up: a missing, unreadable
    or corrupt file is ignored (and overwritten by the next :meth:`put`), and a failed write is logged,
    never raised.

    :param path: the JSON file; the CLI passes one under the user cache directory.
    """

    _VERSION = 1

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)

    @property
    def path(self) -> Path:
        """The backing file."""
        return self._path

    def _load(self) -> dict[str, str]:
        try:
            text = self._path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            _log.debug("ignoring unreadable protocol memory %s: %s", self._path, exc)
            return {}
        try:
            document = json.loads(text)
        except ValueError as exc:
            _log.debug("ignoring corrupt protocol memory %s: %s", self._path, exc)
            return {}
        entries = document.get("protocols") if isinstance(document, dict) else None
        if not isinstance(entries, dict):
            _log.debug("ignoring protocol memory %s: no 'protocols' table", self._path)
            return {}
        valid = {
            key: value for key, value in entries.items() if isinstance(value, str) and value in PROTOCOL_NAMES
        }
        if len(valid) != len(entries):
            _log.debug(
                "ignoring %d invalid entries in protocol memory %s", len(entries) - len(valid), self._path
            )
        return valid

    def get(self, key: str) -> str | None:
        """The protocol number remembered for ``key``, or ``None``."""
        return self._load().get(key)

    def put(self, key: str, protocol_id: str) -> None:
        """Remember ``protocol_id`` for ``key`` (atomically: a crash leaves the old file or the new one).

        :raises adapters.errors.AdapterSpecError: when ``protocol_id`` is not an ELM327 protocol number.
        """
        if protocol_id not in PROTOCOL_NAMES:
            raise AdapterSpecError(f"not an ELM327 protocol number: {protocol_id!r}")
        entries = self._load()
        if entries.get(key) == protocol_id:
            return
        entries[key] = protocol_id
        text = json.dumps({"version": self._VERSION, "protocols": entries}, indent=2, sort_keys=True)
        temporary = self._path.with_name(f"{self._path.name}.{os.getpid()}.tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(text + "\n", encoding="utf-8")
            os.replace(temporary, self._path)
        except OSError as exc:
            _log.warning("cannot remember the OBD protocol in %s: %s", self._path, exc)
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)


def _supports_count_digit(firmware: str) -> bool:
    """The response-count digit exists since ELM327 v1.3; clones claiming 1.5 usually honour it."""
    match = re.search(r"v(\d+)\.(\d+)", firmware, re.IGNORECASE)
    return match is not None and (int(match[1]), int(match[2])) >= (1, 3)


def _identity(text: str, command: str) -> str:
    """The firmware string in a reset's output: the last readable line that is not echo or status.

    A ``?`` anywhere means the reset itself was not understood (it was glued to a partial line, or cut
    by an interrupt); whatever else the text holds is then echo of that garbled line, not an identity.
    """
    echo = command.upper()
    found = ""
    for raw in re.split(r"[\r\n]+", text):
        line = raw.strip().replace("\x00", "")
        if not line or not all(" " <= ch <= "~" for ch in line):
            continue
        words = "".join(line.split()).upper()
        if words == "?":
            return ""
        if words in (echo, "OK", "STOPPED"):
            continue
        found = line
    return found


def _elm_like(text: str) -> bool:
    """Whether text before a prompt looks like ELM327 output rather than line noise at a wrong rate."""
    return (
        bool(text.strip())
        and text[-1:] in ("\r", "\n")
        and all(" " <= ch <= "~" or ch in "\r\n" for ch in text.replace("\x00", ""))
    )


class Elm327Adapter(Adapter):
    """An ELM327 or compatible (OBDLink, vLinker, clones) behind any :class:`~adapters.link.Link`.

    Not thread-safe: one request at a time, as the adapter itself works.

    :param link_factory: returns an *open* link; called by :meth:`open`, so building the adapter does no
        I/O. E.g. ``SerialLink("/dev/ttyUSB0").open``.
    :param protocol_hint: an ELM327 protocol number to try first (``"6"``); ``"0"`` = skip the memory
        and search. A hint that does not answer falls back like a remembered protocol.
    :param remember: where the found protocol is kept for the next connect.
    :param st_ms: the adapter's NO DATA timer (``ATST``) in ms, 4..1020; ``None`` = 100 ms on CAN, the
        adapter's own default (200 ms) on K-line and J1850 (see the module docstring).
    :param default_timeout: seconds to wait for the first answer when ``request`` gets ``timeout=None``.
    :param link_margin: extra seconds for the link (Bluetooth and WiFi add latency); the adapter counts
        as silent only after the timeout plus this margin has passed without any byte arriving.
    """

    def __init__(
        self,
        link_factory: Callable[[], Link],
        *,
        protocol_hint: str | None = None,
        remember: ProtocolMemory | None = None,
        st_ms: int | None = None,
        default_timeout: float = 2.0,
        link_margin: float = 1.0,
    ) -> None:
        super().__init__()
        if protocol_hint is not None:
            protocol_hint = protocol_hint.strip().upper()
            if protocol_hint != "0" and protocol_hint not in PROTOCOL_NAMES:
                raise AdapterSpecError(
                    f"unknown ELM327 protocol {protocol_hint!r}: use 0 (search) or 1..9, A..C"
                )
        if st_ms is not None and not 4 <= st_ms <= 1020:
            raise AdapterSpecError(f"the ELM327 timer takes 4..1020 ms, not {st_ms}")
        if default_timeout <= 0 or link_margin <= 0:
            raise AdapterSpecError("timeouts must be positive")
        self._link_factory = link_factory
        self._protocol_hint = protocol_hint
        self._remember = remember
        self._base_st = None if st_ms is None else math.ceil(st_ms / 4)
        self._default_timeout = default_timeout
        self._margin = link_margin
        self._link: Link | None = None
        self._rx = bytearray()
        self._firmware = ""
        self._protocol = ""
        self._count_digit = False
        self._tx_header: str | None = None  # None = the adapter's default, the functional address
        self._rx_filter: str | None = None  # None = no receive filter
        self._st: int | None = None  # None = the adapter's default timer
        self._link_st: int | None = self._base_st  # the timer for requests that name no timeout
        self._probe_text = ""
        self._needs_setup = False
        self._needs_resync = False

    # ------------------------------------------------------------------ contract

    def open(self) -> LinkInfo:
        """Reach the adapter, configure it and find the car's protocol (see the module docstring).

        Idempotent: an open adapter returns what it found before.

        :raises adapters.errors.AdapterUnavailableError: when the port cannot be opened or nothing answers.
        :raises adapters.errors.UnableToConnectError: when no protocol reaches the car.
        :raises adapters.errors.AdapterError: for any other failure on the way; the link is closed then.
        """
        if self._link is not None and self._info is not None:
            return self._info
        try:
            link = self._link_factory()
        except AdapterError:
            raise
        except OSError as exc:
            raise AdapterUnavailableError(f"cannot open the adapter link: {exc}") from exc
        self._link = link
        self._rx.clear()
        self._needs_setup = self._needs_resync = False
        try:
            if isinstance(link, BaudRateLink) and link.needs_baud_detection:
                self._detect_baudrate(link)
            self._firmware = self._reset()
            self._count_digit = _supports_count_digit(self._firmware)
            self._configure()
            protocol_id = self._find_protocol()
        except BaseException:
            self.close()
            raise
        self._protocol = protocol_id
        if self._remember is not None:
            self._remember.put(self._memory_key(), protocol_id)
        self._info = LinkInfo(
            kind="elm327",
            description=f"{self._firmware} on {link.description}",
            protocol=PROTOCOL_NAMES[protocol_id],
            protocol_id=protocol_id,
            is_can=protocol_id in _CAN,
            probe_replies=self._probe_replies(protocol_id),
        )
        _log.debug("connected: %s", self._info)
        return self._info

    def close(self) -> None:
        """Close the link. Idempotent; never raises."""
        link, self._link = self._link, None
        self._info = None
        self._rx.clear()
        if link is None:
            return
        try:
            link.close()
        except Exception as exc:  # closing must never fail the caller
            _log.debug("closing %s failed: %s", link.description, exc)

    def request(
        self,
        data: bytes,
        *,
        ecu: str | None = None,
        expect: int | None = None,
        timeout: float | None = None,
    ) -> list[EcuReply]:
        """Send ``data`` to the car and return the answers (see :meth:`adapters.base.Adapter.request`).

        ``ecu`` switches to physical addressing on CAN (``ATSH``/``ATCRA``, sent only when they change).
        ``expect`` between 1 and 15 is sent as the ELM327 response-count digit when the firmware knows
        it, so the adapter returns as soon as that many frames are in. ``timeout`` sets the adapter's
        NO DATA timer (``ATST``, at most 1.02 s) when it changes.

        :raises adapters.errors.AdapterSpecError: for a request the adapter cannot send (empty, longer
            than 7 bytes, physical addressing off CAN, an ECU address it cannot derive a request ID for).
        :raises adapters.errors.LinkTimeoutError: when no prompt came within the timeout plus the link
            margin (the adapter is stopped and left usable), or when an ECU said "response pending" and
            its answer never came.
        :raises adapters.errors.LinkError: when the link broke.
        :raises adapters.errors.AdapterStatusError: for a bus failure the adapter reported in words.
        :raises adapters.errors.FramingError: when a multi-frame answer is broken, or was cut short by
            the response count (``expect`` lower than the frames that came, an ECU's "response
            pending" counted as its answer).
        :raises adapters.errors.AdapterProtocolError: when the answer cannot be read.
        """
        self._require_open()
        if not data:
            raise AdapterSpecError("a request needs at least a service id")
        if len(data) > 7:
            raise AdapterSpecError(f"the ELM327 sends at most 7 bytes per request, not {len(data)}")
        if timeout is not None and timeout <= 0:
            raise AdapterSpecError("the timeout must be positive")
        if self._needs_resync:
            if not self._recover():
                raise LinkTimeoutError("the adapter is not answering any more: unplug it and connect again")
            self._needs_resync = False
        if self._needs_setup:
            self._configure()
            self._at(f"ATTP{self._protocol}")
            self._needs_setup = False
        self._address(ecu)
        self._set_timer(timeout)
        command = data.hex().upper()
        if expect is not None and 1 <= expect <= 15 and self._count_digit:
            command += f"{expect:X}"
        self.stats.count_request(data)
        timer = (self._st or _DEFAULT_ST) * 0.004
        text = self._exchange(command, max(timeout or self._default_timeout, timer) + self._margin)
        protocol = self._protocol
        checksum: LegacyChecksum = "crc8" if protocol in _J1850 else "sum"
        try:
            response = decode_response(
                text,
                request=data,
                can=protocol in _CAN,
                id_bits=29 if protocol in _CAN_29 else 11,
                headers=True,
                legacy_checksum=checksum,
            )
        except AdapterStatusError as exc:
            if exc.status == "LV RESET":
                self._needs_setup = True
            raise
        except AdapterProtocolError:
            if "ELM327" in text.upper():  # the adapter rebooted (power dip) and printed its banner
                self._needs_setup = True
            raise
        for reply in response.ignored:
            _log.debug("ignoring %s from %s: not an answer to %s", reply.data.hex(" "), reply.ecu, command)
        if response.pending:
            waiting = ", ".join(response.pending)
            if command != data.hex().upper():
                # The count digit may have counted the "response pending" line as an answer and ended
                # the request before the real one: a count too low, which the caller repairs.
                raise FramingError(
                    f"ECU {waiting} said 'response pending' to {command} and the response count was met "
                    "before its answer came"
                )
            if not response.replies:
                raise LinkTimeoutError(
                    f"ECU {waiting} said 'response pending' to {command}, but its answer did not arrive "
                    "before the adapter gave up"
                )
            _log.warning("ECU %s said 'response pending' to %s but never answered", waiting, command)
        return list(response.replies)

    # ------------------------------------------------------------------ opening

    def _memory_key(self) -> str:
        link = self._require_open()
        return f"{link.description}|{self._firmware}"

    def _detect_baudrate(self, link: BaudRateLink) -> None:
        """Find the rate the adapter talks at: a prompt in readable text within 0.2 s."""
        for rate in BAUD_RATES:
            link.set_baudrate(rate)
            self._rx.clear()
            self._send("ATI")
            text = self._read_prompt(_BAUD_PROBE_WAIT, extend=False)
            if text is not None and _elm_like(text):
                if "STOPPED" in text.upper():  # the probe interrupted a busy adapter; its rest answers too
                    self._read_prompt(self._margin)
                _log.debug("%s answers at %d baud", link.description, rate)
                return
        rates = ", ".join(str(rate) for rate in BAUD_RATES)
        raise AdapterUnavailableError(
            f"no ELM327 answered on {link.description} at {rates} baud: is it plugged into the car "
            "(that powers it) and is this the right port?"
        )

    def _reset(self) -> str:
        """Put every setting back to its default and return the firmware string (``ELM327 v1.5``).

        ``ATD`` is tried first: the ELM327 documents it as restoring the options to their power-on
        defaults -- echo, headers, spaces, linefeeds, the transmit header, receive filters and masks,
        every timer, the stored protocol (closing the one in use) -- which is all a previous program
        can have changed that matters here, and it answers ``OK`` at once. A warm start resets the same
        settings by restarting the chip and costs up to a second, so it is only the fallback: for an
        adapter that answers ``ATD`` with anything but ``OK`` (a clone that does not know it, input
        garbled by a half-written line) or whose ``ATI`` names nothing.
        """
        link = self._require_open()
        for _ in range(2):
            self._send("ATD")
            text = self._read_prompt(_AT_WAIT + self._margin)
            if text is None:
                raise AdapterUnavailableError(
                    f"no ELM327 answered on {link.description}: is it plugged into the car (that powers it), "
                    "switched on, and is this the right port?"
                )
            if "STOPPED" in text.upper():
                # ATD interrupted a busy adapter; the rest of the line ("TD") gets its own answer.
                self._read_prompt(_AT_WAIT + self._margin)
                continue
            try:
                defaults = parse_at_reply(text, "ATD") == ["OK"]
            except AdapterError:  # "?" or unreadable: not an adapter that knows ATD
                defaults = False
            if not defaults:
                break
            self._send("ATI")
            firmware = _identity(self._read_prompt(_AT_WAIT + self._margin) or "", "ATI")
            if firmware:
                _log.debug("adapter identifies as %r", firmware)
                return firmware
            break
        _log.debug("ATD did not bring %s to its defaults; restarting it", link.description)
        return self._warm_start()

    def _warm_start(self) -> str:
        """Restart the adapter (``ATWS``, ``ATZ``) and return its firmware string from the banner."""
        link = self._require_open()
        last = ""
        for command in ("ATWS", "ATWS", "ATZ"):
            self._send(command)
            text = self._read_prompt(_RESET_WAIT + self._margin)
            if text is None:
                raise AdapterUnavailableError(
                    f"no ELM327 answered on {link.description}: is it plugged into the car (that powers it), "
                    "switched on, and is this the right port?"
                )
            if "STOPPED" in text.upper():
                # Our command interrupted a busy adapter; the rest of the line gets its own answer.
                rest = self._read_prompt(_RESET_WAIT + self._margin)
                text = rest if rest is not None else text
            firmware = _identity(text, command)
            if firmware:
                _log.debug("adapter identifies as %r", firmware)
                return firmware
            last = text
        raise AdapterProtocolError(
            f"the device on {link.description} does not answer like an ELM327 "
            f"(last answer {last.strip()[:40]!r})"
        )

    def _configure(self) -> None:
        """Put the adapter into the state the reader expects (see the module docstring, step 3)."""
        self._at("ATE0")
        self._at("ATL0", optional=True)
        self._at("ATS0", optional=True)
        self._at("ATH1")
        self._at("ATAT1", optional=True)
        self._at("ATCAF1", optional=True)
        if self._base_st is not None:
            self._at(f"ATST{self._base_st:02X}", optional=True)
        self._tx_header = None
        self._rx_filter = None
        self._st = self._base_st

    def _find_protocol(self) -> str:
        """Select the car's protocol, fastest path first; return its number.

        1. The hint, else the remembered protocol: ``ATTP h`` + ``0100``. On success no search runs, and
           nothing needs to be asked about the result: after ``ATTP h`` the adapter speaks ``h``.
        2. ``ATSP0`` + ``0100``: the adapter's own search (does not write its EEPROM); ``ATDPN`` names
           what it found.
        3. ``ATTP h`` + ``0100`` for each of :data:`SEARCH_ORDER` not tried yet: some clones' searches
           miss protocols that answer when selected directly.

        ``UNABLE TO CONNECT``, ``BUS INIT: ...ERROR``, ``CAN ERROR``, ``NO DATA`` and other status words
        all mean "not this protocol" here; a silent adapter or a broken link ends the search at once.
        """
        tried: set[str] = set()
        first = self._protocol_hint
        if first is None and self._remember is not None:
            first = self._remember.get(self._memory_key())
        if first is not None and first != "0":
            self._use_timer_for(first)
            self._at(f"ATTP{first}")
            if self._probe(_PROBE_WAIT):
                return first
            tried.add(first)
            _log.debug("protocol %s did not answer; searching", first)
        self._use_timer_for(None)
        self._at("ATSP0")
        if self._probe(_SEARCH_WAIT):
            protocol = self._describe_protocol()
            self._use_timer_for(protocol)
            return protocol
        for protocol in SEARCH_ORDER:
            if protocol in tried:
                continue
            self._use_timer_for(protocol)
            self._at(f"ATTP{protocol}")
            if self._probe(_PROBE_WAIT):
                return protocol
        raise UnableToConnectError(
            "no OBD protocol answered (automatic search, then protocols 6, 8, 7, 9, 1-5 one by one): "
            "is the ignition on?",
            status="UNABLE TO CONNECT",
        )

    def _use_timer_for(self, protocol: str | None) -> None:
        """Choose the NO DATA timer for ``protocol`` (``None``: for a search) and set it if it changed.

        ``st_ms`` always wins. Otherwise 100 ms on CAN (see the module docstring) and also for the
        search, because the ELM327 enforces its own minimum while it searches and most cars it finds
        are CAN; on K-line and J1850, where answers may take longer, the adapter's own default.
        """
        if self._base_st is None:
            self._link_st = _CAN_ST if protocol is None or protocol in _CAN else None
        self._set_timer(None)

    def _probe(self, wait: float) -> bool:
        """Send ``0100`` (every OBD ECU must answer it) and tell whether anything answered."""
        self.stats.count_request(_PROBE)
        text = self._exchange("0100", wait)
        self._probe_text = ""
        try:
            answered = bool(split_status(text, echo={"0100"}))
        except AdapterStatusError as exc:
            _log.debug("0100 probe: %s", exc.status)
            return False
        except AdapterProtocolError as exc:
            # Something other than a status answered: the bus is up, even if this answer is odd.
            _log.debug("0100 probe answered unreadably: %s", exc)
            return True
        self._probe_text = text
        return answered

    def _probe_replies(self, protocol: str) -> tuple[EcuReply, ...]:
        """The ECUs' answers to the ``0100`` that proved ``protocol``; empty when they cannot be read."""
        try:
            response = decode_response(
                self._probe_text,
                request=_PROBE,
                can=protocol in _CAN,
                id_bits=29 if protocol in _CAN_29 else 11,
                headers=True,
                legacy_checksum="crc8" if protocol in _J1850 else "sum",
            )
        except AdapterError as exc:
            _log.debug("not keeping the 0100 probe's answers: %s", exc)
            return ()
        return response.replies

    def _describe_protocol(self) -> str:
        """``ATDPN`` after a search: ``A6`` = found by search, ``6`` = selected."""
        lines = self._at("ATDPN")
        raw = lines[0].strip().upper() if lines else ""
        protocol = raw[1:] if len(raw) == 2 and raw.startswith("A") else raw
        if protocol not in PROTOCOL_NAMES:
            raise AdapterProtocolError(f"the adapter reports an unknown protocol {raw!r}")
        return protocol

    # ------------------------------------------------------------------ requests

    def _require_open(self) -> Link:
        if self._link is None:
            raise LinkError("the adapter is not open")
        return self._link

    def _address(self, ecu: str | None) -> None:
        """Switch between functional and physical addressing, sending only what changed."""
        header: str | None = None
        receive: str | None = None
        protocol = self._protocol
        if ecu is not None:
            if protocol not in _CAN:
                raise AdapterSpecError(
                    "physical addressing not supported on K-line or J1850 (yet): leave ecu unset"
                )
            address = ecu.strip().upper()
            if protocol in _CAN_29:
                match = re.fullmatch(r"18DAF1([0-9A-F]{2})", address)
                if match is None:
                    raise AdapterSpecError(f"{ecu!r} is not a 29-bit OBD answer address (18DAF1xx)")
                header, receive = f"DA{match[1]}F1", address
            else:
                if not re.fullmatch(r"[0-7][0-9A-F]{2}", address) or int(address, 16) < 8:
                    raise AdapterSpecError(f"{ecu!r} is not an 11-bit answer address such as 7E8")
                header, receive = f"{int(address, 16) - 8:03X}", address
        if header != self._tx_header:
            functional = _FUNCTIONAL_29 if protocol in _CAN_29 else _FUNCTIONAL_11
            self._at(f"ATSH{header or functional}")
            self._tx_header = header
        if receive != self._rx_filter:
            if receive is not None:
                self._at(f"ATCRA{receive}")
            else:
                try:
                    self._at("ATCRA")
                except CommandRejectedError:  # before v1.4b the filter is reset with AT AR
                    self._at("ATAR")
            self._rx_filter = receive

    def _set_timer(self, timeout: float | None) -> None:
        """Map ``timeout`` onto the adapter's NO DATA timer (4 ms steps, at most 1.02 s)."""
        wanted = self._link_st if timeout is None else min(0xFF, max(1, math.ceil(timeout * 1000 / 4)))
        if wanted != self._st:
            self._at(f"ATST{wanted or 0:02X}")  # ATST00 restores the adapter's default
            self._st = wanted

    # ------------------------------------------------------------------ the wire

    def _discard_stale(self) -> None:
        """Drop output nobody asked for (a late answer after a timeout) before a new command."""
        link = self._require_open()
        fresh = link.read(0)
        self.stats.bytes_in += len(fresh)
        stale = bytes(self._rx) + fresh
        self._rx.clear()
        if stale:
            _log.debug("%s discarding stale output %r", link.description, stale)

    def _write(self, data: bytes) -> None:
        link = self._require_open()
        _log.debug("%s <- %r", link.description, data)
        link.write(data)
        self.stats.bytes_out += len(data)

    def _send(self, command: str) -> None:
        """Send one command line. Never an empty one: the adapter would repeat its last command."""
        if not command.strip():
            raise AdapterSpecError("refusing to send an empty line: the ELM327 would repeat its last command")
        self._discard_stale()
        self._write(command.encode("ascii") + b"\r")

    def _read_prompt(self, wait: float, *, extend: bool = True) -> str | None:
        """Collect output up to the ``>`` prompt; ``None`` when it did not come in time.

        With ``extend`` every arriving chunk moves the deadline to at least one link margin ahead, so a
        long answer on a slow link is not cut off; a runaway adapter is still stopped after 30 s.
        """
        link = self._require_open()
        start = time.monotonic()
        deadline = start + wait
        limit = start + wait + _STREAM_LIMIT
        while True:
            end = self._rx.find(b">")
            if end >= 0:
                text = bytes(self._rx[:end]).decode("ascii", errors="replace")
                del self._rx[: end + 1]
                return text
            if len(self._rx) > _ANSWER_LIMIT:
                self._rx.clear()
                raise AdapterProtocolError("the adapter kept printing without returning to its prompt")
            now = time.monotonic()
            if now >= deadline:
                if self._rx:
                    _log.debug("%s no prompt after %r", link.description, bytes(self._rx))
                self._rx.clear()
                return None
            chunk = link.read(deadline - now)
            if chunk:
                _log.debug("%s -> %r", link.description, chunk)
                self.stats.bytes_in += len(chunk)
                self._rx += chunk
                if extend:
                    deadline = min(max(deadline, time.monotonic() + self._margin), limit)

    def _exchange(self, command: str, wait: float) -> str:
        """Send ``command`` and return the text before the prompt.

        :raises adapters.errors.LinkTimeoutError: when the prompt did not come; the adapter is stopped
            first so that the next command finds it ready.
        """
        self._send(command)
        try:
            text = self._read_prompt(wait)
        except AdapterProtocolError:
            self._needs_resync = not self._recover()
            raise
        if text is None:
            self._needs_resync = not self._recover()
            raise LinkTimeoutError(
                f"the adapter did not finish answering {command} within {wait:.1f} s: "
                "is it still plugged in and switched on?"
            )
        return text

    def _recover(self) -> bool:
        """Bring a busy or confused adapter back to its prompt without risking a repeated command.

        A single space goes first: any character interrupts a busy ELM327 (``STOPPED``), and a space left
        in its input buffer is ignored when the next command arrives, so it can neither change nor repeat
        a command. If no prompt follows (the adapter was idle and is now waiting for the end of a line),
        ``ATI`` completes that line harmlessly; if that in turn interrupted a late-finishing request, its
        own answer follows the ``STOPPED`` and is read as well.
        """
        try:
            self._write(b" ")
            if self._read_prompt(self._margin) is not None:
                return True
            self._write(b"ATI\r")
            text = self._read_prompt(self._margin)
            if text is None:
                return False
            if "STOPPED" in text.upper():
                self._read_prompt(self._margin)
            return True
        except AdapterError as exc:
            _log.debug("could not bring the adapter back to its prompt: %s", exc)
            return False

    def _at(self, command: str, *, optional: bool = False) -> list[str]:
        """Send an AT command; return its answer lines.

        :raises adapters.errors.CommandRejectedError: when a required command is answered with ``?``.
        """
        text = self._exchange(command, _AT_WAIT + self._margin)
        try:
            return parse_at_reply(text, command)
        except CommandRejectedError:
            if optional:
                _log.debug("adapter does not know %s; continuing without it", command)
                return []
            raise CommandRejectedError(
                f"the adapter refused {command} (?): it may not be a working ELM327 compatible", status="?"
            ) from None


def _serial_port(port: str) -> bool:
    return port.startswith("/dev/") or re.fullmatch(r"(?:\\\\\.\\)?COM\d+", port, re.IGNORECASE) is not None


_SPEC_HELP = (
    "use a serial port (/dev/ttyUSB0, /dev/rfcomm0, COM3), serial:///dev/ttyUSB0?baud=115200 "
    "or tcp://192.168.0.10:35000"
)


def open_elm327(
    spec: str,
    *,
    protocol_hint: str | None = None,
    remember: ProtocolMemory | None = None,
    st_ms: int | None = None,
    connect_timeout: float = 5.0,
    default_timeout: float = 2.0,
    link_margin: float = 1.0,
) -> Elm327Adapter:
    """Build an :class:`Elm327Adapter` for ``spec``; nothing is opened until ``open()``/``with``.

    ``spec`` is one of:

    * a serial port: ``/dev/ttyUSB0``, ``/dev/rfcomm0``, ``/dev/tty.OBDLink``, ``COM3`` (baud rate
      detected on real UARTs);
    * ``serial://<port>[?baud=N]``: ``serial:///dev/ttyUSB0?baud=115200``, ``serial://COM3?baud=38400``;
    * ``tcp://host[:port]``: a WiFi adapter; the port defaults to 35000.

    The keyword options are those of :class:`Elm327Adapter`, plus ``connect_timeout`` for TCP.

    :raises adapters.errors.AdapterSpecError: when ``spec`` is none of these or has unknown options.
    """
    text = spec.strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    factory: Callable[[], Link]
    if scheme == "tcp":
        parts = urllib.parse.urlsplit(text)
        try:
            port = parts.port or 35000
        except ValueError as exc:
            raise AdapterSpecError(f"bad TCP port in {spec!r}: {_SPEC_HELP}") from exc
        if (
            not parts.hostname
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or parts.username
        ):
            raise AdapterSpecError(
                f"cannot use {spec!r}: write tcp://host:port, e.g. tcp://192.168.0.10:35000"
            )
        factory = TcpLink(parts.hostname, port, connect_timeout).open
    elif scheme == "serial":
        rest = text[len("serial://") :]
        device, _, query = rest.partition("?")
        if not _serial_port(device):
            raise AdapterSpecError(f"cannot use {spec!r}: no serial port after serial://; {_SPEC_HELP}")
        baudrate: int | None = None
        try:
            options = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
        except ValueError as exc:
            raise AdapterSpecError(f"cannot read the options in {spec!r}: {exc}") from exc
        for name, values in options.items():
            if name != "baud":
                raise AdapterSpecError(f"unknown option {name!r} in {spec!r}: only baud is known")
            try:
                baudrate = int(values[-1])
            except ValueError as exc:
                raise AdapterSpecError(f"baud must be a number in {spec!r}") from exc
            if not 300 <= baudrate <= 4_000_000:
                raise AdapterSpecError(f"baud {baudrate} in {spec!r} is outside 300..4000000")
        factory = SerialLink(device, baudrate).open
    elif not scheme and _serial_port(text):
        factory = SerialLink(text).open
    else:
        raise AdapterSpecError(f"unknown ELM327 adapter {spec!r}: {_SPEC_HELP}")
    return Elm327Adapter(
        factory,
        protocol_hint=protocol_hint,
        remember=remember,
        st_ms=st_ms,
        default_timeout=default_timeout,
        link_margin=link_margin,
    )
