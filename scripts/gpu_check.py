#!/usr/bin/env python3
"""GPU check for the TensorRT path's CUDA rules, for a host with an NVIDIA GPU, PyTorch with CUDA and nvcc, but no
TensorRT, no pycuda and no network. One line per check; exit 1 if any check fails; under 10 minutes.

  1. here (with PyPI):  python3 scripts/gpu_check.py --fetch .cache/gpu_check   # pycuda sdist + its pure deps
  2. carry the repo and that folder (about 3 MB) to the GPU host, then there:
                        python3 scripts/gpu_check.py --wheels .cache/gpu_check
  3. anywhere:          python3 scripts/gpu_check.py --dry-run      # the same checks against the CPU stand-in

What it does on the GPU host:
  * builds pycuda from its source archive against the host's CUDA (cuda.h from nvcc's toolkit or PyTorch's nvidia
    wheels; libcuda from the toolkit's stubs or the driver), into a scratch folder, offline;
  * loads `detector/runtime/backends/cuda_owner.py` UNCHANGED (by path, so the host needs none of our dependencies)
    and checks, against the real driver: the owner thread's context is the device's primary context; it is on the
    requested device; memory allocated on one owner is usable on another owner of the same device (they share the
    primary context); CUDA work on a thread with no context fails with "invalid device context"; 16 threads calling
    one owner get correct round-trips, all executed on the owner thread; closing owners releases the context and a
    new owner works afterwards;
  * times host->device copies of an 8x3x640x640 batch: pinned vs pageable, uint8 vs float32 (the numbers that
    decide whether `export.engine.input_dtype: uint8`, uploading uint8 and normalising on the GPU, should become the
    default; the TensorRT backend uploads from pinned memory either way).

Without a GPU (and not in --dry-run) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import types
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STANDIN = REPO / "tests" / "standin"
BATCH = (8, 3, 640, 640)
THREADS = 16
CARRY_LIMIT = 64 * 2**20
# pycuda's run-time dependencies (pure Python); build-time: setuptools, wheel (numpy comes with PyTorch).
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
FETCH = ["pytools", "platformdirs", "typing_extensions", "mako", "markupsafe", "siphash24", "setuptools", "wheel"]

# `setup.py build_ext -j` parallelises across extensions only, and pycuda's _driver is one extension of ~70 C++
# files (Boost.Python included): compiled one by one that took 22 minutes on a 2-core machine. This compiles one
# extension's files in parallel (distutils' CCompiler.compile with a thread pool; each file is its own compiler
# process), so the build fits the 10-minute budget on a GPU host's cores.
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


# --- fetching and building pycuda ---------------------------------------------------------------------------------


def pip_command() -> list[str]:
    """This Python's pip, or the first pip on PATH (uv-made virtualenvs have no pip module)."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):
        if found := shutil.which(name):
            return [found]
    raise SystemExit("no pip here: run --fetch with a Python that has pip (python3 -m ensurepip)")


def fetch(folder: Path) -> int:
    """Download what the GPU host needs (run where PyPI is reachable)."""
    folder.mkdir(parents=True, exist_ok=True)
    pip = [*pip_command(), "download", "--dest", str(folder)]
    subprocess.run([*pip, "--no-deps", "--no-binary", "pycuda", "pycuda"], check=True)
    # markupsafe and siphash24 have compiled wheels: one per Python the GPU host may have.
    for version in PYTHONS:
        platform = ["--platform", "manylinux2014_x86_64", "--python-version", version]
        subprocess.run([*pip, "--no-deps", "--only-binary", ":all:", *platform, *FETCH], check=True)
    size = sum(p.stat().st_size for p in folder.iterdir())
    print(f"fetched {len(list(folder.iterdir()))} files, {size / 2**20:.1f} MiB, into {folder}")
    return 0 if size < CARRY_LIMIT else 1


def cuda_root() -> Path | None:
    """The CUDA toolkit: $CUDA_ROOT, $CUDA_HOME, /usr/local/cuda, or where `nvcc` on PATH lives (a wrapper script
    on PATH has no toolkit beside it, so the first with bin/nvcc AND include/ wins)."""
    nvcc = shutil.which("nvcc")
    candidates = [os.environ.get("CUDA_ROOT"), os.environ.get("CUDA_HOME"), "/usr/local/cuda"]
    candidates.append(str(Path(nvcc).resolve().parents[1]) if nvcc else None)
    for candidate in candidates:
        if candidate and Path(candidate, "bin", "nvcc").exists() and Path(candidate, "include").is_dir():
            return Path(candidate)
    return None


