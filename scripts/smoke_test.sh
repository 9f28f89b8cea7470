#!/usr/bin/env bash
# Smoke test of a running service: wait for GET /health = 200, then POST an image to /predict and check the answer.
#
#   scripts/smoke_test.sh [BASE_URL] [IMAGE]     defaults: http://127.0.0.1:8000 docs/images/dataset_v1.jpg
#
# Used by CI against the freshly built CPU image; handy after `make docker-cpu` too. Needs curl and python3.
set -euo pipefail

BASE_URL="${1:-http://127.0.0.1:8000}"
IMAGE="${2:-docs/images/dataset_v1.jpg}"
TIMEOUT="${SMOKE_TIMEOUT:-120}"

deadline=$((SECONDS + TIMEOUT))
until curl -fsS -o /dev/null --max-time 5 "$BASE_URL/health"; do
    if ((SECONDS >= deadline)); then
        echo "smoke: $BASE_URL/health not 200 after ${TIMEOUT}s" >&2
        exit 1
    fi
    sleep 2
done
echo "smoke: /health OK"

response="$(curl -fsS --max-time 30 -F "file=@$IMAGE" "$BASE_URL/predict")"
# The service contract: a JSON object with a list of detections and the model that produced them.
python3 -c '
import json, sys
body = json.loads(sys.argv[1])
detections, model = body["detections"], body["model"]
assert isinstance(detections, list), body
print("smoke: /predict OK:", len(detections), "detections by", model["name"], "on", model["backend"])
' "$response"
