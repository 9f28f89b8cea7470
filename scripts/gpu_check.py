#!/usr/bin/env python3
"""Real-GPU plumbing check of the TensorRT backend, for a host with an NVIDIA GPU and PyTorch with CUDA but no
TensorRT, no pycuda, no nvcc and no package registry. One line per check; exit 1 if any check fails.

What it runs: the REAL `TensorRTBackend` (detector/runtime/backends/tensorrt_backend.py, loaded by path with
cuda_owner.py, tensorrt_logger.py, engines.py, base.py, unchanged) on REAL pycuda, built here from its source
archive. Only TensorRT is replaced: a small `tensorrt` module (`TorchTensorRT` below) deserialises a JSON "plan"
and its `execute_async_v3(stream)` launches a PyTorch network on the slot's own CUDA stream
(`torch.cuda.ExternalStream`), reading and writing the device buffers the backend allocated with pycuda. So owner
threads, the primary context shared with PyTorch (as with TensorRT), leases, page-locked buffers, async copies,
streams, close and reload all run for real. Checks:
  * slots: two execution contexts, each on its own owner thread and stream; page-locked host buffers;
  * 16 threads: 64 batches through `run()` from 16 threads equal the same batches run one by one, exactly;
  * overlap: CUDA events recorded around each slot's kernels; the two slots' intervals overlap in time;
  * fault (D1): `execute_async_v3` returns False -> BackendFailedError, `failure` set, later calls refused at once,
    close() still stops every owner; then a child process launches a real device-side fault (an out-of-bounds
    index: a sticky error), which must surface at the stream sync as BackendFailedError, and shows whether a new
    backend in the same process still works (it should not: why the service exits instead of reloading);
  * close and reload: no owner thread left after close(), a new backend gives the same results;
  * input_dtype: 8 real photos (Ultralytics' bus.jpg and zidane.jpg, flipped, cropped, rotated) letterboxed by the
    project's `letterbox_into` straight into the slot's page-locked buffer as uint8 or float32, uploaded, cast and
    scaled on the GPU (uint8) and run: end-to-end time per batch, and that both give the same output.

Use (everything it needs is carried in, about 4 MiB; the GPU host needs only Python 3.10+, a C++ compiler,
Python.h, numpy and PyTorch with CUDA; nvcc is NOT needed: pycuda needs only cuda.h, which PyTorch's nvidia wheels
ship, and the driver's libcuda):

  1. where PyPI is reachable:
        python3 scripts/gpu_check.py --fetch .cache/gpu_check
     which runs `pip download --no-deps --no-binary pycuda pycuda -d DIR` (the pycuda sdist, 1.7 MB), downloads
     pycuda's pure-Python dependencies as wheels, and copies the two photos out of the installed ultralytics
     package. Or by hand: `pip download --no-binary :all: --no-deps pycuda -d DIR`, plus the wheels in FETCH.
  2. on the GPU host, from the repository root (the folder travels with the working tree):
        python3 scripts/gpu_check.py --carried .cache/gpu_check
  3. anywhere, without a GPU: the same checks against the CPU stand-in of pycuda (tests/standin), the network
     computed with PyTorch or numpy on the CPU:
        python3 scripts/gpu_check.py --dry-run

Without a GPU (and not --dry-run) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes.util
import glob
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import threading
import time
import types
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STANDIN = REPO / "tests" / "standin"
THREADS = 16
CARRY_LIMIT = 64 * 2**20
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
# pycuda's run-time dependencies and its build's (setuptools; numpy comes with PyTorch). Wheels: unzipped into a
# scratch folder on the GPU host, so it needs no pip and no registry.
FETCH = ["pytools", "platformdirs", "typing_extensions", "mako", "markupsafe", "siphash24", "setuptools", "wheel"]
PHOTOS = ("bus.jpg", "zidane.jpg")
# The project's files the check loads by path (no package __init__, so none of the service's dependencies).
MODULES = (
    ("detector.errors", "detector/errors.py"),
    ("detector.runtime.metadata", "detector/runtime/metadata.py"),
    ("detector.runtime.engines", "detector/runtime/engines.py"),
    ("detector.runtime.backends.cuda_owner", "detector/runtime/backends/cuda_owner.py"),
    ("detector.runtime.backends.tensorrt_logger", "detector/runtime/backends/tensorrt_logger.py"),
    ("detector.runtime.backends.base", "detector/runtime/backends/base.py"),
    ("detector.runtime.backends.tensorrt_backend", "detector/runtime/backends/tensorrt_backend.py"),
    ("detector.runtime.preprocess", "detector/runtime/preprocess.py"),
)

# `setup.py build_ext -j` parallelises across extensions only, and pycuda's _driver is one extension of ~70 C++
# files (Boost.Python included): compiled one by one that took 22 minutes on a 2-core machine. This compiles one
# extension's files in parallel (distutils' CCompiler.compile with a thread pool; each file is its own compiler
# process).
PARALLEL_BUILD = """
import runpy, sys
from multiprocessing.pool import ThreadPool
import setuptools  # noqa: F401  (makes `distutils` setuptools' own copy)
from distutils import ccompiler

