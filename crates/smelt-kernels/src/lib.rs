//! Quantized matrix products for smelt's LLM runtime.
//!
//! Weights stay in their ggml block bytes; activations are quantized to 8-bit blocks
//! ([`act`]) so each product is an integer dot product per block, scaled once per block — the
//! scheme llama.cpp uses. Every format has a plain reference ([`reference`]) and a SIMD variant
//! picked at run time from the CPU's features; `SMELT_KERNEL=reference` forces the reference.
//! One harness (`tests/harness.rs`) checks each variant against its reference on fresh random
//! inputs.

pub mod act;
pub mod attention;
#[cfg(target_arch = "x86_64")]
mod avx2;
pub mod gelu;
pub mod gpu;
pub mod int8;
#[cfg(target_arch = "x86_64")]
mod interleaved;
#[cfg(target_arch = "x86_64")]
mod interleaved_k;
mod kdecode;
mod matmul;
pub mod reference;
pub mod silu;
pub mod softmax;
pub mod w8a8;

use std::sync::OnceLock;

use smelt_gguf::GgmlType;

pub use act::{ActKinds, Activations, BlockQ8K, BlockQ8x32, KBatch, PairedQ8x32};
pub use matmul::{GEMM_MIN_TOKENS, QMatrix, WeightBytes, matmul_each, matmul_multi};

/// Weight formats that have a direct kernel (others are dequantized to f32 at load).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightType {
    /// IEEE single.
    F32,
    /// IEEE half.
    F16,
    /// 4-bit, 32-blocks, symmetric.
    Q4_0,
    /// 4-bit, 32-blocks, with offset.
    Q4_1,
    /// 5-bit, 32-blocks, symmetric.
    Q5_0,
    /// 5-bit, 32-blocks, with offset.
    Q5_1,
    /// 8-bit, 32-blocks.
    Q8_0,
    /// 4-bit k-quant, 256-blocks.
    Q4K,
    /// 5-bit k-quant, 256-blocks.
    Q5K,
    /// 6-bit k-quant, 256-blocks.
    Q6K,
    /// 2-bit k-quant with mins, 256-blocks of 16-weight sub-blocks.
    Q2K,
    /// 3-bit k-quant, 256-blocks of 16-weight sub-blocks.
    Q3K,
    /// 4-bit non-linear (IQ4_NL's table), 256-blocks of 32-weight sub-blocks.
    IQ4XS,
    /// 4-bit non-linear table, 32-blocks.
    IQ4NL,
}

/// Every weight type with a kernel.
pub const WEIGHT_TYPES: [WeightType; 14] = [
    WeightType::F32,
    WeightType::F16,
    WeightType::Q4_0,
    WeightType::Q4_1,
    WeightType::Q5_0,
    WeightType::Q5_1,
    WeightType::Q8_0,
    WeightType::Q4K,
    WeightType::Q5K,
    WeightType::Q6K,
    WeightType::Q2K,
    WeightType::Q3K,
    WeightType::IQ4XS,
    WeightType::IQ4NL,
];

impl WeightType {
    /// The kernel format for a ggml type, if there is one.
    pub fn from_ggml(t: GgmlType) -> Option<Self> {
        Some(match t {
            GgmlType::F32 => Self::F32,
            GgmlType::F16 => Self::F16,
            GgmlType::Q4_0 => Self::Q4_0,
            GgmlType::Q4_1 => Self::Q4_1,
            GgmlType::Q5_0 => Self::Q5_0,
            GgmlType::Q5_1 => Self::Q5_1,
            GgmlType::Q8_0 => Self::Q8_0,
            GgmlType::Q4_K => Self::Q4K,
            GgmlType::Q5_K => Self::Q5K,
            GgmlType::Q6_K => Self::Q6K,
            GgmlType::Q2_K => Self::Q2K,
            GgmlType::Q3_K => Self::Q3K,
            GgmlType::IQ4_XS => Self::IQ4XS,
            GgmlType::IQ4_NL => Self::IQ4NL,
            _ => return None,
        })
    }

