"""What an ELM327 printed for one request, read into :class:`~adapters.base.EcuReply` objects.

Pure text in, replies or a typed error out: no I/O, so every quirk seen on real adapters can be pinned by a
test with the adapter's exact words (``fixtures/captures/``). Whatever the text, the result is a list or an
:class:`~adapters.errors.AdapterError`; nothing else escapes.

What is accepted
----------------
* Echo of the command (``ATE1``), ``SEARCHING...`` (alone or glued to the first line), ``BUS INIT: ...OK``,
  blank lines, CR or CR LF line ends, NUL bytes some clones emit, lowercase hex, spaces on or off.
* CAN with headers (``ATH1``): frames are grouped per CAN ID and ISO-TP is reassembled (single, first and
  consecutive frames with sequence checking; padding after the announced length is dropped, which also
  covers adapters that print the padding of single frames). With spaces off the known header width splits
  header from data: 3 hex digits (11-bit), 8 (29-bit). Frames glued onto one line without separators, as
  some logging tools record them, are split when the frame lengths make it unambiguous.
* CAN without headers, CAF1: single frames as bare data; multi-frame answers as a length line (``014``)
  followed by numbered lines ``0:``, ``1:`` ... (the number wraps after ``F``; ``10:`` is accepted too).
* K-line and J1850 with headers: 3 header bytes (4 for KWP with a separate length byte), data, check byte.
  The check byte is verified (sum mod 256 on K-line, SAE J1850 CRC-8 on J1850) and dropped; the ECU
  address is the source byte. One reply per line, as the contract says for legacy buses.
* Without headers the responder is unknown: such replies carry the placeholder address
  :data:`HEADERLESS_CAN` or :data:`HEADERLESS_LEGACY`, naming the bus family rather than guessing an ECU.

What is kept
------------
Only answers to the request: service id = request SID + 0x40, or ``7F <SID>``; for the OBD services 01,
02, 06, 09 and UDS 22 the PID/InfoType/DID echo must be one that was asked for as well. Other complete
messages (an ECU's unrequested ``41 0C`` during a ``07`` request) are reported in
:attr:`ElmResponse.ignored` and not returned. ``7F <SID> 78`` (response pending) is never returned: it is
listed in :attr:`ElmResponse.pending` unless the final answer from that ECU follows.

What is refused
---------------
* Status words become the matching :mod:`adapters.errors` class (``NO DATA`` alone means an empty list).
  A frame flagged ``<DATA ERROR`` or ``<RX ERROR`` fails the whole answer: the request can be retried,
  while a reply silently missing one ECU could not be told from an ECU that did not answer.
* A line that is not hex, has an odd number of digits (``41 0C 000``) or is too long for one CAN frame
  raises :class:`~adapters.errors.AdapterProtocolError` *even when other lines are fine*: dropping it
  could turn a positive answer we failed to read into an apparently negative or missing one.
* Broken multi-frame answers (lost, repeated or out-of-order frames, truncation) and wrong check bytes
  raise :class:`~adapters.errors.FramingError`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Literal

from adapters.base import EcuReply
from adapters.errors import (
    AdapterProtocolError,
    AdapterSpecError,
    AdapterStatusError,
    BufferFullError,
    BusFaultError,
    BusInitError,
    CanBusError,
    CommandRejectedError,
    FramingError,
    StoppedError,
    UnableToConnectError,
)
from adapters.protocols import j1850_crc

__all__ = [
    "HEADERLESS_CAN",
    "HEADERLESS_LEGACY",
    "ElmResponse",
    "LegacyChecksum",
    "decode_response",
    "j1850_crc",
    "parse_at_reply",
    "parse_response",
    "split_status",
    "status_error",
]

#: Address given to CAN replies read with headers off: the responder is not printed.
HEADERLESS_CAN = "CAN"
#: Address given to K-line/J1850 replies read with headers off.
HEADERLESS_LEGACY = "LEGACY"

#: How a legacy frame's last byte is checked: ISO 9141-2 / ISO 14230 add bytes, SAE J1850 uses a CRC.
LegacyChecksum = Literal["sum", "crc8"]

_RESPONSE_PENDING = 0x78
_NEGATIVE = 0x7F
_MAX_CAN_DATA = 8
_EXCERPT = 40

_HEX = re.compile(r"[0-9A-Fa-f]+")
_SEGMENT = re.compile(r"([0-9A-Fa-f]{1,2})\s*:(.*)")
_BUS_INIT_OK = re.compile(r"BUS INIT:\s*(?:\.\.\.)?\s*OK", re.IGNORECASE)
_SEARCHING = "SEARCHING..."

# (pattern over the upper-cased, space-collapsed line, error class, what the technician reads)
_STATUS: tuple[tuple[re.Pattern[str], type[AdapterStatusError], str], ...] = (
    (
        re.compile(r"(?:\.\.\.)?\s*UNABLE TO CONNECT"),
        UnableToConnectError,
        "the adapter found no OBD protocol that answers (UNABLE TO CONNECT): is the ignition on?",
    ),
    (
        re.compile(r"BUS INIT:.*ERROR"),
        BusInitError,
        "the K-line bus did not wake up ({status}): wrong protocol, or the ignition is off",
    ),
    (
        re.compile(r"CAN ERROR"),
        CanBusError,
        "the adapter could not use the CAN bus (CAN ERROR): not a CAN car, wrong bit rate or a wiring fault",
    ),
    (
        re.compile(r"ERR94"),
        CanBusError,
        "the adapter hit a fatal CAN error (ERR94): unplug the adapter to reset it, then check the wiring",
    ),
    (
        re.compile(r"ERR\d\d"),
        AdapterStatusError,
        "the adapter reported an internal error ({status}): unplug it to reset it",
    ),
    (
        re.compile(r"BUS BUSY|BUS ERROR|FB ERROR|DATA ERROR"),
        BusFaultError,
        "the bus reported a fault ({status}): check the OBD connector and the adapter's contacts",
    ),
    (
        re.compile(r".*<\s?(?:DATA|RX) ERROR"),
        BusFaultError,
        "the adapter received a corrupted frame ({status}): check the OBD connector, then retry",
    ),
    (
        re.compile(r"BUFFER FULL"),
        BufferFullError,
        "the adapter's buffer overflowed (BUFFER FULL): the link to it is too slow for this answer",
    ),
    (
        re.compile(r"STOPPED"),
        StoppedError,
        "the adapter stopped the request (STOPPED) because it received input meanwhile",
    ),
    (
        re.compile(r"\?"),
        CommandRejectedError,
        "the adapter did not understand the command (?)",
    ),
    (
        re.compile(r"LV RESET"),
        AdapterStatusError,
        "the adapter reset itself after a supply-voltage dip (LV RESET): check the OBD connector",
    ),
    (
        re.compile(r"(?:ACT|LP) ALERT"),
        AdapterStatusError,
        "the adapter is about to go to sleep ({status})",
    ),
)

# OBD/UDS services whose answer echoes what was asked for, and where in the request that is:
# service id -> (first index, step, width). 01 0C 0D -> 41 0C ..; 02 0C 00 -> 42 0C 00 ..;
# 09 02 -> 49 02 ..; 22 F1 90 -> 62 F1 90 ..
_ECHOED: dict[int, tuple[int, int, int]] = {
    0x01: (1, 1, 1),
    0x02: (1, 2, 1),
    0x06: (1, 1, 1),
    0x09: (1, 1, 1),
    0x22: (1, 2, 2),
}


@dataclass(frozen=True, slots=True)
class ElmResponse:
    """Everything one request's text contained, sorted.

    :ivar replies: the answers to the request, in the order they completed.
    :ivar pending: ECUs that said "response pending" (``7F xx 78``) and whose answer did not follow.
    :ivar ignored: complete messages that do not answer this request (other services or PIDs).
    """

    replies: tuple[EcuReply, ...]
    pending: tuple[str, ...] = ()
    ignored: tuple[EcuReply, ...] = ()


@dataclass(slots=True)
class _Assembly:
    """An ISO-TP message being collected."""

    expected: int
    data: bytearray = field(default_factory=bytearray)
    next_seq: int = 1


def _excerpt(text: str) -> str:
    """A short printable rendering of adapter output for an error message."""
    clean = "".join(ch if " " <= ch <= "~" else "." for ch in text.strip())
    return repr(clean if len(clean) <= _EXCERPT else clean[: _EXCERPT - 3] + "...")


def _unreadable(line: str, why: str = "not hex") -> AdapterProtocolError:
    return AdapterProtocolError(f"the adapter printed a line that cannot be read ({why}): {_excerpt(line)}")


def status_error(line: str) -> AdapterStatusError | None:
    """The error an ELM327 status line stands for, or ``None`` when ``line`` is not an error status.

    ``NO DATA``, ``OK``, ``SEARCHING...`` and ``BUS INIT: ...OK`` are not errors and give ``None``.
    """
    words = " ".join(line.upper().split())
    for pattern, cls, message in _STATUS:
        if pattern.fullmatch(words):
            status = words[words.index("<") :] if cls is BusFaultError and "<" in words else words
            return cls(message.format(status=status), status=status)
    return None


def _check_characters(text: str) -> str:
    """Drop NULs; refuse anything outside printable ASCII and line breaks (a baud mismatch, noise)."""
    text = text.replace("\x00", "")
    for ch in text:
        if not (" " <= ch <= "~" or ch in "\r\n\t"):
            raise AdapterProtocolError(f"the adapter sent unreadable characters: {_excerpt(text)}")
    return text


def _strip_prefixes(line: str) -> str:
    """Remove ``SEARCHING...`` and ``BUS INIT: ...OK``, which may precede the data on the same line."""
    changed = True
    while changed and line:
        changed = False
        if line.upper().startswith(_SEARCHING):
            line = line[len(_SEARCHING) :].strip()
            changed = True
        match = _BUS_INIT_OK.match(line)
        if match:
            line = line[match.end() :].strip()
            changed = True
    return line


def split_status(text: str, *, echo: Collection[str] = ()) -> list[str]:
    """Split an answer into its data lines, raising for the status words an ELM327 prints.

    :param text: what the adapter printed before its ``>`` prompt (a trailing prompt is tolerated).
    :param echo: the command as sent, in any of its forms (upper-case, no spaces); a first line equal to
        one of them is the adapter's echo and is dropped.
    :returns: the data lines, stripped; empty when the adapter said ``NO DATA`` or nothing at all.
    :raises adapters.errors.AdapterStatusError: the subclass for the status the adapter printed.
    :raises adapters.errors.AdapterProtocolError: when the text holds unreadable characters.
    """
    text = _check_characters(text).rstrip()
    if text.endswith(">"):
        text = text[:-1]
    lines: list[str] = []
    first = True
    for raw in re.split(r"[\r\n]+", text):
        line = raw.strip()
        if not line:
            continue
        if first:
            first = False
            if "".join(line.split()).upper() in echo:
                continue
        line = _strip_prefixes(line)
        if not line or " ".join(line.upper().split()) == "NO DATA":
            continue
        error = status_error(line)
        if error is not None:
            raise error
        lines.append(line)
    return lines


def parse_at_reply(text: str, command: str) -> list[str]:
    """The lines an ELM327 printed for an AT command, echo and blank lines removed.

    :raises adapters.errors.CommandRejectedError: when the adapter answered ``?``.
    :raises adapters.errors.AdapterProtocolError: when the text holds unreadable characters.
    """
    echo = "".join(command.split()).upper()
    lines = [line.strip() for line in re.split(r"[\r\n]+", _check_characters(text)) if line.strip()]
    if lines and "".join(lines[0].split()).upper() == echo:
        lines = lines[1:]
    if any(line == "?" for line in lines):
        raise CommandRejectedError(f"the adapter does not understand {command} (?)", status="?")
    return lines


def _line_bytes(line: str) -> bytes:
    """Hex digits of a data line, spaces on (every token two digits) or off (an even digit count)."""
    tokens = line.split()
    if len(tokens) > 1 and any(len(token) != 2 for token in tokens):
        raise _unreadable(line, "bytes of uneven width")
    digits = "".join(tokens)
    if not _HEX.fullmatch(digits):
        raise _unreadable(line)
    if len(digits) % 2:
        raise _unreadable(line, "odd number of hex digits")
    return bytes.fromhex(digits)


def _can_id(header: str, id_digits: int, line: str) -> str:
    """Validate a printed CAN identifier: hex of the right width and range."""
    if len(header) != id_digits or not _HEX.fullmatch(header):
        raise _unreadable(line, "bad CAN identifier")
    limit = 0x7FF if id_digits == 3 else 0x1FFFFFFF
    if int(header, 16) > limit:
        raise _unreadable(line, f"CAN identifier {header} out of range")
    return header.upper()


def _split_glued(digits: str, id_digits: int, line: str) -> list[tuple[str, bytes]]:
    """Split a spaces-off line into frames: one frame, or several glued ones when the line is too long.

    A CAN frame carries at most 8 bytes. A longer line is cut where the PCI says the frame ends: a single
    frame holds 1 + L bytes, first and consecutive frames are printed with all 8. Padded single frames glued
    together cannot be split this way; the identifier check then refuses the result.
    """
    if not _HEX.fullmatch(digits):
        raise _unreadable(line)
    frames: list[tuple[str, bytes]] = []
    pos = 0
    while pos < len(digits):
        header = _can_id(digits[pos : pos + id_digits], id_digits, line)
        pos += id_digits
        rest = len(digits) - pos
        if rest < 2:
            raise _unreadable(line, "CAN identifier without data")
        if rest <= 2 * _MAX_CAN_DATA:
            size = rest
        else:
            kind, low = digits[pos], int(digits[pos + 1], 16)
            if kind == "0" and 1 <= low <= 7:
                size = 2 * (1 + low)
            elif kind in "12":
                size = 2 * _MAX_CAN_DATA
            else:
                raise _unreadable(line, "too long for one CAN frame")
        chunk = digits[pos : pos + size]
        pos += size
        if len(chunk) % 2:
            raise _unreadable(line, "odd number of hex digits")
        frames.append((header, bytes.fromhex(chunk)))
    return frames


def _can_frames(line: str, id_digits: int) -> list[tuple[str, bytes]]:
    """The (CAN ID, frame bytes incl. PCI) pairs on one headers-on line."""
    tokens = line.split()
    if len(tokens) == 1:
        return _split_glued(tokens[0], id_digits, line)
    header = ""
    used = 0
    while used < len(tokens) and len(header) < id_digits:
        header += tokens[used]
        used += 1
    can_id = _can_id(header, id_digits, line)
    rest = tokens[used:]
    if not rest:
        raise _unreadable(line, "CAN identifier without data")
    data = _line_bytes(" ".join(rest))
    if len(data) > _MAX_CAN_DATA:
        raise _unreadable(line, "too long for one CAN frame")
    return [(can_id, data)]


def _reassemble(frames: Iterable[tuple[str, bytes]]) -> list[EcuReply]:
    """ISO 15765-2 reassembly per CAN ID; replies in the order they complete."""
    open_messages: dict[str, _Assembly] = {}
    replies: list[EcuReply] = []
    for ecu, frame in frames:
        pci = frame[0]
        kind = pci >> 4
        if kind in (0, 1) and ecu in open_messages:
            partial = open_messages[ecu]
            raise FramingError(
                f"{ecu} started a new message after {len(partial.data)} of {partial.expected} bytes "
                "of the previous one: frames were lost"
            )
        if kind == 0:
            length = pci & 0x0F
            if not 1 <= length <= 7:
                raise FramingError(f"single frame from {ecu} announces {length} bytes")
            if len(frame) - 1 < length:
                raise FramingError(
                    f"single frame from {ecu} announces {length} bytes but carries {len(frame) - 1}"
                )
            replies.append(EcuReply(ecu, bytes(frame[1 : 1 + length])))
        elif kind == 1:
            if len(frame) < 2:
                raise FramingError(f"first frame from {ecu} is cut short")
            length = ((pci & 0x0F) << 8) | frame[1]
            body = frame[2:]
            if length == 0:  # ISO 15765-2:2016 escape: a 32-bit length follows
                if len(frame) < 6:
                    raise FramingError(f"first frame from {ecu} is cut short")
                length = int.from_bytes(frame[2:6], "big")
                body = frame[6:]
                if length == 0:
                    raise FramingError(f"first frame from {ecu} announces an empty message")
            if len(body) >= length:
                replies.append(EcuReply(ecu, bytes(body[:length])))
            else:
                open_messages[ecu] = _Assembly(length, bytearray(body))
        elif kind == 2:
            assembly = open_messages.get(ecu)
            if assembly is None:
                raise FramingError(f"consecutive frame from {ecu} without a first frame: frames were lost")
            seq = pci & 0x0F
            if seq != assembly.next_seq:
                raise FramingError(
                    f"frame {seq:X} from {ecu} arrived where {assembly.next_seq:X} was due: "
                    "a frame was lost or repeated"
                )
            assembly.data += frame[1:]
            assembly.next_seq = (seq + 1) & 0x0F
            if len(assembly.data) >= assembly.expected:
                replies.append(EcuReply(ecu, bytes(assembly.data[: assembly.expected])))
                del open_messages[ecu]
        elif kind == 3:
            continue  # a flow-control frame carries no data for us
        else:
            raise FramingError(f"frame from {ecu} has an unknown ISO-TP frame type {pci:02X}")
    for ecu, assembly in open_messages.items():
        raise FramingError(
            f"the answer from {ecu} stopped after {len(assembly.data)} of {assembly.expected} bytes"
        )
    return replies


def _headerless_can(lines: Iterable[str]) -> list[EcuReply]:
    """CAF1 with headers off: bare single frames, or a length line and numbered lines."""
    replies: list[EcuReply] = []
    assembly: _Assembly | None = None
    index = 0
    for line in lines:
        segment = _SEGMENT.fullmatch(line.strip())
        if segment is not None:
            if assembly is None:
                raise FramingError(f"numbered line without a length line before it: {_excerpt(line)}")
            number = int(segment[1], 16)
            if number not in (index, index & 0x0F):
                raise FramingError(
                    f"line {number:X}: arrived where {index & 0x0F:X}: was due: a frame was lost"
                )
            assembly.data += _line_bytes(segment[2])
            index += 1
            if len(assembly.data) >= assembly.expected:
                replies.append(EcuReply(HEADERLESS_CAN, bytes(assembly.data[: assembly.expected])))
                assembly = None
            continue
        if assembly is not None:
            raise FramingError(
                f"the multi-line answer stopped after {len(assembly.data)} of {assembly.expected} bytes"
            )
        compact = "".join(line.split())
        if len(compact) == 3 and _HEX.fullmatch(compact):
            length = int(compact, 16)
            if length == 0:
                raise FramingError("the adapter announced an empty multi-line answer")
            assembly = _Assembly(length)
            index = 0
            continue
        data = _line_bytes(line)
        if len(data) > 7:
            raise _unreadable(line, "too long for one CAN frame")
        replies.append(EcuReply(HEADERLESS_CAN, data))
    if assembly is not None:
        raise FramingError(
            f"the multi-line answer stopped after {len(assembly.data)} of {assembly.expected} bytes"
        )
    return replies


def _legacy_with_headers(lines: Iterable[str], checksum: LegacyChecksum) -> list[EcuReply]:
    """K-line/J1850 lines: header, data, check byte; one reply per line."""
    replies: list[EcuReply] = []
    for line in lines:
        frame = _line_bytes(line)
        if len(frame) < 5:
            raise _unreadable(line, "too short for header, data and check byte")
        body, check = frame[:-1], frame[-1]
        expected = sum(body) & 0xFF if checksum == "sum" else j1850_crc(body)
        if check != expected:
            raise FramingError(
                f"check byte {check:02X} should be {expected:02X}: corrupted frame {_excerpt(line)}"
            )
        header = 3
        fmt = body[0]
        if checksum == "sum" and fmt & 0x80:  # ISO 14230 format byte: address mode + length
            length = fmt & 0x3F
            if length == 0:
                header, length = 4, body[3]
            if len(body) - header != length:
                raise FramingError(
                    f"KWP frame announces {length} bytes but carries {len(body) - header}: {_excerpt(line)}"
                )
        payload = body[header:]
        if not payload:
            raise _unreadable(line, "frame without data")
        replies.append(EcuReply(f"{body[2]:02X}", bytes(payload)))
    return replies


def _echoed_ids(request: bytes) -> set[bytes] | None:
    """The PIDs/InfoTypes/DIDs an answer to ``request`` may start with, or ``None`` when not checked."""
    rule = _ECHOED.get(request[0])
    if rule is None or len(request) < 2:
        return None
    start, step, width = rule
    ids = {request[i : i + width] for i in range(start, len(request) - width + 1, step)}
    return ids or None


def _sort(replies: Iterable[EcuReply], request: bytes) -> ElmResponse:
    """Keep the answers to ``request``; note pending ECUs; set aside everything else."""
    sid = request[0]
    echoed = _echoed_ids(request)
    kept: list[EcuReply] = []
    ignored: list[EcuReply] = []
    pending: list[str] = []
    width = len(next(iter(echoed))) if echoed else 0
    for reply in replies:
        data = reply.data
        if not data:
            ignored.append(reply)
        elif data[0] == _NEGATIVE:
            if len(data) >= 2 and data[1] == sid:
                if len(data) >= 3 and data[2] == _RESPONSE_PENDING:
                    if reply.ecu not in pending:
                        pending.append(reply.ecu)
                else:
                    kept.append(reply)
            else:
                ignored.append(reply)
        elif data[0] == sid + 0x40:
            if echoed is None or len(data) < 1 + width or data[1 : 1 + width] in echoed:
                kept.append(reply)
            else:
                ignored.append(reply)
        else:
            ignored.append(reply)
    answered = {reply.ecu for reply in kept}
    return ElmResponse(
        replies=tuple(kept),
        pending=tuple(ecu for ecu in pending if ecu not in answered),
        ignored=tuple(ignored),
    )


def _echo_forms(request: bytes) -> frozenset[str]:
    """The request as the adapter would echo it: hex, optionally with the response-count digit."""
    command = request.hex().upper()
    return frozenset({command, *(command + digit for digit in "0123456789ABCDEF")})


def decode_response(
    text: str,
    *,
    request: bytes,
    can: bool,
    id_bits: int = 11,
    headers: bool = True,
    legacy_checksum: LegacyChecksum = "sum",
) -> ElmResponse:
    """Read the text an ELM327 printed for ``request`` (see the module docstring for the rules).

    :param text: the adapter's output before its prompt.
    :param request: the service bytes that were sent (``b"\\x09\\x02"``).
    :param can: whether the protocol is ISO 15765-4 CAN (else K-line or J1850).
    :param id_bits: 11 or 29, the CAN identifier width (ignored off CAN).
    :param headers: whether headers were on (``ATH1``).
    :param legacy_checksum: how legacy check bytes are computed (``"crc8"`` on J1850 PWM/VPW).
    :raises adapters.errors.AdapterStatusError: when the adapter printed a status word.
    :raises adapters.errors.AdapterProtocolError: when a line cannot be read.
    :raises adapters.errors.FramingError: when a multi-frame answer is broken or a check byte is wrong.
    """
    if not request:
        raise AdapterSpecError("an empty request has no answer to look for")
    if id_bits not in (11, 29):
        raise AdapterSpecError(f"CAN identifiers have 11 or 29 bits, not {id_bits}")
    lines = split_status(text, echo=_echo_forms(request))
    if not lines:
        return ElmResponse(replies=())
    if can and headers:
        id_digits = 3 if id_bits == 11 else 8
        frames = [frame for line in lines for frame in _can_frames(line, id_digits)]
        replies = _reassemble(frames)
    elif can:
        replies = _headerless_can(lines)
    elif headers:
        replies = _legacy_with_headers(lines, legacy_checksum)
    else:
        replies = [EcuReply(HEADERLESS_LEGACY, _line_bytes(line)) for line in lines]
    return _sort(replies, request)


def parse_response(
    text: str,
    *,
    request: bytes,
    can: bool,
    id_bits: int = 11,
    headers: bool = True,
    legacy_checksum: LegacyChecksum = "sum",
) -> list[EcuReply]:
    """The answers to ``request`` in ``text``: :func:`decode_response` without the bookkeeping.

    :returns: the replies in completion order; empty for ``NO DATA``.
    :raises adapters.errors.AdapterError: as :func:`decode_response`.
    """
    return list(
        decode_response(
            text,
            request=request,
            can=can,
            id_bits=id_bits,
            headers=headers,
            legacy_checksum=legacy_checksum,
        ).replies
    )
