//! Walks the members of a downloaded package, whatever its container: a wheel (zip), an sdist
//! (tar.gz) or a Debian package (through `dpkg-deb --fsys-tarfile`, which ships with every
//! machine that has `apt-get`).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

/// Container format of a package file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// Zip (Python wheels).
    Zip,
    /// Gzipped tar (Python sdists).
    TarGz,
    /// Debian `.deb`.
    Deb,
}

/// Calls `visit(path, size, reader)` for every regular file in the archive. Paths use `/`,
/// without a leading `./`. `visit` returns `false` to skip the rest of the archive.
pub fn for_each_file(
    archive: &Path,
    container: Container,
    mut visit: impl FnMut(&str, u64, &mut dyn Read) -> Result<bool, String>,
) -> Result<(), String> {
    let open = || std::fs::File::open(archive).map_err(|e| format!("{}: {e}", archive.display()));
    match container {
        Container::Zip => {
            let mut zip = zip::ZipArchive::new(std::io::BufReader::new(open()?))
                .map_err(|e| format!("{}: not a valid wheel/zip: {e}", archive.display()))?;
            for i in 0..zip.len() {
                let mut f = zip
                    .by_index(i)
                    .map_err(|e| format!("{}: member {i}: {e}", archive.display()))?;
                if !f.is_file() {
                    continue;
                }
                let name = f
                    .name()
                    .map_err(|e| format!("{}: member {i}: {e}", archive.display()))?
                    .trim_start_matches("./")
                    .to_string();
                let size = f.size();
                if !visit(&name, size, &mut f)? {
                    break;
                }
            }
            Ok(())
        }
        Container::TarGz => {
            let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(open()?));
            walk_tar(tar::Archive::new(gz), archive, &mut visit)
        }
        Container::Deb => {
            let mut child = Command::new("dpkg-deb")
                .arg("--fsys-tarfile")
                .arg(archive)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| {
                    format!("could not run dpkg-deb to unpack {}: {e}; it comes with Debian's dpkg (apt-get install dpkg)", archive.display())
                })?;
            let stdout = child.stdout.take().expect("stdout was piped");
            let walked = walk_tar(tar::Archive::new(stdout), archive, &mut visit);
            // Stopping early closes the pipe; dpkg-deb then exits with an error we do not care about.
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            walked?;
            if !out.status.success() && !out.stderr.is_empty() {
                let msg = String::from_utf8_lossy(&out.stderr);
                if !msg.contains("Broken pipe") {
                    return Err(format!(
                        "dpkg-deb failed on {}: {}",
                        archive.display(),
                        msg.trim()
                    ));
                }
            }
            Ok(())
        }
    }
}

fn walk_tar<R: Read>(
    mut tar: tar::Archive<R>,
    archive: &Path,
    visit: &mut impl FnMut(&str, u64, &mut dyn Read) -> Result<bool, String>,
) -> Result<(), String> {
    let ctx = |e: std::io::Error| format!("{}: {e}", archive.display());
    for entry in tar.entries().map_err(ctx)? {
        let mut entry = entry.map_err(ctx)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(ctx)?.to_string_lossy().into_owned();
        let name = name.trim_start_matches("./").to_string();
        let size = entry.size();
        if !visit(&name, size, &mut entry)? {
            break;
        }
    }
    Ok(())
}

/// Checks that a relative path from an archive stays inside the directory it is extracted to
/// (no `..`, no absolute paths, no empty components): the "zip slip" guard.
pub fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_slip_paths_are_refused() {
        assert!(is_safe_relative("model/config.json"));
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "c:\\x",
            "a\\..\\b",
        ] {
            assert!(!is_safe_relative(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn walks_zip_and_targz() {
        let dir = tempfile::tempdir().unwrap();
        let zpath = dir.path().join("a.whl");
        {
            let mut w = zip::ZipWriter::new(std::fs::File::create(&zpath).unwrap());
            let opts = zip::write::SimpleFileOptions::default();
            w.add_directory("pkg/", opts).unwrap();
            w.start_file("pkg/x.txt", opts).unwrap();
            std::io::Write::write_all(&mut w, b"hello").unwrap();
            w.finish().unwrap();
        }
        let mut seen = Vec::new();
        for_each_file(&zpath, Container::Zip, |name, size, r| {
            let mut s = String::new();
            r.read_to_string(&mut s).unwrap();
            seen.push((name.to_string(), size, s));
            Ok(true)
        })
        .unwrap();
        assert_eq!(seen, vec![("pkg/x.txt".into(), 5, "hello".into())]);

        let tpath = dir.path().join("a.tar.gz");
        {
            let gz = flate2::write::GzEncoder::new(
                std::fs::File::create(&tpath).unwrap(),
                flate2::Compression::fast(),
            );
            let mut b = tar::Builder::new(gz);
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, "./p/y.txt", &b"abc"[..]).unwrap();
            b.into_inner().unwrap().finish().unwrap();
        }
        let mut names = Vec::new();
        for_each_file(&tpath, Container::TarGz, |name, _, _| {
            names.push(name.to_string());
            Ok(true)
        })
        .unwrap();
        assert_eq!(names, vec!["p/y.txt"]);
    }

    #[test]
    fn garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.whl");
        std::fs::write(&p, b"not a zip at all").unwrap();
        assert!(for_each_file(&p, Container::Zip, |_, _, _| Ok(true)).is_err());
        assert!(for_each_file(&p, Container::TarGz, |_, _, _| Ok(true)).is_err());
    }
}
