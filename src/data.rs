//! IDX datasets on disk (MNIST, Fashion-MNIST, or any set in the same format): finding their folder
//! ([`find_data_dir`]: the scenario's folder, `AIMSIM_DATA`, the system folder) and reading the four
//! files, raw or gzip-compressed, into an `aimsim_networks::data::Dataset` ([`load_idx`]).
//!
//! The IDX reader never panics on bad input: a missing, truncated or corrupt file gives a [`DataError`]
//! whose message names the file, the byte offset where reading went wrong and what was expected there.
//! Huge dimensions declared in a header allocate nothing until the bytes they promise have actually
//! been read. The search order for data folders is documented on [`find_data_dir`] and in
//! `docs/datasets.md`.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

use aimsim_networks::data::Dataset;
use flate2::read::MultiGzDecoder;

/// Where in a file something went wrong: the file and the byte offset. For a `.gz` file the offset
/// counts bytes of the decompressed data (the IDX content), which is what the IDX header describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub path: PathBuf,
    /// Byte offset (in the decompressed data for `.gz` files).
    pub offset: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: byte {}", self.path.display(), self.offset)?;
        if is_gz(&self.path) {
            write!(f, " of the decompressed data")?;
        }
        Ok(())
    }
}

/// Why a dataset could not be found or read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// No file or folder was found at any of the places searched.
    #[error("{what} not found; tried: {}{}", list_paths(.tried), hint_suffix(.hint))]
    NotFound {
        /// What was looked for ("file train-images-idx3-ubyte", "folder of dataset mnist").
        what: String,
        /// Every path tried, in order.
        tried: Vec<PathBuf>,
        /// How to get the data (may be empty).
        hint: String,
    },
    /// Opening or reading a file failed (permissions, an I/O error, a corrupt gzip stream).
    #[error("{at}: {what}: {source}")]
    Io {
        /// The file and offset reached.
        at: Location,
        /// What was being done ("cannot open", "corrupt gzip data or read error").
        what: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The magic number at offset 0 is not the one of the expected IDX file type.
    #[error("{at}: expected IDX magic 0x{expected:08x} ({kind}), found 0x{found:08x}{note}")]
    BadMagic {
        /// The file (offset 0).
        at: Location,
        /// The magic expected.
        expected: u32,
        /// The value found.
        found: u32,
        /// Kind of file expected ("images", "labels").
        kind: &'static str,
        /// Extra explanation (e.g. that the file looks gzip-compressed), may be empty.
        note: String,
    },
    /// The file ends before a field or section it must contain.
    #[error("{at}: expected {expected}, file ends after {got} of them")]
    Truncated {
        /// The file and the offset where the field or section starts.
        at: Location,
        /// What was expected there ("47040000 pixel bytes (60000 images of 28 x 28)").
        expected: String,
        /// How many of the expected bytes were present.
        got: u64,
    },
    /// A header field or the file's length is inconsistent with what it must be.
    #[error("{at}: {message}")]
    Invalid {
        /// The file and the offset of the offending field.
        at: Location,
        /// What was expected and what was found.
        message: String,
    },
}

impl DataError {
    /// The file and offset the error is about, where it is about one place in one file.
    pub fn location(&self) -> Option<&Location> {
        match self {
            DataError::NotFound { .. } => None,
            DataError::Io { at, .. }
            | DataError::BadMagic { at, .. }
            | DataError::Truncated { at, .. }
            | DataError::Invalid { at, .. } => Some(at),
        }
    }
}

fn list_paths(p: &[PathBuf]) -> String {
    if p.is_empty() {
        return "(nothing)".into();
    }
    p.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn hint_suffix(h: &str) -> String {
    if h.is_empty() {
        String::new()
    } else {
        format!(". {h}")
    }
}

fn is_gz(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "gz")
}

/// IDX magic of an unsigned-byte 3-dimensional array (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// IDX magic of an unsigned-byte 1-dimensional array (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// The four IDX files of a dataset, by their canonical (uncompressed) names.
pub const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// The names under which the IDX file `base` (one of [`IDX_FILES`]) is accepted, in order of
/// preference: raw, gzip, then the dotted spelling some mirrors use (`train-images.idx3-ubyte`) raw and
/// gzip.
fn candidates(dir: &Path, base: &str) -> Vec<PathBuf> {
    let dotted = base.replacen("-idx", ".idx", 1);
    vec![
        dir.join(base),
        dir.join(format!("{base}.gz")),
        dir.join(&dotted),
        dir.join(format!("{dotted}.gz")),
    ]
}

