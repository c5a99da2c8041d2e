"""Errors of the adapter layer: how reaching the car can fail.

Every error carries a sentence a technician can act on (``str(err)``). The tree::

    AdapterError
    ├── AdapterSpecError         the --adapter string or an adapter option is not understood
    ├── AdapterUnavailableError  the device/port/interface is not there or cannot be opened
    ├── LinkError                the link to the adapter broke (cable pulled, socket reset)
    │   └── LinkTimeoutError     the adapter stopped answering (no prompt within the time)
    ├── AdapterProtocolError     the adapter sent something that is not ELM327/ISO-TP speech
    │   └── FramingError         a multi-frame answer was truncated or out of sequence
    └── AdapterStatusError       the adapter reported a bus-level failure in words
        ├── UnableToConnectError UNABLE TO CONNECT: no protocol answered (ignition off?)
        ├── BusInitError         BUS INIT: ...ERROR on K-line
        ├── CanBusError          CAN ERROR / ERR94: wrong bitrate or not a CAN car
        ├── BusFaultError        BUS BUSY, BUS ERROR, FB ERROR, DATA ERROR, RX ERROR
        ├── BufferFullError      BUFFER FULL: the adapter could not keep up with the link
        ├── StoppedError         STOPPED: the request was interrupted
        └── CommandRejectedError ?: the adapter did not understand a command

NO DATA is not an error: a request nobody answered returns an empty list.
"""

from __future__ import annotations

__all__ = [
    "AdapterError",
    "AdapterProtocolError",
    "AdapterSpecError",
    "AdapterStatusError",
    "AdapterUnavailableError",
    "BufferFullError",
    "BusFaultError",
    "BusInitError",
    "CanBusError",
    "CommandRejectedError",
    "FramingError",
    "LinkError",
    "LinkTimeoutError",
    "StoppedError",
    "UnableToConnectError",
]


class AdapterError(Exception):
    """Root of the adapter layer's errors."""


class AdapterSpecError(AdapterError, ValueError):
    """The adapter string or an adapter option cannot be understood."""


class AdapterUnavailableError(AdapterError):
    """The adapter's device, port or interface is not there or cannot be opened."""


class LinkError(AdapterError):
    """The link to the adapter broke while in use."""


class LinkTimeoutError(LinkError, TimeoutError):
    """The adapter stopped answering."""


class AdapterProtocolError(AdapterError):
    """The adapter answered with something that is not valid adapter speech."""


class FramingError(AdapterProtocolError):
    """A multi-frame answer was truncated, overlong or out of sequence."""


class AdapterStatusError(AdapterError):
    """The adapter reported a failure in words; ``status`` holds its exact words."""

    def __init__(self, message: str, status: str = "") -> None:
        super().__init__(message)
        self.status = status


class UnableToConnectError(AdapterStatusError):
    """No protocol answered: ignition off, or no OBD bus on this car."""


class BusInitError(AdapterStatusError):
    """The K-line bus initialisation failed."""


class CanBusError(AdapterStatusError):
    """The CAN bus could not be used: wrong bitrate, or not a CAN car."""


class BusFaultError(AdapterStatusError):
    """The bus reported busy, errors or bad checksums."""


class BufferFullError(AdapterStatusError):
    """The adapter's buffer overflowed because the host link is too slow."""


class StoppedError(AdapterStatusError):
    """The adapter stopped a request because it received input meanwhile."""


class CommandRejectedError(AdapterStatusError):
    """The adapter did not understand a command (it answered ``?``)."""
