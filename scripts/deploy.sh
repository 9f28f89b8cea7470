#!/usr/bin/env bash
# Redeploy the API container on this host with a new image and the current model, with automatic rollback.
#
#   scripts/deploy.sh IMAGE            e.g. scripts/deploy.sh ghcr.io/me/yolo-detector:cpu-3ef2e44
#
# Two modes. With SWITCH_CMD (a load balancer or reverse proxy in front; gapless, blue/green):
#   1. pull IMAGE (PULL=0 skips it);
#   2. start it beside the running "$NAME", on whichever of 127.0.0.1:$PORT / 127.0.0.1:$CANDIDATE_PORT the running
#      one does not use, and wait for GET /health = 200 within $HEALTH_TIMEOUT s. If not: print its logs, remove
#      it, exit 1 (the running service never noticed);
#   3. switch: run `$SWITCH_CMD http://127.0.0.1:NEWPORT` (e.g. rewrite an nginx upstream and reload it). If it
#      fails, remove the new container and exit 1, the old one still serving;
#   4. stop the old container with `docker stop --time $STOP_TIMEOUT` (longer than the app's drain, so requests
#      in flight finish), remove it, and rename the new one to "$NAME".
# Without SWITCH_CMD (the container publishes $PORT itself; Docker cannot move a published port, so there is a
# short gap: from the old one's SIGTERM, when it stops accepting, until the new one answers /health):
#   2. trial run as "$NAME-candidate" on 127.0.0.1:$CANDIDATE_PORT as above; unhealthy: untouched, exit 1;
#   3. swap: stop "$NAME" with --time $STOP_TIMEOUT (it drains) and keep it as "$NAME-previous", start IMAGE as
#      "$NAME" on $PORT, wait for /health again (a GPU engine is cached by then, so this is quick);
#   4. healthy: remove the candidate and "$NAME-previous". Not healthy: remove the new container, rename
#      "$NAME-previous" back to "$NAME", start it (rollback to the previous image and model), exit 1.
#
# Environment (all optional):
#   NAME=yolo-detector      container name           PORT=8000            published port of the service
#   CANDIDATE_PORT=18000    port of the trial run    MODEL_DIR=./models   folder with model.onnx (mounted read-only)
#   HEALTH_TIMEOUT=180      seconds to become healthy (a first GPU start builds the TensorRT engine)
#   HEALTH_INTERVAL=2       seconds between probes   PULL=1               0: do not pull IMAGE
#   STOP_TIMEOUT=45         seconds `docker stop` lets the old container drain: more than the app's own drain
#                           (inference.server.request_timeout_s + 1 = 31 s by default); Docker's default is 10 s
#   SWITCH_CMD=""           command that points the traffic at the URL it is given (enables the gapless mode)
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
STOP_TIMEOUT="${STOP_TIMEOUT:-45}"
SWITCH_CMD="${SWITCH_CMD:-}"
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

# --- gapless mode: start beside the old one, switch the traffic, then drain and stop the old one -------------------
if [[ -n "$SWITCH_CMD" ]]; then
    new_port="$PORT"
    if exists "$NAME" && [[ "$("$DOCKER" port "$NAME" 8000 2>/dev/null | head -n 1 | sed 's/.*://')" == "$PORT" ]]; then
        new_port="$CANDIDATE_PORT"
    fi
    next="$NAME-next"
    exists "$next" && "$DOCKER" rm -f "$next" >/dev/null  # a leftover from an interrupted deploy
    log "starting $IMAGE as $next on 127.0.0.1:$new_port, beside the running service"
    start "$next" "127.0.0.1:$new_port"
    if ! wait_healthy "http://127.0.0.1:$new_port/health"; then
        log "$IMAGE did not become healthy within ${HEALTH_TIMEOUT}s; its last log lines:"
        "$DOCKER" logs --tail 50 "$next" >&2 || true
        "$DOCKER" rm -f "$next" >/dev/null
        log "FAILED: the running service was left untouched"
        exit 1
    fi
    log "$IMAGE is healthy; switching the traffic to port $new_port"
    if ! ${SWITCH_CMD} "http://127.0.0.1:$new_port"; then
        "$DOCKER" rm -f "$next" >/dev/null
        log "FAILED: the switch command failed; the running service was left untouched"
        exit 1
    fi
    if exists "$NAME"; then
        log "draining and stopping the old container (up to ${STOP_TIMEOUT}s)"
        "$DOCKER" stop --time "$STOP_TIMEOUT" "$NAME" >/dev/null
        "$DOCKER" rm "$NAME" >/dev/null
    fi
    "$DOCKER" rename "$next" "$NAME"
    log "OK: $NAME runs $IMAGE on port $new_port"
    exit 0
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
    # Longer than the app's drain (Docker's default 10 s would kill requests still running at 31 s).
    "$DOCKER" stop --time "$STOP_TIMEOUT" "$NAME" >/dev/null
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
