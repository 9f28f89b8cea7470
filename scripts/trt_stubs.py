#!/usr/bin/env python3
"""Type stubs of the real TensorRT 10.x and 11.x Python APIs, generated on a machine without a GPU or TensorRT.

Why: TensorRT itself cannot be installed here (its registry packages fetch the libraries from NVIDIA's index), but the
`tensorrt-cu12-bindings` (10.x) and `tensorrt-cu13-bindings` (11.x) wheels hold the real pybind11 extension. It only
needs nine symbols from libnvinfer / libnvinfer_plugin / libnvonnxparser to load, so tiny C libraries exporting those
names (returning NULL/0; never called) let `import tensorrt_bindings` succeed, and pybind11-stubgen turns every class,
enum and signature into `.pyi` files. mypy then checks our TensorRT code against each version's real API.

Layout (idempotent; a finished version is never rebuilt):
    .cache/trt-stubs/<major>/wheel/    the downloaded wheel
    .cache/trt-stubs/<major>/site/     the extracted wheel
    .cache/trt-stubs/<major>/libs/     the C stub libraries (libnvinfer.so.<major> ...)
    .cache/trt-stubs/<major>/stubs/    tensorrt_bindings/*.pyi and tensorrt/__init__.pyi: point MYPYPATH here

Usage: python scripts/trt_stubs.py [--cache-dir DIR]  -> prints {"10": "<stubs dir>", "11": "<stubs dir>"} as JSON.
Exit status 3 means the package registry could not be reached (callers skip, not fail).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import keyword
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Pinned so the check is reproducible; bump deliberately when moving to a newer TensorRT.
WHEELS: dict[str, tuple[str, str]] = {
    "10": ("tensorrt-cu12-bindings", "10.16.1.11"),
    "11": ("tensorrt-cu13-bindings", "11.4.0.106"),
}
# library -> the symbols tensorrt.so imports from it (nm -D --undefined-only). Signatures do not matter: never called.
STUB_SYMBOLS: dict[str, list[str]] = {
    "libnvinfer": [
        "createInferBuilder_INTERNAL",
        "createInferRefitter_INTERNAL",
        "createInferRuntime_INTERNAL",
        "getBuilderPluginRegistry",
        "getPluginRegistry",
    ],
    "libnvinfer_plugin": ["initLibNvInferPlugins"],
    "libnvonnxparser": ["createNvOnnxParser_INTERNAL", "createNvOnnxParserRefitter_INTERNAL", "getNvOnnxParserVersion"],
}
DONE_MARKER = ".complete"
STUB_FORMAT = "2"  # bump when the post-processing below changes, so cached stubs are regenerated
_DEF = re.compile(r"^(\s*def \w+\()(.*)(\)\s*->.*:\s*)$")


class RegistryUnreachable(RuntimeError):
    pass


def _pip() -> list[str]:
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):  # uv-made virtualenvs have no pip: any pip can download for this interpreter
        found = shutil.which(name)
        if found:
            return [found]
    raise RegistryUnreachable("no pip found to download the TensorRT bindings wheels")


def _download(package: str, version: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    existing = sorted(dest.glob("*.whl"))
    if existing:
        return existing[0]
    py = f"{sys.version_info.major}{sys.version_info.minor}"
    cmd = [
        *_pip(),
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        py,
        "--implementation",
        "cp",
        "--platform",
        f"manylinux_2_28_{platform.machine()}",
        "-d",
        str(dest),
        f"{package}=={version}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise RegistryUnreachable(
            f"pip download {package}=={version} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return wheels[0]


def _stub_libraries(major: str, libs: Path) -> None:
    libs.mkdir(parents=True, exist_ok=True)
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("a C compiler (gcc) is needed to build the TensorRT stub libraries")
    for lib, symbols in STUB_SYMBOLS.items():
        soname = f"{lib}.so.{major}"
        source = libs / f"{lib}.c"
        source.write_text(
            "/* Stand-in for TensorRT's " + soname + ": exports the names tensorrt.so links, so it can be imported\n"
            "   for introspection only. Every function returns NULL; calling one is a bug. */\n"
            + "".join(f"void *{name}(void) {{ return 0; }}\n" for name in symbols)
        )
        subprocess.run(
            [cc, "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(libs / soname), str(source)], check=True
        )


def _split_params(params: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(params):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(params[start:i])
            start = i + 1
    parts.append(params[start:])
    return [p.strip() for p in parts if p.strip()]


def _fix_def(line: str) -> str:
    """Two pybind11 declarations that are not valid Python: parameters named after keywords (`in`), and parameters
    without a default after ones with defaults. Rename the first (`in_`), give the second `= ...`."""
    match = _DEF.match(line)
    if not match:
        return line
    head, params, tail = match.groups()
    fixed, seen_default = [], False
    for param in _split_params(params):
        name = re.match(r"\*{0,2}(\w+)", param)
        if name and keyword.iskeyword(name.group(1)):
            param = param.replace(name.group(1), name.group(1) + "_", 1)
        if "=" in param:
            seen_default = True
        elif seen_default and not param.startswith("*"):
            param += " = ..."
        fixed.append(param)
    return head + ", ".join(fixed) + tail


def fix_stub(text: str) -> str:
    """Make pybind11-stubgen's output valid Python, then prove it parses."""
    fixed = "\n".join(_fix_def(line) for line in text.splitlines()) + "\n"
    ast.parse(fixed)
    return fixed


def build(major: str, root: Path) -> Path:
    """Return the stubs dir for TensorRT `major`, building it first unless a previous run finished it."""
    package, version = WHEELS[major]
    base = root / major
    stubs = base / "stubs"
    marker = stubs / DONE_MARKER
    stamp = f"{package}=={version} format={STUB_FORMAT}"
    if marker.is_file() and marker.read_text().strip() == stamp:
        return stubs
    wheel = _download(package, version, base / "wheel")
    site = base / "site"
    shutil.rmtree(site, ignore_errors=True)
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    _stub_libraries(major, base / "libs")
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        env = {**os.environ, "PYTHONPATH": str(site), "LD_LIBRARY_PATH": str(base / "libs")}
        subprocess.run(
            [sys.executable, "-m", "pybind11_stubgen", "tensorrt_bindings", "-o", tmp],
            check=True,
            env=env,
            capture_output=True,
            timeout=300,
        )
        generated = Path(tmp) / "tensorrt_bindings"
        shutil.rmtree(stubs, ignore_errors=True)
        stubs.mkdir(parents=True)
        shutil.copytree(generated, stubs / "tensorrt_bindings")
        for pyi in (stubs / "tensorrt_bindings").rglob("*.pyi"):
            pyi.write_text(fix_stub(pyi.read_text()))
        # `import tensorrt` re-exports `tensorrt_bindings` (the tensorrt-cuXX meta package does exactly that).
        (stubs / "tensorrt").mkdir()
        shutil.copy2(generated / "__init__.pyi", stubs / "tensorrt" / "__init__.pyi")
    marker.write_text(stamp + "\n")
    return stubs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cache-dir", type=Path, default=REPO / ".cache" / "trt-stubs")
    parser.add_argument("--major", choices=sorted(WHEELS), action="append", help="default: all")
    args = parser.parse_args(argv)
    try:
        result = {major: str(build(major, args.cache_dir)) for major in (args.major or sorted(WHEELS))}
    except RegistryUnreachable as exc:
        print(str(exc), file=sys.stderr)
        return 3
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
