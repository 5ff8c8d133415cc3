//! Result files: atomic writes, `.npy` arrays, tidy CSV traces and run manifests.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed, then renamed over
/// the target. A reader (or a crash) never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f =
            fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        drop(f);
        fs::rename(&tmp, path)
            .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A temporary sibling of `path` (hidden, same extension so encoders that look at it still work).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp{ext}", std::process::id()))
}

/// A shape as a Python tuple, as `.npy` headers and messages about arrays write it: `(3,)`, `(2, 5)`.
pub fn shape_tuple(shape: &[u64]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The `.npy` header (format version 1.0, magic included) of a C-ordered little-endian float32 array
/// of `shape`, padded with spaces so that its length is a multiple of `align` bytes: numpy asks for 64;
/// a streamed trace pads to a fixed size so that its shape can be patched in place. The one writer of
/// `.npy` headers in aimsim.
pub fn npy_header(shape: &[u64], align: usize) -> Vec<u8> {
    let dims = shape_tuple(shape);
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' must be a multiple of `align`.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((align - unpadded % align) % align));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

/// Encodes a C-ordered float32 array as `.npy` (format version 1.0), loadable by `numpy.load`.
pub fn npy_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "shape does not match data"
    );
    let dims: Vec<u64> = shape.iter().map(|d| *d as u64).collect();
    let mut out = npy_header(&dims, 64);
    out.reserve(4 * data.len());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Versions of the crates whose behaviour shapes results (random streams, distributions), pinned
/// exactly in the workspace manifest; recorded in every manifest. A test keeps this list equal to
/// Cargo.lock. (`rand_pcg` is not here: it is only the reference the tests compare `sim::rng::Pcg`
/// with; results come from `sim::rng`, whose code is ours.)
pub const CRATE_VERSIONS: &[(&str, &str)] = &[
    ("rand", "0.10.4"),
    ("rand_distr", "0.6.0"),
    ("toml", "1.2.1+spec-1.1.0"),
    ("plotters", "0.3.7"),
];

/// [`CRATE_VERSIONS`] as the JSON object a manifest records under `crate_versions`.
pub fn crate_versions_json() -> serde_json::Map<String, serde_json::Value> {
    CRATE_VERSIONS
        .iter()
        .map(|(n, v)| (n.to_string(), serde_json::json!(v)))
        .collect()
}

/// Writes `manifest` as pretty-printed JSON to `out/manifest.json` (atomically).
pub fn write_manifest(out: &Path, manifest: &serde_json::Value) -> Result<()> {
    write_atomic(
        &out.join("manifest.json"),
        serde_json::to_string_pretty(manifest)?.as_bytes(),
    )
}

/// Prints `wrote <out> in <seconds> s` (stderr), the last line of a command that writes a folder.
pub fn report_written(out: &Path, started: std::time::Instant) {
    eprintln!(
        "wrote {} in {:.1} s",
        PathBuf::from(out).display(),
        started.elapsed().as_secs_f64()
    );
}

/// Creates the output folder (and parents).
pub fn ensure_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the output folder {}", dir.display()))
}

/// This process's claim on an output folder: the file `.aimsim.lock` in it, created exclusively and
/// removed when the guard is dropped. A second aimsim writing to the same folder would rename its files
/// over the first one's half-way; with the lock it stops before any work and names the holder.
#[derive(Debug)]
pub struct OutLock {
    path: PathBuf,
}

/// Name of the lock file in an output folder.
pub const LOCK_FILE: &str = ".aimsim.lock";

impl Drop for OutLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown host".into())
}

/// False only when the process `pid` of this host is known to be gone (Linux: no `/proc/<pid>`, or one
/// that is not an aimsim, the pid having been reused). Without `/proc` every holder counts as alive.
fn holder_alive(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Err(_) => false,
        Ok(cmd) => {
            let exe = cmd.split(|b| *b == 0).next().unwrap_or_default();
            String::from_utf8_lossy(exe).contains("aimsim")
        }
    }
}

