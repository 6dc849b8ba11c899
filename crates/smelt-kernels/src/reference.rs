//! Plain reference dot products: one weight row (ggml block bytes) against one activation row.
//! Each one decodes a block's integer codes exactly as the format defines them, sums code ×
//! activation code in i32, and applies the scales in f32. The SIMD variants must compute the same
//! integer sums; only the order of the final float additions may differ, except for the 32-block
//! formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), whose order is ggml's and which every variant follows
//! exactly (unless `SMELT_FAST_SUMS` is set: `crate::ggml_sums`), and the k-quants (Q4_K, Q5_K,
//! Q6_K), always in ggml's order. llama.cpp sums a k-quant product in one of two orders
//! depending on the batch it is in: each has a `dot_*` here for one token (Q5_K, Q6_K: and
//! batches under 8 rows; Q4_K: and the `n % 4` rows a batch leaves over), and a `dot_*_x4`
//! (Q4_K's rows in groups of 4) or `dot_*_tiled` (batches of 8 rows or more) for the others
//! (`Activations::k_batch` says which a row takes). llama.cpp repacks Q4_0 and Q4_K matrices
//! whose row count is a multiple of 8 and sums those in other orders (`dot_q4_0`, `dot_q4_k`,
//! `dot_q4_k_x4`) than the matrices it leaves as written (`dot_q4_0_lanes`, `dot_q4_k_vec`,
//! `dot_q4_k_tiled`); its AVX-512 build does the same with Q2_K (`dot_q2_k_gemv`,
//! `dot_q2_k_gemm`; else `dot_q2_k`, `dot_q2_k_tiled`), and IQ4_NL (`dot_iq4_nl`; else
//! `dot_iq4_nl_vec` for a token alone, `dot_iq4_nl_lanes` for 2 rows or more).
//! `crate::ggml_repacks` tells which.

use smelt_gguf::blocks::kquant::scale_min_k4;

use crate::WeightType;
use crate::act::{BlockQ8K, BlockQ8x32};

/// An f16 stored little-endian at `b[0..2]`.
pub(crate) fn f16_at(b: &[u8]) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()
}

/// Weight k of a row of f32 bytes, read in place.
fn f32_at(w: &[u8], k: usize) -> f32 {
    f32::from_le_bytes([w[4 * k], w[4 * k + 1], w[4 * k + 2], w[4 * k + 3]])
}

/// Σ wᵢ·xᵢ for f32 weights as ggml's `ggml_vec_dot_f32` sums them (AVX-512 build), which
/// llama.cpp runs for a token alone: four 16-lane FMA accumulators over each 64 values, added
/// as (a0 + a2) + (a1 + a3) and reduced as `_mm512_reduce_add_ps`; the `n % 64` leftovers then
/// added to that in f32, in order, the products of the first multiple of 8 rounded before
/// the add and those of the last `n % 8` fused (GCC vectorizes the leftover loop's products 16
/// and 8 at a time and contracts its scalar tail into FMAs; read from the built library).
pub fn dot_f32(w: &[u8], x: &[f32]) -> f32 {
    let n = x.len().min(w.len() / 4);
    let wk = |k: usize| f32_at(w, k);
    let np = n / 64 * 64;
    let mut sum = crate::attention::four_lanes64(np, |k| (wk(k), x[k]));
    let rounded = np + (n - np) / 8 * 8;
    for (k, &xk) in x.iter().enumerate().take(rounded).skip(np) {
        sum += wk(k) * xk;
    }
    for (k, &xk) in x.iter().enumerate().take(n).skip(rounded) {
        sum = wk(k).mul_add(xk, sum);
    }
    sum
}

/// Σ wᵢ·xᵢ for f32 weights as llamafile's `tinyBLAS` sums them, which llama.cpp runs for a
/// sequence of two tokens or more: one 16-lane FMA chain over the row, reduced as
/// `_mm512_reduce_add_ps`; a row whose length is not a multiple of 16, which tinyBLAS
/// declines, as `ggml_vec_dot_f32` ([`dot_f32`]).
pub fn dot_f32_chain(w: &[u8], x: &[f32]) -> f32 {
    let n = x.len().min(w.len() / 4);
    if !n.is_multiple_of(16) {
        return dot_f32(w, x);
    }
    crate::attention::chain16(n, |k| (f32_at(w, k), x[k]))
}

/// Σ wᵢ·xᵢ for f16 weights, summed in order.
pub fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
    w.chunks_exact(2).zip(x).map(|(b, &v)| f16_at(b) * v).sum()
}