/// The file under which `base` exists in `dir`, or every path tried.
fn locate(dir: &Path, base: &str) -> Result<PathBuf, Vec<PathBuf>> {
    let c = candidates(dir, base);
    match c.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => Err(c),
    }
}

fn has_all_files(dir: &Path) -> bool {
    IDX_FILES.iter().all(|b| locate(dir, b).is_ok())
}

fn install_hint(name: &str) -> String {
    let mut h = String::new();
    if name == "fashion-mnist" {
        h.push_str("Install it with `apt-get install dataset-fashion-mnist` (files go to /usr/share/datasets/fashion-mnist), or ");
    } else {
        h.push_str("Put the four IDX files (");
        h.push_str(&IDX_FILES.join(", "));
        h.push_str(", each raw or .gz) in a folder and ");
    }
    h.push_str("point the scenario's data_dir or the AIMSIM_DATA environment variable at the folder (or at its parent holding a `");
    h.push_str(name);
    h.push_str("/` subfolder)");
    h
}

/// System-wide folder searched last: Debian's dataset packages install under it.
pub const SYSTEM_DATA_ROOT: &str = "/usr/share/datasets";

/// Resolves the folder holding the IDX files of dataset `name` (e.g. "fashion-mnist", "mnist").
///
/// Search order:
/// 1. `scenario_value`, when given: the folder itself, then its `<name>/` subfolder. An explicit folder
///    is authoritative: if neither holds the four files, this is an error (no silent fallback to another
///    copy of the data).
/// 2. The `AIMSIM_DATA` environment variable, when set and not empty: `$AIMSIM_DATA/<name>/`, then
///    `$AIMSIM_DATA` itself.
/// 3. `/usr/share/datasets/<name>` (where Debian's `dataset-fashion-mnist` package installs
///    Fashion-MNIST).
///
/// A folder matches when all four IDX files exist in it, each raw or `.gz`. The error lists every folder
/// tried and how to get the data.
pub fn find_data_dir(scenario_value: Option<&Path>, name: &str) -> Result<PathBuf, DataError> {
    let env = std::env::var_os("AIMSIM_DATA").map(PathBuf::from);
    find_data_dir_in(
        scenario_value,
        env.as_deref(),
        Path::new(SYSTEM_DATA_ROOT),
        name,
    )
}

/// [`find_data_dir`] with the environment variable's value and the system root passed in.
fn find_data_dir_in(
    explicit: Option<&Path>,
    env: Option<&Path>,
    system_root: &Path,
    name: &str,
) -> Result<PathBuf, DataError> {
    let mut tried = Vec::new();
    let not_found = |tried: Vec<PathBuf>| {
        // A folder that holds some of the files: say which are missing there, not "not found".
        for d in &tried {
            let missing: Vec<&str> = IDX_FILES
                .iter()
                .copied()
                .filter(|b| locate(d, b).is_err())
                .collect();
            if missing.len() < IDX_FILES.len() {
                return DataError::NotFound {
                    what: format!(
                        "{} of dataset {name} (the folder {} holds the other IDX files)",
                        missing.join(", "),
                        d.display()
                    ),
                    tried: missing.iter().map(|m| d.join(m)).collect(),
                    hint: format!("Each file may be raw or .gz. {}", install_hint(name)),
                };
            }
        }
        DataError::NotFound {
            what: format!("folder with the IDX files of dataset {name}"),
            tried,
            hint: install_hint(name),
        }
    };
    if let Some(dir) = explicit {
        for d in [dir.to_path_buf(), dir.join(name)] {
            if has_all_files(&d) {
                return Ok(d);
            }
            tried.push(d);
        }
        return Err(not_found(tried));
    }
    if let Some(root) = env.filter(|p| !p.as_os_str().is_empty()) {
        for d in [root.join(name), root.to_path_buf()] {
            if has_all_files(&d) {
                return Ok(d);
            }
            tried.push(d);
        }
    }
    let d = system_root.join(name);
    if has_all_files(&d) {
        return Ok(d);
    }
    tried.push(d);
    Err(not_found(tried))
}

/// A byte source that counts how far it has read, for error offsets.
struct Source {
    reader: Box<dyn Read>,
    path: PathBuf,
    offset: u64,
}

/// Bytes requested from the reader at a time while reading a section whose declared size is not yet
/// known to be backed by data.
const CHUNK: usize = 1 << 20;

