"""The virtual car as an adapter at the service-bytes level, without any link framing.

Workflow tests use it to exercise the read-out, consent and clear logic in milliseconds; the
ELM327 and CAN simulators cover the framing. Legacy (K-line/J1850) cars answer one message per
frame here too, as the contract says, so the workflows see the same shapes as over an ELM327.
"""

from __future__ import annotations

from adapters.base import Adapter, EcuReply, LinkInfo
from adapters.sim.car import VirtualCar
from adapters.sim.scenario import PROTOCOL_NAMES

__all__ = ["DirectCarAdapter"]


class DirectCarAdapter(Adapter):
    """Hands requests straight to a ``VirtualCar``; ``7F xx 78`` interim answers are absorbed."""

    def __init__(self, car: VirtualCar) -> None:
        super().__init__()
        self.car = car
        self.closed = False

    def open(self) -> LinkInfo:
        """Nothing to reach; report the scenario's protocol."""
        s = self.car.scenario
        name = PROTOCOL_NAMES[s.protocol]
        self._info = LinkInfo("sim", f"virtual car '{s.name}'", name, s.protocol, s.is_can)
        self.closed = False
        return self._info

    def close(self) -> None:
        """Nothing to release."""
        self.closed = True

    def request(
        self, data: bytes, *, ecu: str | None = None, expect: int | None = None, timeout: float | None = None
    ) -> list[EcuReply]:
        """Ask the car; interim response-pending answers are dropped as a real transport would."""
        self.stats.count_request(data)
        self.stats.bytes_out += len(data)
        replies: list[EcuReply] = []
        target = None
        if ecu is not None:
            found = self.car.ecu(ecu)
            target = found.request_address if found else f"no-ecu-{ecu}"
        for answer in self.car.respond(data, target):
            for message in answer.messages:
                if len(message) == 3 and message[0] == 0x7F and message[2] == 0x78:
                    continue
                replies.append(EcuReply(answer.ecu.address, message))
                self.stats.bytes_in += len(message)
        return replies
