"""GPU pre-processing: one CUDA kernel, compiled at run time with NVRTC, that letterboxes a camera frame.

Input: a BGR uint8 HWC frame in device memory (row pitch in bytes). Output: the model input tensor,
RGB, divided by 255, CHW float32 (or float16: a second entry point), letterboxed exactly like
:func:`edge_daemon.model.preprocess.letterbox`
(same scale, same padding split, pad value 114). The bilinear arithmetic follows OpenCV's INTER_LINEAR
(half-pixel centres, clamped borders, the resized value rounded to uint8 before normalising), so the
result matches the CPU path to within one uint8 level (OpenCV uses 11-bit fixed-point weights; this
kernel uses float). Tolerance used by the tests: max |GPU - CPU| <= 1/255 + 1e-6 per element.

Compiled once per (source, GPU architecture, NVRTC version) and cached as a cubin on disk.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
from pathlib import Path
from typing import Any

from edge_daemon.errors import EngineError
from edge_daemon.types import LetterboxMeta

log = logging.getLogger(__name__)

LETTERBOX_SOURCE = r"""
/* float -> IEEE half (round to nearest even) without cuda_fp16.h, so NVRTC needs no include path. */
__device__ __forceinline__ unsigned short to_half(float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
}
__device__ __forceinline__ void store(float* p, int i, float v) { p[i] = v; }
__device__ __forceinline__ void store(unsigned short* p, int i, float v) { p[i] = to_half(v); }

template <typename T>
__device__ __forceinline__ void letterbox(
    const unsigned char* __restrict__ src, int src_w, int src_h, int src_pitch,
    T* __restrict__ dst, int dst_w, int dst_h,
    int new_w, int new_h, int pad_x, int pad_y, float pad_value)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;
    const int plane = dst_w * dst_h;
    const int o = y * dst_w + x;
    const int rx = x - pad_x, ry = y - pad_y;
    if (rx < 0 || ry < 0 || rx >= new_w || ry >= new_h) {
        const float v = pad_value / 255.0f;
        store(dst, o, v); store(dst, plane + o, v); store(dst, 2 * plane + o, v);
        return;
    }
    /* OpenCV INTER_LINEAR: half-pixel centres; clamp at the borders with zero weight. */
    float fx = (rx + 0.5f) * ((float)src_w / (float)new_w) - 0.5f;
    float fy = (ry + 0.5f) * ((float)src_h / (float)new_h) - 0.5f;
    int sx = (int)floorf(fx), sy = (int)floorf(fy);
    fx -= sx; fy -= sy;
    if (sx < 0) { sx = 0; fx = 0.0f; }
    if (sy < 0) { sy = 0; fy = 0.0f; }
    if (sx >= src_w - 1) { sx = src_w - 1; fx = 0.0f; }
    if (sy >= src_h - 1) { sy = src_h - 1; fy = 0.0f; }
    const int sx1 = min(sx + 1, src_w - 1), sy1 = min(sy + 1, src_h - 1);
    const unsigned char* r0 = src + (size_t)sy * src_pitch;
    const unsigned char* r1 = src + (size_t)sy1 * src_pitch;
    #pragma unroll
    for (int c = 0; c < 3; ++c) {
        const float top = r0[sx * 3 + c] * (1.0f - fx) + r0[sx1 * 3 + c] * fx;
        const float bot = r1[sx * 3 + c] * (1.0f - fx) + r1[sx1 * 3 + c] * fx;
        const float v = rintf(top * (1.0f - fy) + bot * fy);  /* the uint8 the CPU resize stores */
        store(dst, (2 - c) * plane + o, v / 255.0f);            /* BGR in, RGB planes out */
    }
}

extern "C" __global__ void letterbox_bgr_to_rgb_chw(
    const unsigned char* __restrict__ src, int src_w, int src_h, int src_pitch,
    float* __restrict__ dst, int dst_w, int dst_h,
    int new_w, int new_h, int pad_x, int pad_y, float pad_value)
{
    letterbox(src, src_w, src_h, src_pitch, dst, dst_w, dst_h, new_w, new_h, pad_x, pad_y, pad_value);
}

