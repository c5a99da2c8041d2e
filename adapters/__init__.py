"""How bytes reach the car: ELM327 over serial/TCP, python-can + ISO-TP, simulators, trace replay.

``open_adapter(spec)`` is the single entry point; backends are imported only when chosen, so a
missing optional driver (or python-can's import time) never slows down or breaks the others.

Adapter strings::

    /dev/ttyUSB0, /dev/rfcomm0, COM3      ELM327 on a serial port (baud rate detected)
    tcp://192.168.0.10:35000              ELM327 over WiFi/TCP
    can:INTERFACE:CHANNEL[?bitrate=N]     raw CAN through python-can (socketcan, pcan, slcan, virtual ...)
    sim:SCENARIO[?engine=on&realtime=1]   built-in virtual car behind an emulated ELM327 on a pty
    simcan:SCENARIO                       built-in virtual ECU network on python-can's virtual bus
    replay:FILE[?protocol=6]              a trace (``--trace``) or an ELM327 terminal log played back

``open_adapter(spec, trace=FILE)`` writes the raw adapter traffic of an ELM327 (serial, TCP, ``sim:``,
``replay:``) to a trace file, see :mod:`adapters.trace`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from adapters.base import Adapter
from adapters.errors import AdapterSpecError

if TYPE_CHECKING:
    from adapters.trace import TraceWriter

__all__ = ["open_adapter", "split_spec"]


def split_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``sim:petrol?engine=on`` -> (``sim:petrol``, ``{"engine": "on"}``)."""
    head, _, query = spec.partition("?")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError as exc:
        raise AdapterSpecError(f"cannot read the options in adapter {spec!r}: {exc}") from exc
    return head, options


def open_adapter(spec: str, *, trace: str | os.PathLike[str] | None = None) -> Adapter:
    """Build (but do not open) the adapter an ``--adapter`` string names.

    :param trace: write the raw traffic between obdtool and an ELM327 to this file (see
        :mod:`adapters.trace`); replay it later with ``replay:FILE``.
    :raises AdapterSpecError: for a string that names no known kind of adapter, or a trace asked of an
        adapter that cannot be traced (CAN).
    """
    spec = spec.strip()
    head, options = split_spec(spec)
    adapter: Adapter
    if head.startswith("sim:"):
        from adapters.simulated import SimulatedElmAdapter

        adapter = SimulatedElmAdapter(head[4:], **options)
        if trace is not None:
            adapter.trace_to(_writer(trace, "sim", spec))
        return adapter
    if head.startswith("replay:"):
        from adapters.replay import ReplayAdapter

        adapter = ReplayAdapter(head[7:], **options)
        if trace is not None:
            adapter.trace_to(_writer(trace, "replay", spec))
        return adapter
    if head.startswith(("simcan:", "can:")):
        if trace is not None:
            raise AdapterSpecError(
                "tracing is not supported for CAN adapters yet (--trace works with ELM327 adapters,"
                " sim: and replay:); python-can's own loggers can record CAN frames"
            )
        if head.startswith("simcan:"):
            from adapters.simulated import SimulatedCanAdapter

            return SimulatedCanAdapter(head[7:], **options)
        from adapters.can_isotp import open_can

        return open_can(spec)
    if head.startswith(("tcp://", "serial://", "/dev/", "COM")):
        from adapters.elm327 import open_elm327
        from adapters.memory import default_protocol_memory

        elm = open_elm327(spec, remember=default_protocol_memory())
        if trace is not None:
            from adapters.trace import trace_elm327

            trace_elm327(elm, _writer(trace, "elm327", spec))
        return elm
    raise AdapterSpecError(
        f"unknown adapter {spec!r}: use a serial port (/dev/ttyUSB0, COM3), tcp://host:port,"
        " can:INTERFACE:CHANNEL, sim:SCENARIO, simcan:SCENARIO or replay:FILE"
    )


def _writer(path: str | os.PathLike[str], kind: str, spec: str) -> TraceWriter:
    from adapters.trace import TraceWriter

    return TraceWriter(path, adapter=kind, spec=spec)