    /// The ggml type.
    pub fn ggml(self) -> GgmlType {
        match self {
            Self::F32 => GgmlType::F32,
            Self::F16 => GgmlType::F16,
            Self::Q4_0 => GgmlType::Q4_0,
            Self::Q4_1 => GgmlType::Q4_1,
            Self::Q5_0 => GgmlType::Q5_0,
            Self::Q5_1 => GgmlType::Q5_1,
            Self::Q8_0 => GgmlType::Q8_0,
            Self::Q4K => GgmlType::Q4_K,
            Self::Q5K => GgmlType::Q5_K,
            Self::Q6K => GgmlType::Q6_K,
            Self::Q2K => GgmlType::Q2_K,
            Self::Q3K => GgmlType::Q3_K,
            Self::IQ4XS => GgmlType::IQ4_XS,
            Self::IQ4NL => GgmlType::IQ4_NL,
        }
    }

    /// (elements, bytes) of one block.
    pub fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q8_0 => (32, 34),
            Self::Q4K => (256, 144),
            Self::Q5K => (256, 176),
            Self::Q6K => (256, 210),
            Self::Q2K => (256, 84),
            Self::Q3K => (256, 110),
            Self::IQ4XS => (256, 136),
            Self::IQ4NL => (32, 18),
        }
    }

    /// The activation blocks this format's kernels read (for Q4_K and Q2_K, those of both layouts:
    /// [`QMatrix::act_kinds`] tells one matrix's).
    pub fn act_kinds(self) -> ActKinds {
        match self {
            Self::F32 | Self::F16 => ActKinds::default(),
            Self::Q4K | Self::Q2K => ActKinds {
                q8k: true,
                q8k_x4: true,
                ..ActKinds::default()
            },
            Self::Q5K | Self::Q6K | Self::Q3K | Self::IQ4XS => ActKinds {
                q8k: true,
                ..ActKinds::default()
            },
            Self::IQ4NL => ActKinds {
                q8: true,
                ..ActKinds::default()
            },
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 if ggml_sums() => {
                ActKinds {
                    q8: true,
                    ..ActKinds::default()
                }
            }
            _ => ActKinds {
                q8: true,
                q8_paired: true,
                ..ActKinds::default()
            },
        }
    }
}

/// Which implementation the kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Plain Rust.
    Reference,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX2 with AVX-VNNI dot products (`vpdpbusd`, VEX) for the 32-block formats.
    AvxVnni,
    /// AVX2 with AVX-512 VNNI dot products (`vpdpbusd`, EVEX, 256-bit) for the 32-block formats.
    Avx512Vnni,
}

impl Variant {
    /// Short name, as `SMELT_KERNEL` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Reference => "reference",
            Self::Avx2 => "avx2",
            Self::AvxVnni => "avx-vnni",
            Self::Avx512Vnni => "avx512-vnni",
        }
    }
}

/// The variants this CPU can run, best last (detected once).
pub fn available_variants() -> &'static [Variant] {
    static V: OnceLock<Vec<Variant>> = OnceLock::new();
    V.get_or_init(|| {
        let mut v = vec![Variant::Reference];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            v.push(Variant::Avx2);
            if std::arch::is_x86_feature_detected!("avxvnni") {
                v.push(Variant::AvxVnni);
            }
            // Listed last (preferred) when present: the same instructions EVEX-encoded, with 32
            // vector registers instead of 16, so a tile of 8 tokens keeps its 16 accumulators
            // in registers. Measured side by side on SmolLM2 Q4_1 (2 threads): pp8 281 vs 200
            // and 261 vs 193 tokens/s, pp512 199 vs 183 and 186 vs 170; generation equal
            // within noise.
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                v.push(Variant::Avx512Vnni);
            }
        }
        v
    })
}

/// The variant chosen for this process: the best available, or `SMELT_KERNEL` if set to one.
pub fn variant() -> Variant {
    static V: OnceLock<Variant> = OnceLock::new();
    *V.get_or_init(|| {
        let avail = available_variants();
        if let Ok(want) = std::env::var("SMELT_KERNEL")
            && let Some(v) = avail.iter().find(|v| v.name() == want)
        {
            return *v;
        }
        *avail.last().expect("reference is always available")
    })
}

