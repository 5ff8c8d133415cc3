//! IDX datasets on disk (`aimsim::data`): round trips raw and gzip, every kind of bad file with the
//! file and byte offset in its error, the data-folder search, and the real Fashion-MNIST when it is
//! installed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use aimsim::data::{DataError, IDX_FILES, find_data_dir, load_idx};
use aimsim::networks::data::Dataset;
use flate2::Compression;
use flate2::write::GzEncoder;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;

/// A fresh, empty folder under the system temp folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "aimsim-data-test-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [0x0803u32, count, rows, cols] {
        v.extend_from_slice(&w.to_be_bytes());
    }
    v.extend_from_slice(pixels);
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [0x0801u32, labels.len() as u32] {
        v.extend_from_slice(&w.to_be_bytes());
    }
    v.extend_from_slice(labels);
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The contents of a small valid IDX dataset: (train pixels, train labels, test pixels, test labels).
struct Small {
    rows: u32,
    cols: u32,
    train_px: Vec<u8>,
    train_y: Vec<u8>,
    test_px: Vec<u8>,
    test_y: Vec<u8>,
}

impl Small {
    fn new(seed: u64, train: usize, test: usize, rows: u32, cols: u32) -> Small {
        let mut rng = Pcg64::seed_from_u64(seed);
        let px = (rows * cols) as usize;
        let mut bytes = |n: usize| (0..n).map(|_| rng.random::<u8>()).collect::<Vec<u8>>();
        let train_px = bytes(train * px);
        let test_px = bytes(test * px);
        let train_y = (0..train).map(|i| (i * 7 % 10) as u8).collect();
        let test_y = (0..test).map(|i| (i * 3 % 10) as u8).collect();
        Small {
            rows,
            cols,
            train_px,
            train_y,
            test_px,
            test_y,
        }
    }

    /// The four files' bytes, in the order of `IDX_FILES`.
    fn files(&self) -> [Vec<u8>; 4] {
        let n = |px: &[u8]| (px.len() / (self.rows * self.cols) as usize) as u32;
        [
            idx_images(n(&self.train_px), self.rows, self.cols, &self.train_px),
            idx_labels(&self.train_y),
            idx_images(n(&self.test_px), self.rows, self.cols, &self.test_px),
            idx_labels(&self.test_y),
        ]
    }

    /// Writes the files into `dir`, gzipped where `gz[k]`.
    fn write(&self, dir: &Path, gz: [bool; 4]) {
        for ((name, bytes), gz) in IDX_FILES.iter().zip(self.files()).zip(gz) {
            write_file(dir, name, &bytes, gz);
        }
    }
}

/// Writes `bytes` as IDX file `name` in `dir` (gzip-compressed under `name.gz` when `gz`).
fn write_file(dir: &Path, name: &str, bytes: &[u8], gz: bool) -> PathBuf {
    let raw = dir.join(name);
    let gzp = dir.join(format!("{name}.gz"));
    let _ = std::fs::remove_file(&raw);
    let _ = std::fs::remove_file(&gzp);
    if gz {
        std::fs::write(&gzp, gzip(bytes)).unwrap();
        gzp
    } else {
        std::fs::write(&raw, bytes).unwrap();
        raw
    }
}

fn check_matches(d: &Dataset, s: &Small) {
    assert_eq!(d.inputs, (s.rows * s.cols) as usize);
    assert_eq!(d.classes, 10);
    assert_eq!(d.train_y, s.train_y);
    assert_eq!(d.test_y, s.test_y);
    let scaled = |px: &[u8]| px.iter().map(|&b| b as f32 / 255.0).collect::<Vec<f32>>();
    assert_eq!(d.train_x, scaled(&s.train_px));
    assert_eq!(d.test_x, scaled(&s.test_px));
    assert_eq!(d.train_len(), s.train_y.len());
    assert_eq!(d.test_len(), s.test_y.len());
}

