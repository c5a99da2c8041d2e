"""OBD on CAN (ISO 15765-4) and UDS (ISO 14229) through a raw CAN interface.

Workshops own SocketCAN, PEAK PCAN, Kvaser, Vector and slcan/CANable interfaces; python-can speaks to all
of them, and can-isotp does the ISO-TP segmentation and flow control (ISO 15765-2). This module joins the
two behind the :class:`adapters.base.Adapter` contract, so the read-out workflows cannot tell a CAN
interface from an ELM327.

Licence: python-can is LGPL-3.0-only. It is imported only here and in ``adapters/sim/can_network.py``, so
that the rest of obdtool stays free of it and a build without CAN support only has to drop two modules.

How the bus is read, and why there are no threads
    The tester only listens while a request is open, so the thread that calls :meth:`CanAdapter.request`
    is the one reader of the bus: it waits on ``bus.recv`` and hands every frame to the can-isotp stack
    of the ECU that sent it. Each ECU address pair (``7E0``/``7E8``, ``18DA10F1``/``18DAF110``) has its
    own ``isotp.TransportLayerLogic``, the sans-I/O core of can-isotp; a stack for a 29-bit responder is
    created when its first frame arrives. A stack that receives a first frame sends the flow control
    frame to *that* ECU's request ID at once, from the same call, so several ECUs can stream multi-frame
    answers to one functional request at the same time. can-isotp's threaded ``NotifierBasedCanStack``
    would need two threads per ECU, and stacks that exist before the ECU's first frame; reading in the
    caller's thread keeps P2, P2* and the collection window exact, and ``close()`` has nothing to join.
"""

from __future__ import annotations

import errno
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import can
import isotp

from adapters.base import Adapter, EcuReply, LinkInfo
from adapters.errors import (
    AdapterError,
    AdapterSpecError,
    AdapterUnavailableError,
    CanBusError,
    FramingError,
    LinkError,
    UnableToConnectError,
)

__all__ = [
    "FUNCTIONAL_ID_11",
    "FUNCTIONAL_ID_29",
    "CanAdapter",
    "CanSpec",
    "EcuAddress",
    "can_error_sentence",
    "open_can",
    "open_error",
    "parse_can_spec",
    "parse_ecu_address",
    "translate_can_errors",
]

log = logging.getLogger(__name__)

FUNCTIONAL_ID_11 = 0x7DF
FUNCTIONAL_ID_29 = 0x18DB33F1
_TESTER_29 = 0xF1

# ISO 15765-4 allows these two bitrates; the ELM327 protocol numbers are what technicians know.
_PROTOCOLS: dict[tuple[int, int], str] = {
    (11, 500_000): "6",
    (29, 500_000): "7",
    (11, 250_000): "8",
    (29, 250_000): "9",
}

# The tester pads to 8 bytes: ISO 15765-4 asks for full frames, the fill value is free.
_TX_PADDING = 0x00
# N_Cr / N_Bs of ISO 15765-2: how long a half-sent message may pause.
_N_CR = 1.0
_N_BS = 1.0
_OBD_PROBE = b"\x01\x00"

# Frames that mean the answer we were assembling is lost; others (a stray consecutive frame, a late
# flow control) are noise on a shared bus.
_BROKEN_ANSWER = (
    isotp.ConsecutiveFrameTimeoutError,
    isotp.WrongSequenceNumberError,
    isotp.FrameTooLongError,
    isotp.ChangingInvalidRXDLError,
    isotp.InvalidCanDataError,
)
_REQUEST_REFUSED = (isotp.OverflowError, isotp.MaximumWaitFrameReachedError)

# What a technician can do when python-can cannot open an interface.
_DRIVER_HINTS: dict[str, str] = {
    "socketcan": "SocketCAN needs Linux and the interface up, e.g. "
    "'sudo ip link set can0 up type can bitrate 500000'",
    "pcan": "install PEAK's PCAN-Basic driver (libpcanbasic on Linux, PCANBasic.dll on Windows)",
    "kvaser": "install Kvaser's driver and CANlib",
    "vector": "install the Vector XL driver library (Windows) and assign the channel in "
    "Vector Hardware Config",
    "slcan": "check the serial port name and that no other program holds it "
    "(a CANable is /dev/ttyACMx on Linux, COMx on Windows)",
    "udp_multicast": "needs python-can's 'multicast' extra (msgpack) and a network that carries multicast",
}


