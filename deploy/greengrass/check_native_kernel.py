"""Check the native letterbox kernel built for another CPU (linux aarch64) under user-mode emulation.

The Greengrass bundle for an ARM device carries a cross-compiled tagqa wheel
(``prepare_artifact.py --platform manylinux_2_17_aarch64``). This script checks what a build
machine without that CPU can check, with ``gcc-aarch64-linux-gnu`` and ``qemu-user``
(``apt-get install gcc-aarch64-linux-gnu qemu-user``):

1. ``kernel``: the kernel's arithmetic (``_letterbox.c`` compiled with
   ``-DTAGQA_LETTERBOX_KERNEL_ONLY`` into a static aarch64 program) run under ``qemu-aarch64``
   on real-size and odd-size frames gives exactly the numpy letterbox's model input, bit for bit;
2. ``wheel``: ``setup.py`` cross-builds an abi3 wheel tagged for the platform whose extension is
   an AArch64 ELF file exporting ``PyInit__letterbox`` and needing no glibc symbol newer than
   the tag allows;
3. ``--python-root DIR`` (optional): an aarch64 CPython (e.g. Debian's ``python3.11-minimal``,
   ``libpython3.11-stdlib`` and ``libc6`` for arm64, unpacked with ``dpkg -x``) with numpy's
   aarch64 wheel unpacked in ``DIR/site``: the wheel's module is imported there, under
   emulation, and ``letterbox_into`` (native) is compared with ``letterbox_into_numpy`` on the
   same cases.

    python deploy/greengrass/check_native_kernel.py [--python-root DIR]

Prints one ``OK ...`` line per check and exits non-zero on the first mismatch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from edge_runtime.letterbox import PAD_VALUE, _native_plan, letterbox_into_numpy  # noqa: E402

ARCH = "aarch64"
PLATFORM_TAG = "manylinux_2_17_aarch64"  # glibc 2.17 is aarch64's baseline: every aarch64 Linux has it
COMPILER = "aarch64-linux-gnu-gcc"
EMULATOR = "qemu-aarch64"
# (source height, width) -> model input side: the dataset's 450x300 tags at both sizes, down- and
# up-scaling, odd sizes, slivers, portrait, and the identity.
CASES = [((300, 450), 480), ((300, 450), 640), ((300, 450), 128), ((450, 300), 480), ((480, 480), 480),
         ((1080, 1920), 640), ((1944, 2592), 480), ((37, 53), 640), ((1, 3000), 640), ((3000, 1), 480),
         ((257, 255), 256), ((123, 457), 320)]

_HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "_letterbox.c"

/* stdin: int32 src_h src_w dst_h dst_w top left rh rw, float pad, image bytes, int32 x0 x1 wx0 wx1 (rw each),
 * y0 y1 wy0 wy1 (rh each); stdout: the 3 x dst_h x dst_w float32 model input. */
static void *read_all(size_t n) {
    void *p = malloc(n ? n : 1);
    if (p == NULL || fread(p, 1, n, stdin) != n) { fprintf(stderr, "short input\n"); exit(2); }
    return p;
}

int main(void) {
    int32_t *h = read_all(8 * sizeof(int32_t));
    float *pad = read_all(sizeof(float));
    Plan p;
    p.src_h = h[0]; p.src_w = h[1]; p.dst_h = h[2]; p.dst_w = h[3]; p.top = h[4]; p.left = h[5];
    p.rh = h[6]; p.rw = h[7]; p.pad = *pad;
    p.image = read_all((size_t)p.src_h * p.src_w * 3);
    const int32_t **x[4] = {&p.x0, &p.x1, &p.wx0, &p.wx1}, **y[4] = {&p.y0, &p.y1, &p.wy0, &p.wy1};
    for (int k = 0; k < 4; k++) *x[k] = read_all(sizeof(int32_t) * p.rw);
    for (int k = 0; k < 4; k++) *y[k] = read_all(sizeof(int32_t) * p.rh);
    size_t n = (size_t)3 * p.dst_h * p.dst_w;
    p.out = malloc(sizeof(float) * n);
    int32_t *rows = malloc(sizeof(int32_t) * 6 * (size_t)p.rw);
    run(&p, rows);
    fwrite(p.out, sizeof(float), n, stdout);
    return 0;
}
"""

_EMULATED_CHECK = r"""
import sys
import numpy as np
from edge_runtime import letterbox as lb
assert lb._letterbox is not None, "the native kernel did not import"
print(lb._letterbox.__file__, file=sys.stderr)
import platform
cases = %r
rng = np.random.default_rng(0)
for (h, w), side in cases:
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    native = np.full((1, 3, side, side), np.nan, np.float32)
    reference = np.empty_like(native)
    lb.letterbox_into(image, native)
    lb.letterbox_into_numpy(image, reference)
    if native.tobytes() != reference.tobytes():
        sys.exit(f"MISMATCH {h}x{w} -> {side}")
print(f"{platform.machine()} numpy {np.__version__}: {len(cases)} cases bit-identical")
"""


def tools_missing() -> list[str]:
    """Which of the cross compiler and the emulator are not on PATH."""
    return [tool for tool in (COMPILER, EMULATOR) if shutil.which(tool) is None]


def build_harness(out: Path) -> Path:
    """The kernel's arithmetic as a static aarch64 program (no Python inside)."""
    source = out / "harness.c"
    source.write_text(_HARNESS)
    binary = out / "letterbox-harness"
    subprocess.run([COMPILER, "-O3", "-static", "-DTAGQA_LETTERBOX_KERNEL_ONLY", "-I", str(REPO / "edge_runtime"),
                    str(source), "-o", str(binary)], check=True, capture_output=True, text=True)
    return binary


