"""Scenario files: the description of a virtual car, shared by the ELM327 and the CAN simulators.

A scenario is a TOML file (see ``fixtures/scenarios/``). It names what the car *has* -- ECUs, DTCs,
counters in engineering units, identification strings -- and never the bytes that follow from them:
supported-PID bitmaps, counts and frames are derived, so a scenario cannot contradict itself.
Values here are validated once, at load time, with messages that name the file and the key.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.errors import AdapterSpecError
from adapters.protocols import CAN_PROTOCOLS
from adapters.protocols import PROTOCOL_NAMES as _ALL_PROTOCOLS

__all__ = [
    "CAN_PROTOCOLS",
    "PROTOCOL_NAMES",
    "EcuSpec",
    "FreezeFrameSpec",
    "ObfcmSpec",
    "Scenario",
    "ScenarioError",
    "find_scenario",
    "key_line",
    "load_scenario",
    "scenario_dir",
]

# Scenario cars speak one of the legislated OBD protocols (ELM327 numbers 1-9).
PROTOCOL_NAMES: dict[str, str] = {k: v for k, v in _ALL_PROTOCOLS.items() if k in "123456789"}

# Engineering-unit names a scenario may use for the PIDs the workshop cares about:
# name -> (PID, byte length, scale, offset). Raw value = round(value * scale + offset).
NAMED_PIDS: dict[str, tuple[int, int, float, float]] = {
    "engine_load_pct": (0x04, 1, 2.55, 0),
    "coolant_c": (0x05, 1, 1, 40),
    "rpm": (0x0C, 2, 4, 0),
    "speed_kmh": (0x0D, 1, 1, 0),
    "intake_temp_c": (0x0F, 1, 1, 40),
    "obd_standard": (0x1C, 1, 1, 0),
    "runtime_s": (0x1F, 2, 1, 0),
    "distance_mil_km": (0x21, 2, 1, 0),
    "warmups_since_clear": (0x30, 1, 1, 0),
    "distance_since_clear_km": (0x31, 2, 1, 0),
    "minutes_mil": (0x4D, 2, 1, 0),
    "minutes_since_clear": (0x4E, 2, 1, 0),
    "fuel_type": (0x51, 1, 1, 0),
    "odometer_km": (0xA6, 4, 10, 0),
}

_DTC_RE = re.compile(r"^[PCBU][0-3][0-9A-F]{3}$")
_HEX_RE = re.compile(r"^([0-9A-F]{2})*$")
_ADDRESS_RE = re.compile(r"^([0-9A-F]{2}|7E[89A-F]|18DAF1[0-9A-F]{2})$")
_VIN_RE = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")


class ScenarioError(AdapterSpecError):
    """A scenario file cannot be used; the message names the file, the line and the key.

    ``key`` is the dotted path of the offending value (``ecus[1].stored``), when there is one.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class FreezeFrameSpec:
    """The freeze frame one ECU stored, with the DTC that caused it."""

    dtc: str
    pids: dict[int, bytes]


