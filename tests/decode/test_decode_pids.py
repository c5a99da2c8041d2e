"""Tests for obdtool.decode.pids: bitmaps, monitor status, PID values, multi-PID, freeze frames."""

from __future__ import annotations

import pytest

from obdtool.decode.pids import (
    FUEL_TYPES,
    OBD_STANDARDS,
    PID_LENGTHS,
    PIDS,
    MonitorStatus,
    decode_coolant_temp,
    decode_distance_since_clear,
    decode_distance_with_mil,
    decode_freeze_frame_dtc,
    decode_fuel_rate,
    decode_fuel_type,
    decode_monitor_status,
    decode_obd_standard,
    decode_odometer,
    decode_pid,
    decode_rpm,
    decode_run_time,
    decode_speed,
    decode_time_since_clear,
    decode_time_with_mil,
    decode_warm_ups,
    parse_bitmap_response,
    parse_freeze_frame,
    split_multi_pid,
    supported_from_bitmap,
)
from obdtool.errors import DecodeError

h = bytes.fromhex


# --- supported-PID bitmaps --------------------------------------------------------------------


def test_bitmap_first_and_last_bit() -> None:
    assert supported_from_bitmap(0x00, h("80 00 00 01")) == {0x01, 0x20}
    assert supported_from_bitmap(0x40, h("80 00 00 01")) == {0x41, 0x60}


def test_bitmap_empty() -> None:
    assert supported_from_bitmap(0x20, h("00 00 00 00")) == set()


def test_bitmap_e0_has_no_pid_0x100() -> None:
    assert supported_from_bitmap(0xE0, h("FF FF FF FF")) == set(range(0xE1, 0x100))


def test_bitmap_a6_odometer_bit() -> None:
    # PID A6 is byte A bit 2 of the A0 bitmap (obd-facts 2.5)
    assert supported_from_bitmap(0xA0, h("04 00 00 00")) == {0xA6}


@pytest.mark.parametrize("base", [0x10, 0x21, -0x20, 0x100])
def test_bitmap_rejects_a_base_that_is_not_a_bitmap_pid(base: int) -> None:
    with pytest.raises(DecodeError, match="supported-PID bitmaps answer 00, 20"):
        supported_from_bitmap(base, h("00 00 00 00"))


@pytest.mark.parametrize("data", ["", "80 00 00", "80 00 00 01 00"])
def test_bitmap_rejects_wrong_length(data: str) -> None:
    with pytest.raises(DecodeError, match="needs 4 data bytes"):
        supported_from_bitmap(0x00, h(data))


def test_mercedes_three_ecus_0100() -> None:
    # captures/klinereader11-mercedes-a180d-can11-3ecu.txt line 48, split per header line 13:
    # 7EB 06 41 00 98 18 00 01 | 7E8 06 41 00 98 3B A0 17 | 7E9 06 41 00 98 18 00 11
    assert parse_bitmap_response(h("41 00 98 18 00 01")) == (0x00, {0x01, 0x04, 0x05, 0x0C, 0x0D, 0x20})
    assert parse_bitmap_response(h("41 00 98 3B A0 17")) == (
        0x00,
        {0x01, 0x04, 0x05, 0x0B, 0x0C, 0x0D, 0x0F, 0x10, 0x11, 0x13, 0x1C, 0x1E, 0x1F, 0x20},
    )
    assert parse_bitmap_response(h("41 00 98 18 00 11")) == (0x00, {0x01, 0x04, 0x05, 0x0C, 0x0D, 0x1C, 0x20})


def test_pyobd254_engine_ecu_0100() -> None:
    # captures/pyobd254-can29-multiecu-pending-dtc.txt line 31: "18 DA F1 11 06 41 00 BF DF A8 93"
    base, supported = parse_bitmap_response(h("41 00 BF DF A8 93"))
    assert base == 0x00
    assert supported == {
        *(0x01, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08),
        *(0x09, 0x0A, 0x0C, 0x0D, 0x0E, 0x0F, 0x10),
        *(0x11, 0x13, 0x15),
        *(0x19, 0x1C, 0x1F, 0x20),
    }


def test_honda_0120_bitmap() -> None:
    # captures/pyobd257-honda-civic-can29-padded.txt line 19:
    # "18 DA F1 11 06 41 20 80 1D B0 11 55" (PCI length 06; trailing 55 is CAN padding)
    assert parse_bitmap_response(h("41 20 80 1D B0 11")) == (
        0x20,
        {0x21, 0x2C, 0x2D, 0x2E, 0x30, 0x31, 0x33, 0x34, 0x3C, 0x40},
    )


