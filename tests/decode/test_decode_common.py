"""Tests for obdtool.decode.common: positive/negative responses, NRC table, legacy joining."""

from __future__ import annotations

import pytest

from obdtool.decode.common import (
    NRC_TABLE,
    NegativeResponse,
    check_positive,
    hex_bytes,
    join_legacy,
    nrc_meaning,
    nrc_name,
    parse_negative,
)
from obdtool.decode.dtc import parse_dtc_list
from obdtool.decode.infotypes import decode_calids, decode_vin
from obdtool.decode.pids import parse_bitmap_response
from obdtool.errors import DecodeError

h = bytes.fromhex

# Porsche VIN, reassembled by hand from captures/pyobd151-porsche-can11-vin.txt line 13:
# FF "10 14 | 49 02 01 57 50 30", CF "21 | 5A 5A 5A 39 39 5A 54", CF "22 | 53 33 39 32 31 32 34";
# ISO-TP length 0x014 = 20 bytes = 6 + 7 + 7.
PORSCHE_VIN_ANSWER = h("49 02 01 57 50 30") + h("5A 5A 5A 39 39 5A 54") + h("53 33 39 32 31 32 34")


# --- check_positive ---------------------------------------------------------------------------


def test_check_positive_returns_the_message_unchanged() -> None:
    assert check_positive(h("41 0C 1A F8"), 0x01, min_len=4) == h("41 0C 1A F8")


def test_check_positive_rejects_an_answer_to_another_service() -> None:
    with pytest.raises(DecodeError, match="expected positive answer 49 to service 09, got 41 0C 1A F8"):
        check_positive(h("41 0C 1A F8"), 0x09, min_len=3)


def test_check_positive_reports_a_refusal_with_the_nrc_name() -> None:
    # captures/androbd174-audi-a3-2005-legacy-svc09.txt line 40: "7F 09 12" answers 0905
    with pytest.raises(DecodeError, match=r"refused service 09 with NRC 12 \(subFunctionNotSupported\)"):
        check_positive(h("7F 09 12"), 0x09, min_len=3)


def test_check_positive_rejects_a_short_answer() -> None:
    with pytest.raises(DecodeError, match="has 2 bytes, needs 4 or more"):
        check_positive(h("41 0C"), 0x01, min_len=4)


def test_check_positive_rejects_an_empty_answer() -> None:
    with pytest.raises(DecodeError, match="empty answer to service 03"):
        check_positive(b"", 0x03, min_len=1)


# --- negative responses and NRCs --------------------------------------------------------------


def test_parse_negative_audi_legacy_refusal() -> None:
    # captures/androbd174-audi-a3-2005-legacy-svc09.txt lines 40-55: "7F 09 12" for 0905..090A
    assert parse_negative(h("7F 09 12")) == NegativeResponse(
        service=0x09,
        nrc=0x12,
        name="subFunctionNotSupported",
        meaning="The control unit does not support this PID, InfoType or sub-function; it is skipped.",
    )


def test_parse_negative_uds_response_pending() -> None:
    # captures/elmemu9-uds-response-pending-7e5.txt: "7F 11 78" before the positive 51 01
    negative = parse_negative(h("7F 11 78"))
    assert negative is not None
    assert (negative.service, negative.nrc, negative.name) == (
        0x11,
        0x78,
        "requestCorrectlyReceived-ResponsePending",
    )
    assert "keep waiting" in negative.meaning


def test_parse_negative_returns_none_for_a_positive_answer() -> None:
    assert parse_negative(h("47 00")) is None
    assert parse_negative(b"") is None


@pytest.mark.parametrize("data", ["7F", "7F 09", "7F 09 12 00"])
def test_parse_negative_rejects_a_malformed_refusal(data: str) -> None:
    with pytest.raises(DecodeError, match="7F SID NRC"):
        parse_negative(h(data))


def test_nrc_table_covers_the_codes_a_workshop_meets() -> None:
    required = {0x10, 0x11, 0x12, 0x13, 0x14, 0x21, 0x22, 0x24, 0x25, 0x31, 0x33}
    required |= {0x35, 0x36, 0x37, 0x78, 0x7E, 0x7F, 0x83, 0x88, 0x92, 0x93}
    assert set(NRC_TABLE) == required
    assert all(name and meaning.endswith(".") for name, meaning in NRC_TABLE.values())


