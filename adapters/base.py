"""The one contract between obdtool and every way of reaching a car.

obdtool speaks in *service bytes* (``01 0C``, ``09 02``, ``19 02 FF``); how those bytes travel -- ELM327
text over serial or TCP, ISO-TP over a CAN interface, a simulator, a recorded trace -- is an adapter's
business. Keeping the contract this small means the read-out, consent and clear workflows never change
when a new kind of adapter appears, and every adapter is tested the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

__all__ = ["Adapter", "AdapterStats", "EcuReply", "LinkInfo"]


@dataclass(frozen=True, slots=True)
class EcuReply:
    """One complete message from one ECU, transport framing removed.

    ``ecu`` is the responder's address as the bus shows it: ``"7E8"`` (11-bit CAN), ``"18DAF110"``
    (29-bit CAN) or the source byte ``"10"`` on K-line/J1850. ``data`` starts with the response
    service id (``41``, ``49``, ``7F`` ...). On K-line/J1850 a multi-line answer arrives as one reply
    per frame, in arrival order; on CAN, ISO-TP is already reassembled into one reply.
    """

    ecu: str
    data: bytes


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """What the adapter found when it opened: for the record and for the technician.

    ``probe_replies`` are the ECUs' answers to the ``01 00`` an adapter sends while opening to prove
    the car is there (empty when it sent none or could not read them). Every OBD ECU must answer
    ``01 00``, so these answers already say which ECUs exist and which PIDs 01..20 they have: the
    read-out starts from them instead of asking the same question again.
    """

    kind: str
    description: str
    protocol: str
    protocol_id: str
    is_can: bool
    probe_replies: tuple[EcuReply, ...] = field(default=(), repr=False, compare=False)


@dataclass(slots=True)
class AdapterStats:
    """Counters of what crossed the link: the benchmark reads them, nothing depends on them."""

    requests: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    per_service: dict[int, int] = field(default_factory=dict)

    def count_request(self, data: bytes) -> None:
        """Count one request to the car (adapter commands are not counted)."""
        self.requests += 1
        if data:
            self.per_service[data[0]] = self.per_service.get(data[0], 0) + 1


class Adapter(ABC):
    """A diagnostic link to one vehicle. Use it as a context manager.

    Subclasses translate their lower library's exceptions into ``adapters.errors`` at the boundary:
    nothing else escapes ``open``, ``request`` or ``close``.
    """

    def __init__(self) -> None:
        self.stats = AdapterStats()
        self._info: LinkInfo | None = None

    @property
    def info(self) -> LinkInfo:
        """The link as found by ``open``.

        :raises RuntimeError: when the adapter is not open.
        """
        if self._info is None:
            raise RuntimeError("adapter is not open")
        return self._info

    @abstractmethod
    def open(self) -> LinkInfo:
        """Reach the adapter and the car's bus; remember what was found.

        :raises adapters.errors.AdapterError: when the adapter or the car cannot be reached.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the link. Idempotent; never raises."""

    @abstractmethod
    def request(
        self,
        data: bytes,
        *,
        ecu: str | None = None,
        expect: int | None = None,
        timeout: float | None = None,
    ) -> list[EcuReply]:
        """Send one request to the car and collect the answers.

        :param data: the service bytes, e.g. ``b"\\x09\\x02"``.
        :param ecu: ``None`` for a functional request that every ECU may answer; otherwise the
            address an ECU answers from (``"7E8"``), and the request goes to that ECU alone.
        :param expect: how many CAN frames the replies take in all (a reply of up to 7 data bytes is
            one frame, a longer one a first frame plus one per further 7 bytes); lets the adapter stop
            listening as soon as they are in instead of waiting out its timeout. ``None`` = unknown.
            An ELM327 counts frames and stops at the count, cutting off whatever comes later: pass it
            only when the replies' lengths are known, and treat a framing error, or an expected ECU
            missing once the count was met, as a count too low (ask again without one). Adapters that
            receive whole replies may count replies instead, never more than the frames.
        :param timeout: the longest to wait for the first answer, in seconds; ``None`` = adapter default.
        :returns: every complete reply, in arrival order; empty when nobody answered (NO DATA).
            A "response pending" (``7F xx 78``) is not returned: the adapter keeps waiting instead.
        :raises adapters.errors.AdapterError: on a broken link or an adapter-reported bus failure.
        """

    def __enter__(self) -> Self:
        try:
            self.open()
        except BaseException:
            self.close()  # a half-open adapter (a started simulator, an open port) is released
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