/// Q4_0 (18-byte blocks: f16 d, 16 bytes of nibbles): w = d·(q − 8), summed in the order of
/// llama.cpp's x86 build, which repacks Q4_0 eight rows at a time (`block_q4_0x8`, gemv and
/// gemm `q4_0_8x8_q8_0`): one float chain per output, each block's exact integer dot added with
/// a fused multiply-add by `d_w · d_y` (one f32 product).
pub fn dot_q4_0(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let mut sum = 0f32;
    for (b, a) in w.chunks_exact(18).zip(a) {
        let mut isum = 0i32;
        for (j, &q) in b[2..18].iter().enumerate() {
            isum += ((q & 0x0f) as i32 - 8) * a.qs[j] as i32;
            isum += ((q >> 4) as i32 - 8) * a.qs[j + 16] as i32;
        }
        sum = (isum as f32).mul_add(f16_at(b) * a.d, sum);
    }
    sum
}

/// Q4_0 as llama.cpp's x86 build sums a matrix it does not repack (row count not a multiple
/// of 8): `vec_dot_q4_0_q8_0` for one token, llamafile's `tinyBLAS_Q0_AVX` for several; both
/// [`ggml_lanes`] on the centred codes, as [`dot_q8_0`].
pub fn dot_q4_0_lanes(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let mut acc = [0f32; 8];
    for (b, a) in w.chunks_exact(18).zip(a) {
        let q: [i32; 32] =
            std::array::from_fn(|i| (b[2 + i % 16] >> (4 * (i / 16)) & 0x0f) as i32 - 8);
        ggml_lanes(&mut acc, f16_at(b) * a.d, &q, &a.qs);
    }
    ggml_hsum(&acc)
}

/// The 32 codes of an IQ4_NL block (18 bytes: f16 d, 16 bytes of 4-bit indices into
/// `KVALUES`, low nibbles first): w = d·K[q].
fn iq4_nl_codes(b: &[u8]) -> [i32; 32] {
    use smelt_gguf::blocks::iq4_nl::KVALUES;
    std::array::from_fn(|i| KVALUES[((b[2 + i % 16] >> (4 * (i / 16))) & 0x0f) as usize] as i32)
}

/// IQ4_NL as llama.cpp's x86 build sums a matrix it repacks (row count a multiple of 8,
/// `iq4_nl_8x8_q8_0`, gemv and gemm alike): as [`dot_q4_0`], one chain of each block's exact
/// integer dot by `d_w · d_y`.
pub fn dot_iq4_nl(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let mut sum = 0f32;
    for (b, a) in w.chunks_exact(18).zip(a) {
        let isum: i32 = iq4_nl_codes(b)
            .iter()
            .zip(&a.qs)
            .map(|(&q, &y)| q * y as i32)
            .sum();
        sum = (isum as f32).mul_add(f16_at(b) * a.d, sum);
    }
    sum
}

/// IQ4_NL in a matrix llama.cpp does not repack, for batches of 2 rows or more (llamafile's
/// `tinyBLAS_Q0_AVX`): [`ggml_lanes`], as [`dot_q8_0`].
pub fn dot_iq4_nl_lanes(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let mut acc = [0f32; 8];
    for (b, a) in w.chunks_exact(18).zip(a) {
        ggml_lanes(&mut acc, f16_at(b) * a.d, &iq4_nl_codes(b), &a.qs);
    }
    ggml_hsum(&acc)
}

/// IQ4_NL in a matrix llama.cpp does not repack, for a token alone (`vec_dot_iq4_nl_q8_0`):
/// [`ggml_lanes`] in two sets, one for the even blocks and one for the odd ones, added lane
/// by lane before `hsum_float_8`; an odd last block then adds `d_w·d_y·Σ` (multiply, then add:
/// GCC does not fuse them there).
pub fn dot_iq4_nl_vec(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let (mut even, mut odd) = ([0f32; 8], [0f32; 8]);
    let blocks: Vec<_> = w.chunks_exact(18).zip(a).collect();
    let pairs = blocks.len() / 2 * 2;
    for (i, (b, a)) in blocks[..pairs].iter().enumerate() {
        let acc = if i % 2 == 0 { &mut even } else { &mut odd };
        ggml_lanes(acc, f16_at(b) * a.d, &iq4_nl_codes(b), &a.qs);
    }
    let mut sum = ggml_hsum(&std::array::from_fn(|l| even[l] + odd[l]));
    if let Some((b, a)) = blocks.get(pairs) {
        let isum: i32 = iq4_nl_codes(b)
            .iter()
            .zip(&a.qs)
            .map(|(&q, &y)| q * y as i32)
            .sum();
        sum += f16_at(b) * a.d * isum as f32;
    }
    sum
}

