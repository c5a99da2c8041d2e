"""Tests for obdtool.decode.dtc: 2-byte OBD codes, DTC answers, descriptions, UDS codes."""

from __future__ import annotations

import pytest

from obdtool.decode.dtc import (
    DTC_SERVICES,
    UDS_STATUS_BITS,
    DtcList,
    describe_dtc,
    dtc_from_bytes,
    parse_dtc_list,
    parse_dtc_response,
    uds_dtc_to_str,
    uds_status_flags,
)
from obdtool.errors import DecodeError

h = bytes.fromhex


@pytest.mark.parametrize(
    ("b0", "b1", "code"),
    [
        (0x01, 0x33, "P0133"),
        (0x41, 0x23, "C0123"),
        (0x81, 0x00, "B0100"),
        (0xC1, 0x00, "U0100"),
        (0x22, 0x6D, "P226D"),
        (0x3A, 0xBC, "P3ABC"),
        (0xFF, 0xFF, "U3FFF"),
        (0x00, 0x00, "P0000"),
    ],
)
def test_dtc_from_bytes(b0: int, b1: int, code: str) -> None:
    assert dtc_from_bytes(b0, b1) == code


@pytest.mark.parametrize(("b0", "b1"), [(0x100, 0x00), (0x00, -1), (-1, 0x00), (0x00, 0x1FF)])
def test_dtc_from_bytes_rejects_non_bytes(b0: int, b1: int) -> None:
    with pytest.raises(DecodeError, match="must be a byte"):
        dtc_from_bytes(b0, b1)


def test_pending_dtcs_from_multi_ecu_capture() -> None:
    # captures/pyobd254-can29-multiecu-pending-dtc.txt line 36 (and 39):
    # "18 DA F1 11 06 47 02 22 6D 22 6E" -> ECU 0x11, 2 pending DTCs;
    # "18 DA F1 28 02 47 00" (also 18, 40) -> no pending DTC.
    assert parse_dtc_response(h("47 02 22 6D 22 6E"), 0x07) == ["P226D", "P226E"]
    assert parse_dtc_response(h("47 00"), 0x07) == []
    assert parse_dtc_list(h("47 02 22 6D 22 6E"), 0x07) == DtcList(codes=("P226D", "P226E"), declared_count=2)


def test_padding_pairs_are_dropped() -> None:
    assert parse_dtc_response(h("43 01 01 33 00 00 00 00"), 0x03) == ["P0133"]
    assert parse_dtc_response(h("4A 02 00 00 C1 00 41 23"), 0x0A) == ["U0100", "C0123"]


def test_count_mismatch_keeps_the_pairs_and_says_so() -> None:
    too_many = parse_dtc_list(h("43 03 01 33 00 00"), 0x03)
    assert too_many.codes == ("P0133",)
    assert too_many.declared_count == 3
    assert too_many.count_mismatch is True
    too_few = parse_dtc_list(h("43 00 01 33 01 34"), 0x03)
    assert too_few.codes == ("P0133", "P0134")
    assert too_few.count_mismatch is True
    assert parse_dtc_list(h("43 01 01 33"), 0x03).count_mismatch is False


def test_dtc_list_without_declared_count_never_mismatches() -> None:
    assert DtcList(codes=("P0133",), declared_count=None).count_mismatch is False


def test_unjoined_legacy_answer_is_rejected_not_misread() -> None:
    # A legacy frame (no count byte) would otherwise read DTC byte 01 as the count.
    with pytest.raises(DecodeError, match=r"odd length .*legacy answer that was not joined"):
        parse_dtc_response(h("43 01 33 00 00 00 00"), 0x03)


@pytest.mark.parametrize(
    ("data", "service", "message"),
    [
        ("47 00", 0x03, "expected positive answer 43 to service 03"),
        ("43 00", 0x01, "service 01 does not report DTCs"),
        ("43", 0x03, "needs 2 or more"),
        ("7F 04 22", 0x04, "service 04 does not report DTCs"),
        ("7F 03 22", 0x03, r"NRC 22 \(conditionsNotCorrect\)"),
        ("43 01 01", 0x03, "odd length"),
    ],
)
def test_dtc_answer_errors(data: str, service: int, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        parse_dtc_list(h(data), service)


def test_dtc_services() -> None:
    assert dict(DTC_SERVICES) == {0x03: "confirmed", 0x07: "pending", 0x0A: "permanent"}


def test_describe_dtc() -> None:
    assert describe_dtc("P0001") == "Fuel Volume Regulator Control Circuit/Open"
    assert describe_dtc(" p0001 ") == "Fuel Volume Regulator Control Circuit/Open"
    assert describe_dtc("P0001-45") == "Fuel Volume Regulator Control Circuit/Open"
    assert describe_dtc("U3FFF") is None


@pytest.mark.parametrize(
    ("b0", "b1", "b2", "text"),
    [(0x01, 0x23, 0x45, "P0123-45"), (0xC1, 0x00, 0x87, "U0100-87"), (0x00, 0x00, 0x00, "P0000-00")],
)
def test_uds_dtc_to_str(b0: int, b1: int, b2: int, text: str) -> None:
    assert uds_dtc_to_str(b0, b1, b2) == text


def test_uds_dtc_to_str_rejects_non_bytes() -> None:
    with pytest.raises(DecodeError, match="failure type byte must be a byte"):
        uds_dtc_to_str(0x01, 0x23, 0x100)


def test_uds_status_bits_order() -> None:
    assert UDS_STATUS_BITS == (
        "testFailed",
        "testFailedThisOperationCycle",
        "pendingDTC",
        "confirmedDTC",
        "testNotCompletedSinceLastClear",
        "testFailedSinceLastClear",
        "testNotCompletedThisOperationCycle",
        "warningIndicatorRequested",
    )


@pytest.mark.parametrize(
    ("status", "flags"),
    [
        (0x00, []),
        (0x09, ["testFailed", "confirmedDTC"]),
        (
            0x2F,
            [
                "testFailed",
                "testFailedThisOperationCycle",
                "pendingDTC",
                "confirmedDTC",
                "testFailedSinceLastClear",
            ],
        ),
        (0x80, ["warningIndicatorRequested"]),
        (0xFF, list(UDS_STATUS_BITS)),
    ],
)
def test_uds_status_flags(status: int, flags: list[str]) -> None:
    assert uds_status_flags(status) == flags


@pytest.mark.parametrize("status", [-1, 0x100])
def test_uds_status_flags_rejects_non_bytes(status: int) -> None:
    with pytest.raises(DecodeError, match="DTC status must be a byte"):
        uds_status_flags(status)
