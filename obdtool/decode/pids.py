"""Service 01 (current data) and 02 (freeze frame) PIDs: bitmaps, monitor status and values.

A table-driven design: :data:`PIDS` says, per PID, how many bytes it has, its unit and how to
decode it. The same table splits multi-PID answers (``41 0C 1AF8 0D 00``), which carry no length
fields, so a wrong length here would shift every following value; every decoder therefore checks
that its payload has exactly the table length and never pads or truncates.

Payloads are the bytes *after* ``41 PID`` (or ``42 PID FRAME``). Values are plain ``int``,
``float`` (rounded to the PID's resolution), ``str`` or :class:`MonitorStatus`, so records can
be written as JSON without conversion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, TypeAlias

from obdtool.decode.common import check_positive, hex_bytes
from obdtool.decode.dtc import dtc_from_bytes
from obdtool.errors import DecodeError

__all__ = [
    "FUEL_TYPES",
    "OBD_STANDARDS",
    "PIDS",
    "PID_LENGTHS",
    "MonitorStatus",
    "PidSpec",
    "PidValue",
    "decode_coolant_temp",
    "decode_distance_since_clear",
    "decode_distance_with_mil",
    "decode_freeze_frame_dtc",
    "decode_fuel_rate",
    "decode_fuel_type",
    "decode_monitor_status",
    "decode_obd_standard",
    "decode_odometer",
    "decode_pid",
    "decode_rpm",
    "decode_run_time",
    "decode_speed",
    "decode_time_since_clear",
    "decode_time_with_mil",
    "decode_warm_ups",
    "parse_bitmap_response",
    "parse_freeze_frame",
    "parse_freeze_frame_multi",
    "split_multi_pid",
    "supported_from_bitmap",
]

_CURRENT_DATA: Final = 0x01
_FREEZE_FRAME: Final = 0x02
_BITMAP_SIDS: Final = frozenset({0x41, 0x49})
_BITMAP_BASES: Final = frozenset(range(0x00, 0x100, 0x20))
_FREEZE_FRAME_DTC_PID: Final = 0x02

Ignition: TypeAlias = Literal["spark", "compression"]

# PID 01 byte B, bits 0-2 (supported) and 4-6 (incomplete): the same for every engine.
_COMMON_MONITORS: Final = ("misfire", "fuel_system", "components")
# PID 01 bytes C (supported) and D (incomplete), bit 0 first; None = reserved bit.
_SPARK_MONITORS: Final[tuple[str | None, ...]] = (
    "catalyst",
    "heated_catalyst",
    "evaporative_system",
    "secondary_air_system",
    "ac_refrigerant",
    "oxygen_sensor",
    "oxygen_sensor_heater",
    "egr_system",
)
_COMPRESSION_MONITORS: Final[tuple[str | None, ...]] = (
    "nmhc_catalyst",
    "nox_scr_aftertreatment",
    None,
    "boost_pressure",
    None,
    "exhaust_gas_sensor",
    "pm_filter",
    "egr_vvt_system",
)

# PID 1C: which OBD regulation the ECU was certified to.
OBD_STANDARDS: Final[Mapping[int, str]] = MappingProxyType(
    {
        0x01: "OBD-II (CARB)",
        0x02: "OBD (EPA)",
        0x03: "OBD and OBD-II",
        0x04: "OBD-I",
        0x05: "not OBD compliant",
        0x06: "EOBD",
        0x07: "EOBD and OBD-II",
        0x08: "EOBD and OBD",
        0x09: "EOBD, OBD and OBD-II",
        0x0A: "JOBD",
        0x0B: "JOBD and OBD-II",
        0x0C: "JOBD and EOBD",
        0x0D: "JOBD, EOBD and OBD-II",
    }
)

# PID 51: fuel the vehicle is set up for (decides spark vs compression plausibility checks).
FUEL_TYPES: Final[Mapping[int, str]] = MappingProxyType(
    {
        0x00: "not available",
        0x01: "gasoline",
        0x02: "methanol",
        0x03: "ethanol",
        0x04: "diesel",
        0x05: "LPG",
        0x06: "CNG",
        0x07: "propane",
        0x08: "electric",
        0x09: "bifuel gasoline",
        0x0A: "bifuel methanol",
        0x0B: "bifuel ethanol",
        0x0C: "bifuel LPG",
        0x0D: "bifuel CNG",
        0x0E: "bifuel propane",
        0x0F: "bifuel electricity",
        0x10: "bifuel electric and combustion",
        0x11: "hybrid gasoline",
        0x12: "hybrid ethanol",
        0x13: "hybrid diesel",
        0x14: "hybrid electric",
        0x15: "hybrid electric and combustion",
        0x16: "hybrid regenerative",
        0x17: "bifuel diesel",
    }
)


@dataclass(frozen=True, slots=True)
class MonitorStatus:
    """PID 01: MIL, confirmed-DTC count and readiness monitors of one ECU.

    ``supported`` and ``incomplete`` map every monitor name to its bit; a monitor is "not ready"
    (the inspection-relevant fact) when it is supported *and* incomplete, see :attr:`not_ready`.
    The names of the byte C/D monitors depend on ``ignition``.
    """

    mil_on: bool
    dtc_count: int
    ignition: Ignition
    supported: dict[str, bool]
    incomplete: dict[str, bool]

    @property
    def not_ready(self) -> tuple[str, ...]:
        """Monitors that are supported but have not completed since the last clear."""
        return tuple(name for name, flag in self.supported.items() if flag and self.incomplete[name])


# What a PID decodes to: plain values, so that records serialise to JSON as they are.
PidValue: TypeAlias = float | int | str | tuple[int, ...] | MonitorStatus


@dataclass(frozen=True, slots=True)
class PidSpec:
    """One row of the PID table: length in bytes after ``41 PID``, unit, decoder."""

    pid: int
    name: str
    length: int
    unit: str
    decode: Callable[[bytes], PidValue]


def _payload(payload: bytes, length: int, what: str) -> bytes:
    if len(payload) != length:
        raise DecodeError(f"{what} needs {length} data bytes, got {len(payload)}: {hex_bytes(payload)}")
    return bytes(payload)


def _uint(payload: bytes, length: int, what: str) -> int:
    return int.from_bytes(_payload(payload, length, what), "big")


def supported_from_bitmap(base: int, data4: bytes) -> set[int]:
    """PIDs announced as supported by a 4-byte bitmap answering PID ``base`` (00, 20, …, E0).

    Bit 7 of byte A is ``base + 1`` and bit 0 of byte D is ``base + 32``; that last bit says
    whether the next bitmap exists, which is how the caller knows whether to ask for it. The
    scan only asks for what is announced, saving a timeout per unsupported PID. ``base + 32`` is
    left out for base E0 because no PID 0x100 exists.

    :raises DecodeError: ``data4`` is not 4 bytes or ``base`` is not a multiple of 0x20 up to E0.
    """
    if base not in _BITMAP_BASES:
        raise DecodeError(f"supported-PID bitmaps answer 00, 20, …, E0, not {base:#04x}")
    bits = _uint(data4, 4, f"supported-PID bitmap {base:02X}")
    return {base + 32 - shift for shift in range(32) if bits >> shift & 1 and base + 32 - shift <= 0xFF}


def parse_bitmap_response(data: bytes) -> tuple[int, set[int]]:
    """Decode ``41 BB AABBCCDD`` (PIDs) or ``49 BB AABBCCDD`` (InfoTypes) into (base, supported).

    Legacy Service 09 bitmaps carry an extra ``01`` sequence byte; pass them through
    :func:`obdtool.decode.common.join_legacy` first.

    :raises DecodeError: not a 41/49 answer, base not a multiple of 0x20, or not 6 bytes.
    """
    if not data or data[0] not in _BITMAP_SIDS:
        raise DecodeError(f"expected a 41 or 49 supported bitmap answer, got {hex_bytes(data)}")
    check_positive(data, data[0] - 0x40, min_len=6)
    if len(data) != 6:
        raise DecodeError(f"a supported bitmap answer is 6 bytes, got {len(data)}: {hex_bytes(data)}")
    base = data[1]
    return base, supported_from_bitmap(base, data[2:6])


def decode_monitor_status(payload4: bytes) -> MonitorStatus:
    """PID 01: MIL lamp, number of confirmed DTCs, spark/compression and readiness monitors.

    This is what a technician checks before an inspection (MIL off, monitors complete) and
    after clearing codes (all monitors reset to incomplete).

    :raises DecodeError: payload is not 4 bytes.
    """
    a, b, c, d = _payload(payload4, 4, "PID 01 monitor status")
    ignition: Ignition = "compression" if b & 0x08 else "spark"
    supported: dict[str, bool] = {}
    incomplete: dict[str, bool] = {}
    for bit, name in enumerate(_COMMON_MONITORS):
        supported[name] = bool(b >> bit & 1)
        incomplete[name] = bool(b >> (bit + 4) & 1)
    names = _COMPRESSION_MONITORS if ignition == "compression" else _SPARK_MONITORS
    for bit, maybe_name in enumerate(names):
        if maybe_name is not None:
            supported[maybe_name] = bool(c >> bit & 1)
            incomplete[maybe_name] = bool(d >> bit & 1)
    return MonitorStatus(
        mil_on=bool(a & 0x80),
        dtc_count=a & 0x7F,
        ignition=ignition,
        supported=supported,
        incomplete=incomplete,
    )


def decode_odometer(payload: bytes) -> float:
    """PID A6: odometer in km, 0.1 km resolution ((A<<24 | B<<16 | C<<8 | D) / 10).

    Only recent ECUs have it; it is the legal mileage source for OBFCM plausibility checks.
    """
    return _uint(payload, 4, "PID A6 odometer") / 10


def decode_distance_with_mil(payload: bytes) -> int:
    """PID 21: km driven with the MIL on (256A + B, caps at 65535); shows how long a fault was ignored."""
    return _uint(payload, 2, "PID 21 distance with MIL on")


def decode_distance_since_clear(payload: bytes) -> int:
    """PID 31: km since DTCs were last cleared (caps at 65535); a small value hints at a recent clear."""
    return _uint(payload, 2, "PID 31 distance since clear")


def decode_time_with_mil(payload: bytes) -> int:
    """PID 4D: engine run time with the MIL on, minutes."""
    return _uint(payload, 2, "PID 4D time with MIL on")


def decode_time_since_clear(payload: bytes) -> int:
    """PID 4E: time since DTCs were last cleared, minutes; read it before clearing, it resets."""
    return _uint(payload, 2, "PID 4E time since clear")


def decode_warm_ups(payload: bytes) -> int:
    """PID 30: warm-up cycles since DTCs were cleared (caps at 255); readiness needs several."""
    return _uint(payload, 1, "PID 30 warm-ups since clear")


def decode_rpm(payload: bytes) -> float:
    """PID 0C: engine speed in rpm, 0.25 rpm resolution ((256A + B) / 4); tells engine running or not."""
    return _uint(payload, 2, "PID 0C engine speed") / 4


def decode_speed(payload: bytes) -> int:
    """PID 0D: vehicle speed in km/h; clearing and some reads require a stationary vehicle."""
    return _uint(payload, 1, "PID 0D vehicle speed")


def decode_coolant_temp(payload: bytes) -> int:
    """PID 05: engine coolant temperature in °C (A − 40)."""
    return _uint(payload, 1, "PID 05 coolant temperature") - 40


def decode_obd_standard(payload: bytes) -> str:
    """PID 1C: the OBD regulation the ECU conforms to (EOBD, OBD-II, …) as a name.

    Codes outside :data:`OBD_STANDARDS` come back as ``"other (0xNN)"`` so that nothing is lost.
    """
    code = _uint(payload, 1, "PID 1C OBD standard")
    return OBD_STANDARDS.get(code, f"other (0x{code:02X})")


def decode_fuel_type(payload: bytes) -> str:
    """PID 51: fuel type name; decides which OBFCM parameters apply (BEVs have none).

    Codes outside :data:`FUEL_TYPES` come back as ``"other (0xNN)"``.
    """
    code = _uint(payload, 1, "PID 51 fuel type")
    return FUEL_TYPES.get(code, f"other (0x{code:02X})")


def decode_run_time(payload: bytes) -> int:
    """PID 1F: seconds since engine start."""
    return _uint(payload, 2, "PID 1F run time")


def decode_fuel_rate(payload: bytes) -> float:
    """PID 5E: engine fuel rate in l/h, 0.05 l/h resolution ((256A + B) / 20)."""
    return _uint(payload, 2, "PID 5E fuel rate") / 20


def _linear(length: int, scale: float, offset: float, what: str) -> Callable[[bytes], PidValue]:
    """A decoder for the many PIDs that are ``raw * scale + offset`` (rounded to 2 decimals)."""

    def decode(payload: bytes) -> float:
        return round(_uint(payload, length, what) * scale + offset, 2)

    decode.__doc__ = f"{what}: raw x {scale:g} + {offset:g}."
    return decode


def _bitmap_decoder(base: int) -> Callable[[bytes], PidValue]:
    def decode(payload: bytes) -> tuple[int, ...]:
        return tuple(sorted(supported_from_bitmap(base, payload)))

    decode.__doc__ = f"PID {base:02X}: supported PIDs {base + 1:02X}-{min(base + 32, 0xFF):02X}, sorted."
    return decode


_SPECS: Final = (
    *(
        PidSpec(b, f"supported_pids_{b + 1:02x}_{min(b + 32, 0xFF):02x}", 4, "", _bitmap_decoder(b))
        for b in range(0, 256, 32)
    ),
    PidSpec(0x01, "monitor_status", 4, "", decode_monitor_status),
    PidSpec(0x04, "engine_load", 1, "%", _linear(1, 100 / 255, 0, "PID 04 engine load")),
    PidSpec(0x05, "coolant_temperature", 1, "°C", decode_coolant_temp),
    PidSpec(0x06, "short_term_fuel_trim_b1", 1, "%", _linear(1, 100 / 128, -100, "PID 06 fuel trim")),
    PidSpec(0x07, "long_term_fuel_trim_b1", 1, "%", _linear(1, 100 / 128, -100, "PID 07 fuel trim")),
    PidSpec(0x0B, "intake_manifold_pressure", 1, "kPa", _linear(1, 1, 0, "PID 0B manifold pressure")),
    PidSpec(0x0E, "timing_advance", 1, "°", _linear(1, 0.5, -64, "PID 0E timing advance")),
    PidSpec(0x0F, "intake_air_temperature", 1, "°C", _linear(1, 1, -40, "PID 0F intake temperature")),
    PidSpec(0x10, "maf_air_flow", 2, "g/s", _linear(2, 0.01, 0, "PID 10 air flow")),
    PidSpec(0x11, "throttle_position", 1, "%", _linear(1, 100 / 255, 0, "PID 11 throttle position")),
    PidSpec(0x0C, "engine_rpm", 2, "rpm", decode_rpm),
    PidSpec(0x0D, "vehicle_speed", 1, "km/h", decode_speed),
    PidSpec(0x1C, "obd_standard", 1, "", decode_obd_standard),
    PidSpec(0x1F, "run_time_since_start", 2, "s", decode_run_time),
    PidSpec(0x21, "distance_with_mil_on", 2, "km", decode_distance_with_mil),
    PidSpec(0x30, "warm_ups_since_clear", 1, "count", decode_warm_ups),
    PidSpec(0x31, "distance_since_clear", 2, "km", decode_distance_since_clear),
    PidSpec(0x4D, "time_with_mil_on", 2, "min", decode_time_with_mil),
    PidSpec(0x4E, "time_since_clear", 2, "min", decode_time_since_clear),
    PidSpec(0x51, "fuel_type", 1, "", decode_fuel_type),
    PidSpec(0x5E, "engine_fuel_rate", 2, "l/h", decode_fuel_rate),
    PidSpec(0xA6, "odometer", 4, "km", decode_odometer),
)

PIDS: Final[Mapping[int, PidSpec]] = MappingProxyType({spec.pid: spec for spec in _SPECS})
PID_LENGTHS: Final[Mapping[int, int]] = MappingProxyType({spec.pid: spec.length for spec in _SPECS})


def decode_pid(pid: int, payload: bytes) -> PidValue:
    """Decode the payload of one Service 01 PID (bytes after ``41 PID``) using :data:`PIDS`.

    :raises DecodeError: PID not in the table, or payload length differs from the table.
    """
    spec = PIDS.get(pid)
    if spec is None:
        raise DecodeError(f"PID {pid & 0xFF:02X} is not in obdtool's PID table")
    return spec.decode(payload)


def split_multi_pid(data: bytes, lengths: Mapping[int, int] = PID_LENGTHS) -> dict[int, bytes]:
    """Split a multi-PID answer ``41 P1 d… P2 d…`` into ``{pid: payload}``.

    Why: CAN ECUs answer up to six PIDs in one message with no length fields, so the only way to
    find where a PID ends is its known length. A PID missing from ``lengths`` makes the rest
    unreadable, hence an error rather than a guess; a single-PID answer of such a PID is simply
    ``data[2:]``.

    :raises DecodeError: not a 41 answer, no PID, a PID not in ``lengths``, a PID repeated, or
        the data ends inside a PID.
    """
    check_positive(data, _CURRENT_DATA, min_len=2)
    result: dict[int, bytes] = {}
    pos = 1
    while pos < len(data):
        pid = data[pos]
        length = lengths.get(pid)
        if length is None:
            raise DecodeError(
                f"PID {pid:02X} at byte {pos} has no known length; cannot split {hex_bytes(data)}"
            )
        if pid in result:
            raise DecodeError(f"PID {pid:02X} appears twice in {hex_bytes(data)}")
        payload = data[pos + 1 : pos + 1 + length]
        if len(payload) != length:
            raise DecodeError(f"PID {pid:02X} needs {length} bytes, answer ends after {len(payload)}")
        result[pid] = bytes(payload)
        pos += 1 + length
    return result


def parse_freeze_frame(data: bytes) -> tuple[int, int, bytes]:
    """Split a Service 02 answer ``42 PID FRAME data…`` into (pid, frame number, payload).

    The freeze frame is the snapshot stored when a DTC set; the payload decodes like Service 01
    (:func:`decode_pid`). When the PID has a known length the payload must match it exactly.

    :raises DecodeError: not a 42 answer, no data, or a payload of the wrong length.
    """
    check_positive(data, _FREEZE_FRAME, min_len=4)
    pid, frame, payload = data[1], data[2], bytes(data[3:])
    expected = 2 if pid == _FREEZE_FRAME_DTC_PID else PID_LENGTHS.get(pid)
    if expected is not None and len(payload) != expected:
        raise DecodeError(f"freeze frame PID {pid:02X} needs {expected} bytes, got {len(payload)}")
    return pid, frame, payload


def parse_freeze_frame_multi(data: bytes) -> list[tuple[int, int, bytes]]:
    """Split a multi-PID Service 02 answer ``42 PID FRAME data [PID FRAME data ...]``.

    Asking for up to three (PID, frame) pairs in one request saves two round trips per frame on
    CAN; each payload's length comes from the PID table, so an unknown PID ends the split.

    :raises DecodeError: not a 42 answer, an unknown PID, or truncated data.
    """
    check_positive(data, _FREEZE_FRAME, min_len=4)
    out: list[tuple[int, int, bytes]] = []
    i = 1
    while i < len(data):
        if len(data) - i < 3:
            raise DecodeError(f"freeze frame answer truncated at byte {i}: {hex_bytes(data)}")
        pid, frame = data[i], data[i + 1]
        length = 2 if pid == _FREEZE_FRAME_DTC_PID else PID_LENGTHS.get(pid)
        if length is None:
            raise DecodeError(f"freeze frame PID {pid:02X} has no known length: {hex_bytes(data)}")
        payload = bytes(data[i + 2 : i + 2 + length])
        if len(payload) != length:
            raise DecodeError(f"freeze frame PID {pid:02X} needs {length} bytes, got {len(payload)}")
        out.append((pid, frame, payload))
        i += 2 + length
    return out


def decode_freeze_frame_dtc(data: bytes) -> str | None:
    """Decode ``42 02 FRAME HH LL``: the DTC that stored the freeze frame, ``None`` for ``00 00``.

    Tells the technician which fault the snapshot belongs to; 0000 means no frame is stored.

    :raises DecodeError: not a 42 answer for PID 02, or not exactly 5 bytes.
    """
    pid, _frame, payload = parse_freeze_frame(data)
    if pid != _FREEZE_FRAME_DTC_PID:
        raise DecodeError(f"expected freeze frame PID 02, got PID {pid:02X}")
    if payload == b"\x00\x00":
        return None
    return dtc_from_bytes(payload[0], payload[1])
