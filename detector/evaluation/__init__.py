"""Model evaluation: mAP of an exported model through our runtime, numerically matching Ultralytics' validator.

Pure numpy (no torch or ultralytics), so it runs wherever the inference runtime does.
"""

from detector.evaluation.evaluate import evaluate_split, list_images, read_labels, read_rgb
from detector.evaluation.metrics import IOU_THRESHOLDS, DetectionMetrics, MetricsResult

__all__ = [
    "IOU_THRESHOLDS",
    "DetectionMetrics",
    "MetricsResult",
    "evaluate_split",
    "list_images",
    "read_labels",
    "read_rgb",
]
