// INT8 GEMM for W8A8 with dp4a: acc[m][n] = Σ_k A[m][k]·B[n][k] in int32 (A: activations,
// M × K row-major; B: weights, N × K row-major, i.e. the product is A·Bᵀ). Written out either
// as int32 (c) or scaled to float (d = (float)acc · sa[m] · sb[n], per-token × per-channel),
// whichever pointer is non-null. A block of 256 threads computes a 64 × 64 tile, 4 × 4 per
// thread, staging 64-byte K slices of A and B in shared memory with one 16-byte load per
// thread each. Needs K % 16 == 0; M and N are free.

#define GB_M 64
#define GB_N 64
#define GB_KW 16  // K slice in 32-bit words (64 int8)

extern "C" __global__ void __launch_bounds__(256)
gemm_int8_dp4a(const i8* __restrict__ a, const i8* __restrict__ b, int* __restrict__ c,
               const float* __restrict__ sa, const float* __restrict__ sb,
               float* __restrict__ d, u32 m_dim, u32 n_dim, u32 k_dim) {
    __shared__ int as[GB_M][GB_KW + 1];
    __shared__ int bs[GB_N][GB_KW + 1];
    const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
    const int lr = tid / 4, lq = tid % 4;
    const u32 m0 = blockIdx.y * GB_M, n0 = blockIdx.x * GB_N;
    int acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0;
    for (u32 k0 = 0; k0 < k_dim; k0 += 4 * GB_KW) {
        u32 kq = k0 + 16 * lq;
        uint4 av, bv;
        av.x = av.y = av.z = av.w = 0u;
        bv.x = bv.y = bv.z = bv.w = 0u;
        if (m0 + lr < m_dim && kq < k_dim) av = *(const uint4*)(a + (u64)(m0 + lr) * k_dim + kq);
        if (n0 + lr < n_dim && kq < k_dim) bv = *(const uint4*)(b + (u64)(n0 + lr) * k_dim + kq);
        __syncthreads();
        as[lr][4 * lq + 0] = (int)av.x;
        as[lr][4 * lq + 1] = (int)av.y;
        as[lr][4 * lq + 2] = (int)av.z;
        as[lr][4 * lq + 3] = (int)av.w;
        bs[lr][4 * lq + 0] = (int)bv.x;
        bs[lr][4 * lq + 1] = (int)bv.y;
        bs[lr][4 * lq + 2] = (int)bv.z;
        bs[lr][4 * lq + 3] = (int)bv.w;
        __syncthreads();
#pragma unroll
        for (int kw = 0; kw < GB_KW; kw++) {
            int ar[4], br[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                ar[i] = as[ty * 4 + i][kw];
                br[i] = bs[tx * 4 + i][kw];
            }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = __dp4a(ar[i], br[j], acc[i][j]);
        }
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        u32 m = m0 + ty * 4 + i;
        if (m >= m_dim) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            u32 n = n0 + tx * 4 + j;
            if (n >= n_dim) continue;
            u64 o = (u64)m * n_dim + n;
            if (c) c[o] = acc[i][j];
            if (d) d[o] = __fmul_rn(__fmul_rn((float)acc[i][j], sa[m]), sb[n]);
        }
    }
}
