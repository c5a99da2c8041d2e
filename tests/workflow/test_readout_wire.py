"""What the read-out puts on the wire of an ELM327: no question asked twice, answer counts only where known.

The read-out runs through the real ELM327 driver against the emulator on a pseudo-terminal (timing off), and
the emulator's command log shows every line the adapter received, response-count digits included. Nothing
here measures time: the benchmark does (``benchmarks/bench_check.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from adapters.elm327 import Elm327Adapter
from adapters.link import SerialLink
from adapters.sim.car import EcuAnswer, VirtualCar
from adapters.sim.elm327 import Elm327Emulator
from adapters.sim.scenario import load_scenario, parse_scenario
from adapters.sim.server import PtyServer
from obdtool.model import ScanResult
from obdtool.readout import ObfcmConsent, ReadOptions, can_frames, read_vehicle

ACCEPT = ObfcmConsent(refused=False, decided_at=datetime(2026, 11, 26, 8, 0, tzinfo=UTC))


def _read(car: VirtualCar, options: ReadOptions) -> tuple[ScanResult, list[str]]:
    """Read ``car`` through the ELM327 driver; return the result and the OBD requests the adapter got."""
    emulator = Elm327Emulator(car)
    with (
        PtyServer(emulator) as server,
        Elm327Adapter(SerialLink(server.path).open, link_margin=0.5) as adapter,
    ):
        result = read_vehicle(adapter, options)
    lines = [line.replace(" ", "").upper() for line in emulator.command_log]
    assert "" not in lines, "a bare CR makes an ELM327 repeat its last command"
    return result, lines


def _obd(lines: list[str]) -> list[str]:
    return [line for line in lines if not line.startswith("AT")]


@pytest.fixture
def petrol() -> Iterator[VirtualCar]:
    yield VirtualCar(load_scenario("petrol"))


def test_the_probe_answers_are_reused_and_counts_sent_only_where_the_answers_are_known(
    petrol: VirtualCar,
) -> None:
    result, lines = _read(petrol, ReadOptions(obfcm=ACCEPT))
    assert result.error is None and result.vin == "WVWZZZCDZMW123450"
    # An odd number of hex digits means a response-count digit: the frames the answers take in all.
    assert _obd(lines) == [
        "0100",  # the probe that proved the protocol; discovery reads its answers
        "0120406080A04",  # five bitmaps from 7E8 (the only ECU announcing 20): 26 bytes, 4 frames
        "09002",  # a 6-byte bitmap from each of the two ECUs
        "09023",  # one 20-byte VIN: 3 frames
        "010121314D4EA65",  # 7E8: 23 bytes, 4 frames; 7E9 has only 01: one frame
        "01301C1",
        "032",  # 01 01 said 2 and 1 DTCs: a frame each
        "072",  # up to two pending or permanent DTCs per ECU, the usual case: a frame each
        "0A2",
        "02020000004",  # the two ECUs with stored DTCs: 11 bytes, 2 frames each if they hold a frame
        "02040005000C002",
        "020D001",
        "0904",  # how many CALIDs there are, only the answers tell
        "09063",  # one CVN per CALID: 2 + 1
        "090A8",  # two 23-byte ECU names: 4 frames each
        "09173",  # one 19-byte OBFCM record
    ]
    assert not [line for line in lines if line.startswith(("ATSH", "ATCRA"))], (
        "freeze frames go out functionally"
    )
    engine = result.ecus["7E8"]
    assert engine.codes("stored") == ["P0133", "P0420"]
    assert engine.calids == ["04E906027HA 4521", "04E906027HB 0012"]
    assert engine.cvns == ["1A2B3C4D", "0F0E0D0C"]
    assert engine.freeze_frame is not None and engine.freeze_frame.values["engine_rpm"] == 2112.0
    assert result.obfcm is not None and result.obfcm.state == "collected"


class _EcuCountsOneDtcTooFew(VirtualCar):
    """The engine ECU lists one more stored DTC in 03 than its 01 01 announces (it happens in the field)."""

    def respond(self, data: bytes, target: str | None = None) -> list[EcuAnswer]:
        answers = super().respond(data, target)
        if data == b"\x03":
            for answer in answers:
                if answer.ecu.address == "7E8":
                    message = answer.messages[-1]
                    answer.messages[-1] = bytes([0x43, message[1] + 1]) + message[2:] + b"\x01\x71"
        return answers


def test_a_count_that_proves_too_low_loses_nothing() -> None:
    car = _EcuCountsOneDtcTooFew(load_scenario("petrol"))
    result, lines = _read(car, ReadOptions(freeze_frames=False, software=False))
    assert result.error is None
    obd = _obd(lines)
    assert obd[obd.index("032") + 1] == "03"  # the count cut the 8-byte answer short: asked again without
    assert result.ecus["7E8"].codes("stored") == ["P0133", "P0420", "P0171"]
    assert result.ecus["7E9"].codes("stored") == ["P0715"]


def test_more_pending_dtcs_than_one_frame_holds_are_all_read() -> None:
    scenario = parse_scenario(
        {
            "protocol": "6",
            "vin": "YV1MZ84BDN1234561",
            "ecus": [
                {"address": "7E8", "pending": ["P0171", "P0172", "P0300"]},  # 8 bytes: two frames
                {"address": "7E9", "pending": ["P0730"]},
            ],
        }
    )
    result, lines = _read(VirtualCar(scenario), ReadOptions(freeze_frames=False, software=False))
    assert result.error is None
    obd = _obd(lines)
    assert obd[obd.index("072") + 1] == "07"
    assert result.ecus["7E8"].codes("pending") == ["P0171", "P0172", "P0300"]
    assert result.ecus["7E9"].codes("pending") == ["P0730"]


def test_no_counts_off_can() -> None:
    result, lines = _read(VirtualCar(load_scenario("kwp")), ReadOptions())
    assert result.error is None and result.vin is not None
    assert all(len(line) % 2 == 0 for line in _obd(lines)), "K-line answers are counted in lines, not frames"


@pytest.mark.parametrize(("length", "frames"), [(1, 1), (7, 1), (8, 2), (13, 2), (14, 3), (20, 3), (23, 4)])
def test_can_frames(length: int, frames: int) -> None:
    assert can_frames(length) == frames