impl Source {
    fn open(path: &Path) -> Result<Source, DataError> {
        let f = File::open(path).map_err(|e| DataError::Io {
            at: Location {
                path: path.to_path_buf(),
                offset: 0,
            },
            what: "cannot open",
            source: e,
        })?;
        let f = BufReader::with_capacity(1 << 16, f);
        let reader: Box<dyn Read> = if is_gz(path) {
            Box::new(MultiGzDecoder::new(f))
        } else {
            Box::new(f)
        };
        Ok(Source {
            reader,
            path: path.to_path_buf(),
            offset: 0,
        })
    }

    fn at(&self, offset: u64) -> Location {
        Location {
            path: self.path.clone(),
            offset,
        }
    }

    fn io_error(&self, e: io::Error) -> DataError {
        DataError::Io {
            at: self.at(self.offset),
            what: if is_gz(&self.path) {
                "corrupt gzip data or read error"
            } else {
                "read error"
            },
            source: e,
        }
    }

    /// Reads up to `buf.len()` bytes, stopping early only at end of file; returns how many were read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, DataError> {
        let mut n = 0;
        while n < buf.len() {
            match self.reader.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => {
                    n += k;
                    self.offset += k as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error(e)),
            }
        }
        Ok(n)
    }

    /// Reads a big-endian u32 field described by `what`.
    fn u32(&mut self, what: &str) -> Result<u32, DataError> {
        let start = self.offset;
        let mut b = [0u8; 4];
        let n = self.fill(&mut b)?;
        if n < 4 {
            return Err(DataError::Truncated {
                at: self.at(start),
                expected: format!("4 bytes of {what}"),
                got: n as u64,
            });
        }
        Ok(u32::from_be_bytes(b))
    }

    /// Reads exactly `len` bytes described by `what`, growing the buffer only as data arrives.
    fn section(&mut self, len: u64, what: &str) -> Result<Vec<u8>, DataError> {
        let start = self.offset;
        let mut out: Vec<u8> = Vec::new();
        let mut remaining = len;
        while remaining > 0 {
            let want = remaining.min(CHUNK as u64) as usize;
            let old = out.len();
            out.resize(old + want, 0);
            let n = self.fill(&mut out[old..])?;
            out.truncate(old + n);
            remaining -= n as u64;
            if n < want {
                return Err(DataError::Truncated {
                    at: self.at(start),
                    expected: what.to_string(),
                    got: out.len() as u64,
                });
            }
        }
        Ok(out)
    }

    /// Checks that the file ends here (this also makes a gzip stream verify its checksum).
    fn expect_end(&mut self) -> Result<(), DataError> {
        let end = self.offset;
        let mut b = [0u8; 1];
        if self.fill(&mut b)? != 0 {
            return Err(DataError::Invalid {
                at: self.at(end),
                message:
                    "expected end of file after the data the header declares, found more bytes"
                        .into(),
            });
        }
        Ok(())
    }

    fn magic(&mut self, expected: u32, kind: &'static str) -> Result<(), DataError> {
        let found = self.u32("IDX magic number")?;
        if found != expected {
            let note = if found >> 16 == 0x1f8b {
                format!(
                    " (the file looks gzip-compressed: name it {}.gz)",
                    self.path.display()
                )
            } else if found >> 8 == expected >> 8 && found & 0xff != expected & 0xff {
                format!(
                    " (an IDX array of {} dimensions instead of {})",
                    found & 0xff,
                    expected & 0xff
                )
            } else {
                String::new()
            };
            return Err(DataError::BadMagic {
                at: self.at(0),
                expected,
                found,
                kind,
                note,
            });
        }
        Ok(())
    }

    /// Reads a count or dimension that must be at least 1.
    fn dim(&mut self, what: &str) -> Result<u32, DataError> {
        let start = self.offset;
        let v = self.u32(what)?;
        if v == 0 {
            return Err(DataError::Invalid {
                at: self.at(start),
                message: format!("{what} is 0; expected at least 1"),
            });
        }
        Ok(v)
    }
}

/// An IDX image file: `count` images of `rows` x `cols` unsigned bytes.
struct Images {
    count: usize,
    rows: usize,
    cols: usize,
    pixels: Vec<u8>,
}

fn u32_to_usize(v: u32) -> usize {
    // usize is at least 32 bits on every platform this crate builds for.
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// Reads a labels file (magic 0x00000801).
fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut s = Source::open(path)?;
    s.magic(IDX_LABELS_MAGIC, "labels")?;
    let n = s.dim("label count")?;
    let labels = s.section(u64::from(n), &format!("{n} label bytes"))?;
    s.expect_end()?;
    Ok(labels)
}

