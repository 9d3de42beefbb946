"""The client managers' index of each sid's rooms: the same room table as python-socketio
keeps, and a disconnect that touches only the leaving sid's rooms."""

from __future__ import annotations

import random
from typing import Any

import socketio
from bidict import bidict

from app.realtime.delivery import HeraldManager


class _Ids:
    def __init__(self) -> None:
        self.next = 0

    def generate_id(self) -> str:
        self.next += 1
        return f"sid{self.next}"


class _Server:
    """Just what a manager asks its server for (ids) and its JSON module."""

    def __init__(self) -> None:
        self.eio = _Ids()
        self.packet_class = socketio.packet.Packet


def _manager(cls: type) -> Any:
    manager = cls()
    manager.set_server(_Server())
    return manager


def _table(manager: Any) -> dict[str, dict[Any, dict[str, str]]]:
    return {ns: {room: dict(members) for room, members in rooms.items()} for ns, rooms in manager.rooms.items()}


def test_the_room_table_matches_python_socketio_through_joins_leaves_and_disconnects():
    ours, stock = _manager(HeraldManager), _manager(socketio.Manager)
    rng = random.Random(7)
    connected: list[str] = []
    for step in range(2000):
        action = rng.random()
        if action < 0.3 or not connected:
            eio_sid = f"eio{step}"
            sid = ours.connect(eio_sid, "/")
            assert stock.connect(eio_sid, "/") == sid
            connected.append(sid)
        elif action < 0.6:
            sid, room = rng.choice(connected), f"room{rng.randrange(20)}"
            ours.enter_room(sid, "/", room)
            stock.enter_room(sid, "/", room)
        elif action < 0.8:
            sid, room = rng.choice(connected), f"room{rng.randrange(20)}"
            ours.leave_room(sid, "/", room)
            stock.leave_room(sid, "/", room)
        else:
            sid = connected.pop(rng.randrange(len(connected)))
            ours.disconnect(sid, "/")
            stock.disconnect(sid, "/")
            assert not ours.is_connected(sid, "/")
        assert _table(ours) == _table(stock)
    for sid in connected:
        assert sorted(ours.get_rooms(sid, "/")) == sorted(stock.get_rooms(sid, "/"))


class _CountingRoom(bidict):
    """A room that counts membership tests (python-socketio tested every room)."""

    tests = 0

    def __contains__(self, key: object) -> bool:
        _CountingRoom.tests += 1
        return super().__contains__(key)


def test_a_disconnect_touches_only_the_leaving_sids_rooms():
    manager = _manager(HeraldManager)
    sids = [manager.connect(f"eio{n}", "/") for n in range(1000)]
    for n, sid in enumerate(sids):
        manager.enter_room(sid, "/", f"client:{n}")
        manager.enter_room(sid, "/", f"user:{n % 10}")
    for name, room in list(manager.rooms["/"].items()):
        manager.rooms["/"][name] = _CountingRoom(room)
    _CountingRoom.tests = 0
    manager.disconnect(sids[500], "/")
    assert _CountingRoom.tests < 10  # not one per room of the namespace (~2,000 here)
    assert "client:500" not in manager.rooms["/"]
    assert sids[500] not in manager.rooms["/"]["user:0"]
    assert not manager.is_connected(sids[500], "/")
