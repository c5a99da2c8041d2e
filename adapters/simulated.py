"""The built-in virtual car as an adapter: ``sim:SCENARIO`` and ``simcan:SCENARIO``.

``sim:`` puts the car behind the ELM327 emulator on a real pseudo-terminal (or loopback TCP) and
talks to it with the real ELM327 adapter, so a demo or a test exercises the same code a workshop
runs against a USB adapter. ``simcan:`` does the same on python-can's virtual bus with the real
ISO-TP stack. Options come from the spec's query string::

    sim:petrol?engine=on           the engine runs (clearing fault memory is refused)
    sim:petrol?link=tcp            TCP instead of a pseudo-terminal
    sim:petrol?realtime=1          pace bytes at 38400 baud and add ECU response times
    sim:petrol?baud=9600&ecu_ms=50 the same with other figures
    sim:petrol?disconnect_after=8  fault injection: any field of EmulatorFaults
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Protocol

from adapters.base import Adapter, EcuReply, LinkInfo
from adapters.errors import AdapterSpecError
from adapters.sim.car import VirtualCar
from adapters.sim.scenario import load_scenario

if TYPE_CHECKING:
    from adapters.sim.elm327 import EmulatorFaults
    from adapters.trace import TraceWriter

__all__ = ["SimulatedCanAdapter", "SimulatedElmAdapter"]

_channels = itertools.count(1)


class _Stoppable(Protocol):
    def stop(self) -> None: ...


def _flag(name: str, value: str | None) -> bool:
    if value is None:
        return False
    lowered = value.lower()
    if lowered in ("1", "on", "yes", "true", "running"):
        return True
    if lowered in ("0", "off", "no", "false", "stopped", ""):
        return False
    raise AdapterSpecError(f"sim option {name}={value!r}: use on or off")


def _number(name: str, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise AdapterSpecError(f"sim option {name}={value!r} is not a number") from None


def _car(scenario: str, engine: str | None) -> VirtualCar:
    car = VirtualCar(load_scenario(scenario))
    if _flag("engine", engine):
        car.start_engine()
    return car


def _faults(options: dict[str, str]) -> EmulatorFaults:
    """Fault injection from the spec: ``disconnect_after=8``, ``garbage=on`` ... (see EmulatorFaults)."""
    from adapters.sim.elm327 import EmulatorFaults

    known = {f.name: f for f in fields(EmulatorFaults)}
    faults = EmulatorFaults()
    for name, value in options.items():
        if name not in known:
            raise AdapterSpecError(
                f"unknown sim option {name!r}"
                f" (known: engine, link, realtime, baud, ecu_ms, {', '.join(known)})"
            )
        if name.endswith("_after"):
            number = _number(name, value)
            if number is None or number < 0 or number != int(number):
                raise AdapterSpecError(f"sim option {name}={value!r} must be a whole number")
            setattr(faults, name, int(number))
        else:
            setattr(faults, name, _flag(name, value))
    return faults


class _SimulatedBase(Adapter):
    """A simulator backend (emulator server or virtual ECU network) plus the real adapter in front of it."""

    def __init__(self) -> None:
        super().__init__()
        self._backend: _Stoppable | None = None
        self._inner: Adapter | None = None

    def request(
        self, data: bytes, *, ecu: str | None = None, expect: int | None = None, timeout: float | None = None
    ) -> list[EcuReply]:
        """Through the real adapter code, exactly as over a workshop's own interface."""
        if self._inner is None:
            raise RuntimeError("adapter is not open")
        return self._inner.request(data, ecu=ecu, expect=expect, timeout=timeout)

    def close(self) -> None:
        """Close the adapter, then stop the simulator behind it."""
        if self._inner is not None:
            self._inner.close()
            self._inner = None
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.stop()


