"""The ELM327 reader on hand-made text: one quirk per test, spaces on and off, every status word."""

from __future__ import annotations

import pytest

from adapters.base import EcuReply
from adapters.elm_lines import (
    HEADERLESS_CAN,
    HEADERLESS_LEGACY,
    decode_response,
    j1850_crc,
    parse_at_reply,
    parse_response,
    split_status,
    status_error,
)
from adapters.errors import (
    AdapterProtocolError,
    AdapterSpecError,
    AdapterStatusError,
    BufferFullError,
    BusFaultError,
    BusInitError,
    CanBusError,
    CommandRejectedError,
    FramingError,
    StoppedError,
    UnableToConnectError,
)

VIN = b"\x49\x02\x01WP0ZZZ99ZTS392124"
VIN_S1 = "7E8 10 14 49 02 01 57 50 30 \r7E8 21 5A 5A 5A 39 39 5A 54 \r7E8 22 53 33 39 32 31 32 34 \r"


def parse_can(text: str, request: bytes = b"\x09\x02", **kw: object) -> list[EcuReply]:
    return parse_response(text, request=request, can=True, **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------- formatting variants


@pytest.mark.parametrize(
    "text",
    [
        VIN_S1,
        VIN_S1.replace(" ", ""),
        VIN_S1.lower(),
        VIN_S1.replace("\r", "\r\n"),
        "\r\n\r" + VIN_S1.replace("\r", "\r\r\n") + "\r\r>",
        "SEARCHING...\r" + VIN_S1,
        "SEARCHING..." + VIN_S1,
        "\x00" + VIN_S1,
        "0902\r" + VIN_S1,
        "09021\r" + VIN_S1.replace(" ", ""),
    ],
    ids=[
        "S1",
        "S0",
        "lowercase",
        "crlf",
        "blank-lines",
        "searching",
        "searching-glued",
        "nul",
        "echo",
        "echo-count",
    ],
)
def test_same_answer_however_printed(text: str) -> None:
    assert parse_can(text) == [EcuReply("7E8", VIN)]


@pytest.mark.parametrize("spaces", [True, False])
def test_29_bit_headers_split_by_width(spaces: bool) -> None:
    text = "18 DA F1 10 06 41 00 BE 3F A8 13\r18 DA F1 1A 03 41 00 80"
    if not spaces:
        text = text.replace(" ", "")
    assert parse_can(text, b"\x01\x00", id_bits=29) == [
        EcuReply("18DAF110", bytes.fromhex("4100BE3FA813")),
        EcuReply("18DAF11A", bytes.fromhex("410080")),
    ]


@pytest.mark.parametrize("spaces", [True, False])
def test_legacy_headers_checksum_and_source_address(spaces: bool) -> None:
    # ISO 9141-2: 48 6B <source>, data, sum mod 256.
    body = bytes.fromhex("486B104100BE3FA813")
    line = (body + bytes([sum(body) & 0xFF])).hex(" ").upper()
    if not spaces:
        line = line.replace(" ", "")
    assert parse_response(line, request=b"\x01\x00", can=False) == [EcuReply("10", body[3:])]


def test_legacy_j1850_uses_crc() -> None:
    assert j1850_crc(b"123456789") == 0x4B  # the SAE J1850 CRC-8 check value
    body = bytes.fromhex("486B104100BE3FA813")
    good = (body + bytes([j1850_crc(body)])).hex(" ")
    assert parse_response(good, request=b"\x01\x00", can=False, legacy_checksum="crc8") == [
        EcuReply("10", body[3:])
    ]
    with pytest.raises(FramingError, match="check byte"):
        parse_response(good, request=b"\x01\x00", can=False, legacy_checksum="sum")


def test_kwp_length_in_format_byte_is_checked() -> None:
    body = bytes.fromhex("86F17A41000000000000")  # says 6 bytes, carries 7
    line = (body + bytes([sum(body) & 0xFF])).hex(" ")
    with pytest.raises(FramingError, match="announces 6 bytes but carries 7"):
        parse_response(line, request=b"\x01\x00", can=False)


def test_kwp_separate_length_byte() -> None:
    body = bytes.fromhex("80F17A06410000000000")
    line = (body + bytes([sum(body) & 0xFF])).hex(" ")
    assert parse_response(line, request=b"\x01\x00", can=False) == [
        EcuReply("7A", bytes.fromhex("410000000000"))
    ]


def test_legacy_multi_line_answer_is_one_reply_per_line() -> None:
    lines = []
    for seq, chunk in enumerate((b"\x00\x00\x00W", b"P0ZZ", b"Z99Z", b"TS39", b"2124"), start=1):
        body = bytes.fromhex("486B10") + b"\x49\x02" + bytes([seq]) + chunk
        lines.append((body + bytes([sum(body) & 0xFF])).hex(" "))
    replies = parse_response("\r".join(lines), request=b"\x09\x02", can=False)
    assert [reply.data[2] for reply in replies] == [1, 2, 3, 4, 5]
    assert b"".join(reply.data[3:] for reply in replies)[3:] == b"WP0ZZZ99ZTS392124"


def test_headerless_legacy_uses_placeholder_address() -> None:
    assert parse_response("41 0C 1A F8", request=b"\x01\x0c", can=False, headers=False) == [
        EcuReply(HEADERLESS_LEGACY, bytes.fromhex("410C1AF8"))
    ]


# ----------------------------------------------------------------------- ISO-TP reassembly


def test_padding_after_the_announced_length_is_dropped() -> None:
    text = "7E8 03 41 0D 32 AA AA AA AA\r7E8 10 08 49 04 01 32 33 37\r7E8 21 36 31 AA AA AA AA AA"
    assert parse_can(text, b"\x01\x0d") == [EcuReply("7E8", bytes.fromhex("410D32"))]
    assert parse_can(text, b"\x09\x04") == [EcuReply("7E8", bytes.fromhex("4904013233373631"))]


def test_interleaved_multiframe_answers_are_kept_apart() -> None:
    text = (
        "7E8 10 0A 49 04 01 41 41 41\r"
        "7E9 10 0A 49 04 01 42 42 42\r"
        "7E9 21 42 42 42 42 00 00 00\r"
        "7E8 21 41 41 41 41 00 00 00\r"
    )
    assert parse_can(text, b"\x09\x04") == [
        EcuReply("7E9", b"\x49\x04\x01BBBBBBB"),
        EcuReply("7E8", b"\x49\x04\x01AAAAAAA"),
    ]


def test_sequence_wraps_after_f() -> None:
    payload = b"\x62\x00\x01" + bytes(range(3, 6 + 7 * 17))  # 17 consecutive frames: 21..2F, 20, 21
    lines = [f"7E8 10 {len(payload):02X} " + payload[:6].hex(" ")]
    rest, seq = payload[6:], 1
    while rest:
        lines.append(f"7E8 2{seq:X} " + rest[:7].hex(" "))
        rest, seq = rest[7:], (seq + 1) % 16
    assert [line[4] for line in lines[-3:]] == ["2", "2", "2"]
    assert [line[5] for line in lines[-3:]] == ["F", "0", "1"]
    assert parse_can("\r".join(lines), b"\x22\x00\x01") == [EcuReply("7E8", payload)]


def test_32_bit_first_frame_length() -> None:
    text = "7E8 10 00 00 00 00 08 49 04\r7E8 21 01 41 42 43 44 45 AA"
    assert parse_can(text, b"\x09\x04") == [EcuReply("7E8", b"\x49\x04\x01ABCDE")]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("7E8 10 14 49 02 01 57 50 30\r7E8 22 53 33 39 32 31 32 34", "arrived where 1 was due"),
        ("7E8 10 14 49 02 01 57 50 30\r7E8 21 5A 5A 5A 39 39 5A 54\r7E8 21 53 33 39 32 31 32 34", "was due"),
        ("7E8 10 14 49 02 01 57 50 30\r7E8 21 5A 5A 5A 39 39 5A 54", "stopped after 13 of 20 bytes"),
        ("7E8 21 5A 5A 5A 39 39 5A 54", "without a first frame"),
        ("7E8 10 14 49 02 01 57 50 30\r7E8 03 49 02 01", "started a new message"),
        ("7E8 10 14 49 02 01 57 50 30\r7E8 10 14 49 02 01 57 50 30", "started a new message"),
        ("7E8 00 49 02", "announces 0 bytes"),
        ("7E8 08 49 02 01 57 50 30 30 30", "too long for one CAN frame"),
        ("7E8 06 49 02 01", "announces 6 bytes but carries 3"),
        ("7E8 49 02 01", "unknown ISO-TP frame type"),
        ("7E8 10 00 00 00 00 00 49 02", "empty message"),
    ],
)
def test_broken_multiframe_answers_are_refused(text: str, match: str) -> None:
    with pytest.raises(AdapterProtocolError, match=match):
        parse_can(text)