@pytest.mark.parametrize(
    ("nrc", "name", "words"),
    [
        (0x22, "conditionsNotCorrect", "engine off"),
        (0x31, "requestOutOfRange", "skipped"),
        (0x33, "securityAccessDenied", "manufacturer's tool"),
        (0x83, "engineIsRunning", "Switch the engine off"),
        (0x93, "voltageTooLow", "battery charger"),
    ],
)
def test_nrc_name_and_meaning(nrc: int, name: str, words: str) -> None:
    assert nrc_name(nrc) == name
    assert words in nrc_meaning(nrc)


def test_unknown_nrc_still_gets_a_sentence() -> None:
    assert nrc_name(0xF5) == "unknownNRC_0xF5"
    assert nrc_meaning(0xF5) == (
        "The control unit refused with code 0xF5, which is manufacturer-specific or unknown."
    )
    negative = parse_negative(h("7F 22 F5"))
    assert negative is not None
    assert negative.name == "unknownNRC_0xF5"


def test_hex_bytes_is_spaced_upper_case_and_cut() -> None:
    assert hex_bytes(h("49 0a ff")) == "49 0A FF"
    assert hex_bytes(b"") == "(empty)"
    assert hex_bytes(bytes(30), limit=2) == "00 00 … (30 bytes)"


# --- join_legacy: pass-through ----------------------------------------------------------------


def test_single_can_vin_passes_through_unchanged() -> None:
    assert join_legacy([PORSCHE_VIN_ANSWER]) == PORSCHE_VIN_ANSWER


def test_single_can_dtc_answer_passes_through_unchanged() -> None:
    # captures/pyobd254-can29-multiecu-pending-dtc.txt line 36: "18 DA F1 11 06 47 02 22 6D 22 6E"
    assert join_legacy([h("47 02 22 6D 22 6E")]) == h("47 02 22 6D 22 6E")
    assert join_legacy([h("47 00")]) == h("47 00")


def test_single_kwp_bitmap_passes_through_unchanged() -> None:
    # captures/pyobd81-renault-espace4-kwp-fast.txt line 26: "86 F1 7A | 41 00 00 00 00 00 | 32"
    # (KWP header 86 F1 7A and checksum 32 removed by the adapter layer)
    joined = join_legacy([h("41 00 00 00 00 00")])
    assert joined == h("41 00 00 00 00 00")
    assert parse_bitmap_response(joined) == (0x00, set())


def test_legacy_message_count_infotype_passes_through() -> None:
    # captures/androbd174-audi-a3-2005-legacy-svc09.txt line 21: "49 01 05" (5 VIN messages)
    assert join_legacy([h("49 01 05")]) == h("49 01 05")


def test_negative_response_passes_through() -> None:
    assert join_legacy([h("7F 09 12")]) == h("7F 09 12")


# --- join_legacy: Service 09 ------------------------------------------------------------------


def test_legacy_infotype_bitmap_loses_its_sequence_byte() -> None:
    # captures/androbd174-audi-a3-2005-legacy-svc09.txt line 18: "49 00 01 F0 00 00 00"
    # -> InfoTypes 01 02 03 04 (the poster: "My car only supports PIDs 01, 02, 03, 04")
    joined = join_legacy([h("49 00 01 F0 00 00 00")])
    assert joined == h("49 00 F0 00 00 00")
    assert parse_bitmap_response(joined) == (0x00, {0x01, 0x02, 0x03, 0x04})


def _legacy_vin_messages(vin: str) -> list[bytes]:
    # Layout of captures/androbd174-audi-a3-2005-legacy-svc09.txt lines 24-28 (data masked
    # there): five messages "49 02 NN" + 4 bytes, the first padded with 00 00 00.
    data = b"\x00\x00\x00" + vin.encode("ascii")
    return [bytes([0x49, 0x02, n + 1]) + data[4 * n : 4 * n + 4] for n in range(5)]


def test_legacy_vin_is_joined_into_the_can_shape() -> None:
    messages = _legacy_vin_messages("WAUZZZ8P75A000120")
    assert messages[0] == h("49 02 01 00 00 00 57")
    assert messages[4] == h("49 02 05") + b"0120"
    joined = join_legacy(messages)
    assert joined == h("49 02 01 00 00 00") + b"WAUZZZ8P75A000120"
    assert decode_vin(joined) == "WAUZZZ8P75A000120"