#[test]
fn idx_round_trip_raw_gz_and_mixed() {
    let s = Small::new(1, 23, 11, 5, 3);
    for gz in [
        [false; 4],
        [true; 4],
        [true, false, false, true],
        [false, true, true, false],
    ] {
        let dir = TempDir::new("roundtrip");
        s.write(dir.path(), gz);
        let d = load_idx(dir.path(), "tiny").unwrap();
        assert_eq!(d.name, "tiny");
        check_matches(&d, &s);
        // Extremes of the pixel scale.
        assert!(d.train_x.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}

#[test]
fn pixel_scale_end_points_and_classes_from_labels() {
    let dir = TempDir::new("scale");
    let px = [0u8, 255, 128, 1];
    write_file(dir.path(), IDX_FILES[0], &idx_images(1, 2, 2, &px), false);
    write_file(dir.path(), IDX_FILES[1], &idx_labels(&[2]), false);
    write_file(dir.path(), IDX_FILES[2], &idx_images(1, 2, 2, &px), true);
    write_file(dir.path(), IDX_FILES[3], &idx_labels(&[4]), true);
    let d = load_idx(dir.path(), "x").unwrap();
    assert_eq!(d.train_x, vec![0.0, 1.0, 128.0 / 255.0, 1.0 / 255.0]);
    assert_eq!(d.classes, 5);
    assert_eq!(d.train_sample(0), (&d.train_x[..], 2));
    assert_eq!(d.test_sample(0).1, 4);
}

#[test]
fn raw_file_is_preferred_over_gz_and_dotted_names_are_accepted() {
    let dir = TempDir::new("prefer");
    let s = Small::new(2, 6, 4, 2, 2);
    s.write(dir.path(), [false; 4]);
    // A .gz beside the raw train labels with different labels: the raw file must win.
    std::fs::write(
        dir.path().join(format!("{}.gz", IDX_FILES[1])),
        gzip(&idx_labels(&[9; 6])),
    )
    .unwrap();
    check_matches(&load_idx(dir.path(), "t").unwrap(), &s);

    // Dotted spelling (train-images.idx3-ubyte), gzip-compressed.
    let dir2 = TempDir::new("dotted");
    s.write(dir2.path(), [false; 4]);
    let plain = dir2.path().join(IDX_FILES[0]);
    let bytes = std::fs::read(&plain).unwrap();
    std::fs::remove_file(&plain).unwrap();
    std::fs::write(dir2.path().join("train-images.idx3-ubyte.gz"), gzip(&bytes)).unwrap();
    check_matches(&load_idx(dir2.path(), "t").unwrap(), &s);
}

#[test]
fn missing_file_names_every_path_tried() {
    let dir = TempDir::new("missing");
    let s = Small::new(3, 4, 4, 2, 2);
    s.write(dir.path(), [true; 4]);
    std::fs::remove_file(dir.path().join(format!("{}.gz", IDX_FILES[2]))).unwrap();
    let e = load_idx(dir.path(), "fashion-mnist").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DataError::NotFound { .. }), "{msg}");
    for p in [
        "t10k-images-idx3-ubyte",
        "t10k-images-idx3-ubyte.gz",
        "t10k-images.idx3-ubyte",
        "t10k-images.idx3-ubyte.gz",
    ] {
        assert!(
            msg.contains(&dir.path().join(p).display().to_string()),
            "{p} missing from: {msg}"
        );
    }
    assert!(
        msg.contains("apt-get install dataset-fashion-mnist"),
        "{msg}"
    );
}

/// Loads a dataset whose file `k` is replaced by `bytes` (gzipped when `gz`); returns the error, which
/// must name that file.
fn load_with(k: usize, bytes: &[u8], gz: bool) -> (DataError, PathBuf) {
    let dir = TempDir::new("bad");
    let s = Small::new(4, 6, 5, 4, 3);
    s.write(dir.path(), [gz; 4]);
    let path = write_file(dir.path(), IDX_FILES[k], bytes, gz);
    let e = load_idx(dir.path(), "t").expect_err("a bad file must give an error");
    (e, path)
}

