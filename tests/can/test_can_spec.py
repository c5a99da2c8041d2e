"""Adapter strings, ECU addresses and the translation of python-can's errors (no car needed)."""

from __future__ import annotations

import ctypes.util
import errno
from typing import Any

import can
import pytest

from adapters.can_isotp import (
    CanAdapter,
    CanSpec,
    open_can,
    parse_can_spec,
    parse_ecu_address,
    translate_can_errors,
)
from adapters.errors import AdapterSpecError, AdapterUnavailableError, CanBusError, LinkError


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("can:socketcan:can0", CanSpec("socketcan", "can0")),
        ("can:pcan:PCAN_USBBUS1?bitrate=250000", CanSpec("pcan", "PCAN_USBBUS1", 250_000)),
        (
            "can:slcan:/dev/ttyACM0?bitrate=500k&tty_baudrate=115200",
            CanSpec("slcan", "/dev/ttyACM0", 500_000, None, {"tty_baudrate": 115200}),
        ),
        ("can:kvaser:0?id_bits=29", CanSpec("kvaser", "0", 500_000, 29)),
        ("can:vector:0?id_bits=auto", CanSpec("vector", "0")),
        ("CAN:Virtual:bay1", CanSpec("virtual", "bay1")),
        (
            "can:udp_multicast:239.0.0.1?port=43200",
            CanSpec("udp_multicast", "239.0.0.1", bus_options={"port": 43200}),
        ),
        (
            "can:udp_multicast:ff15:7079:7468:6f6e:6465:6d6f:6d63:6173",
            CanSpec("udp_multicast", "ff15:7079:7468:6f6e:6465:6d6f:6d63:6173"),
        ),
    ],
)
def test_specs_parse(spec: str, expected: CanSpec) -> None:
    assert parse_can_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("can0", "not a CAN adapter string"),
        ("can:socketcan", "not a CAN adapter string"),
        ("can::can0", "names no interface"),
        ("can:socketcan:", "names no channel"),
        ("can:peak:PCAN_USBBUS1", "no interface called 'peak'"),
        ("can:pcan:PCAN_USBBUS1?bitrate=125000", "not an OBD bitrate"),
        ("can:pcan:PCAN_USBBUS1?bitrate=fast", "not a whole number"),
        ("can:pcan:PCAN_USBBUS1?id_bits=16", "not 11, 29 or auto"),
        ("can:pcan:PCAN_USBBUS1?baud=500k", "unknown option 'baud'"),
        ("can:pcan:PCAN_USBBUS1?bitrate=", "has no value"),
        ("can:pcan:PCAN_USBBUS1?bitrate", "cannot read the options"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(AdapterSpecError, match=message):
        parse_can_spec(spec)


def test_open_can_builds_without_opening() -> None:
    made: list[dict[str, Any]] = []

    def factory(**kw: Any) -> can.BusABC:
        made.append(kw)
        raise AssertionError("not called")

    adapter = open_can("can:virtual:bay9?bitrate=250k&id_bits=11", bus_factory=factory, p2=0.1)
    assert isinstance(adapter, CanAdapter)
    assert (adapter.interface, adapter.channel, adapter.bitrate, adapter.id_bits, adapter.p2) == (
        "virtual",
        "bay9",
        250_000,
        11,
        0.1,
    )
    assert made == []


def test_spec_options_reach_python_can() -> None:
    made: list[dict[str, Any]] = []

    def factory(**kw: Any) -> can.BusABC:
        made.append(kw)
        raise can.CanInitializationError("no such port")

    with pytest.raises(AdapterUnavailableError):
        open_can("can:slcan:/dev/ttyACM9?tty_baudrate=115200", bus_factory=factory).open()
    assert made[0]["tty_baudrate"] == 115200
    assert made[0]["channel"] == "/dev/ttyACM9"
    assert made[0]["bitrate"] == 500_000


@pytest.mark.parametrize(
    ("address", "rx", "tx"),
    [
        ("7E8", 0x7E8, 0x7E0),
        ("7ef", 0x7EF, 0x7E7),
        ("74F", 0x74F, 0x747),
        ("18DAF110", 0x18DAF110, 0x18DA10F1),
        ("18daf1c3", 0x18DAF1C3, 0x18DAC3F1),
    ],
)
def test_ecu_addresses(address: str, rx: int, tx: int) -> None:
    parsed = parse_ecu_address(address)
    assert (parsed.rx_id, parsed.tx_id, parsed.extended) == (rx, tx, len(address) == 8)


@pytest.mark.parametrize(
    ("address", "message"),
    [("7E0", "7E8"), ("7DF", "request address"), ("18DA10F1", "18DAF110"), ("ECM", "not an ECU address")],
)
def test_bad_ecu_addresses(address: str, message: str) -> None:
    with pytest.raises(AdapterSpecError, match=message):
        parse_ecu_address(address)


def test_adapter_rejects_non_obd_bitrates() -> None:
    with pytest.raises(AdapterSpecError, match="500k or 250k"):
        CanAdapter("virtual", "x", bitrate=1_000_000)


@pytest.mark.parametrize(
    ("raised", "words"),
    [
        (
            can.CanInterfaceNotImplementedError("The Vector interface is only supported on Windows"),
            "only supported on Windows",
        ),
        (OSError("pcanbasic library not found."), "PCAN-Basic"),
        (OSError(errno.ENODEV, "No such device"), "there is no CAN interface"),
        (NameError("name 'canGetNumberOfChannels' is not defined"), "NameError"),
    ],
)
def test_driver_failures_become_unavailable_with_advice(raised: Exception, words: str) -> None:
    interface = "pcan" if "pcan" in str(raised) else "vector"

    def factory(**kw: Any) -> can.BusABC:
        raise raised

    adapter = CanAdapter(interface, "0", bus_factory=factory)
    with pytest.raises(AdapterUnavailableError, match=words) as caught:
        adapter.open()
    assert caught.value.__cause__ is raised


@pytest.mark.skipif(ctypes.util.find_library("pcanbasic") is not None, reason="PEAK's driver is installed")
def test_real_driver_missing_here_is_unavailable() -> None:
    # Without PEAK's driver python-can raises a bare OSError; the technician gets a sentence.
    with pytest.raises(AdapterUnavailableError, match=r"can:pcan:PCAN_USBBUS1.*PCAN-Basic"):
        CanAdapter("pcan", "PCAN_USBBUS1").open()


def test_errors_while_in_use() -> None:
    with pytest.raises(CanBusError, match="not acknowledged"), translate_can_errors("can:socketcan:can0"):
        raise can.CanOperationError("Failed to transmit: [Errno 105] No buffer space available")
    with pytest.raises(LinkError, match="can:pcan:1 failed: bus is off"), translate_can_errors("can:pcan:1"):
        raise can.CanOperationError("bus is off")
    with pytest.raises(LinkError), translate_can_errors("x"):
        raise OSError(errno.ENETDOWN, "Network is down")
