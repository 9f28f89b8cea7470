"""One APIRouter per concern; `api.app.create_app` includes them all."""
