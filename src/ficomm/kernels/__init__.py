"""The compiled CPU kernels of ficomm.nets (nets.cpp: the Q-net and the message net over a
minibatch, forward and backward, and one acting step of all agents): built at first use,
cached, loaded with ctypes.

The kernel is compiled with the machine's C++ compiler (`$CXX`, else g++, c++ or clang++) and
`-march=native` plus `$FICOMM_KERNEL_CXXFLAGS` (e.g. `-mno-avx512f` to build for AVX2 only),
so the cache key names the source, the compiler, the flags and the CPU: a cache shared
between cluster nodes never hands one node's build to a different CPU. The cache lives in
`$FICOMM_KERNEL_CACHE`, else `$XDG_CACHE_HOME/ficomm/kernels` (default ~/.cache/...). Builds
are written to a temporary name and renamed, so parallel jobs may build at once.

`load()` returns the library or None; `unavailable_reason()` then says why (no compiler, a
failed build), and the caller falls back to the torch implementation in ficomm.nets.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

SOURCE = Path(__file__).with_name("nets.cpp")
ABI = 8  # bump with any change of the exported signatures
BASE_FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno"]
NATIVE_FLAGS = ["-march=native"]  # dropped if the compiler refuses it (some ARM toolchains)

_lock = threading.Lock()
_state: dict[str, object] = {}


def compiler() -> str | None:
    """Path of the C++ compiler the kernel is built with, or None."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and (path := shutil.which(name)):
            return path
    return None


def cache_dir() -> Path:
    if env := os.environ.get("FICOMM_KERNEL_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ficomm" / "kernels"


def _cpu_id() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        keep = [ln for ln in lines if ln.startswith(("model name", "flags", "Features"))]
        return "\n".join(dict.fromkeys(keep)) or platform.processor()
    except OSError:
        return platform.processor() + platform.machine()


def extra_flags() -> list[str]:
    """Compiler flags added from $FICOMM_KERNEL_CXXFLAGS (part of the cache key)."""
    return os.environ.get("FICOMM_KERNEL_CXXFLAGS", "").split()


def _cache_key(cxx: str) -> str:
    try:
        version = subprocess.run(
            [cxx, "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    h = hashlib.sha256()
    for part in (SOURCE.read_text(), version, _cpu_id(), str(ABI), " ".join(extra_flags())):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def _build(cxx: str, target: Path) -> str | None:
    """Compile into `target` (atomically); returns an error text or None."""
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for flags in (BASE_FLAGS + NATIVE_FLAGS + extra_flags(), BASE_FLAGS + extra_flags()):
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            proc = subprocess.run(
                [cxx, *flags, "-o", tmp, str(SOURCE)], capture_output=True, text=True, timeout=300
            )
            if proc.returncode == 0:
                os.replace(tmp, target)
                return None
            errors.append(f"{' '.join([Path(cxx).name, *flags])}: {proc.stderr.strip()[-800:]}")
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(str(exc))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return "\n".join(errors)


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    dims = [ctypes.POINTER(ctypes.c_int)]
    for dt in ("f32", "f64"):
        for kind, n_ptrs in (
            ("qnet_forward", 15),
            ("qnet_backward", 18),
            ("msg_forward", 11),
            ("msg_backward", 12),
        ):
            fn = getattr(lib, f"ficomm_{kind}_{dt}")
            fn.argtypes = dims + [ctypes.c_void_p] * n_ptrs
            fn.restype = None
    lib.ficomm_policy_step_f32.argtypes = dims * 2 + [ctypes.c_void_p] * 6
    lib.ficomm_policy_step_f32.restype = None
    return lib


def load() -> ctypes.CDLL | None:
    """The kernel library, building it on first use; None if it cannot be built here."""
    with _lock:
        if "lib" in _state:
            return _state["lib"]  # type: ignore[return-value]
        lib, reason = None, None
        cxx = compiler()
        if cxx is None:
            reason = "no C++ compiler found (set CXX, or install g++ or clang++)"
        else:
            name = f"nets-{_cache_key(cxx)}.so"
            candidates = [cache_dir(), Path(tempfile.gettempdir()) / "ficomm-kernels"]
            for directory in candidates:
                target = directory / name
                try:
                    if not target.exists():
                        reason = _build(cxx, target)
                        if reason is not None:
                            break  # a compile error does not depend on the directory
                    lib = _bind(ctypes.CDLL(str(target)))
                    if lib.ficomm_qnet_abi() != ABI:
                        lib, reason = None, f"{target} has a different ABI; delete it"
                    else:
                        reason = None
                    break
                except OSError as exc:  # unwritable cache, unloadable file: try the next place
                    reason = f"{target}: {exc}"
        _state["lib"], _state["reason"] = lib, reason
        return lib


def unavailable_reason() -> str | None:
    """Why `load()` returned None (None if it has not failed)."""
    load()
    return _state.get("reason")  # type: ignore[return-value]


def vector_bytes() -> int | None:
    """SIMD width the kernel was compiled for (64: AVX-512, 32: AVX/AVX2, 16: SSE/NEON)."""
    lib = load()
    return None if lib is None else int(lib.ficomm_qnet_vector_bytes())
