// Host emulation of the CUDA subset spikes.cu uses, so that the same .cu runs on a CPU (CI).
//
// Built as `g++ -std=c++20 -include shim.h` (shim.py). Blocks run one after another; the
// threads of a block run as std::threads; __syncthreads() is a std::barrier over the block;
// __shared__ is `static` (one block runs at a time) and dynamic shared memory is one buffer per
// block, filled with 0xFF first (a GPU does not zero it either); warp shuffles exchange values
// through a per-warp slot array between two per-warp barriers; atomicAdd is std::atomic_ref.
// Limits: no GPU memory model, warps are not in lockstep (a kernel relying on implicit warp
// synchrony fails here, as it may on Volta+), blocks never overlap, nothing about speed.
// Every CUDA thread is an OS thread: keep shapes and blocks small.
//
// Kernels are exported through SHIM_KERNEL(name) entries between SHIM_BEGIN_KERNELS and
// SHIM_END_KERNELS (shim.py writes that list after including the .cu), which defines
//   extern "C" int launch_by_name(const char* name, const unsigned* grid, const unsigned* block,
//                                 unsigned shared_bytes, void** args);
// with args packed as cuLaunchKernel takes them (args[i] points at the i-th argument).
#pragma once

#include <atomic>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#define SPIKEREVEAL_SHIM 1
#define __global__
#define __device__ inline
#define __host__
#define __forceinline__
#define __restrict__ __restrict
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

namespace shim {

constexpr unsigned kWarpSize = 32;

struct Block {
    dim3 grid, block, index;
    std::unique_ptr<std::barrier<>> barrier;
    std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
    std::vector<unsigned long long> warp_slots;  // kWarpSize slots per warp
    std::vector<unsigned char> dynamic_shared;
};

inline Block* current_block = nullptr;  // one block at a time
inline thread_local dim3 thread_index;

inline unsigned thread_rank() {
    return thread_index.x + current_block->block.x * (thread_index.y + current_block->block.y * thread_index.z);
}

inline void* dynamic_shared() { return current_block->dynamic_shared.data(); }

// Exchange one value per lane of this warp: lane l gets the value of lane source(l).
template <typename T, typename F>
T warp_exchange(T value, F source) {
    static_assert(sizeof(T) <= sizeof(unsigned long long) && std::is_trivially_copyable_v<T>);
    const unsigned rank = thread_rank();
    const unsigned warp = rank / kWarpSize, lane = rank % kWarpSize;
    const unsigned warp_base = warp * kWarpSize;
    const unsigned threads = current_block->block.x * current_block->block.y * current_block->block.z;
    const unsigned lanes = threads - warp_base < kWarpSize ? threads - warp_base : kWarpSize;
    unsigned long long* slots = current_block->warp_slots.data() + warp_base;
    unsigned long long raw = 0;
    std::memcpy(&raw, &value, sizeof(T));
    slots[lane] = raw;
    current_block->warp_barriers[warp]->arrive_and_wait();
    const unsigned src = source(lane);
    unsigned long long got = slots[src < lanes ? src : lane];
    current_block->warp_barriers[warp]->arrive_and_wait();  // nobody overwrites a slot still read
    T out;
    std::memcpy(&out, &got, sizeof(T));
    return out;
}

// The CUDA entry point shape: a function of any argument list, called with cuLaunchKernel args.
template <typename... A, std::size_t... I>
void call_packed(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(args[I])...);
}

using Trampoline = void (*)(void** args);

template <auto Kernel>
void trampoline(void** args) {
    []<typename... A>(void (*kernel)(A...), void** packed) {
        call_packed(kernel, packed, std::index_sequence_for<A...>{});
    }(Kernel, args);
}

struct Entry {
    const char* name;
    Trampoline run;
};

