"""`POST /predict/video`: a short clip in, NDJSON out, one line per processed frame as soon as it is ready.

The upload is bounded by `max_upload_mb` like every body, then spooled to one temporary file (OpenCV reads
files), probed, and refused before streaming starts when it is not a video (415) or longer than
`max_video_seconds` / `max_video_frames` (422). Frames are decoded in the decode pool and submitted to the same
micro-batcher as images, up to `max_batch` frames in flight, so a clip fills batches by itself; lines come out in
frame order, tracked (ByteTrack) in that order. The temporary file is removed whatever happens: a refused clip, the
end of the stream, an error, or the client going away mid-stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from api.batching import GroupKey
from api.deps import ReadyServiceDep
from api.errors import (
    ApiError,
    BadRequestError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    UnprocessableError,
    UnsupportedMediaTypeError,
    status_for,
)
from api.inputs import require_multipart
from api.params import ClassesQuery, ConfQuery, IouQuery, MaxDetQuery
from api.pipeline import class_filter, group_key
from api.schemas import error_responses
from api.schemas_features import VideoFrame
from api.service import Service
from api.timing import timing_headers
from detector.errors import DetectorError
from detector.runtime.classes import filter_classes
from detector.runtime.video import NotAVideoError, Tracker, VideoInfo, frame_record, probe_video, read_frames

log = logging.getLogger("api.video")
router = APIRouter(tags=["inference"])
_RESERVE_RETRY_S = 0.02  # a full queue mid-stream: wait for room rather than fail the rest of the clip


class _VideoJob:
    """The temporary clip and its frame reader; `close()` is synchronous and idempotent, so it can run from a
    `finally` during cancellation (no await), and waits for nothing: a read in flight closes the reader itself."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.frames: Iterator[tuple[int, npt.NDArray[np.uint8], bool]] | None = None
        self.reading: Future[Any] | asyncio.Future[Any] | None = None
        self.pending: deque[tuple[int, asyncio.Task[Any]]] = deque()
        self.closed = False
        self.lines = 0  # NDJSON lines handed to the server so far
        self.finished = False  # the stream reached its end (or its error line)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for _, task in self.pending:
            task.cancel()
        frames = self.frames
        if frames is not None:
            if self.reading is not None and not self.reading.done():
                self.reading.add_done_callback(lambda _: _close_quietly(frames))
            else:
                _close_quietly(frames)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # an open capture keeps reading an unlinked file; the name is gone at once


def _close_quietly(frames: Iterator[Any]) -> None:
    close = getattr(frames, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()


class _NDJSONResponse(StreamingResponse):
    """A StreamingResponse that closes its job however the stream ends (Starlette leaves a generator suspended
    when the client disconnects, to be finalised whenever it is garbage-collected)."""

    def __init__(self, content: AsyncIterator[bytes], job: _VideoJob, headers: dict[str, str]) -> None:
        super().__init__(content, media_type="application/x-ndjson", headers=headers)
        self.job = job

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self.job.finished:
                log.info("video stream stopped after %d lines: the client went away", self.job.lines)
            self.job.close()


@router.post(
    "/predict/video",
    summary="Detect (and track) objects in a short video, streamed as NDJSON",
    description=(
        "Multipart field `file`: an MP4/AVI/MKV/WebM/MOV clip within `max_upload_mb`, `max_video_seconds` and "
        "`max_video_frames` (413/422 beyond). Answers `application/x-ndjson`: one JSON line per processed frame "
        '(`{"frame", "time_s", "detections", "timings_ms"}`), each sent as soon as it is ready. '
        "`vid_stride=N` processes every N-th frame; `track=true` adds a stable `track_id` (ByteTrack) to each "
        'detection. A failure after streaming began ends the stream with one `{"error": {"status", "detail"}}` '
        "line. `Server-Timing` covers what happened before the first line (read, probe)."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary", "description": "A video"}},
                    }
                }
            },
        }
    },
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "One JSON object per line, per processed frame",
            "content": {"application/x-ndjson": {"schema": VideoFrame.model_json_schema()}},
        },
        **error_responses(400, 413, 415, 422, 503),
    },
)
async def predict_video(
    request: Request,
    service: ReadyServiceDep,
    conf: ConfQuery = None,
    iou: IouQuery = None,
    max_det: MaxDetQuery = None,
    classes: ClassesQuery = None,
    track: Annotated[bool, Query(description="Give each detection a stable track_id across frames")] = False,
    vid_stride: Annotated[int, Query(ge=1, le=1000, description="Process every N-th frame")] = 1,
) -> StreamingResponse:
    started = time.perf_counter()
    key = group_key(service, conf, iou, max_det)
    wanted = class_filter(service, classes)
    require_multipart(request, "the clip as field 'file'")
    job: _VideoJob | None = None
    try:
        # Uploads are bounded apart from the inference queue: a slow sender holds an upload place, never a queue
        # place (each frame reserves its own when it runs).
        with service.uploads.place():
            job = await _spool_upload(request, service)
        t_read = time.perf_counter()
        info = await asyncio.get_running_loop().run_in_executor(service.decode_pool, _probe, job.path)
        _check_limits(service, info)
        t_probe = time.perf_counter()
    except BaseException:
        if job is not None:
            job.close()
        raise
    timings = {"read": round((t_read - started) * 1e3, 3), "probe": round((t_probe - t_read) * 1e3, 3)}
    headers = timing_headers(
        timings, **{"X-Video-Frames": str(info.frames), "X-Video-Fps": f"{info.fps:g}", "Cache-Control": "no-store"}
    )
    stream = _stream(service, job, info, key, wanted, Tracker(info.fps / vid_stride) if track else None, vid_stride)
    return _NDJSONResponse(stream, job, headers)


