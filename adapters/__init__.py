"""How bytes reach the car: ELM327 over serial/TCP, python-can + ISO-TP, simulators, trace replay.

``open_adapter(spec)`` is the single entry point; backends are imported only when chosen, so a
missing optional driver (or python-can's import time) never slows down or breaks the others.

Adapter strings::

    /dev/ttyUSB0, /dev/rfcomm0, COM3      ELM327 on a serial port (baud rate detected)
    tcp://192.168.0.10:35000              ELM327 over WiFi/TCP
    can:INTERFACE:CHANNEL[?bitrate=N]     raw CAN through python-can (socketcan, pcan, slcan, virtual ...)
    sim:SCENARIO[?engine=on&realtime=1]   built-in virtual car behind an emulated ELM327 on a pty
    simcan:SCENARIO                       built-in virtual ECU network on python-can's virtual bus
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from adapters.base import Adapter
from adapters.errors import AdapterSpecError

__all__ = ["open_adapter", "split_spec"]


def split_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``sim:petrol?engine=on`` -> (``sim:petrol``, ``{"engine": "on"}``)."""
    head, _, query = spec.partition("?")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError as exc:
        raise AdapterSpecError(f"cannot read the options in adapter {spec!r}: {exc}") from exc
    return head, options


def open_adapter(spec: str) -> Adapter:
    """Build (but do not open) the adapter an ``--adapter`` string names.

    :raises AdapterSpecError: for a string that names no known kind of adapter.
    """
    spec = spec.strip()
    head, options = split_spec(spec)
    if head.startswith("sim:"):
        from adapters.simulated import SimulatedElmAdapter

        return SimulatedElmAdapter(head[4:], **options)
    if head.startswith("simcan:"):
        from adapters.simulated import SimulatedCanAdapter

        return SimulatedCanAdapter(head[7:], **options)
    if head.startswith("can:"):
        from adapters.can_isotp import open_can

        return open_can(spec)
    if head.startswith(("tcp://", "serial://", "/dev/", "COM")):
        from adapters.elm327 import open_elm327
        from adapters.memory import default_protocol_memory

        return open_elm327(spec, remember=default_protocol_memory())
    raise AdapterSpecError(
        f"unknown adapter {spec!r}: use a serial port (/dev/ttyUSB0, COM3), tcp://host:port,"
        " can:INTERFACE:CHANNEL, sim:SCENARIO or simcan:SCENARIO"
    )
