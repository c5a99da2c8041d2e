"""Cross-process CAN: the virtual car in one process, the tester in another, over python-can's udp_multicast.

udp_multicast needs python-can's ``multicast`` extra (msgpack), and multicast that stays on this
machine: the test only sends when the group is routed through the loopback interface. Where it is not,
and the test runs as root, it builds a private network namespace whose loopback carries multicast and
runs itself there -- no datagram leaves the machine either way.
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.can_isotp import CanAdapter

GROUP = "239.74.163.2"  # python-can's default IPv4 group (administratively scoped)
ROOT = Path(__file__).resolve().parents[2]

needs_msgpack = pytest.mark.skipif(
    importlib.util.find_spec("msgpack") is None,
    reason="udp_multicast needs python-can's 'multicast' extra (msgpack), which is not installed",
)


def multicast_route() -> str:
    """The interface this machine would send the group's datagrams through ('' when unknown)."""
    ip = shutil.which("ip")
    if ip is None:
        return ""
    result = subprocess.run([ip, "-o", "route", "get", GROUP], capture_output=True, text=True, check=False)
    words = result.stdout.split()
    return words[words.index("dev") + 1] if "dev" in words else ""


@needs_msgpack
def test_udp_multicast_cross_process() -> None:
    route = multicast_route()
    if route != "lo":
        pytest.skip(
            f"multicast to {GROUP} would leave through {route or 'an unknown interface'}, not loopback"
        )
    port = random.randint(40000, 60000)
    network = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adapters.sim.can_network",
            "petrol",
            "--interface",
            "udp_multicast",
            "--channel",
            GROUP,
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert network.stderr is not None
        for line in network.stderr:
            if line.strip() == "ready":
                break
        else:
            pytest.fail("the virtual car process did not start")
        with CanAdapter("udp_multicast", GROUP, bus_options={"port": port}, p2=0.5, window=0.3) as adapter:
            assert sorted(adapter.responders) == ["7E8", "7E9"]
            vin = adapter.request(b"\x09\x02", ecu="7E8")
            assert [r.data for r in vin] == [b"\x49\x02\x01WVWZZZCDZMW123450"]
            did = adapter.request(b"\x22\xf1\x90", ecu="7E8")
            assert [r.data for r in did] == [b"\x62\xf1\x90WVWZZZCDZMW123450"]
    finally:
        assert network.stdin is not None
        network.stdin.close()
        try:
            network.wait(timeout=5)
        except subprocess.TimeoutExpired:
            network.kill()
            network.wait()
    assert network.returncode == 0


@needs_msgpack
def test_udp_multicast_in_a_private_network_namespace() -> None:
    if multicast_route() == "lo":
        pytest.skip("multicast already stays on loopback here: the test above ran for real")
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare to build a network namespace with multicast on loopback")
    setup = (
        "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo && "
        f'exec "{sys.executable}" -m pytest -o addopts= -q -p no:cacheprovider "{__file__}" -k cross_process'
    )
    result = subprocess.run(
        [unshare, "-n", "sh", "-c", setup], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0 and "Operation not permitted" in result.stderr:
        pytest.skip(f"this sandbox does not allow network namespaces: {result.stderr.strip()}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