/// Creates `dir` (and parents) and claims it for this process until the guard is dropped. Refuses a
/// folder another live aimsim holds, naming its process, host and command; takes over the lock of a
/// process of this host that is gone (a crash or a kill).
pub fn lock_out(dir: &Path) -> Result<OutLock> {
    ensure_dir(dir)?;
    let path = dir.join(LOCK_FILE);
    let host = host_name();
    let me = format!(
        "pid={}\nhost={host}\ncommand={}\n",
        std::process::id(),
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    for _ in 0..3 {
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(me.as_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                return Ok(OutLock { path });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = fs::read_to_string(&path).unwrap_or_default();
                let field = |k: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(&format!("{k}=")))
                        .unwrap_or("")
                        .to_string()
                };
                let pid: Option<u32> = field("pid").parse().ok();
                let stale = field("host") == host && pid.is_some_and(|p| !holder_alive(p));
                if stale || text.is_empty() && pid.is_none() && retry_empty(&path) {
                    let _ = fs::remove_file(&path);
                    continue;
                }
                anyhow::bail!(
                    "{} is in use by another aimsim (pid {} on {}: {}); wait for it to finish or \
                     choose another --out (if that process no longer runs, delete {})",
                    dir.display(),
                    pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
                    field("host"),
                    field("command"),
                    path.display()
                );
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {}", path.display()));
            }
        }
    }
    anyhow::bail!(
        "cannot claim {}: its lock file keeps reappearing",
        dir.display()
    )
}

/// An empty lock file is one being written right now, or one left by a process killed between
/// creating and writing it: waits a moment, and calls it stale if it is still empty.
fn retry_empty(path: &Path) -> bool {
    std::thread::sleep(std::time::Duration::from_millis(200));
    fs::read_to_string(path)
        .map(|t| t.is_empty())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_folder_is_held_by_one_process() {
        let dir = std::env::temp_dir().join(format!("aimsim-lock-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let held = lock_out(&dir).unwrap();
        let text = fs::read_to_string(dir.join(LOCK_FILE)).unwrap();
        assert!(
            text.contains(&format!("pid={}", std::process::id())),
            "{text}"
        );
        drop(held);
        assert!(!dir.join(LOCK_FILE).exists(), "the guard removes its lock");
        // A lock left by a process that is gone is taken over.
        fs::write(
            dir.join(LOCK_FILE),
            format!("pid=4294967295\nhost={}\ncommand=aimsim run\n", host_name()),
        )
        .unwrap();
        let again = lock_out(&dir).unwrap();
        drop(again);
        // A lock of another host is respected, naming its holder.
        fs::write(
            dir.join(LOCK_FILE),
            "pid=12\nhost=elsewhere.example\ncommand=aimsim sweep s.toml\n",
        )
        .unwrap();
        let e = lock_out(&dir).unwrap_err().to_string();
        assert!(
            e.contains("pid 12 on elsewhere.example: aimsim sweep s.toml"),
            "{e}"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn npy_header_is_aligned_and_parsable() {
        let bytes = npy_f32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
        assert!(header.contains("'shape': (2, 3)"), "{header}");
        assert!(header.ends_with('\n'));
        let last = &bytes[bytes.len() - 4..];
        assert_eq!(f32::from_le_bytes(last.try_into().unwrap()), 6.5);
        assert_eq!(bytes.len(), 10 + hlen + 24);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("aimsim-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.csv");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn crate_versions_match_the_lock_file() {
        let lock = include_str!("../Cargo.lock");
        for (name, version) in CRATE_VERSIONS {
            let entry = format!("name = \"{name}\"\nversion = \"{version}\"");
            assert!(
                lock.contains(&entry),
                "Cargo.lock has no {name} {version}; update CRATE_VERSIONS"
            );
        }
    }
}
