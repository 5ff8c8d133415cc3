//! Datasets: the IDX reader (round trips, every kind of bad file), the data-folder search, the glyph
//! generator and the teacher-student task, and the real Fashion-MNIST when it is installed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use aimsim_networks::data::{
    DataError, Dataset, IDX_FILES, find_data_dir, glyphs, load_idx, teacher_student,
};
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

#[test]
fn dataset_truncate_keeps_the_first_samples() {
    let mut d = glyphs(30, 20, 8, 5);
    let full = d.clone();
    d.truncate(7, 100);
    assert_eq!(d.train_len(), 7);
    assert_eq!(d.test_len(), 20);
    assert_eq!(d.train_x.len(), 7 * 64);
    assert_eq!(d.train_x[..], full.train_x[..7 * 64]);
    assert_eq!(d.train_y[..], full.train_y[..7]);
    assert_eq!(d.test_sample(19), full.test_sample(19));
    d.truncate(0, 3);
    assert_eq!(
        (d.train_len(), d.test_len(), d.test_x.len()),
        (0, 3, 3 * 64)
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

/// Test accuracy (percent) of a float softmax regression trained by SGD.
fn softmax_regression(d: &Dataset, epochs: usize, lr: f32) -> f64 {
    let (n_in, n_c) = (d.inputs, d.classes);
    let mut w = vec![0.0f32; n_c * n_in];
    let mut b = vec![0.0f32; n_c];
    let mut rng = Pcg64::seed_from_u64(1);
    let mut order: Vec<usize> = (0..d.train_len()).collect();
    let mut p = vec![0.0f32; n_c];
    let logits = |w: &[f32], b: &[f32], x: &[f32], p: &mut [f32]| {
        for c in 0..n_c {
            p[c] = b[c]
                + w[c * n_in..(c + 1) * n_in]
                    .iter()
                    .zip(x)
                    .map(|(a, b)| a * b)
                    .sum::<f32>();
        }
    };
    for _ in 0..epochs {
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        for &i in &order {
            let (x, y) = d.train_sample(i);
            logits(&w, &b, x, &mut p);
            let m = p.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let z: f32 = p.iter().map(|v| (v - m).exp()).sum();
            for c in 0..n_c {
                let g = (p[c] - m).exp() / z - f32::from(c == y as usize);
                b[c] -= lr * g;
                for (wi, xi) in w[c * n_in..(c + 1) * n_in].iter_mut().zip(x) {
                    *wi -= lr * g * xi;
                }
            }
        }
    }
    let mut correct = 0;
    for i in 0..d.test_len() {
        let (x, y) = d.test_sample(i);
        logits(&w, &b, x, &mut p);
        let arg = (0..n_c).fold(0, |a, c| if p[c] > p[a] { c } else { a });
        correct += usize::from(arg == y as usize);
    }
    100.0 * correct as f64 / d.test_len() as f64
}

#[test]
fn glyphs_are_learnable_but_not_trivial() {
    let d = glyphs(2000, 1000, 16, 11);
    let acc = softmax_regression(&d, 5, 0.05);
    println!("glyphs 16x16 softmax regression test accuracy: {acc:.1}%");
    assert!(acc > 60.0, "accuracy {acc}");
    assert!(acc < 99.0, "accuracy {acc}: too easy");
}

#[test]
fn glyphs_are_deterministic_balanced_and_in_range() {
    let a = glyphs(200, 50, 12, 42);
    let b = glyphs(200, 50, 12, 42);
    assert_eq!(a, b);
    let c = glyphs(200, 50, 12, 43);
    assert_ne!(a.train_x, c.train_x);
    assert_ne!(a.test_x, c.test_x);
    assert_eq!((a.inputs, a.classes, a.name.as_str()), (144, 10, "glyphs"));
    assert_eq!(a.train_x.len(), 200 * 144);
    // The test set comes from its own stream: it does not depend on the training set's size.
    let short = glyphs(3, 50, 12, 42);
    assert_eq!(short.test_x, a.test_x);
    assert_eq!(short.test_y, a.test_y);
    // Train and test differ.
    assert_ne!(a.train_x[..50 * 144], a.test_x[..]);
    // Balanced: exactly 20 of each class, in shuffled order.
    let mut hist = [0usize; 10];
    for &y in &a.train_y {
        hist[y as usize] += 1;
    }
    assert_eq!(hist, [20; 10]);
    assert_ne!(a.train_y[..10], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert!(
        a.train_x
            .iter()
            .chain(&a.test_x)
            .all(|v| (0.0..=1.0).contains(v))
    );
    // Ink covers a plausible fraction of each image.
    for i in 0..a.train_len() {
        let (x, y) = a.train_sample(i);
        let ink = x.iter().filter(|&&v| v > 0.5).count();
        assert!(
            (5..100).contains(&ink),
            "sample {i} (digit {y}): {ink} inked pixels"
        );
    }
    // Every side the scenario allows works, and degenerate sizes do not panic.
    for side in [8, 64, 1, 0] {
        let d = glyphs(10, 10, side, 1);
        assert_eq!(d.train_x.len(), 10 * side * side);
    }
}

#[test]
fn glyph_classes_have_distinct_mean_images() {
    let d = glyphs(1000, 0, 16, 7);
    let n = d.inputs;
    let mut means = vec![vec![0.0f64; n]; 10];
    let mut counts = [0usize; 10];
    for i in 0..d.train_len() {
        let (x, y) = d.train_sample(i);
        counts[y as usize] += 1;
        for (m, &v) in means[y as usize].iter_mut().zip(x) {
            *m += v as f64;
        }
    }
    for (m, &c) in means.iter_mut().zip(&counts) {
        m.iter_mut().for_each(|v| *v /= c as f64);
    }
    let dist = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let mut min = f64::INFINITY;
    for a in 0..10 {
        for b in a + 1..10 {
            min = min.min(dist(&means[a], &means[b]));
        }
    }
    // Two halves of the same class are much closer than any two classes.
    let half = |start: usize| {
        let mut m = vec![0.0f64; n];
        let mut k = 0;
        for i in (start..d.train_len()).step_by(2) {
            let (x, y) = d.train_sample(i);
            if y == 3 {
                k += 1;
                m.iter_mut().zip(x).for_each(|(a, &v)| *a += v as f64);
            }
        }
        m.iter_mut().for_each(|v| *v /= k as f64);
        m
    };
    let same = dist(&half(0), &half(1));
    println!("min distance between class means {min:.3}, within class 3 {same:.3}");
    assert!(min > 1.0, "class means too close: {min}");
    assert!(min > 2.0 * same, "between {min}, within {same}");
}

#[test]
fn teacher_student_is_deterministic_and_covers_every_class() {
    let a = teacher_student(2000, 500, 64, 10, 5);
    assert_eq!(a, teacher_student(2000, 500, 64, 10, 5));
    let b = teacher_student(2000, 500, 64, 10, 6);
    assert_ne!(a.train_x, b.train_x);
    assert_ne!(a.train_y, b.train_y);
    assert_eq!(
        (a.inputs, a.classes, a.train_len(), a.test_len()),
        (64, 10, 2000, 500)
    );
    assert!(
        a.train_x
            .iter()
            .chain(&a.test_x)
            .all(|v| (0.0..=1.0).contains(v))
    );
    let mean = a.train_x.iter().map(|&v| v as f64).sum::<f64>() / a.train_x.len() as f64;
    assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    assert_ne!(a.train_x[..500 * 64], a.test_x[..]);
    for (set, n) in [(&a.train_y, 2000), (&a.test_y, 500)] {
        let mut hist = [0usize; 10];
        for &y in set {
            hist[y as usize] += 1;
        }
        assert!(hist.iter().all(|&h| h > 0), "{hist:?}");
        // Balanced by the bias calibration: every class within half to one and a half times its share.
        assert!(
            hist.iter().all(|&h| n / 20 < h && h < 3 * n / 20),
            "{hist:?}"
        );
    }
    // The labels are a function of the inputs that a student can partly learn.
    let acc = softmax_regression(&a, 5, 0.05);
    println!("teacher-student softmax regression test accuracy: {acc:.1}%");
    assert!(acc > 25.0, "accuracy {acc}");
    // Other sizes and class counts.
    let c = teacher_student(300, 0, 7, 3, 1);
    assert!(c.train_y.iter().all(|&y| y < 3));
    for k in 0..3u8 {
        assert!(c.train_y.contains(&k));
    }
    let one = teacher_student(5, 5, 4, 0, 1);
    assert_eq!(one.classes, 1);
    assert!(one.train_y.iter().all(|&y| y == 0));
}
