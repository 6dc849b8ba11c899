// Dequantize kernels: one output value per thread per step (grid-stride). Each value is
// computed with the same rounded operations as smelt's CPU dequantizers, so results match
// bit for bit.

// Q8_0: blocks of 34 bytes (f16 d, 32 × int8); x = d·q.
extern "C" __global__ void dequant_q8_0(const u8* __restrict__ src, float* __restrict__ out,
                                        u64 n) {
    u64 stride = (u64)blockDim.x * gridDim.x;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const u8* blk = src + (i / 32) * 34;
        float d = f16_to_f32(le16(blk));
        out[i] = __fmul_rn(d, (float)(i8)blk[2 + i % 32]);
    }
}

// Q4_K: super-blocks of 144 bytes (f16 d, f16 dmin, 12 scale bytes, 128 code bytes);
// x = (d·sc)·q − dmin·m for the value's 32-wide sub-block.
extern "C" __global__ void dequant_q4_k(const u8* __restrict__ src, float* __restrict__ out,
                                        u64 n) {
    u64 stride = (u64)blockDim.x * gridDim.x;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const u8* blk = src + (i / 256) * 144;
        int e = (int)(i % 256);
        int pair = e / 64, hi = (e % 64) >= 32, l = e % 32;
        int sc, m;
        scale_min_k4(2 * pair + hi, blk + 4, &sc, &m);
        float d1 = __fmul_rn(f16_to_f32(le16(blk)), (float)sc);
        float m1 = __fmul_rn(f16_to_f32(le16(blk + 2)), (float)m);
        u8 byte = blk[16 + 32 * pair + l];
        int q = hi ? (byte >> 4) : (byte & 15);
        out[i] = __fsub_rn(__fmul_rn(d1, (float)q), m1);
    }
}

// NF4 (smelt's layout): codes two per byte, value 2i in the low nibble of byte i; one f32
// absmax per `block` values; x = NF4[code]·absmax.
extern "C" __global__ void dequant_nf4(const u8* __restrict__ packed,
                                       const float* __restrict__ absmax,
                                       float* __restrict__ out, u64 n, u32 block) {
    u64 stride = (u64)blockDim.x * gridDim.x;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        u8 byte = packed[i / 2];
        int code = (i & 1) ? (byte >> 4) : (byte & 15);
        out[i] = __fmul_rn(NF4_VALUES[code], absmax[i / block]);
    }
}

// GPTQ int4 (AutoGPTQ v1 layout) to W (K × N, row-major by input index k):
// q = nibble k%8 of qweight[k/8][n]; g = g_idx[k]; z = nibble n%8 of qzeros[g][n/8], plus one;
// w = scale[g][n]·(q − z).
extern "C" __global__ void dequant_gptq_int4(const u32* __restrict__ qweight,
                                             const u32* __restrict__ qzeros,
                                             const u16* __restrict__ scales,
                                             const int* __restrict__ g_idx,
                                             float* __restrict__ out, u32 k_dim, u32 n_dim) {
    u64 n = (u64)k_dim * n_dim;
    u64 stride = (u64)blockDim.x * gridDim.x;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        u32 k = (u32)(i / n_dim), c = (u32)(i % n_dim);
        int q = (qweight[(u64)(k / 8) * n_dim + c] >> (4 * (k % 8))) & 15;
        int g = g_idx[k];
        int z = ((qzeros[(u64)g * (n_dim / 8) + c / 8] >> (4 * (c % 8))) & 15) + 1;
        float s = f16_to_f32(scales[(u64)g * n_dim + c]);
        out[i] = __fmul_rn(s, (float)(q - z));
    }
}
