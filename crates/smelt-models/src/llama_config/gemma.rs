//! Gemma's hyper-parameters beyond llama's: the local (sliding-window) layers, their RoPE, and
//! the typed reading of the optional keys that set them.

use super::{Arch, LlamaConfig, ModelError, trained_rope_scale};
use crate::ops::Rope;

/// Gemma's local attention: most layers see only the last `window` positions and rotate with
/// their own base; every `pattern`-th layer (llama.cpp's default 6 for Gemma 3, 2 for Gemma 2)
/// sees the whole context with the model's RoPE base and scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct SlidingWindow {
    /// Positions a local layer's query sees, its own included (`attention.sliding_window`):
    /// llama.cpp masks key position p0 for query position p1 when `p1 − p0 ≥ window`.
    pub window: usize,
    /// (n_layer,) whether each layer is local (`attention.sliding_window_pattern`: a period n,
    /// local unless `l % n == n − 1`, or one flag per layer).
    pub local: Vec<bool>,
    /// The local layers' rotation: base `rope.freq_base_swa` (llama.cpp's defaults: Gemma 3,
    /// 10000 unscaled; Gemma 2, the model's base and scaling).
    pub rope: Rope,
}

/// The value of metadata key `k` as a number, `None` when absent; an error when present with
/// another type (llama.cpp throws there rather than take a default).
pub(super) fn number(h: &smelt_gguf::Header, k: &str) -> Result<Option<f64>, ModelError> {
    match h.get(k) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| ModelError::Unsupported(format!("{k} is not a number ({v:?})"))),
    }
}

/// [`number`] for a count: a non-negative integer that fits in usize.
pub(super) fn count(h: &smelt_gguf::Header, k: &str) -> Result<Option<usize>, ModelError> {
    match h.get(k) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                ModelError::Unsupported(format!("{k} is not a non-negative integer ({v:?})"))
            }),
    }
}

