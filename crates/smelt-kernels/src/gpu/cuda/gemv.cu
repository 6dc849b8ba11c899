// Fused dequantize-GEMV, the decode hot path: y = W·x with W (rows × K) kept in its quantized
// bytes and x in f32. A block of 256 threads computes 8 rows, one warp per row. x is staged in
// shared memory TILE_K values at a time; weights are read with coalesced 16-byte loads; float4
// reads of the staged x are rotated per lane so the lanes of a quarter-warp hit distinct banks.

#define TILE_K 4096
#define ROWS_PER_BLOCK 8

// Copies x[k0 .. k0+tk) into xs (tk a multiple of 4, x 16-byte aligned). Every thread of the
// block must call it: it synchronizes before (the last tile is consumed) and after.
__device__ __forceinline__ void stage_x(float* xs, const float* __restrict__ x, u32 k0, u32 tk) {
    __syncthreads();
    for (u32 i = threadIdx.x * 4; i < tk; i += blockDim.x * 4)
        *(float4*)&xs[i] = *(const float4*)&x[k0 + i];
    __syncthreads();
}

// The nibble at bit `sh` of b as a float, exactly, without the quarter-rate int-to-float
// unit: 2^23 + n has n in its low mantissa bits.
__device__ __forceinline__ float nib_f(u32 b, int sh) {
    return __uint_as_float(0x4B000000u | ((b >> sh) & 15u)) - 8388608.0f;
}

// The low byte of v as a signed int8 value in a float, exactly (same trick, biased by 128).
__device__ __forceinline__ float i8_f(u32 v) {
    return __uint_as_float(0x4B000000u | ((v & 0xffu) ^ 0x80u)) - 8388736.0f;
}

// Byte j (0..15) of a uint4 held in registers.
__device__ __forceinline__ u32 byte_of(uint4 v, int j) {
    return (word_of(v, j >> 2) >> (8 * (j & 3))) & 0xffu;
}

// Q4_K scale and min of sub-block j from the 16-byte super-block head (d, dmin, 12 scale bytes).
__device__ __forceinline__ void head_scale_min(int j, uint4 head, int* sc, int* m) {
    if (j < 4) {
        *sc = byte_of(head, 4 + j) & 63;
        *m = byte_of(head, 8 + j) & 63;
    } else {
        *sc = (byte_of(head, 8 + j) & 0xF) | ((byte_of(head, j) >> 6) << 4);
        *m = (byte_of(head, 8 + j) >> 4) | ((byte_of(head, 4 + j) >> 6) << 4);
    }
}

// Q4_K rows (K % 256 == 0): 8 lanes per super-block, each lane one 16-byte chunk of the 128
// code bytes (32 values of two sub-blocks), so a warp covers 4 super-blocks per step.
extern "C" __global__ void __launch_bounds__(256, 4)
gemv_q4_k(const u8* __restrict__ w, const float* __restrict__ x, float* __restrict__ y,
          u32 rows, u32 k_dim) {
    __shared__ __align__(16) float xs[TILE_K];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const u32 row = blockIdx.x * ROWS_PER_BLOCK + warp;
    const u8* wr = w + (u64)min(row, rows - 1) * (k_dim / 256) * 144;
    const int sub = lane / 8, c = lane % 8, pair = c / 2, half = c % 2;
    float acc = 0.f;
    for (u32 k0 = 0; k0 < k_dim; k0 += TILE_K) {
        u32 tk = min((u32)TILE_K, k_dim - k0);
        stage_x(xs, x, k0, tk);
        if (row >= rows) continue;
        u32 nsb = tk / 256;
        // Two super-blocks in flight per lane.
#pragma unroll 2
        for (u32 s = sub; s < nsb; s += 4) {
            const u8* blk = wr + (u64)(k0 / 256 + s) * 144;
            uint4 head = *(const uint4*)blk;
            uint4 qv = *(const uint4*)(blk + 16 + 16 * c);
            float d = f16_to_f32((u16)(head.x & 0xffffu));
            float dmin = f16_to_f32((u16)(head.x >> 16));
            int sc_lo, m_lo, sc_hi, m_hi;
            head_scale_min(2 * pair, head, &sc_lo, &m_lo);
            head_scale_min(2 * pair + 1, head, &sc_hi, &m_hi);
            const float* xl = xs + s * 256 + 64 * pair + 16 * half;
            const float* xh = xl + 32;
            float qx_lo = 0.f, x_lo = 0.f, qx_hi = 0.f, x_hi = 0.f;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int ws = (j + pair) & 3;
                u32 b = word_of(qv, ws);
                float4 a = *(const float4*)(xl + 4 * ws);
                float4 h = *(const float4*)(xh + 4 * ws);
                qx_lo += nib_f(b, 0) * a.x + nib_f(b, 8) * a.y + nib_f(b, 16) * a.z +
                         nib_f(b, 24) * a.w;
                x_lo += (a.x + a.y) + (a.z + a.w);
                qx_hi += nib_f(b, 4) * h.x + nib_f(b, 12) * h.y + nib_f(b, 20) * h.z +
                         nib_f(b, 28) * h.w;
                x_hi += (h.x + h.y) + (h.z + h.w);
            }
            acc += d * ((float)sc_lo * qx_lo + (float)sc_hi * qx_hi) -
                   dmin * ((float)m_lo * x_lo + (float)m_hi * x_hi);
        }
    }
    acc = warp_sum(acc);
    if (row < rows && lane == 0) y[row] = acc;
}