/// Whether 8-token tiles of 32-blocks use the paired AVX-512 VNNI kernels (and so whether
/// [`Activations`] packs [`PairedQ8x32`]): when that variant is the one in use, unless
/// `SMELT_NO_PAIRED_TILES` is set (for side-by-side benchmarks; results are identical).
pub fn paired_tiles() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        variant() == Variant::Avx512Vnni && std::env::var_os("SMELT_NO_PAIRED_TILES").is_none()
    })
}

/// Whether the 32-block formats' products sum in ggml's order (the default), so that logits
/// equal llama.cpp's bit for bit: eight lane sums per output for Q8_0, Q5_0, Q4_1 and Q5_1
/// (`reference::dot_q8_0`), one chain for Q4_0 (`reference::dot_q4_0`). The eight lanes cost
/// compute where many tokens share the weights (prompts, batched decode): setting
/// `SMELT_FAST_SUMS` (to any value) switches to smelt's own order (one sum per block, 8-token
/// tiles, the paired kernels), whose results differ from ggml's in float rounding only.
pub fn ggml_sums() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("SMELT_FAST_SUMS").is_none())
}

/// Whether llama.cpp's x86 AVX-512 build repacks a `ty` matrix of `rows` rows (8 rows
/// interleaved, `block_q4_0x8` / `block_iq4_nlx8` / `block_q4_Kx8` / `block_q2_Kx8`), as it
/// does Q4_0, IQ4_NL, Q4_K and Q2_K matrices whose row count is a multiple of 8 (Q2_K only
/// where AVX-512 is compiled in,
/// the build smelt follows on every CPU). A repacked matrix sums its products in another order
/// than one left as written, so smelt picks a matrix's kernels by this to compute llama.cpp's
/// floats.
pub fn ggml_repacks(ty: WeightType, rows: usize) -> bool {
    use WeightType as W;
    matches!(ty, W::Q4_0 | W::Q4K | W::Q2K | W::IQ4NL) && rows.is_multiple_of(8)
}

/// Whether matrices whose row count is a multiple of 16 get 16-row interleaved copies for the
/// AVX-512 VNNI kernels when that variant is in use: the 32-block formats for every batch
/// (`interleaved.rs`), the k-quants for the rows of a batch (`interleaved_k.rs`).
/// `SMELT_NO_INTERLEAVE` switches them off for side-by-side benchmarks; in ggml's order the
/// results are the same bits either way.
pub fn interleaved_rows() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("SMELT_NO_INTERLEAVE").is_none())
}

/// Most activation rows one kernel call takes (a tile of tokens sharing one unpacked weight row).
pub const MAX_TILE_TOKENS: usize = 8;

/// The token-tile widths the kernels take (a batch is cut into 8s, then a 4, then the rest).
pub const TILE_WIDTHS: [usize; 5] = [1, 2, 3, 4, 8];

/// The widest allowed tile for `remaining` tokens.
pub fn tile_width(remaining: usize) -> usize {
    match remaining {
        0..=4 => remaining,
        5..=7 => 4,
        _ => 8,
    }
}

/// Dot products of a run of weight rows with 1..=[`MAX_TILE_TOKENS`] activation rows, for one
/// format and variant: `f(w_rows, row_bytes, acts, out)` writes `out[r · n + i] = w_r · acts[i]`
/// (n = `acts.len()`). Taking many rows per call keeps the per-call set-up off the hot path.
#[derive(Clone, Copy)]
pub enum DotFn {
    /// F16 weights, and F32 ones of a row count that is not whole 4s (`ggml_vec_dot_f32` for
    /// every token), × f32 activations.
    F32(RowsKernel<f32>),
    /// F32 weights × f32 activations: the kernel for a token alone (`ggml_vec_dot_f32`'s
    /// order), the one for rows of a sequence of 2 or more (llamafile's tinyBLAS, which takes
    /// matrices of whole 4s of rows).
    F32Split(RowsKernel<f32>, RowsKernel<f32>),
    /// 32-block weights × [`BlockQ8x32`] activations; with a kernel for pre-paired 8-token
    /// tiles where the variant has one.
    Q8(RowsKernel<BlockQ8x32>, Option<PairedKernel>),
    /// 256-block weights × [`BlockQ8K`] activations: the kernel for rows in llama.cpp's
    /// one-token order, the one for rows in its batch order, and the rule that tells a row's
    /// order ([`Activations::k_batch`]).
    Q8K(RowsKernel<BlockQ8K>, RowsKernel<BlockQ8K>, KBatch),
    /// 32-block weights whose order depends on the batch: the kernel for a token alone, the
    /// one for rows of a sequence of 2 or more ([`KBatch::Several`]); IQ4_NL not repacked.
    Q8Split(RowsKernel<BlockQ8x32>, RowsKernel<BlockQ8x32>),
}