/// Reads an images file (magic 0x00000803), checking its count against `expected_count` (from the
/// labels file `labels_path`) before reading any pixels, and its image size against `expected_size`
/// (from the training images) when given.
fn read_images(
    path: &Path,
    expected_count: usize,
    labels_path: &Path,
    expected_size: Option<(usize, usize, &Path)>,
) -> Result<Images, DataError> {
    let mut s = Source::open(path)?;
    s.magic(IDX_IMAGES_MAGIC, "images")?;
    let n = s.dim("image count")?;
    if u32_to_usize(n) != expected_count {
        return Err(DataError::Invalid {
            at: s.at(4),
            message: format!(
                "declares {n} images but {} declares {expected_count} labels; expected equal counts",
                labels_path.display()
            ),
        });
    }
    let rows = s.dim("row count")?;
    let cols = s.dim("column count")?;
    if let Some((r, c, train)) = expected_size
        && (u32_to_usize(rows), u32_to_usize(cols)) != (r, c)
    {
        return Err(DataError::Invalid {
            at: s.at(8),
            message: format!(
                "images are {rows} x {cols} but those of {} are {r} x {c}; expected equal sizes",
                train.display()
            ),
        });
    }
    // Three u32 factors fit in u128; the product must also fit in memory addresses.
    let total = u128::from(n) * u128::from(rows) * u128::from(cols);
    let total = match u64::try_from(total)
        .ok()
        .filter(|&t| usize::try_from(t).is_ok() && t <= (isize::MAX as u64) / 4)
    {
        Some(t) => t,
        None => {
            return Err(DataError::Invalid {
                at: s.at(4),
                message: format!(
                    "declares {n} images of {rows} x {cols} = {total} pixels, more than this machine can address"
                ),
            });
        }
    };
    let pixels = s.section(
        total,
        &format!("{total} pixel bytes ({n} images of {rows} x {cols})"),
    )?;
    s.expect_end()?;
    Ok(Images {
        count: u32_to_usize(n),
        rows: u32_to_usize(rows),
        cols: u32_to_usize(cols),
        pixels,
    })
}

/// Resolves the path of IDX file `base` in `dir`, or a [`DataError::NotFound`] listing all paths tried.
fn idx_path(dir: &Path, base: &str, name: &str) -> Result<PathBuf, DataError> {
    locate(dir, base).map_err(|tried| DataError::NotFound {
        what: format!("file {base} of dataset {name}"),
        tried,
        hint: install_hint(name),
    })
}

