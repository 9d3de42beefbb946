"""A Socket.IO packet class that turns undecodable or oversized events into error events.

python-socketio drops a packet whose JSON does not parse (the client hears nothing) and
Engine.IO closes a connection whose message exceeds its buffer. Herald answers both with
an ``error`` message instead and keeps the connection: this class rewrites such packets
into the internal events below, which ``events.py`` answers.
"""

from __future__ import annotations

from engineio import json as engineio_json
from socketio import packet as sio_packet

from ..inputs import load_json

#: Internal event names (a client cannot send these: their names are rejected).
MALFORMED_EVENT = "__herald_malformed__"
TOO_LARGE_EVENT = "__herald_too_large__"
INTERNAL_EVENTS = frozenset({MALFORMED_EVENT, TOO_LARGE_EVENT})


class BoundedJSON:
    """The JSON python-socketio parses client events with: bounded like REST bodies."""

    dumps = staticmethod(engineio_json.dumps)
    loads = staticmethod(load_json)


class TolerantPacket(sio_packet.Packet):
    """Packet decoder that never drops a client event silently."""

    json = BoundedJSON

    #: Largest encoded event accepted, set from ``SOCKET_MESSAGE_LIMIT`` at start-up.
    max_event_bytes = 64 * 1024

    def decode(self, encoded_packet):  # type: ignore[no-untyped-def]
        if (
            isinstance(encoded_packet, str)
            and len(encoded_packet) > self.max_event_bytes
            and encoded_packet[:1] in (str(sio_packet.EVENT), str(sio_packet.BINARY_EVENT))
        ):
            self.packet_type = sio_packet.EVENT
            self.namespace = "/"
            self.id = self._leading_id(encoded_packet)
            self.data = [TOO_LARGE_EVENT, len(encoded_packet)]
            self.attachment_count = 0
            return 0
        try:
            return super().decode(encoded_packet)
        except ValueError as exc:
            if self.packet_type != sio_packet.EVENT:
                raise
            self.data = [MALFORMED_EVENT, str(exc)]
            return 0

    @staticmethod
    def _leading_id(encoded: str) -> int | None:
        digits = ""
        for char in encoded[1:21]:
            if char.isdigit():
                digits += char
            else:
                break
        return int(digits) if digits else None
