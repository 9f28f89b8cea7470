"""The service on Ray Serve: the same FastAPI app (`api.app.create_app`) behind `serve.ingress`, one model per replica.

Needs the `ray` extra. Nothing here is imported unless `detector serve --engine ray` or Ray's own `serve run` asks
for it, so serving without Ray is unchanged.
"""

import os

# Under `uv run` (how every make target runs) Ray would otherwise rebuild each worker's environment with `uv run`,
# packaging the working directory and re-resolving the project in every worker process: slow at best, and it hangs
# where uv cannot reach what it wants. The workers use the interpreter the driver already runs in. Set before `ray`
# is imported (Ray reads it at import); an explicit setting by the user wins.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
