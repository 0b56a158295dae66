"""Build the mobilevit C core (mobilevit._C).

OpenMP is detected by compiling a small probe; without it the extension is
built single-threaded.  The build is portable: no host-specific architecture
flag and no relaxed floating-point mode.  ISA-specific kernels are compiled with target pragmas in their
own files and selected at run time from CPUID.  MOBILEVIT_SANITIZE=1 builds
with AddressSanitizer + UndefinedBehaviorSanitizer (for the hardening job).

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
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from glob import glob

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _compiler_accepts(cc, flags, code="int main(void){return 0;}\n"):
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "probe.c")
        with open(src, "w") as f:
            f.write(code)
        try:
            r = subprocess.run([cc, *flags, src, "-o", os.path.join(d, "probe")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            return False
        return r.returncode == 0


# AArch64 (issue 14): compiles only when the compiler targets AArch64
_AARCH64_PROBE = "#if !defined(__aarch64__) && !defined(__arm64__)\n#error not aarch64\n#endif\nint mv_probe;\n"


class BuildExt(build_ext):
    def build_extensions(self):
        cc = self.compiler.compiler_so[0] if hasattr(self.compiler, "compiler_so") else "cc"
        omp_code = "#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n"
        use_omp = os.environ.get("MOBILEVIT_NO_OPENMP") != "1" and _compiler_accepts(cc, ["-fopenmp"], omp_code)
        sanitize = os.environ.get("MOBILEVIT_SANITIZE") == "1"
        target_aarch64 = _compiler_accepts(cc, ["-c"], _AARCH64_PROBE)   # AArch64 (issue 14)
        for ext in self.extensions:
            args = ["-std=gnu11", "-O3", "-fno-strict-aliasing", "-Wall", "-Wno-unused-function",
                    "-fvisibility=hidden", "-fno-wrapv"]
            link = []
            # ---- AArch64 (issue 14): no FP contraction.  FMA is in the AArch64 base ISA, and
            # gcc fuses a*b + c by default (-ffp-contract=fast; clang within an expression),
            # in the scalar references as in the NEON file, whose vmulq/vaddq are plain vector
            # operators to gcc.  Off, the references round like x86's (whose base ISA has no
            # FMA) and the NEON kernels fuse only their explicit VFMA & co.  Not on x86: gcc
            # does fuse some mul + add pairs of the AVX2 file there, and x86 stays as it is.
            if target_aarch64:
                args.append("-ffp-contract=off")
            # ---- end AArch64
            if use_omp:
                args.append("-fopenmp")
                link.append("-fopenmp")
            if sanitize:
                # "undefined" includes signed-integer-overflow (live thanks to -fno-wrapv);
                # float-cast-overflow is not in it and is added; no recovery, so the
                # first report ends the process and fails the run
                san = ["-fsanitize=address,undefined,float-cast-overflow", "-fno-sanitize-recover=all"]
                args += san + ["-fno-omit-frame-pointer", "-O1", "-g", "-fno-wrapv"]
                link += san
            ext.extra_compile_args = args
            ext.extra_link_args = link
        if not use_omp:
            print("mobilevit: OpenMP not available, building single-threaded", file=sys.stderr)
        super().build_extensions()


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
