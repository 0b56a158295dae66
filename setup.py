"""Build the mobilevit C core (mobilevit._C).

The build is portable: no host-specific architecture flag (-march=native) and
no relaxed floating-point mode (-ffast-math).  ISA-specific kernels live in
their own files, compiled with target pragmas (gcc, clang) or per-file /arch
flags (MSVC, see PER_FILE_FLAGS) and selected at run time from CPUID.

Compilers (README "Portability" says what was tested): gcc and clang on
Linux, Apple clang on macOS, MSVC on Windows.  The compiler is the one
setuptools picks (CC=clang python setup.py ... to choose clang).

OpenMP, chosen at build time with MOBILEVIT_OPENMP:
  unset / "auto"  probe the compiler (compile and link a small program) and
                  build single-threaded when it cannot do OpenMP;
  "0"             no OpenMP: single-threaded build (mobilevit info says so);
  "1"             OpenMP required: the build fails if the probe does.
The probe tries, in order: -fopenmp (gcc; clang with libomp, e.g. Debian's
libomp-dev); on macOS Apple clang's -Xpreprocessor -fopenmp -lomp with the
libomp of MOBILEVIT_LIBOMP_PREFIX, `brew --prefix libomp`, /opt/homebrew/opt/
libomp or /usr/local/opt/libomp; on MSVC /openmp (vcomp, OpenMP 2.0: all the
core needs).  The old MOBILEVIT_NO_OPENMP=1 still means MOBILEVIT_OPENMP=0.

Warnings: -Wall -Wextra (without -Wunused-parameter: CPython's method
signatures have unused parameters by design).  MOBILEVIT_WERROR=1 makes
warnings errors (the clang CI job).  MOBILEVIT_SANITIZE=1 builds with
AddressSanitizer + UndefinedBehaviorSanitizer (the hardening job).

Signed overflow: CPython's CFLAGS (sysconfig) carry -fwrapv, which every
extension inherits and which makes signed overflow defined (wrapping), so
UBSan's signed-integer-overflow check can never fire.  Every build appends
-fno-wrapv after the inherited flags (gcc and clang: the last one wins):
the sanitizer build so that overflow is reported, and the normal build so
that it is compiled under the same rules the sanitizer checks (sizes are
computed with the checked helpers of mv_common.h, so no code relies on
wrapping; nothing else in the core changes, the kernels' loops are
unaffected in speed).
"""
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from glob import glob

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OMP_PROBE = "#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n"

UNIX_FLAGS = ["-std=gnu11", "-O3", "-fno-strict-aliasing", "-Wall", "-Wextra", "-Wno-unused-parameter",
              "-Wno-unused-function", "-fvisibility=hidden", "-fno-wrapv"]
# MSVC: C11 with its C11 atomics (VS 2022 17.5+), precise floating point (no
# contraction into FMA, as gcc/clang without -ffp-contract=fast on the
# reference code), unknown `#pragma GCC unroll` quiet.
MSVC_FLAGS = ["/std:c11", "/experimental:c11atomics", "/O2", "/fp:precise", "/W3", "/wd4068"]

# Flags for single files, by compiler type.  gcc and clang need none: the ISA
# files carry target pragmas.  MSVC has no target pragma; /arch only lets the
# compiler emit the ISA itself (the intrinsics compile without it), and the
# files are only called after CPUID says the CPU has it.
PER_FILE_FLAGS = {
    "msvc": {
        os.path.join("csrc", "ops", "simd_avx2.c"): ["/arch:AVX2"],
        os.path.join("csrc", "ops", "simd_avx512.c"): ["/arch:AVX512"],
    },
}


def _env_switch(name, default="auto"):
    v = os.environ.get(name, default).strip().lower()
    if v in ("1", "yes", "on", "true"):
        return "1"
    if v in ("0", "no", "off", "false"):
        return "0"
    if v in ("", "auto"):
        return "auto"
    raise SystemExit(f"setup.py: {name}={os.environ[name]!r}: expected 0, 1 or auto")


