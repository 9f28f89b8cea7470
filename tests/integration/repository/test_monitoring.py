"""The monitoring profile (deploy/monitoring) checked for real: promtool validates the config and unit-tests every
alert rule, and the dashboard's queries name only metrics and labels the service exports. (Debian's Prometheus
scraping a live `detector serve` with the rules loaded is in tests/e2e/test_serve_subprocess.py, on that module's
server.) Tools missing -> skip with how to install them (CI's .ci/run installs Debian's `prometheus` package)."""

from __future__ import annotations

import json
import re
import subprocess

import yaml

from api.monitoring.metrics import Metrics
from tests.monitoring import MONITORING, tool

DASHBOARD = MONITORING / "grafana" / "dashboards" / "detector.json"
DATASOURCE = MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
# Labels Prometheus adds to every scraped series, and the histogram bucket label.
SCRAPE_LABELS = {"instance", "job", "le"}


def exported_series() -> dict[str, set[str]]:
    """Series name -> label names, for every metric the service registers (read off the metric objects: a labelled
    family without samples yet lists no label names through `collect()`)."""
    out: dict[str, set[str]] = {}
    for value in vars(Metrics()).values():
        name = getattr(value, "_name", None)
        if name is None:
            continue
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(value._type, [""])
        for suffix in suffixes:
            out[name + suffix] = set(value._labelnames)
    return out


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return exprs


def test_promtool_accepts_the_config_and_every_alert_fires_on_its_synthetic_series() -> None:
    promtool = tool("promtool")
    for args in (["check", "config", "prometheus.yml"], ["test", "rules", "alerts_test.yml"]):
        proc = subprocess.run([promtool, *args], cwd=MONITORING, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    tested = set(re.findall(r"alertname: (\w+)", (MONITORING / "alerts_test.yml").read_text()))
    defined = {
        r["alert"] for g in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"] for r in g["rules"]
    }
    assert defined == tested, f"alerts without a promtool test: {sorted(defined - tested)}"


def test_dashboard_and_alerts_query_only_what_the_service_exports() -> None:
    series = exported_series() | {"up": set()}  # `up`: Prometheus' own series per target
    assert "detector_stage_seconds_bucket" in series and "detector_detections_total" in series
    for expr in queries():
        names = set(re.findall(r"\b(detector_\w+|up)\b", expr))
        assert names, f"a query that reads no detector metric: {expr}"
        unknown = names - set(series)
        assert not unknown, f"{expr}: {sorted(unknown)} are not exported (api/monitoring/metrics.py)"
        known_labels = set().union(*(series[n] for n in names)) | SCRAPE_LABELS
        used = {label for group in re.findall(r"by \(([^)]*)\)", expr) for label in re.split(r"\s*,\s*", group)}
        used |= set(re.findall(r"(\w+)\s*[=!]~?\s*\"", expr))
        assert used <= known_labels, f"{expr}: labels {sorted(used - known_labels)} do not exist"
    uid = yaml.safe_load(DATASOURCE.read_text())["datasources"][0]["uid"]
    dashboard = json.loads(DASHBOARD.read_text())
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {uid}
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