def test_flow_control_frames_carry_nothing() -> None:
    assert parse_can("7E0 30 00 00\r7E8 06 49 00 55 42 00 00", b"\x09\x00") == [
        EcuReply("7E8", bytes.fromhex("49005542 0000"))
    ]


def test_glued_frames_split_only_when_unambiguous() -> None:
    glued = "7E8064100BE3FA8137E9064100983B0011"
    assert [reply.ecu for reply in parse_can(glued, b"\x01\x00")] == ["7E8", "7E9"]
    # Padded single frames glued together leave a "CAN ID" that is no CAN ID: refused, not guessed.
    padded = "7E8064100BE3FA813AA7E9064100983B0011AA"
    with pytest.raises(AdapterProtocolError):
        parse_can(padded, b"\x01\x00")


@pytest.mark.parametrize("line", ["8E8 06 41 00 BE 3F A8 13", "8E8064100BE3FA813"])
def test_11_bit_identifier_out_of_range(line: str) -> None:
    with pytest.raises(AdapterProtocolError, match="out of range"):
        parse_can(line, b"\x01\x00")


# ----------------------------------------------------------------------- headers off, CAF1


def test_headerless_multiline_layout() -> None:
    text = "014\r0: 49 02 01 57 50 30\r1: 5A 5A 5A 39 39 5A 54\r2: 53 33 39 32 31 32 34\r"
    assert parse_can(text, headers=False) == [EcuReply(HEADERLESS_CAN, VIN)]
    assert parse_can(text.replace(" ", ""), headers=False) == [EcuReply(HEADERLESS_CAN, VIN)]