async def _spool_upload(request: Request, service: Service) -> _VideoJob:
    """The multipart `file` copied into a fresh temporary file (its own name, removed by the job)."""
    form = await request.form(max_files=1, max_fields=4)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            found = ", ".join(sorted(form)) or "none"
            raise BadRequestError(f"send the clip as a multipart file field named 'file' (fields found: {found})")
        if upload.size is not None and upload.size > service.max_image_bytes:
            raise PayloadTooLargeError(f"the clip is {upload.size} bytes; the limit is {service.max_image_bytes}")
        suffix = Path(upload.filename or "").suffix.lower()
        suffix = suffix if suffix.isascii() and suffix[1:].isalnum() and len(suffix) <= 6 else ".bin"
        tmp_dir = service.config.inference.server.video_tmp_dir or None
        fd, name = tempfile.mkstemp(prefix="detector-video-", suffix=suffix, dir=tmp_dir)
        job = _VideoJob(Path(name))
        try:
            with os.fdopen(fd, "wb") as out:
                await asyncio.get_running_loop().run_in_executor(None, shutil.copyfileobj, upload.file, out)
            if job.path.stat().st_size == 0:
                raise BadRequestError("the clip is empty (0 bytes)")
        except BaseException:
            job.close()
            raise
        return job
    finally:
        await form.close()


def _probe(path: Path) -> VideoInfo:
    """415 for an image or anything OpenCV cannot open as a video; 422 for a video without a decodable frame."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            kind = img.format
    except (UnidentifiedImageError, OSError, ValueError, ImportError):
        kind = None
    if kind is not None:
        raise UnsupportedMediaTypeError(f"this is a {kind} image, not a video: send images to /predict")
    try:
        return probe_video(path)
    except NotAVideoError as exc:
        raise UnsupportedMediaTypeError(f"{exc}".replace(path.name, "the upload")) from None
    except DetectorError as exc:
        raise UnprocessableError(f"{exc}".replace(path.name, "the upload")) from None


def _check_limits(service: Service, info: VideoInfo) -> None:
    server = service.config.inference.server
    if info.frames > server.max_video_frames:
        raise UnprocessableError(
            f"the clip has {info.frames} frames; the limit is {server.max_video_frames} "
            "(inference.server.max_video_frames): send a shorter clip"
        )
    if info.duration_s > server.max_video_seconds:
        raise UnprocessableError(
            f"the clip lasts {info.duration_s:.1f} s; the limit is {server.max_video_seconds:g} s "
            "(inference.server.max_video_seconds): send a shorter clip"
        )


async def _detect(service: Service, frame: npt.NDArray[np.uint8], key: GroupKey) -> tuple[Any, dict[str, float]]:
    """One frame through the micro-batcher; waits for a queue slot instead of failing mid-stream."""
    timeout = service.config.inference.server.request_timeout_s
    deadline = time.perf_counter() + timeout
    while True:
        try:
            reservation = service.batcher.reserve()
            break
        except ServiceUnavailableError:
            if time.perf_counter() > deadline or service.status == "shutting_down":
                raise
            await asyncio.sleep(_RESERVE_RETRY_S)
    try:
        outcome = await service.batcher.submit(reservation, frame, key, timeout)
    finally:
        reservation.release()
    return outcome.detections, outcome.timings_ms


async def _stream(
    service: Service,
    job: _VideoJob,
    info: VideoInfo,
    key: GroupKey,
    wanted: frozenset[int] | None,
    tracker: Tracker | None,
    vid_stride: int,
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    window = max(1, service.config.inference.server.max_batch)
    limit = service.config.inference.server.max_video_frames
    frames = read_frames(job.path, vid_stride)
    job.frames = frames

    def emit(index: int, result: tuple[Any, dict[str, float]]) -> bytes:
        detections, timings = result
        detections = filter_classes(detections, wanted)
        record = frame_record(index, info.fps, detections, tracker.update(detections) if tracker else None)
        record["timings_ms"] = timings
        return (json.dumps(record) + "\n").encode()

    try:
        while True:
            job.reading = loop.run_in_executor(service.decode_pool, next, frames, None)
            item = await job.reading
            job.reading = None
            if item is None:
                break
            index, frame, run = item
            if index >= limit:
                raise UnprocessableError(f"the clip has more than {limit} frames (inference.server.max_video_frames)")
            if run:
                job.pending.append((index, asyncio.ensure_future(_detect(service, frame, key))))
            while job.pending and (len(job.pending) >= window or job.pending[0][1].done()):
                index0, task = job.pending.popleft()
                job.lines += 1
                yield emit(index0, await task)
        while job.pending:
            index0, task = job.pending.popleft()
            job.lines += 1
            yield emit(index0, await task)
        job.finished = True
    except (ApiError, DetectorError) as exc:
        status = exc.status if isinstance(exc, ApiError) else status_for(exc)
        detail = exc.detail if isinstance(exc, ApiError) else str(exc)
        log.warning("video stream ended early (%d): %s", status, detail)
        job.finished = True
        yield (json.dumps({"error": {"status": status, "detail": detail}}) + "\n").encode()
    finally:
        job.close()
