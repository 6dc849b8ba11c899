//! `config.json`'s RoPE scaling as llama.cpp's converter writes it into a GGUF: `linear` as
//! two metadata keys, Llama 3.1's `llama3` as a `rope_freqs.weight` tensor of per-pair
//! frequency factors (the runtime divides each pair's angle by its factor). Other kinds
//! (`yarn`, `dynamic`, `longrope`) are refused rather than converted into a model that
//! quietly runs without them.

use serde_json::Value;

/// The RoPE scaling a converted model carries.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RopeScaling {
    /// None (no `rope_scaling`, or type `default`).
    None,
    /// Positions divided by this factor (`llama.rope.scaling.type` = `linear`).
    Linear(f32),
    /// (head_dim / 2,) frequency factors for `rope_freqs.weight`.
    FreqFactors(Vec<f32>),
}

/// The RoPE base: `rope_theta` at the top of `config.json`, or inside the newer
/// `rope_parameters`; 10000 when neither says.
pub(super) fn rope_theta(config: &Value) -> f64 {
    config
        .get("rope_theta")
        .or_else(|| config["rope_parameters"].get("rope_theta"))
        .and_then(Value::as_f64)
        .unwrap_or(10000.0)
}

/// Reads `rope_scaling` (or the newer `rope_parameters`) from `config`; `head_dim` is the
/// rotated width per head. The error says which kind is not supported.
pub(super) fn rope_scaling(config: &Value, head_dim: usize) -> Result<RopeScaling, String> {
    let params = match (&config["rope_scaling"], &config["rope_parameters"]) {
        (Value::Object(p), _) | (Value::Null, Value::Object(p)) => p,
        _ => return Ok(RopeScaling::None),
    };
    let kind = params
        .get("rope_type")
        .or_else(|| params.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_ascii_lowercase();
    let num = |key: &str, default: f64| params.get(key).and_then(Value::as_f64).unwrap_or(default);
    match kind.as_str() {
        "default" => Ok(RopeScaling::None),
        "linear" => {
            let factor = num("factor", 1.0) as f32;
            if !(factor.is_finite() && factor > 0.0) {
                return Err(format!("rope_scaling factor {factor} must be positive"));
            }
            Ok(RopeScaling::Linear(factor))
        }
        "llama3" => {
            let base = rope_theta(config);
            let factors = llama3_factors(
                base as f32,
                head_dim,
                num("factor", 8.0) as f32,
                num("low_freq_factor", 1.0) as f32,
                num("high_freq_factor", 4.0) as f32,
                num("original_max_position_embeddings", 8192.0) as f32,
            );
            if factors.iter().any(|f| !(f.is_finite() && *f > 0.0)) {
                return Err(format!(
                    "rope_scaling {params:?} gives frequency factors that are not positive"
                ));
            }
            Ok(RopeScaling::FreqFactors(factors))
        }
        other => Err(format!(
            "rope_scaling type {other:?} is not supported (default, linear and llama3 are)"
        )),
    }
}

/// Llama 3.1's frequency factors, in f32 as llama.cpp's converter computes them with torch:
/// pair i's frequency is `1 / base^(2i/dim)`; wavelengths shorter than
/// `original / high_freq_factor` keep factor 1, longer than `original / low_freq_factor`
/// take `factor`, and those between blend smoothly.
fn llama3_factors(
    base: f32,
    dim: usize,
    factor: f32,
    low_freq_factor: f32,
    high_freq_factor: f32,
    original: f32,
) -> Vec<f32> {
    let low_freq_wavelen = original / low_freq_factor;
    let high_freq_wavelen = original / high_freq_factor;
    (0..dim / 2)
        .map(|i| {
            let freq = 1.0 / base.powf((2 * i) as f32 / dim as f32);
            let wavelen = 2.0 * std::f32::consts::PI / freq;
            if wavelen < high_freq_wavelen {
                1.0
            } else if wavelen > low_freq_wavelen {
                factor
            } else {
                let smooth =
                    (original / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn llama3_factors_blend_between_the_two_wavelengths() {
        // Llama 3.1 8B's settings on a head of 128.
        let config = json!({"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3",
            "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}});
        let RopeScaling::FreqFactors(f) = rope_scaling(&config, 128).unwrap() else {
            panic!("llama3 gives factors");
        };
        assert_eq!(f.len(), 64);
        // Short wavelengths (< 2048) keep 1, long ones (> 8192) take 8, and the blend
        // between rises monotonically.
        let wavelen =
            |i: usize| 2.0 * std::f64::consts::PI * 500000f64.powf(2.0 * i as f64 / 128.0);
        for (i, &x) in f.iter().enumerate() {
            let w = wavelen(i);
            if w < 2048.0 * 0.999 {
                assert_eq!(x, 1.0, "pair {i}");
            } else if w > 8192.0 * 1.001 {
                assert_eq!(x, 8.0, "pair {i}");
            } else {
                // smooth = (8192 / w - 1) / 3; factor = 1 / ((1 - smooth) / 8 + smooth).
                let smooth = (8192.0 / w - 1.0) / 3.0;
                let want = 1.0 / ((1.0 - smooth) / 8.0 + smooth);
                assert!(
                    (x as f64 - want).abs() < 1e-4 * want,
                    "pair {i}: {x} vs {want}"
                );
            }
        }
        assert!(f.windows(2).all(|w| w[0] <= w[1]));
        assert!(f.iter().any(|&x| x > 1.0 && x < 8.0));
    }

    #[test]
    fn the_base_comes_from_either_place() {
        assert_eq!(rope_theta(&json!({"rope_theta": 5e5})), 5e5);
        assert_eq!(
            rope_theta(&json!({"rope_parameters": {"rope_theta": 5e5}})),
            5e5
        );
        assert_eq!(rope_theta(&json!({})), 10000.0);
    }

    #[test]
    fn other_scalings_are_named_or_refused() {
        assert_eq!(rope_scaling(&json!({}), 64), Ok(RopeScaling::None));
        assert_eq!(
            rope_scaling(
                &json!({"rope_scaling": {"type": "linear", "factor": 4.0}}),
                64
            ),
            Ok(RopeScaling::Linear(4.0))
        );
        let e = rope_scaling(
            &json!({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}),
            64,
        )
        .unwrap_err();
        assert!(e.contains("\"yarn\" is not supported"), "{e}");
        assert!(
            rope_scaling(
                &json!({"rope_scaling": {"type": "linear", "factor": 0}}),
                64
            )
            .is_err()
        );
    }
}
