"""Property tests: decoders fed arbitrary bytes return a value or raise DecodeError, nothing else.

Plus round trips that must hold for every input (encode by hand, decode, compare).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obdtool.decode import common, dtc, infotypes, pids
from obdtool.errors import DecodeError

# No example database on disk, no per-example deadline (the first DTC description loads a table).
PROPERTY = settings(max_examples=200, deadline=None, database=None)

# Prefixes that get random bytes past the first checks and into each decoder's body.
PREFIXES = [
    b"",
    b"\x41",
    b"\x41\x00",
    b"\x41\x01",
    b"\x42",
    b"\x42\x02\x00",
    b"\x43",
    b"\x47",
    b"\x4a",
    b"\x49",
    b"\x49\x00",
    b"\x49\x02\x01",
    b"\x49\x04",
    b"\x49\x04\x01",
    b"\x49\x06",
    b"\x49\x0a\x01",
    b"\x49\x17\x01",
    b"\x49\x1a",
    b"\x7f",
    b"\x7f\x09",
]

answers = st.one_of(
    st.binary(max_size=96),
    st.tuples(st.sampled_from(PREFIXES), st.binary(max_size=96)).map(lambda parts: parts[0] + parts[1]),
)


BYTES_DECODERS: dict[str, Callable[[bytes], object]] = {
    "check_positive": lambda data: common.check_positive(data, 0x09, min_len=3),
    "parse_negative": common.parse_negative,
    "join_legacy": lambda data: common.join_legacy([data]),
    "parse_bitmap_response": pids.parse_bitmap_response,
    "supported_from_bitmap": lambda data: pids.supported_from_bitmap(data[0] if data else 0, data[1:]),
    "decode_monitor_status": pids.decode_monitor_status,
    "split_multi_pid": pids.split_multi_pid,
    "parse_freeze_frame": pids.parse_freeze_frame,
    "decode_freeze_frame_dtc": pids.decode_freeze_frame_dtc,
    "parse_dtc_list_03": lambda data: dtc.parse_dtc_list(data, 0x03),
    "parse_dtc_response_07": lambda data: dtc.parse_dtc_response(data, 0x07),
    "parse_dtc_response_0a": lambda data: dtc.parse_dtc_response(data, 0x0A),
    "decode_vin": infotypes.decode_vin,
    "decode_calids": infotypes.decode_calids,
    "decode_cvns": infotypes.decode_cvns,
    "decode_ecu_name": infotypes.decode_ecu_name,
    "decode_obfcm_itid17": infotypes.decode_obfcm_itid17,
    "keep_obfcm_raw": infotypes.keep_obfcm_raw,
}


@pytest.mark.parametrize("name", sorted(BYTES_DECODERS))
@PROPERTY
@given(data=answers)
def test_bytes_decoders_raise_only_decode_error(name: str, data: bytes) -> None:
    try:
        result = BYTES_DECODERS[name](data)
    except DecodeError:
        return
    assert name == "parse_negative" or result is not None


@PROPERTY
@given(pid=st.sampled_from([*pids.PIDS, 0x0B, 0x02]), payload=st.binary(max_size=8), direct=st.booleans())
def test_pid_decoders_raise_only_decode_error(pid: int, payload: bytes, direct: bool) -> None:
    try:
        value = (
            pids.PIDS[pid].decode(payload) if direct and pid in pids.PIDS else pids.decode_pid(pid, payload)
        )
    except DecodeError:
        assert len(payload) != pids.PID_LENGTHS.get(pid)
        return
    assert len(payload) == pids.PID_LENGTHS[pid]
    assert isinstance(value, (int, float, str, tuple, pids.MonitorStatus))


@PROPERTY
@given(messages=st.lists(answers, max_size=8))
def test_join_legacy_raises_only_decode_error(messages: list[bytes]) -> None:
    try:
        joined = common.join_legacy(messages)
    except DecodeError:
        return
    assert isinstance(joined, bytes)
    assert joined[:1] == messages[0][:1]


byte_or_not = st.integers(min_value=-300, max_value=600)


@PROPERTY
@given(b0=byte_or_not, b1=byte_or_not, b2=byte_or_not)
def test_int_decoders_raise_only_decode_error(b0: int, b1: int, b2: int) -> None:
    for call in (
        lambda: dtc.dtc_from_bytes(b0, b1),
        lambda: dtc.uds_dtc_to_str(b0, b1, b2),
        lambda: dtc.uds_status_flags(b0),
        lambda: pids.supported_from_bitmap(b0, bytes([b1 & 0xFF, b2 & 0xFF, 0, 0])),
    ):
        try:
            call()
        except DecodeError:
            continue


@PROPERTY
@given(nrc=st.integers(min_value=-1000, max_value=1000))
def test_nrc_texts_never_fail(nrc: int) -> None:
    name = common.nrc_name(nrc)
    assert name
    assert " " not in name
    assert common.nrc_meaning(nrc).endswith(".")


@PROPERTY
@given(text=st.text(max_size=30))
def test_text_functions_never_fail(text: str) -> None:
    result = infotypes.check_vin(text)
    assert result.vin == text
    assert result.valid is (not result.errors)
    assert not (result.warnings and result.errors)
    digit = infotypes.vin_check_digit(text)
    assert digit is None or digit in "0123456789X"
    description = dtc.describe_dtc(text)
    assert description is None or isinstance(description, str)


# --- round trips ------------------------------------------------------------------------------

vins = st.text(alphabet=sorted(infotypes.VIN_ALPHABET), min_size=17, max_size=17)


@PROPERTY
@given(vin=vins, lead=st.integers(0, 3), trail=st.integers(0, 7))
def test_vin_round_trip_keeps_every_character(vin: str, lead: int, trail: int) -> None:
    data = b"\x49\x02\x01" + bytes(lead) + vin.encode("ascii") + bytes(trail)
    assert infotypes.decode_vin(data) == vin
    assert infotypes.check_vin(vin).valid is True


calid_texts = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=16)


@PROPERTY
@given(calids=st.lists(calid_texts, max_size=6))
def test_calid_round_trip_keeps_every_calid(calids: list[str]) -> None:
    data = bytes([0x49, 0x04, len(calids)]) + b"".join(c.encode("ascii").ljust(16, b"\x00") for c in calids)
    assert infotypes.decode_calids(data) == calids


@PROPERTY
@given(calids=st.lists(calid_texts, min_size=1, max_size=4))
def test_legacy_calid_join_round_trip(calids: list[str]) -> None:
    data = b"".join(c.encode("ascii").ljust(16, b"\x00") for c in calids)
    messages = [bytes([0x49, 0x04, n + 1]) + data[4 * n : 4 * n + 4] for n in range(len(data) // 4)]
    assert infotypes.decode_calids(common.join_legacy(messages)) == calids


dtc_pairs = st.tuples(st.integers(0, 255), st.integers(0, 255)).filter(lambda pair: pair != (0, 0))


@PROPERTY
@given(pairs=st.lists(dtc_pairs, max_size=12), sid=st.sampled_from([0x43, 0x47, 0x4A]))
def test_legacy_dtc_join_round_trip(pairs: list[tuple[int, int]], sid: int) -> None:
    raw = b"".join(bytes(pair) for pair in pairs)
    raw += bytes(-len(raw) % 6 if raw else 6)  # 00 00 padding up to whole 3-DTC frames
    messages = [bytes([sid]) + raw[i : i + 6] for i in range(0, len(raw), 6)]
    joined = common.join_legacy(messages)
    result = dtc.parse_dtc_list(joined, sid - 0x40)
    assert result.codes == tuple(dtc.dtc_from_bytes(b0, b1) for b0, b1 in pairs)
    assert result.count_mismatch is False


@PROPERTY
@given(b0=st.integers(0, 255), b1=st.integers(0, 255), b2=st.integers(0, 255))
def test_dtc_text_shape(b0: int, b1: int, b2: int) -> None:
    code = dtc.dtc_from_bytes(b0, b1)
    assert len(code) == 5
    assert code[0] == "PCBU"[b0 >> 6]
    assert code[1] in "0123"
    assert int(code[1:], 16) == ((b0 & 0x3F) << 8 | b1)
    assert dtc.uds_dtc_to_str(b0, b1, b2) == f"{code}-{b2:02X}"


@PROPERTY
@given(base=st.sampled_from(range(0, 256, 32)), chosen=st.sets(st.integers(1, 32)))
def test_bitmap_round_trip(base: int, chosen: set[int]) -> None:
    bits = sum(1 << (32 - offset) for offset in chosen)
    expected = {base + offset for offset in chosen if base + offset <= 0xFF}
    assert pids.supported_from_bitmap(base, bits.to_bytes(4, "big")) == expected


multi_pid_items = st.lists(
    st.sampled_from(sorted(pids.PID_LENGTHS)).flatmap(
        lambda pid: st.binary(min_size=pids.PID_LENGTHS[pid], max_size=pids.PID_LENGTHS[pid]).map(
            lambda payload: (pid, payload)
        )
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda item: item[0],
)


@PROPERTY
@given(items=multi_pid_items)
def test_multi_pid_round_trip(items: list[tuple[int, bytes]]) -> None:
    data = b"\x41" + b"".join(bytes([pid]) + payload for pid, payload in items)
    assert pids.split_multi_pid(data) == dict(items)
    for pid, payload in items:
        pids.decode_pid(pid, payload)  # every table PID decodes every payload of its length


@PROPERTY
@given(values=st.lists(st.integers(0, 0xFFFFFFFE), min_size=4, max_size=4))
def test_itid17_round_trip(values: list[int]) -> None:
    data = b"\x49\x17\x01" + b"".join(v.to_bytes(4, "big") for v in values)
    result = infotypes.decode_obfcm_itid17(data)
    assert result.recent_distance_km == values[0] / 10
    assert result.lifetime_distance_km == values[1] / 10
    assert result.recent_fuel_l == values[2] / 100
    assert result.lifetime_fuel_l == values[3] / 100
    assert result.lifetime_fuel_l is not None
    assert round(result.lifetime_fuel_l, 2) == result.lifetime_fuel_l
    assert result.raw_hex == data.hex().upper()