def test_dacia_infotype_bitmap() -> None:
    # captures/pyobd288-dacia-can11-svc09.txt line 18: "7E8 06 49 00 55 42 00 00"
    assert parse_bitmap_response(h("49 00 55 42 00 00")) == (0x00, {0x02, 0x04, 0x06, 0x08, 0x0A, 0x0F})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("41 00 98 3B A0", "needs 6 or more"),
        ("41 00 98 3B A0 17 00", "is 6 bytes"),
        ("41 05 98 3B A0 17", "00, 20"),
        ("42 00 98 3B A0 17", "expected a 41 or 49"),
        ("7F 01 12", "expected a 41 or 49"),
        ("", "expected a 41 or 49"),
        ("49 00 01 F0 00 00 00", "is 6 bytes"),  # legacy shape: join_legacy first
    ],
)
def test_bitmap_response_errors(data: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        parse_bitmap_response(h(data))


# --- monitor status (PID 01) ------------------------------------------------------------------


def test_mercedes_diesel_engine_monitor_status() -> None:
    # captures/klinereader11-mercedes-a180d-can11-3ecu.txt line 55, 7E8 part: "7E8 06 41 01 00 0E E9 68"
    status = decode_monitor_status(h("00 0E E9 68"))
    assert status == MonitorStatus(
        mil_on=False,
        dtc_count=0,
        ignition="compression",
        supported={
            "misfire": False,
            "fuel_system": True,
            "components": True,
            "nmhc_catalyst": True,
            "nox_scr_aftertreatment": False,
            "boost_pressure": True,
            "exhaust_gas_sensor": True,
            "pm_filter": True,
            "egr_vvt_system": True,
        },
        incomplete={
            "misfire": False,
            "fuel_system": False,
            "components": False,
            "nmhc_catalyst": False,
            "nox_scr_aftertreatment": False,
            "boost_pressure": True,
            "exhaust_gas_sensor": True,
            "pm_filter": True,
            "egr_vvt_system": False,
        },
    )
    assert status.not_ready == ("boost_pressure", "exhaust_gas_sensor", "pm_filter")


def test_mercedes_other_ecus_monitor_status() -> None:
    # captures/klinereader11-mercedes-a180d-can11-3ecu.txt line 55: 7EB and 7E9 "06 41 01 00 04 00 00"
    status = decode_monitor_status(h("00 04 00 00"))
    assert (status.mil_on, status.dtc_count, status.ignition) == (False, 0, "spark")
    assert [name for name, flag in status.supported.items() if flag] == ["components"]
    assert set(status.supported) == {
        "misfire",
        "fuel_system",
        "components",
        "catalyst",
        "heated_catalyst",
        "evaporative_system",
        "secondary_air_system",
        "ac_refrigerant",
        "oxygen_sensor",
        "oxygen_sensor_heater",
        "egr_system",
    }
    assert status.not_ready == ()


def test_monitor_status_mil_on_with_incomplete_spark_monitors() -> None:
    status = decode_monitor_status(h("83 07 65 25"))
    assert status.mil_on is True
    assert status.dtc_count == 3
    assert status.ignition == "spark"
    assert status.not_ready == ("catalyst", "evaporative_system", "oxygen_sensor")
    assert status.incomplete["oxygen_sensor_heater"] is False
    assert status.supported["oxygen_sensor_heater"] is True


def test_monitor_status_dtc_count_uses_seven_bits() -> None:
    assert decode_monitor_status(h("FF 00 00 00")).dtc_count == 127
    assert decode_monitor_status(h("7F 00 00 00")).mil_on is False


def test_monitor_status_rejects_wrong_length() -> None:
    with pytest.raises(DecodeError, match="PID 01 monitor status needs 4 data bytes, got 3"):
        decode_monitor_status(h("00 0E E9"))


# --- single PID values ------------------------------------------------------------------------


def test_kwp_sprinter_values() -> None:
    # captures/wican424-dodge-sprinter-2005-kwp-stn.txt, KWP header 8x F1 12 and checksum removed:
    # line 152 "84F112 412100 31 1A" -> 49 km with MIL on; line 161 "83F112 4130 1D 14" -> 29 warm-ups;
    # line 137 "83F112 410D 00 D4" -> 0 km/h; line 146 "83F112 411C 01 E4" -> OBD-II (CARB);
    # line 149 "84F112 411F 0000 E7" -> 0 s run time.
    assert decode_distance_with_mil(h("00 31")) == 49
    assert decode_warm_ups(h("1D")) == 29
    assert decode_speed(h("00")) == 0
    assert decode_obd_standard(h("01")) == "OBD-II (CARB)"
    assert decode_run_time(h("00 00")) == 0


def test_rpm_from_unrequested_frame() -> None:
    # captures/pyobd254-can29-multiecu-pending-dtc.txt line 36: "18 DA F1 11 04 41 0C 17 10"
    assert decode_rpm(h("17 10")) == 1476.0
    assert decode_rpm(h("1A F9")) == 1726.25


def test_odometer_keeps_one_decimal() -> None:
    assert decode_odometer(h("00 01 E2 40")) == 12345.6
    assert repr(decode_odometer(h("00 01 E2 40"))) == "12345.6"
    assert decode_odometer(h("FF FF FF FF")) == 429496729.5
    assert decode_odometer(h("01 00 00 00")) == 1677721.6  # byte A is the top byte


@pytest.mark.parametrize(
    ("decoder", "payload", "expected"),
    [
        (decode_distance_since_clear, "01 2C", 300),
        (decode_distance_since_clear, "FF FF", 65535),
        (decode_time_with_mil, "00 3C", 60),
        (decode_time_since_clear, "12 34", 0x1234),
        (decode_coolant_temp, "7B", 83),
        (decode_coolant_temp, "00", -40),
        (decode_fuel_rate, "00 7B", 6.15),
        (decode_fuel_type, "04", "diesel"),
        (decode_fuel_type, "01", "gasoline"),
        (decode_fuel_type, "FF", "other (0xFF)"),
        (decode_obd_standard, "06", "EOBD"),
        (decode_obd_standard, "7F", "other (0x7F)"),
        (decode_speed, "FF", 255),
    ],
)
def test_pid_value_decoders(decoder: object, payload: str, expected: object) -> None:
    assert callable(decoder)
    assert decoder(h(payload)) == expected


@pytest.mark.parametrize(
    ("decoder", "payload"),
    [
        (decode_odometer, "00 01 E2"),
        (decode_distance_with_mil, "31"),
        (decode_warm_ups, "1D 00"),
        (decode_rpm, ""),
        (decode_coolant_temp, "7B 00"),
    ],
)
def test_pid_value_decoders_reject_wrong_length(decoder: object, payload: str) -> None:
    assert callable(decoder)
    with pytest.raises(DecodeError, match="data bytes, got"):
        decoder(h(payload))


def test_name_tables() -> None:
    assert OBD_STANDARDS[0x07] == "EOBD and OBD-II"
    assert FUEL_TYPES[0x08] == "electric"
    assert FUEL_TYPES[0x13] == "hybrid diesel"


# --- the PID table ----------------------------------------------------------------------------


def test_pid_table_is_consistent() -> None:
    assert all(pid == spec.pid for pid, spec in PIDS.items())
    assert dict(PID_LENGTHS) == {pid: spec.length for pid, spec in PIDS.items()}
    assert set(range(0x00, 0x100, 0x20)) <= set(PIDS)
    assert {0x01, 0x05, 0x0C, 0x0D, 0x1C, 0x1F, 0x21, 0x30, 0x31, 0x4D, 0x4E, 0x51, 0xA6} <= set(PIDS)
    assert (PIDS[0xA6].name, PIDS[0xA6].length, PIDS[0xA6].unit) == ("odometer", 4, "km")
    assert (PIDS[0x4E].length, PIDS[0x4E].unit) == (2, "min")
    assert PIDS[0x00].name == "supported_pids_01_20"


def test_decode_pid_uses_the_table() -> None:
    assert decode_pid(0x0C, h("1A F8")) == 1726.0
    assert decode_pid(0xA6, h("00 00 30 E0")) == 1251.2
    assert decode_pid(0x51, h("04")) == "diesel"
    assert decode_pid(0x04, h("FF")) == 100.0
    assert decode_pid(0x06, h("80")) == 0.0
    assert decode_pid(0x0F, h("28")) == 0.0
    assert decode_pid(0x10, h("01 F4")) == 5.0
    assert decode_pid(0x00, h("80 00 00 01")) == (0x01, 0x20)
    status = decode_pid(0x01, h("00 0E E9 68"))
    assert isinstance(status, MonitorStatus)
    assert status.ignition == "compression"


def test_decode_pid_rejects_unknown_pid_and_wrong_length() -> None:
    with pytest.raises(DecodeError, match="PID 0A is not in obdtool's PID table"):
        decode_pid(0x0A, h("64"))
    with pytest.raises(DecodeError, match="PID 0C engine speed needs 2 data bytes, got 3"):
        decode_pid(0x0C, h("1A F8 00"))


# --- multi-PID answers ------------------------------------------------------------------------


def test_split_multi_pid() -> None:
    parts = split_multi_pid(h("41 0C 1A F8 0D 00 05 7B A6 00 00 30 E0"))
    assert parts == {0x0C: h("1A F8"), 0x0D: h("00"), 0x05: h("7B"), 0xA6: h("00 00 30 E0")}
    assert {pid: decode_pid(pid, payload) for pid, payload in parts.items()} == {
        0x0C: 1726.0,
        0x0D: 0,
        0x05: 83,
        0xA6: 1251.2,
    }


def test_split_single_pid() -> None:
    # captures/wican424-dodge-sprinter-2005-kwp-stn.txt line 161: "83F112 41 30 1D 14"
    assert split_multi_pid(h("41 30 1D")) == {0x30: h("1D")}


def test_split_multi_bitmaps() -> None:
    assert split_multi_pid(h("41 00 BE 3F A8 13 20 80 1D B0 11")) == {
        0x00: h("BE 3F A8 13"),
        0x20: h("80 1D B0 11"),
    }


def test_split_rejects_unknown_pid_in_the_middle() -> None:
    with pytest.raises(DecodeError, match="PID 0A at byte 4 has no known length"):
        split_multi_pid(h("41 0C 1A F8 0A 64 0D 00"))


def test_split_accepts_extra_lengths_from_the_caller() -> None:
    lengths = {**PID_LENGTHS, 0x0B: 1}
    assert split_multi_pid(h("41 0C 1A F8 0B 64 0D 00"), lengths) == {
        0x0C: h("1A F8"),
        0x0B: h("64"),
        0x0D: h("00"),
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("41 0C 1A F8 0D", "PID 0D needs 1 bytes, answer ends after 0"),
        ("41 0C 1A", "PID 0C needs 2 bytes, answer ends after 1"),
        ("41 0D 00 0D 01", "PID 0D appears twice"),
        ("41", "needs 2 or more"),
        ("7F 01 12", "NRC 12"),
        ("42 0C 00 1A F8", "expected positive answer 41"),
    ],
)
def test_split_errors(data: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        split_multi_pid(h(data))


# --- freeze frames ----------------------------------------------------------------------------


def test_parse_freeze_frame() -> None:
    pid, frame, payload = parse_freeze_frame(h("42 0C 00 1A F8"))
    assert (pid, frame, payload) == (0x0C, 0x00, h("1A F8"))
    assert decode_pid(pid, payload) == 1726.0


def test_parse_freeze_frame_of_a_pid_outside_the_table() -> None:
    assert parse_freeze_frame(h("42 0B 01 64")) == (0x0B, 0x01, h("64"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("42 0C 00 1A", "freeze frame PID 0C needs 2 bytes, got 1"),
        ("42 0C 00", "needs 4 or more"),
        ("42 02 00 01", "freeze frame PID 02 needs 2 bytes, got 1"),
        ("41 0C 00 1A F8", "expected positive answer 42"),
    ],
)
def test_parse_freeze_frame_errors(data: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        parse_freeze_frame(h(data))


def test_freeze_frame_dtc() -> None:
    assert decode_freeze_frame_dtc(h("42 02 00 01 33")) == "P0133"
    assert decode_freeze_frame_dtc(h("42 02 00 C1 00")) == "U0100"


def test_freeze_frame_dtc_0000_means_no_frame() -> None:
    assert decode_freeze_frame_dtc(h("42 02 00 00 00")) is None


def test_freeze_frame_dtc_rejects_other_pids() -> None:
    with pytest.raises(DecodeError, match="expected freeze frame PID 02, got PID 0C"):
        decode_freeze_frame_dtc(h("42 0C 00 1A F8"))
