"""The read-out workflow against the virtual car at the service level (framing is tested elsewhere)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.sim.car import VirtualCar
from adapters.sim.direct import DirectCarAdapter
from adapters.sim.scenario import load_scenario, parse_scenario
from obdtool.readout import ObfcmConsent, ReadOptions, read_vehicle

ACCEPT = ObfcmConsent(refused=False, decided_at=datetime(2026, 11, 26, 8, 0, tzinfo=UTC))
REFUSE = ObfcmConsent(refused=True, decided_at=datetime(2026, 11, 26, 8, 0, tzinfo=UTC))


def _car(raw: dict[str, Any] | str) -> VirtualCar:
    return VirtualCar(load_scenario(raw) if isinstance(raw, str) else parse_scenario(raw))


def test_petrol_readout_matches_the_scenario() -> None:
    car = _car("petrol")
    result = read_vehicle(DirectCarAdapter(car))
    assert result.error is None
    assert result.vin == "WVWZZZCDZMW123450"  # ends in 0: must not be stripped
    engine, gearbox = result.ecus["7E8"], result.ecus["7E9"]
    assert engine.codes("stored") == ["P0133", "P0420"]
    assert engine.codes("pending") == ["P0171"]
    assert engine.codes("permanent") == ["P0420"]
    assert gearbox.codes("stored") == ["P0715"]
    assert gearbox.codes("pending") == ["P0730"]
    assert engine.mil_on is True
    assert engine.calids == ["04E906027HA 4521", "04E906027HB 0012"]
    assert engine.cvns == ["1A2B3C4D", "0F0E0D0C"]
    assert engine.name == "ECM-EngineControl"
    assert result.mileage is not None
    assert result.mileage.km == 48213.4 and result.mileage.source == "odometer (01 A6)"
    assert engine.freeze_frame is not None and engine.freeze_frame.dtc == "P0133"
    assert engine.freeze_frame.values["engine_rpm"] == 2112.0
    assert engine.readings["distance_since_clear_km"] == 4120
    assert result.has_faults
    assert result.obfcm is None  # not asked: not read
    assert not car.requests_for(0x09, 0x17)


def test_obfcm_refusal_sends_nothing_and_keeps_only_the_refusal() -> None:
    car = _car("petrol")
    result = read_vehicle(DirectCarAdapter(car), ReadOptions(obfcm=REFUSE))
    assert result.obfcm is not None and result.obfcm.state == "refused"
    assert result.obfcm.ecus == []
    assert result.obfcm.decided_at == REFUSE.decided_at
    for itid in (0x17, 0x1A, 0x1B, 0x1C):
        assert not car.requests_for(0x09, itid)


def test_obfcm_accepted_reads_itid17() -> None:
    car = _car("petrol")
    result = read_vehicle(DirectCarAdapter(car), ReadOptions(obfcm=ACCEPT))
    assert result.obfcm is not None and result.obfcm.state == "collected"
    values = result.obfcm.ecus[0].itid17
    assert values is not None
    assert values["lifetime_distance_km"] == 48210.9
    assert values["lifetime_fuel_l"] == 2987.41
    assert car.requests_for(0x09, 0x17)
    assert result.warnings == []


def _minimal(**ecu: Any) -> dict[str, Any]:
    base = {"address": "7E8", "name": "ECM-EngineControl"}
    base.update(ecu)
    return {"protocol": "6", "vin": "YV1MZ84BDN1234561", "ecus": [base]}


def test_no_odometer_falls_back_to_a_named_counter() -> None:
    result = read_vehicle(DirectCarAdapter(_car(_minimal(values={"distance_since_clear_km": 812}))))
    assert result.mileage is not None
    assert result.mileage.km == 812
    assert "01 31" in result.mileage.source and "not the odometer" in result.mileage.source


def test_obfcm_not_equipped_is_not_possible_with_reason() -> None:
    result = read_vehicle(DirectCarAdapter(_car(_minimal())), ReadOptions(obfcm=ACCEPT))
    assert result.obfcm is not None and result.obfcm.state == "not_possible"
    assert result.obfcm.reason and "InfoType 17" in result.obfcm.reason


def test_implausible_obfcm_values_warn_but_are_kept() -> None:
    scenario = _minimal(
        values={"odometer_km": 20000},
        obfcm={
            "recent_distance_km": 900.0,
            "lifetime_distance_km": 800.0,
            "recent_fuel_l": 50.0,
            "lifetime_fuel_l": 3.0,
        },
    )
    result = read_vehicle(DirectCarAdapter(_car(scenario)), ReadOptions(obfcm=ACCEPT))
    assert result.obfcm is not None and result.obfcm.state == "collected"
    text = " | ".join(result.warnings)
    assert "lifetime distance 800.0 km is below recent distance 900.0 km" in text
    assert "lifetime fuel 3.0 l is below recent fuel 50.0 l" in text
    assert "well below the odometer" in text
    assert "l/100 km" in text
    assert result.obfcm.ecus[0].itid17 is not None
    assert result.obfcm.ecus[0].itid17["lifetime_distance_km"] == 800.0


def test_phev_raw_infotypes_are_kept_unverified() -> None:
    scenario = _minimal(
        values={"odometer_km": 12000},
        obfcm={
            "recent_distance_km": 500.0,
            "lifetime_distance_km": 11990.0,
            "recent_fuel_l": 10.0,
            "lifetime_fuel_l": 250.0,
            "itid_1a": "01 00 00 10 00 00 00 20 00",
            "itid_1c": "01 00 00 03 E8",
        },
    )
    result = read_vehicle(DirectCarAdapter(_car(scenario)), ReadOptions(obfcm=ACCEPT))
    assert result.obfcm is not None
    raw = result.obfcm.ecus[0].raw
    assert [r["itid"] for r in raw] == ["1A", "1C"]
    assert all(r["verified"] is False for r in raw)
    assert raw[0]["raw_hex"].startswith("491A01")


def test_multi_pid_refusing_ecu_is_read_pid_by_pid() -> None:
    car = _car(_minimal(multi_pid=False, values={"odometer_km": 1234.5, "distance_mil_km": 7}))
    result = read_vehicle(DirectCarAdapter(car))
    assert result.mileage is not None and result.mileage.km == 1234.5
    assert result.ecus["7E8"].readings["distance_mil_km"] == 7


def test_no_ecu_answering_is_an_error_not_a_crash() -> None:
    car = _car(_minimal(silent=True))
    result = read_vehicle(DirectCarAdapter(car))
    assert result.error is not None and "ignition" in result.error
    assert result.ecus == {}


class _DyingAdapter(DirectCarAdapter):
    """Breaks the link after a number of requests, like a pulled cable."""

    def __init__(self, car: VirtualCar, after: int) -> None:
        super().__init__(car)
        self.left = after

    def request(self, data: bytes, **kw: Any) -> Any:
        from adapters.errors import LinkError

        if self.left == 0:
            raise LinkError("the adapter link closed: cable pulled or adapter switched off?")
        self.left -= 1
        return super().request(data, **kw)


@pytest.mark.parametrize("after", [3, 6, 9])
def test_link_loss_keeps_partial_results(after: int) -> None:
    result = read_vehicle(_DyingAdapter(_car("petrol"), after), ReadOptions(obfcm=ACCEPT))
    assert result.error is not None and "cable pulled" in result.error
    assert "7E8" in result.ecus  # discovery happened before the link died
    assert result.obfcm is not None and result.obfcm.state == "not_possible"
    assert result.finished_at is not None
