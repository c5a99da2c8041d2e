"""A virtual car: answers diagnostic requests the way its ECUs would.

The car answers in *service bytes*, CAN-shaped (``43 NN ...``, ``49 02 01 ...``); the ELM327
emulator and the virtual CAN network turn those into the frames of their link. State that a real
car changes -- fault memory cleared by Service 04, the engine started -- lives here, so both
simulators behave the same and the tests can inspect it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from adapters.sim.scenario import EcuSpec, Scenario

__all__ = ["EcuAnswer", "LoggedRequest", "VirtualCar", "VirtualEcu", "encode_dtc"]

_DTC_SYSTEMS = {"P": 0, "C": 1, "B": 2, "U": 3}

# Handler for services beyond OBD (UDS on CAN); set by adapters.sim.uds when present.
UdsHandler = Callable[["VirtualEcu", bytes, bool], list[bytes]]


def encode_dtc(code: str) -> bytes:
    """``P0133`` -> ``01 33`` (SAE J2012 two-byte form)."""
    first = (_DTC_SYSTEMS[code[0]] << 6) | (int(code[1]) << 4) | int(code[2], 16)
    return bytes([first, int(code[3:5], 16)])


def _bitmap(base: int, present: set[int]) -> bytes:
    """The supported-PID bitmap for ``base+1 .. base+32``; bit 0 announces the next bitmap."""
    value = 0
    for pid in present:
        if base < pid <= base + 32:
            value |= 1 << (32 - (pid - base))
    return value.to_bytes(4, "big")


def _with_bitmaps(present: set[int], bitmap_pids: range) -> set[int]:
    """Add the bitmap PIDs (00, 20, ...) needed to announce every PID in ``present``."""
    out = set(present)
    highest = max(present, default=0)
    for base in bitmap_pids:
        if base < highest:
            out.add(base)
    out.add(bitmap_pids[0])
    return out


@dataclass(slots=True)
class LoggedRequest:
    """One request as the car saw it: the tests prove what was (not) sent from these."""

    at: float
    target: str | None
    data: bytes


@dataclass(slots=True)
class EcuAnswer:
    """What one ECU sends back to one request: interim ``7F xx 78``/``21`` answers first."""

    ecu: VirtualEcu
    messages: list[bytes]


@dataclass
class VirtualEcu:
    """One ECU's mutable state, seeded from its scenario entry."""

    spec: EcuSpec
    car: VirtualCar = field(repr=False)
    stored: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    permanent: list[str] = field(default_factory=list)
    mil: bool = False
    pids: dict[int, bytes] = field(default_factory=dict)
    freeze_frame_dtc: str | None = None
    freeze_pids: dict[int, bytes] = field(default_factory=dict)
    uds_session: int = 1
    busy_left: int = 0
    clears: int = 0

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Back to the scenario's state."""
        s = self.spec
        self.stored, self.pending, self.permanent = list(s.stored), list(s.pending), list(s.permanent)
        self.mil = s.mil
        self.pids = dict(s.pids)
        self.freeze_frame_dtc = s.freeze_frame.dtc if s.freeze_frame else None
        self.freeze_pids = dict(s.freeze_frame.pids) if s.freeze_frame else {}
        self.busy_left = s.busy_responses

    @property
    def address(self) -> str:
        """The address the ECU answers from (``7E8``, ``18DAF110``, ``10``)."""
        return self.spec.address

    @property
    def request_address(self) -> str:
        """The address a physical request to this ECU goes to (``7E0``, ``18DA10F1``)."""
        a = self.spec.address
        if len(a) == 3:
            return f"{int(a, 16) - 8:03X}"
        if len(a) == 8:
            return f"18DA{a[6:8]}F1"
        return a

    # -- Service 01 ------------------------------------------------------------------------------

    def current_pids(self) -> dict[int, bytes]:
        """PID payloads as of now, including those derived from state (01 01, 01 0C)."""
        pids = dict(self.pids)
        status_a = (0x80 if self.mil else 0) | min(len(self.stored), 0x7F)
        status_b = 0x07 | (0x08 if self.spec.ignition == "compression" else 0)
        pids[0x01] = bytes([status_a, status_b, 0xE5 if self.spec.ignition == "spark" else 0x6B, 0x00])
        if self.spec is self.car.scenario.ecus[0] or 0x0C in pids:
            pids[0x0C] = (round(self.car.rpm * 4)).to_bytes(2, "big")
        return pids

    def supported_pids(self) -> set[int]:
        """Every Service 01 PID this ECU answers, bitmaps included."""
        values = set(self.current_pids())
        return _with_bitmaps(values, range(0x00, 0x100, 0x20))

    def answer_01(self, pids: list[int]) -> bytes | None:
        if len(pids) > 1 and not self.spec.multi_pid:
            return None
        current = self.current_pids()
        supported = self.supported_pids()
        out = bytearray([0x41])
        for pid in pids:
            if pid % 0x20 == 0 and pid in supported:
                out += bytes([pid]) + _bitmap(pid, supported)
            elif pid in current:
                out += bytes([pid]) + current[pid]
        return bytes(out) if len(out) > 1 else None

    def answer_02(self, data: bytes) -> bytes | None:
        """Service 02: ``02 PID FRAME [PID FRAME ...]``; only frame 00 exists in this car."""
        if len(data) < 3 or len(data) % 2 == 0 or self.freeze_frame_dtc is None:
            return None
        pairs = [(data[i], data[i + 1]) for i in range(1, len(data), 2)]
        if len(pairs) > 1 and not self.spec.multi_pid:
            return None
        present = _with_bitmaps(set(self.freeze_pids) | {0x02}, range(0x00, 0x100, 0x20))
        out = bytearray([0x42])
        for pid, frame in pairs:
            if frame != 0:
                continue
            if pid == 0x02:
                out += bytes([0x02, 0x00]) + encode_dtc(self.freeze_frame_dtc)
            elif pid % 0x20 == 0 and pid in present:
                out += bytes([pid, 0x00]) + _bitmap(pid, present)
            elif pid in self.freeze_pids:
                out += bytes([pid, 0x00]) + self.freeze_pids[pid]
        return bytes(out) if len(out) > 1 else None

    # -- Services 03/07/0A/04 ----------------------------------------------------------------------

    def answer_dtcs(self, service: int) -> bytes:
        codes = {0x03: self.stored, 0x07: self.pending, 0x0A: self.permanent}[service]
        body = b"".join(encode_dtc(c) for c in codes)
        return bytes([service + 0x40, len(codes)]) + body

    def clear(self) -> bytes:
        """Service 04: what a real ECU erases (permanent DTCs stay until their monitor passes)."""
        if self.car.engine_running:
            return bytes([0x7F, 0x04, 0x22])
        self.stored.clear()
        self.pending.clear()
        self.mil = False
        self.freeze_frame_dtc = None
        self.freeze_pids.clear()
        for pid in (0x21, 0x30, 0x31, 0x4D, 0x4E):
            if pid in self.pids:
                self.pids[pid] = bytes(len(self.pids[pid]))
        self.clears += 1
        return b"\x44"

    # -- Service 09 --------------------------------------------------------------------------------

    def infotypes(self) -> dict[int, bytes]:
        """Service 09 payloads after ``49 ITID``."""
        s = self.spec
        out: dict[int, bytes] = {}
        if s.answers_vin and self.car.scenario.vin:
            out[0x02] = b"\x01" + self.car.scenario.vin.encode("ascii")
        if s.calids:
            out[0x04] = bytes([len(s.calids)]) + b"".join(c.encode().ljust(16, b"\0") for c in s.calids)
        if s.cvns:
            out[0x06] = bytes([len(s.cvns)]) + b"".join(bytes.fromhex(c) for c in s.cvns)
        if s.name:
            out[0x0A] = b"\x01" + s.name.encode("ascii")[:20].ljust(20, b"\0")
        if s.obfcm:
            o = s.obfcm

            def u32(value: float | None, scale: float) -> bytes:
                return b"\xff" * 4 if value is None else round(value * scale).to_bytes(4, "big")

            out[0x17] = (
                b"\x01"
                + u32(o.recent_distance_km, 10)
                + u32(o.lifetime_distance_km, 10)
                + u32(o.recent_fuel_l, 100)
                + u32(o.lifetime_fuel_l, 100)
            )
            for itid, raw in o.raw_infotypes.items():
                out[itid] = raw
        return out

    def answer_09(self, itid: int) -> bytes | None:
        info = self.infotypes()
        if itid % 0x20 == 0:
            present = _with_bitmaps(set(info), range(0x00, 0x100, 0x20))
            if itid in present:
                return bytes([0x49, itid]) + _bitmap(itid, present)
            return None
        if itid in info:
            return bytes([0x49, itid]) + info[itid]
        return None


