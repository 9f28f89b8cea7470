#!/usr/bin/env bash
# Redeploy the API container on this host with a new image and the current model, with automatic rollback.
#
#   scripts/deploy.sh IMAGE            e.g. scripts/deploy.sh ghcr.io/me/yolo-detector:cpu-3ef2e44
#
# Steps (the old container keeps serving until the new image has proved healthy):
#   1. pull IMAGE (PULL=0 skips it, for locally built images);
#   2. start it as "$NAME-candidate" on 127.0.0.1:$CANDIDATE_PORT with the model folder mounted, and wait for
#      GET /health to return 200 within $HEALTH_TIMEOUT s. If it does not: print its logs, remove it, exit 1.
#      Nothing else was touched, so the running service never noticed;
#   3. swap: stop the running "$NAME" and keep it as "$NAME-previous", start IMAGE as "$NAME" on $PORT, wait for
#      /health again (a GPU engine is cached by then, so this is quick);
#   4. healthy: remove "$NAME-previous". Not healthy: remove the new container, rename "$NAME-previous" back to
#      "$NAME", start it (rollback to the previous image and model), exit 1.
#
# Environment (all optional):
#   NAME=yolo-detector      container name           PORT=8000            published port of the service
#   CANDIDATE_PORT=18000    port of the trial run    MODEL_DIR=./models   folder with model.onnx (mounted read-only)
#   HEALTH_TIMEOUT=180      seconds to become healthy (a first GPU start builds the TensorRT engine)
#   HEALTH_INTERVAL=2       seconds between probes   PULL=1               0: do not pull IMAGE
#   DOCKER_RUN_ARGS=""      extra `docker run` arguments, e.g. "--gpus all -v trt-engines:/app/engines"
#   DOCKER=docker           the docker CLI (tests substitute a fake one)
#   HEALTH_CMD=""           probe command; the URL is appended; exit 0 = healthy (default: curl, else python3)
set -euo pipefail

IMAGE="${1:?usage: scripts/deploy.sh IMAGE}"
DOCKER="${DOCKER:-docker}"
NAME="${NAME:-yolo-detector}"
PORT="${PORT:-8000}"
CANDIDATE_PORT="${CANDIDATE_PORT:-18000}"
MODEL_DIR="$(cd "${MODEL_DIR:-./models}" && pwd)"  # docker -v needs an absolute path
HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-180}"
HEALTH_INTERVAL="${HEALTH_INTERVAL:-2}"
PULL="${PULL:-1}"
read -r -a EXTRA_ARGS <<<"${DOCKER_RUN_ARGS:-}"

log() { echo "deploy: $*" >&2; }

probe() {  # probe URL -> exit 0 when it answers 200
    if [[ -n "${HEALTH_CMD:-}" ]]; then
        ${HEALTH_CMD} "$1"
    elif command -v curl >/dev/null 2>&1; then
        curl -fsS -o /dev/null --max-time 5 "$1"
    else
        python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "$1"
    fi
}

wait_healthy() {  # wait_healthy URL -> 0 once healthy, 1 after HEALTH_TIMEOUT seconds
    local deadline=$((SECONDS + HEALTH_TIMEOUT))
    while ((SECONDS < deadline)); do
        if probe "$1" >/dev/null 2>&1; then
            return 0
        fi
        sleep "$HEALTH_INTERVAL"
    done
    return 1
}

exists() { "$DOCKER" container inspect "$1" >/dev/null 2>&1; }

start() {  # start CONTAINER_NAME HOST_BINDING
    "$DOCKER" run -d --name "$1" -p "$2:8000" --restart unless-stopped \
        -v "$MODEL_DIR:/app/models:ro" "${EXTRA_ARGS[@]}" "$IMAGE" >/dev/null
}

if [[ ! -f "$MODEL_DIR/model.onnx" ]]; then
    log "no model at $MODEL_DIR/model.onnx (set MODEL_DIR, or run: dvc pull models/model.onnx)"
    exit 2
fi

if [[ "$PULL" == "1" ]]; then
    log "pulling $IMAGE"
    "$DOCKER" pull "$IMAGE" >/dev/null
fi

# --- 1. trial run beside the live service ---------------------------------------------------------------------------
candidate="$NAME-candidate"
exists "$candidate" && "$DOCKER" rm -f "$candidate" >/dev/null  # a leftover from an interrupted deploy
log "starting $IMAGE as $candidate on 127.0.0.1:$CANDIDATE_PORT"
start "$candidate" "127.0.0.1:$CANDIDATE_PORT"
if ! wait_healthy "http://127.0.0.1:$CANDIDATE_PORT/health"; then
    log "$IMAGE did not become healthy within ${HEALTH_TIMEOUT}s; its last log lines:"
    "$DOCKER" logs --tail 50 "$candidate" >&2 || true
    "$DOCKER" rm -f "$candidate" >/dev/null
    log "FAILED: the running service was left untouched"
    exit 1
fi
"$DOCKER" rm -f "$candidate" >/dev/null
log "$IMAGE is healthy; swapping it in"

# --- 2. swap, keeping the old container (stopped) until the new one is healthy -------------------------------------
previous="$NAME-previous"
had_previous=0
if exists "$NAME"; then
    exists "$previous" && "$DOCKER" rm -f "$previous" >/dev/null
    "$DOCKER" stop "$NAME" >/dev/null
    "$DOCKER" rename "$NAME" "$previous"
    had_previous=1
fi
start "$NAME" "$PORT"
if wait_healthy "http://127.0.0.1:$PORT/health"; then
    if ((had_previous)); then
        "$DOCKER" rm "$previous" >/dev/null
    fi
    log "OK: $NAME runs $IMAGE on port $PORT"
    exit 0
fi

# --- 3. rollback ----------------------------------------------------------------------------------------------------
log "$NAME did not become healthy on port $PORT; its last log lines:"
"$DOCKER" logs --tail 50 "$NAME" >&2 || true
"$DOCKER" rm -f "$NAME" >/dev/null
if ((had_previous)); then
    log "rolling back to the previous container"
    "$DOCKER" rename "$previous" "$NAME"
    "$DOCKER" start "$NAME" >/dev/null
    if wait_healthy "http://127.0.0.1:$PORT/health"; then
        log "FAILED: rolled back; the previous version serves on port $PORT"
    else
        log "FAILED: rolled back, but the previous version is not healthy either"
    fi
else
    log "FAILED: there was no previous container to roll back to"
fi
exit 1