# -- addresses and specs ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EcuAddress:
    """One ECU as the tester addresses it: it answers on ``rx_id`` and is asked on ``tx_id``."""

    name: str
    rx_id: int
    tx_id: int
    extended: bool


_ADDR11_RE = re.compile(r"^[0-7][0-9A-F]{2}$")
_ADDR29_RE = re.compile(r"^18DAF1([0-9A-F]{2})$")


def parse_ecu_address(address: str) -> EcuAddress:
    """``"7E8"`` -> answers on 7E8, asked on 7E0; ``"18DAF110"`` -> answers on 18DAF110, asked on 18DA10F1.

    11-bit answer IDs follow the ISO 15765-4 rule *request = answer - 8*, which manufacturers also use
    outside 7E8..7EF (Toyota 74F/747, 7C8/7C0).

    :raises AdapterSpecError: when the text is no answer address, or is a request address.
    """
    text = address.strip().upper()
    if _ADDR11_RE.match(text):
        rx = int(text, 16)
        if 0x7E0 <= rx <= 0x7E7 or rx == FUNCTIONAL_ID_11:
            raise AdapterSpecError(
                f"{text} is a request address; give the address the ECU answers from (e.g. {rx + 8:03X})"
            )
        if rx < 0x008:
            raise AdapterSpecError(f"{text} cannot be an ECU answer address")
        return EcuAddress(text, rx, rx - 8, extended=False)
    match = _ADDR29_RE.match(text)
    if match:
        ecu = int(match.group(1), 16)
        return EcuAddress(text, int(text, 16), 0x18DA0000 | ecu << 8 | _TESTER_29, extended=True)
    if re.fullmatch(r"18DA[0-9A-F]{2}F1", text):
        raise AdapterSpecError(f"{text} is a request address; the ECU answers from 18DAF1{text[4:6]}")
    raise AdapterSpecError(
        f"{address!r} is not an ECU address: expected an 11-bit answer ID such as 7E8 "
        "or a 29-bit one such as 18DAF110"
    )


@dataclass(frozen=True, slots=True)
class CanSpec:
    """A parsed ``can:INTERFACE:CHANNEL[?bitrate=500k&id_bits=29]`` adapter string."""

    interface: str
    channel: str
    bitrate: int = 500_000
    id_bits: int | None = None
    bus_options: dict[str, int] = field(default_factory=dict)


_SPEC_FORM = "can:INTERFACE:CHANNEL[?bitrate=500k&id_bits=11|29|auto], e.g. can:socketcan:can0"
# Options handed to python-can as they are (interface specific).
_BUS_OPTION_KEYS = {"port", "tty_baudrate"}


def _parse_int(key: str, value: str) -> int:
    text = value.strip().lower()
    scale = 1000 if text.endswith("k") else 1
    try:
        return int(text.removesuffix("k")) * scale
    except ValueError:
        raise AdapterSpecError(f"{key}={value!r} is not a whole number (form: {_SPEC_FORM})") from None


def parse_can_spec(spec: str) -> CanSpec:
    """Parse ``can:pcan:PCAN_USBBUS1?bitrate=250k`` into its parts; nothing is opened.

    Options: ``bitrate`` (500k or 250k), ``id_bits`` (11, 29, auto), and for python-can as they are
    ``port`` (udp_multicast) and ``tty_baudrate`` (slcan).

    :raises AdapterSpecError: naming what is wrong and showing the expected form.
    """
    head, _, query = spec.strip().partition("?")
    parts = head.split(":", 2)
    if len(parts) != 3 or parts[0].lower() != "can":
        raise AdapterSpecError(f"{spec!r} is not a CAN adapter string; expected {_SPEC_FORM}")
    interface, channel = parts[1].strip().lower(), parts[2].strip()
    if not interface:
        raise AdapterSpecError(f"{spec!r} names no interface; expected {_SPEC_FORM}")
    if interface not in can.interfaces.VALID_INTERFACES:
        known = ", ".join(sorted(can.interfaces.VALID_INTERFACES))
        raise AdapterSpecError(f"python-can has no interface called {interface!r} (known: {known})")
    if not channel:
        raise AdapterSpecError(f"{spec!r} names no channel; expected {_SPEC_FORM}")
    try:
        options = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise AdapterSpecError(f"cannot read the options in {spec!r}; expected {_SPEC_FORM}") from None
    bitrate, id_bits, bus_options = 500_000, None, {}
    for key, value in options:
        if not value.strip():
            raise AdapterSpecError(f"option {key!r} in {spec!r} has no value")
        if key == "bitrate":
            bitrate = _parse_int(key, value)
        elif key == "id_bits":
            id_bits = None if value.strip().lower() == "auto" else _parse_int(key, value)
        elif key in _BUS_OPTION_KEYS:
            bus_options[key] = _parse_int(key, value)
        else:
            known = ", ".join(sorted({"bitrate", "id_bits"} | _BUS_OPTION_KEYS))
            raise AdapterSpecError(f"unknown option {key!r} in {spec!r} (known: {known})")
    _check_link(bitrate, id_bits)
    return CanSpec(interface, channel, bitrate, id_bits, bus_options)


