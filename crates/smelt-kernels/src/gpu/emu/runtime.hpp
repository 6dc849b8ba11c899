// A CPU stand-in for the CUDA execution model, so smelt's kernel sources (src/gpu/cuda/*.cu)
// run unchanged under g++ in CI, where no GPU exists. Each CUDA thread of a block is a fiber
// (ucontext) with its own stack; one OS thread runs the fibers of a block in turn until each
// finishes or waits at a barrier, then the blocks one after another. __syncthreads() and
// __syncwarp() are real barriers (a fiber waits until every thread of its block or warp arrives),
// so shared memory staging and warp shuffles behave as on the device; a barrier that can never
// be released (divergent __syncthreads, a warp shuffle after lanes have exited) is reported as
// an error instead of hanging. __shared__ arrays become function statics, shared by the fibers of
// the block that runs now. Float intrinsics (__fmul_rn, ...) are the plain IEEE operations; the
// library is built with -ffp-contract=off so nothing is fused that the device would round
// separately.
#pragma once

#include <sys/mman.h>
#include <ucontext.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#define SMELT_CUDA_EMU 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __constant__ static
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
};
struct __attribute__((aligned(16))) uint4 {
    unsigned x, y, z, w;
};
struct __attribute__((aligned(8))) uint2 {
    unsigned x, y;
};
struct __attribute__((aligned(16))) float4 {
    float x, y, z, w;
};

// The built-in variables of the fiber that runs now (the scheduler sets them on every switch).
inline dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {

enum State { RUN, WAIT_BLOCK, WAIT_WARP, DONE };

struct Fiber {
    ucontext_t ctx;
    State state;
};

constexpr size_t STACK_BYTES = 64 * 1024;
constexpr size_t GUARD_BYTES = 4096;

// A fiber stack with an inaccessible page below it, so an overflow faults instead of
// silently overwriting another fiber's stack.
struct Stack {
    char* base = nullptr;  // the guard page; the stack follows it
    Stack() {
        void* p = mmap(nullptr, GUARD_BYTES + STACK_BYTES, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            fprintf(stderr, "cuda emulator: cannot map a fiber stack\n");
            abort();
        }
        base = (char*)p;
        mprotect(base, GUARD_BYTES, PROT_NONE);
    }
    Stack(const Stack&) = delete;
    Stack& operator=(const Stack&) = delete;
    Stack(Stack&& o) noexcept : base(o.base) { o.base = nullptr; }
    ~Stack() {
        if (base) munmap(base, GUARD_BYTES + STACK_BYTES);
    }
    char* data() const { return base + GUARD_BYTES; }
    size_t size() const { return STACK_BYTES; }
};

// Per loaded library (built with -fvisibility=hidden -fno-gnu-unique, so two emulators in one
// process never share it): the launch in progress. Launches never overlap: the Rust side
// serialises them.
struct Launch {
    ucontext_t sched;
    std::vector<Fiber> fibers;          // (threads per block,)
    std::vector<Stack> stacks;          // one per fiber, reused across blocks and launches
    std::vector<uint64_t> slots;        // (threads per block,) shuffle mailboxes
    unsigned cur = 0;                   // linear index of the running fiber in its block
    std::function<void()> body;         // the kernel call with its arguments
};
inline Launch g;

inline void set_thread(unsigned t) {
    g.cur = t;
    threadIdx.x = t % blockDim.x;
    threadIdx.y = (t / blockDim.x) % blockDim.y;
    threadIdx.z = t / (blockDim.x * blockDim.y);
}

// Back to the scheduler until the barrier `s` is released.
inline void wait(State s) {
    Fiber& f = g.fibers[g.cur];
    f.state = s;
    asm volatile("" ::: "memory");
    swapcontext(&f.ctx, &g.sched);
    asm volatile("" ::: "memory");
}

inline void entry() {
    g.body();
    g.fibers[g.cur].state = DONE;
}

// Runs one block's fibers until all finish. Returns an empty string or what went wrong.
inline std::string run_block() {
    const unsigned n = (unsigned)g.fibers.size();
    for (unsigned t = 0; t < n; t++) {
        Fiber& f = g.fibers[t];
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = g.stacks[t].data();
        f.ctx.uc_stack.ss_size = g.stacks[t].size();
        f.ctx.uc_link = &g.sched;
        makecontext(&f.ctx, entry, 0);
        f.state = RUN;
    }
    for (;;) {
        for (unsigned t = 0; t < n; t++) {
            if (g.fibers[t].state != RUN) continue;
            set_thread(t);
            swapcontext(&g.sched, &g.fibers[t].ctx);
        }
        // Everyone is done or waits. Release warps whose lanes all wait at a warp barrier.
        bool released = false, all_done = true, any_warp_wait = false;
        for (unsigned w0 = 0; w0 < n; w0 += 32) {
            unsigned w1 = w0 + 32 < n ? w0 + 32 : n;
            unsigned waiting = 0, done = 0;
            for (unsigned t = w0; t < w1; t++) {
                waiting += g.fibers[t].state == WAIT_WARP;
                done += g.fibers[t].state == DONE;
            }
            if (done != w1 - w0) all_done = false;
            if (waiting == 0) continue;
            any_warp_wait = true;
            if (waiting == w1 - w0) {
                for (unsigned t = w0; t < w1; t++) g.fibers[t].state = RUN;
                released = true;
            }
        }
        if (all_done) return "";
        if (released) continue;
        if (any_warp_wait)
            return "a warp barrier or shuffle can never complete: some lanes of the warp exited "
                   "or wait at __syncthreads() instead";
        // Threads that exited count as arrived at __syncthreads(), as on sm_70 and later.
        for (unsigned t = 0; t < n; t++)
            if (g.fibers[t].state == WAIT_BLOCK) g.fibers[t].state = RUN;
    }
}

template <class... A, size_t... I>
void call(void (*k)(A...), void** params, std::index_sequence<I...>) {
    k(*static_cast<A*>(params[I])...);
}

// Launches `k` on grid `grid` of blocks `block` (x, y, z each); `params[i]` points to the i-th
// argument's value, as cuLaunchKernel's kernelParams do.
template <class... A>
int launch(void (*k)(A...), const unsigned* grid, const unsigned* block, void** params,
           char* err, size_t err_len) {
    auto fail = [&](const std::string& msg) {
        snprintf(err, err_len, "%s", msg.c_str());
        return 1;
    };
    unsigned n = block[0] * block[1] * block[2];
    if (n == 0 || n > 1024) return fail("block size must be 1 to 1024 threads");
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0) return fail("empty grid");
    gridDim = {grid[0], grid[1], grid[2]};
    blockDim = {block[0], block[1], block[2]};
    g.fibers.assign(n, Fiber{});
    while (g.stacks.size() < n) g.stacks.emplace_back();
    g.slots.assign(n, 0);
    g.body = [=] { call(k, params, std::index_sequence_for<A...>{}); };
    std::string e;
    for (unsigned z = 0; z < grid[2] && e.empty(); z++)
        for (unsigned y = 0; y < grid[1] && e.empty(); y++)
            for (unsigned x = 0; x < grid[0] && e.empty(); x++) {
                blockIdx = {x, y, z};
                e = run_block();
                if (!e.empty())
                    e += " (block " + std::to_string(x) + "," + std::to_string(y) + "," +
                         std::to_string(z) + ")";
            }
    g.body = nullptr;
    return e.empty() ? 0 : fail(e);
}

}  // namespace emu

