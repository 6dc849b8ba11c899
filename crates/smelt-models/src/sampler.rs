//! Choosing the next token from logits, in llama.cpp's order: logit bias, repetition penalty,
//! OpenAI's frequency and presence penalties, top-k, top-p, min-p, temperature, then a seeded
//! draw. Temperature ≤ 0 means greedy (after the bias and penalties).

/// Sampling settings; `Default` is llama.cpp's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; ≤ 0 picks the most likely token.
    pub temperature: f32,
    /// Keep the k most likely tokens (0 keeps all).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches p (1 keeps all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` × the most likely one's probability (0 keeps all).
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recently seen tokens by this (1 = off).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    /// OpenAI's `presence_penalty`: subtracted from the logit of every token the output
    /// (not the prompt) already has (0 = off; −2..=2).
    pub presence_penalty: f32,
    /// OpenAI's `frequency_penalty`: subtracted once per time the output already has the
    /// token (0 = off; −2..=2).
    pub frequency_penalty: f32,
    /// OpenAI's `logit_bias`: (token, bias) added to those logits (−100..=100).
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed of the draws.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Always the most likely token, no penalty.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            repeat_penalty: 1.0,
            ..Self::default()
        }
    }

    /// Checks the ranges, so bad settings give an error instead of NaNs.
    pub fn validate(&self) -> Result<(), String> {
        if !self.temperature.is_finite() {
            return Err(format!("temperature {} is not finite", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top-p {} is outside (0, 1]", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("min-p {} is outside [0, 1]", self.min_p));
        }
        // Normal, not just positive: dividing a logit by a subnormal penalty (1e-40) is +inf.
        if !(self.repeat_penalty.is_normal() && self.repeat_penalty > 0.0) {
            return Err(format!(
                "repeat penalty {} must be a normal positive number",
                self.repeat_penalty
            ));
        }
        for (name, v) in [
            ("presence penalty", self.presence_penalty),
            ("frequency penalty", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return Err(format!("{name} {v} is outside [-2, 2]"));
            }
        }
        if let Some((t, b)) = self
            .logit_bias
            .iter()
            .find(|(_, b)| !(-100.0..=100.0).contains(b))
        {
            return Err(format!(
                "logit bias {b} of token {t} is outside [-100, 100]"
            ));
        }
        Ok(())
    }
}

/// Index of the largest value (the first on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// A sampler: its settings and random state.
pub struct Sampler {
    /// Settings.
    pub config: SamplerConfig,
    state: u64,
    /// Where the output starts in the history (the frequency and presence penalties count
    /// the output only).
    output_start: usize,
}

impl Sampler {
    /// A sampler seeded from `config.seed`.
    pub fn new(config: SamplerConfig) -> Self {
        let state = config.seed;
        Self {
            config,
            state,
            output_start: 0,
        }
    }

    /// The same, for a history whose first `prompt_len` tokens are the prompt.
    pub fn with_prompt(config: SamplerConfig, prompt_len: usize) -> Self {
        Self {
            output_start: prompt_len,
            ..Self::new(config)
        }
    }

    /// Uniform in [0, 1) (SplitMix64).
    fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next token given `logits` and the tokens so far (prompt and output).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let c = &self.config;
        let penalised = c.repeat_penalty != 1.0 && c.repeat_last_n > 0;
        let counted = c.presence_penalty != 0.0 || c.frequency_penalty != 0.0;
        let adjusted = penalised || counted || !c.logit_bias.is_empty();
        if !adjusted && c.temperature <= 0.0 {
            return argmax(logits); // the common greedy case needs no copy of the logits
        }
        let mut logits = logits.to_vec();
        for &(t, b) in &c.logit_bias {
            if let Some(l) = logits.get_mut(t as usize) {
                *l += b;
            }
        }
        if penalised {
            let recent = &history[history.len().saturating_sub(c.repeat_last_n)..];
            let mut seen = std::collections::HashSet::new();
            for &t in recent {
                if let Some(l) = logits.get_mut(t as usize)
                    && seen.insert(t)
                {
                    // Kept finite: an infinite logit makes every probability NaN.
                    *l = if *l > 0.0 {
                        *l / c.repeat_penalty
                    } else {
                        *l * c.repeat_penalty
                    }
                    .clamp(f32::MIN, f32::MAX);
                }
            }
        }
        if counted {
            let mut counts = std::collections::HashMap::<u32, u32>::new();
            for &t in &history[self.output_start.min(history.len())..] {
                *counts.entry(t).or_default() += 1;
            }
            for (t, n) in counts {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= n as f32 * c.frequency_penalty + c.presence_penalty;
                }
            }
        }
        if c.temperature <= 0.0 {
            return argmax(&logits);
        }
        // Candidates sorted by logit, most likely first.
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        let by_logit = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]);
        if c.top_k > 0 && c.top_k < idx.len() {
            idx.select_nth_unstable_by(c.top_k - 1, by_logit);
            idx.truncate(c.top_k);
        }
        idx.sort_by(by_logit);
        let probs = |idx: &[u32], temp: f32| -> Vec<f64> {
            let m = logits[idx[0] as usize] as f64;
            let e: Vec<f64> = idx
                .iter()
                .map(|&i| ((logits[i as usize] as f64 - m) / temp as f64).exp())
                .collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(|v| v / s).collect()
        };
        if c.top_p < 1.0 {
            let p = probs(&idx, 1.0);
            let mut cum = 0.0;
            let mut keep = idx.len();
            for (i, pi) in p.iter().enumerate() {
                cum += pi;
                if cum >= c.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            idx.truncate(keep.max(1));
        }
        if c.min_p > 0.0 {
            let p = probs(&idx, 1.0);
            let floor = c.min_p as f64 * p[0];
            let keep = p.iter().take_while(|&&pi| pi >= floor).count();
            idx.truncate(keep.max(1));
        }
        let p = probs(&idx, c.temperature);
        if p.iter().any(|v| v.is_nan()) {
            // Infinite or NaN logits (a model's overflow): no distribution to draw from; take
            // the first candidate in logit order, not the least likely the loop would end on.
            return idx[0];
        }
        let mut r = self.uniform();
        for (&i, &pi) in idx.iter().zip(&p) {
            r -= pi;
            if r <= 0.0 {
                return i;
            }
        }
        idx[idx.len() - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(cfg: SamplerConfig, logits: &[f32], n: usize) -> Vec<u32> {
        let mut s = Sampler::new(cfg);
        (0..n).map(|_| s.sample(logits, &[])).collect()
    }

    #[test]
    fn greedy_and_penalty() {
        let logits = [1.0, 3.0, 2.0, -1.0];
        assert_eq!(draws(SamplerConfig::greedy(), &logits, 3), vec![1, 1, 1]);
        // Penalty 2 on token 1 halves its logit to 1.5 < 2.0.
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 2.0,
            ..SamplerConfig::greedy()
        });
        assert_eq!(s.sample(&logits, &[1]), 2);
        // A negative logit is multiplied, pushing it further down.
        assert_eq!(s.sample(&[-1.0, -1.5], &[0]), 1);
    }

    #[test]
    fn bias_and_openai_penalties() {
        let logits = [1.0, 3.0, 2.0, 2.5];
        let greedy = SamplerConfig::greedy();
        // A bias of -100 bans a token; +2 lifts token 0 over the rest.
        let mut s = Sampler::new(SamplerConfig {
            logit_bias: vec![(1, -100.0), (0, 2.0), (99, 5.0)],
            ..greedy.clone()
        });
        assert_eq!(s.sample(&logits, &[]), 0);
        // Frequency: 3 - 2 x 0.3 = 2.4 < 2.5; presence alone: 3 - 0.4 = 2.6 > 2.5. Only the
        // output counts: the prompt's (first two) tokens do not.
        let freq = SamplerConfig {
            frequency_penalty: 0.3,
            ..greedy.clone()
        };
        assert_eq!(
            Sampler::with_prompt(freq.clone(), 2).sample(&logits, &[1, 1, 1, 1]),
            3
        );
        assert_eq!(
            Sampler::with_prompt(freq, 3).sample(&logits, &[1, 1, 1, 1]),
            1
        );
        let presence = SamplerConfig {
            presence_penalty: 0.4,
            ..greedy.clone()
        };
        assert_eq!(Sampler::new(presence.clone()).sample(&logits, &[1, 1]), 1);
        let presence = SamplerConfig {
            presence_penalty: 0.6,
            ..presence
        };
        assert_eq!(Sampler::new(presence).sample(&logits, &[1, 1]), 3);
        for bad in [
            SamplerConfig {
                presence_penalty: 2.5,
                ..greedy.clone()
            },
            SamplerConfig {
                frequency_penalty: f32::NAN,
                ..greedy.clone()
            },
            SamplerConfig {
                logit_bias: vec![(0, 101.0)],
                ..greedy
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn filters_restrict_the_draws() {
        let logits = [2.0, 1.9, 0.0, -5.0];
        let base = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplerConfig::default()
        };
        let all = draws(base.clone(), &logits, 2000);
        assert!(all.contains(&2), "without filters token 2 appears");
        let k2 = draws(
            SamplerConfig {
                top_k: 2,
                ..base.clone()
            },
            &logits,
            2000,
        );
        assert!(k2.iter().all(|&t| t < 2) && k2.contains(&0) && k2.contains(&1));
        // p(0) ≈ 0.48, p(1) ≈ 0.44: top-p 0.5 keeps tokens 0 and 1.
        let p = draws(
            SamplerConfig {
                top_p: 0.5,
                ..base.clone()
            },
            &logits,
            2000,
        );
        assert!(p.iter().all(|&t| t < 2));
        // min-p 0.5: token 2 (p ≈ 0.065 < 0.5 · 0.48) is dropped.
        let m = draws(
            SamplerConfig {
                min_p: 0.5,
                ..base.clone()
            },
            &logits,
            2000,
        );
        assert!(m.iter().all(|&t| t < 2));
        // Same seed, same draws; other seed, other draws.
        assert_eq!(all, draws(base.clone(), &logits, 2000));
        assert_ne!(all, draws(SamplerConfig { seed: 7, ..base }, &logits, 2000));
    }

    #[test]
    fn frequencies_follow_the_softmax() {
        let logits = [0.0, (3f32).ln()];
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 42,
            ..SamplerConfig::default()
        };
        let d = draws(cfg, &logits, 20000);
        let ones = d.iter().filter(|&&t| t == 1).count() as f64 / d.len() as f64;
        assert!((ones - 0.75).abs() < 0.02, "{ones}");
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(
            SamplerConfig {
                top_p: 0.0,
                ..SamplerConfig::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            SamplerConfig {
                min_p: 2.0,
                ..SamplerConfig::default()
            }
            .validate()
            .is_err()
        );
        for repeat_penalty in [0.0, 1e-40, f32::INFINITY, f32::NAN] {
            assert!(
                SamplerConfig {
                    repeat_penalty,
                    ..SamplerConfig::default()
                }
                .validate()
                .is_err(),
                "{repeat_penalty}"
            );
        }
        assert!(SamplerConfig::default().validate().is_ok());
    }

    /// Logits that overflow (a tiny penalty on a large logit, or a model's own inf/NaN) give
    /// the most likely token, not the least likely one the draw loop would fall through to.
    #[test]
    fn infinite_logits_draw_the_top_candidate() {
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 1e-37,
            ..SamplerConfig::default()
        });
        // 100 / 1e-37 is past f32::MAX: clamped, so token 1 stays finite and on top.
        for _ in 0..20 {
            assert_eq!(s.sample(&[1.0, 100.0, 2.0, -5.0], &[1]), 1);
        }
        let mut s = Sampler::new(SamplerConfig::default());
        for _ in 0..20 {
            assert_eq!(s.sample(&[0.5, f32::INFINITY, 2.0, f32::INFINITY], &[]), 1);
            let t = s.sample(&[f32::NEG_INFINITY; 4], &[]);
            assert!(t < 4);
        }
    }
}
