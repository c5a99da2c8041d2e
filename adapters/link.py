"""The byte link under an ELM327: a serial port (USB, Bluetooth SPP) or a TCP socket (WiFi adapters).

A link moves bytes and nothing else: it knows neither the ELM327 prompt nor AT commands. Keeping it this
small lets the ELM327 driver run unchanged over a USB cable, a Bluetooth serial port, a WiFi socket, a
pseudo-terminal in the tests or an in-memory double.

Links are built closed and opened explicitly (``SerialLink(...).open()``): constructing one never touches a
device. Every failure leaves a link as one of ``adapters.errors``:

* :class:`~adapters.errors.AdapterUnavailableError` when the port or host cannot even be opened, with a
  sentence naming it (``cannot open /dev/ttyUSB0: no such device — is the adapter plugged in?``);
* :class:`~adapters.errors.LinkError` when an open link breaks (cable pulled, adapter switched off,
  socket reset), and :class:`~adapters.errors.LinkTimeoutError` when a write cannot get through.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
import stat
from typing import Protocol, runtime_checkable

import serial

from adapters.errors import AdapterSpecError, AdapterUnavailableError, LinkError, LinkTimeoutError

try:  # POSIX only; pyserial lets termios.error (not an OSError) escape from tcsetattr/tcdrain
    from termios import error as _TermiosError
except ImportError:  # pragma: no cover - Windows

    class _TermiosError(Exception):  # type: ignore[no-redef]
        """Stands in for termios.error where there is no termios."""


__all__ = ["DEFAULT_BAUDRATE", "BaudRateLink", "Link", "SerialLink", "TcpLink"]

_log = logging.getLogger(__name__)

#: The rate an ELM327 starts at unless its baud-rate pin or a programmable parameter says otherwise.
DEFAULT_BAUDRATE = 38400

#: How long a write may block before the link counts as stuck (a Bluetooth link that went away
#: can accept bytes into its buffer for a while, then block).
_WRITE_TIMEOUT = 2.0

_CLOSED_SENTENCE = "the adapter link closed: cable pulled or adapter switched off?"

# Linux character-device majors of devices whose "baud rate" means nothing: Unix98 pty slaves
# (136-143) and Bluetooth RFCOMM (216). Both pass bytes at any configured rate.
_VIRTUAL_TTY_MAJORS = frozenset({*range(136, 144), 216})

# Everything pyserial may raise for a port that is missing, busy or gone.
_PORT_ERRORS = (serial.SerialException, OSError, _TermiosError)


@runtime_checkable
class Link(Protocol):
    """A bidirectional byte pipe to an adapter, already open."""

    @property
    def description(self) -> str:
        """Where the link goes, for messages and logs (``/dev/ttyUSB0``, ``tcp://192.168.0.10:35000``)."""
        ...

    def write(self, data: bytes) -> None:
        """Send all of ``data``.

        :raises adapters.errors.LinkError: when the link broke.
        """
        ...

    def read(self, max_wait: float) -> bytes:
        """Return what has arrived, waiting at most ``max_wait`` seconds for the first byte.

        Returns as soon as anything is there; ``b""`` means nothing arrived in time. ``max_wait=0``
        only collects what is already buffered.

        :raises adapters.errors.LinkError: when the link broke or the other side closed it.
        """
        ...

    def close(self) -> None:
        """Release the link. Idempotent; never raises."""
        ...


@runtime_checkable
class BaudRateLink(Link, Protocol):
    """A link whose line speed must match the adapter's, and may have to be found by trying."""

    @property
    def needs_baud_detection(self) -> bool:
        """True when no rate was given and the device is a real UART (not a pty, not Bluetooth)."""
        ...

    def set_baudrate(self, baudrate: int) -> None:
        """Switch the host side of the line to ``baudrate``.

        :raises adapters.errors.LinkError: when the port refuses the change.
        """
        ...


def _describe_os_error(exc: BaseException) -> str:
    """A short reason for an OS-level failure, preferring the errno over the library's wording."""
    code = getattr(exc, "errno", None)
    if code == errno.ENOENT:
        return "no such device — is the adapter plugged in?"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied — is your user in the dialout (or uucp) group?"
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK):
        return "the port is in use by another program"
    text = str(exc)
    if "FileNotFoundError" in text or "cannot find the file" in text:
        return "no such port — is the adapter plugged in?"
    if "PermissionError" in text or "Access is denied" in text:
        return "access denied — is another program using the port?"
    if "exclusively lock" in text:
        return "the port is in use by another program"
    return text or type(exc).__name__


