"""Tests for obdtool.decode.infotypes: VIN, VIN check, CALID, CVN, ECU name, OBFCM."""

from __future__ import annotations

import dataclasses
import json

import pytest

from obdtool.decode.common import join_legacy
from obdtool.decode.infotypes import (
    OBFCM_ITIDS,
    Itid17,
    ObfcmRaw,
    VinCheck,
    check_vin,
    decode_calids,
    decode_cvns,
    decode_ecu_name,
    decode_obfcm_itid17,
    decode_vin,
    keep_obfcm_raw,
    vin_check_digit,
)
from obdtool.errors import DecodeError

h = bytes.fromhex

# captures/pyobd151-porsche-can11-vin.txt line 13, reassembled by hand:
# "7E8 10 14 49 02 01 57 50 30" (FF, length 0x014 = 20) + "7E8 21 5A 5A 5A 39 39 5A 54" (CF 1)
# + "7E8 22 53 33 39 32 31 32 34" (CF 2): 6 + 7 + 7 = 20 bytes.
PORSCHE_VIN = h("49 02 01 57 50 30") + h("5A 5A 5A 39 39 5A 54") + h("53 33 39 32 31 32 34")

# captures/pyobd288-dacia-can11-svc09.txt line 20, reassembled the same way:
# "7E8 10 14 49 02 01 55 55 31" + "7E8 21 42 35 32 32 30 58 36" + "7E8 22 35 39 36 36 37 35 36".
DACIA_VIN = h("49 02 01 55 55 31") + h("42 35 32 32 30 58 36") + h("35 39 36 36 37 35 36")

# captures/rosaheli-mazda3-2010-caf1-vin.txt lines 20-23, CAF1 headers-off layout:
# "014" (20 bytes), "0: 49 02 01 4A 4D 31", "1: 42 4C 31 48 35 31 41", "2: 31 32 34 37 32 32 33".
MAZDA_VIN = h("49 02 01 4A 4D 31") + h("42 4C 31 48 35 31 41") + h("31 32 34 37 32 32 33")

# captures/pyobd288-dacia-can11-svc09.txt line 22: "7E8 10 13 49 04 01 32 33 37" (length 0x13 = 19)
# + "7E8 21 36 31 36 34 32 35 53" + "7E8 22 00 00 00 00 00 00 AA": 6 + 7 + 6 = 19 bytes, then AA padding.
DACIA_CALID = h("49 04 01 32 33 37") + h("36 31 36 34 32 35 53") + h("00 00 00 00 00 00")

# captures/obfcm-ford-e350-2020-itid17.txt line 20 (49 17 01 prepended by the obfcm author).
FORD_ITID17 = h("49 17 01 00 00 30 E0 00 00 30 EB 00 00 72 4A 00 00 72 7E")


def vin_answer(vin: str, *, before: bytes = b"", after: bytes = b"") -> bytes:
    return h("49 02 01") + before + vin.encode("ascii") + after


def calid_field(text: str) -> bytes:
    raw = text.encode("ascii")
    return raw + b"\x00" * (16 - len(raw))


# --- VIN --------------------------------------------------------------------------------------


def test_porsche_vin() -> None:
    assert decode_vin(PORSCHE_VIN) == "WP0ZZZ99ZTS392124"


def test_dacia_vin() -> None:
    assert decode_vin(DACIA_VIN) == "UU1B5220X65966756"


def test_mazda_vin() -> None:
    assert decode_vin(MAZDA_VIN) == "JM1BL1H51A1247223"


@pytest.mark.parametrize(
    "vin", ["WF0XXXTTGXKA00010", "WF0XXXTTGXKA00011", "WF0XXXTTGXKA00012", "00000000000000000"]
)
def test_vin_keeps_real_trailing_characters_0_1_2(vin: str) -> None:
    assert decode_vin(vin_answer(vin)) == vin
    assert decode_vin(vin_answer(vin, after=b"\x00" * 7)) == vin


def test_vin_with_legacy_leading_padding() -> None:
    assert decode_vin(vin_answer("WVWZZZ1KZ8W000120", before=b"\x00\x00\x00")) == "WVWZZZ1KZ8W000120"


def test_vin_strips_spaces_and_can_padding_only_at_the_ends() -> None:
    assert decode_vin(vin_answer("VF1RFB00X61234562", before=b"  ", after=b"\xaa\xaa")) == "VF1RFB00X61234562"


