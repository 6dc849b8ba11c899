// Helpers shared by smelt's CUDA kernels. NVRTC compiles each kernel file with this text in
// front, so the kernels need no CUDA headers (cuda_fp16.h is not shipped with NVRTC).
typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

// IEEE half bits to float, exactly (PTX cvt), as half::f16::to_f32 does on the CPU.
__device__ __forceinline__ float f16_to_f32(u16 h) {
#ifdef SMELT_CUDA_EMU
    return smelt_emu_f16_to_f32(h);  // the CPU emulator (src/gpu/emu/runtime.hpp)
#else
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#endif
}

// Little-endian u16 from two bytes (block fields are not 2-byte aligned in every format).
__device__ __forceinline__ u16 le16(const u8* p) {
    return (u16)p[0] | ((u16)p[1] << 8);
}

// Sum over the 32 lanes of a warp; every lane gets the total.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// The 6-bit scale and min of sub-block j of a Q4_K/Q5_K super-block (ggml's get_scale_min_k4).
__device__ __forceinline__ void scale_min_k4(int j, const u8* q, int* sc, int* m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Word w (0..3) of a uint4 without a local-memory array.
__device__ __forceinline__ u32 word_of(uint4 v, int w) {
    return w == 0 ? v.x : (w == 1 ? v.y : (w == 2 ? v.z : v.w));
}

// NF4 code values (QLoRA / bitsandbytes table), identical to smelt_quant::nf4::NF4_TABLE.
__constant__ float NF4_VALUES[16] = {
    -1.0f, -0.6961928f, -0.52507305f, -0.3949175f, -0.28444138f, -0.18477343f,
    -0.091050036f, 0.0f, 0.0795803f, 0.1609302f, 0.2461123f, 0.33791524f,
    0.44070983f, 0.562617f, 0.72295684f, 1.0f};
