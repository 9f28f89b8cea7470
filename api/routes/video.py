"""`POST /predict/video`: a short clip in, NDJSON out, one line per processed frame as soon as it is ready.

The upload (a multipart form's `file`, or the clip itself as the body) is bounded by `max_upload_mb` like every
body, then spooled to one temporary file (OpenCV reads files), probed, and refused before streaming starts when it
is not a video (415) or longer than `max_video_seconds` / `max_video_frames` (422) or its frames are over
`max_pixels` (413).

Untrusted clips (issue 21): the first bytes must start an MP4/MOV, Matroska/WebM or AVI container before FFmpeg
sees the file (a playlist is a 415 whatever it names); the temporary file is named by the server, with the suffix
of the container found, never the client's name or extension; and FFmpeg may open only local files with those
three demuxers (`detector.runtime.video.restrict_ffmpeg`). At most `max_video_jobs` clips stream at once, each
frame in flight holds its pixels in the shared decode budget, and a client that reads nothing for
`video_send_timeout_s` is dropped (the clip removed). Frames are decoded in the decode pool and submitted to the same
micro-batcher as images, up to `max_batch` frames in flight, so a clip fills batches by itself; lines come out in
frame order, tracked (ByteTrack) in that order. The temporary file is removed whatever happens: a refused clip, the
end of the stream, an error, or the client going away mid-stream; and if the process itself dies mid-stream, by the
next service to start (api/admission/spool.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from api.admission.bodies import clip_is_body
from api.admission.http_protocol import CLOSE_EXTENSION
from api.admission.spool import SpooledClip, spool
from api.deps import OptionsDep, ReadyServiceDep
from api.docs import query_parameters, request_body
from api.errors import (
    ApiError,
    BadRequestError,
    PayloadTooLargeError,
    UnprocessableError,
    UnsupportedMediaTypeError,
    status_for,
)
from api.inference.pipeline import FRAME, FrameStream, Pipeline
from api.routes.encoding import timing_headers
from api.schemas import PredictionQuery, VideoForm, VideoFrame, error_responses, ndjson, schema_ref
from detector.config import ServerConfig
from detector.errors import DetectorError, ImageTooLargeError
from detector.runtime.tracking import Tracker
from detector.runtime.video import (
    NotAVideoError,
    VideoInfo,
    probe_video,
    read_frames,
    restrict_ffmpeg,
    sniff_container,
)

log = logging.getLogger("api.video")
router = APIRouter(tags=["inference"])
restrict_ffmpeg()  # before any clip is opened in this process: local files, MP4/MOV/Matroska/WebM/AVI demuxers only


class _VideoJob:
    """The temporary clip and its frames in the pipeline; `close()` is synchronous and idempotent, so it can run from
    a `finally` during cancellation (no await), and waits for nothing (api/inference/pipeline.py, FrameStream)."""

    def __init__(self, clip: SpooledClip) -> None:
        self.clip = clip
        self.path = clip.path
        self.frames: FrameStream | None = None
        self.closed = False
        self.lines = 0  # NDJSON lines handed to the server so far
        self.finished = False  # the stream reached its end (or its error line)
        self.on_close: list[Callable[[], None]] = []  # run once by close(): give back the job place

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for callback in self.on_close:
            with contextlib.suppress(Exception):
                callback()
        if self.frames is not None:
            self.frames.close()
        self.clip.close()


class _StalledReader(Exception):
    """The client stopped reading the stream for longer than the send timeout."""


class _NDJSONResponse(StreamingResponse):
    """A StreamingResponse that closes its job however the stream ends (Starlette leaves a generator suspended
    when the client disconnects, to be finalised whenever it is garbage-collected)."""

    def __init__(
        self, content: AsyncIterator[bytes], job: _VideoJob, headers: dict[str, str], send_timeout_s: float
    ) -> None:
        super().__init__(content, media_type="application/x-ndjson", headers=headers)
        self.job = job
        self.send_timeout_s = send_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def timed_send(message: Message) -> None:
            # uvicorn's send waits while the client does not read (the socket's buffers are full): bound that wait.
            try:
                async with asyncio.timeout(self.send_timeout_s):
                    await send(message)
            except TimeoutError:
                raise _StalledReader from None

        try:
            await super().__call__(scope, receive, timed_send)
        except _StalledReader:
            log.warning(
                "dropped a video stream after %d lines: the client read nothing for %g s",
                self.job.lines,
                self.send_timeout_s,
            )
            self.job.finished = True
            # Drop the connection (api/admission/http_protocol.py offers that), so the server sees a disconnect, not an
            # unfinished response; give the loop a turn to process it.
            close = scope.get("extensions", {}).get(CLOSE_EXTENSION, {}).get("close")
            if close is not None:
                close()
                for _ in range(3):
                    await asyncio.sleep(0)
        finally:
            if not self.job.finished:
                log.info("video stream stopped after %d lines: the client went away", self.job.lines)
            self.job.close()


@router.post(
    "/predict/video",
    summary="Detect (and track) objects in a short video, streamed as NDJSON",
    description=(
        "Multipart field `file`, or the clip itself as the body (`Content-Type: video/mp4`, any `video/*`, or "
        "`application/octet-stream`): an MP4/AVI/MKV/WebM/MOV clip within `max_upload_mb`, `max_video_seconds` and "
        "`max_video_frames` (413/422 beyond). Answers `application/x-ndjson`: one JSON line per processed frame "
        '(`{"frame", "time_s", "detections", "timings_ms"}`), each sent as soon as it is ready. '
        "`vid_stride=N` processes every N-th frame; `track=true` adds a stable `track_id` (ByteTrack) to each "
        'detection. A frame that cannot be decoded (damaged data) gets a `{"warning": {"frame", "detail"}}` line '
        "in its place, and the frames after it follow. A failure after streaming began ends the stream with one "
        '`{"error": {"status", "detail"}}` line. `Server-Timing` covers what happened before the first line (read, '
        "probe)."
    ),
    openapi_extra={**request_body(VideoForm, raw="video/*"), **query_parameters(PredictionQuery)},
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "One JSON object per line, per processed frame",
            "content": {"application/x-ndjson": {"schema": schema_ref(VideoFrame)}},
        },
        **error_responses(400, 413, 415, 422, 503),
    },
)
async def predict_video(
    request: Request,
    service: ReadyServiceDep,
    options: OptionsDep,
    track: Annotated[bool, Query(description="Give each detection a stable track_id across frames")] = False,
    vid_stride: Annotated[int, Query(ge=1, le=1000, description="Process every N-th frame")] = 1,
) -> StreamingResponse:
    started = time.perf_counter()
    pipeline = service.pipeline
    as_body = clip_is_body(request)
    job: _VideoJob | None = None
    # Up to max_video_jobs clips stream at once: wait in line for a place (bulk_wait_s), then 503. Given back by
    # job.close().
    await pipeline.wait_for_room(service.video_jobs.has_room)
    service.video_jobs.take()
    try:
        # Uploads are bounded apart from the inference queue: a slow sender holds an upload place, never a queue
        # place (each frame reserves its own when it runs).
        with pipeline.receiving():
            job = await (_spool_body if as_body else _spool_upload)(request, pipeline)
        job.on_close.append(service.video_jobs.give_back)  # from here on, closing the job gives the place back
        t_read = time.perf_counter()
        info = await pipeline.decoder.run(_probe, job.path, pipeline.server.max_pixels)
        _check_limits(pipeline.server, info)
        if options.tiling is not None:  # frames are tiled whole (never decoded reduced): a 422 before any line
            pipeline.tile_grid(options.tiling, info.width, info.height)
        t_probe = time.perf_counter()
    except BaseException:
        if job is not None:
            job.close()
        else:
            service.video_jobs.give_back()
        raise
    timings = {"read": round((t_read - started) * 1e3, 3), "probe": round((t_probe - t_read) * 1e3, 3)}
    headers = timing_headers(
        timings, **{"X-Video-Frames": str(info.frames), "X-Video-Fps": f"{info.fps:g}", "Cache-Control": "no-store"}
    )
    reduce_to = pipeline.reduce_to(options, FRAME)  # frames decode at the model's size where the codec can
    frames = read_frames(job.path, vid_stride, pipeline.server.max_pixels, keep_skipped=False, reduce_to=reduce_to)
    job.frames = pipeline.frames(frames, (info.width, info.height), options)
    stream = _lines(job, Tracker(info.fps / vid_stride) if track else None, vid_stride)
    return _NDJSONResponse(stream, job, headers, pipeline.server.video_send_timeout_s)


async def _spool_upload(request: Request, pipeline: Pipeline) -> _VideoJob:
    """The multipart `file` copied into a fresh temporary file (its own name, removed by the job)."""
    form = await request.form(max_files=1, max_fields=4)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            found = ", ".join(sorted(form)) or "none"
            raise BadRequestError(f"send the clip as a multipart file field named 'file' (fields found: {found})")
        if upload.size is not None and upload.size > pipeline.max_body_bytes:
            raise PayloadTooLargeError(f"the clip is {upload.size} bytes; the limit is {pipeline.max_body_bytes}")
        # The container is read from the first bytes, before FFmpeg sees anything; the file gets the server's name
        # and that container's suffix, never the client's name or extension.
        suffix = _container_suffix(upload.file)
        job = _VideoJob(spool(pipeline.server.video_tmp_dir or None, suffix))
        try:
            with os.fdopen(job.clip.writer(), "wb") as out:
                await asyncio.get_running_loop().run_in_executor(None, shutil.copyfileobj, upload.file, out)
            if job.path.stat().st_size == 0:
                raise BadRequestError("the clip is empty (0 bytes)")
        except BaseException:
            job.close()
            raise
        return job
    finally:
        await form.close()


SNIFF_BYTES = 64  # what `_container_suffix` reads to name a container


async def _spool_body(request: Request, pipeline: Pipeline) -> _VideoJob:
    """The clip sent as the body itself, written to a fresh temporary file as it arrives: no form to parse, and no
    second copy (a form's file is spooled by Starlette first, then copied here). Its size is capped as it arrives
    (api/admission/limits.py), the container named from its first bytes before anything is written. Chunks are
    written from the event loop: a page-cache write of one (64 KB from uvicorn) takes tens of microseconds, less
    than a hand-over to a thread."""
    head = bytearray()
    job: _VideoJob | None = None
    out: Any = None
    try:
        async for chunk in request.stream():
            if out is None:
                head += chunk
                if len(head) < SNIFF_BYTES:
                    continue
                job, out = _open_spool(pipeline, bytes(head))
            else:
                out.write(chunk)
        if out is None:  # a body shorter than SNIFF_BYTES (or empty)
            job, out = _open_spool(pipeline, bytes(head))
        out.close()
    except BaseException:
        if out is not None:
            out.close()
        if job is not None:
            job.close()
        raise
    assert job is not None
    return job


def _open_spool(pipeline: Pipeline, head: bytes) -> tuple[_VideoJob, Any]:
    """A job on a fresh temporary file named for the container `head` starts (415/400 before anything is created),
    and that file open for writing, `head` written."""
    suffix = _container_suffix(io.BytesIO(head))
    job = _VideoJob(spool(pipeline.server.video_tmp_dir or None, suffix))
    try:
        out = os.fdopen(job.clip.writer(), "wb")
        out.write(head)
    except BaseException:
        job.close()
        raise
    return job, out


def _container_suffix(file: Any) -> str:
    """The suffix for the container `file` starts (its position is restored); 415 for anything else: an image
    (named, with a pointer to /predict), a playlist, or any other bytes."""
    head = file.read(SNIFF_BYTES)
    file.seek(0)
    if not head:
        raise BadRequestError("the clip is empty (0 bytes)")
    suffix = sniff_container(head)
    if suffix is not None:
        return suffix
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as img:
            kind = img.format
    except (UnidentifiedImageError, OSError, ValueError, ImportError):
        kind = None
    finally:
        file.seek(0)
    if kind is not None:
        raise UnsupportedMediaTypeError(f"this is a {kind} image, not a video: send images to /predict")
    raise UnsupportedMediaTypeError(
        "not a video: the file does not start an MP4/MOV, Matroska/WebM or AVI container (the formats accepted)"
    )


def _probe(path: Path, max_pixels: int) -> VideoInfo:
    """415 for anything OpenCV cannot open as a video; 413 for frames over `max_pixels`; 422 for a video without a
    decodable frame."""
    try:
        return probe_video(path, max_pixels)
    except NotAVideoError as exc:
        raise UnsupportedMediaTypeError(f"{exc}".replace(path.name, "the upload")) from None
    except ImageTooLargeError as exc:
        raise PayloadTooLargeError(f"{exc}".replace(path.name, "the upload")) from None
    except DetectorError as exc:
        raise UnprocessableError(f"{exc}".replace(path.name, "the upload")) from None


def _check_limits(server: ServerConfig, info: VideoInfo) -> None:
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


async def _lines(job: _VideoJob, tracker: Tracker | None, vid_stride: int) -> AsyncIterator[bytes]:
    """One NDJSON line per processed frame, in frame order, tracked in that order (over a damaged frame skipped, the
    tracks are predicted across it); a warning line for a frame that could not be decoded; an error after streaming
    began ends the stream with one error line."""
    assert job.frames is not None
    try:
        async for index, time_s, prediction in job.frames:
            if prediction is None:  # a packet the decoder rejected (damaged data)
                detail = f"frame {index} cannot be decoded (damaged data): skipped, the frames after it follow"
                log.info("video stream: %s", detail)
                job.lines += 1
                yield ndjson({"warning": {"frame": index, "detail": detail}})
                continue
            detections = prediction.detections
            track_ids = tracker.update(detections, index // vid_stride) if tracker else None
            line = VideoFrame.body(index, time_s, detections, track_ids, prediction.timings_ms)
            job.lines += 1
            yield ndjson(line)
        job.finished = True
    except (ApiError, DetectorError) as exc:
        status = exc.status if isinstance(exc, ApiError) else status_for(exc)
        detail = exc.detail if isinstance(exc, ApiError) else str(exc)
        log.warning("video stream ended early (%d): %s", status, detail)
        job.finished = True
        yield ndjson({"error": {"status": status, "detail": detail}})
    finally:
        job.close()
