"""The virtual car on a python-can bus: real CAN frames, real ISO-TP, real timing.

The CAN adapter is tested against this network instead of a mock: ECUs that answer functional and
physical requests with single and multi-frame ISO-TP messages, wait for the tester's flow control, take
their configured response time, and space out ``7F xx 78`` interim answers. The answers themselves come
from :meth:`adapters.sim.car.VirtualCar.respond`, so the ELM327 emulator and this network simulate the
same car.

Licence: python-can is LGPL-3.0-only. It is imported only here and in ``adapters/can_isotp.py``.

Threads: python-can's ``Notifier`` reads the network's one bus connection and hands every frame to the
ECU it is addressed to; each ECU runs one thread that drives its can-isotp stack (sans-I/O
``TransportLayerLogic``) and sends its answers when they are due. A functional request is decoded
once, in the notifier thread, so the car answers it once -- a Service 04 clears once, not once per
ECU. :meth:`VirtualCanNetwork.stop` joins every thread.

Run a car for another process (a CAN interface, or udp_multicast on a network that carries it;
udp_multicast needs python-can's ``multicast`` extra, msgpack)::

    python -m adapters.sim.can_network petrol --interface udp_multicast --channel 239.74.163.2
"""

from __future__ import annotations

import argparse
import logging
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self

import can
import isotp

from adapters.can_isotp import FUNCTIONAL_ID_11, FUNCTIONAL_ID_29, can_error_sentence, open_error
from adapters.errors import AdapterError, AdapterSpecError
from adapters.sim.car import VirtualCar, VirtualEcu
from adapters.sim.scenario import load_scenario
from adapters.sim.uds import validate_uds

__all__ = ["VirtualCanNetwork", "main"]

log = logging.getLogger(__name__)

# ECUs pad with AA (as the Dacia capture shows) -- not the tester's 00, so tests see padding stripped.
_ECU_PADDING = 0xAA
_STOP: Final = object()
_IDLE_WAKE = 0.05


def _stack_params() -> dict[str, Any]:
    return {
        "tx_padding": _ECU_PADDING,
        "stmin": 0,
        "blocksize": 8,  # the tester gets a flow control frame every 8 consecutive frames
        "logger_name": f"{__name__}.isotp",
    }


class _EcuNode:
    """One ECU on the bus: its ISO-TP stack, its queue of answers and the thread that sends them."""

    def __init__(self, network: VirtualCanNetwork, ecu: VirtualEcu, response_s: float) -> None:
        self.network = network
        self.ecu = ecu
        self.response_s = response_s
        self.rx_id = int(ecu.request_address, 16)
        self.tx_id = int(ecu.address, 16)
        self.inbox: queue.Queue[object] = queue.Queue()
        self._frames: deque[isotp.CanMessage] = deque()
        self._outbox: deque[bytes] = deque()
        self._due: float | None = None
        self._sending = False
        mode = (
            isotp.AddressingMode.Normal_29bits
            if network.id_bits == 29
            else isotp.AddressingMode.Normal_11bits
        )
        self._stack = isotp.TransportLayerLogic(
            rxfn=self._next_frame,
            txfn=network.send_frame,
            address=isotp.Address(mode, txid=self.tx_id, rxid=self.rx_id),
            params=_stack_params(),
        )
        self.thread = threading.Thread(target=self._run, name=f"sim-ecu-{ecu.address}", daemon=False)

    def _next_frame(self, timeout: float) -> isotp.CanMessage | None:
        return self._frames.popleft() if self._frames else None

    def _run(self) -> None:
        while True:
            try:
                item: object | None = self.inbox.get(timeout=self._wait_time())
            except queue.Empty:
                item = None
            while item is not None:
                if item is _STOP:
                    return
                if isinstance(item, isotp.CanMessage):
                    self._frames.append(item)
                elif isinstance(item, list):
                    self._schedule(item)
                try:
                    item = self.inbox.get_nowait()
                except queue.Empty:
                    item = None
            try:
                self._step()
            except Exception as exc:  # keep the ECU alive; the test sees the error in network.errors
                log.exception("virtual ECU %s failed", self.ecu.address)
                self.network.errors.append(exc)

    def _wait_time(self) -> float | None:
        if self._stack.transmitting() or self._stack.is_rx_active():
            delay = self._stack.next_cf_delay()
            return 0.002 if delay is None else max(delay, 0.0)
        if self._outbox and self._due is not None:
            return max(self._due - time.monotonic(), 0.0)
        return None

    def _step(self) -> None:
        self._stack.process()
        while self._stack.available():
            request = self._stack.recv()
            if request is not None:
                self._schedule(self.network.respond(bytes(request), self.ecu))
        self._send_due()

    def _schedule(self, messages: list[bytes]) -> None:
        if not messages:
            return
        self._outbox.extend(messages)
        if self._due is None:
            self._due = time.monotonic() + self.response_s

    def _send_due(self) -> None:
        if self._stack.transmitting():
            return
        if self._sending:  # the last answer has gone out completely: the next one takes its time
            self._sending = False
            self._due = time.monotonic() + self.response_s if self._outbox else None
        if not self._outbox or self._due is None or time.monotonic() < self._due:
            return
        self._stack.send(self._outbox.popleft())
        self._sending = True
        self._stack.process()
        if not self._stack.transmitting():
            self._sending = False
            self._due = time.monotonic() + self.response_s if self._outbox else None