/// Q4_1 (20-byte blocks: f16 d, f16 m, 16 bytes of nibbles): w = d·q + m, summed in ggml's
/// order (x86 `vec_dot_q4_1_q8_1`, which llama.cpp uses for one token and several):
/// [`ggml_lanes`] for `d·q`, plus `m · s_y` accumulated with a fused multiply-add per block.
pub fn dot_q4_1(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut mins = 0f32;
    for (b, a) in w.chunks_exact(20).zip(a) {
        let mut q = [0i32; 32];
        for (j, &c) in b[4..20].iter().enumerate() {
            q[j] = (c & 0x0f) as i32;
            q[j + 16] = (c >> 4) as i32;
        }
        mins = f16_at(&b[2..]).mul_add(a.s_f16, mins);
        ggml_lanes(&mut acc, f16_at(b) * a.d, &q, &a.qs);
    }
    ggml_hsum(&acc) + mins
}

/// One block into ggml's eight lane sums: lane j adds the exact integer dot of codes
/// 4j..4j+4, scaled by `d` (= d_w · d_y, one f32 product), in a fused multiply-add.
fn ggml_lanes(acc: &mut [f32; 8], d: f32, q: &[i32; 32], y: &[i8; 32]) {
    for (j, s) in acc.iter_mut().enumerate() {
        let isum: i32 = (4 * j..4 * j + 4).map(|i| q[i] * y[i] as i32).sum();
        *s = d.mul_add(isum as f32, *s);
    }
}

/// ggml's `hsum_float_8`: `((s0+s4)+(s2+s6)) + ((s1+s5)+(s3+s7))`.
fn ggml_hsum(acc: &[f32; 8]) -> f32 {
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

/// The 5-bit codes of a Q5 block from its 16 nibble bytes and 32 high bits.
fn q5_codes(qs: &[u8], qh: u32) -> [i32; 32] {
    let mut q = [0i32; 32];
    for j in 0..16 {
        q[j] = ((qs[j] & 0x0f) as u32 | (((qh >> j) & 1) << 4)) as i32;
        q[j + 16] = ((qs[j] >> 4) as u32 | (((qh >> (j + 16)) & 1) << 4)) as i32;
    }
    q
}

/// Q5_0 (22-byte blocks: f16 d, u32 high bits, 16 bytes of nibbles): w = d·(q − 16), summed
/// in ggml's order (x86 `vec_dot_q5_0_q8_0` for one token, llamafile's `tinyBLAS_Q0_AVX` for
/// several): [`ggml_lanes`] on the centred codes, as [`dot_q8_0`].
pub fn dot_q5_0(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let mut acc = [0f32; 8];
    for (b, a) in w.chunks_exact(22).zip(a) {
        let q = q5_codes(&b[6..22], u32::from_le_bytes([b[2], b[3], b[4], b[5]])).map(|q| q - 16);
        ggml_lanes(&mut acc, f16_at(b) * a.d, &q, &a.qs);
    }
    ggml_hsum(&acc)
}

/// Q5_1 (24-byte blocks: f16 d, f16 m, u32 high bits, 16 bytes of nibbles): w = d·q + m,
/// summed in ggml's order (x86 `vec_dot_q5_1_q8_1`), as [`dot_q4_1`].
pub fn dot_q5_1(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut mins = 0f32;
    for (b, a) in w.chunks_exact(24).zip(a) {
        let q = q5_codes(&b[8..24], u32::from_le_bytes([b[4], b[5], b[6], b[7]]));
        mins = f16_at(&b[2..]).mul_add(a.s_f16, mins);
        ggml_lanes(&mut acc, f16_at(b) * a.d, &q, &a.qs);
    }
    ggml_hsum(&acc) + mins
}

/// Q8_0 (34-byte blocks: f16 d, 32 int8 codes): w = d·q, summed in ggml's order so that the
/// result is llama.cpp's, bit for bit (its x86 `vec_dot_q8_0_q8_0` for one token and llamafile's
/// `tinyBLAS_Q0_AVX` for several both compute this): eight lanes, lane j taking the exact
/// integer dot of codes 4j..4j+4 of each block, scaled by `d_w · d_y` (one f32 product) in a
/// fused multiply-add, block after block; then `((s0+s4)+(s2+s6)) + ((s1+s5)+(s3+s7))`. Every
/// variant computes exactly this unless `SMELT_FAST_SUMS` is set (`crate::ggml_sums`).
pub fn dot_q8_0(w: &[u8], a: &[BlockQ8x32]) -> f32 {
    let mut acc = [0f32; 8];
    for (b, a) in w.chunks_exact(34).zip(a) {
        let q: [i32; 32] = std::array::from_fn(|i| b[2 + i] as i8 as i32);
        ggml_lanes(&mut acc, f16_at(b) * a.d, &q, &a.qs);
    }
    ggml_hsum(&acc)
}

/// Per 64-weight pair of sub-blocks of a Q4_K (`FIVE` false, 144 bytes) or Q5_K (176 bytes)
/// super-block: (Σ sc·q·y, Σ m·Σy), exact; and the 8 ggml lanes of Σ sc·q·y (lane l over the
/// elements whose index mod 32 is in 4l..4l+4).
fn k45_sums<const FIVE: bool>(b: &[u8], a: &BlockQ8K) -> ([i32; 4], [i32; 4], [i32; 8]) {
    let scales: &[u8; 12] = b[4..16].try_into().expect("12 scale bytes");
    let (qh, qs) = if FIVE {
        (&b[16..48], &b[48..176])
    } else {
        (&b[0..0], &b[16..144])
    };
    let (mut pairs, mut mins, mut lanes) = ([0i32; 4], [0i32; 4], [0i32; 8]);
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, scales);
        let (codes, shift) = (&qs[32 * (j / 2)..32 * (j / 2) + 32], 4 * (j % 2));
        for l in 0..32 {
            let mut q = (codes[l] >> shift) & 0x0f;
            if FIVE {
                q |= ((qh[l] >> j) & 1) << 4;
            }
            let p = sc as i32 * q as i32 * a.qs[32 * j + l] as i32;
            pairs[j / 2] += p;
            lanes[l / 4] += p;
        }
        mins[j / 2] += m as i32 * (a.bsums[2 * j] as i32 + a.bsums[2 * j + 1] as i32);
    }
    (pairs, mins, lanes)
}