@pytest.mark.parametrize("style", ["wrap", "two-digit"])
def test_headerless_segment_numbers_past_f(style: str) -> None:
    payload = b"\x62\x01\x01" + bytes(range(3, 6 + 7 * 17))
    lines = [f"{len(payload):03X}", "0:" + payload[:6].hex()]
    rest, index = payload[6:], 1
    while rest:
        number = index % 16 if style == "wrap" else index
        lines.append(f"{number:X}:" + rest[:7].hex())
        rest, index = rest[7:], index + 1
    assert parse_can("\r".join(lines), bytes.fromhex("220101"), headers=False) == [
        EcuReply(HEADERLESS_CAN, payload)
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("014\r0: 49 02 01 57 50 30\r2: 5A 5A 5A 39 39 5A 54", FramingError),
        ("014\r0: 49 02 01 57 50 30\r1: 5A 5A 5A 39 39 5A 54", FramingError),
        ("014\r0: 49 02 01 57 50 30\r49 02", FramingError),
        ("1: 5A 5A 5A 39 39 5A 54", FramingError),
        ("000", FramingError),
        ("49 02 01 57 50 30 5A 5A", AdapterProtocolError),
    ],
    ids=["skipped-line", "truncated", "interrupted", "no-length-line", "zero-length", "too-long"],
)
def test_headerless_broken_layouts(text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_can(text, headers=False)


# ----------------------------------------------------------------------- which replies are kept


def test_unrequested_services_and_pids_are_set_aside() -> None:
    text = "7E8 04 41 0C 1A F8\r7E8 03 41 0D 00\r7E8 03 47 01 33\r7E9 03 7F 03 11\r7E9 03 7F 07 12"
    result = decode_response(text, request=b"\x07", can=True)
    assert result.replies == (
        EcuReply("7E8", bytes.fromhex("470133")),
        EcuReply("7E9", bytes.fromhex("7F0712")),
    )
    assert len(result.ignored) == 3
    multi_pid = decode_response(text, request=b"\x01\x0c\x0d", can=True)
    assert [reply.data[:2] for reply in multi_pid.replies] == [b"\x41\x0c", b"\x41\x0d"]


def test_uds_did_echo_is_checked() -> None:
    text = "7E8 05 62 F1 90 41 42\r7E8 05 62 F1 87 43 44"
    assert parse_can(text, bytes.fromhex("22F190")) == [EcuReply("7E8", bytes.fromhex("62F1904142"))]


def test_response_pending_reported_only_without_final_answer() -> None:
    text = "7E8 03 7F 22 78\r7E9 03 7F 22 78\r7E8 05 62 F1 90 41 42"
    result = decode_response(text, request=bytes.fromhex("22F190"), can=True)
    assert result.replies == (EcuReply("7E8", bytes.fromhex("62F1904142")),)
    assert result.pending == ("7E9",)


# ----------------------------------------------------------------------- status words


@pytest.mark.parametrize(
    ("text", "error", "status"),
    [
        ("UNABLE TO CONNECT", UnableToConnectError, "UNABLE TO CONNECT"),
        ("SEARCHING...\r...UNABLE TO CONNECT", UnableToConnectError, "...UNABLE TO CONNECT"),
        ("BUS INIT: ...ERROR", BusInitError, "BUS INIT: ...ERROR"),
        ("BUS INIT: ERROR", BusInitError, "BUS INIT: ERROR"),
        ("CAN ERROR", CanBusError, "CAN ERROR"),
        ("ERR94", CanBusError, "ERR94"),
        ("ERR93", AdapterStatusError, "ERR93"),
        ("BUS BUSY", BusFaultError, "BUS BUSY"),
        ("BUS ERROR", BusFaultError, "BUS ERROR"),
        ("FB ERROR", BusFaultError, "FB ERROR"),
        ("DATA ERROR", BusFaultError, "DATA ERROR"),
        ("<DATA ERROR", BusFaultError, "<DATA ERROR"),
        ("7E8 06 41 00 BE 3F A8 13 <DATA ERROR", BusFaultError, "<DATA ERROR"),
        ("41 00 BE 3F A8 13 <RX ERROR", BusFaultError, "<RX ERROR"),
        ("BUFFER FULL", BufferFullError, "BUFFER FULL"),
        ("STOPPED", StoppedError, "STOPPED"),
        ("?", CommandRejectedError, "?"),
        ("LV RESET", AdapterStatusError, "LV RESET"),
        ("ACT ALERT", AdapterStatusError, "ACT ALERT"),
        ("LP ALERT", AdapterStatusError, "LP ALERT"),
        ("can error", CanBusError, "CAN ERROR"),
    ],
)
def test_status_words_become_errors(text: str, error: type[AdapterStatusError], status: str) -> None:
    with pytest.raises(error) as caught:
        parse_can(text, b"\x01\x00")
    assert type(caught.value) is error
    assert caught.value.status == status
    assert str(caught.value)  # a sentence for the technician


def test_no_data_is_an_empty_answer() -> None:
    assert parse_can("NO DATA", b"\x01\x00") == []
    assert parse_can("SEARCHING...\rNO DATA\r\r>", b"\x01\x00") == []
    assert parse_can("", b"\x01\x00") == []
    assert parse_can("7E8 03 41 0D 00\rNO DATA", b"\x01\x0d") == [EcuReply("7E8", b"\x41\x0d\x00")]


def test_bus_init_ok_is_not_data() -> None:
    assert parse_response("BUS INIT: ...OK\r41 0D 00", request=b"\x01\x0d", can=False, headers=False) == [
        EcuReply(HEADERLESS_LEGACY, b"\x41\x0d\x00")
    ]


@pytest.mark.parametrize("line", ["NO DATA", "OK", "SEARCHING...", "41 00", ""])
def test_status_error_ignores_non_errors(line: str) -> None:
    assert status_error(line) is None


# ----------------------------------------------------------------------- garbage


@pytest.mark.parametrize(
    "text",
    [
        "HELLO WORLD",
        "7E8 06 41 00 XX 3F A8 13",
        "41 0C 000",
        "7E8",
        "7E8 ",
        "\x1b[2J",
        "7E8 06 41 00 BE 3F A8 13\xff",
        "７E8 06 41 00 BE 3F A8 13",  # fullwidth digit: int() would accept it, the adapter never prints it
        "41 0C\r>\r41 0D",
    ],
)
def test_garbage_is_a_protocol_error_with_a_clean_excerpt(text: str) -> None:
    with pytest.raises(AdapterProtocolError) as caught:
        parse_can(text, b"\x01\x00")
    message = str(caught.value)
    assert all(" " <= ch <= "~" or ch == "—" for ch in message)
    assert len(message) < 160


def test_long_garbage_excerpt_is_shortened() -> None:
    with pytest.raises(AdapterProtocolError) as caught:
        parse_can("Z" * 500, b"\x01\x00")
    assert "..." in str(caught.value)
    assert len(str(caught.value)) < 120


def test_bad_parameters_are_spec_errors() -> None:
    with pytest.raises(AdapterSpecError):
        parse_response("41 00", request=b"", can=True)
    with pytest.raises(AdapterSpecError):
        parse_response("41 00", request=b"\x01\x00", can=True, id_bits=12)


# ----------------------------------------------------------------------- helpers


def test_split_status_drops_echo_only_on_the_first_line() -> None:
    assert split_status("0100\r41 00\r0100", echo={"0100"}) == ["41 00", "0100"]


def test_at_reply() -> None:
    assert parse_at_reply("ATE0\rOK\r\r", "ATE0") == ["OK"]
    assert parse_at_reply("\r\rELM327 v1.5\r\r", "ATI") == ["ELM327 v1.5"]
    assert parse_at_reply("A6\r", "AT DPN") == ["A6"]
    with pytest.raises(CommandRejectedError):
        parse_at_reply("?\r\r", "ATXX")
