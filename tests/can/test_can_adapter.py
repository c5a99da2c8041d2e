"""CanAdapter against the virtual car on python-can's virtual bus: real frames, real ISO-TP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import can
import pytest

from adapters.can_isotp import CanAdapter
from adapters.errors import AdapterSpecError, LinkError, UnableToConnectError
from adapters.sim.can_network import VirtualCanNetwork
from adapters.sim.car import VirtualCar
from adapters.sim.scenario import Scenario, load_scenario, parse_scenario

PETROL_VIN = b"WVWZZZCDZMW123450"
BOUND = 2.0  # seconds: a correctness bound for "returns in bounded time", not a benchmark


@pytest.fixture
def channel() -> str:
    return f"can-test-{uuid.uuid4().hex[:10]}"


@contextmanager
def car_on_bus(
    scenario: Scenario | str, channel: str, *, response_ms: float | None = 1, **adapter_kw: Any
) -> Iterator[tuple[VirtualCar, CanAdapter]]:
    car = VirtualCar(load_scenario(scenario) if isinstance(scenario, str) else scenario)
    network = VirtualCanNetwork(car, channel, response_ms=response_ms)
    adapter_kw.setdefault("window", 0.1)
    adapter_kw.setdefault("p2", 0.2)
    with network, CanAdapter("virtual", channel, **adapter_kw) as adapter:
        yield car, adapter
    assert network.errors == []


def sniff(channel: str) -> can.BusABC:
    """A third station on the bus that records every frame."""
    return can.Bus(interface="virtual", channel=channel)


def frames(bus: can.BusABC) -> list[tuple[int, bytes]]:
    out = []
    while (message := bus.recv(0.0)) is not None:
        out.append((message.arbitration_id, bytes(message.data)))
    return out


def inline(protocol: str, ecus: list[dict[str, Any]], **top: Any) -> Scenario:
    return parse_scenario({"protocol": protocol, "vin": PETROL_VIN.decode(), "ecus": ecus, **top})


# -- opening ---------------------------------------------------------------------------------------


def test_open_finds_every_ecu_and_reports_the_link(channel: str) -> None:
    with car_on_bus("petrol", channel) as (_, adapter):
        info = adapter.info
        assert info.kind == "can"
        assert info.protocol == "ISO 15765-4 CAN (11 bit ID, 500 kbaud)"
        assert info.protocol_id == "6"
        assert info.is_can
        assert sorted(adapter.responders) == ["7E8", "7E9"]
        assert adapter.stats.per_service == {0x01: 1}  # the 01 00 probe


def test_no_ecu_on_the_bus_is_unable_to_connect(channel: str) -> None:
    adapter = CanAdapter("virtual", channel, window=0.05)
    with pytest.raises(UnableToConnectError) as caught:
        adapter.open()
    assert str(caught.value) == (
        f"no ECU answered on can:virtual:{channel} at 500 kbit/s — ignition on? right bitrate?"
    )
    with pytest.raises(LinkError):
        adapter.request(b"\x01\x00")  # closed again after the failed open
    adapter.close()  # idempotent


def test_250k_and_29_bit_give_the_elm_protocol_numbers(channel: str) -> None:
    scenario = inline("9", [{"address": "18DAF110"}])
    with car_on_bus(scenario, channel, bitrate=250_000, id_bits=29) as (_, adapter):
        assert adapter.info.protocol_id == "9"
        assert adapter.info.protocol == "ISO 15765-4 CAN (29 bit ID, 250 kbaud)"


def test_auto_id_bits_tries_11_then_finds_29(channel: str) -> None:
    scenario = inline("7", [{"address": "18DAF110"}, {"address": "18DAF118", "answers_vin": False}])
    with car_on_bus(scenario, channel, window=0.05) as (_, adapter):
        assert adapter.id_bits == 29
        assert adapter.info.protocol_id == "7"
        assert sorted(adapter.responders) == ["18DAF110", "18DAF118"]


# -- OBD requests ----------------------------------------------------------------------------------


def test_functional_01_00_collects_every_ecu(channel: str) -> None:
    with car_on_bus("petrol", channel) as (_, adapter):
        replies = adapter.request(b"\x01\x00")
        assert sorted(r.ecu for r in replies) == ["7E8", "7E9"]
        assert all(r.data[:2] == b"\x41\x00" and len(r.data) == 6 for r in replies)


def test_expect_returns_as_soon_as_the_replies_are_in(channel: str) -> None:
    with car_on_bus("petrol", channel) as (_, adapter):
        adapter.window = 1.0
        started = time.monotonic()
        replies = adapter.request(b"\x01\x00", expect=2)
        assert len(replies) == 2
        assert time.monotonic() - started < 0.5  # well inside the 1 s window


def test_functional_09_02_vin_is_reassembled_with_flow_control(channel: str) -> None:
    with car_on_bus("petrol", channel) as (_, adapter):
        spy = sniff(channel)
        try:
            replies = adapter.request(b"\x09\x02")
            seen = frames(spy)
        finally:
            spy.shutdown()
    assert [(r.ecu, r.data) for r in replies] == [("7E8", b"\x49\x02\x01" + PETROL_VIN)]
    assert seen[0] == (0x7DF, bytes.fromhex("02 09 02 00 00 00 00 00"))  # single frame, padded
    assert seen[1] == (0x7E8, bytes.fromhex("10 14 49 02 01") + PETROL_VIN[:3])  # first frame, 20 bytes
    assert seen[2] == (0x7E0, bytes.fromhex("30 00 00 00 00 00 00 00"))  # our flow control to 7E0
    assert [f[1][0] for f in seen[3:]] == [0x21, 0x22]


def test_functional_multi_frame_answers_from_two_ecus_at_once(channel: str) -> None:
    with car_on_bus("petrol", channel) as (_, adapter):
        spy = sniff(channel)
        try:
            replies = adapter.request(b"\x09\x04")  # CALIDs: both ECUs answer multi-frame
            seen = frames(spy)
        finally:
            spy.shutdown()
    by_ecu = {r.ecu: r.data for r in replies}
    assert by_ecu["7E8"] == b"\x49\x04\x02" + b"04E906027HA 4521" + b"04E906027HB 0012"
    assert by_ecu["7E9"] == b"\x49\x04\x01" + b"0CW300041C 3511\x00"
    flow_controls = {ident for ident, data in seen if data[0] == 0x30}
    assert flow_controls == {0x7E0, 0x7E1}  # each responder got its own flow control


def test_physical_09_02_and_29_bit_addresses(channel: str) -> None:
    scenario = inline("7", [{"address": "18DAF110"}, {"address": "18DAF118", "answers_vin": False}])
    with car_on_bus(scenario, channel, id_bits=29) as (_, adapter):
        spy = sniff(channel)
        try:
            replies = adapter.request(b"\x09\x02", ecu="18DAF110")
            seen = frames(spy)
        finally:
            spy.shutdown()
        assert [(r.ecu, r.data) for r in replies] == [("18DAF110", b"\x49\x02\x01" + PETROL_VIN)]
        assert seen[0][0] == 0x18DA10F1
        assert (0x18DA10F1, bytes.fromhex("30 00 00 00 00 00 00 00")) in seen
        functional = adapter.request(b"\x01\x00")
        assert sorted(r.ecu for r in functional) == ["18DAF110", "18DAF118"]


def test_physical_multi_frame_request_waits_for_the_ecus_flow_control(channel: str) -> None:
    with car_on_bus("petrol", channel) as (car, adapter):
        request = bytes.fromhex("22 F1 87 F1 88 F1 89 F1 8A F1 90")  # 11 bytes: first frame + 1 CF
        spy = sniff(channel)
        try:
            replies = adapter.request(request, ecu="7E8")
            seen = frames(spy)
        finally:
            spy.shutdown()
        assert car.requests_for(0x22)[-1].data == request
        assert replies[0].data.startswith(b"\x62\xf1\x87" + b"04E906027HA")
        assert seen[0] == (0x7E0, bytes.fromhex("10 0B 22 F1 87 F1 88 F1"))
        assert seen[1] == (0x7E8, bytes.fromhex("30 08 00 AA AA AA AA AA"))  # ECU: block size 8, AA padding
        assert seen[2] == (0x7E0, bytes.fromhex("21 89 F1 8A F1 90 00 00"))


def test_functional_request_longer_than_one_frame_is_refused(channel: str) -> None:
    with (
        car_on_bus("petrol", channel) as (_, adapter),
        pytest.raises(AdapterSpecError, match="one CAN frame"),
    ):
        adapter.request(bytes.fromhex("22 F1 87 F1 88 F1 89 F1 8A"))


def test_bad_ecu_addresses_are_spec_errors(channel: str) -> None:
    with car_on_bus("petrol", channel) as (_, adapter):
        with pytest.raises(AdapterSpecError, match="request address"):
            adapter.request(b"\x09\x02", ecu="7E0")
        with pytest.raises(AdapterSpecError, match="not an ECU address"):
            adapter.request(b"\x09\x02", ecu="engine")
        with pytest.raises(AdapterSpecError, match="empty"):
            adapter.request(b"")


def test_stats_count_requests_and_service_bytes(channel: str) -> None:
    with car_on_bus("petrol", channel) as (_, adapter):
        before = adapter.stats.bytes_in
        adapter.request(b"\x09\x02", ecu="7E8")
        assert adapter.stats.requests == 2
        assert adapter.stats.bytes_out == 4
        assert adapter.stats.bytes_in - before == 20
        assert adapter.stats.per_service == {0x01: 1, 0x09: 1}


# -- timing: silence, response pending, busy -------------------------------------------------------


def test_silent_ecu_gives_no_answer_within_a_bounded_time(channel: str) -> None:
    scenario = inline("6", [{"address": "7E8"}, {"address": "7E9", "silent": True}])
    with car_on_bus(scenario, channel, p2=0.05) as (_, adapter):
        started = time.monotonic()
        assert adapter.request(b"\x09\x02", ecu="7E9") == []
        assert time.monotonic() - started < BOUND
        started = time.monotonic()  # multi-frame request: nobody sends flow control
        assert adapter.request(bytes.fromhex("22 F1 87 F1 88 F1 89 F1 8A"), ecu="7E9") == []
        assert time.monotonic() - started < BOUND


def test_ten_response_pending_answers_are_waited_out(channel: str) -> None:
    ecus = [{"address": "7E8", "pending_responses": 10, "response_ms": 5, "uds": {"dids": {"F190": "@vin"}}}]
    with car_on_bus(inline("6", ecus), channel, p2=0.05, p2_star=0.5) as (_, adapter):
        spy = sniff(channel)
        try:
            started = time.monotonic()
            replies = adapter.request(b"\x22\xf1\x90", ecu="7E8")
            elapsed = time.monotonic() - started
            seen = frames(spy)
        finally:
            spy.shutdown()
    assert [r.data for r in replies] == [b"\x62\xf1\x90" + PETROL_VIN]  # the 78s are not returned
    assert sum(1 for ident, data in seen if ident == 0x7E8 and data[:4] == bytes.fromhex("03 7F 22 78")) == 10
    assert 0.05 < elapsed < BOUND  # 11 messages x 5 ms: far longer than P2 alone


def test_response_pending_then_silence_ends_after_p2_star(channel: str) -> None:
    # The ECU sends its 78s, then stops: the tester gives up P2* after the last one.
    ecus = [{"address": "7E8", "pending_responses": 1, "response_ms": 300, "uds": {"dids": {"F190": "@vin"}}}]
    with car_on_bus(inline("6", ecus), channel, window=0.5, p2=0.35, p2_star=0.1) as (_, adapter):
        started = time.monotonic()
        assert adapter.request(b"\x22\xf1\x90", ecu="7E8") == []
        assert 0.3 < time.monotonic() - started < BOUND


def test_busy_answer_is_returned_to_the_caller(channel: str) -> None:
    ecus = [{"address": "7E8", "busy_responses": 1, "uds": {"dids": {"F190": "@vin"}}}]
    with car_on_bus(inline("6", ecus), channel) as (_, adapter):
        assert adapter.request(b"\x22\xf1\x90", ecu="7E8")[0].data == b"\x7f\x22\x21"
        assert adapter.request(b"\x22\xf1\x90", ecu="7E8")[0].data[:3] == b"\x62\xf1\x90"


def test_a_late_answer_does_not_pass_for_the_next_request(channel: str) -> None:
    ecus = [{"address": "7E8", "response_ms": 60}]
    with car_on_bus(inline("6", ecus), channel, p2=0.02) as (_, adapter):
        assert adapter.request(b"\x09\x02", ecu="7E8") == []  # gave up before the ECU answered
        replies = adapter.request(b"\x01\x00", ecu="7E8", timeout=1.0)
        assert [r.data[:2] for r in replies] == [b"\x41\x00"]  # the late 49 02 was dropped


def test_functional_uds_nrcs_are_suppressed_but_answers_collected(channel: str) -> None:
    ecus = [
        {"address": "7E8", "uds": {"dids": {"F190": "@vin"}}},
        {"address": "7E9", "uds": {"dids": {}}},  # would say 7F 22 31: must stay silent
    ]
    with car_on_bus(inline("6", ecus), channel) as (_, adapter):
        replies = adapter.request(b"\x22\xf1\x90")
        assert [(r.ecu, r.data[:3]) for r in replies] == [("7E8", b"\x62\xf1\x90")]


def test_close_is_idempotent_and_requests_after_close_fail(channel: str) -> None:
    with car_on_bus("petrol", channel) as (_, adapter):
        pass
    adapter.close()
    with pytest.raises(LinkError, match="not open"):
        adapter.request(b"\x01\x00")
    with pytest.raises(RuntimeError):
        _ = adapter.info


def test_a_29_bit_ecu_can_be_asked_on_an_11_bit_link(channel: str) -> None:
    # A gateway car: OBD on 11-bit IDs, one ECU reachable only on 29-bit ones.
    car29 = VirtualCar(inline("7", [{"address": "18DAF110"}]))
    with car_on_bus("petrol", channel) as (_, adapter), VirtualCanNetwork(car29, channel, response_ms=1):
        assert adapter.id_bits == 11
        replies = adapter.request(b"\x09\x02", ecu="18DAF110")
        assert [(r.ecu, r.data) for r in replies] == [("18DAF110", b"\x49\x02\x01" + PETROL_VIN)]