/// Q5_K (176-byte super-blocks: f16 d, f16 dmin, 12 scale bytes, 32 high-bit bytes, 128 nibble
/// bytes): w = d·sc·q − dmin·m per 32-weight sub-block, summed in ggml's order for one token
/// and batches under 8 rows (x86 `ggml_vec_dot_q5_K_q8_K`; Q5_K is not repacked on x86): eight
/// integer lanes per super-block, one fused multiply-add per lane by `d_y · d`; the mins as one
/// chain of `fma(−d_y · dmin, Σ m·Σy, ·)`; then `hsum_float_8` plus that chain.
pub fn dot_q5_k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (b, a) in w.chunks_exact(176).zip(a) {
        let (_, mins, lanes) = k45_sums::<true>(b, a);
        let d = a.d * f16_at(b);
        summs = (-a.d * f16_at(&b[2..])).mul_add(mins.iter().sum::<i32>() as f32, summs);
        for (s, &lane) in acc.iter_mut().zip(&lanes) {
            *s = d.mul_add(lane as f32, *s);
        }
    }
    ggml_hsum(&acc) + summs
}

/// Q5_K in the order of llama.cpp's tiled k-quant matmul (`ggml-cpu/tiled`), which its x86
/// build takes for batches of 8 rows or more: [`k45_tiled`].
pub fn dot_q5_k_tiled(w: &[u8], a: &[BlockQ8K]) -> f32 {
    k45_tiled::<true>(w, a)
}

/// Q4_K (`FIVE` false) or Q5_K in the tiled matmul's order, which is the same for both: per
/// super-block `r = S·d − dmin·M` (S = Σ sc·q·y, M = Σ m·Σy, exact; the subtraction fused),
/// then `acc = fma(r, d_y, acc)` (GCC contracts the kernel's multiply and add: `vfmadd213ps`
/// in its built library).
fn k45_tiled<const FIVE: bool>(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = 0f32;
    for (b, a) in w.chunks_exact(if FIVE { 176 } else { 144 }).zip(a) {
        let (pairs, mins, _) = k45_sums::<FIVE>(b, a);
        let s = pairs.iter().sum::<i32>() as f32 * f16_at(b);
        let r = (-f16_at(&b[2..])).mul_add(mins.iter().sum::<i32>() as f32, s);
        acc = r.mul_add(a.d, acc);
    }
    acc
}