// 0 ok; 1 unknown kernel; 2 bad grid or block; 3 a thread threw.
inline int launch(const Entry* table, std::size_t entries, const char* name, const unsigned* grid,
                  const unsigned* block, unsigned shared_bytes, void** args) {
    const Entry* entry = nullptr;
    for (std::size_t i = 0; i < entries; ++i) {
        if (std::strcmp(table[i].name, name) == 0) entry = &table[i];
    }
    if (entry == nullptr) return 1;
    const unsigned threads = block[0] * block[1] * block[2];
    if (threads == 0 || threads > 1024 || grid[0] * grid[1] * grid[2] == 0 || shared_bytes > 48 * 1024) return 2;
    Block b;
    b.grid = dim3{grid[0], grid[1], grid[2]};
    b.block = dim3{block[0], block[1], block[2]};
    const unsigned warps = (threads + kWarpSize - 1) / kWarpSize;
    b.warp_slots.assign(warps * kWarpSize, 0);
    std::atomic<bool> failed{false};
    for (unsigned bz = 0; bz < grid[2]; ++bz)
        for (unsigned by = 0; by < grid[1]; ++by)
            for (unsigned bx = 0; bx < grid[0]; ++bx) {
                b.index = dim3{bx, by, bz};
                b.barrier = std::make_unique<std::barrier<>>(threads);
                b.warp_barriers.clear();
                for (unsigned w = 0; w < warps; ++w) {
                    const unsigned lanes = threads - w * kWarpSize < kWarpSize ? threads - w * kWarpSize : kWarpSize;
                    b.warp_barriers.push_back(std::make_unique<std::barrier<>>(lanes));
                }
                b.dynamic_shared.assign(shared_bytes, 0xFF);  // never zeros: catches a missing init
                current_block = &b;
                std::vector<std::thread> pool;
                pool.reserve(threads);
                for (unsigned tz = 0; tz < block[2]; ++tz)
                    for (unsigned ty = 0; ty < block[1]; ++ty)
                        for (unsigned tx = 0; tx < block[0]; ++tx) {
                            pool.emplace_back([=, &failed] {
                                thread_index = dim3{tx, ty, tz};
                                try {
                                    entry->run(args);
                                } catch (...) {
                                    failed = true;
                                }
                            });
                        }
                for (auto& t : pool) t.join();
                current_block = nullptr;
                if (failed) return 3;
            }
    return 0;
}

}  // namespace shim

// CUDA built-in variables, per emulated thread.
#define threadIdx (shim::thread_index)
#define blockIdx (shim::current_block->index)
#define blockDim (shim::current_block->block)
#define gridDim (shim::current_block->grid)
#define DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(shim::dynamic_shared())

inline void __syncthreads() { shim::current_block->barrier->arrive_and_wait(); }

// Warp shuffles (mask ignored: every lane of the warp must take part, as the kernels do).
template <typename T>
T __shfl_sync(unsigned, T value, int src_lane, int width = 32) {
    return shim::warp_exchange(value, [=](unsigned lane) { return (lane / width) * width + (unsigned)src_lane % width; });
}
template <typename T>
T __shfl_down_sync(unsigned, T value, unsigned delta, int width = 32) {
    return shim::warp_exchange(value, [=](unsigned lane) {
        const unsigned src = lane + delta;
        return (src / width == lane / width) ? src : lane;
    });
}
template <typename T>
T __shfl_xor_sync(unsigned, T value, int mask, int width = 32) {
    return shim::warp_exchange(value, [=](unsigned lane) {
        const unsigned src = lane ^ (unsigned)mask;
        return (src / width == lane / width) ? src : lane;
    });
}

template <typename T>
T atomicAdd(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_add(value);
}

// Explicitly rounded arithmetic (built with -ffp-contract=off, so nothing fuses on its own).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __int2float_rn(int v) { return static_cast<float>(v); }
inline unsigned int __float_as_uint(float v) { return std::bit_cast<unsigned int>(v); }
inline float __uint_as_float(unsigned int v) { return std::bit_cast<float>(v); }

#define SHIM_BEGIN_KERNELS static const shim::Entry shim_kernel_table[] = {
#define SHIM_KERNEL(name) {#name, &shim::trampoline<&name>},
#define SHIM_END_KERNELS                                                                                  \
    }                                                                                                     \
    ;                                                                                                     \
    extern "C" int launch_by_name(const char* name, const unsigned* grid, const unsigned* block,           \
                                  unsigned shared_bytes, void** args) {                                   \
        return shim::launch(shim_kernel_table, sizeof(shim_kernel_table) / sizeof(shim_kernel_table[0]), \
                            name, grid, block, shared_bytes, args);                                       \
    }
