//! Mixture-of-experts hyper-parameters: how many experts each layer's feed-forward has, how many
//! a token is routed to, and how wide each is, read as llama.cpp reads them for `llama` files
//! with experts (Mixtral's layout), `qwen3moe` and `qwen2moe`.

use super::gemma::count;
use super::{Arch, LlamaConfig, ModelError};

/// llama.cpp's `LLAMA_MAX_EXPERTS`.
const MAX_EXPERTS: usize = 1024;
/// The widest expert accepted (real ones: 512 to 14,336), so that the stacked tensors' row
/// counts cannot overflow.
const MAX_EXPERT_WIDTH: usize = 1 << 24;

/// A layer's mixture of experts: a router (`ffn_gate_inp`, (count, n_embd)) scores every
/// expert per token, the `used` best (softmax, then top-k) run their SwiGLU feed-forward of
/// width `n_ff`, and their outputs are summed weighted by the top-k probabilities, normalized to
/// sum to 1 where `normalized` (llama.cpp's `build_moe_ffn` with softmax gating and `norm_w`
/// for Mixtral and Qwen 3 MoE; Qwen 2 MoE keeps the probabilities and adds a shared expert).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Experts {
    /// Experts per layer (`expert_count`).
    pub count: usize,
    /// Experts each token runs (`expert_used_count`).
    pub used: usize,
    /// Feed-forward width of one expert: `expert_feed_forward_length` for Qwen 3 MoE (default
    /// `feed_forward_length / used`, as llama.cpp), `feed_forward_length` for llama.
    pub n_ff: usize,
    /// Whether the chosen experts' weights are divided by their sum (all but Qwen 2 MoE).
    pub normalized: bool,
    /// Width of the shared expert every token also runs, behind a sigmoid gate
    /// (`expert_shared_feed_forward_length`, default `feed_forward_length`; Qwen 2 MoE).
    pub shared_ff: Option<usize>,
}

