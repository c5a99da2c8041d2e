"""Checks shared by every decoder: positive/negative responses, NRC texts, legacy joining.

An OBD or UDS answer is either positive (first byte = request SID + 0x40) or negative
(``7F SID NRC``). :func:`check_positive` guards every decoder; :func:`parse_negative` lets the
caller tell a refusal from a malformed answer and show the technician what the ECU meant.

:func:`join_legacy` exists because ISO 9141-2, KWP2000 and J1850 cars split long answers into
several short messages with their own layout (sequence bytes, DTC frames without a count); it
rebuilds the single CAN-shaped message that the other decoders understand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from obdtool.errors import DecodeError

__all__ = [
    "NEGATIVE_RESPONSE_SID",
    "NRC_TABLE",
    "NegativeResponse",
    "check_positive",
    "hex_bytes",
    "join_legacy",
    "nrc_meaning",
    "nrc_name",
    "parse_negative",
]

NEGATIVE_RESPONSE_SID: Final = 0x7F
_POSITIVE_OFFSET: Final = 0x40

# NRC -> (ISO 14229 name, what it means for the technician at the service bay).
NRC_TABLE: Final[Mapping[int, tuple[str, str]]] = MappingProxyType(
    {
        0x10: ("generalReject", "The control unit rejected the request without giving a reason."),
        0x11: (
            "serviceNotSupported",
            "The control unit does not offer this service; there is nothing to read.",
        ),
        0x12: (
            "subFunctionNotSupported",
            "The control unit does not support this PID, InfoType or sub-function; it is skipped.",
        ),
        0x13: (
            "incorrectMessageLengthOrInvalidFormat",
            "The control unit did not accept the form of the request; this is a tool fault, report it.",
        ),
        0x14: ("responseTooLong", "The answer would be too long; the tool must ask for fewer items at once."),
        0x21: (
            "busyRepeatRequest",
            "The control unit is busy; the request can be repeated after a short wait.",
        ),
        0x22: (
            "conditionsNotCorrect",
            "The control unit refuses in the current state; for clearing codes: ignition on, engine off.",
        ),
        0x24: ("requestSequenceError", "The control unit expected another request first."),
        0x25: (
            "noResponseFromSubnetComponent",
            "A gateway could not reach the control unit behind it; check that unit's power and wiring.",
        ),
        0x31: (
            "requestOutOfRange",
            "The control unit does not know this identifier or value; it is skipped.",
        ),
        0x33: ("securityAccessDenied", "The control unit is locked; this needs the manufacturer's tool."),
        0x35: ("invalidKey", "The security key was not accepted."),
        0x36: (
            "exceededNumberOfAttempts",
            "Too many wrong security keys; the control unit blocks further attempts for now.",
        ),
        0x37: (
            "requiredTimeDelayNotExpired",
            "The control unit's lock-out time has not passed yet; wait before trying again.",
        ),
        0x78: (
            "requestCorrectlyReceived-ResponsePending",
            "The control unit is still working on the request; keep waiting for the answer.",
        ),
        0x7E: (
            "subFunctionNotSupportedInActiveSession",
            "This function is not available in the current diagnostic session.",
        ),
        0x7F: (
            "serviceNotSupportedInActiveSession",
            "This service is not available in the current diagnostic session.",
        ),
        0x83: ("engineIsRunning", "Switch the engine off (ignition stays on) and try again."),
        0x88: ("vehicleSpeedTooHigh", "The vehicle must be stationary."),
        0x92: ("voltageTooHigh", "Supply voltage is too high; check the charger or battery and try again."),
        0x93: ("voltageTooLow", "Supply voltage is too low; connect a battery charger and try again."),
    }
)

_DTC_SIDS: Final = frozenset({0x43, 0x47, 0x4A})
_INFOTYPE_SID: Final = 0x49
_BITMAP_ITIDS: Final = frozenset(range(0x00, 0x100, 0x20))
# Legacy Service 09 InfoTypes that may be spread over several messages, with the size of one
# data item (None: the whole joined data is one item, as for the VIN).
_LEGACY_ITEM_SIZES: Final[Mapping[int, int | None]] = MappingProxyType(
    {0x02: None, 0x04: 16, 0x06: 4, 0x08: 2, 0x0A: None, 0x0B: 2, 0x0D: None}
)
_LEGACY_BITMAP_LEN: Final = 7  # 49 II 01 AA BB CC DD


@dataclass(frozen=True, slots=True)
class NegativeResponse:
    """A ``7F SID NRC`` refusal: which service was refused, the code, and what it means."""

    service: int
    nrc: int
    name: str
    meaning: str


def hex_bytes(data: bytes, limit: int = 24) -> str:
    """Render bytes as spaced upper-case hex for error messages, cut after ``limit`` bytes.

    Error messages must show the technician (and the bug report) the bytes that did not fit,
    without flooding the screen with a 4 kB ISO-TP answer.
    """
    shown = " ".join(f"{b:02X}" for b in data[:limit])
    if len(data) > limit:
        shown += f" … ({len(data)} bytes)"
    return shown or "(empty)"


def nrc_name(nrc: int) -> str:
    """ISO 14229 name of a negative response code, or ``unknownNRC_0xNN`` for codes not in the table.

    The name goes into logs and records; :func:`nrc_meaning` is the text for the technician.
    """
    entry = NRC_TABLE.get(nrc)
    return entry[0] if entry else f"unknownNRC_0x{nrc & 0xFF:02X}"


def nrc_meaning(nrc: int) -> str:
    """Plain-English meaning of a negative response code, telling the technician what to do.

    Unknown codes (manufacturer-specific or reserved) still give a sentence, so the caller never
    has to special-case them.
    """
    entry = NRC_TABLE.get(nrc)
    if entry:
        return entry[1]
    return (
        f"The control unit refused with code 0x{nrc & 0xFF:02X}, which is manufacturer-specific or unknown."
    )


def parse_negative(data: bytes) -> NegativeResponse | None:
    """Recognise a ``7F SID NRC`` negative response; ``None`` if ``data`` is not one.

    The caller uses this before decoding to tell "the ECU refused" (skip, retry, or tell the
    technician) from "the ECU answered something we cannot read".

    :raises DecodeError: ``data`` starts with 7F but is not exactly three bytes long.
    """
    if not data or data[0] != NEGATIVE_RESPONSE_SID:
        return None
    if len(data) != 3:
        raise DecodeError(f"negative response must be 7F SID NRC (3 bytes), got {hex_bytes(data)}")
    service, nrc = data[1], data[2]
    return NegativeResponse(service=service, nrc=nrc, name=nrc_name(nrc), meaning=nrc_meaning(nrc))


def check_positive(data: bytes, service: int, *, min_len: int) -> bytes:
    """Verify that ``data`` is a positive answer to ``service`` and at least ``min_len`` bytes long.

    Every decoder calls this first so that a refusal, an answer to another request (ECUs on a
    shared bus sometimes send unrequested frames) or a truncated answer is reported as such
    instead of being decoded into nonsense. Returns ``data`` unchanged (as ``bytes``) so that
    offsets in the caller match the documented layouts (``49 02 01 …``).

    :raises DecodeError: negative response (the message names the NRC), wrong SID, or too short.
    """
    expected = service + _POSITIVE_OFFSET
    if not data:
        raise DecodeError(f"empty answer to service {service:02X}")
    if data[0] == NEGATIVE_RESPONSE_SID:
        negative = parse_negative(data)
        if negative is not None:
            raise DecodeError(
                f"control unit refused service {negative.service:02X} with NRC {negative.nrc:02X} "
                f"({negative.name}): {negative.meaning}"
            )
    if data[0] != expected:
        raise DecodeError(
            f"expected positive answer {expected & 0xFF:02X} to service {service:02X}, got {hex_bytes(data)}"
        )
    if len(data) < min_len:
        raise DecodeError(
            f"answer to service {service:02X} has {len(data)} bytes, needs {min_len} or more: "
            f"{hex_bytes(data)}"
        )
    return bytes(data)


def join_legacy(messages: Sequence[bytes]) -> bytes:
    """Turn one ECU's legacy multi-message answer into the single CAN-shaped message.

    Why: ISO 9141-2, KWP2000 and J1850 limit a message to 7 bytes, so long answers arrive as
    several messages with a layout of their own. Feeding them to the decoders one by one would
    lose data (a VIN is five messages) or misread it (legacy DTC frames carry no count byte).

    * ``43``/``47``/``4A`` (DTCs): each legacy frame is the SID plus 3 DTCs (6 bytes, ``00 00``
      padding, no count). The DTC bytes are concatenated, padding pairs dropped and a count byte
      computed: ``43 NN d1H d1L …``. A single even-length message is already CAN shape and is
      returned unchanged (a CAN answer is ``SID NN`` + pairs, always even; a legacy one is odd).
    * ``49 II NN dddd`` (Service 09): the per-message sequence byte ``NN`` must run 1, 2, 3, …;
      it is dropped and the data concatenated. The result is ``49 II 01`` + data for the VIN
      (02), ECU name (0A) and engine serial number (0D); for CALID (04, 16 bytes each), CVN (06,
      4 bytes each) and in-use performance counters (08/0B, 2 bytes each) the item count is
      computed. A legacy single-message InfoType bitmap ``49 00 01 AABBCCDD`` becomes
      ``49 00 AABBCCDD``.
    * Any other single message (a CAN answer, a ``7F`` refusal, ``49 01 05``) is returned
      unchanged.

    :raises DecodeError: no messages, mixed services or InfoTypes, a sequence byte out of order,
        DTC frames of the wrong length, or several messages of a service that never needs joining.
    """
    if not messages:
        raise DecodeError("no messages to join")
    if any(len(message) == 0 for message in messages):
        raise DecodeError("an empty message cannot be part of an answer")
    sid = messages[0][0]
    if any(message[0] != sid for message in messages):
        first_bytes = ", ".join(f"{message[0]:02X}" for message in messages)
        raise DecodeError(f"messages to join answer different services ({first_bytes})")
    if sid in _DTC_SIDS:
        return _join_dtc_frames(sid, messages)
    if sid == _INFOTYPE_SID:
        return _join_infotype_frames(messages)
    if len(messages) == 1:
        return bytes(messages[0])
    raise DecodeError(f"{len(messages)} messages with first byte {sid:02X} cannot be joined into one answer")


def _join_dtc_frames(sid: int, messages: Sequence[bytes]) -> bytes:
    if len(messages) == 1 and len(messages[0]) % 2 == 0:
        return bytes(messages[0])
    dtc_bytes = bytearray()
    for message in messages:
        if len(message) % 2 == 0:
            raise DecodeError(
                f"legacy DTC frame must be SID + DTC pairs (odd length), got {hex_bytes(message)}"
            )
        dtc_bytes += message[1:]
    pairs = [bytes(dtc_bytes[i : i + 2]) for i in range(0, len(dtc_bytes), 2)]
    codes = [pair for pair in pairs if pair != b"\x00\x00"]
    if len(codes) > 0xFF:
        raise DecodeError(f"{len(codes)} DTCs do not fit a one-byte count")
    return bytes([sid, len(codes)]) + b"".join(codes)


def _join_infotype_frames(messages: Sequence[bytes]) -> bytes:
    if any(len(message) < 2 for message in messages):
        raise DecodeError("a Service 09 message must carry at least 49 and the InfoType")
    itid = messages[0][1]
    if any(message[1] != itid for message in messages):
        raise DecodeError("messages to join answer different InfoTypes")
    if len(messages) == 1:
        message = bytes(messages[0])
        if itid in _BITMAP_ITIDS and len(message) == _LEGACY_BITMAP_LEN and message[2] == 0x01:
            return message[:2] + message[3:]
        return message
    if itid not in _LEGACY_ITEM_SIZES:
        raise DecodeError(f"no known rule to join {len(messages)} legacy messages of InfoType {itid:02X}")
    data = bytearray()
    for index, message in enumerate(messages, start=1):
        if len(message) < 4:
            raise DecodeError(f"legacy InfoType message without data: {hex_bytes(message)}")
        if message[2] != index:
            raise DecodeError(
                f"legacy InfoType {itid:02X} message {index} carries sequence byte {message[2]:02X}; "
                "a message is missing or out of order"
            )
        data += message[3:]
    item_size = _LEGACY_ITEM_SIZES[itid]
    if item_size is None:
        count = 1
    else:
        if len(data) % item_size:
            raise DecodeError(
                f"legacy InfoType {itid:02X} carries {len(data)} data bytes, not a multiple of {item_size}"
            )
        count = len(data) // item_size
        if count > 0xFF:
            raise DecodeError(f"{count} items of InfoType {itid:02X} do not fit a one-byte count")
    return bytes([_INFOTYPE_SID, itid, count]) + bytes(data)
