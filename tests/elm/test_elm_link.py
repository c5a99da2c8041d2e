"""The byte links under the ELM327: pyserial ports (loop://, a real pty) and TCP sockets on loopback."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import tty
from collections.abc import Iterator

import pytest

from adapters.errors import AdapterSpecError, AdapterUnavailableError, LinkError
from adapters.link import BaudRateLink, Link, SerialLink, TcpLink, _is_real_uart


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    """A pseudo-terminal: (master fd to play the adapter, slave path for the link)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    yield master, path
    os.close(slave)
    with contextlib.suppress(OSError):  # a test may have closed it to simulate an unplugged adapter
        os.close(master)


@pytest.fixture
def server() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener


def test_serial_link_over_pyserial_loop_url() -> None:
    link = SerialLink("loop://").open()
    assert isinstance(link, Link)
    assert isinstance(link, BaudRateLink)
    assert link.description == "loop://"
    assert link.read(0) == b""
    link.write(b"ATI\r")
    assert link.read(0.5) == b"ATI\r"
    link.set_baudrate(115200)
    assert link.baudrate == 115200
    assert "open" in repr(link)
    link.close()
    link.close()
    with pytest.raises(LinkError, match="not open"):
        link.read(0)


def test_serial_link_on_a_pty(pty: tuple[int, str]) -> None:
    master, path = pty
    link = SerialLink(path, 38400).open()
    assert link.open() is link  # opening twice is harmless
    link.write(b"0100\r")
    assert os.read(master, 100) == b"0100\r"
    started = time.monotonic()
    assert link.read(0.05) == b""
    assert 0.04 <= time.monotonic() - started < 0.5
    os.write(master, b"41 00 BE 3F A8 13\r\r>")
    received = b""
    while not received.endswith(b">"):
        received += link.read(1.0)
    assert received == b"41 00 BE 3F A8 13\r\r>"
    link.set_baudrate(9600)  # a pty takes any rate
    link.close()


def test_serial_link_is_exclusive(pty: tuple[int, str]) -> None:
    _, path = pty
    first = SerialLink(path).open()
    try:
        with pytest.raises(AdapterUnavailableError, match="in use by another program"):
            SerialLink(path).open()
    finally:
        first.close()


def test_serial_link_reports_an_unplugged_adapter(pty: tuple[int, str]) -> None:
    master, path = pty
    link = SerialLink(path).open()
    os.close(master)
    with pytest.raises(LinkError, match="the adapter link closed: cable pulled or adapter switched off"):
        link.read(0.5)
    with pytest.raises(LinkError):
        link.write(b"0100\r")
    link.close()


def test_missing_serial_port() -> None:
    with pytest.raises(AdapterUnavailableError) as caught:
        SerialLink("/dev/ttyUSB0-obdtool-missing").open()
    assert (
        str(caught.value)
        == "cannot open /dev/ttyUSB0-obdtool-missing: no such device — is the adapter plugged in?"
    )


def test_serial_link_arguments() -> None:
    with pytest.raises(AdapterSpecError):
        SerialLink("")
    with pytest.raises(AdapterSpecError):
        SerialLink("/dev/ttyUSB0", 0)
    assert SerialLink("/dev/ttyUSB0").baudrate == 38400
    assert "closed" in repr(SerialLink("/dev/ttyUSB0"))


def test_only_real_uarts_need_baud_detection(pty: tuple[int, str]) -> None:
    _, path = pty
    assert _is_real_uart(path) is False
    assert _is_real_uart("loop://") is False
    assert _is_real_uart("/dev/ttyUSB0-obdtool-missing") is False
    assert _is_real_uart(__file__) is False  # a regular file


def test_tcp_link_round_trip(server: socket.socket) -> None:
    host, port = server.getsockname()
    link = TcpLink(host, port, connect_timeout=2).open()
    assert isinstance(link, Link)
    assert not isinstance(link, BaudRateLink)
    assert link.open() is link
    peer, _ = server.accept()
    with peer:
        assert link._socket is not None
        assert link._socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert link.description == f"tcp://127.0.0.1:{port}"
        link.write(b"ATI\r")
        assert peer.recv(100) == b"ATI\r"
        started = time.monotonic()
        assert link.read(0.05) == b""
        assert time.monotonic() - started < 0.5
        peer.sendall(b"ELM327 v1.5\r\r>")
        assert link.read(1.0) == b"ELM327 v1.5\r\r>"
        assert link.read(0) == b""
    with pytest.raises(LinkError, match="closed the connection"):
        link.read(1.0)
    link.close()
    link.close()
    with pytest.raises(LinkError, match="not open"):
        link.write(b"x")


def test_tcp_link_reset_by_peer(server: socket.socket) -> None:
    host, port = server.getsockname()
    link = TcpLink(host, port).open()
    peer, _ = server.accept()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    peer.close()  # RST instead of FIN
    with pytest.raises(LinkError):
        link.read(1.0)
        link.write(b"0100\r")
        link.read(1.0)
    link.close()


def test_tcp_connection_refused() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(
        AdapterUnavailableError, match=rf"cannot connect to 127.0.0.1:{port}: connection refused"
    ):
        TcpLink("127.0.0.1", port).open()


def test_tcp_link_arguments() -> None:
    with pytest.raises(AdapterSpecError):
        TcpLink("", 35000)
    with pytest.raises(AdapterSpecError):
        TcpLink("host", 0)
    with pytest.raises(AdapterSpecError):
        TcpLink("host", 35000, connect_timeout=0)
    assert TcpLink("::1", 23).description == "tcp://[::1]:23"
    assert "closed" in repr(TcpLink("host", 1))
