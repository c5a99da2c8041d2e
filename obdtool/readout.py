"""The read-out: identity, fault memory, mileage, software versions and (with consent) OBFCM.

The order of requests is chosen for the wire. ECUs are found with one functional ``01 00`` -- the
one the adapter already sent to prove the protocol when it has its answers
(:attr:`adapters.base.LinkInfo.probe_replies`). The rest of the supported-PID bitmaps, the distance
counters and the MIL state each go out as one multi-PID request on CAN (up to six PIDs), falling
back to one PID per request for ECUs that stay silent on multi-PID requests and on K-line/J1850
where multi-PID is not allowed. Nothing is asked that a bitmap says the ECU does not have. Every
answer is decoded by the pure functions in ``obdtool.decode``; a broken link stops the read-out but
keeps what was read.

Most of a scan's time on an ELM327 is not the car talking but the adapter *listening*: unless a
request says how many answers to expect, the adapter waits its timeout after the last one (it
cannot know no further ECU will answer). Once discovery has shown which ECUs there are and what
they support, most answers are known in advance: bitmaps, VINs, ECU names and OBFCM records have
fixed lengths, ``01 01`` says how many DTCs ``03`` will list, and an ECU has as many CVNs as
CALIDs. Those requests carry the expected count (see :meth:`_Session.ask_known`). The ELM327
counts CAN *frames*, not messages, and stops at the count, so the count is the number of frames
the answers take, worked out from those lengths; answers whose length nobody can know beforehand
(CALIDs, the first discovery) are asked without one. A count that proves too small (pending and
permanent DTCs are counted as one frame per ECU, the usual answer) is caught and the request is
asked again without one: it costs a request, never an answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from adapters.base import Adapter, EcuReply
from adapters.errors import AdapterError, FramingError
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
MAX_COUNT = 15  # the ELM327's response-count digit is one hex digit

# Answer lengths the standard fixes (service byte, InfoType, item count and data): 49 02 01 + a
# 17-character VIN, 49 0A 01 + a 20-character ECU name, 49 17 01 + four 4-byte OBFCM counters.
_VIN_ANSWER = 20
_ECU_NAME_ANSWER = 23
_OBFCM17_ANSWER = 19

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

    def ask_known(self, data: bytes, frames: Mapping[str, int]) -> dict[str, bytes]:
        """Send a functional request whose answers are known; tell the adapter how many frames come.

        ``frames`` maps each ECU expected to answer to the CAN frames its answer takes (see
        :func:`can_frames`), worked out from a length the standard fixes or from what the ECU itself
        announced (a bitmap, a DTC count, a CALID count), or one frame where a short answer is the
        rule (see :meth:`read_dtcs`). With the count the adapter returns with the last frame instead
        of listening for its timeout.

        A count that is too high costs only that timeout. One that is too low would cut answers off
        (an ELM327 stops at the count), so the replies are checked anyway: a multi-frame answer cut
        short (the adapter reports a framing error), or an expected ECU missing although the count was
        reached, and the request is asked again without a count; nothing is lost, it only takes
        longer. Off CAN, and beyond 15 frames, no count is sent.
        """
        count = sum(frames.values())
        if not self.is_can or not frames or count > MAX_COUNT:
            return self.ask(data)
        try:
            replies = self.adapter.request(data, expect=count)
        except FramingError as exc:
            log.debug("%s with count %d: %s; asking again without a count", data.hex(), count, exc)
            return self.ask(data)
        arrived = sum(can_frames(len(reply.data)) for reply in replies)
        missing = set(frames) - {reply.ecu for reply in replies}
        if missing and arrived >= count:
            log.debug("%s with count %d: no answer from %s; asking again", data.hex(), count, missing)
            return self.ask(data)
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
            try:
                negative = common.parse_negative(messages[-1])
            except DecodeError as exc:  # a cut-off "7F xx": the ECU's problem, not the read-out's end
                self.result.ecu(address).errors.append(f"service {service:02X}: {exc}")
                continue
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
        self.discover(info.probe_replies)
        if not result.ecus:
            result.error = "no ECU answered 01 00: ignition on? is this an OBD-II/EOBD car?"
            return
        self.say("Reading vehicle information")
        self.read_infotype_bitmaps()
        self.read_vin()
        # The counters first: 01 01 says how many DTCs each ECU will list for 03.
        self.say("Reading MIL state and distance counters")
        self.read_counters()
        self.say("Reading fault memory")
        for service, kind in DTC_SERVICES.items():
            self.read_dtcs(service, kind)
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

    def discover(self, probe: Sequence[EcuReply] = ()) -> None:
        """``01 00`` finds the ECUs; the further bitmaps come in one multi-PID request where allowed.

        ``probe`` holds the answers to the ``01 00`` the adapter sent when it opened; only when there
        are none is the question asked again.
        """
        found = self._positive(0x01, probe)
        for address, data in (found or self.ask(b"\x01\x00")).items():
            self.decode_into(address, "supported PIDs", self._bitmaps, address, data)
        need_more = [a for a, e in self.result.ecus.items() if 0x20 in e.supported_pids]
        if not need_more:
            return
        answered: set[str] = set()
        if self.is_can:
            # 20..A0 in one request, with the count an ECU that has all five sends: every ECU with an
            # odometer (PID A6) has them, as each bitmap announces the next. Asking no more than five
            # makes the count an upper bound, never too low; C0 follows when an A0 bitmap announces it.
            asked = BITMAP_PIDS[:5]
            most = dict.fromkeys(need_more, can_frames(_service01_answer(asked)))
            for address, data in self.ask_known(bytes([0x01, *asked]), most).items():
                answered.add(address)
                self.decode_into(address, "supported PIDs", self._bitmaps, address, data)
            late = [a for a in answered if 0xC0 in self.result.ecu(a).supported_pids]
            if late:
                for address, data in self.ask_known(b"\x01\xc0", dict.fromkeys(late, 1)).items():
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

    def all_ecus(self) -> dict[str, int]:
        """Every ECU found, each expected to answer with one frame."""
        return dict.fromkeys(self.result.ecus, 1)

    def read_infotype_bitmaps(self) -> None:
        """``09 00``; every emission-related ECU reports CALIDs, so all of them are expected to answer."""
        for address, data in self.ask_known(b"\x09\x00", self.all_ecus()).items():

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
        holders = dict.fromkeys(self.ecus_with_infotype(0x02), can_frames(_VIN_ANSWER))
        for address, data in self.ask_known(b"\x09\x02", holders).items():
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
        """One functional request per DTC service.

        Every ECU answers 03 and 07 on CAN, with a count of 0 if it has nothing. For 03, ``01 01``
        told how many DTCs each ECU lists, so the answers' lengths are known. How many pending (07)
        and permanent (0A) DTCs there are only the answers tell; one frame per ECU is counted, the
        answer of an ECU with up to two, which is what ECUs usually hold. An ECU with more sends two
        frames or more, the adapter stops short, and :meth:`ask_known` asks again without a count.
        """
        expected = self.all_ecus()
        if service == 0x03:
            for address, report in self.result.ecus.items():
                if report.dtc_count is not None:
                    expected[address] = can_frames(2 + 2 * report.dtc_count)
        answers = self.ask_known(bytes([service]), expected)
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
                answering = {
                    a: can_frames(_service01_answer(mine))
                    for a, ps in wanted.items()
                    if (mine := [p for p in chunk if p in ps])
                }
                for address, data in self.ask_known(bytes([0x01, *chunk]), answering).items():
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
        """The DTC that stored the frame and the frame's PID bitmap in one request, then the values.

        Both go out functionally: only ECUs holding a freeze frame answer, so no ECU has to be
        addressed one by one (which would cost two header commands per ECU and one listening window
        each). The bitmaps say exactly which values each ECU will send back.
        """
        holders = [a for a, report in self.result.ecus.items() if report.codes("stored")]
        if not holders:
            return
        first = b"\x02\x02\x00\x00\x00" if self.is_can else b"\x02\x02\x00"
        present: dict[str, set[int] | None] = {}
        for address, data in self.ask_known(first, dict.fromkeys(holders, can_frames(1 + 4 + 6))).items():
            report = self.result.ecu(address)
            code: str | None = None
            bitmap: set[int] | None = None
            try:
                for pid, _frame_no, payload in pids.parse_freeze_frame_multi(data):
                    if pid == 0x02:
                        code = pids.decode_freeze_frame_dtc(bytes([0x42, 0x02, 0x00]) + payload)
                    elif pid == 0x00:
                        bitmap = pids.supported_from_bitmap(0x00, payload)
            except DecodeError as exc:
                report.errors.append(f"freeze frame: {exc}")
                continue
            if code is None:
                continue
            report.freeze_frame = FreezeFrame(dtc=code)
            present[address] = bitmap or None
        wanted = {a: [p for p in FREEZE_PIDS if bits is None or p in bits] for a, bits in present.items()}
        union = [p for p in FREEZE_PIDS if any(p in ps for ps in wanted.values())]
        step = 3 if self.is_can else 1  # 02 + three (PID, frame) pairs fill a single CAN frame
        for chunk in _chunks(union, step):
            request = bytes([0x02, *[b for p in chunk for b in (p, 0x00)]])
            frames: dict[str, int] = {}
            for address, ps in wanted.items():
                mine = [p for p in chunk if p in ps]
                if mine and present[address] is not None:
                    frames[address] = can_frames(1 + sum(2 + pids.PID_LENGTHS.get(p, 4) for p in mine))
            unknown = any(present[a] is None and any(p in ps for p in chunk) for a, ps in wanted.items())
            got = self.ask(request) if unknown else self.ask_known(request, frames)
            for address, data in got.items():
                frame = self.result.ecu(address).freeze_frame
                if frame is not None:
                    self.decode_into(address, "freeze frame", self._freeze_values, frame, data)

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
            holders = self.ecus_with_infotype(itid)
            if not holders:
                continue
            for address, data in self._ask_infotype(itid, holders).items():
                report = self.result.ecu(address)
                self.decode_into(address, what, apply, report, data)

    def _ask_infotype(self, itid: int, holders: list[str]) -> dict[str, bytes]:
        """``09 itid`` with the frame count wherever the answers' lengths are known beforehand.

        ECU names and the OBFCM record have fixed lengths; an ECU reports one CVN per CALID, so the
        CVN answers follow from the CALIDs read just before. CALIDs themselves and the PHEV records
        (1A-1C) have no length known in advance.
        """
        lengths: dict[str, int] = {}
        for address in holders:
            report = self.result.ecu(address)
            if itid == 0x0A:
                lengths[address] = _ECU_NAME_ANSWER
            elif itid == 0x17:
                lengths[address] = _OBFCM17_ANSWER
            elif itid == 0x06 and report.calids:
                lengths[address] = 3 + 4 * len(report.calids)
        request = bytes([0x09, itid])
        if len(lengths) < len(holders):
            return self.ask(request)
        return self.ask_known(request, {a: can_frames(n) for a, n in lengths.items()})

    def read_uds(self) -> None:
        from obdtool import uds

        addresses = list(self.result.ecus)
        for address in addresses:
            report = self.result.ecu(address)
            uds_report = uds.read_uds_ecu(self.adapter, address)
            report.uds_identification.update(uds_report.identification)
            report.errors.extend(note.removeprefix(f"{address}: ") for note in uds_report.notes)
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
            for address, data in self._ask_infotype(itid, addresses).items():
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


def can_frames(length: int) -> int:
    """How many CAN frames an ISO-TP message of ``length`` bytes takes (what the ELM327 counts).

    A single frame carries up to 7 bytes; a longer message is a first frame with 6 bytes and
    consecutive frames with 7 each.
    """
    return 1 if length <= 7 else 1 + -(-(length - 6) // 7)


def _service01_answer(pids_asked: Iterable[int]) -> int:
    """Length of a Service 01 answer carrying ``pids_asked``: ``41`` and (PID, value) for each."""
    return 1 + sum(1 + pids.PID_LENGTHS.get(pid, 4) for pid in pids_asked)


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
