"""adapters.sim.uds: the virtual car's UDS answers, byte for byte (no bus involved)."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.sim.car import VirtualCar
from adapters.sim.scenario import ScenarioError, load_scenario, parse_scenario
from adapters.sim.uds import handle_uds, parse_uds_table, validate_uds

VIN = "TMBJR7NS4N8012346"


def make_car(uds: dict[str, Any] | None = None, **ecu: Any) -> VirtualCar:
    entry: dict[str, Any] = {"address": "7E8", "stored": ["P0133"], "pending": ["P0171"], **ecu}
    if uds is not None:
        entry["uds"] = uds
    return VirtualCar(parse_scenario({"protocol": "6", "vin": VIN, "ecus": [entry]}))


@pytest.fixture
def car() -> VirtualCar:
    return make_car(
        {
            "dids": {"F187": "04L906056KH", "F190": "@vin", "2203": "hex:00EF32", "F18C": "SN1"},
            "requires_extended": ["F18C"],
            "refuse": {"F1A0": "33"},
            "dtcs": [{"code": "U0100-00", "status": "2F"}],
        }
    )


def ask(car: VirtualCar, hex_request: str, *, physical: bool = True) -> list[str]:
    return [m.hex(" ") for m in handle_uds(car.ecus[0], bytes.fromhex(hex_request), physical)]


def test_session_control_answers_with_timing_and_remembers_the_session(car: VirtualCar) -> None:
    assert ask(car, "10 03") == ["50 03 00 32 01 f4"]
    assert car.ecus[0].uds_session == 3
    assert ask(car, "10 01") == ["50 01 00 32 01 f4"]
    assert car.ecus[0].uds_session == 1
    assert ask(car, "10 83") == []  # suppress-positive bit honoured, session still changes
    assert car.ecus[0].uds_session == 3
    assert ask(car, "10 02") == ["7f 10 12"]  # no programming session in a workshop simulator
    assert ask(car, "10") == ["7f 10 13"]


def test_tester_present_honours_suppress_positive(car: VirtualCar) -> None:
    assert ask(car, "3E 00") == ["7e 00"]
    assert ask(car, "3E 80") == []
    assert ask(car, "3E 01") == ["7f 3e 12"]


def test_19_02_derives_status_bits_from_the_obd_state(car: VirtualCar) -> None:
    answer = bytes.fromhex(ask(car, "19 02 FF")[0].replace(" ", ""))
    assert answer[:3] == bytes.fromhex("59 02 FF")
    records = {answer[i : i + 3].hex().upper(): answer[i + 3] for i in range(3, len(answer), 4)}
    # stored P0133 with the MIL on: testFailed | confirmed | failedSinceClear | warningIndicator
    assert records["013300"] == 0x01 | 0x08 | 0x20 | 0x80
    # pending P0171: failedThisCycle | pending | failedSinceClear
    assert records["017100"] == 0x02 | 0x04 | 0x20
    assert records["C10000"] == 0x2F  # U0100-00 from the uds table, status as written


def test_19_02_mask_filters_and_19_01_counts(car: VirtualCar) -> None:
    assert ask(car, "19 02 08") == ["59 02 ff 01 33 00 a9 c1 00 00 2f"]  # confirmed only
    assert ask(car, "19 01 04") == ["59 01 ff 01 00 02"]  # pending bit: P0171 and U0100
    assert ask(car, "19 02 40") == ["59 02 ff"]  # nothing "not completed"
    assert ask(car, "19 04 01 33 00 01") == ["7f 19 12"]


def test_mil_off_drops_the_warning_bit() -> None:
    car = make_car({"dids": {}}, mil=False)
    assert ask(car, "19 02 08") == ["59 02 ff 01 33 00 29"]


def test_22_reads_ascii_vin_and_hex_dids(car: VirtualCar) -> None:
    assert ask(car, "22 F1 90") == [(b"\x62\xf1\x90" + VIN.encode()).hex(" ")]
    assert ask(car, "22 22 03") == ["62 22 03 00 ef 32"]
    assert ask(car, "22 F1 87 22 03") == [
        (b"\x62\xf1\x87" + b"04L906056KH" + bytes.fromhex("2203 00EF32")).hex(" ")
    ]


def test_22_unknown_did_is_out_of_range_and_silent_when_functional(car: VirtualCar) -> None:
    assert ask(car, "22 F1 99") == ["7f 22 31"]
    assert ask(car, "22 F1 99", physical=False) == []
    assert ask(car, "22 F1") == ["7f 22 13"]


def test_22_extended_only_did_needs_session_03(car: VirtualCar) -> None:
    assert ask(car, "22 F1 8C") == ["7f 22 31"]
    ask(car, "10 03")
    assert ask(car, "22 F1 8C") == ["62 f1 8c 53 4e 31"]


def test_22_refused_did_gets_its_nrc_even_in_a_multi_did_request(car: VirtualCar) -> None:
    assert ask(car, "22 F1 A0") == ["7f 22 33"]
    assert ask(car, "22 F1 90 F1 A0") == ["7f 22 33"]
    assert ask(car, "22 F1 A0", physical=False) == ["7f 22 33"]  # 33 is not one of the suppressed NRCs


def test_multi_did_false_refuses_several_dids() -> None:
    car = make_car({"dids": {"F187": "X", "F189": "Y"}, "multi_did": False})
    assert ask(car, "22 F1 87 F1 89") == ["7f 22 13"]
    assert ask(car, "22 F1 89") == ["62 f1 89 59"]


def test_14_clears_like_service_04_and_is_refused_while_the_engine_runs(car: VirtualCar) -> None:
    car.start_engine()
    assert ask(car, "14 FF FF FF") == ["7f 14 22"]
    assert car.ecus[0].stored == ["P0133"]
    car.stop_engine()
    assert ask(car, "14 FF FF FF") == ["54"]
    ecu = car.ecus[0]
    assert (ecu.stored, ecu.pending, ecu.mil, ecu.clears) == ([], [], False, 1)
    assert ecu.permanent == []  # this ECU had none; Service 04 semantics keep permanent ones
    assert ask(car, "19 02 FF") == ["59 02 ff"]  # the UDS-only DTC went too
    assert ask(car, "14 FF FF") == ["7f 14 13"]
    assert ask(car, "14 00 01 00") == ["7f 14 31"]


def test_unknown_service_is_11_physically_and_silent_functionally(car: VirtualCar) -> None:
    assert ask(car, "27 01") == ["7f 27 11"]
    assert ask(car, "27 01", physical=False) == []
    assert ask(car, "3E 00", physical=False) == ["7e 00"]


def test_pending_responses_precede_every_answer() -> None:
    car = make_car({"dids": {"F190": "@vin"}}, pending_responses=3)
    answers = ask(car, "22 F1 90")
    assert answers[:3] == ["7f 22 78"] * 3
    assert answers[3].startswith("62 f1 90")
    assert ask(car, "3E 80") == []  # nothing to answer, nothing to wait for


def test_busy_responses_come_first_then_the_answer() -> None:
    car = make_car({"dids": {"F190": "@vin"}}, busy_responses=2)
    assert ask(car, "22 F1 90") == ["7f 22 21"]
    assert ask(car, "22 F1 90") == ["7f 22 21"]
    assert car.ecus[0].busy_left == 0
    assert ask(car, "22 F1 90")[0].startswith("62 f1 90")


def test_ecu_without_uds_table_is_not_a_uds_ecu() -> None:
    car = make_car(None)
    assert ask(car, "22 F1 90") == ["7f 22 11"]
    assert ask(car, "22 F1 90", physical=False) == []


def test_car_routes_uds_requests_through_handle_uds(car: VirtualCar) -> None:
    answers = car.respond(bytes.fromhex("22 F1 90"), "7E0")
    assert answers[0].messages == [b"\x62\xf1\x90" + VIN.encode()]


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"dids": {"F19": "x"}}, "dids.F19"),
        ({"dids": {"F190": "hex:0"}}, "dids.F190"),
        ({"dids": {"F190": 17}}, "dids.F190"),
        ({"dtcs": [{"code": "X0100", "status": "2F"}]}, "dtcs[0].code"),
        ({"dtcs": [{"code": "U0100", "status": "2G"}]}, "dtcs[0].status"),
        ({"refuse": {"F190": "333"}}, "refuse.F190"),
        ({"multi_dids": True}, "multi_dids"),
        ({"multi_did": "yes"}, "multi_did"),
    ],
)
def test_malformed_tables_name_the_key(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ScenarioError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_uds_table(table, "x.toml: ecus[0].uds.")


def test_shipped_scenarios_validate() -> None:
    for name in ("petrol", "uds"):
        validate_uds(load_scenario(name))