def _check_link(bitrate: int, id_bits: int | None) -> None:
    if bitrate not in (250_000, 500_000):
        raise AdapterSpecError(f"bitrate {bitrate} is not an OBD bitrate: ISO 15765-4 uses 500k or 250k")
    if id_bits not in (None, 11, 29):
        raise AdapterSpecError(f"id_bits={id_bits} is not 11, 29 or auto")


# -- error translation -----------------------------------------------------------------------------


def can_error_sentence(exc: BaseException) -> str:
    """The lower library's words, with the exception type when they are empty."""
    text = str(exc).strip()
    return text or type(exc).__name__


def open_error(interface: str, where: str, exc: Exception) -> AdapterError:
    """Turn whatever a python-can driver raised while opening into one error with advice."""
    hint = _DRIVER_HINTS.get(interface, "")
    why = can_error_sentence(exc)
    if isinstance(exc, can.CanInterfaceNotImplementedError):
        message = f"python-can's {interface!r} interface cannot be used here: {why}"
    elif isinstance(exc, OSError) and exc.errno == errno.ENODEV:
        message = f"there is no CAN interface {where}: {why}"
    else:
        message = f"cannot open {where}: {why} ({type(exc).__name__})"
    return AdapterUnavailableError(f"{message}; {hint}" if hint else message)


@contextmanager
def translate_can_errors(where: str) -> Iterator[None]:
    """Map python-can and OS errors raised while the bus is in use onto ``adapters.errors``.

    A transmit queue that never drains means no node acknowledges our frames: no car, or the wrong
    bitrate. Everything else is a broken link.

    :raises CanBusError: when frames are not acknowledged.
    :raises LinkError: on any other python-can or OS error.
    """
    try:
        yield
    except AdapterError:
        raise
    except (can.CanError, OSError) as exc:
        why = can_error_sentence(exc)
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        if (isinstance(cause, OSError) and cause.errno == errno.ENOBUFS) or "buffer" in why.lower():
            raise CanBusError(
                f"frames are not acknowledged on {where} ({why}): wrong bitrate, or no car on the bus?",
                status="CAN ERROR",
            ) from exc
        raise LinkError(f"the CAN interface {where} failed: {why}") from exc


# -- one ECU as the tester sees it -----------------------------------------------------------------


class _Peer:
    """One ECU address pair: its can-isotp stack and the frames that arrived for it."""

    def __init__(self, address: EcuAddress, send: Callable[[isotp.CanMessage], None]) -> None:
        self.address = address
        self.frames: deque[isotp.CanMessage] = deque()
        self.errors: list[Exception] = []
        self.last_rx = 0.0
        mode = isotp.AddressingMode.Normal_29bits if address.extended else isotp.AddressingMode.Normal_11bits
        self.stack = isotp.TransportLayerLogic(
            rxfn=self._next_frame,
            txfn=send,
            address=isotp.Address(mode, txid=address.tx_id, rxid=address.rx_id),
            error_handler=self.errors.append,
            params=_stack_params(),
        )

    def _next_frame(self, timeout: float) -> isotp.CanMessage | None:
        # can-isotp asks for frames; they were put here by the one reader of the bus.
        return self.frames.popleft() if self.frames else None

    def reset(self) -> None:
        self.frames.clear()
        self.errors.clear()
        self.stack.reset()