/// Q4_K (144-byte super-blocks: f16 d, f16 dmin, 12 scale bytes, 128 nibble bytes): w =
/// d·sc·q − dmin·m per 32-weight sub-block. llama.cpp's x86 build repacks Q4_K matrices whose
/// row count is a multiple of 8 (`block_q4_Kx8`); this is its gemv's order (`ggml_gemv_q4_K_8x8
/// _q8_K`, one token and the rows a batch leaves over after its groups of 4): per super-block
/// the exact S = Σ sc·q·y and M = Σ m·Σy, `acc = fma(S, d·d_y, acc)`, `mins = fma(M, dmin·d_y,
/// mins)`, then `acc − mins`.
pub fn dot_q4_k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let (mut acc, mut mins) = (0f32, 0f32);
    for (b, a) in w.chunks_exact(144).zip(a) {
        let (pairs, m, _) = k45_sums::<false>(b, a);
        acc = (pairs.iter().sum::<i32>() as f32).mul_add(f16_at(b) * a.d, acc);
        mins = (m.iter().sum::<i32>() as f32).mul_add(f16_at(&b[2..]) * a.d, mins);
    }
    acc - mins
}

/// Q4_K in the order of the repacked form's gemm (`ggml_gemm_q4_K_8x8_q8_K`), which takes a
/// batch's rows in groups of 4 (their activations quantized by [`BlockQ8K::quantize_x4`]): as
/// [`dot_q4_k`], with one fused multiply-add per 64-weight pair of sub-blocks instead of per
/// super-block.
pub fn dot_q4_k_x4(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let (mut acc, mut mins) = (0f32, 0f32);
    for (b, a) in w.chunks_exact(144).zip(a) {
        let (pairs, m, _) = k45_sums::<false>(b, a);
        let (d, dmin) = (f16_at(b) * a.d, f16_at(&b[2..]) * a.d);
        for k in 0..4 {
            acc = (pairs[k] as f32).mul_add(d, acc);
            mins = (m[k] as f32).mul_add(dmin, mins);
        }
    }
    acc - mins
}

/// Q4_K as llama.cpp's x86 build sums a matrix it does not repack (row count not a multiple
/// of 8), for one token and batches under 8 rows (`ggml_vec_dot_q4_K_q8_K`): eight integer
/// lanes per super-block, one fused multiply-add per lane by `d_y · d`; the mins in four lanes,
/// lane k taking `fma(−d_y · dmin, Σ m·Σy over sub-blocks 2k and 2k + 1, ·)`; then
/// `hsum_float_8` plus `(m0 + m2) + (m1 + m3)`.
pub fn dot_q4_k_vec(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let (mut acc, mut mins) = ([0f32; 8], [0f32; 4]);
    for (b, a) in w.chunks_exact(144).zip(a) {
        let (_, m, lanes) = k45_sums::<false>(b, a);
        let (d, dmin) = (a.d * f16_at(b), -a.d * f16_at(&b[2..]));
        for (s, &lane) in acc.iter_mut().zip(&lanes) {
            *s = d.mul_add(lane as f32, *s);
        }
        for (s, &m) in mins.iter_mut().zip(&m) {
            *s = dmin.mul_add(m as f32, *s);
        }
    }
    ggml_hsum(&acc) + ((mins[0] + mins[2]) + (mins[1] + mins[3]))
}

/// Q4_K in the order of llama.cpp's tiled matmul (batches of 8 rows or more of a matrix it
/// does not repack): [`k45_tiled`].
pub fn dot_q4_k_tiled(w: &[u8], a: &[BlockQ8K]) -> f32 {
    k45_tiled::<false>(w, a)
}

