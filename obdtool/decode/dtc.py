"""Diagnostic trouble codes: OBD Services 03/07/0A (2-byte codes) and UDS 3-byte codes.

Two bytes per OBD code: bits 7-6 of the first byte pick the system (P, C, B, U), bits 5-4 the
first digit, the remaining 12 bits are three hex digits (``01 33`` → P0133). ``00 00`` is padding,
never a code. UDS adds a third byte, the failure type, written ``P0123-45``, and a status byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from obdtool.decode.common import check_positive, hex_bytes
from obdtool.errors import DecodeError
from obdtool.pyobd import dtc_description

__all__ = [
    "DTC_SERVICES",
    "UDS_STATUS_BITS",
    "DtcList",
    "describe_dtc",
    "dtc_from_bytes",
    "parse_dtc_list",
    "parse_dtc_response",
    "uds_dtc_to_str",
    "uds_status_flags",
]

# Service -> what its DTCs are, for messages and records.
DTC_SERVICES: Final[Mapping[int, str]] = MappingProxyType(
    {0x03: "confirmed", 0x07: "pending", 0x0A: "permanent"}
)

_SYSTEMS: Final = "PCBU"

# UDS DTC status byte, bit 0 first (ISO 14229-1).
UDS_STATUS_BITS: Final = (
    "testFailed",
    "testFailedThisOperationCycle",
    "pendingDTC",
    "confirmedDTC",
    "testNotCompletedSinceLastClear",
    "testFailedSinceLastClear",
    "testNotCompletedThisOperationCycle",
    "warningIndicatorRequested",
)


@dataclass(frozen=True, slots=True)
class DtcList:
    """Codes found in one ECU's answer plus the count the ECU declared.

    ECUs sometimes declare a count that differs from the pairs they send; the codes present
    are the truth, and :attr:`count_mismatch` lets the caller warn the technician.
    ``declared_count`` is ``None`` when the answer shape has no count.
    """

    codes: tuple[str, ...]
    declared_count: int | None

    @property
    def count_mismatch(self) -> bool:
        """True when the ECU declared a count that differs from the codes actually sent."""
        return self.declared_count is not None and self.declared_count != len(self.codes)


def _byte(value: int, what: str) -> int:
    if not 0 <= value <= 0xFF:
        raise DecodeError(f"{what} must be a byte (0-255), got {value}")
    return value


def dtc_from_bytes(b0: int, b1: int) -> str:
    """Format two DTC bytes as the five-character code technicians look up (``P0133``).

    ``00 00`` formats as ``P0000``; callers that read DTC lists drop it as padding.

    :raises DecodeError: a value is not a byte.
    """
    _byte(b0, "DTC high byte")
    _byte(b1, "DTC low byte")
    return f"{_SYSTEMS[b0 >> 6]}{(b0 >> 4) & 0x3}{b0 & 0xF:X}{b1:02X}"


def parse_dtc_list(data: bytes, service: int) -> DtcList:
    """Decode a CAN-shaped ``43``/``47``/``4A`` answer ``SID NN d1H d1L …`` into a :class:`DtcList`.

    ``00 00`` pairs are padding and dropped. The pairs present are returned even when ``NN``
    disagrees with them, so no code the ECU sent is hidden. Legacy answers (no count byte)
    must go through :func:`obdtool.decode.common.join_legacy` first; their odd length is
    rejected here instead of misreading the first DTC byte as a count.

    :raises DecodeError: ``service`` is not 03/07/0A, the answer is for another service or
        refused, or a DTC pair is cut in half.
    """
    if service not in DTC_SERVICES:
        raise DecodeError(f"service {service:02X} does not report DTCs; use 03, 07 or 0A")
    check_positive(data, service, min_len=2)
    if len(data) % 2:
        raise DecodeError(
            f"DTC answer has an odd length ({len(data)}): a cut DTC or a legacy answer that was not joined: "
            f"{hex_bytes(data)}"
        )
    codes = tuple(
        dtc_from_bytes(data[i], data[i + 1]) for i in range(2, len(data), 2) if data[i] or data[i + 1]
    )
    return DtcList(codes=codes, declared_count=data[1])


def parse_dtc_response(data: bytes, service: int) -> list[str]:
    """The DTC codes of a ``43``/``47``/``4A`` answer; see :func:`parse_dtc_list` for the rules.

    Use :func:`parse_dtc_list` when the declared count matters (to warn on a mismatch).

    :raises DecodeError: as :func:`parse_dtc_list`.
    """
    return list(parse_dtc_list(data, service).codes)


def describe_dtc(code: str) -> str | None:
    """Generic SAE description of a code (``P0001`` → "Fuel Volume Regulator Control Circuit/Open").

    UDS codes with a failure type (``P0123-45``) are looked up by their first five characters.
    ``None`` when the code is manufacturer-specific, unknown, or descriptions are unavailable
    (python-OBD not installed); the technician then needs the manufacturer's documentation.
    """
    return dtc_description(code.strip().upper().split("-", 1)[0])


def uds_dtc_to_str(b0: int, b1: int, b2: int) -> str:
    """Format a 3-byte UDS DTC as ``P0123-45``: the OBD code plus the failure-type byte.

    :raises DecodeError: a value is not a byte.
    """
    return f"{dtc_from_bytes(b0, b1)}-{_byte(b2, 'DTC failure type byte'):02X}"


def uds_status_flags(status: int) -> list[str]:
    """Names of the bits set in a UDS DTC status byte, bit 0 first.

    Tells the technician whether a code is active now (testFailed), stored (confirmedDTC),
    pending, or lights the MIL (warningIndicatorRequested).

    :raises DecodeError: ``status`` is not a byte.
    """
    _byte(status, "DTC status")
    return [name for bit, name in enumerate(UDS_STATUS_BITS) if status >> bit & 1]