def test_vin_of_an_ecu_without_vin_is_empty() -> None:
    assert decode_vin(h("49 02 01") + bytes(17)) == ""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("49 04 01 57 50 30", "expected InfoType 02"),
        ("49 02 02 57 50 30", "one data item"),
        ("49 02 01 57 50 01 30", "not printable ASCII: 01"),
        ("49 02 01 57 50 C3 A4", "not printable ASCII: C3 A4"),
        ("49 02", "needs at least 3"),
        ("7F 09 12", "subFunctionNotSupported"),
        ("41 02 01", "expected positive answer 49"),
    ],
)
def test_vin_errors(data: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_vin(h(data))


def test_legacy_vin_round_trip_through_join() -> None:
    # Layout of captures/androbd174-audi-a3-2005-legacy-svc09.txt lines 24-28 (bytes masked
    # there): "49 02 01 00 00 00 xx", then "49 02 02".."49 02 05" with 4 bytes each.
    vin = b"\x00\x00\x00WAUZZZ8P75A000012"
    messages = [bytes([0x49, 0x02, n + 1]) + vin[4 * n : 4 * n + 4] for n in range(5)]
    assert decode_vin(join_legacy(messages)) == "WAUZZZ8P75A000012"


# --- VIN check --------------------------------------------------------------------------------


def test_check_vin_dacia_passes_the_check_digit() -> None:
    assert check_vin("UU1B5220X65966756") == VinCheck(
        vin="UU1B5220X65966756", valid=True, errors=(), warnings=()
    )


def test_check_vin_mazda_passes_the_check_digit() -> None:
    assert check_vin("JM1BL1H51A1247223") == VinCheck(
        vin="JM1BL1H51A1247223", valid=True, errors=(), warnings=()
    )


def test_check_vin_european_check_digit_is_only_a_warning() -> None:
    result = check_vin("WP0ZZZ99ZTS392124")
    assert result.valid is True
    assert result.errors == ()
    assert len(result.warnings) == 1
    assert "position 9) is 'Z'" in result.warnings[0]
    assert "gives '8'" in result.warnings[0]


def test_check_vin_wrong_length() -> None:
    result = check_vin("WP0ZZZ99ZTS39212")
    assert result.valid is False
    assert result.errors == ("VIN has 16 characters, a VIN has exactly 17",)
    assert result.warnings == ()


def test_check_vin_forbidden_letters() -> None:
    result = check_vin("WP0ZZZ99ZTS3921I4")
    assert result.valid is False
    assert len(result.errors) == 1
    assert "'I' at position 16" in result.errors[0]


def test_check_vin_lower_case_and_both_errors() -> None:
    result = check_vin("wp0zzz")
    assert result.valid is False
    assert len(result.errors) == 2
    assert "6 characters" in result.errors[0]
    assert "'w' at position 1" in result.errors[1]


def test_check_vin_empty() -> None:
    assert check_vin("").errors == ("VIN has 0 characters, a VIN has exactly 17",)


@pytest.mark.parametrize(
    ("vin", "digit"),
    [
        ("1M8GDM9AXKP042788", "X"),
        ("JM1BL1H51A1247223", "1"),
        ("UU1B5220X65966756", "X"),
        ("WP0ZZZ99ZTS392124", "8"),
        ("WP0ZZZ99ZTS39212", None),
        ("WP0ZZZ99ZTS3921O4", None),
    ],
)
def test_vin_check_digit(vin: str, digit: str | None) -> None:
    assert vin_check_digit(vin) == digit


# --- CALID ------------------------------------------------------------------------------------


def test_dacia_calid_honouring_the_isotp_length() -> None:
    assert decode_calids(DACIA_CALID) == ["237616425S"]


def test_dacia_calid_with_the_can_padding_byte() -> None:
    # Same capture, adapter did not cut at the ISO-TP length: the trailing AA is padding.
    assert decode_calids(DACIA_CALID + h("AA")) == ["237616425S"]


def test_several_calids_keep_every_one_and_real_trailing_characters() -> None:
    data = (
        h("49 04 04")
        + calid_field("1037512340")
        + calid_field("0261S0ABC1")
        + calid_field("CAL-ID-000000002")
        + calid_field("")
    )
    assert decode_calids(data) == ["1037512340", "0261S0ABC1", "CAL-ID-000000002", ""]


def test_calid_keeps_inner_and_trailing_spaces() -> None:
    assert decode_calids(h("49 04 01") + calid_field("SW 12 ")) == ["SW 12 "]


def test_no_calids() -> None:
    assert decode_calids(h("49 04 00")) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (DACIA_CALID[:-1], "declares 1 item.* of 16 bytes but carries 15"),
        (DACIA_CALID + h("AA AA AA AA AA AA AA"), "7 byte.* after the declared items"),
        (DACIA_CALID + h("AA 55"), "2 byte.* after the declared items"),
        (h("49 04 00") + calid_field("UNDECLARED"), "16 byte.* after the declared items"),
        (h("49 04 01") + b"\x01" + bytes(15), "CALID 1 contains"),
        (h("49 06 01 12 34 56 78"), "expected InfoType 04"),
    ],
)
def test_calid_errors(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_calids(data)


# --- CVN --------------------------------------------------------------------------------------


def test_cvns() -> None:
    assert decode_cvns(h("49 06 02 1A 2B 3C 4D 00 00 ff 0e")) == ["1A2B3C4D", "0000FF0E"]


def test_cvn_with_padding_byte() -> None:
    assert decode_cvns(h("49 06 01 12 34 56 78 CC")) == ["12345678"]


def test_cvn_errors() -> None:
    with pytest.raises(DecodeError, match="declares 2 item"):
        decode_cvns(h("49 06 02 1A 2B 3C 4D 00 00"))
    with pytest.raises(DecodeError, match="expected InfoType 06"):
        decode_cvns(h("49 04 01 1A 2B 3C 4D"))


# --- ECU name ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "name"),
    [
        (b"ECM\x00-EngineControl\x00\x00", "ECM-EngineControl"),
        (b"TCM\x00-TransmisCtrl\x00\x00\x00", "TCM-TransmisCtrl"),
        (b"ECM -EngineControl2\x00", "ECM-EngineControl2"),
        (b"GATEWAY" + bytes(13), "GATEWAY"),
    ],
)
def test_ecu_name(field: bytes, name: str) -> None:
    assert len(field) == 20
    assert decode_ecu_name(h("49 0A 01") + field) == name


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (h("49 0A 01") + b"ECM-EngineControl", "declares 1 item.* of 20 bytes but carries 17"),
        (h("49 0A 02") + b"ECM-EngineControl\x00\x00\x00" * 2, "one data item"),
        (h("49 0A 00"), "one data item"),
        (h("49 0A 01") + b"ECM-Engine\x7f" + bytes(9), "not printable ASCII: 7F"),
    ],
)
def test_ecu_name_errors(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_ecu_name(data)


# --- OBFCM ------------------------------------------------------------------------------------


def test_ford_itid17() -> None:
    result = decode_obfcm_itid17(FORD_ITID17)
    assert result == Itid17(
        recent_distance_km=1251.2,
        lifetime_distance_km=1252.3,
        recent_fuel_l=292.58,
        lifetime_fuel_l=293.10,
        raw_hex="491701000030E0000030EB0000724A0000727E",
    )


def test_itid17_values_are_plain_rounded_floats_and_json_ready() -> None:
    result = decode_obfcm_itid17(FORD_ITID17)
    assert [repr(v) for v in (result.recent_distance_km, result.recent_fuel_l)] == ["1251.2", "292.58"]
    assert json.loads(json.dumps(dataclasses.asdict(result))) == {
        "recent_distance_km": 1251.2,
        "lifetime_distance_km": 1252.3,
        "recent_fuel_l": 292.58,
        "lifetime_fuel_l": 293.1,
        "raw_hex": "491701000030E0000030EB0000724A0000727E",
    }


def test_itid17_not_available_fields_become_none() -> None:
    # BEV-like answer: distances present, fuel FFFFFFFF (obd-facts 1.3).
    result = decode_obfcm_itid17(h("49 17 01 00 00 30 E0 00 00 30 EB FF FF FF FF FF FF FF FF"))
    assert (result.recent_distance_km, result.lifetime_distance_km) == (1251.2, 1252.3)
    assert (result.recent_fuel_l, result.lifetime_fuel_l) == (None, None)


def test_itid17_tolerates_can_padding() -> None:
    assert decode_obfcm_itid17(FORD_ITID17 + h("AA AA")).lifetime_fuel_l == 293.1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (FORD_ITID17[:-1], "declares 1 item.* of 16 bytes but carries 15"),
        (h("49 17 02") + FORD_ITID17[3:] * 2, "one data item"),
        (h("49 1A") + FORD_ITID17[2:], "expected InfoType 17"),
        (h("7F 09 31"), "requestOutOfRange"),
    ],
)
def test_itid17_errors(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_obfcm_itid17(data)


@pytest.mark.parametrize("itid", [0x1A, 0x1B, 0x1C])
def test_phev_obfcm_is_kept_raw_and_unverified(itid: int) -> None:
    data = bytes([0x49, itid, 0x01]) + h("00 01 02 03 DE AD BE EF")
    assert keep_obfcm_raw(data) == ObfcmRaw(itid=itid, raw_hex=data.hex().upper(), verified=False)


def test_itid17_can_be_kept_raw_when_it_does_not_decode() -> None:
    assert keep_obfcm_raw(FORD_ITID17[:-1]) == ObfcmRaw(
        itid=0x17, raw_hex="491701000030E0000030EB0000724A000072"
    )


def test_obfcm_itids() -> None:
    assert frozenset({0x17, 0x1A, 0x1B, 0x1C}) == OBFCM_ITIDS


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("49 02 01 57", "InfoType 02 is not an OBFCM InfoType"),
        ("49 1A", "needs 3 or more"),
        ("7F 09 12", "subFunctionNotSupported"),
        ("41 1A 01", "expected positive answer 49"),
    ],
)
def test_keep_obfcm_raw_errors(data: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        keep_obfcm_raw(h(data))