/// Per super-block of Q6_K: ggml's eight integer lanes of Σ sc·(q − 32)·y (lane j over the
/// elements whose index mod 32 is in 4j..4j+4, minus `32·sc·Σy` of sub-blocks 2j and 2j + 1).
fn q6_k_lanes(b: &[u8], a: &BlockQ8K) -> [i32; 8] {
    let (ql, qh) = (&b[..128], &b[128..192]);
    let sc = |s: usize| b[192 + s] as i8 as i32;
    let mut lanes = [0i32; 8];
    // Weight 128h + 32k + l takes nibble k/2 of ql[64h + 32(k%2) + l] and 2 bits (2k) of
    // qh[32h + l]; its scale is scales[8h + 2k + l/16].
    for h in 0..2 {
        for k in 0..4 {
            for l in 0..32 {
                let low = (ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0x0f;
                let high = (qh[32 * h + l] >> (2 * k)) & 3;
                let q = (low | (high << 4)) as i32;
                lanes[l / 4] += sc(8 * h + 2 * k + l / 16) * q * a.qs[128 * h + 32 * k + l] as i32;
            }
        }
    }
    for (j, lane) in lanes.iter_mut().enumerate() {
        *lane -=
            32 * (sc(2 * j) * a.bsums[2 * j] as i32 + sc(2 * j + 1) * a.bsums[2 * j + 1] as i32);
    }
    lanes
}

/// Q6_K (210-byte super-blocks: 128 low-nibble bytes, 64 high-bit bytes, 16 int8 scales, f16
/// d): w = d·sc·(q − 32) per 16-weight sub-block, summed in ggml's order for one token and
/// batches under 8 rows (x86 `ggml_vec_dot_q6_K_q8_K`; Q6_K is not repacked on x86): the
/// [`q6_k_lanes`], one fused multiply-add per lane by `d_y · d`, then `hsum_float_8`.
pub fn dot_q6_k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = [0f32; 8];
    for (b, a) in w.chunks_exact(210).zip(a) {
        let lanes = q6_k_lanes(b, a);
        let d = a.d * f16_at(&b[208..]);
        for (s, &lane) in acc.iter_mut().zip(&lanes) {
            *s = d.mul_add(lane as f32, *s);
        }
    }
    ggml_hsum(&acc)
}

/// Q6_K in the order of llama.cpp's tiled k-quant matmul (batches of 8 rows or more): per
/// super-block `r = S·d` (S the exact sum of the lanes), then `acc = fma(r, d_y, acc)`.
pub fn dot_q6_k_tiled(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = 0f32;
    for (b, a) in w.chunks_exact(210).zip(a) {
        let r = q6_k_lanes(b, a).iter().sum::<i32>() as f32 * f16_at(&b[208..]);
        acc = r.mul_add(a.d, acc);
    }
    acc
}

/// ggml's eight integer lanes of one super-block's Σ w·y, from each weight's integer factor
/// (`w[e]` = sc·q, exact): lane l over the elements whose index mod 32 is in 4l..4l+4 (the
/// `vec_dot` kernels' `maddubs` + `madd` lanes, summed over the eight 32-weight chunks).
fn lanes_256(w: &[i32; 256], y: &[i8; 256]) -> [i32; 8] {
    let mut lanes = [0i32; 8];
    for (e, (&w, &y)) in w.iter().zip(y).enumerate() {
        lanes[e % 32 / 4] += w * y as i32;
    }
    lanes
}

/// A super-block's integer factors sc·(u − bias) per weight ([`crate::kdecode`]), and its
/// (16,) group mins.
fn k_codes(ty: WeightType, b: &[u8]) -> ([i32; 256], [i32; 16]) {
    let k = crate::kdecode::decode(ty, b);
    let bias = crate::kdecode::bias(ty);
    let w = std::array::from_fn(|e| k.sc[e / 16] as i32 * (k.u[e] as i32 - bias));
    (w, k.m.map(|m| m as i32))
}

/// Q2_K's factors: 16-weight sub-blocks of 2-bit codes with 4-bit scales and mins.
fn q2_k_codes(b: &[u8]) -> ([i32; 256], [i32; 16]) {
    k_codes(WeightType::Q2K, b)
}

/// Q3_K's factors: 3-bit codes − 4, 16-weight sub-blocks with 6-bit scales − 32.
fn q3_k_codes(b: &[u8]) -> [i32; 256] {
    k_codes(WeightType::Q3K, b).0
}

/// IQ4_XS's factors: IQ4_NL's table values, 32-weight sub-blocks with 6-bit scales − 32.
fn iq4_xs_codes(b: &[u8]) -> [i32; 256] {
    k_codes(WeightType::IQ4XS, b).0
}

/// Σ m·Σy over Q2_K's sub-blocks in ggml's eight lanes: lane l takes sub-blocks 2l and
/// 2l + 1 (`madd` of the 16 mins against the 16 block sums).
fn q2_k_min_lanes(m: &[i32; 16], a: &BlockQ8K) -> [i32; 8] {
    std::array::from_fn(|l| {
        m[2 * l] * a.bsums[2 * l] as i32 + m[2 * l + 1] * a.bsums[2 * l + 1] as i32
    })
}