/// `f(w_rows, row_bytes, activation rows, out)`: see [`DotFn`].
pub type RowsKernel<A> = unsafe fn(&[u8], usize, &[&[A]], &mut [f32]);

/// `f(w_rows, row_bytes, 8 tokens' paired blocks, out)`, out (rows, 8).
pub type PairedKernel = unsafe fn(&[u8], usize, &[PairedQ8x32], &mut [f32]);

/// `paired` unless the formats that have one only with fast sums sum in ggml's order.
#[cfg(target_arch = "x86_64")]
fn fast(paired: PairedKernel) -> Option<PairedKernel> {
    (!ggml_sums()).then_some(paired)
}

impl DotFn {
    /// The kernel for a `ty` matrix of `rows` rows in `variant` (the row count decides
    /// llama.cpp's order for Q4_0, Q4_K, Q2_K and IQ4_NL: [`ggml_repacks`]); the reference when
    /// this CPU cannot run `variant`.
    pub fn new(ty: WeightType, variant: Variant, rows: usize) -> Self {
        use WeightType as W;
        if matches!(ty, W::Q4_0 | W::Q4K | W::IQ4NL) && !ggml_repacks(ty, rows) {
            return Self::written_as_is(ty, variant);
        }
        if ty == W::Q2K && !ggml_repacks(ty, rows) {
            #[cfg(target_arch = "x86_64")]
            if variant == Variant::Avx512Vnni && available_variants().contains(&variant) {
                return Self::Q8K(avx2::dot_q2_k, avx2::dot_q2_k_tiled_vnni512, KBatch::Tiled8);
            }
            #[cfg(target_arch = "x86_64")]
            if variant != Variant::Reference && available_variants().contains(&Variant::Avx2) {
                return Self::Q8K(avx2::dot_q2_k, avx2::dot_q2_k_tiled, KBatch::Tiled8);
            }
            return Self::Q8K(
                reference::tile::q2_k,
                reference::tile::q2_k_tiled,
                KBatch::Tiled8,
            );
        }
        #[cfg(target_arch = "x86_64")]
        if variant == Variant::AvxVnni && available_variants().contains(&Variant::AvxVnni) {
            return match ty {
                W::Q4_0 => Self::Q8(avx2::dot_q4_0_vnni, None),
                W::IQ4NL => Self::Q8(avx2::dot_iq4_nl_vnni, None),
                W::Q4_1 => Self::Q8(avx2::dot_q4_1_vnni, None),
                W::Q5_0 => Self::Q8(avx2::dot_q5_0_vnni, None),
                W::Q5_1 => Self::Q8(avx2::dot_q5_1_vnni, None),
                W::Q8_0 => Self::Q8(avx2::dot_q8_0_vnni, None),
                _ => Self::new(ty, Variant::Avx2, rows),
            };
        }
        #[cfg(target_arch = "x86_64")]
        if variant == Variant::Avx512Vnni && available_variants().contains(&Variant::Avx512Vnni) {
            return match ty {
                // In ggml's order the 32-block formats have no paired kernel ([`ggml_sums`]).
                W::Q4_0 => Self::Q8(avx2::dot_q4_0_vnni512, fast(avx2::dot_q4_0_paired)),
                W::IQ4NL => Self::Q8(avx2::dot_iq4_nl_vnni512, None),
                W::Q4K => Self::Q8K(avx2::dot_q4_k_vnni512, avx2::dot_q4_k_x4, KBatch::Groups4),
                W::Q5K => Self::Q8K(
                    avx2::dot_q5_k_vnni512,
                    avx2::dot_q5_k_tiled_vnni512,
                    KBatch::Tiled8,
                ),
                W::Q6K => Self::Q8K(
                    avx2::dot_q6_k_vnni512,
                    avx2::dot_q6_k_tiled_vnni512,
                    KBatch::Tiled8,
                ),
                W::Q3K => Self::Q8K(
                    avx2::dot_q3_k_vnni512,
                    avx2::dot_q3_k_tiled_vnni512,
                    KBatch::Tiled8,
                ),
                W::IQ4XS => Self::Q8K(
                    avx2::dot_iq4_xs_vnni512,
                    avx2::dot_iq4_xs_tiled_vnni512,
                    KBatch::Tiled8,
                ),
                W::Q4_1 => Self::Q8(avx2::dot_q4_1_vnni512, fast(avx2::dot_q4_1_paired)),
                W::Q5_0 => Self::Q8(avx2::dot_q5_0_vnni512, fast(avx2::dot_q5_0_paired)),
                W::Q5_1 => Self::Q8(avx2::dot_q5_1_vnni512, fast(avx2::dot_q5_1_paired)),
                W::Q8_0 => Self::Q8(avx2::dot_q8_0_vnni512, fast(avx2::dot_q8_0_paired)),
                _ => Self::new(ty, Variant::Avx2, rows),
            };
        }
        #[cfg(target_arch = "x86_64")]
        if variant == Variant::Avx2 && available_variants().contains(&Variant::Avx2) {
            return match ty {
                // llamafile's sgemm takes F32 rows only in whole 4s.
                W::F32 if rows.is_multiple_of(4) => {
                    Self::F32Split(avx2::dot_f32, avx2::dot_f32_chain)
                }
                W::F32 => Self::F32(avx2::dot_f32),
                W::F16 => Self::F32(avx2::dot_f16),
                W::Q4_0 => Self::Q8(avx2::dot_q4_0, None),
                W::IQ4NL => Self::Q8(avx2::dot_iq4_nl, None),
                W::Q4_1 => Self::Q8(avx2::dot_q4_1, None),
                W::Q5_0 => Self::Q8(avx2::dot_q5_0, None),
                W::Q5_1 => Self::Q8(avx2::dot_q5_1, None),
                W::Q8_0 => Self::Q8(avx2::dot_q8_0, None),
                W::Q4K => Self::Q8K(avx2::dot_q4_k, avx2::dot_q4_k_x4, KBatch::Groups4),
                W::Q5K => Self::Q8K(avx2::dot_q5_k, avx2::dot_q5_k_tiled, KBatch::Tiled8),
                W::Q6K => Self::Q8K(avx2::dot_q6_k, avx2::dot_q6_k_tiled, KBatch::Tiled8),
                W::Q2K => Self::Q8K(avx2::dot_q2_k_gemv, avx2::dot_q2_k_gemm, KBatch::Groups4),
                W::Q3K => Self::Q8K(avx2::dot_q3_k, avx2::dot_q3_k_tiled, KBatch::Tiled8),
                W::IQ4XS => Self::Q8K(avx2::dot_iq4_xs, avx2::dot_iq4_xs_tiled, KBatch::Tiled8),
            };
        }
        let _ = variant;
        use reference::tile;
        match ty {
            W::F32 if rows.is_multiple_of(4) => Self::F32Split(tile::f32, tile::f32_chain),
            W::F32 => Self::F32(tile::f32),
            W::F16 => Self::F32(tile::f16),
            W::Q4_0 => Self::Q8(tile::q4_0, None),
            W::IQ4NL => Self::Q8(tile::iq4_nl, None),
            W::Q4_1 => Self::Q8(tile::q4_1, None),
            W::Q5_0 => Self::Q8(tile::q5_0, None),
            W::Q5_1 => Self::Q8(tile::q5_1, None),
            W::Q8_0 => Self::Q8(tile::q8_0, None),
            W::Q4K => Self::Q8K(tile::q4_k, tile::q4_k_x4, KBatch::Groups4),
            W::Q5K => Self::Q8K(tile::q5_k, tile::q5_k_tiled, KBatch::Tiled8),
            W::Q6K => Self::Q8K(tile::q6_k, tile::q6_k_tiled, KBatch::Tiled8),
            W::Q2K => Self::Q8K(tile::q2_k_gemv, tile::q2_k_gemm, KBatch::Groups4),
            W::Q3K => Self::Q8K(tile::q3_k, tile::q3_k_tiled, KBatch::Tiled8),
            W::IQ4XS => Self::Q8K(tile::iq4_xs, tile::iq4_xs_tiled, KBatch::Tiled8),
        }
    }