def compile(self, sources, output_dir=None, macros=None, include_dirs=None, debug=0, extra_preargs=None,
            extra_postargs=None, depends=None):
    macros, objects, extra_postargs, pp_opts, build = self._setup_compile(
        output_dir, macros, include_dirs, sources, depends, extra_postargs)
    cc_args = self._get_cc_args(pp_opts, debug, extra_preargs)
    def one(obj):
        src, ext = build[obj]
        self._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)
    with ThreadPool(JOBS) as pool:
        pool.map(one, objects)
    return objects

ccompiler.CCompiler.compile = compile
sys.argv = ["setup.py", "build_ext", "--inplace"]
runpy.run_path("setup.py", run_name="__main__")
"""

# PyTorch's nvidia wheels ship cuda.h but not cudaProfiler.h, which pycuda includes for its profiler wrappers:
# the declarations, as in the CUDA toolkit's header (the functions are exported by the driver's libcuda).
CUDA_PROFILER_H = """#pragma once
#include <cuda.h>
typedef enum CUoutput_mode_enum { CU_OUT_KEY_VALUE_PAIR = 0x00, CU_OUT_CSV = 0x01 } CUoutput_mode;
#ifdef __cplusplus
extern "C" {
#endif
CUresult CUDAAPI cuProfilerInitialize(const char *configFile, const char *outputFile, CUoutput_mode outputMode);
CUresult CUDAAPI cuProfilerStart(void);
CUresult CUDAAPI cuProfilerStop(void);
#ifdef __cplusplus
}
#endif
"""

results: list[tuple[str, str]] = []


def report(status: str, name: str, detail: str) -> None:
    results.append((status, name))
    print(f"{status:4} {name}: {detail}", flush=True)


@contextlib.contextmanager
def check(name: str) -> Iterator[None]:
    """Run one check; an exception is that check's FAIL line, not the end of the script."""
    try:
        yield
    except Exception as exc:
        report("FAIL", name, f"{type(exc).__name__}: {exc}")


# --- fetching (where PyPI is reachable) ------------------------------------------------------------------------------


def pip_command() -> list[str]:
    """This Python's pip, or the first pip on PATH (uv-made virtualenvs have no pip module)."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):
        if found := shutil.which(name):
            return [found]
    raise SystemExit("no pip here: run --fetch with a Python that has pip (python3 -m ensurepip)")


def fetch(folder: Path) -> int:
    """Download and copy what the GPU host needs into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    pip = [*pip_command(), "download", "--dest", str(folder)]
    subprocess.run([*pip, "--no-deps", "--no-binary", "pycuda", "pycuda"], check=True)
    for version in PYTHONS:  # markupsafe and siphash24 are compiled: one wheel per Python the host may have
        platform = ["--platform", "manylinux2014_x86_64", "--python-version", version]
        subprocess.run([*pip, "--no-deps", "--only-binary", ":all:", *platform, *FETCH], check=True)
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the photos come from the ultralytics package (`train` extra): install it to --fetch")
    assets = Path(next(iter(spec.submodule_search_locations))) / "assets"
    for name in PHOTOS:
        shutil.copy(assets / name, folder / name)
    size = sum(p.stat().st_size for p in folder.iterdir())
    print(f"fetched {len(list(folder.iterdir()))} files, {size / 2**20:.1f} MiB, into {folder}")
    return 0 if size < CARRY_LIMIT else 1


# --- building pycuda on the GPU host ----------------------------------------------------------------------------------


def python_h() -> Path | None:
    """This interpreter's Python.h (pycuda is a C++ extension: without it nothing can be built)."""
    for key in ("include", "platinclude"):
        candidate = Path(sysconfig.get_paths()[key]) / "Python.h"
        if candidate.is_file():
            return candidate
    return None


def find_cuda_h() -> Path | None:
    """The folder holding cuda.h: $CUDA_INC_DIR, a CUDA toolkit, or PyTorch's nvidia wheels (no toolkit needed)."""
    candidates = [Path(p) for p in (os.environ.get("CUDA_INC_DIR"),) if p]
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_ROOT"), "/usr/local/cuda"):
        if root:
            candidates.append(Path(root) / "include")
    for site in sys.path:
        for pattern in ("nvidia/cuda_runtime/include", "nvidia/cu*/include"):
            candidates += [Path(p) for p in glob.glob(f"{site}/{pattern}")]
    return next((c for c in candidates if (c / "cuda.h").is_file()), None)