@dataclass(frozen=True, slots=True)
class ObfcmSpec:
    """OBFCM counters (Service 09 InfoType 17) and, for plug-in hybrids, raw 1A/1B/1C payloads."""

    recent_distance_km: float | None
    lifetime_distance_km: float | None
    recent_fuel_l: float | None
    lifetime_fuel_l: float | None
    raw_infotypes: dict[int, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EcuSpec:
    """One ECU as the scenario describes it; the simulator keeps mutable state elsewhere."""

    address: str
    name: str | None
    answers_vin: bool
    calids: tuple[str, ...]
    cvns: tuple[str, ...]
    stored: tuple[str, ...]
    pending: tuple[str, ...]
    permanent: tuple[str, ...]
    mil: bool
    ignition: str
    pids: dict[int, bytes]
    freeze_frame: FreezeFrameSpec | None
    obfcm: ObfcmSpec | None
    multi_pid: bool
    response_ms: float | None
    silent: bool
    pending_responses: int
    busy_responses: int
    uds: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole virtual car."""

    name: str
    description: str
    path: Path | None
    protocol: str
    vin: str | None
    engine_running: bool
    firmware: str
    voltage: float
    ecu_response_ms: float
    ecus: tuple[EcuSpec, ...]

    @property
    def is_can(self) -> bool:
        """True when the car speaks ISO 15765-4 CAN."""
        return self.protocol in CAN_PROTOCOLS

    @property
    def is_29bit(self) -> bool:
        """True for 29-bit CAN identifiers."""
        return self.protocol in {"7", "9"}


def scenario_dir() -> Path:
    """The folder of shipped scenarios (``fixtures/scenarios`` beside the packages)."""
    return Path(__file__).resolve().parents[2] / "fixtures" / "scenarios"


def find_scenario(name_or_path: str) -> Path:
    """Resolve ``petrol`` to the shipped ``petrol.toml``, or accept a path to any scenario file.

    :raises ScenarioError: when neither exists.
    """
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" and candidate.is_file():
        return candidate
    shipped = scenario_dir() / f"{name_or_path}.toml"
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in scenario_dir().glob("*.toml")))
    raise ScenarioError(f"no scenario called {name_or_path!r} (shipped: {names})")


def load_scenario(name_or_path: str) -> Scenario:
    """Load and validate a scenario.

    :raises ScenarioError: on a missing file, TOML syntax (with the line) or a bad value (with the key).
    """
    path = find_scenario(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot be read ({exc})") from exc
    try:
        return parse_scenario(raw, path=path)
    except ScenarioError as exc:
        line = key_line(text, exc.key) if exc.key else None
        prefix = f"{path}: "
        if line is None or not str(exc).startswith(prefix):
            raise
        raise ScenarioError(f"{path}, line {line}: {str(exc)[len(prefix) :]}", exc.key) from None


_TABLE_RE = re.compile(r"\s*(\[\[?)\s*([A-Za-z0-9_.\- ]+?)\s*\]\]?\s*(?:#.*)?")
_KEY_RE = re.compile(r"\s*([A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-]+)*)\s*=")


def _key_segments(key: str) -> list[str | int]:
    """``ecus[1].freeze_frame.dtc`` -> ``["ecus", 1, "freeze_frame", "dtc"]``."""
    segments: list[str | int] = []
    for part in key.split("."):
        name, _, rest = part.partition("[")
        if name:
            segments.append(name)
        for index in re.findall(r"(\d+)\]", "[" + rest if rest else ""):
            segments.append(int(index))
    return segments


def key_line(text: str, key: str) -> int | None:
    """The line of ``text`` (TOML) where the value at ``key`` (``ecus[1].stored``) is written.

    A line-oriented reading of the TOML tables and keys, enough for scenario files: it follows
    ``[table]`` and ``[[array]]`` headers (counting array entries) and ``key = value`` lines, dotted keys
    included. A key inside an inline table or array gives the line of the key that holds it; a key that
    is not written at all (a missing value) gives the line of its table's header. ``None`` when neither
    is found.
    """
    target = _key_segments(key)
    arrays: dict[tuple[str | int, ...], int] = {}
    current: list[str | int] = []
    fallback: int | None = None

    def resolve(names: list[str]) -> list[str | int]:
        path: list[str | int] = []
        for name in names:
            path.append(name)
            count = arrays.get(tuple(path))
            if count is not None:
                path.append(count)
        return path

    for number, line in enumerate(text.splitlines(), start=1):
        table = _TABLE_RE.fullmatch(line)
        if table is not None:
            names = [n.strip() for n in table[2].split(".")]
            if table[1] == "[[":
                parent = [*resolve(names[:-1]), names[-1]]
                arrays[tuple(parent)] = arrays.get(tuple(parent), -1) + 1
                current = [*parent, arrays[tuple(parent)]]
            else:
                current = resolve(names)
            if target[: len(current)] == current or current[: len(target)] == target:
                fallback = fallback or number
                if current == target:
                    return number
            continue
        assignment = _KEY_RE.match(line)
        if assignment is not None:
            path = [*current, *(n.strip() for n in assignment[1].split("."))]
            if target[: len(path)] == path:
                return number
    return fallback


class _Reader:
    """Typed access to one TOML table with errors that name the key path."""

    def __init__(self, table: dict[str, Any], where: str, origin: str) -> None:
        self.table = table
        self.where = where
        self.origin = origin
        self.used: set[str] = set()

    def fail(self, key: str, why: str) -> ScenarioError:
        return ScenarioError(f"{self.origin}: {self.where}{key}: {why}", f"{self.where}{key}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.used.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise self.fail(key, "expected a number, not true/false")
        if not isinstance(value, kind):
            raise self.fail(key, f"expected {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise self.fail(unknown[0], "unknown key (misspelt?)")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {
        str: "text",
        int: "a whole number",
        float: "a number",
        bool: "true/false",
        list: "a list",
        dict: "a table",
    }
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _hex(reader: _Reader, key: str, value: Any) -> bytes:
    if not isinstance(value, str) or not _HEX_RE.match(value.replace(" ", "").upper()):
        raise reader.fail(key, "expected hex bytes such as '1A F8'")
    return bytes.fromhex(value.replace(" ", ""))


def _dtcs(reader: _Reader, key: str) -> tuple[str, ...]:
    codes = reader.get(key, list, [])
    for code in codes:
        if not isinstance(code, str) or not _DTC_RE.match(code):
            raise reader.fail(key, f"{code!r} is not a DTC such as 'P0133'")
    return tuple(codes)


def _pid_values(reader: _Reader, key: str) -> dict[int, bytes]:
    """Merge named engineering values and raw ``"PID" = "hex"`` entries into raw PID payloads."""
    table = reader.get(key, dict, {})
    out: dict[int, bytes] = {}
    for name, value in table.items():
        if name in NAMED_PIDS:
            pid, length, scale, offset = NAMED_PIDS[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise reader.fail(f"{key}.{name}", "expected a number")
            raw = round(value * scale + offset)
            if not 0 <= raw < 256**length:
                raise reader.fail(f"{key}.{name}", f"{value} does not fit PID {pid:02X}")
            out[pid] = raw.to_bytes(length, "big")
        elif re.fullmatch(r"[0-9A-Fa-f]{2}", name):
            out[int(name, 16)] = _hex(reader, f"{key}.{name}", value)
        else:
            raise reader.fail(f"{key}.{name}", f"unknown value name (known: {', '.join(NAMED_PIDS)})")
    return out


def _obfcm(reader: _Reader) -> ObfcmSpec | None:
    table = reader.get("obfcm", dict)
    if table is None:
        return None
    sub = _Reader(table, f"{reader.where}obfcm.", reader.origin)
    numbers = {}
    for key in ("recent_distance_km", "lifetime_distance_km", "recent_fuel_l", "lifetime_fuel_l"):
        value = sub.get(key, (int, float))
        numbers[key] = None if value is None else float(value)
    raw: dict[int, bytes] = {}
    for itid in (0x1A, 0x1B, 0x1C):
        key = f"itid_{itid:02x}"
        value = sub.get(key, str)
        if value is not None:
            raw[itid] = _hex(sub, key, value)
    sub.finish()
    return ObfcmSpec(raw_infotypes=raw, **numbers)


def _ecu(table: dict[str, Any], index: int, origin: str, *, legacy: bool) -> EcuSpec:
    reader = _Reader(table, f"ecus[{index}].", origin)
    address = reader.get("address", str)
    if address is None or not _ADDRESS_RE.match(address.upper()):
        raise reader.fail("address", "expected 7E8..7EF, 18DAF1xx (29-bit) or a K-line byte such as 10")
    stored = _dtcs(reader, "stored")
    freeze_table = reader.get("freeze_frame", dict)
    freeze = None
    if freeze_table is not None:
        sub = _Reader(freeze_table, f"{reader.where}freeze_frame.", origin)
        dtc = sub.get("dtc", str)
        if dtc is None or not _DTC_RE.match(dtc):
            raise sub.fail("dtc", "expected the DTC that stored the frame, such as 'P0133'")
        freeze = FreezeFrameSpec(dtc=dtc, pids=_pid_values(sub, "values"))
        sub.finish()
    calids = tuple(reader.get("calids", list, []))
    cvns = tuple(reader.get("cvns", list, []))
    for cvn in cvns:
        if not isinstance(cvn, str) or not re.fullmatch(r"[0-9A-Fa-f]{8}", cvn):
            raise reader.fail("cvns", f"{cvn!r} is not 8 hex digits")
    for calid in calids:
        if not isinstance(calid, str) or not 0 < len(calid) <= 16 or not calid.isascii():
            raise reader.fail("calids", f"{calid!r} is not 1 to 16 ASCII characters")
    ignition = reader.get("ignition", str, "spark")
    if ignition not in ("spark", "compression"):
        raise reader.fail("ignition", "expected 'spark' or 'compression'")
    spec = EcuSpec(
        address=address.upper(),
        name=reader.get("name", str),
        answers_vin=reader.get("answers_vin", bool, index == 0),
        calids=calids,
        cvns=cvns,
        stored=stored,
        pending=_dtcs(reader, "pending"),
        permanent=_dtcs(reader, "permanent"),
        mil=reader.get("mil", bool, bool(stored)),
        ignition=ignition,
        pids=_pid_values(reader, "values"),
        freeze_frame=freeze,
        obfcm=_obfcm(reader),
        multi_pid=reader.get("multi_pid", bool, not legacy),
        response_ms=reader.get("response_ms", (int, float)),
        silent=reader.get("silent", bool, False),
        pending_responses=reader.get("pending_responses", int, 0),
        busy_responses=reader.get("busy_responses", int, 0),
        uds=reader.get("uds", dict, {}),
    )
    reader.finish()
    return spec


def parse_scenario(raw: dict[str, Any], *, path: Path | None = None) -> Scenario:
    """Validate an already-parsed scenario table (exposed for tests that build scenarios inline).

    :raises ScenarioError: naming the key that is wrong.
    """
    origin = str(path) if path else "<scenario>"
    top = _Reader(raw, "", origin)
    protocol = str(top.get("protocol", (str, int), "6")).upper()
    if protocol not in PROTOCOL_NAMES:
        raise top.fail("protocol", f"expected one of {', '.join(PROTOCOL_NAMES)}")
    vin = top.get("vin", str)
    if vin is not None and not _VIN_RE.match(vin):
        raise top.fail("vin", "a VIN is 17 characters of 0-9 and A-Z without I, O, Q")
    adapter = _Reader(top.get("adapter", dict, {}), "adapter.", origin)
    timing = _Reader(top.get("timing", dict, {}), "timing.", origin)
    ecu_tables = top.get("ecus", list, [])
    if not ecu_tables:
        raise top.fail("ecus", "a car needs at least one ECU ([[ecus]] table)")
    for index, table in enumerate(ecu_tables):
        if not isinstance(table, dict):
            raise top.fail(f"ecus[{index}]", f"expected a table ([[ecus]]), got {type(table).__name__}")
    legacy = protocol not in CAN_PROTOCOLS
    ecus = tuple(_ecu(t, i, origin, legacy=legacy) for i, t in enumerate(ecu_tables))
    addresses = [e.address for e in ecus]
    if len(set(addresses)) != len(addresses):
        raise top.fail("ecus", "two ECUs share an address")
    for ecu in ecus:
        is29 = ecu.address.startswith("18DA")
        if (protocol in {"7", "9"} and not is29) or (
            protocol in {"6", "8"} and not ecu.address.startswith("7E")
        ):
            raise top.fail("ecus", f"address {ecu.address} does not fit protocol {protocol}")
        if legacy and len(ecu.address) != 2:
            raise top.fail("ecus", f"address {ecu.address} does not fit K-line/J1850 protocol {protocol}")
    scenario = Scenario(
        name=top.get("name", str, path.stem if path else "scenario"),
        description=top.get("description", str, ""),
        path=path,
        protocol=protocol,
        vin=vin,
        engine_running=top.get("engine_running", bool, False),
        firmware=adapter.get("firmware", str, "ELM327 v1.5"),
        voltage=float(adapter.get("voltage", (int, float), 12.6)),
        ecu_response_ms=float(timing.get("ecu_response_ms", (int, float), 0)),
        ecus=ecus,
    )
    for reader in (adapter, timing, top):
        reader.finish()
    return scenario
