"""VirtualCanNetwork: the virtual car's ECUs on a python-can bus (threads, timing, lifecycle)."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from typing import Any

import can
import pytest

from adapters.can_isotp import CanAdapter
from adapters.errors import AdapterSpecError, AdapterUnavailableError
from adapters.sim.can_network import VirtualCanNetwork, main
from adapters.sim.car import VirtualCar
from adapters.sim.scenario import ScenarioError, load_scenario, parse_scenario


@pytest.fixture
def channel() -> str:
    return f"net-test-{uuid.uuid4().hex[:10]}"


def car_of(ecus: list[dict[str, Any]], protocol: str = "6", **top: Any) -> VirtualCar:
    return VirtualCar(parse_scenario({"protocol": protocol, "vin": "WVWZZZCDZMW123450", "ecus": ecus, **top}))


def test_stop_leaves_no_threads(channel: str) -> None:
    before = set(threading.enumerate())
    network = VirtualCanNetwork(VirtualCar(load_scenario("uds")), channel)
    network.start()
    during = set(threading.enumerate()) - before
    assert len(during) == 4  # python-can's notifier + one thread per ECU
    with CanAdapter("virtual", channel) as adapter:
        adapter.request(b"\x09\x02")
    network.stop()
    assert set(threading.enumerate()) - before == set()
    network.stop()  # idempotent


def test_context_manager_and_start_are_idempotent(channel: str) -> None:
    before = set(threading.enumerate())
    with VirtualCanNetwork(VirtualCar(load_scenario("petrol")), channel) as network:
        assert network.start() is network
        assert network.id_bits == 11
    assert set(threading.enumerate()) - before == set()


def test_functional_clear_happens_once_for_the_car(channel: str) -> None:
    car = VirtualCar(load_scenario("petrol"))
    with VirtualCanNetwork(car, channel), CanAdapter("virtual", channel) as adapter:
        replies = adapter.request(b"\x04")
    assert sorted(r.data for r in replies) == [b"\x44", b"\x44"]
    assert [ecu.clears for ecu in car.ecus] == [1, 1]
    assert len(car.requests_for(0x04)) == 1


def test_response_time_is_honoured(channel: str) -> None:
    car = car_of([{"address": "7E8", "response_ms": 40}])
    with VirtualCanNetwork(car, channel), CanAdapter("virtual", channel, window=0.2) as adapter:
        started = time.monotonic()
        replies = adapter.request(b"\x01\x00", ecu="7E8", timeout=1.0)
        assert replies
        assert time.monotonic() - started >= 0.035


def test_scenario_and_network_response_times(channel: str) -> None:
    car = car_of([{"address": "7E8", "response_ms": 7}, {"address": "7E9"}], timing={"ecu_response_ms": 3})
    assert [VirtualCanNetwork(car, channel).response_s(e) for e in car.ecus] == [0.007, 0.003]
    assert [VirtualCanNetwork(car, channel, response_ms=1).response_s(e) for e in car.ecus] == [0.007, 0.001]


def test_interim_answers_are_spaced_by_the_response_time(channel: str) -> None:
    car = car_of(
        [{"address": "7E8", "pending_responses": 3, "response_ms": 20, "uds": {"dids": {"F190": "@vin"}}}]
    )
    spy = can.Bus(interface="virtual", channel=channel)
    try:
        with VirtualCanNetwork(car, channel), CanAdapter("virtual", channel, window=0.2) as adapter:
            while spy.recv(0.0) is not None:
                pass
            adapter.request(b"\x22\xf1\x90", ecu="7E8")
            stamps = []
            while (message := spy.recv(0.0)) is not None:
                interim = message.data[1] == 0x7F  # 03 7F 22 78
                answer = message.data[0] == 0x10  # first frame of 62 F1 90 + VIN
                if message.arbitration_id == 0x7E8 and (interim or answer):
                    stamps.append(message.timestamp)
    finally:
        spy.shutdown()
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(stamps) == 4
    assert all(gap >= 0.015 for gap in gaps)


def test_silent_ecu_is_not_on_the_bus(channel: str) -> None:
    car = car_of([{"address": "7E8"}, {"address": "7E9", "silent": True}])
    with VirtualCanNetwork(car, channel), CanAdapter("virtual", channel) as adapter:
        assert adapter.responders == ("7E8",)


def test_non_can_scenario_is_refused() -> None:
    car = car_of([{"address": "10"}], protocol="5")
    with pytest.raises(AdapterSpecError, match="not CAN"):
        VirtualCanNetwork(car)


def test_malformed_uds_table_is_reported_before_start() -> None:
    car = car_of([{"address": "7E8", "uds": {"dids": {"F1": "x"}}}])
    with pytest.raises(ScenarioError, match=r"ecus\[0\]\.uds\.dids\.F1"):
        VirtualCanNetwork(car)


def test_unknown_interface_is_unavailable() -> None:
    network = VirtualCanNetwork(VirtualCar(load_scenario("petrol")), "x", interface="nosuchbus")
    with pytest.raises(AdapterUnavailableError, match="nosuchbus"):
        network.start()


def test_main_reports_a_missing_scenario(caplog: pytest.LogCaptureFixture) -> None:
    assert main(["no-such-scenario"]) == 1
    assert "no scenario called 'no-such-scenario'" in caplog.text