/// Q2_K (w = d·sc·q − dmin·m per 16-weight sub-block) as ggml's `vec_dot_q2_K_q8_K` sums it
/// (one token, batches under 8 rows): per super-block each lane first takes its mins,
/// `fma(−d_y · dmin, Σ m·Σy, ·)`, then its [`lanes_256`] sum, `fma(d_y · d, ·, ·)`; then
/// `hsum_float_8`.
pub fn dot_q2_k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = [0f32; 8];
    for (b, a) in w.chunks_exact(84).zip(a) {
        let (codes, m) = q2_k_codes(b);
        let (d, dmin) = (a.d * f16_at(&b[80..]), -a.d * f16_at(&b[82..]));
        let (lanes, mins) = (lanes_256(&codes, &a.qs), q2_k_min_lanes(&m, a));
        for ((s, &lane), &min) in acc.iter_mut().zip(&lanes).zip(&mins) {
            *s = d.mul_add(lane as f32, dmin.mul_add(min as f32, *s));
        }
    }
    ggml_hsum(&acc)
}

/// Q2_K in the tiled matmul's order (batches of 8 rows or more): `r = S·d − dmin·M` (fused),
/// `acc = fma(r, d_y, acc)`, as [`k45_tiled`].
pub fn dot_q2_k_tiled(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = 0f32;
    for (b, a) in w.chunks_exact(84).zip(a) {
        let (codes, m) = q2_k_codes(b);
        let s = lanes_256(&codes, &a.qs).iter().sum::<i32>() as f32 * f16_at(&b[80..]);
        let msum: i32 = q2_k_min_lanes(&m, a).iter().sum();
        acc = (-f16_at(&b[82..]))
            .mul_add(msum as f32, s)
            .mul_add(a.d, acc);
    }
    acc
}

/// Q2_K's (S, M) per 128-weight half of a super-block: S = Σ sc·q·y, M = Σ m·Σy, exact.
fn q2_k_halves(b: &[u8], a: &BlockQ8K) -> ([i32; 2], [i32; 2]) {
    let (codes, m) = q2_k_codes(b);
    let s = |h: usize| {
        (128 * h..128 * h + 128)
            .map(|e| codes[e] * a.qs[e] as i32)
            .sum()
    };
    let mins = |h: usize| (8 * h..8 * h + 8).map(|i| m[i] * a.bsums[i] as i32).sum();
    ([s(0), s(1)], [mins(0), mins(1)])
}

/// Q2_K as llama.cpp's AVX-512 build sums a matrix it repacks (row count a multiple of 8,
/// `block_q2_Kx8`) for one token and the rows a batch leaves over after its groups of 4
/// (`ggml_gemv_q2_K_8x8_q8_K`): per super-block `acc = fma(S, d·d_y, acc)` and `mins =
/// fma(M, dmin·d_y, mins)`, then `acc − mins`.
pub fn dot_q2_k_gemv(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let (mut acc, mut mins) = (0f32, 0f32);
    for (b, a) in w.chunks_exact(84).zip(a) {
        let (s, m) = q2_k_halves(b, a);
        acc = ((s[0] + s[1]) as f32).mul_add(f16_at(&b[80..]) * a.d, acc);
        mins = ((m[0] + m[1]) as f32).mul_add(f16_at(&b[82..]) * a.d, mins);
    }
    acc - mins
}

/// Q2_K in the repacked form's gemm order (`ggml_gemm_q2_K_8x8_q8_K`, a batch's rows in
/// groups of 4, their activations from [`BlockQ8K::quantize_x4`]): as [`dot_q2_k_gemv`] with
/// one fused multiply-add per 128-weight half instead of per super-block.
pub fn dot_q2_k_gemm(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let (mut acc, mut mins) = (0f32, 0f32);
    for (b, a) in w.chunks_exact(84).zip(a) {
        let (s, m) = q2_k_halves(b, a);
        let (d, dmin) = (f16_at(&b[80..]) * a.d, f16_at(&b[82..]) * a.d);
        for h in 0..2 {
            acc = (s[h] as f32).mul_add(d, acc);
            mins = (m[h] as f32).mul_add(dmin, mins);
        }
    }
    acc - mins
}

/// A format without mins whose `vec_dot` is eight lanes by `d_y · d` (Q3_K, IQ4_XS): `codes`
/// gives a super-block's integer factors and `d` its scale.
fn lanes_dot(
    w: &[u8],
    a: &[BlockQ8K],
    bytes: usize,
    codes: fn(&[u8]) -> [i32; 256],
    d: usize,
) -> f32 {
    let mut acc = [0f32; 8];
    for (b, a) in w.chunks_exact(bytes).zip(a) {
        let lanes = lanes_256(&codes(b), &a.qs);
        let d = a.d * f16_at(&b[d..]);
        for (s, &lane) in acc.iter_mut().zip(&lanes) {
            *s = d.mul_add(lane as f32, *s);
        }
    }
    ggml_hsum(&acc)
}

