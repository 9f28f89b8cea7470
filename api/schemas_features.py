"""Response models of the feature endpoints: `/predict/annotated?include=json`, `/predict/batch`, `/predict/video`
(documentation for Swagger; the bodies are built from the same payload as `/predict`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import Detection, PredictionResponse


class AnnotatedImage(BaseModel):
    media_type: str = Field("image/jpeg", description="Always image/jpeg")
    width: int
    height: int
    base64: str = Field(description="The drawn JPEG, base64-encoded")


class AnnotatedPredictionResponse(PredictionResponse):
    """`/predict/annotated?include=json`: the `/predict` body plus the drawn image."""

    annotated_image: AnnotatedImage


class ItemError(BaseModel):
    status: int = Field(description="The status `/predict` would have answered for this image alone")
    detail: str


class BatchItemError(BaseModel):
    error: ItemError


class BatchResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        {
                            "detections": [],
                            "image": {"width": 64, "height": 64},
                            "model": {"name": "yolov8n", "version": "yolov8n-v1-529085f7", "backend": "onnxruntime"},
                            "timings_ms": {"read": 0.1, "decode": 0.2, "queue_wait": 0.5, "total": 4.0},
                        },
                        {"error": {"status": 415, "detail": "image format GIF is not accepted; send one of: JPEG"}},
                    ],
                    "timings_ms": {"read": 0.3, "total": 6.1},
                }
            ]
        }
    )

    results: list[PredictionResponse | BatchItemError] = Field(
        description="One entry per `files` part, in the order sent: the `/predict` body, or an error for that image"
    )
    timings_ms: dict[str, float] = Field(description="read (the whole body) and total, for the request as a whole")


class VideoDetection(Detection):
    track_id: int | None = Field(None, description="With track=true: stable across frames (null until confirmed)")


class VideoFrame(BaseModel):
    """One NDJSON line of `/predict/video` (media type application/x-ndjson)."""

    frame: int = Field(description="Index of the frame in the clip (0-based)")
    time_s: float = Field(description="frame / fps")
    detections: list[VideoDetection]