/// Gemma's local layers, as llama.cpp reads them: `attention.sliding_window` (Gemma 3: absent
/// or 0, every layer global; Gemma 2: default 4096), `attention.sliding_window_pattern` (a
/// period, default 6 for Gemma 3 and 2 for Gemma 2, or one flag per layer) and
/// `rope.freq_base_swa` (Gemma 3: default 10000, unscaled; Gemma 2: the model's base and
/// scaling).
pub(super) fn sliding_window(
    h: &smelt_gguf::Header,
    c: &LlamaConfig,
) -> Result<Option<SlidingWindow>, ModelError> {
    let key = |k: &str| format!("{}.{k}", c.arch.name());
    let gemma2 = c.arch == Arch::Gemma2;
    let window_key = key("attention.sliding_window");
    let window = count(h, &window_key)?.unwrap_or(if gemma2 { 4096 } else { 0 });
    if window == 0 {
        if gemma2 {
            // llama.cpp would mask every position (NaN rows).
            return Err(ModelError::Unsupported(format!(
                "{window_key} is 0 (gemma2 needs a window)"
            )));
        }
        return Ok(None);
    }
    let pattern_key = key("attention.sliding_window_pattern");
    let local = match h.get(&pattern_key) {
        Some(smelt_gguf::MetaValue::Array(_, flags)) => {
            // llama.cpp: booleans or 32-bit integers (non-zero: local), at most its 512
            // layers; layers past the array's end are global, entries past the model's last
            // layer unused.
            use smelt_gguf::MetaValue as V;
            let flags: Option<Vec<bool>> = flags
                .iter()
                .map(|f| match *f {
                    V::Bool(b) => Some(b),
                    V::U32(v) => Some(v != 0),
                    V::I32(v) => Some(v != 0),
                    _ => None,
                })
                .collect();
            match flags {
                Some(mut f) if f.len() <= super::MAX_LAYERS => {
                    f.resize(c.n_layer, false);
                    f
                }
                _ => {
                    return Err(ModelError::Unsupported(format!(
                        "{pattern_key} must hold at most {} booleans or 32-bit integers",
                        super::MAX_LAYERS
                    )));
                }
            }
        }
        Some(_) => {
            let n = count(h, &pattern_key)?.unwrap_or(0);
            // llama.cpp: a period of 0 makes every layer local.
            (0..c.n_layer).map(|l| n == 0 || l % n < n - 1).collect()
        }
        None => {
            let n = if gemma2 { 2 } else { 6 };
            (0..c.n_layer).map(|l| l % n < n - 1).collect()
        }
    };
    let base = number(h, &key("rope.freq_base_swa"))?
        .map_or(if gemma2 { c.rope.base } else { 10000.0 }, |v| v as f32);
    // llama.cpp reads local layers' own head and rotation widths for every architecture;
    // smelt runs one width, so a file whose local widths differ is refused.
    for (k, main) in [
        ("attention.key_length_swa", c.head_dim()),
        ("attention.value_length_swa", c.head_dim()),
        ("rope.dimension_count_swa", c.rope.n_rot),
    ] {
        if let Some(v) = count(h, &key(k))?
            && v != main
        {
            return Err(ModelError::Unsupported(format!(
                "{} is {v}, not {main}: local layers of another width are not supported",
                key(k)
            )));
        }
    }
    if !(base.is_finite() && base > 0.0) {
        return Err(ModelError::Unsupported(format!(
            "{} is {base} (it must be positive)",
            key("rope.freq_base_swa")
        )));
    }
    let scale = if gemma2 {
        trained_rope_scale(h, c.arch)
    } else {
        1.0
    };
    if !(scale.is_finite() && scale > 0.0) {
        return Err(ModelError::Unsupported(format!(
            "RoPE scaling factor {scale} (it must be positive)"
        )));
    }
    Ok(Some(SlidingWindow {
        window,
        local,
        rope: Rope {
            base,
            linear_scale: scale,
            ..c.rope.clone()
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::super::LlamaConfig;
    use super::super::tests::header_with;
    use smelt_gguf::MetaValue;

    /// The consistent llama header of the parent's tests with `layers` layers, moved to
    /// architecture `arch`, with `base` and `extra` keys (names without the prefix) added.
    fn config(
        arch: &str,
        layers: u32,
        base: &[(&str, MetaValue)],
        extra: &[(&str, MetaValue)],
    ) -> Result<LlamaConfig, super::ModelError> {
        let mut h = header_with("llama.block_count", MetaValue::U32(layers));
        for (k, v) in &mut h.metadata {
            if let Some(rest) = k.strip_prefix("llama.") {
                *k = format!("{arch}.{rest}");
            } else if k == "general.architecture" {
                *v = MetaValue::String(arch.into());
            }
        }
        let added = base.iter().chain(extra);
        h.metadata
            .extend(added.map(|(k, v)| (format!("{arch}.{k}"), v.clone())));
        LlamaConfig::from_gguf(&h)
    }

    /// Gemma 3's local layers as llama.cpp reads them: a period (default 6, 0 = all local)
    /// or one flag per layer, the local base, and refusals of what cannot run.
    #[test]
    fn gemma3_sliding_window_keys() {
        let gemma = |extra: &[(&str, MetaValue)]| config("gemma3", 7, &[], extra);
        let c = gemma(&[]).unwrap();
        assert_eq!((&c.swa, c.final_softcap), (&None, None));
        assert_eq!(c.embedding_scale(), Some(32f32.sqrt()));
        let w = MetaValue::U32(512);
        let c = gemma(&[("attention.sliding_window", w.clone())]).unwrap();
        let swa = c.swa.unwrap();
        assert_eq!(swa.local, [true, true, true, true, true, false, true]);
        assert_eq!(
            (swa.window, swa.rope.base, c.rope.base),
            (512, 10000.0, 10000.0)
        );
        let first = |l: usize| crate::ops::first_visible(swa.local[l].then_some(swa.window), 600);
        assert_eq!((first(0), first(5)), (89, 0));
        let c = gemma(&[
            ("attention.sliding_window", w.clone()),
            ("attention.sliding_window_pattern", MetaValue::U32(0)),
            ("rope.freq_base_swa", MetaValue::F32(5e4)),
        ])
        .unwrap();
        let swa = c.swa.unwrap();
        assert!(swa.local.iter().all(|&b| b));
        assert_eq!(swa.rope.base, 5e4);
        let flags = |n: usize| {
            MetaValue::Array(
                smelt_gguf::MetaType::Bool,
                (0..n).map(|l| MetaValue::Bool(l % 2 == 0)).collect(),
            )
        };
        let c = gemma(&[
            ("attention.sliding_window", w.clone()),
            ("attention.sliding_window_pattern", flags(7)),
        ])
        .unwrap();
        assert_eq!(
            c.swa.unwrap().local,
            [true, false, true, false, true, false, true]
        );
        // 32-bit integer flags, shorter than the model: the rest are global (llama.cpp).
        let ints = MetaValue::Array(
            smelt_gguf::MetaType::I32,
            vec![MetaValue::I32(1), MetaValue::I32(0), MetaValue::I32(7)],
        );
        let c = gemma(&[
            ("attention.sliding_window", w.clone()),
            ("attention.sliding_window_pattern", ints),
        ])
        .unwrap();
        assert_eq!(
            c.swa.unwrap().local,
            [true, false, true, false, false, false, false]
        );
        let strings = MetaValue::Array(
            smelt_gguf::MetaType::String,
            vec![MetaValue::String("yes".into())],
        );
        for (extra, says) in [
            (
                vec![
                    ("attention.sliding_window", w.clone()),
                    ("attention.sliding_window_pattern", strings),
                ],
                "at most 512 booleans or 32-bit integers",
            ),
            (
                vec![
                    ("attention.sliding_window", w.clone()),
                    ("attention.sliding_window_pattern", flags(513)),
                ],
                "at most 512 booleans or 32-bit integers",
            ),
            (
                vec![
                    ("attention.sliding_window", w.clone()),
                    ("rope.freq_base_swa", MetaValue::F32(-1.0)),
                ],
                "freq_base_swa is -1",
            ),
            (
                vec![("final_logit_softcapping", MetaValue::F32(-30.0))],
                "final_logit_softcapping is -30",
            ),
            (
                vec![("attention.sliding_window", MetaValue::F32(512.0))],
                "sliding_window is not a non-negative integer",
            ),
            (
                vec![
                    ("attention.sliding_window", w.clone()),
                    ("rope.freq_base_swa", MetaValue::String("1e4".into())),
                ],
                "freq_base_swa is not a number",
            ),
            (
                vec![
                    ("attention.sliding_window", w.clone()),
                    ("attention.key_length_swa", MetaValue::U32(4)),
                ],
                "key_length_swa is 4, not 8",
            ),
        ] {
            let e = gemma(&extra).unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
        }
    }

    /// Gemma 2 as llama.cpp reads it: always windowed (4096, every other layer), one RoPE
    /// for all layers, scores and logits capped (50 and 30) unless the file says otherwise.
    #[test]
    fn gemma2_defaults() {
        let scaled = [("rope.scale_linear", MetaValue::F32(2.0))];
        let gemma2 = |extra: &[(&str, MetaValue)]| config("gemma2", 4, &scaled, extra);
        let c = gemma2(&[]).unwrap();
        let swa = c.swa.clone().unwrap();
        assert_eq!(
            (swa.window, swa.local),
            (4096, vec![true, false, true, false])
        );
        assert_eq!(swa.rope, c.rope);
        assert_eq!(c.rope.linear_scale, 2.0);
        assert_eq!((c.attn_softcap, c.final_softcap), (Some(50.0), Some(30.0)));
        // Scaling type `none`: llama.cpp leaves the global layers unscaled but the local ones
        // keep the trained factor.
        let c = gemma2(&[("rope.scaling.type", MetaValue::String("none".into()))]).unwrap();
        let local = c.swa.as_ref().unwrap().rope.linear_scale;
        assert_eq!((c.rope.linear_scale, local), (1.0, 2.0));
        assert!(c.prescaled_queries());
        let c = gemma2(&[
            ("attn_logit_softcapping", MetaValue::F32(20.0)),
            ("attention.sliding_window", MetaValue::U32(16)),
        ])
        .unwrap();
        assert_eq!((c.attn_softcap, c.swa.unwrap().window), (Some(20.0), 16));
        for (extra, says) in [
            (
                ("attn_logit_softcapping", MetaValue::F32(0.0)),
                "attn_logit_softcapping is 0",
            ),
            (
                ("attention.sliding_window", MetaValue::U32(0)),
                "sliding_window is 0",
            ),
        ] {
            let e = gemma2(&[extra]).unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
        }
    }
}