def find_cuda_h(root: Path | None) -> Path | None:
    """cuda.h: the toolkit's, else the one in PyTorch's nvidia-cuda-runtime wheel."""
    candidates = [root / "include"] if root else []
    for site in sys.path:
        candidates += [Path(p).parent for p in glob.glob(f"{site}/nvidia/cuda_runtime/include/cuda.h")]
        candidates += [Path(p).parent for p in glob.glob(f"{site}/nvidia/cu*/include/cuda.h")]
    return next((c for c in candidates if (c / "cuda.h").is_file()), None)


def find_libcuda_dir(root: Path | None, scratch: Path) -> Path | None:
    """A folder with `libcuda.so` to link against: the toolkit's stubs, else the driver's libcuda.so(.1)."""
    dirs = [Path(os.environ["LIBCUDA_DIR"])] if os.environ.get("LIBCUDA_DIR") else []
    dirs += [root / "lib64" / "stubs", root / "lib64", root / "lib" / "stubs"] if root else []
    driver_dirs = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/nvidia/lib64", "/usr/lib/wsl/lib")
    dirs += [Path(d) for d in driver_dirs]
    for d in dirs:
        if (d / "libcuda.so").exists():
            return d
    for d in dirs:
        if (d / "libcuda.so.1").exists():  # driver only: give the linker the unversioned name
            link = scratch / "libcuda"
            link.mkdir(exist_ok=True)
            with contextlib.suppress(FileExistsError):
                (link / "libcuda.so").symlink_to(d / "libcuda.so.1")
            return link
    return None


def build_pycuda(wheels: Path, scratch: Path, dry_run: bool) -> Path | None:
    """Build pycuda in place from the sdist in `wheels`; return the folder to put on sys.path."""
    sdists = sorted(wheels.glob("pycuda-*.tar.gz"))
    if not sdists:
        report("FAIL", "pycuda source", f"no pycuda-*.tar.gz in {wheels} (run --fetch where PyPI is reachable)")
        return None
    root = cuda_root()
    inc = find_cuda_h(root)
    lib = find_libcuda_dir(root, scratch)
    where = f"sdist {sdists[-1].name}, CUDA root {root}, cuda.h in {inc}, libcuda in {lib}"
    if dry_run:
        report("SKIP", "pycuda build", f"dry run, would build {where}")
        return None
    if root is None or inc is None or lib is None:
        report("FAIL", "pycuda build", f"missing toolkit pieces: {where}")
        return None
    start = time.perf_counter()
    with tarfile.open(sdists[-1]) as tar:
        tar.extractall(scratch, filter="data")
    src = next(scratch.glob("pycuda-*/"))
    deps = scratch / "site"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(deps), os.environ.get("PYTHONPATH", "")])}
    pip = [*pip_command(), "install", "--no-index", "--find-links", str(wheels.resolve())]
    pip += ["--target", str(deps)]
    configure = [sys.executable, "configure.py", f"--cuda-root={root}", f"--cuda-inc-dir={inc}"]
    configure += [f"--cudadrv-lib-dir={lib}", "--no-cuda-enable-curand"]  # curand: not needed, not always there
    jobs = str(os.cpu_count() or 4)
    steps = [
        ("install pycuda's dependencies", [*pip, "--no-deps", *FETCH]),
        ("configure", configure),
        ("compile", [sys.executable, "-c", PARALLEL_BUILD.replace("JOBS", jobs)]),
    ]
    for what, cmd in steps:
        proc = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout)[-1500:].strip()
            report("FAIL", "pycuda build", f"{what} failed ({where}): {tail}")
            return None
    report("PASS", "pycuda build", f"{where}, {time.perf_counter() - start:.0f} s")
    sys.path[:0] = [str(src), str(deps)]
    return src


# --- loading our code unchanged -----------------------------------------------------------------------------------


