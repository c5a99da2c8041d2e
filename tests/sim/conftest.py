"""Shared fixtures for the simulator tests: a thread-leak guard and emulator factories."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from adapters.sim.car import VirtualCar
from adapters.sim.elm327 import Elm327Emulator, EmulatorFaults, TimingModel
from adapters.sim.scenario import load_scenario

MakeEmulator = Callable[..., Elm327Emulator]


@pytest.fixture(autouse=True)
def no_thread_leak() -> Iterator[None]:
    """Every server a test starts must be stopped, its thread joined, by the end of the test."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 1.0
    leaked = [t for t in threading.enumerate() if t not in before]
    while leaked and time.monotonic() < deadline:
        leaked[0].join(0.05)
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"


@pytest.fixture
def make_emulator() -> MakeEmulator:
    """``make_emulator("petrol", timing=..., faults=...)`` -> an emulator in front of a fresh car."""

    def make(
        scenario: str = "petrol",
        *,
        timing: TimingModel | None = None,
        faults: EmulatorFaults | None = None,
    ) -> Elm327Emulator:
        return Elm327Emulator(VirtualCar(load_scenario(scenario)), timing=timing, faults=faults)

    return make