#define Q8_CHUNK 32

// Q8_0 rows (K % 256 == 0, so every row starts on 16 bytes): 34-byte blocks are not 16-byte
// aligned, so each warp first copies 32 blocks (1088 bytes = 68 × 16) into shared memory with
// 16-byte loads, then 8 lanes per block take 4 values each.
extern "C" __global__ void __launch_bounds__(256, 4)
gemv_q8_0(const u8* __restrict__ w, const float* __restrict__ x, float* __restrict__ y,
          u32 rows, u32 k_dim) {
    __shared__ __align__(16) float xs[TILE_K];
    __shared__ __align__(16) u8 staged[ROWS_PER_BLOCK][Q8_CHUNK * 34];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const u32 row = blockIdx.x * ROWS_PER_BLOCK + warp;
    const u8* wr = w + (u64)min(row, rows - 1) * (k_dim / 32) * 34;
    u8* st = staged[warp];
    const int bsub = lane / 8, j = lane % 8;
    float acc = 0.f;
    for (u32 k0 = 0; k0 < k_dim; k0 += TILE_K) {
        u32 tk = min((u32)TILE_K, k_dim - k0);
        stage_x(xs, x, k0, tk);
        if (row >= rows) continue;
        u32 nb = tk / 32;
        for (u32 b0 = 0; b0 < nb; b0 += Q8_CHUNK) {
            u32 cb = min((u32)Q8_CHUNK, nb - b0);
            u32 n16 = cb * 34 / 16;
            const uint4* src = (const uint4*)(wr + (u64)(k0 / 32 + b0) * 34);
            __syncwarp();
            for (u32 i = lane; i < n16; i += 32) ((uint4*)st)[i] = src[i];
            __syncwarp();
            for (u32 bb = bsub; bb < cb; bb += 4) {
                const u8* blk = st + bb * 34;
                float d = f16_to_f32(*(const u16*)blk);
                u16 q01 = *(const u16*)(blk + 2 + 4 * j);
                u16 q23 = *(const u16*)(blk + 4 + 4 * j);
                float4 xv = *(const float4*)&xs[(b0 + bb) * 32 + 4 * j];
                float s = i8_f(q01) * xv.x + i8_f(q01 >> 8) * xv.y + i8_f(q23) * xv.z +
                          i8_f(q23 >> 8) * xv.w;
                acc += d * s;
            }
        }
    }
    acc = warp_sum(acc);
    if (row < rows && lane == 0) y[row] = acc;
}

// NF4 rows in smelt's layout with QLoRA's block of 64 (K % 64 == 0): each lane takes 16 code
// bytes (32 values, half a block) per step; the 16 code values sit in shared memory.
extern "C" __global__ void __launch_bounds__(256, 4)
gemv_nf4(const u8* __restrict__ packed, const float* __restrict__ absmax,
         const float* __restrict__ x, float* __restrict__ y, u32 rows, u32 k_dim) {
    __shared__ __align__(16) float xs[TILE_K];
    __shared__ float lut[16];
    if (threadIdx.x < 16) lut[threadIdx.x] = NF4_VALUES[threadIdx.x];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const u32 row = blockIdx.x * ROWS_PER_BLOCK + warp;
    const u64 r = min(row, rows - 1);
    const u8* wr = packed + r * (k_dim / 2);
    const float* am = absmax + r * (k_dim / 64);
    float acc = 0.f;
    for (u32 k0 = 0; k0 < k_dim; k0 += TILE_K) {
        u32 tk = min((u32)TILE_K, k_dim - k0);
        stage_x(xs, x, k0, tk);
        if (row >= rows) continue;
        u32 nchunks = tk / 32;
        for (u32 ch = lane; ch < nchunks; ch += 32) {
            uint4 qv = *(const uint4*)(wr + (k0 + ch * 32) / 2);
            float m = am[(k0 + ch * 32) / 64];
            const float* xv = xs + ch * 32;
            float s = 0.f;
#pragma unroll
            for (int t = 0; t < 8; t++) {
                int f = (t + lane) & 7;
                u32 two = word_of(qv, f >> 1) >> (16 * (f & 1));
                float4 a = *(const float4*)(xv + 4 * f);
                s += lut[two & 15] * a.x + lut[(two >> 4) & 15] * a.y +
                     lut[(two >> 8) & 15] * a.z + lut[(two >> 12) & 15] * a.w;
            }
            acc += m * s;
        }
    }
    acc = warp_sum(acc);
    if (row < rows && lane == 0) y[row] = acc;
}

