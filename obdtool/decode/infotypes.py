"""Service 09 vehicle information: VIN, calibration IDs, CVNs, ECU name and OBFCM counters.

Answers are in CAN shape, ``49 ITID NODI data…`` (NODI = number of data items); legacy answers
go through :func:`obdtool.decode.common.join_legacy` first.

Text fields are fixed-size and ``00``-padded. Only padding is stripped: a decoder must never
remove real characters (a VIN or CALID may well end in ``0``, ``1`` or ``2``). A few bytes of CAN
padding after the declared items (``AA``, ``55``, ``CC`` from adapters that ignore the ISO-TP
length) are tolerated; anything longer is an error, because it could be an undeclared item.

OBFCM (EU on-board fuel consumption monitoring): ITID 17 has a layout confirmed on a real car
and is decoded; the plug-in hybrid ITIDs 1A/1B/1C are not public and are only kept as raw hex.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from obdtool.decode.common import check_positive, hex_bytes
from obdtool.errors import DecodeError

__all__ = [
    "OBFCM_ITIDS",
    "VIN_ALPHABET",
    "Itid17",
    "ObfcmRaw",
    "VinCheck",
    "check_vin",
    "decode_calids",
    "decode_cvns",
    "decode_ecu_name",
    "decode_obfcm_itid17",
    "decode_vin",
    "keep_obfcm_raw",
    "vin_check_digit",
]

_SERVICE: Final = 0x09
_ITID_VIN: Final = 0x02
_ITID_CALID: Final = 0x04
_ITID_CVN: Final = 0x06
_ITID_ECU_NAME: Final = 0x0A
_ITID_OBFCM: Final = 0x17
# InfoTypes whose raw bytes are kept for OBFCM upload; only 17 has a verified layout.
OBFCM_ITIDS: Final = frozenset({0x17, 0x1A, 0x1B, 0x1C})

_VIN_LENGTH: Final = 17
_CALID_LENGTH: Final = 16
_CVN_LENGTH: Final = 4
_ECU_NAME_LENGTH: Final = 20
_ITID17_LENGTH: Final = 16
_NOT_AVAILABLE: Final = 0xFFFFFFFF
# Most CAN padding an adapter can leave after the last ISO-TP frame (8-byte frame, >= 1 data byte).
_MAX_TRAILING_PADDING: Final = 6
# Bytes that pad a VIN or ECU name field and can never be part of one.
_TEXT_PADDING: Final = b"\x00 \xaa\xcc\xff"

VIN_ALPHABET: Final = frozenset("0123456789ABCDEFGHJKLMNPRSTUVWXYZ")
_VIN_VALUES: Final = {
    **{digit: int(digit) for digit in "0123456789"},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_VIN_WEIGHTS: Final = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_CHECK_DIGIT_POSITION: Final = 9  # 1-based, as printed in the standards


@dataclass(frozen=True, slots=True)
class VinCheck:
    """Result of :func:`check_vin`: ``valid`` is False exactly when ``errors`` is not empty.

    Warnings (a failing check digit) do not make a VIN invalid: the check digit is mandatory
    only in North America and many European VINs fail it.
    """

    vin: str
    valid: bool
    errors: tuple[str, ...]
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Itid17:
    """OBFCM ITID 17: distance and fuel, recent and lifetime; ``None`` where the ECU sent FFFFFFFF.

    Lifetime distance and fuel are OBFCM parameters 2 and 1. ``raw_hex`` is the whole answer as
    received (upper-case hex), kept for the upload record and for re-decoding later.
    """

    recent_distance_km: float | None
    lifetime_distance_km: float | None
    recent_fuel_l: float | None
    lifetime_fuel_l: float | None
    raw_hex: str


@dataclass(frozen=True, slots=True)
class ObfcmRaw:
    """An OBFCM InfoType kept undecoded: ``raw_hex`` is the whole answer as received.

    ``verified`` is False because no public layout exists for 1A/1B/1C; values are decoded
    later, once a layout has been confirmed on real vehicles.
    """

    itid: int
    raw_hex: str
    verified: bool = False


def _infotype(data: bytes, itid: int, what: str, *, min_len: int = 3) -> bytes:
    check_positive(data, _SERVICE, min_len=2)
    if data[1] != itid:
        raise DecodeError(f"expected InfoType {itid:02X} ({what}), got {data[1]:02X}: {hex_bytes(data)}")
    if len(data) < min_len:
        raise DecodeError(f"{what} answer is {len(data)} bytes, needs at least {min_len}: {hex_bytes(data)}")
    return bytes(data)


def _items(data: bytes, itid: int, size: int, what: str) -> list[bytes]:
    """Split ``49 ITID NN`` + NN items of ``size`` bytes, tolerating a little trailing CAN padding."""
    message = _infotype(data, itid, what)
    count = message[2]
    end = 3 + count * size
    if len(message) < end:
        raise DecodeError(
            f"{what} answer declares {count} item(s) of {size} bytes but carries {len(message) - 3}: "
            f"{hex_bytes(message)}"
        )
    _check_trailing(message[end:], what)
    return [message[i : i + size] for i in range(3, end, size)]


def _check_trailing(extra: bytes, what: str) -> None:
    if not extra:
        return
    if len(extra) > _MAX_TRAILING_PADDING or len(set(extra)) != 1:
        raise DecodeError(
            f"{what} answer has {len(extra)} byte(s) after the declared items that do not look like "
            f"CAN padding: {hex_bytes(extra)}"
        )


def _ascii(raw: bytes, what: str) -> str:
    bad = [b for b in raw if not 0x20 <= b <= 0x7E]
    if bad:
        raise DecodeError(f"{what} contains byte(s) that are not printable ASCII: {hex_bytes(bytes(bad))}")
    return raw.decode("ascii")


def decode_vin(data: bytes) -> str:
    """The VIN from a ``49 02 01`` + 17 ASCII bytes answer, padding stripped.

    The VIN links every record to the vehicle, so only padding is removed: ``00``, space and
    the CAN padding values ``AA``/``CC``/``FF`` at either end (legacy cars pad the front with
    ``00 00 00``). Real characters such as a trailing ``0``, ``1`` or ``2`` are kept. The result
    is not validated; use :func:`check_vin`. An ECU that stores no VIN gives ``""``.

    :raises DecodeError: not a 49 02 answer, NODI is not 01, or a non-printable byte inside.
    """
    message = _infotype(data, _ITID_VIN, "VIN", min_len=3)
    if message[2] != 0x01:
        raise DecodeError(f"VIN answer must carry one data item (01), got {message[2]:02X}")
    return _ascii(message[3:].strip(_TEXT_PADDING), "VIN")


def vin_check_digit(vin: str) -> str | None:
    """The ISO 3779 / 49 CFR 565 check digit (``0``-``9`` or ``X``) for a 17-character VIN.

    ``None`` when it cannot be computed (wrong length or a character outside the VIN alphabet).
    """
    if len(vin) != _VIN_LENGTH or not set(vin) <= VIN_ALPHABET:
        return None
    remainder = sum(_VIN_VALUES[char] * weight for char, weight in zip(vin, _VIN_WEIGHTS, strict=True)) % 11
    return "X" if remainder == 10 else str(remainder)


def check_vin(vin: str) -> VinCheck:
    """Check a VIN before it is used as the key of a record or upload.

    Errors (the VIN is unusable): not exactly 17 characters, or characters outside
    ``0-9 A-H J-N P R-Z`` (I, O and Q are never used; lower case is not accepted). A check digit
    (position 9) that does not match the North-American calculation is only a warning, because
    European manufacturers need not use it.
    """
    errors: list[str] = []
    warnings: list[str] = []
    if len(vin) != _VIN_LENGTH:
        errors.append(f"VIN has {len(vin)} characters, a VIN has exactly {_VIN_LENGTH}")
    bad = [f"{char!r} at position {pos}" for pos, char in enumerate(vin, start=1) if char not in VIN_ALPHABET]
    if bad:
        errors.append(
            "VIN contains characters that no VIN uses (allowed: 0-9, A-Z without I, O, Q): " + ", ".join(bad)
        )
    if not errors:
        expected = vin_check_digit(vin)
        actual = vin[_CHECK_DIGIT_POSITION - 1]
        if expected != actual:
            warnings.append(
                f"check digit (position {_CHECK_DIGIT_POSITION}) is {actual!r}, the ISO 3779 "
                f"calculation gives {expected!r}; common for European vehicles, "
                "required only in North America"
            )
    return VinCheck(vin=vin, valid=not errors, errors=tuple(errors), warnings=tuple(warnings))


def decode_calids(data: bytes) -> list[str]:
    """All calibration IDs from ``49 04 NN`` + NN × 16 bytes ASCII.

    CALIDs are the legislated software identifiers; every one is kept, in order, even an empty
    one, so the list lines up with :func:`decode_cvns`. Only trailing ``00`` padding is removed.

    :raises DecodeError: not a 49 04 answer, fewer bytes than declared, unexpected trailing
        bytes, or a non-printable byte inside a CALID.
    """
    return [
        _ascii(item.rstrip(b"\x00"), f"CALID {index}")
        for index, item in enumerate(_items(data, _ITID_CALID, _CALID_LENGTH, "CALID"), start=1)
    ]


def decode_cvns(data: bytes) -> list[str]:
    """All calibration verification numbers from ``49 06 NN`` + NN × 4 bytes, as 8 upper-case hex chars.

    A CVN is a checksum over the calibration; it proves the software matches its CALID.

    :raises DecodeError: not a 49 06 answer, fewer bytes than declared, or unexpected trailing bytes.
    """
    return [item.hex().upper() for item in _items(data, _ITID_CVN, _CVN_LENGTH, "CVN")]


def decode_ecu_name(data: bytes) -> str:
    """The ECU name from ``49 0A 01`` + 20 bytes ASCII, e.g. ``ECM-EngineControl``.

    The field is an acronym and a name around a ``-``, each padded; ``00`` bytes are removed
    and the parts stripped of padding, so ``"ECM\\0-EngineControl\\0\\0\\0"`` reads
    ``"ECM-EngineControl"``.

    :raises DecodeError: not a 49 0A answer, NODI is not 01, not 20 bytes, or non-printable bytes.
    """
    items = _items(data, _ITID_ECU_NAME, _ECU_NAME_LENGTH, "ECU name")
    if len(items) != 1:
        raise DecodeError(f"ECU name answer must carry one data item (01), got {len(items)}")
    text = _ascii(items[0].replace(b"\x00", b""), "ECU name")
    if "-" in text:
        acronym, name = text.split("-", 1)
        return f"{acronym.strip()}-{name.strip()}"
    return text.strip()


def _scaled(raw: bytes, divisor: int) -> float | None:
    value = int.from_bytes(raw, "big")
    # True division of an int is correctly rounded: 12512 / 10 is exactly the float 1251.2.
    return None if value == _NOT_AVAILABLE else value / divisor


def decode_obfcm_itid17(data: bytes) -> Itid17:
    """OBFCM distance and fuel from ``49 17 01`` + four uint32 big-endian counters.

    Order: recent distance (0.1 km), lifetime distance (0.1 km), recent fuel (0.01 l),
    lifetime fuel (0.01 l); FFFFFFFF means "not available" (BEVs for fuel) and becomes None.
    The raw answer is kept so that the upload can carry exactly what the car said.

    :raises DecodeError: not a 49 17 answer, NODI is not 01, or not 16 data bytes.
    """
    message = _infotype(data, _ITID_OBFCM, "OBFCM ITID 17")
    if message[2] != 0x01:
        raise DecodeError(f"OBFCM ITID 17 answer must carry one data item (01), got {message[2]:02X}")
    (record,) = _items(message, _ITID_OBFCM, _ITID17_LENGTH, "OBFCM ITID 17")
    return Itid17(
        recent_distance_km=_scaled(record[0:4], 10),
        lifetime_distance_km=_scaled(record[4:8], 10),
        recent_fuel_l=_scaled(record[8:12], 100),
        lifetime_fuel_l=_scaled(record[12:16], 100),
        raw_hex=message.hex().upper(),
    )


def keep_obfcm_raw(data: bytes) -> ObfcmRaw:
    """Keep an OBFCM answer (``49 1A``/``1B``/``1C``, or ``49 17`` that failed to decode) as raw hex.

    Only the ``49 ITID`` header and the presence of data are checked; no layout is guessed, so
    nothing wrong can be uploaded as a value. ``verified`` is always False.

    :raises DecodeError: not a Service 09 answer, not an OBFCM InfoType, or no byte after the header.
    """
    message = check_positive(data, _SERVICE, min_len=3)
    if message[1] not in OBFCM_ITIDS:
        raise DecodeError(f"InfoType {message[1]:02X} is not an OBFCM InfoType (17, 1A, 1B, 1C)")
    return ObfcmRaw(itid=message[1], raw_hex=message.hex().upper())