/// The experts `c`'s file describes, if any: an error for architectures whose experts smelt
/// does not run, for counts llama.cpp would refuse, and for grouped routing (DeepSeek's).
pub(super) fn experts(
    h: &smelt_gguf::Header,
    c: &LlamaConfig,
) -> Result<Option<Experts>, ModelError> {
    let key = |k: &str| format!("{}.{k}", c.arch.name());
    let n = count(h, &key("expert_count"))?.unwrap_or(0);
    let used = count(h, &key("expert_used_count"))?.unwrap_or(0);
    let moe_arch = matches!(c.arch, Arch::Qwen3Moe | Arch::Qwen2Moe);
    if moe_arch && (n == 0 || used == 0) {
        return Err(ModelError::Unsupported(format!(
            "{} needs {} and {} above 0 (they are {n} and {used})",
            c.arch.name(),
            key("expert_count"),
            key("expert_used_count")
        )));
    }
    if n == 0 {
        if used != 0 {
            return Err(ModelError::Unsupported(format!(
                "{} is {used} without experts",
                key("expert_used_count")
            )));
        }
        return Ok(None);
    }
    if !moe_arch && c.arch != Arch::Llama {
        return Err(ModelError::Unsupported(format!(
            "{} with {n} experts: mixtures of experts run for llama (Mixtral), qwen3moe and \
             qwen2moe only",
            c.arch.name()
        )));
    }
    if used == 0 || used > n || !(2..=MAX_EXPERTS).contains(&n) {
        return Err(ModelError::Unsupported(format!(
            "{used} of {n} experts per token (at least 1, at most the count, which is 2 to \
             {MAX_EXPERTS})"
        )));
    }
    if count(h, &key("expert_group_count"))?.unwrap_or(0) > 1 {
        return Err(ModelError::Unsupported(format!(
            "{}: grouped expert routing is not supported",
            key("expert_group_count")
        )));
    }
    let n_ff = if moe_arch {
        count(h, &key("expert_feed_forward_length"))?
            .filter(|&w| w != 0)
            .unwrap_or(c.n_ff / used)
    } else {
        c.n_ff
    };
    let shared_ff = match c.arch {
        Arch::Qwen2Moe => Some(
            count(h, &key("expert_shared_feed_forward_length"))?
                .filter(|&w| w != 0)
                .unwrap_or(c.n_ff),
        ),
        _ => None,
    };
    for w in std::iter::once(n_ff).chain(shared_ff) {
        if w == 0 || w > MAX_EXPERT_WIDTH {
            return Err(ModelError::Unsupported(format!(
                "experts of width {w} (at least 1, at most {MAX_EXPERT_WIDTH}; {}, {} or {})",
                key("expert_feed_forward_length"),
                key("expert_shared_feed_forward_length"),
                key("feed_forward_length")
            )));
        }
    }
    Ok(Some(Experts {
        count: n,
        used,
        n_ff,
        normalized: c.arch != Arch::Qwen2Moe,
        shared_ff,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tests::header_with;
    use super::*;
    use smelt_gguf::MetaValue;

    fn with(pairs: &[(&str, MetaValue)]) -> smelt_gguf::Header {
        let mut h = header_with(pairs[0].0, pairs[0].1.clone());
        for (k, v) in &pairs[1..] {
            h.metadata.retain(|(key, _)| key != k);
            h.metadata.push((k.to_string(), v.clone()));
        }
        h
    }

    #[test]
    fn llama_with_experts_reads_mixtral_keys() {
        let h = with(&[
            ("llama.expert_count", MetaValue::U32(8)),
            ("llama.expert_used_count", MetaValue::U32(2)),
        ]);
        let c = LlamaConfig::from_gguf(&h).unwrap();
        assert_eq!(
            c.moe,
            Some(Experts {
                count: 8,
                used: 2,
                n_ff: 64,
                normalized: true,
                shared_ff: None,
            })
        );
        let dense = header_with("llama.expert_count", MetaValue::U32(0));
        assert_eq!(LlamaConfig::from_gguf(&dense).unwrap().moe, None);
    }

    #[test]
    fn qwen3moe_widths_and_bad_counts() {
        let qwen = |pairs: &[(&str, MetaValue)]| {
            let mut h = with(pairs);
            for (k, v) in &mut h.metadata {
                if let Some(rest) = k.strip_prefix("llama.") {
                    *k = format!("qwen3moe.{rest}");
                } else if k == "general.architecture" {
                    *v = MetaValue::String("qwen3moe".into());
                }
            }
            LlamaConfig::from_gguf(&h)
        };
        let c = qwen(&[
            ("llama.expert_count", MetaValue::U32(16)),
            ("llama.expert_used_count", MetaValue::U32(4)),
            ("llama.expert_feed_forward_length", MetaValue::U32(32)),
        ])
        .unwrap();
        assert_eq!(c.arch, Arch::Qwen3Moe);
        assert_eq!(c.moe.map(|m| (m.count, m.used, m.n_ff)), Some((16, 4, 32)));
        // Without the width, llama.cpp's default: feed_forward_length / used.
        let c = qwen(&[
            ("llama.expert_count", MetaValue::U32(16)),
            ("llama.expert_used_count", MetaValue::U32(4)),
        ])
        .unwrap();
        assert_eq!(c.moe.map(|m| m.n_ff), Some(16));
        for (pairs, says) in [
            (
                vec![("llama.expert_count", MetaValue::U32(16))],
                "qwen3moe needs",
            ),
            (
                vec![
                    ("llama.expert_count", MetaValue::U32(4)),
                    ("llama.expert_used_count", MetaValue::U32(5)),
                ],
                "5 of 4 experts",
            ),
            (
                vec![
                    ("llama.expert_count", MetaValue::U32(4096)),
                    ("llama.expert_used_count", MetaValue::U32(5)),
                ],
                "5 of 4096 experts",
            ),
            (
                vec![
                    ("llama.expert_count", MetaValue::F32(4.0)),
                    ("llama.expert_used_count", MetaValue::U32(2)),
                ],
                "expert_count is not a non-negative integer",
            ),
            (
                vec![
                    ("llama.expert_count", MetaValue::U32(8)),
                    ("llama.expert_used_count", MetaValue::U32(2)),
                    ("llama.expert_group_count", MetaValue::U32(4)),
                ],
                "grouped expert routing",
            ),
            (
                vec![
                    ("llama.expert_count", MetaValue::U32(1)),
                    ("llama.expert_used_count", MetaValue::U32(1)),
                ],
                "1 of 1 experts",
            ),
            (
                vec![
                    ("llama.expert_count", MetaValue::U32(8)),
                    ("llama.expert_used_count", MetaValue::U32(2)),
                    ("llama.expert_feed_forward_length", MetaValue::U64(1 << 62)),
                ],
                "experts of width 4611686018427387904",
            ),
        ] {
            let e = qwen(&pairs).unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
        }
    }

    #[test]
    fn qwen2moe_keeps_the_weights_and_has_a_shared_expert() {
        let mut h = with(&[
            ("llama.expert_count", MetaValue::U32(60)),
            ("llama.expert_used_count", MetaValue::U32(4)),
            ("llama.expert_feed_forward_length", MetaValue::U32(1408)),
        ]);
        for (k, v) in &mut h.metadata {
            if let Some(rest) = k.strip_prefix("llama.") {
                *k = format!("qwen2moe.{rest}");
            } else if k == "general.architecture" {
                *v = MetaValue::String("qwen2moe".into());
            }
        }
        let c = LlamaConfig::from_gguf(&h).unwrap();
        let m = c.moe.unwrap();
        // Without expert_shared_feed_forward_length the shared expert is feed_forward_length
        // wide, as in llama.cpp.
        assert_eq!((m.normalized, m.shared_ff, m.n_ff), (false, Some(64), 1408));
        h.metadata.push((
            "qwen2moe.expert_shared_feed_forward_length".into(),
            MetaValue::U32(5632),
        ));
        let m = LlamaConfig::from_gguf(&h).unwrap().moe.unwrap();
        assert_eq!(m.shared_ff, Some(5632));
    }

    #[test]
    fn experts_elsewhere_are_refused() {
        let mut h = with(&[
            ("llama.expert_count", MetaValue::U32(8)),
            ("llama.expert_used_count", MetaValue::U32(2)),
        ]);
        for (k, v) in &mut h.metadata {
            if let Some(rest) = k.strip_prefix("llama.") {
                *k = format!("qwen2.{rest}");
            } else if k == "general.architecture" {
                *v = MetaValue::String("qwen2".into());
            }
        }
        let e = LlamaConfig::from_gguf(&h).unwrap_err();
        assert!(e.to_string().contains("qwen2 with 8 experts"), "{e}");
        let e = LlamaConfig::from_gguf(&header_with("llama.expert_used_count", MetaValue::U32(2)))
            .unwrap_err();
        assert!(e.to_string().contains("without experts"), "{e}");
    }
}
