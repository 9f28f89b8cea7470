"""The library's error tree.

Every error a user can cause or fix is one of these, with a message that says what to do. The HTTP layer maps
them to status codes in one place (`api/errors.py`); the CLI prints the message and exits non-zero.
"""

from __future__ import annotations

from typing import Any


class DetectorError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(DetectorError):
    """A configuration file or override is malformed, names an unknown key, or holds a bad value."""


class DatasetError(DetectorError):
    """A dataset is missing, incomplete or malformed (the message names the file and line)."""


class ModelLoadError(DetectorError):
    """A model file is missing, unreadable, corrupt, or not usable by the chosen backend."""


class MissingMetadataError(ModelLoadError):
    """An ONNX file carries neither this project's metadata nor Ultralytics' (class names, input size)."""


class MissingDependencyError(DetectorError):
    """An optional package needed for the requested feature is not installed (the message names the extra)."""


class BackendUnavailableError(DetectorError):
    """A backend cannot run here (no GPU, library missing, incompatible engine); `auto` falls back past it."""


class BackendFailedError(BackendUnavailableError):
    """A loaded backend broke while running (a CUDA error at inference) and will not recover in this process: after
    illegal-address-class faults every later CUDA call fails until the process ends. The service reports it on
    /health (503) and exits non-zero so that the orchestrator restarts it."""


class InvalidInputError(DetectorError):
    """Input data is not usable: wrong array shape or dtype, out-of-range parameter."""


class InvalidImageError(InvalidInputError):
    """Image bytes cannot be decoded, are truncated, or use an unsupported format."""


class ImageTooLargeError(InvalidInputError):
    """An image (or upload) exceeds the configured byte or pixel limits."""


class UnsupportedImageFormatError(InvalidImageError):
    """The image is in a format the service does not accept."""


class AccuracyGateError(DetectorError):
    """An optimised model (e.g. INT8) lost more accuracy than the configured gate allows; nothing was written.
    `gate` holds the measured numbers (both models' metrics, the drop and the limit) for reports."""

    def __init__(self, message: str, gate: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.gate: dict[str, Any] = dict(gate or {})


class QuantizationRefusedError(DetectorError):
    """The quantizer could not make a usable INT8 model of this architecture (it failed, or its graph is not one
    every backend takes); nothing was written. The FP32 model is unaffected."""


class PromotionRefusedError(DetectorError):
    """The promotion gate refused to move a registry alias to a model version; the message names each class and
    backend that failed it (`configs/quality.yaml`)."""