def run_harness(binary: Path, image: np.ndarray, side: int) -> np.ndarray:
    """The kernel's model input for ``image`` at ``side`` x ``side``, computed under emulation."""
    geometry, taps = _native_plan(image.shape[0], image.shape[1], side, side)
    header = struct.pack("<8if", image.shape[0], image.shape[1], side, side, geometry.pad_top, geometry.pad_left,
                         geometry.resized_height, geometry.resized_width, np.float32(PAD_VALUE) / np.float32(255))
    payload = header + np.ascontiguousarray(image).tobytes() + b"".join(t.astype("<i4").tobytes() for t in taps)
    done = subprocess.run([EMULATOR, str(binary)], input=payload, capture_output=True, check=True, timeout=300)
    return np.frombuffer(done.stdout, dtype="<f4").reshape(1, 3, side, side)


def check_kernel(work: Path) -> str:
    """Kernel arithmetic under emulation vs the numpy letterbox on this machine, every case."""
    binary = build_harness(work)
    rng = np.random.default_rng(0)
    for (height, width), side in CASES:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        reference = np.empty((1, 3, side, side), np.float32)
        letterbox_into_numpy(image, reference)
        emulated = run_harness(binary, image, side)
        if emulated.tobytes() != reference.tobytes():
            differ = int(np.count_nonzero(emulated != reference))
            raise AssertionError(f"{height}x{width} -> {side}: {differ} values differ from the numpy letterbox")
    return f"kernel: {len(CASES)} cases bit-identical under {EMULATOR} ({ARCH} build of _letterbox.c)"


def build_cross_wheel(out: Path, platform_tag: str = PLATFORM_TAG) -> Path:
    """The tagqa wheel with the kernel cross-compiled for ``platform_tag`` (setup.py, TAGQA_CROSS_PLATFORM)."""
    env = {**os.environ, "TAGQA_CROSS_PLATFORM": platform_tag}
    env.pop("TAGQA_PURE_PYTHON", None)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out),
                    str(REPO)], check=True, env=env, capture_output=True, text=True)
    wheels = sorted(out.glob(f"tagqa-*-{platform_tag}.whl"))
    if len(wheels) != 1:
        raise AssertionError(f"expected one {platform_tag} wheel in {out}, found {[p.name for p in out.iterdir()]}")
    return wheels[0]


def _elf_machine(data: bytes) -> int:
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise AssertionError("not a 64-bit little-endian ELF file")
    return struct.unpack_from("<H", data, 18)[0]


def check_wheel(work: Path) -> tuple[str, Path]:
    """The cross-built wheel's extension is an AArch64 ELF exporting PyInit__letterbox within glibc 2.17."""
    wheel = build_cross_wheel(work / "wheel")
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.startswith("edge_runtime/_letterbox") and n.endswith(".so")]
        if names != ["edge_runtime/_letterbox.abi3.so"]:
            raise AssertionError(f"{wheel.name}: extension files {names}, expected edge_runtime/_letterbox.abi3.so")
        data = archive.read(names[0])
        archive.extractall(work / "unpacked")
    if _elf_machine(data) != 183:  # EM_AARCH64
        raise AssertionError(f"{wheel.name}: the extension is ELF machine {_elf_machine(data)}, not AArch64 (183)")
    symbols = subprocess.run(["aarch64-linux-gnu-objdump", "-T", str(work / "unpacked" / names[0])],
                             capture_output=True, text=True, check=True).stdout
    if "PyInit__letterbox" not in symbols:
        raise AssertionError(f"{wheel.name}: PyInit__letterbox is not exported")
    versions = sorted({tuple(int(v) for v in word[len("(GLIBC_"):-1].split("."))
                       for word in symbols.split() if word.startswith("(GLIBC_")})
    if versions and versions[-1] > (2, 17):
        raise AssertionError(f"{wheel.name}: needs glibc {versions[-1]}, newer than its tag {PLATFORM_TAG}")
    return f"wheel: {wheel.name}, {len(data)} byte AArch64 extension, glibc symbols <= 2.17", work / "unpacked"


def check_emulated_import(unpacked: Path, python_root: Path) -> str:
    """Import the wheel's kernel in an aarch64 CPython under emulation and compare it with numpy there."""
    python_root = python_root.resolve()
    python = python_root / "usr" / "bin" / "python3.11"
    env = {"PYTHONPATH": f"{unpacked}:{python_root / 'site'}", "QEMU_LD_PREFIX": str(python_root),
           "PATH": os.environ.get("PATH", "")}
    done = subprocess.run([EMULATOR, "-L", str(python_root), str(python), "-c", _EMULATED_CHECK % (CASES,)],
                          capture_output=True, text=True, env=env, timeout=1800, cwd=unpacked)  # not this checkout
    if done.returncode != 0:
        raise AssertionError(f"emulated import failed:\n{done.stdout}{done.stderr[-3000:]}")
    return f"import: {done.stdout.strip()} (the cross-built wheel, CPython under {EMULATOR})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-root", type=Path, help="an aarch64 CPython root with numpy in DIR/site")
    args = parser.parse_args(argv)
    missing = tools_missing()
    if missing:
        print(f"missing {', '.join(missing)}: apt-get install gcc-aarch64-linux-gnu qemu-user", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tagqa-aarch64-") as tmp:
        work = Path(tmp)
        print("OK", check_kernel(work), flush=True)
        message, unpacked = check_wheel(work)
        print("OK", message, flush=True)
        if args.python_root:
            print("OK", check_emulated_import(unpacked, args.python_root), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
