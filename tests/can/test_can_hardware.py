"""Real CAN interface and a real car (or ECU bench): run with OBDTOOL_HW_CAN=can:socketcan:can0 (etc.).

Only reads: 01 00, 09 02 and the UDS identification of the ECUs that answer. Nothing is cleared and no
session other than the default and extended ones is opened.
"""

from __future__ import annotations

import os

import pytest

from adapters.can_isotp import open_can
from obdtool.uds import read_uds_ecu

SPEC = os.environ.get("OBDTOOL_HW_CAN", "")

pytestmark = [
    pytest.mark.hardware,
    pytest.mark.skipif(
        not SPEC, reason="set OBDTOOL_HW_CAN=can:INTERFACE:CHANNEL to test a real CAN interface"
    ),
]


def test_real_interface_opens_and_reads_the_vin() -> None:
    with open_can(SPEC) as adapter:
        assert adapter.info.is_can
        assert adapter.responders
        replies = adapter.request(b"\x09\x02")
        assert all(r.data[:3] == b"\x49\x02\x01" and len(r.data) >= 20 for r in replies)


def test_real_ecus_answer_uds_identification() -> None:
    with open_can(SPEC) as adapter:
        for address in adapter.responders:
            report = read_uds_ecu(adapter, address)
            assert report.address == address
