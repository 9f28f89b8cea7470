#!/usr/bin/env bash
# GPU image entry point: build (or reuse) the TensorRT engine for THIS GPU, then serve.
#
#   entrypoint.sh serve        default: engine, then `detector serve` on 0.0.0.0:$PORT
#   entrypoint.sh <cmd> [...]  anything else runs as is (e.g. `detector backends`, `bash`)
#
# TensorRT engines are specific to a GPU model and TensorRT version, so they cannot ship in the image. The engine
# is cached in $DETECTOR_EXPORT__ENGINE__ENGINE_DIR (mount a volume there), keyed by the ONNX's sha256, the GPU,
# the TensorRT version, the precision and the batch profile: a restart with the same model reuses it, a new model
# gets a new engine. The service's TensorRT backend reads the same configuration keys, so it loads exactly the
# engine built here.
#
# If the engine cannot be built (no GPU visible, unsupported layer, ...), the service still starts, on ONNX Runtime
# (`backend=onnxruntime`, named explicitly: `auto` would try TensorRT again inside the server and fail the same way,
# slowly), and says so in the log: a slower service beats no service.
#
# Environment (all optional):
#   DETECTOR_INFERENCE__MODEL_PATH        ONNX model                      (default models/model.onnx)
#   DETECTOR_INFERENCE__BACKEND           tensorrt | auto | onnxruntime   (default tensorrt; only tensorrt builds)
#   DETECTOR_INFERENCE__DEVICE            auto | cuda:N                   (default auto = GPU 0): the engine is built
#                                         on the GPU the service will run it on (tactics are timed per GPU)
#   DETECTOR_EXPORT__ENGINE__ENGINE_DIR   engine cache                    (default models/engines)
#   DETECTOR_EXPORT__ENGINE__PRECISION    fp16 | fp32                     (default fp16)
#   DETECTOR_INFERENCE__SERVER__PORT      port                            (default 8000)
#   DETECTOR                              the detector CLI                (default detector; tests use a fake)
set -euo pipefail

DETECTOR="${DETECTOR:-detector}"
MODEL="${DETECTOR_INFERENCE__MODEL_PATH:-models/model.onnx}"
BACKEND="${DETECTOR_INFERENCE__BACKEND:-tensorrt}"
ENGINE_DIR="${DETECTOR_EXPORT__ENGINE__ENGINE_DIR:-models/engines}"
PRECISION="${DETECTOR_EXPORT__ENGINE__PRECISION:-fp16}"
PORT="${DETECTOR_INFERENCE__SERVER__PORT:-8000}"
DEVICE="${DETECTOR_INFERENCE__DEVICE:-auto}"

log() { echo "entrypoint: $*" >&2; }

if [[ $# -gt 0 && "$1" != "serve" ]]; then
    exec "$@"
fi
[[ $# -gt 0 ]] && shift  # drop "serve"; anything after it is passed on to `detector serve`

if [[ ! -f "$MODEL" ]]; then
    log "model $MODEL not found: mount the folder holding model.onnx at /app/models (docker run -v \$PWD/models:/app/models:ro ...)"
    exit 2
fi

if [[ "$BACKEND" == "tensorrt" ]]; then
    # The same device rule as the TensorRT backend (`_device_index`): auto/cuda/gpu is GPU 0, cuda:N is GPU N.
    case "$DEVICE" in
        auto | cuda | gpu) GPU=0 ;;
        cuda:[0-9]*) GPU="${DEVICE#cuda:}" ;;
        *) log "DETECTOR_INFERENCE__DEVICE=$DEVICE is not a GPU (use auto or cuda:N)"; exit 2 ;;
    esac
    log "TensorRT engine for $MODEL ($PRECISION) on GPU $GPU in $ENGINE_DIR: reusing the cached one or building it (first start only)"
    start=$SECONDS
    if "$DETECTOR" export engine --onnx "$MODEL" --device "$GPU" \
        "export.engine.precision=$PRECISION" "export.engine.engine_dir=$ENGINE_DIR"; then
        log "engine ready in $((SECONDS - start)) s"
    else
        BACKEND=onnxruntime
        log "WARNING: no TensorRT engine (see the error above); serving on the CPU with backend=$BACKEND instead"
    fi
fi

export DETECTOR_INFERENCE__BACKEND="$BACKEND"
exec "$DETECTOR" serve --host 0.0.0.0 --port "$PORT" "$@"
