"""The read-out: identity, fault memory, mileage, software versions and (with consent) OBFCM.

The order of requests is chosen for the wire: ECUs are found with one functional ``01 00``; the
rest of the supported-PID bitmaps, the distance counters and the MIL state each go out as one
multi-PID request on CAN (up to six PIDs), falling back to one PID per request for ECUs that stay
silent on multi-PID requests and on K-line/J1850 where multi-PID is not allowed. Nothing is asked
that a bitmap says the ECU does not have. Every answer is decoded by the pure functions in
``obdtool.decode``; a broken link stops the read-out but keeps what was read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from adapters.base import Adapter, EcuReply
from adapters.errors import AdapterError
from obdtool.decode import common, dtc, infotypes, pids
from obdtool.errors import DecodeError
from obdtool.model import (
    DtcEntry,
    DtcKind,
    EcuReport,
    FreezeFrame,
    Mileage,
    ObfcmEcuData,
    ObfcmResult,
    ScanResult,
)

__all__ = ["ObfcmConsent", "ReadOptions", "read_vehicle"]

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

BITMAP_PIDS = (0x20, 0x40, 0x60, 0x80, 0xA0, 0xC0)
# MIL state, distance/time counters and odometer: everything the visit record keeps from Service 01.
COUNTER_PIDS = (0x01, 0x21, 0x31, 0x4D, 0x4E, 0xA6, 0x30, 0x1C)
FREEZE_PIDS = (0x04, 0x05, 0x0C, 0x0D, 0x0F, 0x11, 0x0B, 0x06, 0x07, 0x10, 0x0E, 0x1F)
DTC_SERVICES: dict[int, DtcKind] = {0x03: "stored", 0x07: "pending", 0x0A: "permanent"}
OBFCM_ITIDS = (0x17, 0x1A, 0x1B, 0x1C)
MAX_PIDS_PER_REQUEST = 6

_READING_NAMES = {
    0x21: "distance_mil_km",
    0x31: "distance_since_clear_km",
    0x4D: "minutes_mil",
    0x4E: "minutes_since_clear",
    0x30: "warmups_since_clear",
    0xA6: "odometer_km",
    0x1C: "obd_standard",
}


@dataclass(frozen=True, slots=True)
class ObfcmConsent:
    """The owner's answer to the OBFCM question, and when it was given."""

    refused: bool
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """What to read beyond identity and fault memory."""

    freeze_frames: bool = True
    software: bool = True
    obfcm: ObfcmConsent | None = None
    uds: bool = False


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def read_vehicle(
    adapter: Adapter, options: ReadOptions = ReadOptions(), *, progress: Progress | None = None
) -> ScanResult:
    """Read the car behind ``adapter`` (opened here if it is not open yet).

    Never raises for the car's or the link's sake: a failure ends the read-out with
    ``result.error`` set and everything read so far kept.
    """
    result = ScanResult(started_at=_now())
    say = progress or (lambda _msg: None)
    session = _Session(adapter, result, options, say)
    try:
        session.run()
    except AdapterError as exc:
        result.error = str(exc) or exc.__class__.__name__
        log.debug("read-out stopped: %r", exc)
    finally:
        result.finished_at = _now()
        session.choose_mileage()
    if result.obfcm is None and options.obfcm is not None:
        _decide_obfcm_without_reading(result, options.obfcm)
    return result


def _decide_obfcm_without_reading(result: ScanResult, consent: ObfcmConsent) -> None:
    """Record the owner's decision even when the read-out stopped before OBFCM."""
    if consent.refused:
        result.obfcm = ObfcmResult("refused", decided_at=consent.decided_at)
    else:
        reason = f"read-out stopped before OBFCM: {result.error}" if result.error else "not read"
        result.obfcm = ObfcmResult("not_possible", decided_at=consent.decided_at, reason=reason)