#[test]
fn truncated_files_name_file_and_offset() {
    let s = Small::new(4, 6, 5, 4, 3);
    let files = s.files();
    for gz in [false, true] {
        for (k, full) in files.iter().enumerate() {
            let header = if k % 2 == 0 { 16 } else { 8 };
            let mut cuts = vec![0, 1, 3, 4, 6, 7, header, header + 1, full.len() - 1];
            if header == 16 {
                cuts.extend([8, 11, 12, 15]);
            }
            for cut in cuts {
                let (e, path) = load_with(k, &full[..cut], gz);
                let at = e.location().unwrap_or_else(|| panic!("no location: {e}"));
                assert_eq!(at.path, path, "{e}");
                // The offset is the start of the field or section that the file ends in.
                let want = if cut < header {
                    (cut / 4 * 4) as u64
                } else {
                    header as u64
                };
                assert_eq!(at.offset, want, "cut {cut} of file {k}: {e}");
                let msg = e.to_string();
                assert!(msg.contains(&path.display().to_string()), "{msg}");
                assert!(msg.contains(&format!("byte {want}")), "{msg}");
                match &e {
                    DataError::Truncated { got, .. } => {
                        assert_eq!(*got, (cut as u64) - want, "{msg}")
                    }
                    other => panic!("expected Truncated, got {other}"),
                }
                assert!(msg.contains(&format!("file ends after {}", cut as u64 - want)));
                if gz {
                    assert!(msg.contains("decompressed"), "{msg}");
                }
            }
        }
    }
    // The pixel section message says how many bytes were expected.
    let (e, _) = load_with(0, &files[0][..20], false);
    let msg = e.to_string();
    assert!(msg.contains("72 pixel bytes (6 images of 4 x 3)"), "{msg}");
    assert!(msg.contains("file ends after 4"), "{msg}");
}

#[test]
fn truncated_or_corrupt_gzip_stream_is_an_error() {
    let s = Small::new(5, 6, 5, 4, 3);
    let files = s.files();
    let z = gzip(&files[0]);
    for cut in [0, 5, 10, z.len() / 2, z.len() - 4, z.len() - 1] {
        let dir = TempDir::new("gzcut");
        s.write(dir.path(), [true; 4]);
        let p = dir.path().join(format!("{}.gz", IDX_FILES[0]));
        std::fs::write(&p, &z[..cut]).unwrap();
        let e = load_idx(dir.path(), "t").unwrap_err();
        assert_eq!(e.location().unwrap().path, p, "cut {cut}: {e}");
        assert!(e.to_string().contains(&p.display().to_string()));
    }
    // A flipped bit in the CRC trailer: all data decodes but the checksum fails.
    let dir = TempDir::new("gzcrc");
    s.write(dir.path(), [true; 4]);
    let p = dir.path().join(format!("{}.gz", IDX_FILES[0]));
    let mut bad = z.clone();
    let n = bad.len();
    bad[n - 8] ^= 0x40;
    std::fs::write(&p, &bad).unwrap();
    let e = load_idx(dir.path(), "t").unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e}");
    assert_eq!(e.location().unwrap().path, p);
}

#[test]
fn bad_magic_names_offset_zero_and_the_value_found() {
    let s = Small::new(6, 6, 5, 4, 3);
    let files = s.files();
    for gz in [false, true] {
        // Labels magic in an images file.
        let mut f = files[2].clone();
        f[3] = 0x01;
        let (e, path) = load_with(2, &f, gz);
        let msg = e.to_string();
        assert!(
            matches!(e, DataError::BadMagic { found: 0x0801, .. }),
            "{msg}"
        );
        assert_eq!(e.location().unwrap().offset, 0);
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("byte 0"), "{msg}");
        assert!(msg.contains("0x00000801"), "{msg}");
        assert!(msg.contains("0x00000803"), "{msg}");
        // Garbage magic in a labels file.
        let mut f = files[1].clone();
        f[..4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let (e, _) = load_with(1, &f, gz);
        assert!(e.to_string().contains("0xdeadbeef"), "{e}");
    }
    // A gzip file under the raw name is recognised as such.
    let (e, _) = load_with(1, &gzip(&files[1]), false);
    assert!(e.to_string().contains("gzip"), "{e}");
}

