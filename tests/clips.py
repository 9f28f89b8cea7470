"""Test media made on the fly: a short clip in which one real object the quick model detects moves across."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from detector.runtime import Detector
from detector.runtime.images import read_image


def confident_scene(model_path: Path, dataset_dir: Path, shift: int = 48) -> tuple[np.ndarray, str]:
    """A test image and a class the quick model finds there exactly once, confidently, and far enough from the left
    and right edges that panning the image by `shift` px (mirrored at the border) neither cuts the object nor shows
    its mirror image. With `classes=<that class>` a clip of it has exactly one object to track.

    Built from what the model does detect, not from the labels: the most confident such detection among the first
    20 test images. It must clear ByteTrack's 0.4 high-confidence threshold with margin: the quick profile's
    models score 0.9 and more on these scenes (the threshold 0.5 is a check of the training, not a tuning knob)."""
    best: tuple[float, np.ndarray, str] | None = None
    margin = shift // 2 + 8
    with Detector.load(model_path, "onnxruntime") as det:
        for path in sorted((dataset_dir / "images" / "test").glob("*.jpg"))[:20]:
            image = read_image(path)
            found = det.predict(image, conf=0.1)  # a weaker twin of the same class would be tracked too
            names = found.class_names()
            for box, score, name in zip(found.xyxy, found.confidence, names, strict=True):
                alone = names.count(name) == 1
                inside = box[0] > margin and box[2] < image.shape[1] - margin
                if alone and inside and (best is None or score > best[0]):
                    best = (float(score), image, name)
    assert best is not None and best[0] > 0.5, f"the quick model finds nothing confident enough ({best and best[0]})"
    return best[1], best[2]


def write_moving_clip(scene: np.ndarray, path: Path, frames: int = 30, shift: int = 48, fps: float = 15) -> Path:
    """`frames` frames of `scene` panned `shift` px sideways (mirrored at the border): its objects move across. An
    .avi is MJPEG, anything else mp4v."""
    bgr = np.ascontiguousarray(scene[:, :, ::-1])
    h, w = bgr.shape[:2]
    wide = cv2.copyMakeBorder(bgr, 0, 0, shift // 2, shift - shift // 2, cv2.BORDER_REFLECT)
    fourcc = "MJPG" if path.suffix.lower() == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (w, h))
    for i in range(frames):
        off = round(i * shift / max(frames - 1, 1))
        writer.write(np.ascontiguousarray(wide[:, off : off + w]))
    writer.release()
    return path


def write_mjpeg_of_sizes(
    path: Path,
    sizes: list[tuple[int, int]],
    fps: int = 10,
    scene: np.ndarray | None = None,
    damaged: frozenset[int] = frozenset(),
) -> Path:
    """An AVI of MJPEG frames of the given (width, height) each, its header declaring the first: a clip whose frame
    size changes mid-stream (each MJPEG packet is a whole JPEG of its own size). Each frame is `scene` (RGB)
    stretched to its size, or mid-grey with a white square; the frames in `damaged` keep their JPEG's start of image
    and length, and the rest of their bytes is zeroed (bits lost on a disk or on the way)."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mjpeg", rate=fps)
        stream.width, stream.height, stream.pix_fmt = *sizes[0], "yuvj420p"
        for i, (width, height) in enumerate(sizes):
            if scene is not None:
                frame = cv2.resize(np.ascontiguousarray(scene[:, :, ::-1]), (width, height))
            else:
                frame = np.full((height, width, 3), 128, np.uint8)
                half = min(width, height) // 6
                frame[height // 2 - half : height // 2 + half, width // 2 - half : width // 2 + half] = 255
            data = cv2.imencode(".jpg", frame)[1].tobytes()
            if i in damaged:
                data = data[:2] + bytes(len(data) - 2)
            packet = av.Packet(data)
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, fps)
            out.mux(packet)
    return path


def turn_mp4(path: Path, out: Path, degrees: int) -> Path:
    """A copy of the MP4 at `path` whose track says to show it turned clockwise by `degrees` (90, 180, 270), as a
    phone writes a portrait clip: the pixels stay as they are, the track header's display matrix changes."""
    import struct

    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd") + 4  # the box's version byte
    # version, flags, creation, modification, track id, reserved, duration, reserved, layer, group, volume, reserved
    matrix = at + (4 + 8 + 8 + 4 + 4 + 8 if data[at] == 1 else 4 + 4 + 4 + 4 + 4 + 4) + 8 + 8
    one, minus = 0x10000, -0x10000 & 0xFFFFFFFF
    a, b, c, d = {90: (0, one, minus, 0), 180: (minus, 0, 0, minus), 270: (0, minus, one, 0)}[degrees]
    data[matrix : matrix + 20] = struct.pack(">IIIII", a, b, 0, c, d)
    out.write_bytes(bytes(data))
    return out


def write_vfr_clip(path: Path, times_ms: list[int], size: tuple[int, int] = (160, 120)) -> Path:
    """An H.264 MP4 whose frames are shown at `times_ms` (a variable frame rate, as phones record in low light):
    frame i is grey level 4 * i with a white square moving right."""
    from fractions import Fraction

    import av

    width, height = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, at in enumerate(times_ms):
            image = np.full((height, width, 3), 4 * i % 256, np.uint8)
            image[height // 3 : height // 3 + 30, 2 * i % (width - 30) :][:, :30] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = at, Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def b_frames(path: Path) -> int:
    """How many of the clip's frames are B-frames (PyAV decodes it whole)."""
    import av

    with av.open(str(path)) as container:
        return sum(frame.pict_type == av.video.frame.PictureType.B for frame in container.decode(video=0))