def _stack_params() -> dict[str, Any]:
    return {
        "tx_padding": _TX_PADDING,
        "stmin": 0,
        "blocksize": 0,  # our flow control says: send everything, no pause (30 00 00)
        "wftmax": 10,  # tolerate an ECU that asks us to wait a few times
        "rx_flowcontrol_timeout": int(_N_BS * 1000),
        "rx_consecutive_frame_timeout": int(_N_CR * 1000),
        "logger_name": f"{__name__}.isotp",
    }


def _answers(sid: int, message: bytes) -> bool:
    """True when ``message`` is an answer to service ``sid`` (positive, or ``7F sid ..``)."""
    if not message:
        return False
    if message[0] == 0x7F:
        return len(message) >= 3 and message[1] == sid
    return message[0] == (sid + 0x40) & 0xFF


def _is_pending(message: bytes) -> bool:
    return len(message) >= 3 and message[0] == 0x7F and message[2] == 0x78


# -- the adapter -----------------------------------------------------------------------------------


BusFactory = Callable[..., can.BusABC]


class CanAdapter(Adapter):
    """ISO 15765-4 / UDS tester on a python-can interface.

    :param interface: python-can interface name: ``socketcan``, ``pcan``, ``kvaser``, ``vector``,
        ``slcan``, ``virtual``, ``udp_multicast`` ...
    :param channel: the interface's channel (``can0``, ``PCAN_USBBUS1``, ``/dev/ttyACM0``, ``bay1``).
    :param bitrate: 500 000 or 250 000 (ISO 15765-4).
    :param id_bits: 11 or 29; ``None`` tries 11-bit first, then 29-bit, when the link opens.
    :param window: how long a functional request collects answers, in seconds.
    :param p2: how long a physical request waits for the first answer (P2client), in seconds.
    :param p2_star: how long to wait after each ``7F xx 78`` (P2*client), in seconds.
    :param bus_factory: builds the python-can bus (``can.Bus`` by default); tests and tools inject one.
    :param bus_options: interface-specific python-can arguments (``port`` for udp_multicast,
        ``tty_baudrate`` for slcan).
    """

    def __init__(
        self,
        interface: str,
        channel: str,
        *,
        bitrate: int = 500_000,
        id_bits: int | None = None,
        window: float = 0.1,
        p2: float = 0.05,
        p2_star: float = 5.0,
        bus_factory: BusFactory | None = None,
        bus_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        _check_link(bitrate, id_bits)
        self.interface = interface
        self.channel = channel
        self.bitrate = bitrate
        self.window = window
        self.p2 = p2
        self.p2_star = p2_star
        self._wanted_bits = id_bits
        self._id_bits = id_bits or 11
        self._bus_factory: BusFactory = bus_factory or can.Bus
        self._bus_options = dict(bus_options or {})
        self._bus: can.BusABC | None = None
        self._peers: dict[tuple[int, bool], _Peer] = {}
        self._functional: isotp.TransportLayerLogic | None = None
        self._arrived: list[tuple[_Peer, bytes]] = []
        self._extra_rx: set[tuple[int, bool]] = set()
        self._lock = threading.Lock()
        self.responders: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        """The link as the technician typed it: ``can:pcan:PCAN_USBBUS1``."""
        return f"can:{self.interface}:{self.channel}"

    @property
    def id_bits(self) -> int:
        """11 or 29: as given, or as found by :meth:`open`."""
        return self._id_bits

    # -- open / close ----------------------------------------------------------------------------

    def open(self) -> LinkInfo:
        """Open the interface and find the car with a functional ``01 00``.

        Idempotent: an open adapter returns what it found before.

        :raises AdapterUnavailableError: when the interface or its driver cannot be opened.
        :raises UnableToConnectError: when no ECU answers (ignition off, wrong bitrate).
        :raises CanBusError: when our frames are not acknowledged.
        :raises LinkError: when the interface fails while probing.
        """
        if self._bus is not None and self._info is not None:
            return self._info
        try:
            self._bus = self._bus_factory(
                interface=self.interface,
                channel=self.channel,
                bitrate=self.bitrate,
                can_filters=self._filters(self._wanted_bits),
                **self._bus_options,
            )
        except Exception as exc:  # drivers raise anything: OSError, NameError, CanError ...
            raise open_error(self.interface, self.where, exc) from exc
        try:
            replies = self._probe()
        except BaseException:
            self.close()
            raise
        if not replies:
            self.close()
            raise UnableToConnectError(
                f"no ECU answered on {self.where} at {self.bitrate // 1000} kbit/s"
                " — ignition on? right bitrate?",
                status="UNABLE TO CONNECT",
            )
        self.responders = tuple(dict.fromkeys(r.ecu for r in replies))
        protocol_id = _PROTOCOLS[(self._id_bits, self.bitrate)]
        self._info = LinkInfo(
            kind="can",
            description=f"{self.where} (python-can), ECUs {', '.join(self.responders)}",
            protocol=f"ISO 15765-4 CAN ({self._id_bits} bit ID, {self.bitrate // 1000} kbaud)",
            protocol_id=protocol_id,
            is_can=True,
        )
        log.info("CAN link %s: %s", self.where, self._info.protocol)
        return self._info

    def _probe(self) -> list[EcuReply]:
        for bits in (self._wanted_bits,) if self._wanted_bits else (11, 29):
            self._id_bits = bits
            self._functional = None
            replies = self.request(_OBD_PROBE)
            if replies:
                if self._wanted_bits is None and self._bus is not None:
                    with translate_can_errors(self.where):
                        self._bus.set_filters(self._filters(bits))
                return replies
        return []

    def _filters(self, id_bits: int | None) -> list[can.typechecking.CanFilter]:
        """Let only ECU answers through (in hardware where the interface can filter).

        A car's OBD port may carry the whole powertrain bus; without filters every frame would
        queue up between requests.
        """
        filters: list[can.typechecking.CanFilter] = []
        if id_bits in (None, 11):
            filters.append({"can_id": 0x7E8, "can_mask": 0x7F8, "extended": False})
        if id_bits in (None, 29):
            filters.append({"can_id": 0x18DAF100, "can_mask": 0x1FFFFF00, "extended": True})
        for rx_id, extended in sorted(self._extra_rx):
            mask = 0x1FFFFFFF if extended else 0x7FF
            filters.append({"can_id": rx_id, "can_mask": mask, "extended": extended})
        return filters

    def _listen_to(self, address: EcuAddress) -> None:
        """Open the filters for an ECU they do not pass yet.

        That is an ECU answering outside 7E8..7EF / 18DAF1xx (Toyota 74F, 7C8), or a 29-bit ECU asked
        on a link that found the car on 11-bit IDs (and the other way round).
        """
        if self._bus is None:
            return
        base = self._id_bits if self._info else self._wanted_bits
        standard = self._responder_id(address.rx_id, extended=address.extended)
        if standard and base in (None, 29 if address.extended else 11):
            return
        key = (address.rx_id, address.extended)
        if key not in self._extra_rx:
            self._extra_rx.add(key)
            self._bus.set_filters(self._filters(base))

    def close(self) -> None:
        """Shut the interface down. Idempotent; never raises."""
        bus, self._bus = self._bus, None
        self._info = None
        self._peers.clear()
        self._extra_rx.clear()
        self._functional = None
        if bus is not None:
            try:
                bus.shutdown()
            except Exception as exc:  # a driver failing on shutdown must not hide the real error
                log.warning("closing %s failed: %s", self.where, can_error_sentence(exc))

    # -- requests --------------------------------------------------------------------------------

    def request(
        self,
        data: bytes,
        *,
        ecu: str | None = None,
        expect: int | None = None,
        timeout: float | None = None,
    ) -> list[EcuReply]:
        """Send service bytes and collect the answers (see :meth:`adapters.base.Adapter.request`).

        Functional (``ecu=None``): one single frame on 7DF / 18DB33F1; answers from every ECU are
        collected for ``timeout`` (default: the window), or until ``expect`` are in. Physical: the
        request (multi-frame if needed) goes to the ECU's request ID and the first answer is returned;
        ``[]`` after ``timeout`` (default: P2) without one. ``7F xx 78`` restarts the wait with P2*
        each time and is never returned; ``7F xx 21`` is returned (the caller decides to retry).

        :raises AdapterSpecError: on an empty request, a bad ECU address, or a functional request
            longer than one frame.
        :raises FramingError: when a physical answer arrives broken (bad sequence, stalled).
        :raises CanBusError: when frames are not acknowledged.
        :raises LinkError: when the interface fails.
        """
        if self._bus is None:
            raise LinkError(f"{self.where} is not open")
        if not data:
            raise AdapterSpecError("an empty request cannot be sent")
        target = parse_ecu_address(ecu) if ecu is not None else None
        with self._lock, translate_can_errors(self.where):
            self.stats.count_request(data)
            self.stats.bytes_out += len(data)
            self._start_request()
            log.debug("%s -> %s: %s", self.where, ecu or "all", data.hex(" "))
            if target is None:
                replies = self._request_functional(bytes(data), expect, timeout)
            else:
                replies = self._request_physical(bytes(data), target, timeout)
            for reply in replies:
                log.debug("%s <- %s: %s", self.where, reply.ecu, reply.data.hex(" "))
            return replies

    def _start_request(self) -> None:
        """Forget what arrived between requests: a late answer must not pass for the next one."""
        assert self._bus is not None
        for _ in range(10_000):
            if self._bus.recv(0.0) is None:
                break
        for peer in self._peers.values():
            peer.reset()
        self._arrived.clear()

    def _request_functional(self, data: bytes, expect: int | None, timeout: float | None) -> list[EcuReply]:
        if len(data) > 7:
            raise AdapterSpecError(
                f"a functional request must fit one CAN frame (7 bytes), this one has {len(data)};"
                " send it to one ECU instead"
            )
        sender = self._functional_sender()
        sender.send(data)
        sender.process()
        window = self.window if timeout is None else timeout
        deadline = time.monotonic() + window
        pending: dict[str, float] = {}
        replies: list[EcuReply] = []
        while True:
            for peer, message in self._take_arrived():
                name = peer.address.name
                if not _answers(data[0], message):
                    log.debug("ignored %s from %s: not an answer to %02X", message.hex(" "), name, data[0])
                elif _is_pending(message):
                    pending[name] = time.monotonic() + self.p2_star
                else:
                    pending.pop(name, None)
                    replies.append(EcuReply(name, message))
            if expect is not None and len(replies) >= expect:
                return replies
            now = time.monotonic()
            ends = [deadline, *pending.values()]
            for peer in self._peers.values():
                if peer.stack.is_rx_active():
                    if now - peer.last_rx > _N_CR:
                        log.warning("%s stopped in the middle of a multi-frame answer", peer.address.name)
                        peer.reset()
                    else:
                        ends.append(peer.last_rx + _N_CR)
                for error in peer.errors:
                    if isinstance(error, _BROKEN_ANSWER):
                        log.warning("dropped a broken answer from %s: %s", peer.address.name, error)
                peer.errors.clear()
            end = max(ends)
            if now >= end:
                return replies
            self._pump(end - now)

    def _request_physical(self, data: bytes, target: EcuAddress, timeout: float | None) -> list[EcuReply]:
        self._listen_to(target)
        peer = self._peer(target)
        peer.stack.send(data)
        if not self._transmit(peer):
            return []
        deadline = time.monotonic() + (self.p2 if timeout is None else timeout)
        while True:
            for source, message in self._take_arrived():
                if source is not peer:
                    continue
                if not _answers(data[0], message):
                    log.debug(
                        "ignored %s from %s: not an answer to %02X", message.hex(" "), target.name, data[0]
                    )
                elif _is_pending(message):
                    deadline = time.monotonic() + self.p2_star
                else:
                    return [EcuReply(target.name, message)]
            broken = [e for e in peer.errors if isinstance(e, _BROKEN_ANSWER)]
            if broken:
                raise FramingError(
                    f"the answer from {target.name} arrived broken ({broken[0]}); try again",
                )
            now = time.monotonic()
            end = deadline
            if peer.stack.is_rx_active():
                end = max(end, peer.last_rx + _N_CR)
                if now >= end:
                    raise FramingError(f"{target.name} stopped in the middle of a multi-frame answer")
            if now >= end:
                return []
            self._pump(end - now)

    def _transmit(self, peer: _Peer) -> bool:
        """Send what the peer's stack holds; multi-frame requests wait for the ECU's flow control.

        :returns: False when the ECU never sent flow control (it is not there).
        """
        peer.stack.process()
        while peer.stack.transmitting():
            delay = peer.stack.next_cf_delay()
            self._pump(0.005 if delay is None else delay)
            peer.stack.process()
        if any(isinstance(e, isotp.FlowControlTimeoutError) for e in peer.errors):
            log.debug("%s sent no flow control", peer.address.name)
            return False
        refused = [e for e in peer.errors if isinstance(e, _REQUEST_REFUSED)]
        if refused:
            raise FramingError(f"{peer.address.name} refused our multi-frame request: {refused[0]}")
        return True

    def _pump(self, timeout: float) -> None:
        """Read the bus for up to ``timeout`` and hand every frame to the stack it belongs to."""
        assert self._bus is not None
        message = self._bus.recv(max(timeout, 0.0))
        while message is not None:
            self._route(message)
            message = self._bus.recv(0.0)

    def _route(self, message: can.Message) -> None:
        if message.is_error_frame or message.is_remote_frame:
            return
        key = (message.arbitration_id, bool(message.is_extended_id))
        peer = self._peers.get(key)
        if peer is None:
            address = self._responder(message)
            if address is None:
                return
            peer = self._peer(address)
        peer.frames.append(
            isotp.CanMessage(
                arbitration_id=message.arbitration_id,
                dlc=len(message.data),
                data=bytes(message.data),
                extended_id=bool(message.is_extended_id),
            )
        )
        peer.last_rx = time.monotonic()
        peer.stack.process()  # a first frame gets its flow control right here
        while peer.stack.available():
            payload = peer.stack.recv()
            if payload is not None:
                self.stats.bytes_in += len(payload)
                self._arrived.append((peer, bytes(payload)))

    def _responder(self, message: can.Message) -> EcuAddress | None:
        """The ECU behind an answer frame nobody asked for by name (functional answers)."""
        extended = bool(message.is_extended_id)
        if not self._responder_id(message.arbitration_id, extended=extended):
            return None
        width = 8 if extended else 3
        return parse_ecu_address(f"{message.arbitration_id:0{width}X}")

    @staticmethod
    def _responder_id(ident: int, *, extended: bool) -> bool:
        """True for the answer IDs of ISO 15765-4: 7E8..7EF and 18DAF1xx."""
        if extended:
            return ident & 0x1FFFFF00 == 0x18DAF100
        return 0x7E8 <= ident <= 0x7EF

    def _take_arrived(self) -> list[tuple[_Peer, bytes]]:
        arrived, self._arrived = self._arrived, []
        return arrived

    def _peer(self, address: EcuAddress) -> _Peer:
        key = (address.rx_id, address.extended)
        peer = self._peers.get(key)
        if peer is None or peer.address.tx_id != address.tx_id:
            peer = _Peer(address, self._send_frame)
            self._peers[key] = peer
        return peer

    def _functional_sender(self) -> isotp.TransportLayerLogic:
        if self._functional is None:
            if self._id_bits == 29:
                mode, tx_id, rx_id = isotp.AddressingMode.Normal_29bits, FUNCTIONAL_ID_29, 0x18DAF100
            else:
                mode, tx_id, rx_id = isotp.AddressingMode.Normal_11bits, FUNCTIONAL_ID_11, 0x7E8
            # The receive side of this stack is never fed: answers come back to each ECU's own stack.
            self._functional = isotp.TransportLayerLogic(
                rxfn=lambda timeout: None,
                txfn=self._send_frame,
                address=isotp.Address(mode, txid=tx_id, rxid=rx_id),
                params=_stack_params(),
            )
        return self._functional

    def _send_frame(self, frame: isotp.CanMessage) -> None:
        assert self._bus is not None
        self._bus.send(
            can.Message(
                arbitration_id=frame.arbitration_id,
                data=bytes(frame.data),
                is_extended_id=frame.is_extended_id,
            )
        )


def open_can(spec: str, **kw: Any) -> CanAdapter:
    """Build the :class:`CanAdapter` a ``can:INTERFACE:CHANNEL[?bitrate=..&id_bits=..]`` string names.

    Like every ``adapters`` entry point it does not open the link: use the adapter as a context
    manager, or call :meth:`CanAdapter.open`. Keyword arguments override the spec
    (``bitrate=250_000``) or add what a spec cannot say (``bus_factory``, ``p2``, ``window``).

    :raises AdapterSpecError: when the spec is malformed.
    """
    parsed = parse_can_spec(spec)
    options: dict[str, Any] = {"bitrate": parsed.bitrate, "id_bits": parsed.id_bits}
    bus_options = dict(parsed.bus_options)
    bus_options.update(kw.pop("bus_options", None) or {})
    options.update(kw)
    return CanAdapter(parsed.interface, parsed.channel, bus_options=bus_options, **options)