def load_cuda_owner() -> Any:
    """detector/runtime/backends/cuda_owner.py as is, with only detector.errors beside it (no other dependency)."""
    for name in ("detector", "detector.runtime", "detector.runtime.backends"):
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = []
            sys.modules[name] = pkg
    files = (("detector.errors", "detector/errors.py"), ("cuda_owner", "detector/runtime/backends/cuda_owner.py"))
    for name, rel in files:
        spec = importlib.util.spec_from_file_location(name, REPO / rel)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules["cuda_owner"].CudaOwner


def install_standin() -> None:
    sys.path.insert(0, str(STANDIN))
    from tensorrt_standin import cuda

    pycuda = types.ModuleType("pycuda")
    pycuda.__path__ = []
    pycuda.driver = cuda  # type: ignore[attr-defined]
    sys.modules["pycuda"], sys.modules["pycuda.driver"] = pycuda, cuda
    cuda.reset([("Stand-in GPU 0", (8, 9)), ("Stand-in GPU 1", (8, 9))])


def has_gpu() -> tuple[bool, str]:
    try:
        import torch

        if torch.cuda.is_available():
            return True, f"PyTorch sees {torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)}"
        return False, "PyTorch is installed but sees no CUDA GPU"
    except ImportError:
        pass
    if shutil.which("nvidia-smi"):
        proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        if proc.returncode == 0 and "GPU" in proc.stdout:
            return True, proc.stdout.strip().splitlines()[0]
    return False, "no NVIDIA GPU, driver or PyTorch-with-CUDA found"


# --- the checks -----------------------------------------------------------------------------------------------------


def run_checks(owner_cls: Any, real: bool) -> None:
    import numpy as np
    import pycuda.driver as cuda

    cuda.init()
    count = cuda.Device.count()
    dev0 = cuda.Device(0)
    report("PASS", "devices", f"{count} visible; 0 = {dev0.name()} sm {'.'.join(map(str, dev0.compute_capability()))}")

    with check("primary context"):
        primary = dev0.retain_primary_context()
        primary.push()
        expected = cuda.Context.get_current().handle
        primary.pop()
        owner = owner_cls(0, name="check")
        try:
            got = owner.call(lambda: cuda.Context.get_current().handle)
            ok = got == expected
            report("PASS" if ok else "FAIL", "primary context", f"owner {got:#x}, device primary {expected:#x}")
        finally:
            owner.close()
            primary.detach()

    with check("device rule"):
        lines = []
        for index in range(min(count, 2)):
            owner = owner_cls(index, name="check")
            try:
                same = owner.call(lambda i=index: cuda.Context.get_device() == cuda.Device(i))
                lines.append(f"owner({index}) on device {index}: {same}")
                if not same:
                    raise AssertionError("; ".join(lines))
            finally:
                owner.close()
        report("PASS", "device rule", "; ".join(lines))

    with check("shared primary context"):
        a, b = owner_cls(0, name="a"), owner_cls(0, name="b")
        try:
            data = np.arange(1024, dtype=np.float32)
            mem = a.call(lambda: cuda.mem_alloc(data.nbytes))
            b.call(lambda: cuda.memcpy_htod(mem, data))  # allocated on a, written on b
            back = np.empty_like(data)
            a.call(lambda: cuda.memcpy_dtoh(back, mem))
            a.call(mem.free)
            ok = bool(np.array_equal(back, data))
            report("PASS" if ok else "FAIL", "shared primary context", "memory of one owner used on another")
        finally:
            a.close()
            b.close()

    with check("no context, no CUDA"):
        caught: list[BaseException] = []

        def bare() -> None:
            try:
                cuda.mem_alloc(16)
            except cuda.Error as exc:
                caught.append(exc)

        t = threading.Thread(target=bare)
        t.start()
        t.join()
        ok = bool(caught)
        report("PASS" if ok else "FAIL", "no context, no CUDA", f"thread without a context: {caught[:1] or 'no error'}")

    with check(f"{THREADS} threads"):
        owner = owner_cls(0, name="check")
        try:
            threads: set[int] = set()

            def roundtrip(i: int) -> bool:
                data = np.full(4096, i, np.float32)

                def work() -> bool:
                    threads.add(threading.get_ident())
                    mem = cuda.mem_alloc(data.nbytes)
                    out = np.empty_like(data)
                    cuda.memcpy_htod(mem, data)
                    cuda.memcpy_dtoh(out, mem)
                    mem.free()
                    return bool(np.array_equal(out, data))

                return bool(owner.call(work))

            with ThreadPoolExecutor(THREADS) as pool:
                oks = list(pool.map(roundtrip, range(THREADS * 20)))
            ok = all(oks) and threads == {owner.thread_ident}
            report(
                "PASS" if ok else "FAIL",
                f"{THREADS} threads",
                f"{sum(oks)}/{len(oks)} round-trips correct, {len(threads)} executing thread(s)",
            )
        finally:
            owner.close()

    with check("close and reopen"):
        owner = owner_cls(0, name="check")
        owner.close()
        owner.close()  # idempotent
        again = owner_cls(0, name="check")
        try:
            again.call(lambda: cuda.mem_alloc(16).free())
            report("PASS", "close and reopen", "a new owner works after the last one closed")
        finally:
            again.close()

    with check("copy timings"):
        owner = owner_cls(0, name="timing")
        try:
            lines = owner.call(lambda: time_copies(np, cuda, real))
            for line in lines:
                report("INFO", "copy", line)
        finally:
            owner.close()