def find_libcuda_dir(scratch: Path) -> Path | None:
    """A folder with `libcuda.so` to link against: $LIBCUDA_DIR, else the driver's own (found as the dynamic
    linker finds it), given the unversioned name the linker wants."""
    dirs = [Path(os.environ["LIBCUDA_DIR"])] if os.environ.get("LIBCUDA_DIR") else []
    driver_dirs = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/nvidia/lib64", "/usr/lib/wsl/lib")
    dirs += [Path(d) for d in driver_dirs]
    for d in dirs:
        if (d / "libcuda.so").exists():
            return d
    for d in dirs:
        if (d / "libcuda.so.1").exists():
            link = scratch / "libcuda"
            link.mkdir(exist_ok=True)
            with contextlib.suppress(FileExistsError):
                (link / "libcuda.so").symlink_to(d / "libcuda.so.1")
            return link
    return None


def driver_exports(symbol: str) -> bool:
    """Whether the installed driver's libcuda exports `symbol` (CUDA 12+ may have dropped cuProfilerInitialize)."""
    name = ctypes.util.find_library("cuda") or "libcuda.so.1"
    try:
        return hasattr(ctypes.CDLL(name), symbol)
    except OSError:
        return False


def unpack_wheels(carried: Path, target: Path) -> list[str]:
    """Unzip the carried wheels this Python can use into `target` (no pip, no index): pure ones and this Python's."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    done: set[str] = set()
    for wheel in sorted(carried.glob("*.whl"), reverse=True):  # newest first where several were fetched
        name, _, rest = wheel.name.partition("-")
        if name.lower() in done or not ("py3-none-any" in rest or (tag in rest and "x86_64" in rest)):
            continue
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(target)
        done.add(name.lower())
    return sorted(done)


def build_pycuda(carried: Path, scratch: Path) -> Path | None:
    """Build pycuda in place from the sdist in `carried`; put it and its dependencies on sys.path."""
    sdists = sorted(carried.glob("pycuda-*.tar.gz"))
    header = python_h()
    compiler = shutil.which(os.environ.get("CXX", "")) or shutil.which("c++") or shutil.which("g++")
    inc = find_cuda_h()
    lib = find_libcuda_dir(scratch)
    where = f"sdist {sdists[-1].name if sdists else None}, Python.h {header}, C++ {compiler}, cuda.h in {inc}, "
    where += f"libcuda in {lib}"
    missing = [
        what
        for what, ok in (
            (f"pycuda-*.tar.gz in {carried} (run --fetch where PyPI is reachable)", sdists),
            ("Python.h (install python3-dev for this Python)", header),
            ("a C++ compiler", compiler),
            ("cuda.h (PyTorch's nvidia wheels or a CUDA toolkit)", inc),
            ("libcuda.so (the NVIDIA driver)", lib),
        )
        if not ok
    ]
    if missing:
        report("FAIL", "pycuda build", f"missing: {'; '.join(missing)} ({where})")
        return None
    assert inc is not None and lib is not None
    start = time.perf_counter()
    with tarfile.open(sdists[-1]) as tar:
        tar.extractall(scratch, filter="data")
    src = next(scratch.glob("pycuda-*/"))
    deps = scratch / "site"
    deps.mkdir(exist_ok=True)
    unpacked = unpack_wheels(carried, deps)
    includes = [inc]
    if not (inc / "cudaProfiler.h").is_file():
        shim = scratch / "include"
        shim.mkdir(exist_ok=True)
        (shim / "cudaProfiler.h").write_text(CUDA_PROFILER_H)
        includes.append(shim)
    if not driver_exports("cuProfilerInitialize"):  # removed from the driver: the wrapper must not link to it
        hpp = src / "src" / "cpp" / "cuda.hpp"
        call = "CUDAPP_CALL_GUARDED(cuProfilerInitialize, (config_file, output_file, output_mode));"
        hpp.write_text(
            hpp.read_text().replace(call, 'throw pycuda::error("cuProfilerInitialize", CUDA_ERROR_NOT_SUPPORTED);')
        )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(deps), os.environ.get("PYTHONPATH", "")])}
    configure = [sys.executable, "configure.py", f"--cuda-root={inc.parent}"]
    # aksetup's list options are comma-separated
    configure += [f"--cuda-inc-dir={','.join(map(str, includes))}", f"--cudadrv-lib-dir={lib}"]
    configure += ["--no-cuda-enable-curand"]  # cuRAND: not used, its headers are not always there
    jobs = str(os.cpu_count() or 4)
    for what, cmd in (
        ("configure", configure),
        ("compile", [sys.executable, "-c", PARALLEL_BUILD.replace("JOBS", jobs)]),
    ):
        proc = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout)[-1500:].strip()
            report("FAIL", "pycuda build", f"{what} failed ({where}): {tail}")
            return None
    report("PASS", "pycuda build", f"{where}; wheels {unpacked}; {time.perf_counter() - start:.0f} s")
    sys.path[:0] = [str(src)]
    sys.path.append(str(deps))  # after the host's own packages: theirs win where both exist
    return src


# --- loading our code unchanged ---------------------------------------------------------------------------------------


def install_cv2_shim() -> str:
    """`letterbox_into` resizes with OpenCV. Hosts with PyTorch often lack it: then the same bilinear resize by
    Pillow behind the one function it calls (cv2.resize), so the real letterbox code still runs."""
    try:
        import cv2  # noqa: F401

        return "OpenCV"
    except ImportError:
        pass
    from PIL import Image

    shim = types.ModuleType("cv2")
    shim.INTER_LINEAR = 1  # type: ignore[attr-defined]

    def resize(image: Any, size: tuple[int, int], interpolation: int = 1) -> Any:
        import numpy as np

        return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))

    shim.resize = resize  # type: ignore[attr-defined]
    sys.modules["cv2"] = shim
    return "Pillow (no OpenCV here)"


def config_stub() -> types.ModuleType:
    """detector.config without pydantic and omegaconf (GPU hosts rarely have them): its module-level `Literal`
    aliases (the allowed values engines.py reads with get_args), taken from the file itself so they are defined
    once, and empty classes for the names used only for typing and `from_config`."""
    import ast
    import typing

    config = types.ModuleType("detector.config")
    tree = ast.parse((REPO / "detector" / "config.py").read_text())
    for node in tree.body:
        value = getattr(node, "value", None)
        if isinstance(node, ast.Assign) and isinstance(value, ast.Subscript) and ast.unparse(value.value) == "Literal":
            code = compile(ast.Module(body=[node], type_ignores=[]), "detector/config.py", "exec")
            exec(code, {"Literal": typing.Literal}, config.__dict__)
    for cls in ("Config", "OpenVinoConfig", "EngineConfig"):
        setattr(config, cls, type(cls, (), {}))
    return config


def load_project() -> dict[str, types.ModuleType]:
    """The backend and what it imports, from their files, without the packages' __init__ (which pull the whole
    service). detector.config (pydantic, omegaconf) always gives way to `config_stub`, so the dry run here loads
    exactly what a GPU host without them loads."""
    for name in ("detector", "detector.runtime", "detector.runtime.backends"):
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = [str(REPO / name.replace(".", "/"))]
            sys.modules[name] = pkg
    sys.modules["detector.config"] = config_stub()
    loaded = {}
    for name, rel in MODULES:
        spec = importlib.util.spec_from_file_location(name, REPO / rel)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        loaded[name.rsplit(".", 1)[-1]] = module
    return loaded


def install_standin() -> None:
    sys.path.insert(0, str(STANDIN))
    from tensorrt_standin import cuda

    pycuda = types.ModuleType("pycuda")
    pycuda.__path__ = []
    pycuda.driver = cuda  # type: ignore[attr-defined]
    sys.modules["pycuda"], sys.modules["pycuda.driver"] = pycuda, cuda
    cuda.reset([("Stand-in GPU 0", (8, 9))])


def has_gpu() -> tuple[bool, str]:
    try:
        import torch
    except ImportError:
        return False, "PyTorch is not installed"
    if torch.cuda.is_available():
        return (
            True,
            f"PyTorch {torch.__version__} sees {torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)}",
        )
    return False, "PyTorch is installed but sees no CUDA GPU"


# --- the TensorRT replacement: a JSON plan run by PyTorch on the slot's stream ----------------------------------------


class Device:
    """How the fake engine reaches the backend's device buffers and its stream: real CUDA through PyTorch, or the
    CPU stand-in's host memory (--dry-run)."""

    def __init__(self, real: bool) -> None:
        self.real = real
        self.events: list[tuple[int, Any, Any]] = []  # (stream handle, start, end) per execute
        self.lock = threading.Lock()
        self.fault: str | None = None  # "false": execute_async_v3 returns False; "assert": a device-side fault

    def tensor(self, ptr: int, shape: tuple[int, ...], dtype: str) -> Any:
        import numpy as np
        import torch

        if not self.real:
            from tensorrt_standin import cuda

            raw = cuda.device_view(ptr, "execute_async_v3")
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            return torch.from_numpy(raw[:nbytes].view(dtype).reshape(shape))
        typestr = {"float32": "<f4", "uint8": "|u1"}[dtype]
        iface = {"shape": shape, "typestr": typestr, "data": (ptr, False), "version": 3, "strides": None}
        iface["stream"] = None  # the work is ordered by the stream we enqueue on, not by PyTorch
        holder = types.SimpleNamespace(__cuda_array_interface__=iface)
        return torch.as_tensor(holder, device="cuda")

    @contextlib.contextmanager
    def on_stream(self, handle: int) -> Iterator[Callable[[], None]]:
        """Run PyTorch work on the backend's pycuda stream; yields `done`, to call after the last kernel."""
        if not self.real:
            start = time.perf_counter()
            yield lambda: self._record(handle, start, time.perf_counter())
            return
        import torch

        stream = torch.cuda.ExternalStream(handle)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.cuda.stream(stream):
            start.record(stream)
            yield lambda: (end.record(stream), self._record(handle, start, end))

    def _record(self, handle: int, start: Any, end: Any) -> None:
        with self.lock:
            self.events.append((handle, start, end))


