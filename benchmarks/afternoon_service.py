"""The service a user writes in an afternoon: FastAPI, a plain `def` endpoint, Ultralytics `YOLO(model).predict`
on `cv2.imdecode`'d bytes. The benchmark's HTTP peer (started and stopped by `benchmarks.peers`); nothing else here.

Run: `AFTERNOON_MODEL=path uvicorn benchmarks.afternoon_service:app` (a .pt, .onnx or *_openvino_model folder).
"""

import os

import cv2
import numpy as np
from fastapi import FastAPI, File, UploadFile
from ultralytics import YOLO

app = FastAPI()
model = YOLO(os.environ["AFTERNOON_MODEL"], task="detect")
imgsz = int(os.environ.get("AFTERNOON_IMGSZ", "640"))


@app.post("/predict")
def predict(file: UploadFile = File(...)) -> dict[str, list[dict[str, object]]]:  # noqa: B008 - FastAPI idiom
    image = cv2.imdecode(np.frombuffer(file.file.read(), np.uint8), cv2.IMREAD_COLOR)
    boxes = model.predict(image, imgsz=imgsz, conf=0.25, iou=0.7, device="cpu", verbose=False)[0].boxes
    return {
        "detections": [
            {"class_id": int(c), "confidence": float(s), "box": b.tolist()}
            for b, s, c in zip(boxes.xyxy.numpy(), boxes.conf.numpy(), boxes.cls.numpy(), strict=True)
        ]
    }


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
