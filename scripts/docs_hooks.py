"""MkDocs hooks (`hooks:` in mkdocs.yml): the parts of the documentation site that come from the code and from files
kept outside docs/. Everything is built offline: no model, no network.

- The HTTP reference: the OpenAPI schema of the app that `api.app.create_app` builds (no model is loaded; the model
  loads in the app's lifespan, which never runs here), written to build/docs/openapi.json for the `[OAD(...)]`
  directive of docs/reference/http.md and published as reference/openapi.json.
- The model and dataset cards, benchmarks/README.md and the measured reports are published as pages under their own
  repository paths, so the repository keeps one copy of each."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "build" / "docs" / "openapi.json"
SCHEMA_URI = "reference/openapi.json"
REPO_PAGES = (
    "MODEL_CARD.md",
    "DATASET_CARD.md",
    "benchmarks/README.md",
    "reports/benchmark.md",
    "reports/experiments.md",
    "reports/int8_640.md",
    "reports/peers.md",
    "reports/peers_intel.md",
    "reports/peers_intel_vm_run1.md",
    "reports/peers_intel_vm_run2.md",
    "reports/peers_intel_vm_run3.md",
    "reports/peers_intel_vm_run4.md",
    "reports/peers_intel_vm_run5.md",
    "reports/peers_intel_vm_run6.md",
    "reports/peers_intel_vm_run7.md",
    "reports/peers_intel_vm_run8.md",
    "reports/peers_intel_vm_run9.md",
    "reports/peers_intel_vm_run10.md",
    "reports/peers_intel_vm_run11.md",
    "reports/peers_intel_vm_run12.md",
    "reports/side_by_side_intel_vm.md",
    "reports/peers_intel_vm_amx_off.md",
    "reports/peers_intel_vm_amx_off_run3.md",
    "reports/peers_amd_latest.md",
    "reports/peers_amd_run5.md",
    "reports/peers_amd_run6.md",
    "reports/peers_amd_run7.md",
    "reports/peers_amd_run8.md",
    "reports/video.md",
    "reports/video_latest.md",
    "reports/video_intel_vm.md",
    "reports/video_intel_vm_30s.md",
    "reports/video_intel_vm_fastest.md",
    "reports/video_intel_vm_bframes.md",
    "reports/video_intel_vm_bframes_run2.md",
    "reports/video_intel_vm_bframes_run3.md",
    "reports/video_intel_vm_stride3.md",
    "reports/video_intel_vm_stride3_run2.md",
    "reports/video_intel_vm_stride3_run3.md",
    "reports/video_intel_vm_amx_off.md",
    "reports/live.md",
    "reports/live_rtsp.md",
    "reports/live_rtsp_intel_vm_before.md",
    "reports/live_rtsp_intel_vm.md",
    "reports/live_rtsp_h265_intel_vm_before.md",
    "reports/live_rtsp_h265_intel_vm.md",
    "reports/live_h264_ts_intel_vm_before.md",
    "reports/live_h264_ts_intel_vm.md",
    "reports/live_h264_ts_demux_intel_vm_before.md",
    "reports/live_h264_ts_demux_intel_vm.md",
    "reports/live_mjpeg_unsized_intel_vm_before.md",
    "reports/live_mjpeg_unsized_intel_vm.md",
    "reports/live_rtmp.md",
    "reports/live_2cameras.md",
    "reports/live_4cameras.md",
    "reports/ray_benchmark.md",
)


def openapi_schema() -> dict[str, Any]:
    """The schema the running service serves at /openapi.json, for the shipped configs/ and no environment."""
    from api.app import create_app
    from detector.config import load_config

    return create_app(load_config(config_dir=REPO / "configs", environ={})).openapi()


def on_pre_build(config: MkDocsConfig) -> None:
    text = json.dumps(openapi_schema(), indent=2, sort_keys=True) + "\n"
    SCHEMA.parent.mkdir(parents=True, exist_ok=True)
    if not SCHEMA.exists() or SCHEMA.read_text() != text:  # unchanged: no write, so `mkdocs serve` sees no change
        SCHEMA.write_text(text)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, SCHEMA_URI, abs_src_path=str(SCHEMA)))
    for uri in REPO_PAGES:
        files.append(File.generated(config, uri, abs_src_path=str(REPO / uri)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Links written from the repository root (`docs/images/x.jpg`) point into the site from a page published under
    its repository path."""
    if page.file.src_uri not in REPO_PAGES:
        return markdown
    to_docs = os.path.relpath(".", os.path.dirname(page.file.src_uri) or ".")
    prefix = "" if to_docs == "." else to_docs + "/"
    return markdown.replace("](docs/", f"]({prefix}")
