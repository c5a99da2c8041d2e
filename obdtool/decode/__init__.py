"""Pure decoders for OBD-II and UDS answers: bytes in, plain values out.

Nothing in this package does I/O or imports an adapter library. Every function takes the
*service data* of one ECU's complete answer (transport framing already removed by the adapter
layer, e.g. ``bytes.fromhex("410C1AF8")``) and either returns a value or raises
:class:`obdtool.errors.DecodeError`; no other exception escapes on bad input.

Legacy protocols (ISO 9141-2, KWP2000, J1850) deliver a multi-line answer as several messages
from the same ECU; :func:`obdtool.decode.common.join_legacy` turns those into the CAN shape that
all other decoders expect.

Modules: ``common`` (positive/negative response checks, NRC table, legacy joining), ``pids``
(Service 01/02 PIDs and bitmaps), ``dtc`` (Service 03/07/0A and UDS trouble codes),
``infotypes`` (Service 09: VIN, CALID, CVN, ECU name, OBFCM).
"""
