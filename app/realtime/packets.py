"""A Socket.IO packet class that turns undecodable, malformed or oversized packets into
error events.

python-socketio drops a packet whose JSON does not parse (the client hears nothing), logs a
traceback for an event that is no array, for an unknown packet type or a broken binary
packet, runs the server's own ``connect``/``disconnect`` handler for an event of that name,
and Engine.IO closes a connection whose message exceeds its buffer. Herald answers each with an
``error`` message instead and keeps the connection: this class rewrites such packets into
the internal events below, which ``events.py`` answers. A CONNECT whose auth does not
parse carries :data:`MALFORMED_EVENT` as its auth's only key: the connect is refused
saying so.
"""

from __future__ import annotations

import re
from typing import Any

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


#: Event names a client may not send: python-socketio would run the server's own connect or
#: disconnect handler for them (a client could unregister its session and keep its socket,
#: out of reach of revocation), Flask-SocketIO's catch-all for ``*``, and Herald's own.
RESERVED_EVENT_NAMES = frozenset({"connect", "disconnect", "*"}) | INTERNAL_EVENTS
#: Most binary attachments one packet may announce (echo carries a few at most).
MAX_ATTACHMENTS = 64
#: A binary packet's type and announced attachment count: ``51-[...]``.
_BINARY_HEADER = re.compile(r"[56](\d{1,10})-")


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
        if not isinstance(encoded_packet, str):
            # Bytes that no binary event announced (those go to ``add_attachment``).
            self.packet_type = sio_packet.EVENT
            return self._refuse(INVALID_PACKET_EVENT, "a binary attachment that no binary event announced")
        if len(encoded_packet) > self.max_event_bytes and encoded_packet[:1] in ("2", "5"):
            self.packet_type, self.namespace = int(encoded_packet[0]), "/"
            if self.packet_type == sio_packet.EVENT:
                self.id = self._leading_id(encoded_packet)
            return self._refuse(TOO_LARGE_EVENT, len(encoded_packet), self._announced(encoded_packet))
        try:
            attachments = super().decode(encoded_packet)
        except ValueError as exc:
            return self._refuse(MALFORMED_EVENT, str(exc), self._announced(encoded_packet))
        if self.packet_type not in CLIENT_PACKET_TYPES:
            return self._refuse(INVALID_PACKET_EVENT, f"packet type {self.packet_type!r} is not one a client sends")
        binary = self.packet_type in (sio_packet.BINARY_EVENT, sio_packet.BINARY_ACK)
        if binary and not 1 <= attachments <= MAX_ATTACHMENTS:
            # None would follow, or too many to wait for: answered now.
            return self._refuse(INVALID_PACKET_EVENT, f"a binary packet announces 1 to {MAX_ATTACHMENTS} attachments")
        if self.packet_type in (sio_packet.EVENT, sio_packet.BINARY_EVENT):
            problem = self._event_problem()
            if problem is not None:
                return self._refuse(INVALID_PACKET_EVENT, problem, attachments)
        return attachments

    def add_attachment(self, attachment):  # type: ignore[no-untyped-def]
        try:
            return super().add_attachment(attachment)
        except (IndexError, KeyError, TypeError, ValueError):  # a placeholder naming no attachment
            if self.packet_type == sio_packet.BINARY_ACK:
                self.packet_type, self.id = sio_packet.BINARY_EVENT, None
            self.data = [INVALID_PACKET_EVENT, "a binary placeholder names no attachment of its packet"]
            return True

    def _event_problem(self) -> str | None:
        """Why this event's data is no event a client may send, or None."""
        data = self.data
        if not (isinstance(data, list) and data and isinstance(data[0], str)):
            return "an event is a JSON array whose first item is the event's name"
        if data[0] in RESERVED_EVENT_NAMES:
            return f"the event name {data[0]!r} is reserved"
        return None

    def _refuse(self, event: str, detail: Any, pending: int = 0) -> int:
        """Turn this packet into ``event`` with ``detail``, or a CONNECT into one whose auth
        says what was wrong.

        An event's ack id is kept (the client that asked for an ack gets the error in it).
        With ``pending`` binary attachments still to come, the packet stays a binary event
        waiting for them, so that they are consumed with it instead of arriving as strays.
        """
        if self.packet_type == sio_packet.CONNECT:
            self.data, self.attachment_count = {MALFORMED_EVENT: detail}, 0
            return 0
        if self.packet_type not in (sio_packet.EVENT, sio_packet.BINARY_EVENT):
            self.id = None
        self.packet_type = sio_packet.BINARY_EVENT if pending else sio_packet.EVENT
        self.data = [event, detail]
        self.attachment_count = pending
        return pending

    @staticmethod
    def _announced(encoded: str) -> int:
        """How many attachments a binary packet announces (0 for any other, or too many)."""
        match = _BINARY_HEADER.match(encoded)
        count = int(match.group(1)) if match else 0
        return count if count <= MAX_ATTACHMENTS else 0

    @staticmethod
    def _leading_id(encoded: str) -> int | None:
        digits = ""
        for char in encoded[1:21]:
            if char.isdigit():
                digits += char
            else:
                break
        return int(digits) if digits else None