class _Session:
    """One pass over the car; holds the request plumbing so each step reads as a sentence."""

    def __init__(self, adapter: Adapter, result: ScanResult, options: ReadOptions, say: Progress) -> None:
        self.adapter = adapter
        self.result = result
        self.options = options
        self.say = say
        self.is_can = True

    # -- plumbing ----------------------------------------------------------------------------------

    def ask(self, data: bytes, *, ecu: str | None = None, expect: int | None = None) -> dict[str, bytes]:
        """Send one request; return each ECU's positive answer (legacy frames joined).

        Negative answers are noted on the ECU's report, not returned.
        """
        replies = self.adapter.request(data, ecu=ecu, expect=expect)
        return self._positive(data[0], replies)

    def single_frame(self, answer_len: int) -> int | None:
        """``expect=1`` for a physical request whose answer fits one CAN frame, else unknown.

        The ELM327 counts frames, not messages: announcing one answer for a multi-frame reply
        would cut it after the first frame.
        """
        return 1 if self.is_can and answer_len <= 7 else None

    def _positive(self, service: int, replies: Iterable[EcuReply]) -> dict[str, bytes]:
        grouped: dict[str, list[bytes]] = {}
        for reply in replies:
            grouped.setdefault(reply.ecu, []).append(reply.data)
        out: dict[str, bytes] = {}
        for address, messages in grouped.items():
            negative = common.parse_negative(messages[-1])
            if negative is not None:
                if negative.nrc not in (0x11, 0x12, 0x31):
                    self.result.ecu(address).errors.append(
                        f"service {service:02X}: {negative.meaning} (NRC {negative.nrc:02X})"
                    )
                continue
            try:
                out[address] = (
                    messages[0] if len(messages) == 1 and self.is_can else common.join_legacy(messages)
                )
            except DecodeError as exc:
                self.result.ecu(address).errors.append(f"service {service:02X}: {exc}")
        return out

    def decode_into(self, address: str, what: str, fn: Callable[..., object], *args: object) -> None:
        """Run one decoding step; a DecodeError is kept on the ECU's report, not raised."""
        try:
            fn(*args)
        except DecodeError as exc:
            self.result.ecu(address).errors.append(f"{what}: {exc}")

    # -- the read-out ------------------------------------------------------------------------------

    def run(self) -> None:
        result = self.result
        self.say("Connecting to the adapter")
        info = self.adapter.open()
        result.adapter_kind, result.adapter_description = info.kind, info.description
        result.protocol, result.protocol_id = info.protocol, info.protocol_id
        self.is_can = info.is_can

        self.say("Finding ECUs")
        self.discover()
        if not result.ecus:
            result.error = "no ECU answered 01 00: ignition on? is this an OBD-II/EOBD car?"
            return
        self.say("Reading vehicle information")
        self.read_infotype_bitmaps()
        self.read_vin()
        self.say("Reading fault memory")
        for service, kind in DTC_SERVICES.items():
            self.read_dtcs(service, kind)
        self.say("Reading MIL state and distance counters")
        self.read_counters()
        if self.options.freeze_frames:
            self.say("Reading freeze frames")
            self.read_freeze_frames()
        if self.options.software:
            self.say("Reading software versions")
            self.read_software()
        if self.options.uds and self.is_can:
            self.say("Reading UDS identification and fault memory")
            self.read_uds()
        self.choose_mileage()
        if self.options.obfcm is not None:
            self.read_obfcm(self.options.obfcm)

    def discover(self) -> None:
        """``01 00`` finds the ECUs; the further bitmaps come in one multi-PID request where allowed."""
        for address, data in self.ask(b"\x01\x00").items():
            self.decode_into(address, "supported PIDs", self._bitmaps, address, data)
        need_more = [a for a, e in self.result.ecus.items() if 0x20 in e.supported_pids]
        if not need_more:
            return
        answered: set[str] = set()
        if self.is_can:
            for address, data in self.ask(bytes([0x01, *BITMAP_PIDS])).items():
                answered.add(address)
                self.decode_into(address, "supported PIDs", self._bitmaps, address, data)
        for address in need_more:
            if address in answered:
                continue
            base = 0x20
            while base in self.result.ecu(address).supported_pids and base <= 0xC0:
                got = self.ask(
                    bytes([0x01, base]), ecu=address if self.is_can else None, expect=self.single_frame(6)
                )
                if address not in got:
                    break
                self.decode_into(address, "supported PIDs", self._bitmaps, address, got[address])
                base += 0x20

    def _bitmaps(self, address: str, data: bytes) -> None:
        report = self.result.ecu(address)
        for pid, payload in pids.split_multi_pid(data).items():
            if pid % 0x20 == 0:
                report.supported_pids |= pids.supported_from_bitmap(pid, payload)

    def read_infotype_bitmaps(self) -> None:
        for address, data in self.ask(b"\x09\x00").items():

            def decode(a: str = address, d: bytes = data) -> None:
                _base, supported = pids.parse_bitmap_response(d)
                self.result.ecu(a).supported_infotypes |= supported

            self.decode_into(address, "supported InfoTypes", decode)

    def ecus_with_infotype(self, itid: int) -> list[str]:
        return [a for a, e in self.result.ecus.items() if itid in e.supported_infotypes]

    def read_vin(self) -> None:
        if not self.ecus_with_infotype(0x02):
            self.result.warnings.append("no ECU reports a VIN (09 02 not supported)")
            return
        vins: dict[str, str] = {}
        for address, data in self.ask(b"\x09\x02").items():
            self.decode_into(address, "VIN", self._vin_into, vins, address, data)
        if not vins:
            self.result.warnings.append("the VIN could not be read")
            return
        address, vin = next(iter(vins.items()))
        if len(set(vins.values())) > 1:
            self.result.warnings.append(
                f"ECUs report different VINs: {', '.join(sorted(set(vins.values())))}"
            )
        check = infotypes.check_vin(vin)
        self.result.vin_source = f"09 02 from {address}"
        if check.valid:
            self.result.vin = vin
            self.result.vin_warnings.extend(check.warnings)
        else:
            self.result.warnings.append(f"the car reported an invalid VIN {vin!r}: {'; '.join(check.errors)}")

    def read_dtcs(self, service: int, kind: DtcKind) -> None:
        answers = self.ask(bytes([service]))
        for address, data in answers.items():

            def decode(a: str = address, d: bytes = data) -> None:
                found = dtc.parse_dtc_list(d, service)
                report = self.result.ecu(a)
                for code in found.codes:
                    report.dtcs.append(DtcEntry(code, kind, dtc.describe_dtc(code)))
                if found.count_mismatch:
                    report.errors.append(
                        f"{kind} DTCs: the ECU announced {found.declared_count} but sent {len(found.codes)}"
                    )

            self.decode_into(address, f"{kind} DTCs", decode)

    def read_counters(self) -> None:
        """01 01 (MIL), distance/time counters and the odometer, batched per the ECUs' bitmaps."""
        wanted = {a: [p for p in COUNTER_PIDS if p in e.supported_pids] for a, e in self.result.ecus.items()}
        union = sorted({p for ps in wanted.values() for p in ps}, key=COUNTER_PIDS.index)
        if not union:
            return
        got: dict[str, set[int]] = {a: set() for a in wanted}
        if self.is_can:
            for chunk in _chunks(union, MAX_PIDS_PER_REQUEST):
                for address, data in self.ask(bytes([0x01, *chunk])).items():
                    self.decode_into(address, "Service 01", self._readings_into, got, address, data)
        for address, pids_wanted in wanted.items():
            for pid in pids_wanted:
                if pid in got.get(address, set()):
                    continue
                size = 2 + pids.PID_LENGTHS.get(pid, 4)
                answer = self.ask(
                    bytes([0x01, pid]), ecu=address if self.is_can else None, expect=self.single_frame(size)
                )
                if address in answer:
                    self.decode_into(address, f"PID {pid:02X}", self._readings, address, answer[address])

    def _readings_into(self, got: dict[str, set[int]], address: str, data: bytes) -> None:
        got[address].update(self._readings(address, data))

    @staticmethod
    def _vin_into(vins: dict[str, str], address: str, data: bytes) -> None:
        vin = infotypes.decode_vin(data)
        if vin:
            vins[address] = vin

    def _readings(self, address: str, data: bytes) -> set[int]:
        report = self.result.ecu(address)
        seen = set()
        for pid, payload in pids.split_multi_pid(data).items():
            seen.add(pid)
            value = pids.decode_pid(pid, payload)
            if pid == 0x01 and isinstance(value, pids.MonitorStatus):
                report.mil_on, report.dtc_count, report.ignition = (
                    value.mil_on,
                    value.dtc_count,
                    value.ignition,
                )
            elif pid in _READING_NAMES and isinstance(value, int | float | str):
                report.readings[_READING_NAMES[pid]] = value
        return seen

    def read_freeze_frames(self) -> None:
        """The DTC that stored the frame and the frame's PID bitmap in one request, then the values."""
        for address, report in list(self.result.ecus.items()):
            if not report.codes("stored"):
                continue
            target = address if self.is_can else None
            first = b"\x02\x02\x00\x00\x00" if self.is_can else b"\x02\x02\x00"
            answer = self.ask(first, ecu=target, expect=self.single_frame(1 + 4 + 6))
            if address not in answer:
                continue
            code: str | None = None
            present: set[int] = set()
            try:
                for pid, _frame_no, payload in pids.parse_freeze_frame_multi(answer[address]):
                    if pid == 0x02:
                        code = pids.decode_freeze_frame_dtc(bytes([0x42, 0x02, 0x00]) + payload)
                    elif pid == 0x00:
                        present = pids.supported_from_bitmap(0x00, payload)
            except DecodeError as exc:
                report.errors.append(f"freeze frame: {exc}")
                continue
            if code is None:
                continue
            frame = FreezeFrame(dtc=code)
            report.freeze_frame = frame
            wanted = [p for p in FREEZE_PIDS if p in present] if present else list(FREEZE_PIDS)
            step = 3 if self.is_can else 1  # 02 + three (PID, frame) pairs fill a single CAN frame
            for chunk in _chunks(wanted, step):
                request = bytes([0x02, *[b for p in chunk for b in (p, 0x00)]])
                size = 1 + sum(2 + pids.PID_LENGTHS.get(p, 4) for p in chunk)
                got = self.ask(request, ecu=target, expect=self.single_frame(size))
                if address in got:
                    self.decode_into(address, "freeze frame", self._freeze_values, frame, got[address])

    @staticmethod
    def _freeze_values(frame: FreezeFrame, data: bytes) -> None:
        for pid, _frame_no, payload in pids.parse_freeze_frame_multi(data):
            spec = pids.PIDS.get(pid)
            value = pids.decode_pid(pid, payload)
            if spec is not None and isinstance(value, int | float | str):
                frame.values[spec.name] = value

    def read_software(self) -> None:
        steps: tuple[tuple[int, str, Callable[[EcuReport, bytes], None]], ...] = (
            (0x04, "CALID", lambda r, d: r.calids.extend(infotypes.decode_calids(d))),
            (0x06, "CVN", lambda r, d: r.cvns.extend(infotypes.decode_cvns(d))),
            (0x0A, "ECU name", _set_name),
        )
        for itid, what, apply in steps:
            if not self.ecus_with_infotype(itid):
                continue
            for address, data in self.ask(bytes([0x09, itid])).items():
                report = self.result.ecu(address)
                self.decode_into(address, what, apply, report, data)

    def read_uds(self) -> None:
        from obdtool import uds

        addresses = list(self.result.ecus)
        for address in addresses:
            report = self.result.ecu(address)
            uds_report = uds.read_uds_ecu(self.adapter, address)
            report.uds_identification.update(uds_report.identification)
            report.errors.extend(uds_report.notes)
            known = {(d.code[:5], d.kind) for d in report.dtcs}
            for item in uds_report.dtcs:
                if (item.code[:5], "uds") not in known:
                    report.dtcs.append(
                        DtcEntry(item.code, "uds", item.description, item.status, list(item.flags))
                    )
        if not any("odometer_km" in e.readings for e in self.result.ecus.values()):
            mileage = uds.read_uds_mileage(self.adapter, self.result.vin)
            if mileage is not None:
                self.result.mileage = Mileage(mileage.km, mileage.source, mileage.ecu)

    def choose_mileage(self) -> None:
        """Odometer when any ECU has it, else the best counter -- always saying which it is."""
        if self.result.mileage is not None:
            return
        for address, report in self.result.ecus.items():
            km = report.readings.get("odometer_km")
            if isinstance(km, int | float):
                self.result.mileage = Mileage(float(km), "odometer (01 A6)", address)
                return
        for address, report in self.result.ecus.items():
            km = report.readings.get("distance_since_clear_km")
            if isinstance(km, int | float):
                self.result.mileage = Mileage(
                    float(km), "distance since fault codes were cleared (01 31), not the odometer", address
                )
                self.result.warnings.append("the car reports no odometer (01 A6); mileage is a counter")
                return

    def read_obfcm(self, consent: ObfcmConsent) -> None:
        """Only after the owner's decision; a refusal sends nothing at all to the car."""
        result = self.result
        if consent.refused:
            result.obfcm = ObfcmResult("refused", decided_at=consent.decided_at)
            return
        self.say("Reading OBFCM counters")
        holders = {itid: self.ecus_with_infotype(itid) for itid in OBFCM_ITIDS}
        if not holders[0x17]:
            result.obfcm = ObfcmResult(
                "not_possible",
                decided_at=consent.decided_at,
                reason="no ECU announces InfoType 17 (the car has no OBFCM read-out over OBD)",
            )
            return
        per_ecu: dict[str, ObfcmEcuData] = {}
        for itid, addresses in holders.items():
            if not addresses:
                continue
            for address, data in self.ask(bytes([0x09, itid])).items():
                entry = per_ecu.setdefault(address, ObfcmEcuData(address))
                self.decode_into(address, f"OBFCM {itid:02X}", _obfcm_into, entry, itid, data)
        collected = [e for e in per_ecu.values() if e.itid17 is not None or e.raw]
        if not collected:
            result.obfcm = ObfcmResult(
                "not_possible",
                decided_at=consent.decided_at,
                reason="ECUs announced OBFCM but did not answer",
            )
            return
        result.obfcm = ObfcmResult("collected", decided_at=consent.decided_at, ecus=collected)
        result.warnings.extend(plausibility_warnings(result))