class VirtualCanNetwork:
    """A :class:`VirtualCar` answering on a python-can bus.

    :param car: the car whose ECUs answer.
    :param channel: the python-can channel; the tester opens the same one (unique per test).
    :param interface: ``virtual`` (in-process) or any python-can interface, e.g. ``udp_multicast``.
    :param response_ms: each ECU's response time when its scenario entry names none; default: the
        scenario's ``timing.ecu_response_ms``. Interim ``7F xx 78`` answers are spaced by it too.
    :param bus_options: interface-specific python-can arguments (``port`` for udp_multicast).
    :param bus_factory: builds the bus (``can.Bus`` by default).
    :raises AdapterSpecError: when the car does not speak CAN.
    :raises adapters.sim.scenario.ScenarioError: when an ``[ecus.uds]`` table is malformed.
    """

    def __init__(
        self,
        car: VirtualCar,
        channel: str = "bay1",
        *,
        interface: str = "virtual",
        response_ms: float | None = None,
        bus_options: Mapping[str, Any] | None = None,
        bus_factory: Callable[..., can.BusABC] | None = None,
    ) -> None:
        scenario = car.scenario
        if not scenario.is_can:
            raise AdapterSpecError(
                f"scenario {scenario.name!r} uses protocol {scenario.protocol}, which is not CAN"
            )
        validate_uds(scenario)
        self.car = car
        self.channel = channel
        self.interface = interface
        self.id_bits = 29 if scenario.is_29bit else 11
        self.functional_id = FUNCTIONAL_ID_29 if self.id_bits == 29 else FUNCTIONAL_ID_11
        self.errors: list[BaseException] = []
        self._response_ms = response_ms
        self._bus_options = dict(bus_options or {})
        self._bus_factory = bus_factory or can.Bus
        self._bus: can.BusABC | None = None
        self._notifier: can.Notifier | None = None
        self._nodes: dict[int, _EcuNode] = {}
        self._car_lock = threading.Lock()
        self._functional_frames: deque[isotp.CanMessage] = deque()
        self._functional: isotp.TransportLayerLogic | None = None

    def response_s(self, ecu: VirtualEcu) -> float:
        """The ECU's response time in seconds (its own, else the network's, else the scenario's)."""
        if ecu.spec.response_ms is not None:
            return ecu.spec.response_ms / 1000
        if self._response_ms is not None:
            return self._response_ms / 1000
        return self.car.scenario.ecu_response_ms / 1000

    def start(self) -> Self:
        """Connect to the bus and start answering.

        :raises AdapterUnavailableError: when the interface cannot be opened.
        """
        if self._bus is not None:
            return self
        try:
            self._bus = self._bus_factory(interface=self.interface, channel=self.channel, **self._bus_options)
        except Exception as exc:  # drivers raise anything
            raise open_error(self.interface, f"{self.interface}:{self.channel}", exc) from exc
        mode = (
            isotp.AddressingMode.Normal_29bits if self.id_bits == 29 else isotp.AddressingMode.Normal_11bits
        )
        # Functional requests are single frames and get no flow control: the decoder listens only,
        # its transmit ID is never used.
        never_used = 0x18DAF100 if self.id_bits == 29 else 0x7E8
        self._functional = isotp.TransportLayerLogic(
            rxfn=lambda timeout: self._functional_frames.popleft() if self._functional_frames else None,
            txfn=self.send_frame,
            address=isotp.Address(mode, txid=never_used, rxid=self.functional_id),
            params={"listen_mode": True, "logger_name": f"{__name__}.isotp"},
        )
        for ecu in self.car.ecus:
            if ecu.spec.silent:
                continue  # an ECU that never answers is not on this bus at all
            node = _EcuNode(self, ecu, self.response_s(ecu))
            self._nodes[node.rx_id] = node
        for node in self._nodes.values():
            node.thread.start()
        self._notifier = can.Notifier(self._bus, [self._on_frame], timeout=0.02)
        log.info(
            "virtual car %r on %s:%s (%d-bit), ECUs %s",
            self.car.scenario.name,
            self.interface,
            self.channel,
            self.id_bits,
            ", ".join(n.ecu.address for n in self._nodes.values()),
        )
        return self

    def stop(self) -> None:
        """Stop answering, join every thread, release the bus. Idempotent; never raises."""
        if self._notifier is not None:
            self._notifier.stop(timeout=2.0)
            self._notifier = None
        for node in self._nodes.values():
            node.inbox.put(_STOP)
        for node in self._nodes.values():
            if node.thread.is_alive():
                node.thread.join(timeout=2.0)
        self._nodes.clear()
        bus, self._bus = self._bus, None
        if bus is not None:
            try:
                bus.shutdown()
            except Exception as exc:
                log.warning("closing the virtual network's bus failed: %s", can_error_sentence(exc))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def respond(self, data: bytes, ecu: VirtualEcu) -> list[bytes]:
        """What ``ecu`` answers to a physical request (functional ones: :meth:`_functional_request`)."""
        with self._car_lock:
            answers = self.car.respond(data, ecu.request_address)
        return [m for a in answers if a.ecu is ecu for m in a.messages]

    def send_frame(self, frame: isotp.CanMessage) -> None:
        """Put one frame on the bus (called by the ECUs' stacks)."""
        bus = self._bus
        if bus is None:
            return
        message = can.Message(
            arbitration_id=frame.arbitration_id,
            data=bytes(frame.data),
            is_extended_id=frame.is_extended_id,
        )
        try:
            bus.send(message)
        except can.CanError as exc:
            if self._bus is not None:  # a bus closed under a sender while stopping is expected
                log.warning("virtual ECU could not send: %s", can_error_sentence(exc))

    def _on_frame(self, message: can.Message) -> None:
        """Notifier callback: hand a frame to the ECU it is addressed to."""
        if message.is_error_frame or message.is_remote_frame:
            return
        if bool(message.is_extended_id) != (self.id_bits == 29):
            return
        frame = isotp.CanMessage(
            arbitration_id=message.arbitration_id,
            dlc=len(message.data),
            data=bytes(message.data),
            extended_id=bool(message.is_extended_id),
        )
        try:
            if message.arbitration_id == self.functional_id:
                self._functional_frames.append(frame)
                self._functional_request()
            elif (node := self._nodes.get(message.arbitration_id)) is not None:
                node.inbox.put(frame)
        except Exception as exc:  # an exception would end python-can's notifier thread
            log.exception("virtual network failed on a frame")
            self.errors.append(exc)

    def _functional_request(self) -> None:
        """Decode a functional request and let the car answer it once; each ECU sends its own part."""
        assert self._functional is not None
        self._functional.process()
        while self._functional.available():
            request = self._functional.recv()
            if request is None:
                continue
            with self._car_lock:
                answers = self.car.respond(bytes(request), None)
            for answer in answers:
                node = self._nodes.get(int(answer.ecu.request_address, 16))
                if node is not None:
                    node.inbox.put(list(answer.messages))


def main(argv: Sequence[str] | None = None) -> int:
    """Run a scenario's car on a bus until standard input closes or Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m adapters.sim.can_network", description=main.__doc__)
    parser.add_argument("scenario", help="scenario name (petrol, uds, ...) or path to a .toml file")
    parser.add_argument("--interface", default="virtual", help="python-can interface (default: virtual)")
    parser.add_argument("--channel", default="bay1", help="python-can channel (default: bay1)")
    parser.add_argument("--port", type=int, help="UDP port for udp_multicast")
    parser.add_argument("--response-ms", type=float, help="ECU response time when the scenario names none")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    options = {"port": args.port} if args.port is not None else {}
    try:
        car = VirtualCar(load_scenario(args.scenario))
        network = VirtualCanNetwork(
            car, args.channel, interface=args.interface, response_ms=args.response_ms, bus_options=options
        )
        network.start()
    except AdapterError as exc:
        log.error("%s", exc)
        return 1
    log.info("ready")
    try:
        while sys.stdin.readline():
            pass
    except KeyboardInterrupt:
        pass
    finally:
        network.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
