"""`python -m benchmarks.side_by_side --base REV`: the service as checked out against the service at git revision
`REV`, both running at once on the same model, `POST /predict` at concurrency 1 in alternating blocks; writes
side_by_side.{json,md}.

Why both at once: on these shared VMs the time of a request moves between hours by more than a change to the request
path is worth (runs of `benchmarks.peers` put the HTTP overhead anywhere from 2.3 to 4.4 ms with the same code), so
a change is judged only against its base measured in the same minutes, block by block, each service idle while the
other is timed. Each request's time is split by its `Server-Timing` total: the endpoint's own time, and the rest
(uvicorn, the middleware, the routing, the answer's encoding and sending, the loopback and the client). The client
is the standard library's `http.client` (a leaner client than httpx: less of its own time in what is compared).

The base runs from a temporary `git worktree` of this repository with this checkout's Python environment: compare
revisions whose dependencies are the same.

Its resolution, from runs of identical code on both sides (the Intel Xeon VM, 100-200 requests a side): the time
outside the endpoint differed by 0.05-0.13 ms, the endpoint's own time and the whole request by up to 1.3 ms (one
service's inference ran slower for a whole run). Read a change to the request path from the outside column; a
change inside the endpoint needs several runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.errors import BenchmarkInputError
from benchmarks.inputs import ultralytics_assets
from benchmarks.machine import machine_info, machine_line
from benchmarks.peers import LeanClient
from benchmarks.service import free_port, http_server
from detector.files import write_atomic

REPO = Path(__file__).resolve().parents[1]
SIDES = ("base", "this")


@contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """A detached `git worktree` of `rev` in a temporary folder, removed at the end."""
    with tempfile.TemporaryDirectory(prefix="side-by-side-") as tmp:
        path = Path(tmp) / "base"
        done = subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(path), rev],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise BenchmarkInputError(f"cannot check out {rev!r}: {done.stderr.strip()}")
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], capture_output=True)


@contextmanager
def service(checkout: Path, model: Path, threads: int) -> Iterator[str]:
    """`detector serve` from `checkout` (its own packages first on the path) on a free port: its base URL."""
    port = free_port()
    env = {**os.environ, "DETECTOR_INFERENCE__THREADS": str(threads), "PYTHONPATH": str(checkout)}
    cmd = [sys.executable, "-m", "cli", "serve", "--model", str(model), "--backend", "openvino"]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    with http_server(cmd, env, port, f"the service from {checkout}", cwd=checkout) as url:
        yield url


def alternate(
    clients: dict[str, LeanClient], jpegs: list[bytes], rounds: int, block: int
) -> dict[str, list[list[float]]]:
    """`rounds` rounds of one block of `block` requests a side, the order turning each round, a pause before each
    block (the first requests after a pause are the slower ones: each side gets the same pauses). Per side: one
    [client ms, endpoint ms] pair a request."""
    timed: dict[str, list[list[float]]] = {side: [] for side in clients}
    for client in clients.values():  # warm-up: connections, every photo's shape
        for n in range(4 * len(jpegs)):
            client.post_jpeg(jpegs[n % len(jpegs)])
    order = list(clients)
    for r in range(rounds):
        for side in order if r % 2 == 0 else order[::-1]:
            time.sleep(0.05)
            for i in range(block):
                t0 = time.perf_counter()
                endpoint_ms = clients[side].post_jpeg(jpegs[(r * block + i) % len(jpegs)])
                timed[side].append([(time.perf_counter() - t0) * 1e3, endpoint_ms])
    return timed


def summarize(timed: dict[str, list[list[float]]]) -> dict[str, Any]:
    """Medians per side (the request, the endpoint, the rest) and this side's minus the base's."""
    sides: dict[str, dict[str, float]] = {}
    for side, pairs in timed.items():
        a = np.asarray(pairs, dtype=float)
        sides[side] = {
            "p50_ms": round(float(np.median(a[:, 0])), 3),
            "endpoint_p50_ms": round(float(np.nanmedian(a[:, 1])), 3),
            "outside_endpoint_p50_ms": round(float(np.nanmedian(a[:, 0] - a[:, 1])), 3),
            "n": len(pairs),
        }
    delta = {key: round(sides["this"][key] - sides["base"][key], 3) for key in sides["base"] if key != "n"}
    return {"sides": sides, "this_minus_base": delta}


def to_markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    rows = [
        f"| {side} ({report['revisions'][side]}) | {v['p50_ms']} | {v['endpoint_p50_ms']} | "
        f"{v['outside_endpoint_p50_ms']} | {v['n']} |"
        for side, v in s["sides"].items()
    ]
    d = s["this_minus_base"]
    return "\n".join(
        [
            f"# Side by side ({report['started']})",
            "",
            f"{machine_line(report)}model {report['model']}; `POST /predict` c=1 from `http.client`, the JPEG as "
            f"the body; {report['rounds']} rounds of a block of {report['block']} a side, alternating.",
            f"Command: `{report['command']}`",
            "",
            "| service | p50 ms | endpoint p50 ms (`Server-Timing` total) | outside the endpoint p50 ms | n |",
            "|---|---:|---:|---:|---:|",
            *rows,
            f"| this minus base | {d['p50_ms']:+} | {d['endpoint_p50_ms']:+} | {d['outside_endpoint_p50_ms']:+} | |",
            "",
        ]
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.side_by_side", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="the git revision to compare with (a commit, a tag, HEAD~1)")
    p.add_argument("--model", type=Path, required=True, help="the model both services serve (.onnx or OpenVINO)")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--block", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-dir", type=Path, default=Path("reports"))
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    if not args.model.is_file():
        raise BenchmarkInputError(f"no model at {args.model}")
    assets = {p.name: p for p in ultralytics_assets()}
    if not {"bus.jpg", "zidane.jpg"} <= set(assets):
        raise BenchmarkInputError("Ultralytics' bundled bus.jpg and zidane.jpg are needed (install the train extra)")
    jpegs = [assets[name].read_bytes() for name in ("bus.jpg", "zidane.jpg")]
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True).stdout
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with ExitStack() as stack:
        base_checkout = stack.enter_context(worktree(args.base))
        base = stack.enter_context(service(base_checkout, args.model.resolve(), args.threads))
        this = stack.enter_context(service(REPO, args.model.resolve(), args.threads))
        clients = {"base": stack.enter_context(LeanClient(base)), "this": stack.enter_context(LeanClient(this))}
        timed = alternate(clients, jpegs, args.rounds, args.block)
    return {
        "started": started,
        "machine": machine_info(),
        "threads": args.threads,
        "model": args.model.name,
        "rounds": args.rounds,
        "block": args.block,
        "revisions": {"base": args.base, "this": head.stdout.strip() + (" with changes" if dirty.strip() else "")},
        "command": "python -m benchmarks.side_by_side " + " ".join(sys.argv[1:]),
        "summary": summarize(timed),
        "timed_ms": timed,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        report = run(args)
    except BenchmarkInputError as exc:
        print(f"benchmark: error: {exc}", file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out_dir / "side_by_side.json", json.dumps(report, indent=2) + "\n")
    write_atomic(args.out_dir / "side_by_side.md", to_markdown(report))
    print((args.out_dir / "side_by_side.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
