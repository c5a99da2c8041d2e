"""OBD link protocols as ELM327 numbers them: one table for the adapters and the simulators.

The numbers (``ATSP``/``ATTP``/``ATDPN``) double as the record's ``protocol_id`` and as the
scenario files' ``protocol`` key, so a CAN interface reports ``"6"`` for CAN 11-bit/500k too.
"""

from __future__ import annotations

__all__ = ["CAN_29BIT_PROTOCOLS", "CAN_PROTOCOLS", "PROTOCOL_NAMES", "j1850_crc"]

PROTOCOL_NAMES: dict[str, str] = {
    "1": "SAE J1850 PWM (41.6 kbaud)",
    "2": "SAE J1850 VPW (10.4 kbaud)",
    "3": "ISO 9141-2 (5 baud init, 10.4 kbaud)",
    "4": "ISO 14230-4 KWP (5 baud init, 10.4 kbaud)",
    "5": "ISO 14230-4 KWP (fast init, 10.4 kbaud)",
    "6": "ISO 15765-4 CAN (11 bit ID, 500 kbaud)",
    "7": "ISO 15765-4 CAN (29 bit ID, 500 kbaud)",
    "8": "ISO 15765-4 CAN (11 bit ID, 250 kbaud)",
    "9": "ISO 15765-4 CAN (29 bit ID, 250 kbaud)",
    "A": "SAE J1939 CAN (29 bit ID, 250 kbaud)",
    "B": "USER1 CAN (11 bit ID, 125 kbaud)",
    "C": "USER2 CAN (11 bit ID, 50 kbaud)",
}
CAN_PROTOCOLS = frozenset({"6", "7", "8", "9"})
CAN_29BIT_PROTOCOLS = frozenset({"7", "9", "A"})


def j1850_crc(data: bytes) -> int:
    """SAE J1850 CRC-8 (polynomial 0x1D, initial value 0xFF, inverted result): J1850 frames' check byte."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1D) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc ^ 0xFF
