"""Datasets: the bundled procedural generator, the importers of COCO/VOC/YOLO exports (`detector.data.importers`),
the YOLO-format validator and the content hash."""

from detector.data.generator import VERSIONS, DatasetSummary, generate_dataset
from detector.data.hashing import dataset_hash
from detector.data.validate import DatasetProblem, check_dataset, load_names, validate_dataset

__all__ = [
    "VERSIONS",
    "DatasetProblem",
    "DatasetSummary",
    "check_dataset",
    "dataset_hash",
    "generate_dataset",
    "load_names",
    "validate_dataset",
]