def network(seed: int = 0) -> Callable[[Any], Any]:
    """A small fixed convolutional network (the same weights everywhere): enough GPU work per batch for two slots
    to overlap, and a small output to download."""
    import torch

    # Same algorithm every call, whatever the stream or thread: "equal to single-thread" is then exact.
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    gen = torch.Generator().manual_seed(seed)
    w1 = torch.randn(16, 3, 3, 3, generator=gen) * 0.2
    w2 = torch.randn(32, 16, 3, 3, generator=gen) * 0.1
    w3 = torch.randn(8, 32, 1, 1, generator=gen) * 0.1
    cache: dict[str, list[Any]] = {}

    def run(x: Any) -> Any:
        key = str(x.device)
        if key not in cache:
            cache[key] = [w.to(x.device) for w in (w1, w2, w3)]
        a, b, c = cache[key]
        y = torch.relu(torch.nn.functional.conv2d(x, a, stride=2, padding=1))
        for _ in range(4):  # repeated work: the GPU is busy long enough to see the other slot run meanwhile
            y = torch.relu(torch.nn.functional.conv2d(y if y.shape[1] == 16 else y[:, :16], b, padding=1))
        y = torch.nn.functional.conv2d(y, c)
        y = torch.nn.functional.adaptive_avg_pool2d(y, 20)
        return y.flatten(2)  # (B, 8, 400)

    return run


