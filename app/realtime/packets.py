"""A Socket.IO packet class that turns undecodable, malformed or oversized packets into
error events.

python-socketio drops a packet whose JSON does not parse (the client hears nothing), logs a
traceback for an event that is no array or for an unknown packet type, and Engine.IO
closes a connection whose message exceeds its buffer. Herald answers each with an
``error`` message instead and keeps the connection: this class rewrites such packets into
the internal events below, which ``events.py`` answers. A CONNECT whose auth does not
parse carries :data:`MALFORMED_EVENT` as its auth's only key: the connect is refused
saying so.
"""

from __future__ import annotations

from engineio import json as engineio_json
from socketio import packet as sio_packet

from ..inputs import load_json

#: Internal event names (a client cannot send these: their names are rejected).
MALFORMED_EVENT = "__herald_malformed__"
INVALID_PACKET_EVENT = "__herald_invalid_packet__"
TOO_LARGE_EVENT = "__herald_too_large__"
INTERNAL_EVENTS = frozenset({MALFORMED_EVENT, INVALID_PACKET_EVENT, TOO_LARGE_EVENT})
#: The packet types a client sends (CONNECT_ERROR goes only to clients).
CLIENT_PACKET_TYPES = frozenset(
    {
        sio_packet.CONNECT,
        sio_packet.DISCONNECT,
        sio_packet.EVENT,
        sio_packet.ACK,
        sio_packet.BINARY_EVENT,
        sio_packet.BINARY_ACK,
    }
)


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
            attachments = super().decode(encoded_packet)
        except ValueError as exc:
            return self._refuse(MALFORMED_EVENT, str(exc))
        if self.packet_type not in CLIENT_PACKET_TYPES:
            return self._refuse(INVALID_PACKET_EVENT, f"packet type {self.packet_type!r} is not one a client sends")
        if self.packet_type == sio_packet.EVENT and not (
            isinstance(self.data, list) and self.data and isinstance(self.data[0], str)
        ):
            return self._refuse(INVALID_PACKET_EVENT, "an event is a JSON array whose first item is the event's name")
        return attachments

    def _refuse(self, event: str, reason: str) -> int:
        """Turn this packet into ``event`` with ``reason`` (an event's ack id is kept: the
        client that asked for an ack gets the error in it), or a CONNECT into one whose
        auth says what was wrong."""
        self.attachment_count = 0
        if self.packet_type == sio_packet.CONNECT:
            self.data = {MALFORMED_EVENT: reason}
            return 0
        if self.packet_type != sio_packet.EVENT:
            self.packet_type, self.id = sio_packet.EVENT, None
        self.data = [event, reason]
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
