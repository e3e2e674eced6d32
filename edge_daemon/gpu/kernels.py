"""GPU pre-processing: one CUDA kernel, compiled at run time with NVRTC, that letterboxes a camera frame.

Input: a BGR uint8 HWC frame, or an NV12 picture (a hardware decoder's output: Y plane, interleaved UV
plane, each with its row pitch), in device memory. Output: the model input tensor, RGB, divided by 255,
CHW float32 (or float16: a second entry point), letterboxed exactly like
:func:`edge_daemon.model.preprocess.letterbox`
(same scale, same padding split, pad value 114). The bilinear arithmetic follows OpenCV's INTER_LINEAR
(half-pixel centres, clamped borders, the resized value rounded to uint8 before normalising), so the
result matches the CPU path to within one uint8 level (OpenCV uses 11-bit fixed-point weights; this
kernel uses float). Tolerance used by the tests: max |GPU - CPU| <= 1/255 + 1e-6 per element.

NV12 is converted in the same pass (one kernel: no BGR frame is ever written): each source pixel the
resize reads is turned into BGR with the stream's matrix and range exactly as :mod:`edge_daemon.colour`
does on the CPU (chroma bilinear, centred; rounded to uint8, as FFmpeg's converted frame holds it), then
resized as above.

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

/* A BGR frame: three bytes a pixel. */
struct Bgr {
    const unsigned char* __restrict__ p; int pitch;
    __device__ __forceinline__ void pixel(int x, int y, float* c) const {
        const unsigned char* q = p + (size_t)y * pitch + x * 3;
        c[0] = q[0]; c[1] = q[1]; c[2] = q[2];
    }
};

/* An NV12 picture: each pixel converted to BGR as edge_daemon/colour.py does (FFmpeg's accurate path):
   chroma bilinear at centred sample positions with clamped edges, the matrix in float, rounded. */
struct Nv12 {
    const unsigned char* __restrict__ y; int y_pitch;
    const unsigned char* __restrict__ uv; int uv_pitch;
    int cw, ch;
    float y_off, y_scale, c_scale, rv, gu, gv, bu;
    __device__ __forceinline__ void pixel(int x, int yy, float* c) const {
        float cx = x * 0.5f - 0.25f, cy = yy * 0.5f - 0.25f;
        int x0 = (int)floorf(cx), y0 = (int)floorf(cy);
        float ax = cx - x0, ay = cy - y0;
        if (x0 < 0) { x0 = 0; ax = 0.0f; }
        if (y0 < 0) { y0 = 0; ay = 0.0f; }
        if (x0 >= cw - 1) { x0 = cw - 1; ax = 0.0f; }
        if (y0 >= ch - 1) { y0 = ch - 1; ay = 0.0f; }
        const int x1 = min(x0 + 1, cw - 1), y1 = min(y0 + 1, ch - 1);
        const unsigned char* r0 = uv + (size_t)y0 * uv_pitch;
        const unsigned char* r1 = uv + (size_t)y1 * uv_pitch;
        float u = (r0[2 * x0] * (1.0f - ax) + r0[2 * x1] * ax) * (1.0f - ay)
                + (r1[2 * x0] * (1.0f - ax) + r1[2 * x1] * ax) * ay;
        float v = (r0[2 * x0 + 1] * (1.0f - ax) + r0[2 * x1 + 1] * ax) * (1.0f - ay)
                + (r1[2 * x0 + 1] * (1.0f - ax) + r1[2 * x1 + 1] * ax) * ay;
        const float l = (y[(size_t)yy * y_pitch + x] - y_off) * y_scale;
        u = (u - 128.0f) * c_scale;
        v = (v - 128.0f) * c_scale;
        c[0] = fminf(fmaxf(rintf(l + bu * u), 0.0f), 255.0f);
        c[1] = fminf(fmaxf(rintf(l - gu * u - gv * v), 0.0f), 255.0f);
        c[2] = fminf(fmaxf(rintf(l + rv * v), 0.0f), 255.0f);
    }
};

template <typename Src, typename T>
__device__ __forceinline__ void letterbox(
    const Src& src, int src_w, int src_h,
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
    float p00[3], p01[3], p10[3], p11[3];
    src.pixel(sx, sy, p00); src.pixel(sx1, sy, p01);
    src.pixel(sx, sy1, p10); src.pixel(sx1, sy1, p11);
    #pragma unroll
    for (int c = 0; c < 3; ++c) {
        const float top = p00[c] * (1.0f - fx) + p01[c] * fx;
        const float bot = p10[c] * (1.0f - fx) + p11[c] * fx;
        const float v = rintf(top * (1.0f - fy) + bot * fy);  /* the uint8 the CPU resize stores */
        store(dst, (2 - c) * plane + o, v / 255.0f);            /* BGR in, RGB planes out */
    }
}

#define LETTERBOX_ARGS T* __restrict__ dst, int dst_w, int dst_h, \
    int new_w, int new_h, int pad_x, int pad_y, float pad_value
#define NV12_ARGS const unsigned char* __restrict__ y, int y_pitch, \
    const unsigned char* __restrict__ uv, int uv_pitch, int src_w, int src_h, \
    float y_off, float y_scale, float c_scale, float rv, float gu, float gv, float bu

template <typename T>
__device__ __forceinline__ void bgr_entry(
    const unsigned char* __restrict__ src, int src_w, int src_h, int src_pitch, LETTERBOX_ARGS)
{
    const Bgr s = {src, src_pitch};
    letterbox(s, src_w, src_h, dst, dst_w, dst_h, new_w, new_h, pad_x, pad_y, pad_value);
}

template <typename T>
__device__ __forceinline__ void nv12_entry(NV12_ARGS, LETTERBOX_ARGS)
{
    const Nv12 s = {y, y_pitch, uv, uv_pitch, (src_w + 1) / 2, (src_h + 1) / 2,
                    y_off, y_scale, c_scale, rv, gu, gv, bu};
    letterbox(s, src_w, src_h, dst, dst_w, dst_h, new_w, new_h, pad_x, pad_y, pad_value);
}

#define T float
extern "C" __global__ void letterbox_bgr_to_rgb_chw(
    const unsigned char* __restrict__ src, int src_w, int src_h, int src_pitch, LETTERBOX_ARGS)
{ bgr_entry(src, src_w, src_h, src_pitch, dst, dst_w, dst_h, new_w, new_h, pad_x, pad_y, pad_value); }
extern "C" __global__ void letterbox_nv12_to_rgb_chw(NV12_ARGS, LETTERBOX_ARGS)
{ nv12_entry(y, y_pitch, uv, uv_pitch, src_w, src_h, y_off, y_scale, c_scale, rv, gu, gv, bu,
             dst, dst_w, dst_h, new_w, new_h, pad_x, pad_y, pad_value); }
#undef T
#define T unsigned short
extern "C" __global__ void letterbox_bgr_to_rgb_chw_f16(
    const unsigned char* __restrict__ src, int src_w, int src_h, int src_pitch, LETTERBOX_ARGS)
{ bgr_entry(src, src_w, src_h, src_pitch, dst, dst_w, dst_h, new_w, new_h, pad_x, pad_y, pad_value); }
extern "C" __global__ void letterbox_nv12_to_rgb_chw_f16(NV12_ARGS, LETTERBOX_ARGS)
{ nv12_entry(y, y_pitch, uv, uv_pitch, src_w, src_h, y_off, y_scale, c_scale, rv, gu, gv, bu,
             dst, dst_w, dst_h, new_w, new_h, pad_x, pad_y, pad_value); }
#undef T
"""