def fake_tensorrt(device: Device) -> types.ModuleType:
    """A `tensorrt` module with exactly the surface the backend uses, running `network` on the slot's stream."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "0.0.0-pytorch-standin"  # type: ignore[attr-defined]

    class _E:  # enum member
        def __init__(self, name: str) -> None:
            self.name = name

        def __repr__(self) -> str:
            return self.name

    class ILogger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = (_E(n) for n in ("E!", "E", "W", "I", "V"))

        def __init__(self) -> None:
            pass

    class DataType:
        FLOAT, HALF, INT32, INT64, BOOL, UINT8 = (_E(n) for n in ("f4", "f2", "i4", "i8", "b1", "u1"))

    class TensorIOMode:
        INPUT, OUTPUT = _E("in"), _E("out")

    dtypes = {"float32": DataType.FLOAT, "uint8": DataType.UINT8}

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.shape: tuple[int, ...] = ()
            self.addresses: dict[str, int] = {}

        def set_input_shape(self, name: str, shape: Any) -> bool:
            self.shape = tuple(int(d) for d in shape)
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            if name == "images":
                return self.shape
            return (self.shape[0], 8, 400)

        def set_tensor_address(self, name: str, address: int) -> bool:
            self.addresses[name] = int(address)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            import torch

            if device.fault == "false":
                device.fault = None
                return False
            x = device.tensor(self.addresses["images"], self.shape, self.engine.plan["input_dtype"])
            out = device.tensor(self.addresses["output0"], self.get_tensor_shape("output0"), "float32")
            if device.fault == "assert":  # an out-of-bounds gather: a device-side assert (sticky), reported by
                device.fault = None  # CUDA at the backend's next copy or sync, as a faulting TensorRT kernel is
                with device.on_stream(stream_handle):
                    x[torch.full((1,), 2**30, device=x.device)]
                return True
            try:
                with device.on_stream(stream_handle) as done:
                    if self.engine.plan["input_dtype"] == "uint8":  # what the uint8 engine's first layers do
                        x = x.float() * (1.0 / 255.0)
                    out.copy_(self.engine.run(x))
                    done()
            except RuntimeError as exc:  # TensorRT reports a failed enqueue as False, never as an exception
                print(f"INFO execute_async_v3: PyTorch failed to enqueue: {exc}", file=sys.stderr)
                return False
            return True

    class Engine:
        def __init__(self, plan: dict[str, Any]) -> None:
            self.plan = plan
            self.run = network()
            h, w = plan["imgsz"]
            self.profile = [(1, 3, h, w), (plan["max_batch"], 3, h, w), (plan["max_batch"], 3, h, w)]

        num_io_tensors = 2

        def get_tensor_name(self, i: int) -> str:
            return ("images", "output0")[i]

        def get_tensor_mode(self, name: str) -> _E:
            return TensorIOMode.INPUT if name == "images" else TensorIOMode.OUTPUT

        def get_tensor_profile_shape(self, name: str, index: int) -> list[tuple[int, ...]]:
            return self.profile

        def get_tensor_dtype(self, name: str) -> _E:
            return dtypes[self.plan["input_dtype"]] if name == "images" else DataType.FLOAT

        def create_execution_context(self) -> Context:
            return Context(self)

    class Runtime:
        def __init__(self, logger: Any) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> Engine:
            return Engine(json.loads(data))

    for name, value in list(locals().items()):
        if isinstance(value, type):
            setattr(trt, name, value)
    return trt


def write_engine(mods: dict[str, types.ModuleType], engine_dir: Path, input_dtype: str, imgsz: int, batch: int) -> Path:
    """A verified cache entry (engine + sidecar), so the backend's own lookup and checks load it."""
    import hashlib

    engines = mods["engines"]
    plan = json.dumps({"input_dtype": input_dtype, "imgsz": [imgsz, imgsz], "max_batch": batch}).encode()
    path = engine_dir / f"gpu-check-{input_dtype}.engine"
    path.write_bytes(plan)
    info = engines.EngineInfo(
        engine_path=str(path),
        key=path.stem,
        precision="fp32",
        target=engines.current_target(0),
        profile=engines.BatchProfile(1, batch, batch),
        onnx_sha256="0" * 64,
        engine_sha256=hashlib.sha256(plan).hexdigest(),
        names={0: "object"},
        imgsz=(imgsz, imgsz),
        metadata="{}",
        created_at="2026-01-01T00:00:00+00:00",
        input_dtype=input_dtype,
    )
    engines.sidecar_path(path).write_text(info.to_json())
    return path


