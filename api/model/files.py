"""Which files `/admin/reload` may load: only model files under the configured model directory.

The path comes from a client (an admin key can leak), so it is checked before anything is read: it must resolve
(symlinks included) to a regular file inside `inference.server.model_dir`, with a model suffix and at most
`max_model_mb`. A path outside the directory gets the same answer whether or not it exists, so the endpoint cannot
be used to probe the server's filesystem.
"""

from __future__ import annotations

from pathlib import Path

from api.errors import PayloadTooLargeError, UnprocessableError, UnsupportedMediaTypeError
from detector.runtime.model_source import is_registry_uri

MODEL_SUFFIXES = (".onnx", ".engine")


def model_dir(configured: str, model_path: str, registry_cache_dir: str = "models/registry") -> Path:
    """The directory reloads may load from: `configured`, or the folder of the initial model (for a registry URI,
    which names no folder: the folder above the registry cache, `models/` by default)."""
    if configured:
        return Path(configured).resolve()
    if is_registry_uri(model_path):
        return Path(registry_cache_dir).resolve().parent
    return Path(model_path).parent.resolve()


def checked_model_path(requested: str, directory: Path, max_bytes: int) -> Path:
    """`requested` (absolute, or relative to `directory`) as a resolved path inside `directory`; 4xx otherwise."""
    outside = UnprocessableError(
        f"model_path must name a model file inside the model directory {directory} "
        "(inference.server.model_dir); other paths are not loaded"
    )
    try:
        path = (directory / requested).resolve()  # an absolute `requested` replaces `directory`
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        raise outside from None
    if not path.is_relative_to(directory):
        raise outside
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise UnsupportedMediaTypeError(
            f"model_path must be an ONNX model or a TensorRT engine ({', '.join(MODEL_SUFFIXES)}), got {path.name!r}"
        )
    if not path.is_file():
        raise UnprocessableError(f"model file not found in the model directory: {path.relative_to(directory)}")
    size = path.stat().st_size
    if size > max_bytes:
        raise PayloadTooLargeError(
            f"model file {path.name} is {size} bytes; the limit is {max_bytes} bytes (inference.server.max_model_mb)"
        )
    return path