    /// The Q4_0, Q4_K and IQ4_NL kernels for a matrix llama.cpp leaves as written (not
    /// repacked): Q4_0 in eight lanes (`reference::dot_q4_0_lanes`), Q4_K as ggml's `vec_dot`
    /// and its tiled matmul sum it (`reference::dot_q4_k_vec`, `dot_q4_k_tiled`), IQ4_NL as
    /// `vec_dot` and llamafile's sgemm do (`dot_iq4_nl_vec`, `dot_iq4_nl_lanes`).
    fn written_as_is(ty: WeightType, variant: Variant) -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let has = |v| variant == v && available_variants().contains(&v);
            match ty {
                WeightType::Q4_0 if has(Variant::Avx512Vnni) => {
                    return Self::Q8(avx2::dot_q4_0_lanes_vnni512, fast(avx2::dot_q4_0_paired));
                }
                WeightType::Q4_0 if has(Variant::AvxVnni) => {
                    return Self::Q8(avx2::dot_q4_0_lanes_vnni, None);
                }
                WeightType::Q4_0 if has(Variant::Avx2) => {
                    return Self::Q8(avx2::dot_q4_0_lanes, None);
                }
                WeightType::IQ4NL if has(Variant::Avx512Vnni) => {
                    return Self::Q8Split(
                        avx2::dot_iq4_nl_vec_vnni512,
                        avx2::dot_iq4_nl_lanes_vnni512,
                    );
                }
                WeightType::IQ4NL if has(Variant::AvxVnni) => {
                    return Self::Q8Split(avx2::dot_iq4_nl_vec_vnni, avx2::dot_iq4_nl_lanes_vnni);
                }
                WeightType::IQ4NL if has(Variant::Avx2) => {
                    return Self::Q8Split(avx2::dot_iq4_nl_vec, avx2::dot_iq4_nl_lanes);
                }
                WeightType::Q4K if has(Variant::Avx512Vnni) => {
                    return Self::Q8K(
                        avx2::dot_q4_k_vec,
                        avx2::dot_q4_k_tiled_vnni512,
                        KBatch::Tiled8,
                    );
                }
                WeightType::Q4K
                    if variant != Variant::Reference
                        && available_variants().contains(&Variant::Avx2) =>
                {
                    return Self::Q8K(avx2::dot_q4_k_vec, avx2::dot_q4_k_tiled, KBatch::Tiled8);
                }
                _ => {}
            }
        }
        use reference::tile;
        match ty {
            WeightType::Q4_0 => Self::Q8(tile::q4_0_lanes, None),
            WeightType::IQ4NL => Self::Q8Split(tile::iq4_nl_vec, tile::iq4_nl_lanes),
            _ => Self::Q8K(tile::q4_k_vec, tile::q4_k_tiled, KBatch::Tiled8),
        }
    }

    /// The activation blocks this kernel reads, where that depends on more than the format
    /// ([`WeightType::act_kinds`]): which 256-blocks a k-quant kernel takes.
    pub fn act_kinds(self, ty: WeightType) -> ActKinds {
        let kinds = ty.act_kinds();
        match self {
            Self::Q8K(_, _, rule) => ActKinds {
                q8k: rule != KBatch::Groups4,
                q8k_x4: rule == KBatch::Groups4,
                ..kinds
            },
            _ => kinds,
        }
    }

    /// `out (rows, nt) = w_rows · (activation rows t0..t0 + nt)ᵀ` for the whole rows of
    /// `row_bytes` in `w_rows`; nt ≤ [`MAX_TILE_TOKENS`], and for the k-quants no more than
    /// [`DotFn::run`] allows.
    #[inline]
    pub fn dot_rows(
        self,
        w_rows: &[u8],
        row_bytes: usize,
        acts: &Activations,
        t0: usize,
        nt: usize,
        out: &mut [f32],
    ) {
        assert!(
            TILE_WIDTHS.contains(&nt) && t0 + nt <= acts.n,
            "token tile out of range"
        );
        assert!(
            row_bytes > 0 && out.len() >= w_rows.len() / row_bytes * nt,
            "output is (rows, nt)"
        );
        // SAFETY: `new` only stores a SIMD kernel after detecting its CPU features; the kernels
        // check each activation row against the weight row's length.
        unsafe {
            match self {
                Self::F32(f) => {
                    let rows: [&[f32]; MAX_TILE_TOKENS] =
                        std::array::from_fn(|i| acts.row_f32(t0 + i.min(nt - 1)));
                    f(w_rows, row_bytes, &rows[..nt], out)
                }
                Self::F32Split(alone, batch) => {
                    assert!(self.run(acts, t0, nt) >= nt, "a tile mixes orders");
                    let rows: [&[f32]; MAX_TILE_TOKENS] =
                        std::array::from_fn(|i| acts.row_f32(t0 + i.min(nt - 1)));
                    let f = if acts.k_batch(t0, KBatch::Several) {
                        batch
                    } else {
                        alone
                    };
                    f(w_rows, row_bytes, &rows[..nt], out)
                }
                Self::Q8(_, Some(paired))
                    if nt == 8
                        && t0.is_multiple_of(8)
                        && let Some(pack) = acts.paired_q8(t0 / 8) =>
                {
                    paired(w_rows, row_bytes, pack, out)
                }
                Self::Q8(f, _) => {
                    let rows: [&[BlockQ8x32]; MAX_TILE_TOKENS] =
                        std::array::from_fn(|i| acts.row_q8(t0 + i.min(nt - 1)));
                    f(w_rows, row_bytes, &rows[..nt], out)
                }
                Self::Q8Split(alone, batch) => {
                    assert!(self.run(acts, t0, nt) >= nt, "a tile mixes orders");
                    let rows: [&[BlockQ8x32]; MAX_TILE_TOKENS] =
                        std::array::from_fn(|i| acts.row_q8(t0 + i.min(nt - 1)));
                    let f = if acts.k_batch(t0, KBatch::Several) {
                        batch
                    } else {
                        alone
                    };
                    f(w_rows, row_bytes, &rows[..nt], out)
                }
                Self::Q8K(alone, batch, rule) => {
                    assert!(self.run(acts, t0, nt) >= nt, "a tile mixes k-quant orders");
                    let rows: [&[BlockQ8K]; MAX_TILE_TOKENS] =
                        std::array::from_fn(|i| acts.row_q8k_for(t0 + i.min(nt - 1), rule));
                    let f = if acts.k_batch(t0, rule) { batch } else { alone };
                    f(w_rows, row_bytes, &rows[..nt], out)
                }
            }
        }
    }

    /// How many activation rows from `t0` on (at most `max`) one call can take: for the
    /// k-quants, the rows that share `t0`'s order.
    #[inline]
    pub fn run(self, acts: &Activations, t0: usize, max: usize) -> usize {
        match self {
            Self::Q8K(_, _, rule) => acts.k_run(t0, max, rule),
            Self::Q8Split(..) | Self::F32Split(..) => acts.k_run(t0, max, KBatch::Several),
            _ => max.min(acts.n - t0),
        }
    }

    /// `out[i] = w · (activation row t0 + i)` for one weight row `w`.
    #[inline]
    pub fn dot_tokens(self, w: &[u8], acts: &Activations, t0: usize, out: &mut [f32]) {
        let nt = out.len();
        self.dot_rows(w, w.len().max(1), acts, t0, nt, out)
    }

    /// Weight row `w` · activation row `t` of `acts`.
    #[inline]
    pub fn dot(self, w: &[u8], acts: &Activations, t: usize) -> f32 {
        let mut out = [0f32];
        self.dot_tokens(w, acts, t, &mut out);
        out[0]
    }
}