/// Loads an IDX dataset (MNIST, Fashion-MNIST, or any set in the same format) from `dir`.
///
/// Reads `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
/// `t10k-labels-idx1-ubyte`, each raw or gzip-compressed (`.gz`; the raw file is preferred when both
/// exist; the dotted spelling `train-images.idx3-ubyte` is also accepted). Checks the magic numbers
/// (0x00000803 images, 0x00000801 labels), that images and labels counts agree, that train and test
/// images have the same size, and that every file ends exactly where its header says. Pixels are scaled
/// from 0..=255 to [0, 1]; `classes` is one more than the largest label. `name` becomes the dataset's
/// name and appears in error hints.
pub fn load_idx(dir: &Path, name: &str) -> Result<Dataset, DataError> {
    let paths: Vec<PathBuf> = IDX_FILES
        .iter()
        .map(|b| idx_path(dir, b, name))
        .collect::<Result<_, _>>()?;
    let (train_img, train_lab, test_img, test_lab) = (&paths[0], &paths[1], &paths[2], &paths[3]);
    let train_y = read_labels(train_lab)?;
    let train = read_images(train_img, train_y.len(), train_lab, None)?;
    let test_y = read_labels(test_lab)?;
    let test = read_images(
        test_img,
        test_y.len(),
        test_lab,
        Some((train.rows, train.cols, train_img)),
    )?;
    debug_assert_eq!(train.count, train_y.len());
    debug_assert_eq!(test.count, test_y.len());
    let classes = train_y
        .iter()
        .chain(&test_y)
        .max()
        .map_or(0, |&m| usize::from(m) + 1);
    let scale = |p: Vec<u8>| p.into_iter().map(|b| f32::from(b) / 255.0).collect();
    Ok(Dataset {
        name: name.to_string(),
        inputs: train.rows * train.cols,
        classes,
        train_x: scale(train.pixels),
        train_y,
        test_x: scale(test.pixels),
        test_y,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn temp_dir(tag: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "aimsim-data-unit-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn touch_all(dir: &Path, gz: bool) {
        std::fs::create_dir_all(dir).unwrap();
        for b in IDX_FILES {
            let name = if gz { format!("{b}.gz") } else { b.to_string() };
            std::fs::write(dir.join(name), b"x").unwrap();
        }
    }

    #[test]
    fn search_order_explicit_env_system() {
        let root = temp_dir("search");
        let explicit = root.join("explicit");
        let env = root.join("env");
        let system = root.join("system");
        touch_all(&explicit, false);
        touch_all(&env.join("mnist"), true);
        touch_all(&system.join("mnist"), false);

        // Explicit folder wins, directly or through its <name>/ subfolder.
        assert_eq!(
            find_data_dir_in(Some(&explicit), Some(&env), &system, "mnist").unwrap(),
            explicit
        );
        assert_eq!(
            find_data_dir_in(Some(&env), None, &system, "mnist").unwrap(),
            env.join("mnist")
        );
        // Then the environment variable's <name>/ subfolder, then the system folder.
        assert_eq!(
            find_data_dir_in(None, Some(&env), &system, "mnist").unwrap(),
            env.join("mnist")
        );
        assert_eq!(
            find_data_dir_in(None, Some(&root.join("nothing")), &system, "mnist").unwrap(),
            system.join("mnist")
        );
        assert_eq!(
            find_data_dir_in(None, Some(Path::new("")), &system, "mnist").unwrap(),
            system.join("mnist")
        );
        // The environment variable may also point at the files directly.
        assert_eq!(
            find_data_dir_in(None, Some(&explicit), &root.join("none"), "mnist").unwrap(),
            explicit
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_folder_missing_one_file_names_that_file() {
        let root = temp_dir("partial");
        let dir = root.join("fmnist");
        touch_all(&dir, true);
        std::fs::remove_file(dir.join(format!("{}.gz", IDX_FILES[3]))).unwrap();
        let e = find_data_dir_in(Some(&dir), None, &root.join("none"), "fashion-mnist")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "{} of dataset fashion-mnist (the folder {}",
                IDX_FILES[3],
                dir.display()
            )),
            "{e}"
        );
        assert!(
            e.contains(&dir.join(IDX_FILES[3]).display().to_string()),
            "{e}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn explicit_folder_is_authoritative_and_errors_list_what_was_tried() {
        let root = temp_dir("notfound");
        let system = root.join("system");
        touch_all(&system.join("fashion-mnist"), true);
        let bad = root.join("bad");
        let e = find_data_dir_in(Some(&bad), None, &system, "fashion-mnist").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DataError::NotFound { .. }));
        assert!(msg.contains(&bad.display().to_string()), "{msg}");
        assert!(
            msg.contains(&bad.join("fashion-mnist").display().to_string()),
            "{msg}"
        );
        assert!(!msg.contains(&system.display().to_string()), "{msg}");

        let env = root.join("env");
        let e = find_data_dir_in(None, Some(&env), &root.join("sys2"), "fashion-mnist")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&env.join("fashion-mnist").display().to_string()),
            "{e}"
        );
        assert!(e.contains(&env.display().to_string()), "{e}");
        assert!(
            e.contains(
                &root
                    .join("sys2")
                    .join("fashion-mnist")
                    .display()
                    .to_string()
            )
        );
        assert!(e.contains("apt-get install dataset-fashion-mnist"), "{e}");
        let e = find_data_dir_in(None, None, &root.join("sys2"), "mnist")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("apt-get"), "{e}");
        assert!(e.contains("AIMSIM_DATA"), "{e}");

        // A folder with only some of the files does not match.
        let partial = root.join("partial");
        touch_all(&partial, false);
        std::fs::remove_file(partial.join(IDX_FILES[3])).unwrap();
        assert!(find_data_dir_in(Some(&partial), None, &system, "mnist").is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn file_name_preference() {
        let root = temp_dir("pref");
        let base = IDX_FILES[0];
        std::fs::write(root.join(format!("{base}.gz")), b"").unwrap();
        assert_eq!(
            locate(&root, base).unwrap(),
            root.join(format!("{base}.gz"))
        );
        std::fs::write(root.join(base), b"").unwrap();
        assert_eq!(locate(&root, base).unwrap(), root.join(base));
        let other = IDX_FILES[2];
        std::fs::write(root.join("t10k-images.idx3-ubyte"), b"").unwrap();
        assert_eq!(
            locate(&root, other).unwrap(),
            root.join("t10k-images.idx3-ubyte")
        );
        let tried = locate(&root, IDX_FILES[1]).unwrap_err();
        assert_eq!(tried.len(), 4);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