class SimulatedElmAdapter(_SimulatedBase):
    """A virtual car behind an emulated ELM327, reached through the real ELM327 adapter code."""

    def __init__(
        self,
        scenario: str,
        /,
        *,
        engine: str | None = None,
        link: str = "pty",
        realtime: str | None = None,
        baud: str | None = None,
        ecu_ms: str | None = None,
        **fault_options: str,
    ) -> None:
        super().__init__()
        if link not in ("pty", "tcp"):
            raise AdapterSpecError(f"sim option link={link!r}: use pty or tcp")
        from adapters.sim.elm327 import Elm327Emulator, TimingModel

        faults = _faults(fault_options)

        self.car = _car(scenario, engine)
        baud_rate, response = _number("baud", baud), _number("ecu_ms", ecu_ms)
        timing = None
        if _flag("realtime", realtime) or baud_rate or response is not None:
            timing = TimingModel(
                baud=int(baud_rate or 38400),
                ecu_response_ms=20 if response is None else response,
                enabled=True,
            )
        self.emulator = Elm327Emulator(self.car, timing=timing, faults=faults)
        self._link_kind = link
        self._trace: TraceWriter | None = None

    def trace_to(self, writer: TraceWriter) -> None:
        """Write the raw traffic between the ELM327 driver and the emulated adapter to ``writer``."""
        self._trace = writer

    def open(self) -> LinkInfo:
        """Start the emulator's pty (or TCP port) and connect the ELM327 adapter to it. Idempotent."""
        from adapters.elm327 import Elm327Adapter
        from adapters.link import Link, SerialLink, TcpLink
        from adapters.sim.server import PtyServer, TcpServer

        if self._inner is not None and self._info is not None:
            return self._info
        self.close()
        factory: Callable[[], Link]
        if self._link_kind == "tcp":
            tcp = TcpServer(self.emulator)
            tcp.start()
            self._backend = tcp
            factory = TcpLink(tcp.host, tcp.port).open
        else:
            pty = PtyServer(self.emulator)
            pty.start()
            self._backend = pty
            factory = SerialLink(pty.path).open
        if self._trace is not None:
            from adapters.trace import traced_factory

            factory = traced_factory(factory, self._trace)
        inner = Elm327Adapter(factory, default_timeout=2.0, link_margin=1.0)
        inner.stats = self.stats
        self._inner = inner
        found = inner.open()
        # Everything the real driver found (protocol, probe answers ...) is passed on as it is.
        self._info = replace(
            found,
            kind="sim",
            description=f"virtual car '{self.car.scenario.name}' behind {found.description}",
        )
        return self._info


class SimulatedCanAdapter(_SimulatedBase):
    """A virtual ECU network on python-can's virtual bus, reached through the real CAN adapter."""

    def __init__(
        self, scenario: str, /, *, engine: str | None = None, ecu_ms: str | None = None, **unknown: str
    ) -> None:
        super().__init__()
        if unknown:
            raise AdapterSpecError(f"unknown simcan option(s): {', '.join(unknown)} (known: engine, ecu_ms)")
        self.car = _car(scenario, engine)
        if not self.car.scenario.is_can:
            raise AdapterSpecError(f"scenario {scenario!r} is not a CAN car; use sim:{scenario}")
        self._ecu_ms = _number("ecu_ms", ecu_ms)
        self._channel = f"simcan-{os.getpid()}-{next(_channels)}"

    def open(self) -> LinkInfo:
        """Start the virtual ECUs, then open the CAN adapter on the same virtual channel. Idempotent."""
        from adapters.can_isotp import CanAdapter
        from adapters.sim.can_network import VirtualCanNetwork

        if self._inner is not None and self._info is not None:
            return self._info
        self.close()
        network = VirtualCanNetwork(self.car, self._channel, response_ms=self._ecu_ms)
        network.start()
        self._backend = network
        inner = CanAdapter("virtual", self._channel, id_bits=29 if self.car.scenario.is_29bit else 11)
        inner.stats = self.stats
        self._inner = inner
        found = inner.open()
        self._info = LinkInfo(
            "simcan",
            f"virtual CAN bus {self._channel} (virtual car '{self.car.scenario.name}')",
            found.protocol,
            found.protocol_id,
            True,
        )
        return self._info