def time_copies(np: Any, cuda: Any, real: bool, repeats: int = 10) -> list[str]:
    """Median host->device copy time of one BATCH: pinned vs pageable, uint8 vs float32 (owner thread)."""
    lines, times = [], {}
    for dtype in (np.float32, np.uint8):
        nbytes = int(np.prod(BATCH)) * np.dtype(dtype).itemsize
        mem = cuda.mem_alloc(nbytes)
        for kind, alloc in (("pinned", cuda.pagelocked_empty), ("pageable", np.empty)):
            host = alloc(BATCH, dtype)
            host[...] = 1
            cuda.memcpy_htod(mem, host)  # warm-up
            samples = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                cuda.memcpy_htod(mem, host)
                cuda.Context.synchronize()
                samples.append(time.perf_counter() - t0)
            ms = statistics.median(samples) * 1e3
            times[(np.dtype(dtype).name, kind)] = ms
            lines.append(
                f"{np.dtype(dtype).name:7} {kind:8} {nbytes / 2**20:5.1f} MiB  {ms:7.2f} ms  "
                f"{nbytes / ms / 1e6:6.2f} GB/s"
            )
        mem.free()
    f32p, f32g, u8p = times[("float32", "pinned")], times[("float32", "pageable")], times[("uint8", "pinned")]
    lines.append(
        f"pageable/pinned float32 {f32g / f32p:.2f}x, float32/uint8 pinned {f32p / u8p:.2f}x"
        + ("" if real else " (stand-in: host memcpy, not a GPU)")
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--fetch", type=Path, metavar="DIR", help="download the pycuda sdist and its deps into DIR")
    mode.add_argument("--wheels", type=Path, metavar="DIR", help="build pycuda from DIR and run the checks")
    mode.add_argument("--dry-run", action="store_true", help="run the checks against the CPU stand-in")
    parser.add_argument("--carried", type=Path, metavar="DIR", help="with --dry-run: also inspect this folder")
    parser.add_argument(
        "--build-only", action="store_true", help="with --wheels: build pycuda and stop (works without a GPU)"
    )
    args = parser.parse_args(argv)
    if args.fetch:
        return fetch(args.fetch)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        if args.dry_run:
            print("dry run: CUDA rules checked against the CPU stand-in (tests/standin), no GPU is used")
            if args.carried:
                build_pycuda(args.carried, Path(tmp), dry_run=True)
            install_standin()
        elif args.build_only:
            return 0 if build_pycuda(args.wheels, Path(tmp), dry_run=False) is not None else 1
        else:
            ok, why = has_gpu()
            if not ok:
                print(f"SKIP gpu: {why}; nothing to check here (use --dry-run to exercise the checks)")
                return 0
            report("PASS", "gpu", why)
            if build_pycuda(args.wheels, Path(tmp), dry_run=False) is None:
                return 1
        owner_cls = load_cuda_owner()
        run_checks(owner_cls, real=not args.dry_run)
    failed = [name for status, name in results if status == "FAIL"]
    summary = f"{len(failed)} failed: {', '.join(failed)}" if failed else "all passed"
    print(f"DONE {summary} in {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
