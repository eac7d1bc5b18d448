// Test kernels for the shim's own primitives (warp shuffles, shared memory, barriers, atomics)
// and two planted bugs that the sanitizers must catch. Not part of the package.

extern "C" __global__ void block_sums(const int* values, int* block_totals, int* grand_total, int n) {
    __shared__ int warp_totals[32];
    const int tid = threadIdx.x;
    const int i = blockIdx.x * blockDim.x + tid;
    int v = i < n ? values[i] : 0;
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    if ((tid & 31) == 0) warp_totals[tid >> 5] = v;
    __syncthreads();
    if (tid == 0) {
        int total = 0;
        for (int w = 0; w < (int)(blockDim.x + 31) / 32; ++w) total += warp_totals[w];
        block_totals[blockIdx.x] = total;
        atomicAdd(grand_total, total);
    }
}

extern "C" __global__ void lane_exchange(int* out_xor, int* out_broadcast) {
    const int lane = threadIdx.x;
    out_xor[lane] = __shfl_xor_sync(0xffffffffu, lane * 10, 1);
    out_broadcast[lane] = __shfl_sync(0xffffffffu, lane * 10, 3);
}

// Planted: no __syncthreads() between the shared write and the read of another thread's slot.
extern "C" __global__ void racy_reverse(int* out) {
    __shared__ int slots[64];
    slots[threadIdx.x] = (int)threadIdx.x;
    out[threadIdx.x] = slots[blockDim.x - 1 - threadIdx.x];
}

// Planted: writes one element past the end of out (n elements).
extern "C" __global__ void off_by_one(int* out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) out[i] = i;
}