@contextlib.contextmanager
def _quiet_fd(fd, path):
    """Send a file descriptor to `path` for the duration (the compiler's own
    messages about a failed probe are expected and would read as errors)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        saved = os.dup(fd)
    except OSError:       # no such descriptor: nothing to quiet
        yield
        return
    try:
        with open(path, "ab") as f:
            os.dup2(f.fileno(), fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)


def _libomp_prefixes():
    """Where Apple clang may find libomp (include/omp.h, lib/libomp.dylib)."""
    found = []
    env = os.environ.get("MOBILEVIT_LIBOMP_PREFIX")
    if env:
        found.append(env)
    brew = shutil.which("brew")
    if brew:
        try:
            out = subprocess.run([brew, "--prefix", "libomp"], capture_output=True, text=True, timeout=60)
            if out.returncode == 0 and out.stdout.strip():
                found.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    found += ["/opt/homebrew/opt/libomp", "/usr/local/opt/libomp"]
    seen, out = set(), []
    for p in found:
        if p not in seen and os.path.isfile(os.path.join(p, "include", "omp.h")):
            seen.add(p)
            out.append(p)
    return out


# AArch64 (issue 14): compiles only when the compiler targets AArch64
_AARCH64_PROBE = "#if !defined(__aarch64__) && !defined(__arm64__)\n#error not aarch64\n#endif\nint mv_probe;\n"


class BuildExt(build_ext):
    def _probe(self, cflags, ldflags, code=OMP_PROBE):
        """Whether the build's own compiler compiles and links `code` with
        these flags (not run: the build may be a cross build)."""
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "probe.c")
            with open(src, "w") as f:
                f.write(code)
            log = os.path.join(d, "log")
            try:
                with _quiet_fd(1, log), _quiet_fd(2, log):
                    objs = self.compiler.compile([src], output_dir=d, extra_postargs=cflags)
                    self.compiler.link_executable(objs, "probe", output_dir=d, extra_postargs=ldflags)
                return True
            except Exception:
                return False

    def _compiles(self, code, cflags=()):
        """Whether the build's own compiler compiles `code` (no link)."""
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "probe.c")
            with open(src, "w") as f:
                f.write(code)
            log = os.path.join(d, "log")
            try:
                with _quiet_fd(1, log), _quiet_fd(2, log):
                    self.compiler.compile([src], output_dir=d, extra_postargs=list(cflags))
                return True
            except Exception:
                return False

    def _openmp_candidates(self):
        if self.compiler.compiler_type == "msvc":
            return [("/openmp", ["/openmp"], [])]
        cands = [("-fopenmp", ["-fopenmp"], ["-fopenmp"])]
        if sys.platform == "darwin":       # Apple clang: libomp from Homebrew
            for p in _libomp_prefixes():
                cands.append((f"-Xpreprocessor -fopenmp, libomp in {p}",
                              ["-Xpreprocessor", "-fopenmp", "-I" + os.path.join(p, "include")],
                              ["-L" + os.path.join(p, "lib"), "-lomp"]))
        return cands

    def _openmp(self):
        want = _env_switch("MOBILEVIT_OPENMP")
        if os.environ.get("MOBILEVIT_NO_OPENMP") == "1":
            want = "0"
        if want == "0":
            print("mobilevit: OpenMP off (MOBILEVIT_OPENMP=0): building single-threaded", file=sys.stderr)
            return None
        tried = []
        for what, cflags, ldflags in self._openmp_candidates():
            if self._probe(cflags, ldflags):
                print(f"mobilevit: OpenMP with {what}", file=sys.stderr)
                return cflags, ldflags
            tried.append(what)
        if want == "1":
            raise SystemExit("setup.py: MOBILEVIT_OPENMP=1 but the compiler cannot build an OpenMP "
                             f"program (tried: {'; '.join(tried)}); on Debian install libomp-dev for clang, "
                             "on macOS `brew install libomp`")
        print(f"mobilevit: OpenMP not available (tried: {'; '.join(tried)}): building single-threaded",
              file=sys.stderr)
        return None

    def build_extensions(self):
        msvc = self.compiler.compiler_type == "msvc"
        omp = self._openmp()
        sanitize = os.environ.get("MOBILEVIT_SANITIZE") == "1"
        werror = os.environ.get("MOBILEVIT_WERROR") == "1"
        if sanitize and msvc:
            raise SystemExit("setup.py: MOBILEVIT_SANITIZE=1 needs gcc or clang")
        target_aarch64 = not msvc and self._compiles(_AARCH64_PROBE)   # AArch64 (issue 14)
        for ext in self.extensions:
            args = list(MSVC_FLAGS if msvc else UNIX_FLAGS)
            link = []
            if omp:
                args += omp[0]
                link += omp[1]
            if werror:
                args.append("/WX" if msvc else "-Werror")
            # ---- AArch64 (issue 14): no FP contraction.  FMA is in the AArch64 base ISA, and
            # gcc fuses a*b + c by default (-ffp-contract=fast; clang within an expression),
            # in the scalar references as in the NEON file, whose vmulq/vaddq are plain vector
            # operators to gcc.  Off, the references round like x86's (whose base ISA has no
            # FMA) and the NEON kernels fuse only their explicit VFMA & co.  Not on x86: gcc
            # does fuse some mul + add pairs of the AVX2 file there, and x86 stays as it is.
            if target_aarch64:
                args.append("-ffp-contract=off")
            # ---- end AArch64
            if sanitize:
                # "undefined" includes signed-integer-overflow (live thanks to -fno-wrapv);
                # float-cast-overflow is not in it and is added; no recovery, so the
                # first report ends the process and fails the run
                san = ["-fsanitize=address,undefined,float-cast-overflow", "-fno-sanitize-recover=all"]
                args += san + ["-fno-omit-frame-pointer", "-O1", "-g", "-fno-wrapv"]
                link += san
            ext.extra_compile_args = args
            ext.extra_link_args = link
        super().build_extensions()

    def build_extension(self, ext):
        """Files of PER_FILE_FLAGS are compiled on their own, with the
        extension's flags plus theirs, and linked in as objects."""
        special = PER_FILE_FLAGS.get(self.compiler.compiler_type, {})
        own = [s for s in ext.sources if os.path.normpath(s) in special]
        if not own:
            return super().build_extension(ext)
        objects = []
        for src in own:
            objects += self.compiler.compile(
                [src], output_dir=self.build_temp, macros=ext.define_macros, include_dirs=ext.include_dirs,
                debug=self.debug, extra_postargs=ext.extra_compile_args + special[os.path.normpath(src)],
                depends=ext.depends)
        sources, extra = ext.sources, ext.extra_objects
        ext.sources = [s for s in sources if s not in own]
        ext.extra_objects = list(extra or []) + objects
        try:
            super().build_extension(ext)
        finally:
            ext.sources, ext.extra_objects = sources, extra


sources = sorted(glob("csrc/ops/*.c")) + sorted(glob("csrc/model/*.c")) + sorted(glob("csrc/binding/*.c"))

setup(
    ext_modules=[
        Extension(
            "mobilevit._C",
            sources=sources,
            include_dirs=[numpy.get_include(), "csrc"],
            depends=glob("csrc/**/*.h", recursive=True) + glob("csrc/**/*.inc", recursive=True),
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
