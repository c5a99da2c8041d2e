"""UDS (ISO 14229) answers of the virtual car.

:class:`adapters.sim.car.VirtualCar` hands every request with a service ID of 0x10 or more to
:func:`handle_uds`. The answers are derived from the same ECU state as the OBD services -- a fault stored
for Service 03 is a confirmed DTC for ``19 02``, a ``14 FF FF FF`` clears what Service 04 clears -- so the
two views of one car can never disagree. What UDS adds (identification DIDs, an odometer DID, DTCs only
UDS reports, DIDs that need the extended session) comes from the ECU's ``[ecus.uds]`` scenario table,
documented at the top of ``fixtures/scenarios/uds.toml``.

Only the services a workshop read-out uses are answered: 10 (sessions 01 and 03), 3E, 19 01/02, 22 and
14. Everything else is ``7F sid 11`` -- and silence for functional requests, which must not provoke
NRC 11, 12, 31, 7E or 7F (ISO 14229-1).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from adapters.sim.car import VirtualEcu, encode_dtc
from adapters.sim.scenario import EcuSpec, Scenario, ScenarioError

__all__ = ["UdsTable", "dtc_records", "handle_uds", "parse_uds_table", "uds_table", "validate_uds"]

NRC_SERVICE_NOT_SUPPORTED = 0x11
NRC_SUBFUNCTION_NOT_SUPPORTED = 0x12
NRC_INCORRECT_LENGTH = 0x13
NRC_BUSY = 0x21
NRC_CONDITIONS_NOT_CORRECT = 0x22
NRC_OUT_OF_RANGE = 0x31
NRC_PENDING = 0x78
# ISO 14229-1: a server keeps these to itself when the request was functional.
_SILENT_WHEN_FUNCTIONAL = frozenset({0x11, 0x12, 0x31, 0x7E, 0x7F})

# 50 ss 00 32 01 F4: P2server 50 ms, P2*server 500 x 10 ms = 5 s.
_SESSION_TIMING = bytes([0x00, 0x32, 0x01, 0xF4])
_SESSIONS = {0x01, 0x03}
_EXTENDED = 0x03
_AVAILABILITY_MASK = 0xFF
_DTC_FORMAT_ISO14229 = 0x01

# Status bits (ISO 14229-1 D.2) derived from the OBD view of an ECU.
STATUS_STORED = 0x01 | 0x08 | 0x20  # testFailed | confirmedDTC | testFailedSinceLastClear
STATUS_PENDING = 0x02 | 0x04 | 0x20  # testFailedThisOperationCycle | pendingDTC | testFailedSinceLastClear
STATUS_MIL = 0x80  # warningIndicatorRequested

_DID_RE = re.compile(r"^[0-9A-F]{4}$")
_UDS_DTC_RE = re.compile(r"^([PCBU][0-3][0-9A-F]{3})(?:-([0-9A-F]{2}))?$")
_HEX_RE = re.compile(r"^(?:[0-9A-F]{2})+$")


@dataclass(frozen=True, slots=True)
class UdsTable:
    """One ECU's ``[ecus.uds]`` table, validated.

    ``dids`` maps a DID to its bytes; ``None`` stands for the car's VIN (``"@vin"``).
    """

    dids: dict[int, bytes | None]
    requires_extended: frozenset[int]
    refuse: dict[int, int]
    dtcs: tuple[tuple[bytes, int], ...]
    multi_did: bool


def _fail(where: str, key: str, why: str) -> ScenarioError:
    return ScenarioError(f"{where}{key}: {why}")


def _did(where: str, key: str, text: object) -> int:
    if not isinstance(text, str) or not _DID_RE.match(text.upper()):
        raise _fail(where, key, f"{text!r} is not a DID of 4 hex digits such as 'F190'")
    return int(text, 16)


def _did_value(where: str, key: str, value: object) -> bytes | None:
    if not isinstance(value, str):
        raise _fail(where, key, "expected text: 'ASCII', 'hex:0012D687' or '@vin'")
    if value == "@vin":
        return None
    if value.startswith("hex:"):
        digits = value[4:].replace(" ", "").upper()
        if not _HEX_RE.match(digits):
            raise _fail(where, key, f"{value!r} is not hex bytes such as 'hex:0012D687'")
        return bytes.fromhex(digits)
    if not value or not value.isascii():
        raise _fail(where, key, "an ASCII value must be 1 or more ASCII characters")
    return value.encode("ascii")


def _status(where: str, key: str, value: object) -> int:
    if isinstance(value, str) and re.fullmatch(r"[0-9A-Fa-f]{2}", value):
        return int(value, 16)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFF:
        return value
    raise _fail(where, key, f"{value!r} is not a status byte such as '2F'")


def parse_uds_table(table: dict[str, Any], where: str = "uds.") -> UdsTable:
    """Validate an ``[ecus.uds]`` table.

    :param where: the key path for messages, e.g. ``"fixtures/scenarios/uds.toml: ecus[0].uds."``.
    :raises ScenarioError: naming the key that is wrong.
    """
    known = {"dids", "requires_extended", "refuse", "dtcs", "multi_did"}
    for key in table:
        if key not in known:
            raise _fail(where, key, f"unknown key (known: {', '.join(sorted(known))})")
    raw_dids = table.get("dids", {})
    if not isinstance(raw_dids, dict):
        raise _fail(where, "dids", "expected a table such as { F190 = '@vin' }")
    dids = {_did(where, f"dids.{k}", k): _did_value(where, f"dids.{k}", v) for k, v in raw_dids.items()}
    extended = table.get("requires_extended", [])
    if not isinstance(extended, list):
        raise _fail(where, "requires_extended", "expected a list of DIDs such as ['F18C']")
    requires_extended = frozenset(_did(where, "requires_extended", d) for d in extended)
    raw_refuse = table.get("refuse", {})
    if not isinstance(raw_refuse, dict):
        raise _fail(where, "refuse", "expected a table such as { F1A0 = '33' }")
    refuse = {_did(where, f"refuse.{k}", k): _status(where, f"refuse.{k}", v) for k, v in raw_refuse.items()}
    raw_dtcs = table.get("dtcs", [])
    if not isinstance(raw_dtcs, list):
        raise _fail(where, "dtcs", "expected a list such as [{ code = 'U0100-00', status = '2F' }]")
    dtcs = []
    for index, entry in enumerate(raw_dtcs):
        key = f"dtcs[{index}]"
        if not isinstance(entry, dict) or set(entry) != {"code", "status"}:
            raise _fail(where, key, "expected { code = 'U0100-00', status = '2F' }")
        match = _UDS_DTC_RE.match(str(entry["code"]).upper())
        if match is None:
            raise _fail(where, f"{key}.code", f"{entry['code']!r} is not a DTC such as 'U0100-00'")
        code = encode_dtc(match.group(1)) + bytes([int(match.group(2) or "00", 16)])
        dtcs.append((code, _status(where, f"{key}.status", entry["status"])))
    multi_did = table.get("multi_did", True)
    if not isinstance(multi_did, bool):
        raise _fail(where, "multi_did", "expected true or false")
    return UdsTable(dids, requires_extended, refuse, tuple(dtcs), multi_did)


_cache: dict[int, tuple[EcuSpec, UdsTable | None]] = {}
_cache_lock = threading.Lock()


def _where(scenario: Scenario, spec: EcuSpec) -> str:
    origin = str(scenario.path) if scenario.path else "<scenario>"
    index = next((i for i, s in enumerate(scenario.ecus) if s is spec), 0)
    return f"{origin}: ecus[{index}].uds."


def uds_table(ecu: VirtualEcu) -> UdsTable | None:
    """The ECU's validated UDS table; ``None`` when the ECU does not speak UDS.

    :raises ScenarioError: when the table is malformed.
    """
    spec = ecu.spec
    with _cache_lock:
        cached = _cache.get(id(spec))
        if cached is not None and cached[0] is spec:
            return cached[1]
    table = parse_uds_table(spec.uds, _where(ecu.car.scenario, spec)) if spec.uds else None
    with _cache_lock:
        _cache[id(spec)] = (spec, table)
    return table


def validate_uds(scenario: Scenario) -> None:
    """Check every ``[ecus.uds]`` table of a scenario before a simulator starts.

    :raises ScenarioError: naming the file and key of the first mistake.
    """
    for spec in scenario.ecus:
        if spec.uds:
            parse_uds_table(spec.uds, _where(scenario, spec))


def dtc_records(ecu: VirtualEcu, table: UdsTable) -> list[tuple[bytes, int]]:
    """Every DTC the ECU knows as (3-byte code, status byte), from its OBD state and its table.

    UDS-only DTCs go with the first clear (14 or 04) and stay away for the life of the virtual car:
    :meth:`VirtualEcu.reset` restores the OBD state only.
    """
    status: dict[bytes, int] = {}
    for code in ecu.stored:
        key = encode_dtc(code) + b"\x00"
        status[key] = status.get(key, 0) | STATUS_STORED | (STATUS_MIL if ecu.mil else 0)
    for code in ecu.pending:
        key = encode_dtc(code) + b"\x00"
        status[key] = status.get(key, 0) | STATUS_PENDING
    if ecu.clears == 0:
        for key, bits in table.dtcs:
            status[key] = status.get(key, 0) | bits
    return list(status.items())


def _nrc(sid: int, code: int) -> bytes:
    return bytes([0x7F, sid, code])


def _session_control(ecu: VirtualEcu, table: UdsTable, data: bytes) -> bytes | None:
    if len(data) != 2:
        return _nrc(0x10, NRC_INCORRECT_LENGTH)
    session, quiet = data[1] & 0x7F, bool(data[1] & 0x80)
    if session not in _SESSIONS:
        return _nrc(0x10, NRC_SUBFUNCTION_NOT_SUPPORTED)
    ecu.uds_session = session
    return None if quiet else bytes([0x50, session]) + _SESSION_TIMING


def _tester_present(ecu: VirtualEcu, table: UdsTable, data: bytes) -> bytes | None:
    if len(data) != 2:
        return _nrc(0x3E, NRC_INCORRECT_LENGTH)
    if data[1] & 0x7F:
        return _nrc(0x3E, NRC_SUBFUNCTION_NOT_SUPPORTED)
    return None if data[1] & 0x80 else b"\x7e\x00"


def _read_dtc_information(ecu: VirtualEcu, table: UdsTable, data: bytes) -> bytes | None:
    if len(data) < 2:
        return _nrc(0x19, NRC_INCORRECT_LENGTH)
    subfunction = data[1]
    if subfunction not in (0x01, 0x02):
        return _nrc(0x19, NRC_SUBFUNCTION_NOT_SUPPORTED)
    if len(data) != 3:
        return _nrc(0x19, NRC_INCORRECT_LENGTH)
    mask = data[2] & _AVAILABILITY_MASK
    matching = [(code, bits) for code, bits in dtc_records(ecu, table) if bits & mask]
    if subfunction == 0x01:
        count = len(matching).to_bytes(2, "big")
        return bytes([0x59, 0x01, _AVAILABILITY_MASK, _DTC_FORMAT_ISO14229]) + count
    body = b"".join(code + bytes([bits]) for code, bits in matching)
    return bytes([0x59, 0x02, _AVAILABILITY_MASK]) + body


def _read_data_by_identifier(ecu: VirtualEcu, table: UdsTable, data: bytes) -> bytes | None:
    if len(data) < 3 or len(data) % 2 == 0:
        return _nrc(0x22, NRC_INCORRECT_LENGTH)
    dids = [int.from_bytes(data[i : i + 2], "big") for i in range(1, len(data), 2)]
    if len(dids) > 1 and not table.multi_did:
        return _nrc(0x22, NRC_INCORRECT_LENGTH)
    for did in dids:
        if did in table.refuse:
            return _nrc(0x22, table.refuse[did])
    out = bytearray([0x62])
    for did in dids:
        if did not in table.dids:
            continue
        if did in table.requires_extended and ecu.uds_session != _EXTENDED:
            continue
        value = table.dids[did]
        if value is None:
            vin = ecu.car.scenario.vin
            if vin is None:
                continue
            value = vin.encode("ascii")
        out += did.to_bytes(2, "big") + value
    return bytes(out) if len(out) > 1 else _nrc(0x22, NRC_OUT_OF_RANGE)


def _clear_diagnostic_information(ecu: VirtualEcu, table: UdsTable, data: bytes) -> bytes | None:
    if len(data) not in (4, 5):
        return _nrc(0x14, NRC_INCORRECT_LENGTH)
    if data[1:4] not in (b"\xff\xff\xff", b"\xff\xff\x33"):
        return _nrc(0x14, NRC_OUT_OF_RANGE)
    if ecu.car.engine_running:
        return _nrc(0x14, NRC_CONDITIONS_NOT_CORRECT)
    result = ecu.clear()
    if result[:1] == b"\x7f":
        return _nrc(0x14, result[2])
    return b"\x54"


_Service = Callable[[VirtualEcu, UdsTable, bytes], bytes | None]
_SERVICES: dict[int, _Service] = {
    0x10: _session_control,
    0x3E: _tester_present,
    0x19: _read_dtc_information,
    0x22: _read_data_by_identifier,
    0x14: _clear_diagnostic_information,
}


def handle_uds(ecu: VirtualEcu, data: bytes, physical: bool) -> list[bytes]:
    """Answer one UDS request the way the scenario's ECU would.

    Returns the messages in the order the ECU sends them: ``pending_responses`` x ``7F sid 78``
    before the answer; ``7F sid 21`` instead of it while ``busy_left`` lasts. The transport adds the
    timing. An empty list means the ECU stays silent (suppressed positive answer, or an NRC that a
    functional request must not provoke).

    :raises ScenarioError: when the ECU's ``[ecus.uds]`` table is malformed.
    """
    if not data:
        return []
    sid = data[0]
    table = uds_table(ecu)
    if table is None:
        answer: bytes | None = _nrc(sid, NRC_SERVICE_NOT_SUPPORTED)
    elif ecu.busy_left > 0:
        ecu.busy_left -= 1
        return [_nrc(sid, NRC_BUSY)]
    else:
        service = _SERVICES.get(sid)
        answer = service(ecu, table, data) if service else _nrc(sid, NRC_SERVICE_NOT_SUPPORTED)
    if answer is None:
        return []
    if not physical and answer[0] == 0x7F and answer[2] in _SILENT_WHEN_FUNCTIONAL:
        return []
    pending = ecu.spec.pending_responses if table is not None else 0
    return [_nrc(sid, NRC_PENDING)] * pending + [answer]
