#!/usr/bin/env bash
# Screenshots (MLflow UI, Swagger /docs, a drawn prediction) and the demo video under docs/, from the real apps.
#
#   scripts/make_docs_media.sh [--no-video] [--image PATH] [--mlflow-db PATH]
#
# Needs: the project environment (make install-train: detector, mlflow), models/model.onnx, ./mlflow.db with runs,
# Chromium and ffmpeg (Debian/Ubuntu: apt-get install -y chromium ffmpeg fonts-dejavu-core). The screenshot tools
# (Playwright, Pillow) go into their own venv under .cache/, not into the project's environment.
# Re-runnable: every output is overwritten; missing pieces are skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS="${DOCS_MEDIA_VENV:-$PWD/.cache/docs-media-venv}"
if [[ ! -x "$TOOLS/bin/python" ]] || ! "$TOOLS/bin/python" -c "import playwright, PIL" 2>/dev/null; then
    echo "docs-media: preparing the tools venv in $TOOLS"
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check \
        "playwright==1.65.2" "pillow>=10.4"
fi

# Playwright must not try to download its own browsers: the system Chromium is used (--chromium).
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
exec "$TOOLS/bin/python" scripts/make_docs_media.py --project-bin "${PROJECT_BIN:-$PWD/.venv/bin}" "$@"