extern "C" __global__ void letterbox_bgr_to_rgb_chw_f16(
    const unsigned char* __restrict__ src, int src_w, int src_h, int src_pitch,
    unsigned short* __restrict__ dst, int dst_w, int dst_h,
    int new_w, int new_h, int pad_x, int pad_y, float pad_value)
{
    letterbox(src, src_w, src_h, src_pitch, dst, dst_w, dst_h, new_w, new_h, pad_x, pad_y, pad_value);
}
"""

KERNEL_NAME = b"letterbox_bgr_to_rgb_chw"
KERNEL_NAME_F16 = b"letterbox_bgr_to_rgb_chw_f16"

# The kernel's parameter types, in order, for cuLaunchKernel (built once, not per launch).
_ARG_TYPES = (
    ctypes.c_void_p,  # src
    ctypes.c_int,  # src_w
    ctypes.c_int,  # src_h
    ctypes.c_int,  # src_pitch
    ctypes.c_void_p,  # dst
    ctypes.c_int,  # dst_w
    ctypes.c_int,  # dst_h
    ctypes.c_int,  # new_w
    ctypes.c_int,  # new_h
    ctypes.c_int,  # pad_x
    ctypes.c_int,  # pad_y
    ctypes.c_float,  # pad_value
)


def _nvrtc() -> Any:
    try:
        from cuda.bindings import nvrtc
    except ImportError:  # cuda-python < 12.6
        from cuda import nvrtc
    return nvrtc


def _check_nvrtc(result: Any, call: str, program: Any = None) -> Any:
    nvrtc = _nvrtc()
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != int(nvrtc.nvrtcResult.NVRTC_SUCCESS):
        detail = ""
        if program is not None:
            _, size = nvrtc.nvrtcGetProgramLogSize(program)
            buf = b" " * size
            nvrtc.nvrtcGetProgramLog(program, buf)
            detail = buf.decode(errors="replace").strip()
        raise EngineError(f"{call} failed: {err.name if hasattr(err, 'name') else err} {detail}".strip())
    return values[0] if len(values) == 1 else (tuple(values) if values else None)


def compile_letterbox(arch: str, cache_dir: Path | None = None) -> bytes:
    """Compile the kernel for ``arch`` ("sm_87", "sm_90", ...) to a cubin; cached under ``cache_dir``."""
    nvrtc = _nvrtc()
    version = _check_nvrtc(nvrtc.nvrtcVersion(), "nvrtcVersion")
    key = hashlib.sha256(LETTERBOX_SOURCE.encode() + arch.encode() + repr(version).encode()).hexdigest()[:16]
    cached = cache_dir / f"letterbox-{arch}-{key}.cubin" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        return cached.read_bytes()
    cubin: bytes
    program = _check_nvrtc(
        nvrtc.nvrtcCreateProgram(LETTERBOX_SOURCE.encode(), b"letterbox.cu", 0, [], []), "nvrtcCreateProgram"
    )
    try:
        opts = [f"--gpu-architecture={arch}".encode(), b"--use_fast_math", b"-default-device"]
        _check_nvrtc(nvrtc.nvrtcCompileProgram(program, len(opts), opts), "nvrtcCompileProgram", program)
        size = _check_nvrtc(nvrtc.nvrtcGetCUBINSize(program), "nvrtcGetCUBINSize")
        cubin = b" " * size
        _check_nvrtc(nvrtc.nvrtcGetCUBIN(program, cubin), "nvrtcGetCUBIN")
    finally:
        nvrtc.nvrtcDestroyProgram(program)
    if cached is not None:
        from edge_daemon.files import atomic_write

        atomic_write(cached, cubin)
    log.info("compiled the GPU letterbox kernel for %s with NVRTC %d.%d", arch, *version)
    return cubin


class GpuLetterbox:
    """The compiled kernel, loaded on the current device; :meth:`launch` enqueues it on a stream."""

    def __init__(self, function: Any, module: Any, function_f16: Any = None) -> None:
        from cuda.bindings import driver

        self._driver = driver
        self._function = function
        self._function_f16 = function_f16
        self._module = module

    @classmethod
    def load(cls, compute_capability: str, cache_dir: Path | None = None) -> GpuLetterbox:
        from cuda.bindings import driver

        from edge_daemon.gpu.cuda import init_context

        init_context()  # the primary context, current for the driver API calls below
        cubin = compile_letterbox("sm_" + compute_capability.replace(".", ""), cache_dir)
        module = _check_cu(driver.cuModuleLoadData(cubin), "cuModuleLoadData")
        function = _check_cu(driver.cuModuleGetFunction(module, KERNEL_NAME), "cuModuleGetFunction")
        half = _check_cu(driver.cuModuleGetFunction(module, KERNEL_NAME_F16), "cuModuleGetFunction")
        return cls(function, module, half)

    def launch(
        self,
        src_ptr: int,
        src_pitch: int,
        meta: LetterboxMeta,
        dst_ptr: int,
        stream: Any,
        pad_value: float = 114.0,
        half: bool = False,
    ) -> None:
        """Letterbox the BGR frame at ``src_ptr`` (meta.src_w x meta.src_h) into ``dst_ptr`` (3 x H x W),
        float32 or, with ``half``, IEEE float16. Called per frame: nothing here but the launch."""
        new_w = round(meta.src_w * meta.gain_x)
        new_h = round(meta.src_h * meta.gain_y)
        block = (32, 8, 1)
        grid = ((meta.dst_w + block[0] - 1) // block[0], (meta.dst_h + block[1] - 1) // block[1], 1)
        args = (
            (
                src_ptr,
                meta.src_w,
                meta.src_h,
                src_pitch,
                dst_ptr,
                meta.dst_w,
                meta.dst_h,
                new_w,
                new_h,
                meta.pad_x,
                meta.pad_y,
                pad_value,
            ),
            _ARG_TYPES,
        )
        _check_cu(
            self._driver.cuLaunchKernel(
                self._function_f16 if half else self._function, *grid, *block, 0, stream, args, 0
            ),
            "cuLaunchKernel(letterbox)",
        )

    def close(self) -> None:
        from cuda.bindings import driver

        if self._module is not None:
            _check_cu(driver.cuModuleUnload(self._module), "cuModuleUnload")
            self._module = None


def _check_cu(result: Any, call: str) -> Any:
    from cuda.bindings import driver

    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != int(driver.CUresult.CUDA_SUCCESS):
        name = driver.cuGetErrorName(err)[1]
        raise EngineError(f"{call} failed: {name.decode() if isinstance(name, bytes) else name}")
    return values[0] if len(values) == 1 else (tuple(values) if values else None)