def test_legacy_calid_is_joined_into_the_can_shape() -> None:
    # Layout of captures/androbd174-audi-a3-2005-legacy-svc09.txt lines 34-37: four messages
    # "49 04 NN" + 4 bytes = one 16-byte CALID.
    calid = b"1K0907115AB\x00\x00\x00\x00\x00"
    messages = [bytes([0x49, 0x04, n + 1]) + calid[4 * n : 4 * n + 4] for n in range(4)]
    joined = join_legacy(messages)
    assert joined == h("49 04 01") + calid
    assert decode_calids(joined) == ["1K0907115AB"]


def test_legacy_two_calids_get_count_two() -> None:
    data = b"CALIBRATION00001" + b"SECOND CAL 2\x00\x00\x00\x00"
    messages = [bytes([0x49, 0x04, n + 1]) + data[4 * n : 4 * n + 4] for n in range(8)]
    joined = join_legacy(messages)
    assert joined[:3] == h("49 04 02")
    assert decode_calids(joined) == ["CALIBRATION00001", "SECOND CAL 2"]


def test_legacy_cvns_get_one_item_per_four_bytes() -> None:
    joined = join_legacy([h("49 06 01 12 34 56 78"), h("49 06 02 9A BC DE F0")])
    assert joined == h("49 06 02 12 34 56 78 9A BC DE F0")


def test_legacy_sequence_out_of_order_is_rejected() -> None:
    messages = _legacy_vin_messages("WAUZZZ8P75A000120")
    messages[1], messages[2] = messages[2], messages[1]
    with pytest.raises(DecodeError, match="message 2 carries sequence byte 03"):
        join_legacy(messages)


def test_legacy_missing_message_is_rejected() -> None:
    messages = _legacy_vin_messages("WAUZZZ8P75A000120")
    del messages[3]
    with pytest.raises(DecodeError, match="missing or out of order"):
        join_legacy(messages)


def test_legacy_calid_not_a_multiple_of_sixteen_is_rejected() -> None:
    with pytest.raises(DecodeError, match="not a multiple of 16"):
        join_legacy([h("49 04 01 41 42 43 44"), h("49 04 02 45 46 47 48")])


def test_legacy_infotype_without_joining_rule_is_rejected() -> None:
    with pytest.raises(DecodeError, match="no known rule to join 2 legacy messages of InfoType 17"):
        join_legacy([h("49 17 01 00 00 30 E0"), h("49 17 02 00 00 30 EB")])


def test_mixed_infotypes_are_rejected() -> None:
    with pytest.raises(DecodeError, match="different InfoTypes"):
        join_legacy([h("49 02 01 00 00 00 57"), h("49 04 02 41 42 43 44")])


# --- join_legacy: DTC frames ------------------------------------------------------------------


def test_legacy_dtc_frames_get_a_count_and_lose_padding() -> None:
    # Legacy 43 frames: SID + 3 DTCs, 00 00 padding, no count byte (obd-facts 2.2).
    joined = join_legacy([h("43 01 33 01 34 41 23"), h("43 C1 00 00 00 00 00")])
    assert joined == h("43 04 01 33 01 34 41 23 C1 00")
    assert parse_dtc_list(joined, 0x03).codes == ("P0133", "P0134", "C0123", "U0100")


def test_single_legacy_dtc_frame_is_recognised_by_its_odd_length() -> None:
    assert join_legacy([h("47 01 33 00 00 00 00")]) == h("47 01 01 33")
    assert join_legacy([h("4A 00 00 00 00 00 00")]) == h("4A 00")


def test_legacy_dtc_frame_of_even_length_is_rejected() -> None:
    with pytest.raises(DecodeError, match="odd length"):
        join_legacy([h("43 01 33 00 00 00 00"), h("43 01 33 00 00 00")])


# --- join_legacy: other errors ----------------------------------------------------------------


def test_join_legacy_rejects_no_messages() -> None:
    with pytest.raises(DecodeError, match="no messages"):
        join_legacy([])


def test_join_legacy_rejects_an_empty_message() -> None:
    with pytest.raises(DecodeError, match="empty message"):
        join_legacy([h("43 00 00 00 00 00 00"), b""])


def test_join_legacy_rejects_mixed_services() -> None:
    with pytest.raises(DecodeError, match=r"different services \(43, 47\)"):
        join_legacy([h("43 00 00 00 00 00 00"), h("47 00 00 00 00 00 00")])


def test_join_legacy_rejects_several_service_01_messages() -> None:
    with pytest.raises(DecodeError, match="2 messages with first byte 41 cannot be joined"):
        join_legacy([h("41 0C 1A F8"), h("41 0D 00")])
