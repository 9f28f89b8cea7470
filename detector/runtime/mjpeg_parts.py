"""An HTTP MJPEG camera's JPEGs, each as soon as its last byte is in, not when the next part begins.

FFmpeg's multipart reader (its mpjpeg demuxer) reads a part's `Content-Length` bytes where the part's headers give it,
and otherwise reads on until the next boundary line, which the camera sends with its next frame: a camera that leaves
the length out (the Flask "video streaming" pattern that many Python-built and Raspberry Pi cameras copy) had every
frame wait one frame interval (measured on loopback, a 720p camera at 15 fps, p50 from its send to the decoded frame:
70.8 ms without the length, 4.0 ms with it). A JPEG says where it ends: `JpegParts` gives each part at its End Of
Image marker, found by walking the JPEG's segments (each has its length) up to its scan and then the scan's bytes
(where 0xFF is always followed by 0x00 or a restart marker, except at a marker), so an EXIF thumbnail's own marker,
inside a segment, is never taken for it. A part whose length is given is read by it; a part that is not a JPEG the
walk can follow ends at the next boundary line, FFmpeg's way.
"""

from __future__ import annotations

import re

MAX_PART = 32 << 20  # bytes: a part longer than this is dropped (a 4K JPEG is a few MiB)
_LENGTH = re.compile(rb"^content-length:\s*(\d+)\s*$", re.IGNORECASE | re.MULTILINE)
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")  # the headers' end (lines end in CRLF, or LF as some cameras write)


class JpegParts:
    """`push` the bytes of a `multipart/x-mixed-replace` stream of JPEGs as they come (any split); it returns the
    parts completed by them (their bodies). `flush` at the stream's end gives nothing more: a part cut off there is
    incomplete."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._boundary = b""  # the boundary line ("--frame"), from the first part
        self._body = -1  # where the current part's body starts in the buffer; -1: in its boundary and headers
        self._length = -1  # its Content-Length; -1: not given
        self._walk = _JpegEnd()

    def push(self, data: bytes) -> list[bytes]:
        self._buffer += data
        parts: list[bytes] = []
        while (part := self._next()) is not None:
            parts.append(part)
        if len(self._buffer) > MAX_PART:  # no end in sight: dropped, and the next boundary looked for
            self._start_over(len(self._buffer))
        return parts

    def flush(self) -> list[bytes]:
        return []

    def _next(self) -> bytes | None:
        """The next whole part's body, consumed from the buffer; None until more bytes come."""
        buffer = self._buffer
        if self._body < 0 and not self._headers():
            return None
        if self._length >= 0:
            end = self._body + self._length
            if len(buffer) < end:
                return None
            return self._take(end, end)
        jpeg_end = self._walk.end(buffer, self._body)
        if jpeg_end is not None:
            return self._take(jpeg_end, jpeg_end)
        if self._walk.lost:  # not a JPEG it can follow: up to the next boundary line
            at = buffer.find(b"\n" + self._boundary, self._body)
            if at >= 0:
                return self._take(at - (buffer[at - 1 : at] == b"\r"), at)
        return None

    def _headers(self) -> bool:
        """Find the next part's boundary line and headers; True once its body's start is known."""
        buffer = self._buffer
        if not self._boundary:
            start = buffer.find(b"--")
            line_end = buffer.find(b"\n", start) if start >= 0 else -1
            if line_end < 0:
                return False
            self._boundary = bytes(buffer[start:line_end]).rstrip()
        start = buffer.find(self._boundary)
        if start < 0:
            del buffer[: max(0, len(buffer) - len(self._boundary))]  # (what cannot begin the boundary)
            return False
        head_end = _BLANK_LINE.search(buffer, start)
        if head_end is None:
            return False
        length = _LENGTH.search(bytes(buffer[start : head_end.start()]))
        self._length = int(length.group(1)) if length else -1
        self._body = head_end.end()
        self._walk = _JpegEnd()
        return True

    def _take(self, end: int, consumed: int) -> bytes:
        part = bytes(self._buffer[self._body : end])
        self._start_over(consumed)
        return part

    def _start_over(self, consumed: int) -> None:
        del self._buffer[:consumed]
        self._body, self._length = -1, -1


class _JpegEnd:
    """Where a JPEG ends (just after its End Of Image marker), walked incrementally as its bytes come: `end` is None
    until the marker is in, and `lost` once the bytes are not a JPEG's."""

    def __init__(self) -> None:
        self._at = -1  # the offset walked to, from the body's start; -1: the start
        self._scan = False  # inside a scan's entropy-coded bytes
        self.lost = False

    def end(self, buffer: bytearray, body: int) -> int | None:
        if self.lost:
            return None
        if self._at < 0:
            if len(buffer) - body < 2:
                return None
            if buffer[body : body + 2] != b"\xff\xd8":  # no Start Of Image
                self.lost = True
                return None
            self._at = 2
        at, size = body + self._at, len(buffer)
        while True:
            if self._scan:
                if at >= size:  # (the scan's header not all in yet)
                    break
                at = buffer.find(b"\xff", at)
                if at < 0 or at + 1 >= size:
                    at = size - 1 if at >= 0 else size
                    break
                marker = buffer[at + 1]
                if marker == 0x00 or 0xD0 <= marker <= 0xD7:  # a stuffed 0xFF, a restart marker: still the scan
                    at += 2
                    continue
                if marker == 0xFF:  # fill bytes before a marker
                    at += 1
                    continue
                self._scan = False  # a marker: the scan is over
            if size - at < 2:
                break
            if buffer[at] != 0xFF:
                self.lost = True
                return None
            marker = buffer[at + 1]
            if marker == 0xD9:  # End Of Image
                return at + 2
            if marker == 0xFF:
                at += 1
                continue
            if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
                at += 2
                continue
            if size - at < 4:
                break
            at += 2 + (buffer[at + 2] << 8 | buffer[at + 3])  # the segment, by its length
            self._scan = marker == 0xDA  # Start Of Scan: its entropy-coded bytes follow its header
        self._at = at - body
        return None