/// The same formats in the tiled matmul's order: `r = S·d`, `acc = fma(r, d_y, acc)`.
fn lanes_tiled(
    w: &[u8],
    a: &[BlockQ8K],
    bytes: usize,
    codes: fn(&[u8]) -> [i32; 256],
    d: usize,
) -> f32 {
    let mut acc = 0f32;
    for (b, a) in w.chunks_exact(bytes).zip(a) {
        let s: i32 = lanes_256(&codes(b), &a.qs).iter().sum();
        acc = (s as f32 * f16_at(&b[d..])).mul_add(a.d, acc);
    }
    acc
}

/// Q3_K (w = d·sc·q, q in −4..3, per 16-weight sub-block) as ggml's `vec_dot_q3_K_q8_K` sums it
/// (one token, batches under 8 rows): [`lanes_256`], one FMA per lane by `d_y · d`,
/// `hsum_float_8`.
pub fn dot_q3_k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    lanes_dot(w, a, 110, q3_k_codes, 108)
}

/// Q3_K in the tiled matmul's order (batches of 8 rows or more).
pub fn dot_q3_k_tiled(w: &[u8], a: &[BlockQ8K]) -> f32 {
    lanes_tiled(w, a, 110, q3_k_codes, 108)
}

/// IQ4_XS (w = d·ls·K[q] per 32-weight sub-block) as ggml's `vec_dot_iq4_xs_q8_K` sums it (one
/// token, batches under 8 rows): as [`dot_q3_k`].
pub fn dot_iq4_xs(w: &[u8], a: &[BlockQ8K]) -> f32 {
    lanes_dot(w, a, 136, iq4_xs_codes, 0)
}

/// IQ4_XS in the tiled matmul's order (batches of 8 rows or more).
pub fn dot_iq4_xs_tiled(w: &[u8], a: &[BlockQ8K]) -> f32 {
    lanes_tiled(w, a, 136, iq4_xs_codes, 0)
}

/// Tile forms of the references: one weight row against several activation rows.
pub mod tile {
    use super::*;

    macro_rules! tiles {
        ($($tile:ident = $dot:ident: $act:ty),* $(,)?) => {$(
            #[doc = concat!("`", stringify!($dot), "` for each weight row (of `row_bytes`) and")]
            /// activation row: `out` is (weight rows, activation rows).
            pub fn $tile(w: &[u8], row_bytes: usize, a: &[&[$act]], out: &mut [f32]) {
                for (wr, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(a.len())) {
                    for (o, row) in o.iter_mut().zip(a) {
                        *o = $dot(wr, row);
                    }
                }
            }
        )*};
    }

    tiles!(
        f32 = dot_f32: f32,
        f32_chain = dot_f32_chain: f32,
        f16 = dot_f16: f32,
        q4_0 = dot_q4_0: BlockQ8x32,
        q4_0_lanes = dot_q4_0_lanes: BlockQ8x32,
        q4_1 = dot_q4_1: BlockQ8x32,
        q5_0 = dot_q5_0: BlockQ8x32,
        q5_1 = dot_q5_1: BlockQ8x32,
        q8_0 = dot_q8_0: BlockQ8x32,
        iq4_nl = dot_iq4_nl: BlockQ8x32,
        iq4_nl_lanes = dot_iq4_nl_lanes: BlockQ8x32,
        iq4_nl_vec = dot_iq4_nl_vec: BlockQ8x32,
        q4_k = dot_q4_k: BlockQ8K,
        q4_k_x4 = dot_q4_k_x4: BlockQ8K,
        q4_k_vec = dot_q4_k_vec: BlockQ8K,
        q4_k_tiled = dot_q4_k_tiled: BlockQ8K,
        q5_k = dot_q5_k: BlockQ8K,
        q5_k_tiled = dot_q5_k_tiled: BlockQ8K,
        q6_k = dot_q6_k: BlockQ8K,
        q6_k_tiled = dot_q6_k_tiled: BlockQ8K,
        q2_k = dot_q2_k: BlockQ8K,
        q2_k_tiled = dot_q2_k_tiled: BlockQ8K,
        q2_k_gemv = dot_q2_k_gemv: BlockQ8K,
        q2_k_gemm = dot_q2_k_gemm: BlockQ8K,
        q3_k = dot_q3_k: BlockQ8K,
        q3_k_tiled = dot_q3_k_tiled: BlockQ8K,
        iq4_xs = dot_iq4_xs: BlockQ8K,
        iq4_xs_tiled = dot_iq4_xs_tiled: BlockQ8K,
    );
}