inline void __syncthreads() { emu::wait(emu::WAIT_BLOCK); }

// Only full-warp masks are used by smelt's kernels; a partial mask would need lane tracking.
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    if (mask != 0xffffffffu) {
        fprintf(stderr, "cuda emulator: __syncwarp with a partial mask is not modelled\n");
        abort();
    }
    emu::wait(emu::WAIT_WARP);
}

template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a value wider than 8 bytes");
    unsigned t = emu::g.cur;
    memcpy(&emu::g.slots[t], &v, sizeof(T));
    __syncwarp(mask);
    unsigned partner = (t & ~31u) | ((t & 31u) ^ ((unsigned)lane_mask & 31u));
    T r = v;
    if (partner < emu::g.slots.size()) memcpy(&r, &emu::g.slots[partner], sizeof(T));
    __syncwarp(mask);
    return r;
}

inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }

// cvt.rni.s32.f32: round half to even, saturating, NaN to 0.
inline int __float2int_rn(float v) {
    if (v != v) return 0;
    if (v >= 2147483648.0f) return INT_MAX;
    if (v < -2147483648.0f) return INT_MIN;
    return (int)std::nearbyint(v);
}

inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// Four signed byte products summed into c (wrapping, as the instruction does).
inline int __dp4a(int a, int b, int c) {
    int32_t s = 0;
    for (int j = 0; j < 4; j++) s += (int32_t)(int8_t)(a >> (8 * j)) * (int8_t)(b >> (8 * j));
    return (int)((uint32_t)c + (uint32_t)s);
}

// One OS thread runs every fiber, so a plain add is atomic here.
inline float atomicAdd(float* p, float v) {
    float old = *p;
    *p = old + v;
    return old;
}

template <class T>
inline T min(T a, T b) {
    return a < b ? a : b;
}
template <class T>
inline T max(T a, T b) {
    return a < b ? b : a;
}

// IEEE half bits to float (what PTX's cvt.f32.f16 does), for common.cuh's f16_to_f32.
inline float smelt_emu_f16_to_f32(unsigned short h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while (!(man & 1024));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 1023) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// One C entry per kernel, named smelt_emu_<kernel>.
#define SMELT_EMU_ENTRY(kernel)                                                              \
    extern "C" __attribute__((visibility("default"))) int smelt_emu_##kernel(const unsigned* grid, const unsigned* block,           \
                                      void** params, char* err, unsigned long err_len) {    \
        return emu::launch(kernel, grid, block, params, err, err_len);                      \
    }