#define GPTQ_KSPLIT 256

// GPTQ int4 (AutoGPTQ v1 layout, K % 8 == 0, N % 8 == 0): y[n] = Σ_k W(k, n)·x[k]. Each thread
// takes 4 output columns (one 16-byte load of qweight per 8 inputs); blocks split K into
// slices of 256 and add their partial sums with atomicAdd, so y must be zeroed first.
// Scales and zero points are reloaded only when the group changes (act-order g_idx works).
extern "C" __global__ void __launch_bounds__(128)
gemv_gptq_int4(const u32* __restrict__ qweight, const u32* __restrict__ qzeros,
               const u16* __restrict__ scales, const int* __restrict__ g_idx,
               const float* __restrict__ x, float* __restrict__ y, u32 k_dim, u32 n_dim) {
    __shared__ float xs[GPTQ_KSPLIT];
    __shared__ int gs[GPTQ_KSPLIT];
    const u32 k0 = blockIdx.y * GPTQ_KSPLIT;
    const u32 kt = min((u32)GPTQ_KSPLIT, k_dim - k0);
    for (u32 i = threadIdx.x; i < kt; i += blockDim.x) {
        xs[i] = x[k0 + i];
        gs[i] = g_idx[k0 + i];
    }
    __syncthreads();
    const u32 n = (blockIdx.x * blockDim.x + threadIdx.x) * 4;
    if (n >= n_dim) return;
    float acc0 = 0.f, acc1 = 0.f, acc2 = 0.f, acc3 = 0.f;
    float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
    int z0 = 0, z1 = 0, z2 = 0, z3 = 0, g_prev = -1;
    for (u32 kp = 0; kp < kt / 8; kp++) {
        uint4 qw = *(const uint4*)&qweight[(u64)(k0 / 8 + kp) * n_dim + n];
#pragma unroll
        for (int j = 0; j < 8; j++) {
            int g = gs[kp * 8 + j];
            if (g != g_prev) {
                g_prev = g;
                uint2 sv = *(const uint2*)&scales[(u64)g * n_dim + n];
                s0 = f16_to_f32((u16)(sv.x & 0xffffu));
                s1 = f16_to_f32((u16)(sv.x >> 16));
                s2 = f16_to_f32((u16)(sv.y & 0xffffu));
                s3 = f16_to_f32((u16)(sv.y >> 16));
                u32 zw = qzeros[(u64)g * (n_dim / 8) + n / 8] >> (4 * (n % 8));
                z0 = (int)(zw & 15) + 1;
                z1 = (int)((zw >> 4) & 15) + 1;
                z2 = (int)((zw >> 8) & 15) + 1;
                z3 = (int)((zw >> 12) & 15) + 1;
            }
            float xv = xs[kp * 8 + j];
            int sh = 4 * j;
            acc0 += __fmul_rn(s0, (float)((int)((qw.x >> sh) & 15) - z0)) * xv;
            acc1 += __fmul_rn(s1, (float)((int)((qw.y >> sh) & 15) - z1)) * xv;
            acc2 += __fmul_rn(s2, (float)((int)((qw.z >> sh) & 15) - z2)) * xv;
            acc3 += __fmul_rn(s3, (float)((int)((qw.w >> sh) & 15) - z3)) * xv;
        }
    }
    atomicAdd(&y[n], acc0);
    atomicAdd(&y[n + 1], acc1);
    atomicAdd(&y[n + 2], acc2);
    atomicAdd(&y[n + 3], acc3);
}
