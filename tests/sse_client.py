"""A small Server-Sent Events client for tests: a parser, and a ``requests`` streaming reader."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests


@dataclass
class Event:
    """One dispatched event (``comment`` set for a ``:`` line on its own)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    comment: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


def iter_events(lines: Iterable[str]) -> Iterator[Event]:
    """Events from the stream's lines, per the HTML standard's rules (without its id carry-over)."""
    current = Event()
    data: list[str] = []
    touched = False
    for line in lines:
        if line == "":
            if touched:
                current.data = "\n".join(data)
                yield current
            current, data, touched = Event(), [], False
            continue
        if line.startswith(":"):
            yield Event(event="", comment=line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            current.event = value
        elif name == "data":
            data.append(value)
            touched = True  # a block without data is not dispatched (the standard's rule)
        elif name == "id":
            current.id = value
        elif name == "retry" and value.isdigit():
            current.retry = int(value)


def parse_events(text: str) -> list[Event]:
    """Every event (comments left out) of a whole stream body."""
    return [event for event in iter_events(text.split("\n")) if event.comment is None]


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Lines as they arrive (``requests``' own ``iter_lines`` invents empty ones at chunk edges)."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line.decode().removesuffix("\r")


@dataclass
class StreamReader:
    """Reads one SSE response in a thread and records what arrives (comments too)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    status: int | None = None
    ended: threading.Event = field(default_factory=threading.Event)

    def start(self) -> StreamReader:
        self._response = requests.get(self.url, headers=self.headers, stream=True, timeout=(10, 60))
        self.status = self._response.status_code
        if self.status != 200:
            self._response.close()
            self.ended.set()
            return self
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        try:
            for event in iter_events(_lines(self._response.iter_content(chunk_size=None))):
                if event.comment is not None:
                    self.comments.append(event.comment)
                else:
                    self.events.append(event)
        except (requests.RequestException, OSError, AttributeError, ValueError):
            pass  # closed by the test
        finally:
            self.ended.set()

    def durable(self) -> list[Event]:
        return [event for event in list(self.events) if event.id]

    def close(self) -> None:
        """Drop the connection (as a network failure would)."""
        response = getattr(self, "_response", None)
        if response is not None:
            try:
                response.raw._fp.fp.raw._sock.shutdown(2)  # noqa: SLF001 - a hard drop, not a polite close
            except (AttributeError, OSError):
                pass
            response.close()
        self.ended.wait(10)
