"""CanAdapter against frames recorded from real cars (shared/reference/captures), replayed on a virtual bus.

A replay station answers each request with the captured frames, byte for byte, and holds a multi-frame
answer after its first frame until the tester's flow control arrives -- so reassembly, flow control,
sequence-number wrap and response-pending handling meet the real thing.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import can
import pytest
from udsoncan.Response import Response
from udsoncan.services.DiagnosticSessionControl import DiagnosticSessionControl

from adapters.can_isotp import CanAdapter
from adapters.errors import FramingError
from obdtool.uds import read_uds_mileage

# Not from any capture: the tester opens with a functional 01 00 and needs one answer.
PROBE_ANSWER = ("7E8", "06 41 00 80 00 00 01")


def frame(line: str) -> tuple[int, bytes]:
    """``"74F 07 62 01 03 ..."`` or the compact ``"74F0762010302..."`` -> (id, data)."""
    text = line.replace(" ", "")
    return int(text[:3], 16), bytes.fromhex(text[3:])


@dataclass
class Answer:
    """What the replay station sends to one request: frames, in order, from their IDs."""

    frames: list[tuple[int, bytes]]
    flow_control_from: int | None = None  # hold after the first frame until FC arrives from this ID


@dataclass
class ReplayStation:
    channel: str
    script: dict[tuple[int, bytes], list[Answer]]
    received: list[tuple[int, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bus = can.Bus(interface="virtual", channel=self.channel)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        while not self.stop.is_set():
            message = self.bus.recv(0.01)
            if message is None:
                continue
            data = bytes(message.data)
            self.received.append((message.arbitration_id, data))
            if data[0] >> 4 != 0:  # only single-frame requests start an answer
                continue
            for answer in self.script.get((message.arbitration_id, data[1 : 1 + data[0]]), []):
                self.send(answer)

    def send(self, answer: Answer) -> None:
        first, *rest = answer.frames
        self.put(first)
        if answer.flow_control_from is not None:
            while not self.stop.is_set():
                message = self.bus.recv(0.01)
                if message is None:
                    continue
                self.received.append((message.arbitration_id, bytes(message.data)))
                if message.arbitration_id == answer.flow_control_from and message.data[0] == 0x30:
                    break
        for item in rest:
            self.put(item)

    def put(self, item: tuple[int, bytes]) -> None:
        self.bus.send(can.Message(arbitration_id=item[0], data=item[1], is_extended_id=False))


@contextmanager
def replay(script: dict[tuple[int, bytes], list[Answer]]) -> Iterator[tuple[ReplayStation, CanAdapter]]:
    channel = f"capture-{uuid.uuid4().hex[:10]}"
    script = {(0x7DF, b"\x01\x00"): [Answer([frame(" ".join(PROBE_ANSWER))])], **script}
    station = ReplayStation(channel, script)
    station.thread.start()
    try:
        with CanAdapter("virtual", channel, p2=0.3, window=0.1) as adapter:
            yield station, adapter
    finally:
        station.stop.set()
        station.thread.join()
        station.bus.shutdown()


# -- elmemu9-uds-response-pending-7e5.txt -----------------------------------------------------------
# Ircama/ELM327-emulator issue #9: ECU on 7E5/7ED; 10 03 -> 50 03 00 14 00 C8 (P2 20 ms, P2* 2 s);
# 11 01 -> 7F 11 78 then 51 01. The README limits this capture to the receive side: the 11 01 below
# only goes to the replay station on an in-process virtual bus, never to a car.
ELMEMU9 = {
    (0x7E5, bytes.fromhex("10 03")): [Answer([frame("7ED 06 50 03 00 14 00 C8")])],
    (0x7E5, bytes.fromhex("11 01")): [Answer([frame("7ED 03 7F 11 78"), frame("7ED 02 51 01")])],
}


def test_elmemu9_session_answer_and_response_pending() -> None:
    with replay(ELMEMU9) as (_, adapter):
        session = adapter.request(bytes.fromhex("10 03"), ecu="7ED")
        assert [r.data.hex(" ") for r in session] == ["50 03 00 14 00 c8"]
        timing = DiagnosticSessionControl.interpret_response(Response.from_payload(session[0].data))
        assert timing.service_data.p2_server_max == pytest.approx(0.020)
        assert timing.service_data.p2_star_server_max == pytest.approx(2.0)
        reset = adapter.request(bytes.fromhex("11 01"), ecu="7ED")
        assert [(r.ecu, r.data.hex(" ")) for r in reset] == [("7ED", "51 01")]  # 7F 11 78 not returned


# -- obdb-rav4prime-2021-uds22.txt ------------------------------------------------------------------
# OBDb/Toyota-RAV4-Prime test cases (CC BY-SA 4.0): physical 747 -> 74F and 7C0 -> 7C8.
RAV4_ODO = "74F076201030201207A"  # 22 0103: ODO 73850 (raw 0x01207A)
RAV4_FLV = "7C8056210220687"  # 22 1022: FLV 16.71 (first of three recordings)
RAV4_CELLS = [
    "74F10C362182EBE2BBE",
    "74F21CBBECBBECBBEDC",
    "74F22BECBBEDCBEDCBE",
    "74F23DCBEDCBEDCBEDC",
    "74F24BEDCBECBBEDCBE",
    "74F25CBBECBBECBBECB",
    "74F26BEDCBEDCBECBBE",
    "74F27CBBECBBFBCBF8B",
    "74F28BFCBBF7BBFBCBF",
    "74F296CBFCBBF6CBFCB",
    "74F2ABF6CBFBCBF9BBF",
    "74F2BCBBFBCBFBCBFBC",
    "74F2CBF9BBFCBBFABBF",
    "74F2DDBBFCBBFCBBFCB",
    "74F2EBFCBBFABBF7BBF",
    "74F2FBCBF6CBFBCBF5B",
    "74F20BF9BBF5BBFCBBF",
    "74F215BBFABBF9BBFAB",
    "74F22BFBCBFBCBFBCBF",
    "74F23ABBFCBBFCBBFAB",
    "74F24BFBCBFCBBFBCBF",
    "74F25CBBF9BBF7BBFBC",
    "74F26BF5BBFBCBF4BBF",
    "74F27BCBF6CBFBCBF6C",
    "74F28BF8BBF5BBFBCBF",
    "74F29ABBF8BBFBCBF7B",
    "74F2ABFBCBF9BBFCBBF",
    "74F2BBCBFBCBF9BBFBC",
]  # 22 182E: 195 bytes, 96 cell voltages, sequence numbers wrap 2F -> 20
RAV4 = {
    (0x747, bytes.fromhex("22 01 03")): [Answer([frame(RAV4_ODO)])],
    (0x7C0, bytes.fromhex("22 10 22")): [Answer([frame(RAV4_FLV)])],
    (0x747, bytes.fromhex("22 18 2E")): [Answer([frame(f) for f in RAV4_CELLS], flow_control_from=0x747)],
}


def test_rav4_long_answer_with_sequence_wrap_is_reassembled() -> None:
    with replay(RAV4) as (station, adapter):
        replies = adapter.request(bytes.fromhex("22 18 2E"), ecu="74F")
    assert len(replies) == 1
    data = replies[0].data
    assert len(data) == 0xC3 == 195
    assert data[:3] == bytes.fromhex("62 18 2E")
    cells = [int.from_bytes(data[i : i + 2], "big") for i in range(3, 195, 2)]
    assert len(cells) == 96
    assert cells[0] == 0xBE2B  # C01, OBDb: 3.71427 V
    assert cells[-1] == 0xBFBC  # C96, OBDb: 3.74487 V
    assert (0x747, bytes.fromhex("30 00 00 00 00 00 00 00")) in station.received  # our flow control


def test_rav4_manufacturer_addresses_outside_7e8() -> None:
    with replay(RAV4) as (_, adapter):
        flv = adapter.request(bytes.fromhex("22 10 22"), ecu="7C8")
        assert [(r.ecu, r.data.hex(" ")) for r in flv] == [("7C8", "62 10 22 06 87")]


def test_rav4_odometer_through_a_mileage_profile(tmp_path: Path) -> None:
    # The 22 0103 value is 02 01 20 7A: OBDb reads the odometer from bytes 1..3 (0x01207A = 73850).
    # This profile exists only here: the unit of that recording is not known.
    profiles = tmp_path / "profiles.toml"
    profiles.write_text('[profiles.JTM]\necu = "74F"\ndid = "0103"\ndecode = "uint24_be"\noffset = 1\n')
    with replay(RAV4) as (_, adapter):
        mileage = read_uds_mileage(adapter, "JTMAAAAAAAA000000", profiles)
    assert mileage is not None
    assert mileage.value == 73850
    assert mileage.source == "UDS 22 0103 on 74F (profile 'JTM')"


# -- elmduino38-kona-uds220101-h0-multiframe.txt ---------------------------------------------------
# PowerBroker2/ELMduino issue #38: 22 01 01 sent functionally; three ECUs answer 7F 22 12 and the
# BMS a 62-byte message. The capture has headers off (CAF1), so the CAN IDs below are ours (7E8..7EA,
# BMS on 7EC); the frames are the captured bytes with their ISO-TP PCI put back (03 / 10 3E / 21..28).
KONA_LINES = [
    "0:620101FFF7E7",
    "1:FF980000000080",
    "2:00000F2B1F1D1D",
    "3:1D1F1D00001BC6",
    "4:03C52800007A00",
    "5:0009FF00000888",
    "6:000003D0000003",
    "7:1D000615A30900",
    "8:030000000003E8",
]


def kona_frames() -> list[tuple[int, bytes]]:
    parts = [bytes.fromhex(line.split(":")[1]) for line in KONA_LINES]
    out = [(0x7EC, bytes.fromhex("10 3E") + parts[0])]
    out += [(0x7EC, bytes([0x20 + i]) + part) for i, part in enumerate(parts[1:], start=1)]
    return out


KONA = {
    (0x7DF, bytes.fromhex("22 01 01")): [
        Answer([(0x7E8, bytes.fromhex("03 7F 22 12"))]),
        Answer([(0x7E9, bytes.fromhex("03 7F 22 12"))]),
        Answer([(0x7EA, bytes.fromhex("03 7F 22 12"))]),
        Answer(kona_frames(), flow_control_from=0x7E4),
    ]
}


def test_kona_functional_uds_answers_from_four_ecus() -> None:
    with replay(KONA) as (station, adapter):
        replies = adapter.request(bytes.fromhex("22 01 01"))
    by_ecu = {r.ecu: r.data for r in replies}
    assert set(by_ecu) == {"7E8", "7E9", "7EA", "7EC"}
    assert by_ecu["7E8"] == by_ecu["7E9"] == by_ecu["7EA"] == bytes.fromhex("7F 22 12")
    bms = by_ecu["7EC"]
    assert len(bms) == 0x3E == 62  # the poster: "03E = 62 bytes length and 620101 = 40h + PID"
    assert bms[:6] == bytes.fromhex("62 01 01 FF F7 E7")
    assert bms[-7:] == bytes.fromhex("03 00 00 00 00 03 E8")
    assert (0x7E4, bytes.fromhex("30 00 00 00 00 00 00 00")) in station.received


# -- broken answers (not from a capture: the replay station misbehaves on purpose) ------------------
VIN_FIRST = "7E8 10 14 49 02 01 57 56 57"
BROKEN = {
    # consecutive frame 22 where 21 is due
    (0x7E0, bytes.fromhex("09 02")): [
        Answer([frame(VIN_FIRST), frame("7E8 22 5A 5A 5A 43 44 5A 4D")], 0x7E0)
    ],
    (0x7DF, bytes.fromhex("09 02")): [
        Answer([frame(VIN_FIRST), frame("7E8 22 5A 5A 5A 43 44 5A 4D")], 0x7E0),
        Answer(
            [
                frame("7E9 10 14 49 02 01 57 56 57"),
                frame("7E9 21 5A 5A 5A 43 44 5A 4D"),
                frame("7E9 22 57 31 32 33 34 35 30"),
            ],
            0x7E1,
        ),
    ],
}


def test_wrong_sequence_number_in_a_physical_answer_is_a_framing_error() -> None:
    with replay(BROKEN) as (_, adapter), pytest.raises(FramingError, match="7E8 arrived broken"):
        adapter.request(bytes.fromhex("09 02"), ecu="7E8")


def test_a_broken_functional_answer_is_dropped_and_the_others_kept() -> None:
    with replay(BROKEN) as (_, adapter):
        replies = adapter.request(bytes.fromhex("09 02"))
    assert [(r.ecu, r.data) for r in replies] == [("7E9", b"\x49\x02\x01WVWZZZCDZMW123450")]