def _is_real_uart(port: str) -> bool:
    """Whether ``port`` is a serial device whose baud rate has to match the adapter's.

    Pseudo-terminals (simulators, socat bridges) and Bluetooth RFCOMM ports carry bytes at any
    configured rate, so trying rates there only wastes time. pyserial URLs (``loop://``,
    ``socket://``...) have no rate either. On Windows a COM port cannot be told apart from a Bluetooth
    one cheaply; trying rates is harmless there because the first one answers.
    """
    if "://" in port:
        return False
    if os.name == "nt":
        return True
    try:
        info = os.stat(port)
    except OSError:
        return False
    if not stat.S_ISCHR(info.st_mode):
        return False
    real = os.path.realpath(port)
    if real.startswith(("/dev/pts/", "/dev/rfcomm")) or re.fullmatch(r"/dev/ttys\d+", real):
        return False
    return os.major(info.st_rdev) not in _VIRTUAL_TTY_MAJORS


class SerialLink:
    """A serial port through pyserial: USB adapters, Bluetooth SPP ports, ptys, and pyserial URLs.

    Opening goes through ``serial.serial_for_url`` so that ``loop://`` and other pyserial URL handlers
    work in tests. The port is locked exclusively: two programs talking to one ELM327 at once garble
    each other's answers.

    :param port: ``/dev/ttyUSB0``, ``/dev/rfcomm0``, ``COM3`` or a pyserial URL.
    :param baudrate: the line speed; ``None`` = start at 38400 and let the driver detect the rate
        (only on real UARTs, see :attr:`needs_baud_detection`).
    """

    def __init__(self, port: str, baudrate: int | None = None) -> None:
        if not port:
            raise AdapterSpecError("no serial port given")
        if baudrate is not None and baudrate <= 0:
            raise AdapterSpecError(f"baud rate must be positive, not {baudrate}")
        self._port = port
        self._requested_baudrate = baudrate
        self._serial: serial.SerialBase | None = None
        self._timeout: float | None = None

    @property
    def description(self) -> str:
        """The port as given."""
        return self._port

    @property
    def baudrate(self) -> int:
        """The host side's current line speed."""
        if self._serial is not None:
            return int(self._serial.baudrate)
        return self._requested_baudrate or DEFAULT_BAUDRATE

    @property
    def needs_baud_detection(self) -> bool:
        """True when no rate was given and the port is a real UART (see :func:`_is_real_uart`)."""
        return self._requested_baudrate is None and _is_real_uart(self._port)

    def open(self) -> SerialLink:
        """Open and lock the port; return ``self`` so a factory can be ``lambda: SerialLink(p).open()``.

        :raises adapters.errors.AdapterUnavailableError: when the port cannot be opened, with the reason.
        """
        if self._serial is not None:
            return self
        try:
            port = serial.serial_for_url(
                self._port,
                baudrate=self._requested_baudrate or DEFAULT_BAUDRATE,
                timeout=0,
                write_timeout=_WRITE_TIMEOUT,
                exclusive=True,
                do_not_open=True,
            )
            port.open()
        except (*_PORT_ERRORS, ValueError) as exc:
            raise AdapterUnavailableError(f"cannot open {self._port}: {_describe_os_error(exc)}") from exc
        self._serial = port
        self._timeout = 0.0
        _log.debug("opened %s at %s baud", self._port, port.baudrate)
        return self

    def _require(self) -> serial.SerialBase:
        if self._serial is None:
            raise LinkError(f"{self._port} is not open")
        return self._serial

    def set_baudrate(self, baudrate: int) -> None:
        """Switch the host side to ``baudrate``.

        :raises adapters.errors.LinkError: when the port refuses the rate or went away.
        """
        port = self._require()
        try:
            port.baudrate = baudrate
        except (*_PORT_ERRORS, ValueError) as exc:
            raise LinkError(f"cannot set {self._port} to {baudrate} baud: {exc}") from exc

    def write(self, data: bytes) -> None:
        """Send all of ``data``.

        :raises adapters.errors.LinkTimeoutError: when the port would not take the bytes in time.
        :raises adapters.errors.LinkError: when the port went away.
        """
        port = self._require()
        try:
            port.write(data)  # returns once the kernel has the bytes; no tcdrain, it only adds latency
        except serial.SerialTimeoutException as exc:
            raise LinkTimeoutError(
                f"{self._port} did not take our data within {_WRITE_TIMEOUT:.0f} s: "
                "is the adapter still switched on?"
            ) from exc
        except _PORT_ERRORS as exc:
            raise LinkError(f"{_CLOSED_SENTENCE} ({self._port}: {exc})") from exc

    def read(self, max_wait: float) -> bytes:
        """Return what arrived, waiting at most ``max_wait`` s for the first byte.

        :raises adapters.errors.LinkError: when the device disappeared (USB unplugged, pty closed).
        """
        port = self._require()
        wait = max(0.0, max_wait)
        try:
            if wait != self._timeout:
                # pyserial reconfigures the port on every timeout change; skip it when unchanged.
                port.timeout = wait
                self._timeout = wait
            first = bytes(port.read(1))
            if not first:
                return b""
            waiting = int(port.in_waiting)
            return first + bytes(port.read(waiting)) if waiting else first
        except _PORT_ERRORS as exc:
            raise LinkError(f"{_CLOSED_SENTENCE} ({self._port}: {exc})") from exc

    def close(self) -> None:
        """Close the port. Idempotent; never raises."""
        port, self._serial = self._serial, None
        if port is None:
            return
        try:
            port.close()
        except Exception as exc:  # closing must never fail the caller
            _log.debug("closing %s failed: %s", self._port, exc)

    def __repr__(self) -> str:
        state = "open" if self._serial is not None else "closed"
        return f"SerialLink({self._port!r}, {self.baudrate}, {state})"


