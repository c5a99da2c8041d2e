"""obdtool.uds over a CAN adapter and the virtual car: identification, DTCs, sessions, mileage."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from adapters.base import Adapter, EcuReply, LinkInfo
from adapters.can_isotp import CanAdapter
from adapters.sim.can_network import VirtualCanNetwork
from adapters.sim.car import VirtualCar
from adapters.sim.scenario import Scenario, load_scenario, parse_scenario
from obdtool.errors import ConfigError, DecodeError
from obdtool.uds import (
    DEFAULT_PROFILES,
    UdsError,
    UdsSession,
    clear_uds_dtcs,
    decode_identification,
    explain_nrc,
    load_mileage_profiles,
    read_uds_ecu,
    read_uds_mileage,
    split_identification_answer,
    status_flags,
    uds_session,
)

UDS_VIN = "TMBJR7NS4N8012346"


@contextmanager
def car_on_bus(scenario: Scenario | str, **adapter_kw: Any) -> Iterator[tuple[VirtualCar, CanAdapter]]:
    channel = f"uds-test-{uuid.uuid4().hex[:10]}"
    car = VirtualCar(load_scenario(scenario) if isinstance(scenario, str) else scenario)
    adapter_kw.setdefault("p2", 0.2)
    with (
        VirtualCanNetwork(car, channel, response_ms=1) as network,
        CanAdapter("virtual", channel, **adapter_kw) as adapter,
    ):
        yield car, adapter
    assert network.errors == []


def sent(car: VirtualCar, address: str) -> list[str]:
    target = car.ecu(address)
    assert target is not None
    return [r.data.hex().upper() for r in car.request_log if r.target == target.request_address]


# -- read_uds_ecu ----------------------------------------------------------------------------------


def test_engine_ecu_identification_and_dtcs() -> None:
    with car_on_bus("uds") as (car, adapter):
        report = read_uds_ecu(adapter, "7E8", busy_delay=0.01)
    assert report.answered
    assert report.identification == {
        "F187": "04L906056KH",
        "F188": "04L907309B",
        "F189": "0007",
        "F18A": "BOSCH",
        "F18C": "DE0412345678",  # only in the extended session: read on the retry
        "F190": UDS_VIN,
        "F191": "04L907309B",
        "F195": "H07 0007",
        "F197": "R4 2.0l TDI",
    }
    codes = {d.code: d for d in report.dtcs}
    assert set(codes) == {"P0401-00", "P2002-00"}
    stored = codes["P0401-00"]
    assert stored.status == 0xA9
    assert stored.flags == [
        "testFailed",
        "confirmedDTC",
        "testFailedSinceLastClear",
        "warningIndicatorRequested",
    ]
    assert stored.confirmed
    assert codes["P2002-00"].flags == [
        "testFailedThisOperationCycle",
        "pendingDTC",
        "testFailedSinceLastClear",
    ]
    assert report.notes == []
    # three single-frame batches, DTCs, then the extended session for F18C only, and back
    assert sent(car, "7E8") == [
        "22F187F188F189",
        "22F18AF18CF190",
        "22F191F195F197",
        "1902AF",
        "1003",
        "22F18C",
        "1001",
    ]
    assert car.ecus[0].uds_session == 1


def test_secured_did_is_explained_and_single_did_ecu_is_read_one_by_one() -> None:
    with car_on_bus("uds") as (car, adapter):
        report = read_uds_ecu(adapter, "7E9", extended_retry=False, busy_delay=0.01)
    assert report.identification == {"F187": "0DD300041H", "F189": "2204", "F190": UDS_VIN, "F195": "2204"}
    assert report.notes == [
        "7E9: F18C (ECU serial number) not read: protected (security access denied, NRC 0x33):"
        " only the manufacturer's tool can read it"
    ]
    assert [d.code for d in report.dtcs] == ["P0730-00"]
    requests = sent(car, "7E9")
    assert requests[0] == "22F187F188F189"  # refused with 7F 22 13 (multi_did = false) ...
    assert requests[1:10] == [
        f"22{d:04X}" for d in (0xF187, 0xF188, 0xF189, 0xF18A, 0xF18C, 0xF190, 0xF191, 0xF195, 0xF197)
    ]


def test_busy_ecu_is_retried_and_uds_only_dtcs_are_read() -> None:
    with car_on_bus("uds") as (car, adapter):
        report = read_uds_ecu(adapter, "7EB", busy_delay=0.01)
    assert sent(car, "7EB")[:2] == ["22F187F188F189", "22F187F188F189"]  # 7F 22 21, then again
    assert report.identification == {"F187": "565920860B", "F189": "0412", "F18A": "VDO", "F197": "KOMBI"}
    assert {(d.code, d.status) for d in report.dtcs} == {("U0100-00", 0x2F), ("B1318-16", 0x28)}
    assert report.notes == []


def test_busy_for_good_is_a_note() -> None:
    ecus = [{"address": "7E8", "busy_responses": 20, "uds": {"dids": {"F190": "@vin"}}}]
    scenario = parse_scenario({"protocol": "6", "vin": UDS_VIN, "ecus": ecus})
    with car_on_bus(scenario) as (car, adapter):
        report = read_uds_ecu(adapter, "7E8", dids=[0xF190], extended_retry=False, busy_delay=0.001)
    assert len(sent(car, "7E8")) == 1 + 3 + 4  # the 01 00 probe is functional: 4 tries each for 22 and 19
    assert "F190 (VIN) not read: the ECU stayed busy (NRC 0x21)" in report.notes[1]


def test_ecu_answering_0x78_ten_times_is_read() -> None:
    ecus = [{"address": "7E8", "pending_responses": 10, "response_ms": 5, "uds": {"dids": {"F190": "@vin"}}}]
    scenario = parse_scenario({"protocol": "6", "vin": UDS_VIN, "ecus": ecus})
    channel = f"uds-test-{uuid.uuid4().hex[:10]}"
    car = VirtualCar(scenario)
    with VirtualCanNetwork(car, channel), CanAdapter("virtual", channel, p2=0.05, window=0.1) as adapter:
        report = read_uds_ecu(adapter, "7E8", dids=[0xF190], extended_retry=False)
    assert report.identification == {"F190": UDS_VIN}
    assert report.notes == []


def test_silent_ecu_is_reported_within_a_bounded_time() -> None:
    ecus = [{"address": "7E8"}, {"address": "7E9", "silent": True}]
    scenario = parse_scenario({"protocol": "6", "vin": UDS_VIN, "ecus": ecus})
    with car_on_bus(scenario, p2=0.05) as (_, adapter):
        started = time.monotonic()
        report = read_uds_ecu(adapter, "7E9")
        assert time.monotonic() - started < 2.0
    assert not report.answered
    assert report.notes == ["7E9 did not answer (ECU absent, asleep, or not a UDS ECU)"]


def test_ecu_without_uds_says_nothing_worth_a_note() -> None:
    scenario = parse_scenario({"protocol": "6", "vin": UDS_VIN, "ecus": [{"address": "7E8"}]})
    with car_on_bus(scenario) as (_, adapter):
        report = read_uds_ecu(adapter, "7E8")
    assert report.answered
    assert (report.identification, report.dtcs, report.notes) == ({}, [], [])


def test_petrol_car_uds_view_matches_its_obd_view() -> None:
    with car_on_bus("petrol") as (_, adapter):
        report = read_uds_ecu(adapter, "7E8")
    assert report.identification["F190"] == "WVWZZZCDZMW123450"
    assert sorted(d.code for d in report.dtcs) == ["P0133-00", "P0171-00", "P0420-00"]


# -- sessions --------------------------------------------------------------------------------------


def test_session_enters_extended_and_returns_to_default() -> None:
    with car_on_bus("uds") as (car, adapter):
        with uds_session(adapter, "7E8") as session:
            assert car.ecus[0].uds_session == 3
            assert session.session == 3
            response = session.request(bytes.fromhex("22F18C"))
            assert response is not None and response.positive
        assert car.ecus[0].uds_session == 1
        assert sent(car, "7E8") == ["1003", "22F18C", "1001"]


def test_keepalive_sends_tester_present_after_two_seconds() -> None:
    now = [100.0]
    with car_on_bus("uds") as (car, adapter):
        with uds_session(adapter, "7E8", clock=lambda: now[0]) as session:
            session.keepalive()  # nothing yet
            now[0] += 2.5
            session.request(bytes.fromhex("22F190"))
            now[0] += 1.0
            session.keepalive()  # 1 s since the last request: nothing
            now[0] += 2.1
            session.keepalive()
        assert sent(car, "7E8") == ["1003", "3E80", "22F190", "3E80", "1001"]


def test_default_session_sends_no_tester_present() -> None:
    now = [0.0]
    with car_on_bus("uds") as (car, adapter):
        session = UdsSession(adapter, "7E8", clock=lambda: now[0])
        now[0] += 10
        session.keepalive()
        assert sent(car, "7E8") == []


def test_refused_session_raises_with_the_reason() -> None:
    ecus = [{"address": "7E8", "uds": {"dids": {}}}, {"address": "7E9", "silent": True}]
    scenario = parse_scenario({"protocol": "6", "vin": UDS_VIN, "ecus": ecus})
    with car_on_bus(scenario, p2=0.05) as (_, adapter):
        with pytest.raises(UdsError, match="refused session 02") as caught, uds_session(adapter, "7E8", 0x02):
            pass
        assert caught.value.nrc == 0x12
        with pytest.raises(UdsError, match="did not answer") as silent, uds_session(adapter, "7E9"):
            pass
        assert silent.value.nrc is None


# -- clearing --------------------------------------------------------------------------------------


def test_clear_is_refused_while_the_engine_runs_then_works() -> None:
    with car_on_bus("uds") as (car, adapter):
        car.start_engine()
        with pytest.raises(UdsError, match=r"switch the engine off") as caught:
            clear_uds_dtcs(adapter, "7E8")
        assert caught.value.nrc == 0x22
        car.stop_engine()
        clear_uds_dtcs(adapter, "7E8")
        assert car.ecus[0].stored == []
        assert read_uds_ecu(adapter, "7E8", extended_retry=False).dtcs == []


# -- mileage ---------------------------------------------------------------------------------------


def test_mileage_from_the_shipped_profiles() -> None:
    with car_on_bus("petrol") as (_, adapter):
        mileage = read_uds_mileage(adapter, "WVWZZZCDZMW123450")
    assert mileage is not None
    assert (mileage.km, mileage.unit, mileage.ecu, mileage.did) == (48213.0, "km", "7E8", "2203")
    assert mileage.source == "UDS 22 2203 on 7E8 (profile 'WVW')"
    with car_on_bus("uds") as (_, adapter):
        mileage = read_uds_mileage(adapter, UDS_VIN, busy_delay=0.01)
    assert mileage is not None
    assert (mileage.km, mileage.source) == (61234.5, "UDS 22 2BC1 on 7EB (profile 'TMB')")


def test_mileage_in_miles_in_the_extended_session(tmp_path: Path) -> None:
    profiles = tmp_path / "p.toml"
    profiles.write_text(
        '[profiles.TMB]\necu = "7E8"\ndid = "2203"\ndecode = "uint24_be"\n'
        'unit = "miles"\nsession = "extended"\n'
    )
    with car_on_bus("uds") as (car, adapter):
        mileage = read_uds_mileage(adapter, UDS_VIN, profiles)
        assert sent(car, "7E8") == ["1003", "222203", "1001"]
    assert mileage is not None
    assert (mileage.value, mileage.unit) == (61234.0, "miles")
    assert mileage.km == pytest.approx(61234 * 1.609344)


def test_mileage_without_vin_profile_or_did_is_none(tmp_path: Path) -> None:
    profiles = tmp_path / "p.toml"
    profiles.write_text('[profiles.WVW]\necu = "7E9"\ndid = "2203"\ndecode = "uint32_be"\n')
    with car_on_bus("petrol") as (_, adapter):
        assert read_uds_mileage(adapter, None) is None
        assert read_uds_mileage(adapter, "VF1AAAAAAAA000000") is None  # no profile for VF1
        assert read_uds_mileage(adapter, "WVWZZZCDZMW123450", profiles) is None  # 7E9 has no 2203


def test_mileage_answer_too_short_for_the_profile(tmp_path: Path) -> None:
    profiles = tmp_path / "p.toml"
    profiles.write_text('[profiles.WVW]\necu = "7E8"\ndid = "2203"\ndecode = "uint32_be"\n')
    with (
        car_on_bus("petrol") as (_, adapter),
        pytest.raises(DecodeError, match="profile 'WVW' expects uint32_be"),
    ):
        read_uds_mileage(adapter, "WVWZZZCDZMW123450", profiles)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[profiles.WVW]\necu = "7E8\n', "p.toml: "),
        ("[profiles.WVW]\necu = 7E8\n", "profiles.WVW.ecu: expected text in quotes"),  # TOML reads 7e8
        ('[profiles.WVW]\necu = "7E8"\ndid = "22"\ndecode = "uint24_be"\n', "profiles.WVW.did"),
        ('[profiles.WVW]\necu = "7E0"\ndid = "2203"\ndecode = "uint24_be"\n', "profiles.WVW.ecu"),
        ('[profiles.WVW]\necu = "7E8"\ndid = "2203"\ndecode = "float"\n', "profiles.WVW.decode"),
        (
            '[profiles.WVW]\necu = "7E8"\ndid = "2203"\ndecode = "uint24_be"\nunit = "m"\n',
            "profiles.WVW.unit",
        ),
        (
            '[profiles.WVW]\necu = "7E8"\ndid = "2203"\ndecode = "uint24_be"\nscale = 0\n',
            "profiles.WVW.scale",
        ),
        (
            '[profiles.WVW]\necu = "7E8"\ndid = "2203"\ndecode = "uint24_be"\nsesion = "x"\n',
            "profiles.WVW.sesion",
        ),
        ('[profiles.wv]\necu = "7E8"\n', "profiles.wv"),
        ("[WVW]\n", "WVW: unknown key"),
    ],
)
def test_malformed_profiles_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    profiles = tmp_path / "p.toml"
    profiles.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_mileage_profiles(profiles)
    assert str(profiles) in str(caught.value)


def test_missing_profiles_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_mileage_profiles(tmp_path / "nope.toml")


def test_shipped_profiles_cover_the_simulator_cars() -> None:
    profiles = load_mileage_profiles(DEFAULT_PROFILES)
    for name in ("petrol", "uds"):
        vin = load_scenario(name).vin
        assert vin is not None
        assert vin[:3] in profiles


# -- pure helpers ----------------------------------------------------------------------------------


def test_split_identification_answer() -> None:
    body = bytes.fromhex("F187") + b"04L906056KH" + bytes.fromhex("F190") + b"TMB" + b"\x00\x00"
    assert split_identification_answer(body, [0xF187, 0xF188, 0xF190]) == {
        0xF187: b"04L906056KH",
        0xF190: b"TMB\x00\x00",
    }
    assert split_identification_answer(body, [0xF190, 0xF187]) is None  # out of order
    binary = bytes.fromhex("F18C 00F1 90") + bytes.fromhex("F190") + b"X"
    assert split_identification_answer(binary, [0xF18C, 0xF190]) is None  # not certain where to split
    assert split_identification_answer(b"\x22\x03\x00", [0x2203]) is None  # not identification DIDs


def test_decode_identification_and_status_flags() -> None:
    # Ford answers F190 with 24 bytes, the VIN and 7 x 00 (commaai/openpilot PR #25188, see the
    # captures README): the fill goes, the text stays.
    assert decode_identification(b"WF0NXXGCHNJR69712" + b"\x00" * 7) == "WF0NXXGCHNJR69712"
    assert decode_identification(b"\x01\x02\xf1") == "01 02 F1"
    assert decode_identification(b"") == ""
    assert status_flags(0x2F) == [
        "testFailed",
        "testFailedThisOperationCycle",
        "pendingDTC",
        "confirmedDTC",
        "testFailedSinceLastClear",
    ]
    assert explain_nrc(0x83).startswith("refused while the engine is running")
    assert "0x35" in explain_nrc(0x35)


class Scripted(Adapter):
    """An adapter that answers from a table: for answers a CAN bus would never carry."""

    def __init__(self, answers: dict[str, str]) -> None:
        super().__init__()
        self.answers = {bytes.fromhex(k): bytes.fromhex(v) for k, v in answers.items()}

    def open(self) -> LinkInfo:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def request(
        self, data: bytes, *, ecu: str | None = None, expect: int | None = None, timeout: float | None = None
    ) -> list[EcuReply]:
        answer = self.answers.get(data)
        return [] if answer is None else [EcuReply(ecu or "7E8", answer)]


def test_an_answer_to_another_request_stops_that_ecu_with_a_note() -> None:
    adapter = Scripted({"22 F1 87 F1 88 F1 89": "41 00 BE 1F A8 13"})
    report = read_uds_ecu(adapter, "7E8")
    assert report.answered
    assert report.notes == [
        "7E8: read-out stopped, an answer was not understood:"
        " 7E8 answered 41 00 BE 1F A8 13 to 22 F1 87 F1 88 F1 89"
    ]


def test_single_did_answers_through_any_adapter() -> None:
    adapter = Scripted(
        {
            "22 F1 87 F1 88 F1 89": "7F 22 13",
            "22 F1 87": "62 F1 87 41 42 43 00 00",
            "22 F1 88": "7F 22 31",
            "22 F1 89": "62 F1 88 41",  # another DID than asked
            "19 02 AF": "59 02 FF 01 33 00 09 00 00 00 00",  # zero padding after one DTC
        }
    )
    report = read_uds_ecu(adapter, "7E8", dids=[0xF187, 0xF188, 0xF189], extended_retry=False)
    assert report.identification == {"F187": "ABC"}
    assert [(d.code, d.status) for d in report.dtcs] == [("P0133-00", 0x09)]
    assert len(report.notes) == 1
    assert report.notes[0].startswith("7E8: F189 (ECU software version) not understood: the 62 answer")
