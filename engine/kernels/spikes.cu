// Spike kernels: packed spike bits as they arrive -> what the models read, in one pass each.
//
// The same source builds three ways: NVRTC (no standard headers exist there, so this file
// includes nothing and writes fp16 as raw bits), nvcc (the CI compile gate), and g++ with
// shim.h force-included (the CPU emulation that CI runs against the NumPy references).
//
// Bit layout (stream/spikes.py): a stored frame is `height` rows of `row_bits` bits (width
// pixels + tag bits), rows bottom-up when `flip`; pixel bit p of a frame is bit (p & 7) of
// byte (p >> 3), least significant bit first. Output pixel (y, x) therefore reads stored row
// (flip ? height-1-y : y), bit row*row_bits + x; tag bits are never read.
//
// Every scalar argument is int32 or float32 (the launcher passes np.int32 / np.float32: a
// plain Python int would be taken as a pointer). The Python wrappers (ops.py) check shapes,
// dtypes and ranges before any launch, so the kernels only guard the grid's ragged edges.
//
// Rounding is explicit (__fdiv_rn, __fmul_rn, __fmaf_rn, ...) so that nvcc cannot contract
// or approximate anything: the results must equal the CPU references bit for bit.

#ifndef SPIKEREVEAL_SHIM
#define DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

// One spike bit of frame t at output pixel (y, x).
__device__ __forceinline__ int spike_bit(const unsigned char* __restrict__ packed, int t, int y, int x,
                                         int height, int row_bits, int frame_bytes, int flip) {
    const int row = flip ? height - 1 - y : y;
    const long long bit = (long long)row * row_bits + x;
    const unsigned char byte = packed[(long long)t * frame_bytes + (bit >> 3)];
    return (byte >> (int)(bit & 7)) & 1;
}

// float32 -> IEEE binary16 bits, round to nearest even (what NumPy's astype(float16) does),
// including subnormals, overflow to inf and NaN; cuda_fp16.h is not available under NVRTC.
__device__ __forceinline__ unsigned short f32_to_f16_bits(float value) {
    const unsigned int x = __float_as_uint(value);
    const unsigned int sign = (x >> 16) & 0x8000u;
    const unsigned int mag = x & 0x7fffffffu;
    if (mag >= 0x7f800000u) {  // inf, or NaN (kept quiet, payload truncated)
        return (unsigned short)(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u | ((mag >> 13) & 0x3ffu) : 0u));
    }
    if (mag >= 0x477ff000u) {  // >= 65520 rounds past the largest half (65504)
        return (unsigned short)(sign | 0x7c00u);
    }
    if (mag >= 0x38800000u) {  // normal half (>= 2^-14): rebias the exponent 127 -> 15
        const unsigned int r = mag - 0x38000000u;
        unsigned int half = r >> 13;
        const unsigned int rem = r & 0x1fffu;
        half += (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ? 1u : 0u;
        return (unsigned short)(sign | half);
    }
    if (mag <= 0x33000000u) {  // <= 2^-25: rounds (ties to even) to zero
        return (unsigned short)sign;
    }
    // Subnormal half: count units of 2^-24.
    const unsigned int e = mag >> 23;
    const unsigned int m = (mag & 0x7fffffu) | 0x800000u;
    const unsigned int shift = 126u - e;  // 14..24
    unsigned int half = m >> shift;
    const unsigned int rem = m & ((1u << shift) - 1u);
    const unsigned int halfway = 1u << (shift - 1u);
    half += (rem > halfway || (rem == halfway && (half & 1u))) ? 1u : 0u;
    return (unsigned short)(sign | half);
}

// ---------------------------------------------------------------------------------------------
// unpack_windows: packed (T, frame_bytes) -> windows (K, window, height, width), value `scale`
// where a spike fired and 0 elsewhere (engine/windows.py ldn_inputs with spike_scale).
// Grid (ceil(width/bx), ceil(height/by), K); one thread per pixel walks the window's frames, so
// each warp writes 32 consecutive outputs per frame (coalesced) and reads at most 5 bytes, which
// the hardware serves as one broadcast load (no shuffle or shared staging would read less).
// times: (K) int32 window centres, checked by the wrapper to keep every window inside T.

extern "C" __global__ void unpack_windows_f32(const unsigned char* __restrict__ packed, float* __restrict__ out,
                                              const int* __restrict__ times, int height, int width, int row_bits,
                                              int frame_bytes, int flip, int window, float scale) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    const int k = blockIdx.z;
    if (x >= width || y >= height) return;
    const int first = times[k] - window / 2;
    const long long plane = (long long)height * width;
    float* dst = out + (long long)k * window * plane + (long long)y * width + x;
    for (int j = 0; j < window; ++j) {
        const int bit = spike_bit(packed, first + j, y, x, height, row_bits, frame_bytes, flip);
        dst[(long long)j * plane] = bit ? scale : 0.0f;
    }
}