def _set_name(report: EcuReport, data: bytes) -> None:
    report.name = infotypes.decode_ecu_name(data) or None


def _obfcm_into(entry: ObfcmEcuData, itid: int, data: bytes) -> None:
    if itid == 0x17:
        values = infotypes.decode_obfcm_itid17(data)
        entry.itid17 = {
            "recent_distance_km": values.recent_distance_km,
            "lifetime_distance_km": values.lifetime_distance_km,
            "recent_fuel_l": values.recent_fuel_l,
            "lifetime_fuel_l": values.lifetime_fuel_l,
            "raw_hex": values.raw_hex,
        }
    else:
        raw = infotypes.keep_obfcm_raw(data)
        entry.raw.append({"itid": f"{raw.itid:02X}", "raw_hex": raw.raw_hex, "verified": raw.verified})


def plausibility_warnings(result: ScanResult) -> list[str]:
    """OBFCM sanity checks: they add warnings, they never drop data."""
    warnings: list[str] = []
    if result.obfcm is None:
        return warnings
    for entry in result.obfcm.ecus:
        v = entry.itid17
        if v is None:
            continue
        rd, ld, rf, lf = (
            v.get(k)
            for k in ("recent_distance_km", "lifetime_distance_km", "recent_fuel_l", "lifetime_fuel_l")
        )
        if isinstance(rd, float) and isinstance(ld, float) and ld < rd:
            warnings.append(
                f"OBFCM {entry.address}: lifetime distance {ld} km is below recent distance {rd} km"
            )
        if isinstance(rf, float) and isinstance(lf, float) and lf < rf:
            warnings.append(f"OBFCM {entry.address}: lifetime fuel {lf} l is below recent fuel {rf} l")
        if (
            isinstance(ld, float)
            and result.mileage is not None
            and result.mileage.source.startswith("odometer")
        ):
            odo = result.mileage.km
            if ld > odo + max(50.0, odo * 0.01):
                warnings.append(
                    f"OBFCM {entry.address}: lifetime distance {ld} km exceeds the odometer {odo} km"
                )
            elif ld < odo * 0.9:
                warnings.append(
                    f"OBFCM {entry.address}: lifetime distance {ld} km is well below the odometer {odo} km"
                    " (counter reset, e.g. after a battery disconnect?)"
                )
        if isinstance(ld, float) and isinstance(lf, float) and ld >= 100:
            per100 = lf / ld * 100
            if not 1.0 <= per100 <= 30.0:
                warnings.append(
                    f"OBFCM {entry.address}: {per100:.1f} l/100 km over the lifetime is implausible"
                )
    return warnings


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
