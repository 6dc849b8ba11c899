//! Calibration and evaluation text for LLM post-training quantization. The Shakespeare corpus
//! is split by play: the tragedies are held out for perplexity, every other play feeds
//! calibration, so no evaluated line was seen while quantizing. Calibration windows are drawn
//! at seeded random offsets, as AutoGPTQ's loaders do.

use smelt_data::shakespeare::PlayIndex;
use smelt_quant::rng::Rng;

/// The category whose plays are held out for evaluation.
pub const HELD_OUT_CATEGORY: &str = "tragedies";

/// `(calibration, evaluation)` text: plays of [`HELD_OUT_CATEGORY`] go to evaluation, the
/// rest to calibration. Errors if an index entry points outside `text` or either side is empty.
pub fn split_plays(text: &str, plays: &[PlayIndex]) -> Result<(String, String), String> {
    let (mut calib, mut eval) = (String::new(), String::new());
    for p in plays {
        let piece = p
            .offset
            .checked_add(p.len)
            .and_then(|end| text.get(p.offset..end))
            .ok_or_else(|| {
                format!(
                    "play {:?} at {}+{} is outside the {}-byte text",
                    p.title,
                    p.offset,
                    p.len,
                    text.len()
                )
            })?;
        let side = if p.category == HELD_OUT_CATEGORY {
            &mut eval
        } else {
            &mut calib
        };
        side.push_str(piece);
        side.push('\n');
    }
    if calib.is_empty() || eval.is_empty() {
        return Err(format!(
            "the play index leaves no {} text",
            if calib.is_empty() {
                "calibration"
            } else {
                "evaluation"
            }
        ));
    }
    Ok((calib, eval))
}

/// `n` windows of `len` tokens from `tokens` at seeded random offsets, each starting with
/// `bos` when the model adds one (it then takes one of the `len` places).
pub fn sample_windows(
    tokens: &[u32],
    n: usize,
    len: usize,
    seed: u64,
    bos: Option<u32>,
) -> Result<Vec<Vec<u32>>, String> {
    let body = len.saturating_sub(usize::from(bos.is_some()));
    if len == 0 || n == 0 {
        return Err("calibration needs at least one window of at least one token".into());
    }
    if tokens.len() <= body {
        return Err(format!(
            "the calibration text has {} tokens, fewer than one window of {len}",
            tokens.len()
        ));
    }
    let mut rng = Rng::new(seed);
    Ok((0..n)
        .map(|_| {
            let start = rng.below(tokens.len() - body);
            bos.into_iter()
                .chain(tokens[start..start + body].iter().copied())
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn play(title: &str, category: &str, offset: usize, len: usize) -> PlayIndex {
        PlayIndex {
            title: title.into(),
            category: category.into(),
            offset,
            len,
        }
    }

    #[test]
    fn tragedies_are_held_out() {
        let text = "comedy text|tragic text";
        let plays = [play("A", "comedies", 0, 11), play("B", "tragedies", 12, 11)];
        let (c, e) = split_plays(text, &plays).unwrap();
        assert_eq!(c, "comedy text\n");
        assert_eq!(e, "tragic text\n");
        let bad = [play("A", "comedies", 0, 11), play("B", "tragedies", 12, 99)];
        assert!(split_plays(text, &bad).unwrap_err().contains("outside"));
    }

    #[test]
    fn windows_are_seeded_and_sized() {
        let toks: Vec<u32> = (0..1000).collect();
        let a = sample_windows(&toks, 4, 16, 1, Some(7)).unwrap();
        assert_eq!(a, sample_windows(&toks, 4, 16, 1, Some(7)).unwrap());
        assert_ne!(a, sample_windows(&toks, 4, 16, 2, Some(7)).unwrap());
        for w in &a {
            assert_eq!(w.len(), 16);
            assert_eq!(w[0], 7);
            assert!(w[1..].windows(2).all(|p| p[1] == p[0] + 1));
        }
        assert!(sample_windows(&toks[..10], 1, 16, 1, None).is_err());
    }
}