extern "C" __global__ void unpack_windows_f16(const unsigned char* __restrict__ packed,
                                              unsigned short* __restrict__ out, const int* __restrict__ times,
                                              int height, int width, int row_bits, int frame_bytes, int flip,
                                              int window, float scale) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    const int k = blockIdx.z;
    if (x >= width || y >= height) return;
    const unsigned short one = f32_to_f16_bits(scale);
    const unsigned short zero = 0;  // +0.0 in binary16
    const int first = times[k] - window / 2;
    const long long plane = (long long)height * width;
    unsigned short* dst = out + (long long)k * window * plane + (long long)y * width + x;
    for (int j = 0; j < window; ++j) {
        const int bit = spike_bit(packed, first + j, y, x, height, row_bits, frame_bytes, flip);
        dst[(long long)j * plane] = bit ? one : zero;
    }
}

// ---------------------------------------------------------------------------------------------
// tfp_counts: spike counts over the exposure (TFP_long * n_long) into long_counts (height, width)
// and over the `short_window` frames centred on each time (TFP_short * short_window) into
// short_counts (K, height, width); engine/tfp.py's tfp_range / tfp are these counts divided by n.
//
// One thread per pixel makes ONE pass over frames first..last (the union of the exposure and
// the short windows), adding each bit to the long count and to every short window holding it.
// K is a runtime value, so the K short counters cannot be a register array (nvcc would put a
// runtime-indexed array in local memory, which the -warn-lmem-usage gate forbids): they live in
// dynamic shared memory, one column per thread (slot k*threads + tid: consecutive threads hit
// consecutive banks, no conflicts, and no thread touches another's slot). The K times are
// staged in shared memory once per block (one barrier). Layout: int times[K]; int counters[K*threads].
// Shared bytes: 4*K*(threads+1). Grid (ceil(width/bx), ceil(height/by)).

__device__ __forceinline__ void tfp_counts_pass(const unsigned char* __restrict__ packed,
                                                const int* __restrict__ times, int* shared, int height,
                                                int width, int row_bits, int frame_bytes, int flip,
                                                int exposure_start, int exposure_stop, int n_times,
                                                int short_window, int first, int last, int* long_count) {
    const int threads = blockDim.x * blockDim.y;
    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
    int* s_times = shared;
    int* s_counts = shared + n_times;
    for (int k = tid; k < n_times; k += threads) s_times[k] = times[k];
    __syncthreads();  // every thread reads every time below

    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    *long_count = 0;
    if (x >= width || y >= height) return;  // after the only barrier: no thread skips it
    const int half = short_window / 2;
    for (int k = 0; k < n_times; ++k) s_counts[k * threads + tid] = 0;
    int total = 0;
    for (int t = first; t <= last; ++t) {
        const int bit = spike_bit(packed, t, y, x, height, row_bits, frame_bytes, flip);
        total += (t >= exposure_start && t <= exposure_stop) ? bit : 0;
        if (!bit) continue;
        for (int k = 0; k < n_times; ++k) {
            const int d = t - s_times[k];
            if (d >= -half && d <= half) s_counts[k * threads + tid] += 1;
        }
    }
    *long_count = total;
}

extern "C" __global__ void tfp_counts_i32(const unsigned char* __restrict__ packed, int* __restrict__ long_counts,
                                          int* __restrict__ short_counts, const int* __restrict__ times,
                                          int height, int width, int row_bits, int frame_bytes, int flip,
                                          int exposure_start, int exposure_stop, int n_times, int short_window,
                                          int first, int last) {
    DYNAMIC_SHARED(int, shared);
    int total;
    tfp_counts_pass(packed, times, shared, height, width, row_bits, frame_bytes, flip, exposure_start,
                    exposure_stop, n_times, short_window, first, last, &total);
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    const int threads = blockDim.x * blockDim.y;
    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
    const long long pixel = (long long)y * width + x;
    const long long plane = (long long)height * width;
    long_counts[pixel] = total;
    for (int k = 0; k < n_times; ++k) short_counts[k * plane + pixel] = shared[n_times + k * threads + tid];
}

extern "C" __global__ void tfp_counts_f32(const unsigned char* __restrict__ packed, float* __restrict__ long_counts,
                                          float* __restrict__ short_counts, const int* __restrict__ times,
                                          int height, int width, int row_bits, int frame_bytes, int flip,
                                          int exposure_start, int exposure_stop, int n_times, int short_window,
                                          int first, int last) {
    DYNAMIC_SHARED(int, shared);
    int total;
    tfp_counts_pass(packed, times, shared, height, width, row_bits, frame_bytes, flip, exposure_start,
                    exposure_stop, n_times, short_window, first, last, &total);
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    const int threads = blockDim.x * blockDim.y;
    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
    const long long pixel = (long long)y * width + x;
    const long long plane = (long long)height * width;
    long_counts[pixel] = __int2float_rn(total);  // counts < 2^24: exact
    for (int k = 0; k < n_times; ++k) {
        short_counts[k * plane + pixel] = __int2float_rn(shared[n_times + k * threads + tid]);
    }
}

