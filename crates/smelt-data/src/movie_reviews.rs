//! Movie-review sentences with human sentiment ratings (Hutto & Gilbert, ICWSM 2014: 10,605
//! Rotten Tomatoes snippets, each rated by 20 people on [-4, +4]).
//!
//! Binarized by the sign of the mean rating (zeros dropped) and split once, at fetch time, into
//! train / validation / test with a fixed seed and a shuffle of our own (SplitMix64 + Fisher–Yates),
//! so the split never changes with a dependency's version.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Seed of the recorded split.
pub const SPLIT_SEED: u64 = 20_141_201;
/// Fractions of the examples in train and validation; test gets the rest.
pub const SPLIT_FRACTIONS: (f64, f64) = (0.8, 0.1);

/// One rated sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    /// Id in the original file.
    pub id: u32,
    /// Mean human rating in [-4, +4].
    pub rating: f32,
    /// `true` when the rating is positive.
    pub positive: bool,
    /// The sentence.
    pub text: String,
}

/// Counts written next to the split so a reader can check it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SplitInfo {
    /// Shuffle seed.
    pub seed: u64,
    /// Lines in the source file.
    pub source_lines: usize,
    /// Sentences dropped because their mean rating is exactly 0.
    pub dropped_neutral: usize,
    /// Positive / negative sentences kept.
    pub positive: usize,
    /// Negative sentences kept.
    pub negative: usize,
    /// `[examples, positives]` per split.
    pub train: [usize; 2],
    /// `[examples, positives]` in validation.
    pub val: [usize; 2],
    /// `[examples, positives]` in test.
    pub test: [usize; 2],
}

/// Parses `id \t rating \t sentence` lines (CRLF tolerated). Returns the rated sentences with a
/// non-zero rating and the number dropped as neutral.
pub fn parse(text: &str) -> Result<(Vec<Review>, usize, usize), String> {
    let mut out = Vec::new();
    let (mut lines, mut neutral) = (0, 0);
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        lines += 1;
        let mut f = line.splitn(3, '\t');
        let (Some(id), Some(rating), Some(sentence)) = (f.next(), f.next(), f.next()) else {
            return Err(format!("line {}: expected 3 tab-separated fields", n + 1));
        };
        let id: u32 = id
            .trim()
            .parse()
            .map_err(|_| format!("line {}: bad id {id:?}", n + 1))?;
        let rating: f32 = rating
            .trim()
            .parse()
            .map_err(|_| format!("line {}: bad rating {rating:?}", n + 1))?;
        if rating == 0.0 {
            neutral += 1;
            continue;
        }
        out.push(Review {
            id,
            rating,
            positive: rating > 0.0,
            text: sentence.trim().to_string(),
        });
    }
    Ok((out, lines, neutral))
}

/// SplitMix64: tiny, well-mixed, and fixed forever (unlike a crate's default RNG).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Shuffles with `seed` and cuts into (train, val, test) by [`SPLIT_FRACTIONS`].
pub fn split(mut reviews: Vec<Review>, seed: u64) -> [Vec<Review>; 3] {
    let mut rng = SplitMix64(seed);
    for i in (1..reviews.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        reviews.swap(i, j);
    }
    let n = reviews.len();
    let n_train = (n as f64 * SPLIT_FRACTIONS.0).round() as usize;
    let n_val = (n as f64 * SPLIT_FRACTIONS.1).round() as usize;
    let test = reviews.split_off(n_train + n_val);
    let val = reviews.split_off(n_train);
    [reviews, val, test]
}

/// Columns of the split files.
pub const TSV_HEADER: &str = "id\tlabel\trating\tsentence";

/// Writes `train.tsv`, `val.tsv`, `test.tsv` and `split.json` into `dir` from the source file.
pub fn derive_split(source: &Path, dir: &Path) -> Result<SplitInfo, String> {
    let text = std::fs::read_to_string(source).map_err(|e| format!("{}: {e}", source.display()))?;
    let (reviews, lines, neutral) = parse(&text)?;
    let positive = reviews.iter().filter(|r| r.positive).count();
    let negative = reviews.len() - positive;
    let parts = split(reviews, SPLIT_SEED);
    let count = |v: &[Review]| [v.len(), v.iter().filter(|r| r.positive).count()];
    for (name, part) in ["train", "val", "test"].iter().zip(&parts) {
        let mut tsv = String::from(TSV_HEADER);
        tsv.push('\n');
        for r in part {
            tsv.push_str(&format!(
                "{}\t{}\t{}\t{}\n",
                r.id, r.positive as u8, r.rating, r.text
            ));
        }
        smelt_files::write_atomic(dir.join(format!("{name}.tsv")), tsv.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let info = SplitInfo {
        seed: SPLIT_SEED,
        source_lines: lines,
        dropped_neutral: neutral,
        positive,
        negative,
        train: count(&parts[0]),
        val: count(&parts[1]),
        test: count(&parts[2]),
    };
    let json = serde_json::to_vec_pretty(&info).map_err(|e| e.to_string())?;
    smelt_files::write_atomic(dir.join("split.json"), &json).map_err(|e| e.to_string())?;
    Ok(info)
}

/// Reads one split file written by [`derive_split`].
pub fn read_split(path: &Path) -> Result<Vec<Review>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.splitn(4, '\t').collect();
        let [id, label, rating, sentence] = f[..] else {
            return Err(format!("{}:{}: expected 4 fields", path.display(), n + 1));
        };
        let parse_err = || format!("{}:{}: bad number", path.display(), n + 1);
        out.push(Review {
            id: id.parse().map_err(|_| parse_err())?,
            positive: label == "1",
            rating: rating.parse().map_err(|_| parse_err())?,
            text: sentence.to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_drops_neutral_and_handles_crlf() {
        let (r, lines, neutral) =
            parse("1\t2.5\tGood film.\r\n2\t0\tMeh.\r\n3\t-1.2\tBad\tfilm.\r\n").unwrap();
        assert_eq!((lines, neutral, r.len()), (3, 1, 2));
        assert!(r[0].positive && !r[1].positive);
        assert_eq!(r[1].text, "Bad\tfilm.");
        assert!(parse("1\tx\ty").is_err());
    }

    #[test]
    fn split_is_a_seeded_partition() {
        let reviews: Vec<Review> = (0..1000)
            .map(|i| Review {
                id: i,
                rating: 1.0,
                positive: true,
                text: String::new(),
            })
            .collect();
        let a = split(reviews.clone(), 1);
        let b = split(reviews.clone(), 1);
        let c = split(reviews, 2);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!([a[0].len(), a[1].len(), a[2].len()], [800, 100, 100]);
        let mut ids: Vec<u32> = a.iter().flatten().map(|r| r.id).collect();
        ids.sort();
        assert_eq!(ids, (0..1000).collect::<Vec<_>>());
    }
}