# --- the checks -------------------------------------------------------------------------------------------------------


def owner_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("tensorrt"))


def run_checks(mods: dict[str, types.ModuleType], device: Device, carried: Path | None, workdir: Path) -> None:
    import numpy as np

    backend_mod = mods["tensorrt_backend"]
    errors = mods["errors"]
    imgsz, batch = (640, 8) if device.real else (64, 8)  # 8: the photos form one batch
    engine_dir = workdir / "engines"
    engine_dir.mkdir()
    spec = mods["engines"].EngineSpec(engine_dir=str(engine_dir), profile=mods["engines"].BatchProfile(1, batch, batch))
    options = mods["base"].BackendOptions(device="cuda:0", engine=spec)
    f32 = write_engine(mods, engine_dir, "float32", imgsz, batch)

    def open_backend(path: Path = f32) -> Any:
        return backend_mod.TensorRTBackend(path, options)

    rng = np.random.default_rng(0)
    inputs = [rng.random((1 + i % batch, 3, imgsz, imgsz), dtype=np.float32) for i in range(4 * THREADS)]
    backend = open_backend()
    reference: list[Any] = []
    try:
        with check("slots"):
            slots = backend._slots
            pinned = {type(s.bindings["images"].host.base).__name__ for s in slots}
            threads = {s.owner.thread_ident for s in slots}
            streams = {s.stream.handle for s in slots}
            ok = len(slots) == 2 and len(threads) == 2 and len(streams) == 2
            report(
                "PASS" if ok else "FAIL",
                "slots",
                f"{len(slots)} contexts, owner threads {len(threads)}, streams {len(streams)}, host buffers {pinned}",
            )

        with check(f"{THREADS} threads"):
            reference = [backend.run(x) for x in inputs]
            device.events.clear()
            with ThreadPoolExecutor(THREADS) as pool:
                got = list(pool.map(backend.run, inputs))
            same = sum(np.array_equal(a, b) for a, b in zip(got, reference, strict=True))
            report(
                "PASS" if same == len(inputs) else "FAIL",
                f"{THREADS} threads",
                f"{same}/{len(inputs)} batches equal to single-thread results, exactly",
            )

        with check("overlap"):
            report_overlap(device)

        with check("close and reload"):
            backend.close()
            left = owner_threads()
            backend = open_backend()
            again = [backend.run(x) for x in inputs[:8]]
            same = all(np.array_equal(a, b) for a, b in zip(again, reference[:8], strict=True))
            ok = not left and same
            report(
                "PASS" if ok else "FAIL",
                "close and reload",
                f"owner threads after close: {left or 'none'}; reloaded results equal: {same}",
            )

        with check("fault (execute_async_v3 False)"):
            device.fault = "false"
            try:
                backend.run(inputs[0])
                raise AssertionError("no error from a failed enqueue")
            except errors.BackendFailedError as exc:
                first = str(exc)
            started = time.perf_counter()
            try:
                backend.run(inputs[0])
                raise AssertionError("a failed backend ran another batch")
            except errors.BackendFailedError:
                refused_ms = (time.perf_counter() - started) * 1e3
            backend.close()
            left = owner_threads()
            ok = backend.failure is not None and not left
            report(
                "PASS" if ok else "FAIL",
                "fault (execute_async_v3 False)",
                f"{first[:120]}; next call refused in {refused_ms:.2f} ms; owner threads after close: {left or 'none'}",
            )
            backend = open_backend()
            backend.run(inputs[0])
            report("PASS", "reload after a non-sticky fault", "a new backend in this process runs")

        with check("input_dtype"):
            photos = load_photos(carried, device.real)
            lines = compare_input_dtypes(
                mods, backend, open_backend(write_engine(mods, engine_dir, "uint8", imgsz, batch)), photos
            )
            for line in lines:
                report("INFO", "input_dtype", line)
    finally:
        backend.close()


