"""Checks against a real ELM327 in a real car: the assumptions the scripted adapter cannot prove.

Run with ``OBDTOOL_HW_PORT=/dev/ttyUSB0 pytest -m hardware tests/elm`` (or ``tcp://192.168.0.10:35000``),
ignition on, engine off. Nothing here writes to the car: only Service 01 and 09 reads.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

from adapters.elm327 import ProtocolMemory, open_elm327
from adapters.errors import LinkTimeoutError

PORT = os.environ.get("OBDTOOL_HW_PORT", "")

pytestmark = [
    pytest.mark.hardware,
    pytest.mark.skipif(not PORT, reason="set OBDTOOL_HW_PORT to a real ELM327 to run these"),
]


def test_connects_and_reads_the_supported_pids(tmp_path: Path) -> None:
    memory = ProtocolMemory(tmp_path / "protocols.json")
    with open_elm327(PORT, remember=memory) as adapter:
        info = adapter.info
        replies = adapter.request(b"\x01\x00")
    assert info.kind == "elm327"
    assert replies
    assert all(reply.data[:2] == b"\x41\x00" and len(reply.data) == 6 for reply in replies)
    started = time.monotonic()
    with open_elm327(PORT, remember=memory) as adapter:  # the second connect skips the search
        assert adapter.info.protocol_id == info.protocol_id
    assert time.monotonic() - started < 5


def test_physical_addressing_and_count_digit() -> None:
    with open_elm327(PORT) as adapter:
        if not adapter.info.is_can:
            pytest.skip("physical addressing is CAN only")
        [first, *_] = adapter.request(b"\x01\x00")
        started = time.monotonic()
        replies = adapter.request(b"\x01\x00", ecu=first.ecu, expect=1)
        elapsed = time.monotonic() - started
        assert [reply.ecu for reply in replies] == [first.ecu]
        assert elapsed < 0.5  # the count digit ended the wait early
        assert adapter.request(b"\x01\x00")  # back to functional addressing


def test_vin_multiframe() -> None:
    with open_elm327(PORT) as adapter:
        replies = adapter.request(b"\x09\x02")
    vins = [reply.data[3:].strip(b"\x00").decode("ascii", "replace") for reply in replies]
    assert any(len(vin) == 17 for vin in vins), vins


def test_timeout_recovery_leaves_the_adapter_usable() -> None:
    with open_elm327(PORT, link_margin=0.05) as adapter:
        with contextlib.suppress(LinkTimeoutError):
            adapter.request(b"\x09\x02", timeout=0.004)  # too short for a multi-frame answer on purpose
        assert adapter.request(b"\x01\x00")
