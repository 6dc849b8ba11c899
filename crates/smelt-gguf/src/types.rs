//! ggml tensor types: the ids GGUF stores and the block geometry that fixes a tensor's size.
//!
//! Ids and sizes follow ggml's `ggml_type` enum and `type_traits` table (ggml/include/ggml.h,
//! ggml/src/ggml.c); ids 4, 5 and 31–33, 36–38 were removed upstream and are rejected.
//! gguf-py lists Q8_1 as 40 bytes; ggml's `block_q8_1` is two f16 + 32 i8 = 36 bytes
//! (`static_assert` in ggml/src/ggml-common.h), and ggml defines the file layout. The
//! sizes are cross-checked in the tests against gguf-py's `GGML_QUANT_SIZES`.

/// A ggml tensor element type.
#[allow(missing_docs, non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
    NVFP4 = 40,
    Q1_0 = 41,
}

/// Every type, in id order.
pub const ALL_TYPES: &[GgmlType] = {
    use GgmlType::*;
    &[
        F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ2_XXS,
        IQ2_XS, IQ3_XXS, IQ1_S, IQ4_NL, IQ3_S, IQ2_S, IQ4_XS, I8, I16, I32, I64, F64, IQ1_M, BF16,
        TQ1_0, TQ2_0, MXFP4, NVFP4, Q1_0,
    ]
};

impl GgmlType {
    /// The type with GGUF id `id`, if ggml defines one.
    pub fn from_id(id: u32) -> Option<Self> {
        ALL_TYPES.iter().copied().find(|t| *t as u32 == id)
    }

    /// `(elements per block, bytes per block)`.
    pub fn block(self) -> (u64, u64) {
        use GgmlType::*;
        match self {
            F32 | I32 => (1, 4),
            F16 | BF16 | I16 => (1, 2),
            I8 => (1, 1),
            I64 | F64 => (1, 8),
            Q4_0 | IQ4_NL => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            MXFP4 => (32, 17),
            NVFP4 => (64, 36),
            Q1_0 => (128, 18),
            Q2_K => (256, 84),
            Q3_K | IQ3_S => (256, 110),
            Q4_K => (256, 144),
            Q5_K => (256, 176),
            Q6_K => (256, 210),
            Q8_K => (256, 292),
            IQ2_XXS | TQ2_0 => (256, 66),
            IQ2_XS => (256, 74),
            IQ3_XXS => (256, 98),
            IQ1_S => (256, 50),
            IQ2_S => (256, 82),
            IQ4_XS => (256, 136),
            IQ1_M => (256, 56),
            TQ1_0 => (256, 54),
        }
    }

    /// The name ggml prints (`q4_K`, `f16`, ...).
    pub fn name(self) -> String {
        let s = format!("{self:?}");
        // ggml lower-cases everything but the K of k-quants: Q4_K -> q4_K, IQ2_XXS -> iq2_xxs.
        let lower = s.to_lowercase();
        if s.ends_with("_K") {
            format!("{}K", &lower[..lower.len() - 1])
        } else {
            lower
        }
    }

    /// Bits per weight, including scales.
    pub fn bits_per_weight(self) -> f64 {
        let (n, b) = self.block();
        b as f64 * 8.0 / n as f64
    }

    /// Bytes needed for `elements` values, or `None` when `elements` is not a whole number of
    /// blocks (ggml requires the first dimension to be) or the size overflows.
    pub fn bytes_for(self, elements: u64) -> Option<u64> {
        let (n, b) = self.block();
        if !elements.is_multiple_of(n) {
            return None;
        }
        (elements / n).checked_mul(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_removed_ids_are_rejected() {
        for &t in ALL_TYPES {
            assert_eq!(GgmlType::from_id(t as u32), Some(t));
        }
        for id in [4, 5, 31, 32, 33, 36, 37, 38, 42, 1000] {
            assert_eq!(GgmlType::from_id(id), None, "id {id}");
        }
    }

    #[test]
    fn names_follow_ggml() {
        assert_eq!(GgmlType::Q4_K.name(), "q4_K");
        assert_eq!(GgmlType::IQ2_XXS.name(), "iq2_xxs");
        assert_eq!(GgmlType::BF16.name(), "bf16");
        assert_eq!(GgmlType::Q4_1.bits_per_weight(), 5.0);
    }

    #[test]
    fn sizes_need_whole_blocks() {
        assert_eq!(GgmlType::Q4_0.bytes_for(64), Some(36));
        assert_eq!(GgmlType::Q4_0.bytes_for(33), None);
        assert_eq!(GgmlType::F32.bytes_for(u64::MAX), None);
    }
}