def report_overlap(device: Device) -> None:
    """From the events recorded around each execute on the 16-thread run: did the two slots' kernels overlap?"""
    events = list(device.events)
    if device.real:
        import torch

        torch.cuda.synchronize()
        base = events[0][1]
        spans = [(h, base.elapsed_time(s), base.elapsed_time(e)) for h, s, e in events]
    else:
        base_t = events[0][1]
        spans = [(h, (s - base_t) * 1e3, (e - base_t) * 1e3) for h, s, e in events]
    streams = sorted({h for h, _, _ in spans})
    overlap = 0.0
    for i, (h1, s1, e1) in enumerate(spans):
        for h2, s2, e2 in spans[i + 1 :]:
            if h1 != h2:
                overlap += max(0.0, min(e1, e2) - max(s1, s2))
    busy = sum(e - s for _, s, e in spans)
    status = "PASS" if len(streams) == 2 and overlap > 0 else "FAIL"
    clock = "CUDA events" if device.real else "host clock (stand-in)"
    report(
        status,
        "overlap",
        f"{len(spans)} executes on {len(streams)} streams; kernels of the two slots overlapped "
        f"{overlap:.2f} ms of {busy:.2f} ms busy ({clock})",
    )


def load_photos(carried: Path | None, real: bool) -> list[Any]:
    """8 RGB photos: bus.jpg and zidane.jpg, each as is, flipped, cropped and rotated (different letterboxes)."""
    import numpy as np

    sources = []
    for name in PHOTOS:
        path = carried / name if carried else None
        if path is None or not path.is_file():
            spec = importlib.util.find_spec("ultralytics")
            if spec and spec.submodule_search_locations:
                path = Path(next(iter(spec.submodule_search_locations))) / "assets" / name
        if path is None or not path.is_file():
            if real:
                raise FileNotFoundError(f"{name}: carry it (--fetch copies it) or install ultralytics")
            sources.append(np.random.default_rng(len(sources)).integers(0, 256, (480, 640, 3), np.uint8))
            continue
        try:
            from PIL import Image

            sources.append(np.asarray(Image.open(path).convert("RGB")))
        except ImportError:
            import torchvision.io as tio

            sources.append(tio.decode_jpeg(tio.read_file(str(path))).permute(1, 2, 0).numpy())
    photos = []
    for image in sources:
        h, w = image.shape[:2]
        photos += [image, image[:, ::-1], image[h // 4 : 3 * h // 4, w // 8 :], np.rot90(image)]
    return [np.ascontiguousarray(p) for p in photos]


def compare_input_dtypes(mods: dict[str, types.ModuleType], f32: Any, u8: Any, photos: list[Any]) -> list[str]:
    """End to end per batch of the 8 photos: letterbox into the slot's pinned buffer (uint8, or float32 with the
    multiply by 1/255 on the CPU), upload, run (the uint8 engine casts and scales on the GPU), download."""
    import numpy as np

    letterbox_batch = mods["preprocess"].letterbox_batch
    imgsz = f32.input_spec.shape[2]
    times: dict[str, list[float]] = {"float32": [], "uint8": []}
    stages: dict[str, list[float]] = {"float32": [], "uint8": []}
    outputs = {}
    try:
        for _ in range(12):
            for name, backend in (("float32", f32), ("uint8", u8)):
                start = time.perf_counter()
                with backend.lend_input((len(photos), 3, imgsz, imgsz)) as lease:
                    letterbox_batch(photos, lease.array)
                    filled = time.perf_counter()
                    outputs[name] = lease.run()
                end = time.perf_counter()
                times[name].append((end - start) * 1e3)
                stages[name].append((filled - start) * 1e3)
    finally:
        u8.close()
    lines = []
    for name in ("float32", "uint8"):
        total, letterbox = statistics.median(times[name][2:]), statistics.median(stages[name][2:])
        mib = len(photos) * 3 * imgsz * imgsz * (4 if name == "float32" else 1) / 2**20
        lines.append(
            f"{name:7}: {total:7.2f} ms per batch of {len(photos)} end to end, of which letterbox into "
            f"pinned memory {letterbox:6.2f} ms; upload {mib:.1f} MiB"
        )
    diff = float(np.abs(outputs["float32"] - outputs["uint8"]).max())
    ratio = statistics.median(times["float32"][2:]) / statistics.median(times["uint8"][2:])
    lines.append(f"float32/uint8 end-to-end time {ratio:.2f}x; largest output difference {diff:.2e}")
    return lines


def fault_child(carried: Path | None, pycuda_src: str) -> int:
    """In a child process (the fault is sticky: it would break every later check): a device-side assert on one
    slot's stream must become BackendFailedError at the sync; then is a new backend usable in this process?"""
    sys.path[:0] = [pycuda_src]
    sys.path.append(str(Path(pycuda_src).parent / "site"))
    device = Device(real=True)
    sys.modules["tensorrt"] = fake_tensorrt(device)
    install_cv2_shim()  # load_project loads preprocess.py, which imports cv2
    mods = load_project()
    with tempfile.TemporaryDirectory(prefix="gpu_check-fault-") as tmp:
        engine_dir = Path(tmp)
        spec = mods["engines"].EngineSpec(engine_dir=str(engine_dir), profile=mods["engines"].BatchProfile(1, 2, 2))
        options = mods["base"].BackendOptions(device="cuda:0", engine=spec)
        path = write_engine(mods, engine_dir, "float32", 64, 2)
        import numpy as np

        batch = np.zeros((1, 3, 64, 64), np.float32)
        backend = mods["tensorrt_backend"].TensorRTBackend(path, options)
        backend.run(batch)
        device.fault = "assert"
        try:
            backend.run(batch)
            print("FAIL fault (device-side assert): no error reached the caller")
            return 1
        except mods["errors"].BackendFailedError as exc:
            print(f"PASS fault (device-side assert): BackendFailedError: {str(exc)[:160]}")
        finally:
            backend.close()
        try:
            again = mods["tensorrt_backend"].TensorRTBackend(path, options)
            again.run(batch)
            again.close()
            print("INFO reload after a sticky fault: a new backend in this process still works (not sticky here)")
        except Exception as exc:
            print(
                "INFO reload after a sticky fault: a new backend in this process fails too "
                f"({type(exc).__name__}: {str(exc)[:120]}): the context is gone until the process exits, hence "
                "exit and restart, not reload"
            )
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--fetch", type=Path, metavar="DIR", help="download the pycuda sdist, its wheels, the photos")
    mode.add_argument("--carried", type=Path, metavar="DIR", help="on the GPU host: build pycuda from DIR, check")
    mode.add_argument("--dry-run", action="store_true", help="the same checks on the CPU stand-in of pycuda")
    mode.add_argument("--fault-child", metavar="PYCUDA_SRC", help=argparse.SUPPRESS)
    parser.add_argument("--build-only", action="store_true", help="with --carried: build pycuda and stop")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.fetch:
        return fetch(args.fetch)
    if args.fault_child:
        return fault_child(None, args.fault_child)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        scratch = Path(tmp)
        pycuda_src: Path | None = None
        if args.dry_run:
            print("dry run: the backend's slot machinery on the CPU stand-in of pycuda (tests/standin), no GPU")
            install_standin()
        else:
            if args.build_only:
                return 0 if build_pycuda(args.carried, scratch) is not None else 1
            ok, why = has_gpu()
            if not ok:
                print(f"SKIP gpu: {why}; nothing to check here (use --dry-run to exercise the checks)")
                return 0
            report("PASS", "gpu", why)
            pycuda_src = build_pycuda(args.carried, scratch)
            if pycuda_src is None:
                return 1
        device = Device(real=not args.dry_run)
        sys.modules["tensorrt"] = fake_tensorrt(device)
        report("INFO", "letterbox", f"resize by {install_cv2_shim()}")
        mods = load_project()
        run_checks(mods, device, args.carried, scratch)
        if pycuda_src is not None:
            with check("fault (device-side assert)"):
                proc = subprocess.run(
                    [sys.executable, __file__, "--fault-child", str(pycuda_src)],
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                for line in proc.stdout.splitlines():
                    status, _, rest = line.partition(" ")
                    name, _, detail = rest.partition(": ")
                    report(status, name, detail)
                if proc.returncode != 0:
                    report(
                        "FAIL", "fault (device-side assert)", f"child exited {proc.returncode}: {proc.stderr[-800:]}"
                    )
    failed = [name for status, name in results if status == "FAIL"]
    summary = f"{len(failed)} failed: {', '.join(failed)}" if failed else "all passed"
    print(f"DONE {summary} in {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