# Entry points by (source format, half-precision output).
KERNELS = {
    ("bgr", False): b"letterbox_bgr_to_rgb_chw",
    ("bgr", True): b"letterbox_bgr_to_rgb_chw_f16",
    ("nv12", False): b"letterbox_nv12_to_rgb_chw",
    ("nv12", True): b"letterbox_nv12_to_rgb_chw_f16",
}

_I, _F, _P = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
# The kernels' parameter types, in order, for cuLaunchKernel (built once, not per launch).
_LETTERBOX_TYPES = (_P, _I, _I, _I, _I, _I, _I, _F)  # dst, dst_w, dst_h, new_w, new_h, pad_x, pad_y, pad
_ARG_TYPES = (_P, _I, _I, _I, *_LETTERBOX_TYPES)  # src, src_w, src_h, src_pitch
_NV12_TYPES = (_P, _I, _P, _I, _I, _I, *([_F] * 7), *_LETTERBOX_TYPES)  # y, pitch, uv, pitch, w, h, colour


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
    """The compiled kernels, loaded on the current device; :meth:`launch` and :meth:`launch_nv12` enqueue
    one on a stream."""

    def __init__(self, functions: dict[tuple[str, bool], Any], module: Any) -> None:
        from cuda.bindings import driver

        self._driver = driver
        self._functions = functions
        self._module = module

    @classmethod
    def load(cls, compute_capability: str, cache_dir: Path | None = None) -> GpuLetterbox:
        from cuda.bindings import driver

        from edge_daemon.gpu.cuda import init_context

        init_context()  # the primary context, current for the driver API calls below
        cubin = compile_letterbox("sm_" + compute_capability.replace(".", ""), cache_dir)
        module = _check_cu(driver.cuModuleLoadData(cubin), "cuModuleLoadData")
        functions = {
            key: _check_cu(driver.cuModuleGetFunction(module, name), "cuModuleGetFunction")
            for key, name in KERNELS.items()
        }
        return cls(functions, module)

    @staticmethod
    def _geometry(meta: LetterboxMeta, pad_value: float) -> tuple[tuple[int, int, int], tuple[Any, ...]]:
        new_w = round(meta.src_w * meta.gain_x)
        new_h = round(meta.src_h * meta.gain_y)
        block = (32, 8, 1)
        grid = ((meta.dst_w + block[0] - 1) // block[0], (meta.dst_h + block[1] - 1) // block[1], 1)
        return grid, (meta.dst_w, meta.dst_h, new_w, new_h, meta.pad_x, meta.pad_y, pad_value)

    def _launch(
        self, key: tuple[str, bool], grid: Any, args: tuple[Any, ...], types: Any, stream: Any
    ) -> None:
        _check_cu(
            self._driver.cuLaunchKernel(self._functions[key], *grid, 32, 8, 1, 0, stream, (args, types), 0),
            "cuLaunchKernel(letterbox)",
        )

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
        grid, geometry = self._geometry(meta, pad_value)
        args = (src_ptr, meta.src_w, meta.src_h, src_pitch, dst_ptr, *geometry)
        self._launch(("bgr", half), grid, args, _ARG_TYPES, stream)

    def launch_nv12(
        self,
        y_ptr: int,
        y_pitch: int,
        uv_ptr: int,
        uv_pitch: int,
        coefficients: tuple[float, ...],
        meta: LetterboxMeta,
        dst_ptr: int,
        stream: Any,
        pad_value: float = 114.0,
        half: bool = False,
    ) -> None:
        """Convert (``coefficients``: :meth:`edge_daemon.colour.Colour.coefficients`) and letterbox the
        NV12 picture whose planes start at ``y_ptr`` and ``uv_ptr``, in one pass."""
        grid, geometry = self._geometry(meta, pad_value)
        args = (y_ptr, y_pitch, uv_ptr, uv_pitch, meta.src_w, meta.src_h, *coefficients, dst_ptr, *geometry)
        self._launch(("nv12", half), grid, args, _NV12_TYPES, stream)

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