class TcpLink:
    """A TCP connection to a WiFi ELM327 (usually ``192.168.0.10:35000``).

    Nagle's algorithm is switched off: ELM327 commands are a few bytes each and must leave at once.

    :param host: the adapter's address.
    :param port: its TCP port.
    :param connect_timeout: how long to wait for the connection, in seconds.
    """

    def __init__(self, host: str, port: int, connect_timeout: float = 5.0) -> None:
        if not host:
            raise AdapterSpecError("no host given for the TCP adapter")
        if not 0 < port < 65536:
            raise AdapterSpecError(f"TCP port must be 1..65535, not {port}")
        if connect_timeout <= 0:
            raise AdapterSpecError("connect timeout must be positive")
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self._socket: socket.socket | None = None

    @property
    def description(self) -> str:
        """``tcp://host:port``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"tcp://{host}:{self._port}"

    def open(self) -> TcpLink:
        """Connect; return ``self`` so a factory can be ``lambda: TcpLink(h, p).open()``.

        :raises adapters.errors.AdapterUnavailableError: when nothing accepts the connection.
        """
        if self._socket is not None:
            return self
        where = f"{self._host}:{self._port}"
        try:
            sock = socket.create_connection((self._host, self._port), timeout=self._connect_timeout)
        except TimeoutError as exc:
            raise AdapterUnavailableError(
                f"cannot connect to {where}: no answer within {self._connect_timeout:g} s — "
                "is this computer on the adapter's WiFi network?"
            ) from exc
        except ConnectionRefusedError as exc:
            raise AdapterUnavailableError(
                f"cannot connect to {where}: connection refused — is the address and port right?"
            ) from exc
        except socket.gaierror as exc:
            raise AdapterUnavailableError(f"cannot connect to {where}: unknown host ({exc})") from exc
        except OSError as exc:
            raise AdapterUnavailableError(f"cannot connect to {where}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # not fatal: only latency suffers
            _log.debug("TCP_NODELAY refused on %s: %s", where, exc)
        self._socket = sock
        _log.debug("connected to %s", where)
        return self

    def _require(self) -> socket.socket:
        if self._socket is None:
            raise LinkError(f"{self.description} is not open")
        return self._socket

    def write(self, data: bytes) -> None:
        """Send all of ``data``.

        :raises adapters.errors.LinkTimeoutError: when the adapter stopped taking data.
        :raises adapters.errors.LinkError: when the connection broke.
        """
        sock = self._require()
        try:
            sock.settimeout(_WRITE_TIMEOUT)
            sock.sendall(data)
        except TimeoutError as exc:
            raise LinkTimeoutError(
                f"{self.description} did not take our data within {_WRITE_TIMEOUT:.0f} s: "
                "is the adapter still switched on?"
            ) from exc
        except OSError as exc:
            raise LinkError(f"{_CLOSED_SENTENCE} ({self.description}: {exc})") from exc

    def read(self, max_wait: float) -> bytes:
        """Return what arrived, waiting at most ``max_wait`` s for the first byte.

        :raises adapters.errors.LinkError: when the adapter closed or reset the connection.
        """
        sock = self._require()
        try:
            sock.settimeout(max(0.0, max_wait))
            data = sock.recv(4096)
        except (TimeoutError, BlockingIOError):
            return b""
        except OSError as exc:
            raise LinkError(f"{_CLOSED_SENTENCE} ({self.description}: {exc})") from exc
        if not data:
            raise LinkError(f"{_CLOSED_SENTENCE} ({self.description} closed the connection)")
        return data

    def close(self) -> None:
        """Close the connection. Idempotent; never raises."""
        sock, self._socket = self._socket, None
        if sock is None:
            return
        try:
            sock.close()
        except OSError as exc:
            _log.debug("closing %s failed: %s", self.description, exc)

    def __repr__(self) -> str:
        state = "open" if self._socket is not None else "closed"
        return f"TcpLink({self._host!r}, {self._port}, {state})"