// ---------------------------------------------------------------------------------------------
// sdm_upsample: L = B * up(TFP_short) / up(TFP_long), 0 where up(TFP_long) is 0 (engine/sdm.py),
// from the counts of tfp_counts_i32 and the 8-bit BGR blur (H, W, 3) = 4x the spikes per side,
// into out (K, 3, H, W) float32. TFP = count / n exactly as engine/tfp.py rounds it.
//
// up() is OpenCV's INTER_LINEAR at scale 4 as OpenCV computes it for float32 (checked bit for
// bit against cv2.resize 4.14 and 5.0 on an FMA-capable x86 CPU, for h, w >= 2; a single row or
// column takes another path in OpenCV): source coordinate (X + 0.5) / 4 - 0.5 clamped at the
// borders, a horizontal then a vertical lerp, each a + (b - a) * f with one fused multiply-add.
// Grid (ceil(W/bx), ceil(H/by)); one thread per output pixel writes its 3 channels at all K times
// (writes stay coalesced: consecutive threads write consecutive X of each (k, c) plane).

// Source index and weight of output coordinate X along an axis of n source samples (scale 4).
__device__ __forceinline__ void x4_source(int X, int n, int* s0, int* s1, float* f) {
    // (X + 0.5) / 4 - 0.5 = q + (2r - 3) / 8 for X = 4q + r: weights 5/8, 7/8, 1/8, 3/8 (exact).
    const int q = X >> 2;
    const int r = X & 3;
    int s = r < 2 ? q - 1 : q;
    float w = r == 0 ? 0.625f : r == 1 ? 0.875f : r == 2 ? 0.125f : 0.375f;
    if (s < 0) {
        s = 0;
        w = 0.0f;
    }
    if (s >= n - 1) {
        s = n - 1;
        w = 0.0f;
    }
    *s0 = s;
    *s1 = s + 1 < n ? s + 1 : n - 1;
    *f = w;
}

__device__ __forceinline__ float lerp_cv(float a, float b, float f) { return __fmaf_rn(__fsub_rn(b, a), f, a); }

__device__ __forceinline__ float tfp_value(const int* counts, long long i, float n) {
    return __fdiv_rn(__int2float_rn(counts[i]), n);
}

__device__ __forceinline__ float up_x4(const int* counts, int width, int y0, int y1, int x0, int x1, float fy,
                                       float fx, float n) {
    const long long r0 = (long long)y0 * width;
    const long long r1 = (long long)y1 * width;
    const float h0 = lerp_cv(tfp_value(counts, r0 + x0, n), tfp_value(counts, r0 + x1, n), fx);
    const float h1 = lerp_cv(tfp_value(counts, r1 + x0, n), tfp_value(counts, r1 + x1, n), fx);
    return lerp_cv(h0, h1, fy);
}

extern "C" __global__ void sdm_upsample(const int* __restrict__ long_counts, const int* __restrict__ short_counts,
                                        const unsigned char* __restrict__ blur_bgr, float* __restrict__ out,
                                        int height, int width, int n_times, float n_long, float n_short) {
    const int X = blockIdx.x * blockDim.x + threadIdx.x;
    const int Y = blockIdx.y * blockDim.y + threadIdx.y;
    const int H = height * 4;
    const int W = width * 4;
    if (X >= W || Y >= H) return;
    int x0, x1, y0, y1;
    float fx, fy;
    x4_source(X, width, &x0, &x1, &fx);
    x4_source(Y, height, &y0, &y1, &fy);
    const long long pixel = (long long)Y * W + X;
    const long long plane = (long long)height * width;
    const long long out_plane = (long long)H * W;
    // The blur and TFP_long are the same for all K times: read and interpolate them once.
    const float lng = up_x4(long_counts, width, y0, y1, x0, x1, fy, fx, n_long);
    float blur[3];
#pragma unroll
    for (int c = 0; c < 3; ++c) blur[c] = __fdiv_rn(__int2float_rn((int)blur_bgr[pixel * 3 + c]), 255.0f);
    for (int k = 0; k < n_times; ++k) {
        const float shrt = up_x4(short_counts + k * plane, width, y0, y1, x0, x1, fy, fx, n_short);
        const float ratio = lng > 0.0f ? __fdiv_rn(shrt, lng) : 0.0f;
#pragma unroll
        for (int c = 0; c < 3; ++c) out[((long long)k * 3 + c) * out_plane + pixel] = __fmul_rn(blur[c], ratio);
    }
}
