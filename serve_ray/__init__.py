"""The service on Ray Serve: the same FastAPI app (`api.app.create_app`) behind `serve.ingress`, one model per replica.

Needs the `ray` extra. Nothing here is imported unless `detector serve --engine ray` or Ray's own `serve run` asks
for it, so serving without Ray is unchanged.
"""
