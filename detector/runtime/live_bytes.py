"""A live stream's bytes read once and shared: FFmpeg's demuxer opens the stream from them (its format, codecs,
size and rate), then the video's packets are cut from the same bytes, from the first, here (ts_demux.py for MPEG-TS,
mjpeg_parts.py for an HTTP MJPEG camera), where FFmpeg's demuxer would hold each frame back until the next began.

The connection is FFmpeg's own (its "data" demuxer gives a protocol's bytes as they arrive, whatever the protocol's
options: `?listen=1`, UDP multicast, the read timeout), so nothing about connecting changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

RAW_PACKET_BYTES = 65536  # the most bytes the data demuxer gives at once (it gives what has arrived, up to this)


class Splits(Protocol):
    """What cuts a stream's bytes into the video's packets: `push` the bytes as they come, it returns the packets
    they complete; `flush` at the stream's end."""

    def push(self, data: bytes) -> list[bytes]: ...

    def flush(self) -> list[bytes]: ...


class SharedBytes:
    """A file-like object over `raw` (a container opened with `format="data"`) for `av.open`: `read` gives the
    stream's bytes and keeps them. After FFmpeg has opened the stream, `rest()` gives every byte, those FFmpeg read
    first, then the ones it never saw as they come (then FFmpeg's container must not read again)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._chunks: Iterator[Any] = raw.demux()
        self._read: list[bytes] | None = []  # what `read` gave (None: not kept, FFmpeg reads on alone)
        self._left = b""  # what was received and not given yet

    def read(self, size: int = -1) -> bytes:
        if not self._left:
            self._left = self._next()
        cut = len(self._left) if size < 0 else size
        data, self._left = self._left[:cut], self._left[cut:]
        if self._read is not None:
            self._read.append(data)
        return data

    def peek(self) -> bytes:
        """The first bytes received (waiting for them), still to be read."""
        if not self._left:
            self._left = self._next()
        return self._left

    def let_go(self) -> None:
        """FFmpeg's container reads on alone: what it reads is no longer kept."""
        self._read = None

    def rest(self) -> Iterator[bytes]:
        """Every byte of the stream from the first, in chunks as they come; ends at the stream's end."""
        read, self._read = self._read or [], None
        yield b"".join(read) + self._left
        self._left = b""
        while chunk := self._next():
            yield chunk

    def _next(self) -> bytes:
        """The next bytes received (b"" at the stream's end); FFmpeg's errors (a timeout: av.ExitError) raised."""
        for packet in self._chunks:
            if packet.size:
                return bytes(packet)
        return b""

    def close(self) -> None:
        self._raw.close()
