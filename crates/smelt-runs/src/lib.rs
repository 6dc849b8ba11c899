//! Experiment records: what a run was given, how it was set up, what it measured and how long it
//! took, written as one JSON file per run into a runs directory.
//!
//! Every experiment verb builds a [`RunRecord`], fills it as it goes and calls
//! [`RunRecord::write`] at the end; `smelt report` (later) reads the directory back. Records carry
//! the build (version, git commit, cargo features) and the host (CPU features, cores) because a
//! number without its machine and commit cannot be compared with anything.

#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Format version of the JSON written by [`RunRecord::write`]; bump on incompatible changes.
pub const RECORD_SCHEMA: u32 = 1;

/// Environment variable that overrides the default runs directory (`runs/` in the working directory).
pub const RUNS_DIR_ENV: &str = "SMELT_RUNS";

/// Where records go when the caller does not say: `$SMELT_RUNS`, else `./runs`.
pub fn default_runs_dir() -> PathBuf {
    std::env::var_os(RUNS_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("runs"))
}

/// The build and host a record was produced on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Versions {
    /// smelt's package version.
    pub smelt: String,
    /// `git describe`-style commit of the build, `unknown` outside a git checkout.
    pub git_commit: String,
    /// Cargo features the binary was built with.
    pub features: Vec<String>,
    /// Target triple-ish description: `x86_64-linux`.
    pub target: String,
    /// CPU features detected at run time that the kernels care about.
    pub cpu_features: Vec<String>,
    /// Logical cores available to this process.
    pub cores: usize,
}

impl Versions {
    /// Describes this build; `smelt_version`, `git_commit` and `features` come from the binary.
    pub fn current(smelt_version: &str, git_commit: &str, features: &[&str]) -> Self {
        Self {
            smelt: smelt_version.to_string(),
            git_commit: git_commit.to_string(),
            features: features.iter().map(|s| s.to_string()).collect(),
            target: format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
            cpu_features: detected_cpu_features(),
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }
}

/// The SIMD features present on this CPU, by the names the kernels dispatch on.
pub fn detected_cpu_features() -> Vec<String> {
    #[allow(unused_mut)]
    let mut found: Vec<&str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$( if std::arch::is_x86_feature_detected!($f) { found.push($f); } )*};
        }
        probe!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avx512bf16",
            "avxvnni"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            found.push("neon");
        }
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            found.push("dotprod");
        }
    }
    found.into_iter().map(String::from).collect()
}

/// One experiment run: inputs, settings, metrics, timings and versions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    /// [`RECORD_SCHEMA`] at the time of writing.
    pub schema: u32,
    /// The verb that ran, e.g. `tour` or `lenet ptq`.
    pub verb: String,
    /// Start time, RFC 3339 UTC.
    pub started_at: String,
    /// What went in: files (with hashes), assets, datasets.
    pub inputs: BTreeMap<String, Value>,
    /// Knobs the run used, defaults included, so a rerun can reproduce it.
    pub settings: BTreeMap<String, Value>,
    /// What came out: accuracies, errors, sizes, throughputs.
    pub metrics: BTreeMap<String, Value>,
    /// Wall time of named phases, in seconds.
    pub timings: BTreeMap<String, f64>,
    /// Build and host.
    pub versions: Versions,
    /// Files the run wrote (models, plots), as given.
    pub outputs: Vec<String>,
    #[serde(skip)]
    clock: Option<Instant>,
}

impl RunRecord {
    /// Starts a record for `verb` now.
    pub fn start(verb: impl Into<String>, versions: Versions) -> Self {
        Self {
            schema: RECORD_SCHEMA,
            verb: verb.into(),
            started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            inputs: BTreeMap::new(),
            settings: BTreeMap::new(),
            metrics: BTreeMap::new(),
            timings: BTreeMap::new(),
            versions,
            outputs: Vec::new(),
            clock: Some(Instant::now()),
        }
    }

    /// Records an input (a path, an asset name with its hash, a dataset split).
    pub fn input(&mut self, key: &str, value: impl Serialize) -> &mut Self {
        self.inputs.insert(key.to_string(), to_value(value));
        self
    }

    /// Records a setting.
    pub fn setting(&mut self, key: &str, value: impl Serialize) -> &mut Self {
        self.settings.insert(key.to_string(), to_value(value));
        self
    }

    /// Records a metric.
    pub fn metric(&mut self, key: &str, value: impl Serialize) -> &mut Self {
        self.metrics.insert(key.to_string(), to_value(value));
        self
    }

    /// Records the duration of a phase.
    pub fn timing(&mut self, key: &str, elapsed: Duration) -> &mut Self {
        self.timings.insert(key.to_string(), elapsed.as_secs_f64());
        self
    }

    /// Runs `f`, records its wall time under `key` and returns its result.
    pub fn timed<T>(&mut self, key: &str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.timing(key, t.elapsed());
        out
    }

    /// Records a file the run produced.
    pub fn output(&mut self, path: impl AsRef<Path>) -> &mut Self {
        self.outputs.push(path.as_ref().display().to_string());
        self
    }

    /// Writes the record as `<dir>/<utc timestamp>-<verb>.json` (atomically; never overwrites an
    /// earlier record) and returns the path. Adds a `total` timing since [`RunRecord::start`].
    pub fn write(&mut self, dir: impl AsRef<Path>) -> std::io::Result<PathBuf> {
        if let Some(t0) = self.clock {
            self.timings
                .entry("total".into())
                .or_insert(t0.elapsed().as_secs_f64());
        }
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)?;
        let stamp: String = self
            .started_at
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let verb: String = self
            .verb
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        for n in 0u32.. {
            let name = if n == 0 {
                format!("{stamp}-{verb}.json")
            } else {
                format!("{stamp}-{verb}-{n}.json")
            };
            let path = dir.join(name);
            // Two runs started in the same second race for the name: the loser takes the
            // next one instead of replacing the winner's record.
            match smelt_files::write_new(&path, &json) {
                Ok(()) => return Ok(path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        unreachable!("u32 range of record names exhausted")
    }

    /// Reads a record back.
    pub fn read(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

fn to_value(v: impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or_else(|e| Value::String(format!("<unserializable: {e}>")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = RunRecord::start("unit test", Versions::current("0.0.0", "abc", &[]));
        r.input("asset", "mnist")
            .setting("seed", 7)
            .metric("accuracy", 0.99)
            .timing("phase", Duration::from_millis(250));
        let p1 = r.write(dir.path()).unwrap();
        let p2 = r.write(dir.path()).unwrap();
        assert_ne!(p1, p2);
        let back = RunRecord::read(&p1).unwrap();
        assert_eq!(back.verb, "unit test");
        assert_eq!(back.settings["seed"], 7);
        assert_eq!(back.metrics["accuracy"], 0.99);
        assert_eq!(back.timings["phase"], 0.25);
        assert!(back.timings.contains_key("total"));
        assert_eq!(back.versions.git_commit, "abc");
        assert!(
            p1.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with("-unit-test.json")
        );
    }
}