class VirtualCar:
    """All ECUs of a scenario plus the car-wide state (engine, request log)."""

    def __init__(self, scenario: Scenario, *, uds_handler: UdsHandler | None = None) -> None:
        self.scenario = scenario
        self.engine_running = scenario.engine_running
        self.rpm = 780.0 if scenario.engine_running else 0.0
        self.ecus = [VirtualEcu(spec, self) for spec in scenario.ecus]
        self.request_log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        if uds_handler is None:
            from adapters.sim.uds import handle_uds

            uds_handler = handle_uds
        self._uds: UdsHandler = uds_handler

    def start_engine(self, rpm: float = 780.0) -> None:
        """Start the engine (some services refuse while it runs)."""
        self.engine_running, self.rpm = True, rpm

    def stop_engine(self) -> None:
        """Stop the engine."""
        self.engine_running, self.rpm = False, 0.0

    def ecu(self, address: str) -> VirtualEcu | None:
        """The ECU answering from ``address`` or receiving requests at it."""
        address = address.upper()
        for ecu in self.ecus:
            if address in (ecu.address, ecu.request_address):
                return ecu
        return None

    def listener(self, request_address: str) -> VirtualEcu | None:
        """The ECU that receives physical requests sent to ``request_address`` (``7E0``, ``18DA10F1``)."""
        request_address = request_address.upper()
        return next((e for e in self.ecus if e.request_address == request_address), None)

    def requests_for(self, service: int, *params: int) -> list[LoggedRequest]:
        """Logged requests that start with ``service`` and ``params`` (for tests and audits)."""
        prefix = bytes([service, *params])
        with self._lock:
            return [r for r in self.request_log if r.data.startswith(prefix)]

    def respond(self, data: bytes, target: str | None = None) -> list[EcuAnswer]:
        """Every ECU's answer to ``data``; functional when ``target`` (a request address) is None.

        Functional requests get no answer from ECUs that do not support them (as ISO 15765-4 asks);
        a physical request to an ECU that does not support the service gets ``7F SID 11/12``.
        """
        with self._lock:
            self.request_log.append(LoggedRequest(time.monotonic(), target, bytes(data)))
        if not data:
            return []
        if target is None:
            ecus = self.ecus
        else:
            one = self.listener(target)
            ecus = [one] if one else []
        answers = []
        for ecu in ecus:
            if ecu.spec.silent:
                continue
            messages = self._answer(ecu, data, physical=target is not None)
            if messages:
                answers.append(EcuAnswer(ecu, messages))
        return answers

    def _answer(self, ecu: VirtualEcu, data: bytes, *, physical: bool) -> list[bytes]:
        sid = data[0]
        reply: bytes | None
        if sid == 0x01 and len(data) >= 2:
            reply = ecu.answer_01(list(data[1:7]))
        elif sid == 0x02:
            reply = ecu.answer_02(data)
        elif sid in (0x03, 0x07, 0x0A) and len(data) == 1:
            reply = ecu.answer_dtcs(sid)
        elif sid == 0x04 and len(data) == 1:
            reply = ecu.clear()
        elif sid == 0x09 and len(data) == 2:
            reply = ecu.answer_09(data[1])
        elif sid >= 0x10:
            return self._uds(ecu, data, physical)
        else:
            reply = bytes([0x7F, sid, 0x11]) if physical else None
        if reply is None and physical and sid in (0x01, 0x02, 0x09):
            reply = bytes([0x7F, sid, 0x12])
        return [reply] if reply is not None else []
