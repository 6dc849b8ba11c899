//! The k-quant super-blocks (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS) in one scalar form: 256
//! unsigned codes u and per-16-weight-group scales and mins, w = d·sc·(u − bias) − dmin·m. The
//! reference products and the interleaved copies (`interleaved_k.rs`) both read blocks through
//! this, so each layout is written down once.

use smelt_gguf::blocks::iq4_nl::KVALUES_U8;
use smelt_gguf::blocks::{iq4_xs_scale, kquant::scale_min_k4, q3_k_scale6};

use crate::WeightType;
use crate::reference::f16_at;

/// One decoded super-block: weight e is `d·sc[e/16]·(u[e] − bias(ty)) − dmin·m[e/16]`.
pub(crate) struct KBlock {
    /// (256,) unsigned codes.
    pub u: [u8; 256],
    /// (16,) group scales.
    pub sc: [i8; 16],
    /// (16,) group mins (zero where the format has none).
    pub m: [u8; 16],
    /// Super-block scale.
    pub d: f32,
    /// Super-block min scale (zero where the format has none).
    pub dmin: f32,
}

/// What the unsigned codes of `ty` are offset by (Q3_K 4, Q6_K 32, IQ4_XS 128, else 0).
pub(crate) fn bias(ty: WeightType) -> i32 {
    match ty {
        WeightType::Q3K => 4,
        WeightType::Q6K => 32,
        WeightType::IQ4XS => 128,
        _ => 0,
    }
}

/// Each of 8 per-32-weight values for both 16-weight groups of its sub-block.
pub(crate) fn twice<T: Copy>(v: [T; 8]) -> [T; 16] {
    std::array::from_fn(|g| v[g / 2])
}

/// Decodes one super-block of `ty` (`b`: its bytes). Panics for a format that is not one of
/// the six.
pub(crate) fn decode(ty: WeightType, b: &[u8]) -> KBlock {
    use WeightType as W;
    match ty {
        // 16 bytes of scale | min << 4, 64 of 2-bit codes (weight 128j + 32k + l: bits 2k of
        // qs[32j + l]), f16 d, f16 dmin.
        W::Q2K => KBlock {
            u: std::array::from_fn(|e| {
                let (j, k, l) = (e / 128, e % 128 / 32, e % 32);
                (b[16 + 32 * j + l] >> (2 * k)) & 3
            }),
            sc: std::array::from_fn(|g| (b[g] & 0x0f) as i8),
            m: std::array::from_fn(|g| b[g] >> 4),
            d: f16_at(&b[80..]),
            dmin: f16_at(&b[82..]),
        },
        // 32 high-bit bytes (bit 4j + k of hmask[l]), 64 of low 2-bit codes, 12 of 6-bit
        // scales, f16 d; u = low | high << 2, biased by 4.
        W::Q3K => {
            let scales: &[u8; 12] = b[96..108].try_into().expect("12 scale bytes");
            KBlock {
                u: std::array::from_fn(|e| {
                    let (j, k, l) = (e / 128, e % 128 / 32, e % 32);
                    let low = (b[32 + 32 * j + l] >> (2 * k)) & 3;
                    low | ((b[l] >> (4 * j + k)) & 1) << 2
                }),
                sc: std::array::from_fn(|g| (q3_k_scale6(scales, g) - 32) as i8),
                m: [0; 16],
                d: f16_at(&b[108..]),
                dmin: 0.0,
            }
        }
        // f16 d, f16 dmin, 12 bytes of 6-bit scales and mins per 32-weight sub-block, (Q5_K: 32
        // bytes of fifth bits, bit j of qh[l]), 128 nibble bytes (sub-block j: nibble j % 2 of
        // qs[32(j / 2) + l]).
        W::Q4K | W::Q5K => {
            let five = ty == W::Q5K;
            let packed: &[u8; 12] = b[4..16].try_into().expect("12 scale bytes");
            let sm: [(u8, u8); 8] = std::array::from_fn(|j| scale_min_k4(j, packed));
            let qs = &b[if five { 48 } else { 16 }..];
            KBlock {
                u: std::array::from_fn(|e| {
                    let (j, l) = (e / 32, e % 32);
                    let q = (qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0x0f;
                    if five {
                        q | ((b[16 + l] >> j) & 1) << 4
                    } else {
                        q
                    }
                }),
                sc: twice(sm.map(|(s, _)| s as i8)),
                m: twice(sm.map(|(_, m)| m)),
                d: f16_at(b),
                dmin: f16_at(&b[2..]),
            }
        }
        // 128 low-nibble bytes (weight 128h + 32k + l: nibble k / 2 of ql[64h + 32(k % 2) + l]),
        // 64 high-bit bytes (bits 2k of qh[32h + l]), 16 int8 scales, f16 d; biased by 32.
        W::Q6K => KBlock {
            u: std::array::from_fn(|e| {
                let (h, k, l) = (e / 128, e % 128 / 32, e % 32);
                let low = (b[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0x0f;
                low | ((b[128 + 32 * h + l] >> (2 * k)) & 3) << 4
            }),
            sc: std::array::from_fn(|g| b[192 + g] as i8),
            m: [0; 16],
            d: f16_at(&b[208..]),
            dmin: 0.0,
        },
        // f16 d, u16 high scale bits, 4 bytes of low scale nibbles, 128 index bytes (sub-block
        // i: low nibbles of 16 bytes, then the high ones); u = the table's value + 128.
        W::IQ4XS => {
            let (high, low) = ([b[2], b[3]], [b[4], b[5], b[6], b[7]]);
            KBlock {
                u: std::array::from_fn(|e| {
                    let (i, l) = (e / 32, e % 32);
                    let q = (b[8 + 16 * i + l % 16] >> (4 * (l / 16))) & 0x0f;
                    KVALUES_U8[q as usize]
                }),
                sc: twice(std::array::from_fn(|i| iq4_xs_scale(high, low, i) as i8)),
                m: [0; 16],
                d: f16_at(b),
                dmin: 0.0,
            }
        }
        _ => panic!("{ty:?} is not a k-quant with a scalar decoder"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_blocks_dequantize_as_smelt_gguf_does() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut byte = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        };
        for ty in [
            WeightType::Q2K,
            WeightType::Q3K,
            WeightType::Q4K,
            WeightType::Q5K,
            WeightType::Q6K,
            WeightType::IQ4XS,
        ] {
            let bytes = ty.block().1;
            for _ in 0..8 {
                let mut b: Vec<u8> = (0..bytes).map(|_| byte()).collect();
                // Small finite f16 scales wherever the format keeps them.
                let fields: &[usize] = match ty {
                    WeightType::Q2K => &[80, 82],
                    WeightType::Q3K => &[108],
                    WeightType::Q6K => &[208],
                    WeightType::Q4K | WeightType::Q5K => &[0, 2],
                    _ => &[0],
                };
                for &at in fields {
                    b[at..at + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
                }
                let want = smelt_gguf::blocks::dequantize(ty.ggml(), &b, 256).unwrap();
                let k = decode(ty, &b);
                for (e, &w) in want.iter().enumerate() {
                    let g = e / 16;
                    let q = k.u[e] as i32 - bias(ty);
                    let got = k.d * (k.sc[g] as i32 * q) as f32 - k.dmin * k.m[g] as f32;
                    assert!(
                        (got - w).abs() <= 1e-6 * w.abs().max(1.0),
                        "{ty:?} weight {e}: {got} vs {w}"
                    );
                }
            }
        }
    }
}
