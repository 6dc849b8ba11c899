//! File plumbing that every smelt crate shares: crash-safe writes and content hashes.
//!
//! smelt never leaves a half-written model, dataset or record at a target path. Every writer goes
//! through [`AtomicFile`]: bytes land in a temporary file in the *same directory* (so the final
//! `rename` cannot cross a filesystem), the file is fsynced, renamed over the target, and the
//! directory is fsynced so the rename itself survives a power cut.

#![deny(missing_docs)]

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A file being written under a temporary name; it appears at its target path only on
/// [`AtomicFile::commit`]. Dropping it without committing deletes the temporary file.
pub struct AtomicFile {
    target: PathBuf,
    writer: BufWriter<tempfile::NamedTempFile>,
}

impl AtomicFile {
    /// Starts writing `target`; creates its parent directories if needed.
    pub fn create(target: impl AsRef<Path>) -> io::Result<Self> {
        let target = target.as_ref().to_path_buf();
        let dir = parent_dir(&target);
        std::fs::create_dir_all(&dir)?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(&dir)?;
        Ok(Self {
            target,
            writer: BufWriter::with_capacity(1 << 20, tmp),
        })
    }

    /// Flushes, fsyncs and renames the temporary file over the target.
    pub fn commit(self) -> io::Result<()> {
        self.finish(false)
    }

    /// [`AtomicFile::commit`], but fails with [`io::ErrorKind::AlreadyExists`] (leaving both
    /// files as they were) if the target exists, even when another process creates it in the
    /// meantime: records named by the second they start in must not replace each other.
    pub fn commit_new(self) -> io::Result<()> {
        self.finish(true)
    }

    fn finish(self, keep_existing: bool) -> io::Result<()> {
        let tmp = self.writer.into_inner().map_err(|e| e.into_error())?;
        // Temporary files are created 0600; a finished output is an ordinary 0644 file.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        }
        tmp.as_file().sync_all()?;
        if keep_existing {
            tmp.persist_noclobber(&self.target).map_err(|e| e.error)?;
        } else {
            tmp.persist(&self.target).map_err(|e| e.error)?;
        }
        sync_dir(&parent_dir(&self.target));
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// Writes `bytes` to `target` atomically (temporary name, fsync, rename).
pub fn write_atomic(target: impl AsRef<Path>, bytes: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(target)?;
    f.write_all(bytes)?;
    f.commit()
}

/// Writes `bytes` to `target` atomically, failing with [`io::ErrorKind::AlreadyExists`] if
/// `target` exists ([`AtomicFile::commit_new`]).
pub fn write_new(target: impl AsRef<Path>, bytes: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(target)?;
    f.write_all(bytes)?;
    f.commit_new()
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Best-effort fsync of a directory so a rename inside it is durable. Some filesystems refuse
/// to open directories for syncing; that only weakens durability, so errors are ignored.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A writer that hashes (SHA-256) and counts everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Returns the inner writer, the lower-case hex sha256 and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex(&self.hasher.finalize()), self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Lower-case hex SHA-256 of everything `reader` yields, and the number of bytes read.
pub fn sha256_reader(mut reader: impl Read) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), total))
}

/// Lower-case hex SHA-256 of a file's contents, and its size in bytes.
pub fn sha256_file(path: impl AsRef<Path>) -> io::Result<(String, u64)> {
    sha256_reader(File::open(path)?)
}

/// Lower-case hex SHA-256 of a byte slice.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Formats a byte count for people: `98.4 MB`, `512 B`. Decimal units, as package indexes use.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_known_vector() {
        // FIPS 180-2 appendix B.1 test vector.
        assert_eq!(
            sha256_bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn atomic_write_replaces_target_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub/model.bin");
        write_atomic(&target, b"first").unwrap();
        write_atomic(&target, b"second").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "stray files: {names:?}");
    }

    #[test]
    fn a_new_file_never_replaces_an_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("record.json");
        write_new(&target, b"first").unwrap();
        let e = write_new(&target, b"second").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&target).unwrap(), b"first");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn uncommitted_file_never_appears() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        {
            let mut f = AtomicFile::create(&target).unwrap();
            f.write_all(b"partial").unwrap();
            // dropped without commit, as on an error path
        }
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn hashing_writer_agrees_with_sha256_bytes() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"ab").unwrap();
        w.write_all(b"c").unwrap();
        let (inner, sha, n) = w.finish();
        assert_eq!((inner.as_slice(), n), (&b"abc"[..], 3));
        assert_eq!(sha, sha256_bytes(b"abc"));
    }

    #[test]
    fn human_bytes_uses_decimal_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(98_362_432), "98.4 MB");
    }
}
