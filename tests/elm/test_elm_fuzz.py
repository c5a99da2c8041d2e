"""Properties of the ELM327 reader: any text gives a list or an AdapterError; framed data returns whole."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.base import EcuReply
from adapters.elm_lines import HEADERLESS_CAN, parse_response, split_status
from adapters.errors import AdapterError

FUZZ = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces an ELM327 really prints, so the generator reaches deep into the reader rather than failing on
# the first character.
ELM_WORDS = [
    "7E8",
    "7E9",
    "18DAF110",
    "18 DA F1 11",
    "48 6B 10",
    "86 F1 7A",
    "0",
    "1",
    "2",
    "3",
    "10",
    "14",
    "21",
    "22",
    "2F",
    "41",
    "49",
    "7F",
    "78",
    "00",
    "FF",
    "AA",
    "014",
    "0:",
    "1:",
    "F:",
    "10:",
    " ",
    "\r",
    "\n",
    "\r\n",
    ">",
    "SEARCHING...",
    "NO DATA",
    "BUS INIT: ...OK",
    "BUS INIT: ...ERROR",
    "CAN ERROR",
    "UNABLE TO CONNECT",
    "<DATA ERROR",
    "<RX ERROR",
    "STOPPED",
    "?",
    "ERR94",
    "LV RESET",
    "\x00",
    "ab",
    "zz",
]
elm_text = st.lists(st.sampled_from(ELM_WORDS), max_size=60).map("".join)
requests = st.sampled_from([b"\x01\x00", b"\x09\x02", b"\x07", bytes.fromhex("22F190"), b"\x03", b"\x11\x01"])
modes = st.fixed_dictionaries(
    {
        "can": st.booleans(),
        "id_bits": st.sampled_from([11, 29]),
        "headers": st.booleans(),
        "legacy_checksum": st.sampled_from(["sum", "crc8"]),
    }
)


def _check(text: str, request: bytes, mode: dict[str, object]) -> None:
    try:
        result = parse_response(text, request=request, **mode)  # type: ignore[arg-type]
    except AdapterError:
        return
    assert isinstance(result, list)
    assert all(isinstance(reply, EcuReply) and reply.data for reply in result)


@FUZZ
@given(text=st.text(max_size=300), request=requests, mode=modes)
def test_any_text_gives_a_list_or_an_adapter_error(
    text: str, request: bytes, mode: dict[str, object]
) -> None:
    _check(text, request, mode)


@FUZZ
@given(text=elm_text, request=requests, mode=modes)
def test_elm_like_text_gives_a_list_or_an_adapter_error(
    text: str, request: bytes, mode: dict[str, object]
) -> None:
    _check(text, request, mode)


@FUZZ
@given(data=st.binary(max_size=200), request=requests, mode=modes)
def test_any_bytes_decoded_like_the_driver_does(data: bytes, request: bytes, mode: dict[str, object]) -> None:
    _check(data.decode("ascii", errors="replace"), request, mode)


@FUZZ
@given(text=st.text(max_size=200))
def test_split_status_gives_lines_or_an_adapter_error(text: str) -> None:
    try:
        lines = split_status(text, echo={"0100"})
    except AdapterError:
        return
    assert all(line and line == line.strip() for line in lines)


def _isotp_frames(payload: bytes) -> list[bytes]:
    if len(payload) <= 7:
        return [bytes([len(payload)]) + payload]
    frames = [bytes([0x10 | (len(payload) >> 8), len(payload) & 0xFF]) + payload[:6]]
    rest, seq = payload[6:], 1
    while rest:
        frames.append(bytes([0x20 | seq]) + rest[:7])
        rest, seq = rest[7:], (seq + 1) & 0x0F
    return frames


@FUZZ
@given(
    body=st.binary(min_size=0, max_size=300),
    id_bits=st.sampled_from([11, 29]),
    spaces=st.booleans(),
    lowercase=st.booleans(),
    padding=st.sampled_from([None, 0x00, 0x55, 0xAA, 0xCC]),
    line_end=st.sampled_from(["\r", "\r\n", "\n"]),
)
def test_iso_tp_round_trip_with_headers(
    body: bytes, id_bits: int, spaces: bool, lowercase: bool, padding: int | None, line_end: str
) -> None:
    payload = b"\x62\xf1\x90" + body
    ecu = "7E8" if id_bits == 11 else "18DAF110"
    lines = []
    for bare in _isotp_frames(payload):
        frame = bare if padding is None else bare.ljust(8, bytes([padding]))
        header = ecu if not spaces or id_bits == 11 else "18 DA F1 10"
        line = f"{header} {frame.hex(' ')}" if spaces else ecu + frame.hex()
        lines.append(line.lower() if lowercase else line.upper())
    text = line_end.join(lines) + line_end + line_end
    replies = parse_response(text, request=bytes.fromhex("22F190"), can=True, id_bits=id_bits)
    assert replies == [EcuReply(ecu, payload)]


@FUZZ
@given(body=st.binary(min_size=5, max_size=300), spaces=st.booleans())
def test_iso_tp_round_trip_headers_off(body: bytes, spaces: bool) -> None:
    payload = b"\x62\x01\x01" + body
    lines = [f"{len(payload):03X}", "0: " + payload[:6].hex(" ")]
    rest, index = payload[6:], 1
    while rest:
        lines.append(f"{index % 16:X}: " + rest[:7].hex(" "))
        rest, index = rest[7:], index + 1
    text = "\r".join(lines) if spaces else "\r".join(line.replace(" ", "") for line in lines)
    assert parse_response(text, request=bytes.fromhex("220101"), can=True, headers=False) == [
        EcuReply(HEADERLESS_CAN, payload)
    ]