#[test]
fn mismatched_counts_sizes_and_trailing_bytes_are_errors() {
    let s = Small::new(7, 6, 5, 4, 3);
    let files = s.files();
    // 7 train labels for 6 images.
    let (e, path) = load_with(1, &idx_labels(&[1; 7]), false);
    let msg = e.to_string();
    let at = e.location().unwrap();
    assert!(at.path.ends_with(IDX_FILES[0]), "{msg}");
    assert_eq!(at.offset, 4, "{msg}");
    assert!(msg.contains("declares 6 images"), "{msg}");
    assert!(msg.contains("7 labels"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");

    // Test images of another size than the training images.
    let (e, _) = load_with(2, &idx_images(5, 3, 4, &s.test_px), true);
    let at = e.location().unwrap();
    assert!(at.path.ends_with(format!("{}.gz", IDX_FILES[2])), "{e}");
    assert_eq!(at.offset, 8, "{e}");
    assert!(e.to_string().contains("3 x 4"), "{e}");

    // One byte too many.
    for (k, good) in files.iter().enumerate() {
        let mut f = good.clone();
        f.push(0);
        let (e, path) = load_with(k, &f, k % 2 == 1);
        let at = e.location().unwrap();
        assert_eq!(at.path, path);
        assert_eq!(at.offset as usize, good.len(), "{e}");
        assert!(e.to_string().contains("end of file"), "{e}");
    }

    // Zero counts and dimensions.
    for (k, f, off) in [
        (0, idx_images(0, 4, 3, &[]), 4),
        (0, idx_images(6, 0, 3, &[]), 8),
        (2, idx_images(5, 4, 0, &[]), 12),
        (3, idx_labels(&[]), 4),
    ] {
        let (e, _) = load_with(k, &f, false);
        assert_eq!(e.location().unwrap().offset, off, "{e}");
        assert!(e.to_string().contains("is 0"), "{e}");
    }
}

#[test]
fn huge_declared_dimensions_fail_fast_without_allocating() {
    let start = std::time::Instant::now();
    // 6 images of 65535 x 65535 (25.8 GB declared), 10 bytes present.
    let mut f = idx_images(6, 65535, 65535, &[7; 10]);
    let (e, _) = load_with(0, &f, false);
    assert!(matches!(e, DataError::Truncated { got: 10, .. }), "{e}");
    assert!(e.to_string().contains("25769017350 pixel bytes"), "{e}");
    // The same, gzipped.
    f.truncate(16 + 3);
    let (e, _) = load_with(0, &f, true);
    assert!(matches!(e, DataError::Truncated { got: 3, .. }), "{e}");
    // A label count of 4 billion.
    let mut l = idx_labels(&[1, 2, 3]);
    l[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let (e, _) = load_with(3, &l, false);
    assert!(matches!(e, DataError::Truncated { got: 3, .. }), "{e}");
    // A product that no machine can address.
    let dir = TempDir::new("huge");
    let labels: Vec<u8> = vec![0; 1000];
    write_file(dir.path(), IDX_FILES[1], &idx_labels(&labels), false);
    write_file(
        dir.path(),
        IDX_FILES[0],
        &idx_images(1000, u32::MAX, u32::MAX, &[0; 8]),
        false,
    );
    let s = Small::new(8, 1, 1, 1, 1);
    write_file(dir.path(), IDX_FILES[2], &s.files()[2], false);
    write_file(dir.path(), IDX_FILES[3], &s.files()[3], false);
    let e = load_idx(dir.path(), "t").unwrap_err();
    assert!(matches!(e, DataError::Invalid { .. }), "{e}");
    assert!(
        e.to_string().contains("more than this machine can address"),
        "{e}"
    );
    assert!(start.elapsed().as_secs_f64() < 2.0);
}

#[test]
fn garbage_bytes_give_errors_not_panics() {
    let s = Small::new(9, 6, 5, 4, 3);
    let files = s.files();
    let mut rng = Pcg64::seed_from_u64(99);
    for case in 0..300 {
        let k = case % 4;
        let gz = case % 3 == 0;
        let len = rng.random_range(0..64usize);
        let mut f: Vec<u8> = (0..len).map(|_| rng.random::<u8>()).collect();
        // Half of the cases keep a valid header prefix so the reader gets past the magic.
        if case % 2 == 0 {
            let keep = rng.random_range(0..=files[k].len().min(16));
            let n = keep.min(f.len());
            f[..n].copy_from_slice(&files[k][..n]);
        }
        let dir = TempDir::new("garbage");
        s.write(dir.path(), [gz; 4]);
        write_file(dir.path(), IDX_FILES[k], &f, gz);
        // Random bytes may occasionally form a valid file; they must never panic.
        if let Err(e) = load_idx(dir.path(), "t") {
            let msg = e.to_string();
            assert!(msg.contains(IDX_FILES[k]), "case {case}: {msg}");
        }
    }
    // Random bytes under a .gz name (not gzip at all).
    let dir = TempDir::new("notgz");
    s.write(dir.path(), [true; 4]);
    let p = dir.path().join(format!("{}.gz", IDX_FILES[3]));
    std::fs::write(&p, (0..100u8).collect::<Vec<_>>()).unwrap();
    let e = load_idx(dir.path(), "t").unwrap_err();
    assert_eq!(e.location().unwrap().path, p);
}

#[test]
fn find_data_dir_explicit_folder_and_subfolder() {
    let root = TempDir::new("find");
    let s = Small::new(10, 2, 2, 2, 2);
    let sub = root.path().join("mnist");
    std::fs::create_dir_all(&sub).unwrap();
    s.write(&sub, [true; 4]);
    assert_eq!(find_data_dir(Some(&sub), "mnist").unwrap(), sub);
    assert_eq!(find_data_dir(Some(root.path()), "mnist").unwrap(), sub);
    let empty = root.path().join("empty");
    let e = find_data_dir(Some(&empty), "mnist").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&empty.display().to_string()), "{msg}");
    assert!(
        msg.contains(&empty.join("mnist").display().to_string()),
        "{msg}"
    );
}

/// Real Fashion-MNIST, when installed (`apt-get install dataset-fashion-mnist`).
#[test]
fn fashion_mnist_when_installed() {
    let dir = match find_data_dir(None, "fashion-mnist") {
        Ok(d) => d,
        Err(e) => {
            println!("skipping: Fashion-MNIST not installed ({e})");
            return;
        }
    };
    let d = load_idx(&dir, "fashion-mnist").unwrap();
    assert_eq!((d.train_len(), d.test_len()), (60_000, 10_000));
    assert_eq!((d.inputs, d.classes), (784, 10));
    assert_eq!(d.train_x.len(), 60_000 * 784);
    assert_eq!(d.test_x.len(), 10_000 * 784);
    let mut hist = [0usize; 10];
    for &y in &d.train_y {
        hist[y as usize] += 1;
    }
    assert!(
        hist.iter().all(|&n| (5_500..=6_500).contains(&n)),
        "{hist:?}"
    );
    let mut hist = [0usize; 10];
    for &y in &d.test_y {
        hist[y as usize] += 1;
    }
    assert!(hist.iter().all(|&n| (900..=1_100).contains(&n)), "{hist:?}");
    let mean = d.train_x.iter().map(|&v| v as f64).sum::<f64>() / d.train_x.len() as f64;
    // Fashion-MNIST's pixel mean is about 0.286.
    assert!((0.2..0.4).contains(&mean), "mean {mean}");
    assert!(d.train_x.iter().all(|v| (0.0..=1.0).contains(v)));
    assert_eq!(d.train_x.iter().cloned().fold(0.0f32, f32::max), 1.0);
}
