"""Build fcnfast's two pybind11 extensions with ninja, without torch.

- ``fcnfast._C``: C++ CPU kernels (OpenMP), always built.
- ``fcnfast._cuda``: CUDA C++ kernels, built with nvcc when it is found.
  FCNFAST_CUDA=0 skips it, FCNFAST_CUDA=1 makes a missing nvcc an error.
  FCNFAST_CUDA_ARCHS="80;90" picks the SASS targets (PTX of the newest is embedded too).

Neither module links libtorch: they take raw pointers, shapes and strides from Python,
so one build serves every torch version and CUDA code compiles and links on machines
without a GPU. cudart is linked statically, so ``import fcnfast._cuda`` works (and reports
"no device") where no CUDA runtime library is installed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sysconfig
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent.resolve()
CSRC = ROOT / "csrc"
# fcnfast/_version.py is the one place the version is written; read as text (importing fcnfast needs torch)
VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "fcnfast" / "_version.py").read_text()).group(1)


def _env_flag(name: str):
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"{name} must be 0 or 1, got {value!r}")


def _find_nvcc():
    for candidate in (
        os.environ.get("NVCC"),
        shutil.which("nvcc"),
        os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc"),
    ):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _ninja_binary():
    try:
        import ninja  # the PyPI package ships the binary

        path = os.path.join(ninja.BIN_DIR, "ninja")
        if os.path.exists(path):
            return path
    except ImportError:
        pass
    path = shutil.which("ninja")
    if path is None:
        raise SystemExit("ninja is required to build fcnfast: pip install ninja")
    return path


def _cuda_archs():
    raw = os.environ.get("FCNFAST_CUDA_ARCHS", "80;90")
    archs = [a.strip().replace("sm_", "").replace(".", "") for a in raw.replace(",", ";").split(";")]
    archs = [a for a in archs if a]
    if not archs or not all(a.isdigit() for a in archs):
        raise SystemExit(f"FCNFAST_CUDA_ARCHS must look like '80;90', got {raw!r}")
    return archs


class NinjaExtension(Extension):
    """An extension compiled by one ninja file; ``kind`` is "cxx" or "cuda"."""

    def __init__(self, name, sources, kind):
        super().__init__(name, sources=sources)
        self.kind = kind


class NinjaBuildExt(build_ext):
    def build_extensions(self):
        import pybind11

        ninja = _ninja_binary()
        cxx = os.environ.get("CXX", "c++")
        py_include = sysconfig.get_paths()["include"]
        common_inc = [f"-I{CSRC / 'include'}", f"-I{pybind11.get_include()}", f"-I{py_include}"]
        for ext in self.extensions:
            out = Path(self.get_ext_fullpath(ext.name)).resolve()
            out.parent.mkdir(parents=True, exist_ok=True)
            build_dir = Path(self.build_temp).resolve() / ext.name.replace(".", "_")
            build_dir.mkdir(parents=True, exist_ok=True)
            lines = [f"ninja_required_version = 1.3", f"cxx = {cxx}"]
            cxxflags = ["-O3", "-std=c++17", "-fPIC", "-fvisibility=hidden", "-Wall",
                        f"-DFCNFAST_VERSION=\\\"{VERSION}\\\""] + common_inc
            if ext.kind == "cxx":
                cxxflags += ["-fopenmp", "-march=x86-64-v2"] if _is_x86() else ["-fopenmp"]
                lines += [
                    f"cxxflags = {' '.join(cxxflags)}",
                    "rule cxx",
                    "  command = $cxx -MMD -MF $out.d $cxxflags -c $in -o $out",
                    "  depfile = $out.d",
                    "  deps = gcc",
                    "  description = CXX $out",
                    "rule link",
                    "  command = $cxx -shared $in -o $out -fopenmp",
                    "  description = LINK $out",
                ]
            else:
                nvcc = self._nvcc
                archs = _cuda_archs()
                gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
                gencode.append(f"-gencode=arch=compute_{archs[-1]},code=compute_{archs[-1]}")
                nvflags = ["-O3", "-std=c++17", "--expt-relaxed-constexpr", "-lineinfo",
                           "-Xcompiler", "-fPIC", "-Xcompiler", "-fvisibility=hidden",
                           f"-DFCNFAST_VERSION=\\\"{VERSION}\\\""] + gencode + common_inc
                lines += [
                    f"nvcc = {nvcc}",
                    f"cxxflags = {' '.join(cxxflags)}",
                    f"nvflags = {' '.join(nvflags)}",
                    "rule cxx",
                    "  command = $cxx -MMD -MF $out.d $cxxflags -c $in -o $out",
                    "  depfile = $out.d",
                    "  deps = gcc",
                    "  description = CXX $out",
                    "rule nvcc",
                    "  command = $nvcc $nvflags -MD -MF $out.d -c $in -o $out",
                    "  depfile = $out.d",
                    "  deps = gcc",
                    "  description = NVCC $out",
                    "rule link",
                    f"  command = $nvcc -shared -cudart static $in -o $out {' '.join(gencode)}",
                    "  description = LINK $out",
                ]
            objects = []
            for src in ext.sources:
                src_path = (ROOT / src).resolve()
                obj = build_dir / (src_path.name + ".o")
                rule = "nvcc" if src_path.suffix == ".cu" else "cxx"
                lines.append(f"build {_esc(obj)}: {rule} {_esc(src_path)}")
                objects.append(_esc(obj))
            lines.append(f"build {_esc(out)}: link {' '.join(objects)}")
            lines.append(f"default {_esc(out)}")
            ninja_file = build_dir / "build.ninja"
            ninja_file.write_text("\n".join(lines) + "\n")
            jobs = os.environ.get("MAX_JOBS", str(os.cpu_count() or 2))
            print(f"fcnfast: building {ext.name} with ninja ({ninja_file})", flush=True)
            subprocess.run([ninja, "-f", str(ninja_file), "-j", jobs], check=True, cwd=build_dir)

    def run(self):
        self._nvcc = _find_nvcc()
        want_cuda = _env_flag("FCNFAST_CUDA")
        keep = []
        for ext in self.extensions:
            if ext.kind == "cuda":
                if want_cuda is False:
                    print("fcnfast: FCNFAST_CUDA=0, skipping fcnfast._cuda", flush=True)
                    continue
                if self._nvcc is None:
                    if want_cuda:
                        raise SystemExit("FCNFAST_CUDA=1 but nvcc was not found (set CUDA_HOME or NVCC)")
                    print("fcnfast: nvcc not found, skipping fcnfast._cuda", flush=True)
                    continue
            keep.append(ext)
        self.extensions = keep
        super().run()


def _is_x86():
    import platform

    return platform.machine().lower() in ("x86_64", "amd64")


def _sources(*patterns):
    """Source paths relative to setup.py (setuptools refuses absolute ones in editable builds)."""
    return [str(p.relative_to(ROOT)) for pattern in patterns for p in sorted(CSRC.glob(pattern))]


def _esc(path) -> str:
    return str(path).replace("$", "$$").replace(" ", "$ ").replace(":", "$:")


setup(
    version=VERSION,
    # every package under fcnfast/ (a new subpackage cannot be forgotten), plus the Triton kernels
    packages=find_packages(include=["fcnfast", "fcnfast.*"]) + ["fcnfast.kernels"],
    package_dir={"fcnfast": "fcnfast", "fcnfast.kernels": "kernels"},
    ext_modules=[
        NinjaExtension("fcnfast._C", _sources("cpu/*.cpp"), "cxx"),
        NinjaExtension("fcnfast._cuda", _sources("cuda/*.cu", "cuda/*.cpp"), "cuda"),
    ],
    cmdclass={"build_ext": NinjaBuildExt},
)
