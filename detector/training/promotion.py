"""`detector registry promote`: move a registry alias to a chosen model version once the promotion gate agrees.

The gate itself is injected (training and evaluation are separate layers): this module finds the version and the
alias holder, hands both versions' tags to the gate and moves the alias, or records the refusal on the version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from detector.config import MlflowConfig
from detector.errors import ConfigError, PromotionRefusedError
from detector.training.tracking import REFUSED_TAG

log = logging.getLogger(__name__)

# (candidate's version number, its tags, the holder's tags or None when the alias is free, a label for the holder)
# -> reasons to refuse.
VersionGate = Callable[[str, dict[str, str], dict[str, str] | None, str], list[str]]


def find_version(client: Any, name: str, version: str | None = None, run_id: str | None = None) -> Any:
    """The model version asked for: `version`, else the newest one registered from `run_id`, else the newest one."""
    from mlflow.exceptions import MlflowException

    if version is not None:
        try:
            return client.get_model_version(name, version)
        except MlflowException as exc:
            raise ConfigError(f"registered model {name!r} has no version {version!r}") from exc
    query = f"name = '{name}'" + (f" and run_id = '{run_id}'" if run_id else "")
    try:
        found = client.search_model_versions(query)
    except MlflowException:
        found = []
    if not found:
        where = f" from run {run_id}" if run_id else ""
        raise ConfigError(f"registered model {name!r} has no version{where}; run `detector evaluate` first")
    return max(found, key=lambda v: int(v.version))


def promote(
    cfg: MlflowConfig, gate: VersionGate, alias: str, version: str | None = None, run_id: str | None = None
) -> dict[str, Any]:
    """Move `alias` of `cfg.registered_model` to the version asked for when `gate` passes; PromotionRefusedError
    (naming every failed class and backend) when it does not, with the reasons kept as the version's tag."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    name = cfg.registered_model
    candidate = find_version(client, name, version, run_id)
    number = str(candidate.version)
    try:
        holder = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        holder = None
    previous = str(holder.version) if holder is not None else None
    if previous == number:
        log.info("%s v%s already holds @%s", name, number, alias)
        return {"registered_model": name, "version": number, "alias": alias, "previous": previous, "promoted": False}
    holder_tags = dict(holder.tags) if holder is not None else None
    reasons = gate(number, dict(candidate.tags), holder_tags, f"{alias} v{previous}")
    if reasons:
        reason = "; ".join(reasons)
        client.set_model_version_tag(name, number, REFUSED_TAG, reason[:5000])
        raise PromotionRefusedError(f"{name} v{number} not promoted to @{alias}: {reason}")
    client.set_registered_model_alias(name, alias, number)
    if REFUSED_TAG in candidate.tags:
        client.delete_model_version_tag(name, number, REFUSED_TAG)
    log.info("%s v%s is now @%s (was v%s)", name, number, alias, previous)
    return {"registered_model": name, "version": number, "alias": alias, "previous": previous, "promoted": True}
