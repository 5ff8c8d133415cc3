//! Classification datasets for on-chip training, held in memory: procedurally drawn digit glyphs
//! ([`glyphs`], re-exported from [`crate::glyphs`]) and a teacher-student task ([`teacher_student`]) made
//! here, and IDX files (MNIST, Fashion-MNIST) that the `aimsim` package reads from disk (`aimsim::data`)
//! into the same [`Dataset`]: this crate opens no files.
//!
//! Every dataset is a [`Dataset`]: inputs scaled to [0, 1], one row per sample.

use aimsim_sim::rng::{Purpose, stream};
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};

pub use crate::glyphs::glyphs;

/// An in-memory classification dataset: inputs in [0, 1], row-major (sample `i` occupies
/// `inputs * i .. inputs * (i + 1)`), labels in `0..classes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Short name ("fashion-mnist", "glyphs", "teacher-student", ...).
    pub name: String,
    /// Features per sample (784 for 28 x 28 images).
    pub inputs: usize,
    /// Number of classes; every label is below it.
    pub classes: usize,
    /// Training inputs, `train_len() * inputs` values.
    pub train_x: Vec<f32>,
    /// Training labels.
    pub train_y: Vec<u8>,
    /// Test inputs, `test_len() * inputs` values.
    pub test_x: Vec<f32>,
    /// Test labels.
    pub test_y: Vec<u8>,
}

impl Dataset {
    /// Number of training samples.
    pub fn train_len(&self) -> usize {
        self.train_y.len()
    }

    /// Number of test samples.
    pub fn test_len(&self) -> usize {
        self.test_y.len()
    }

    /// Training sample `i`: its inputs and label. Panics if `i >= train_len()` (an indexing bug of the
    /// caller, like slice indexing).
    pub fn train_sample(&self, i: usize) -> (&[f32], u8) {
        (
            &self.train_x[i * self.inputs..(i + 1) * self.inputs],
            self.train_y[i],
        )
    }

    /// Test sample `i`: its inputs and label. Panics if `i >= test_len()` (an indexing bug of the
    /// caller, like slice indexing).
    pub fn test_sample(&self, i: usize) -> (&[f32], u8) {
        (
            &self.test_x[i * self.inputs..(i + 1) * self.inputs],
            self.test_y[i],
        )
    }

    /// Keeps the first `train` training and the first `test` test samples (all of them where a set is
    /// shorter). `classes` is left as it was.
    pub fn truncate(&mut self, train: usize, test: usize) {
        let train = train.min(self.train_len());
        let test = test.min(self.test_len());
        self.train_y.truncate(train);
        self.train_x.truncate(train * self.inputs);
        self.test_y.truncate(test);
        self.test_x.truncate(test * self.inputs);
    }

    /// Keeps the central `side x side` pixels of every (square) image, in both sets: from a
    /// `s x s` image the rows and columns `(s - side) / 2 .. (s - side) / 2 + side` (rounded down), so
    /// 28 x 28 -> 20 x 20 drops a 4-pixel border on every side, as MLP+NeuroSim prepares MNIST.
    /// `inputs` becomes `side * side`. An error (and no change) when `inputs` is not a square or
    /// `side` is 0 or larger than the image.
    pub fn crop(&mut self, side: usize) -> Result<(), String> {
        let s = (self.inputs as f64).sqrt().round() as usize;
        if s * s != self.inputs {
            return Err(format!(
                "crop needs square images; dataset {} has {} inputs per sample",
                self.name, self.inputs
            ));
        }
        if side == 0 || side > s {
            return Err(format!(
                "crop side {side} must lie in [1, {s}] (images of dataset {} are {s} x {s})",
                self.name
            ));
        }
        let off = (s - side) / 2;
        let cut = |x: &[f32]| -> Vec<f32> {
            let mut out = Vec::with_capacity(x.len() / self.inputs * side * side);
            for img in x.chunks_exact(self.inputs) {
                for r in off..off + side {
                    out.extend_from_slice(&img[r * s + off..r * s + off + side]);
                }
            }
            out
        };
        self.train_x = cut(&self.train_x);
        self.test_x = cut(&self.test_x);
        self.inputs = side * side;
        Ok(())
    }

    /// Black-and-white inputs: every value `>= threshold` becomes 1, every other 0, in both sets
    /// (MLP+NeuroSim's `BWthreshold`: `truncate(x, 1, 0.5)` in its `IO.cpp` maps `x >= 0.5` to 1).
    pub fn binarize(&mut self, threshold: f32) {
        for v in self.train_x.iter_mut().chain(self.test_x.iter_mut()) {
            *v = if *v >= threshold { 1.0 } else { 0.0 };
        }
    }
}

/// Hidden units of the teacher network of [`teacher_student`].
pub const TEACHER_HIDDEN: usize = 32;

/// Stream indices (under [`Purpose::Data`]) used by [`teacher_student`].
const TEACHER_STREAM: u64 = 0x7e_0000;

/// A teacher-student classification task: inputs uniform in [0, 1]; the label of an input is the argmax
/// of a fixed random teacher network `inputs -> 32 tanh hidden units -> classes` drawn from `seed`.
///
/// The teacher's hidden layer sees the centred input `x - 0.5` through Gaussian weights of variance
/// `3 / inputs` (so each pre-activation has unit variance) plus a small Gaussian bias; its output layer
/// has Gaussian weights of variance `1 / 32`. Its output biases are then calibrated on 4000 inputs drawn
/// from the teacher's stream so that each class wins on roughly `1 / classes` of the inputs (a plain
/// random teacher lets a few classes dominate). Training and test inputs come from two further distinct
/// streams; everything is deterministic in `seed`.
///
/// `classes` is clamped to `1..=256` (labels are `u8`). With `inputs = 0` every sample has the same
/// (empty) input and hence the same label.
pub fn teacher_student(
    train: usize,
    test: usize,
    inputs: usize,
    classes: usize,
    seed: u64,
) -> Dataset {
    let classes = classes.clamp(1, 256);
    let h = TEACHER_HIDDEN;
    let mut rng = stream(seed, Purpose::Data, TEACHER_STREAM);
    let normal = |rng: &mut aimsim_sim::rng::Pcg, sd: f32| -> f32 {
        let z: f32 = StandardNormal.sample(rng);
        z * sd
    };
    let sd1 = (3.0 / inputs.max(1) as f32).sqrt();
    let w1: Vec<f32> = (0..h * inputs).map(|_| normal(&mut rng, sd1)).collect();
    let b1: Vec<f32> = (0..h).map(|_| normal(&mut rng, 0.2)).collect();
    let sd2 = (1.0 / h as f32).sqrt();
    let w2: Vec<f32> = (0..classes * h).map(|_| normal(&mut rng, sd2)).collect();
    let mut b2 = vec![0.0f32; classes];

    let hidden = |x: &[f32], out: &mut [f32]| {
        for (j, o) in out.iter_mut().enumerate() {
            let row = &w1[j * inputs..(j + 1) * inputs];
            let s: f32 = row.iter().zip(x).map(|(w, &xi)| w * (xi - 0.5)).sum();
            *o = (s + b1[j]).tanh();
        }
    };
    let argmax = |hid: &[f32], b2: &[f32]| -> u8 {
        let mut best = (f32::NEG_INFINITY, 0usize);
        for (c, &b) in b2.iter().enumerate() {
            let row = &w2[c * h..(c + 1) * h];
            let s: f32 = row.iter().zip(hid).map(|(w, x)| w * x).sum::<f32>() + b;
            if s > best.0 {
                best = (s, c);
            }
        }
        // classes <= 256, so c fits in u8.
        best.1 as u8
    };

    // Calibrate the output biases so the classes are roughly balanced.
    const CALIBRATION: usize = 4000;
    let mut x = vec![0.0f32; inputs];
    let mut cal_h = vec![0.0f32; CALIBRATION * h];
    for k in 0..CALIBRATION {
        for v in x.iter_mut() {
            *v = rng.random::<f32>();
        }
        hidden(&x, &mut cal_h[k * h..(k + 1) * h]);
    }
    if classes > 1 {
        let target = 1.0 / classes as f32;
        let mut counts = vec![0usize; classes];
        for step in 0..200 {
            counts.iter_mut().for_each(|c| *c = 0);
            for k in 0..CALIBRATION {
                counts[usize::from(argmax(&cal_h[k * h..(k + 1) * h], &b2))] += 1;
            }
            let rate = 0.5 / (1.0 + step as f32 * 0.05);
            for (b, &c) in b2.iter_mut().zip(&counts) {
                *b += rate * (target - c as f32 / CALIBRATION as f32) / target;
            }
        }
    }

    let draw = |n: usize, index: u64| -> (Vec<f32>, Vec<u8>) {
        let mut rng = stream(seed, Purpose::Data, TEACHER_STREAM + index);
        let mut xs = vec![0.0f32; n * inputs];
        let mut ys = Vec::with_capacity(n);
        let mut hid = vec![0.0f32; h];
        for i in 0..n {
            let row = &mut xs[i * inputs..(i + 1) * inputs];
            for v in row.iter_mut() {
                *v = rng.random::<f32>();
            }
            hidden(row, &mut hid);
            ys.push(argmax(&hid, &b2));
        }
        (xs, ys)
    };
    let (train_x, train_y) = draw(train, 1);
    let (test_x, test_y) = draw(test, 2);
    Dataset {
        name: "teacher-student".into(),
        inputs,
        classes,
        train_x,
        train_y,
        test_x,
        test_y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teacher_is_balanced() {
        let d = teacher_student(5000, 0, 20, 10, 3);
        let mut hist = [0usize; 10];
        for &y in &d.train_y {
            hist[y as usize] += 1;
        }
        for (c, &n) in hist.iter().enumerate() {
            assert!(
                (250..=850).contains(&n),
                "class {c}: {n} of 5000 ({hist:?})"
            );
        }
    }

    /// A 6 x 6 dataset whose pixel (r, c) of sample k holds `k + r / 10 + c / 100`.
    fn grid(train: usize, test: usize) -> Dataset {
        let img = |k: usize| -> Vec<f32> {
            (0..36)
                .map(|i| k as f32 + (i / 6) as f32 / 10.0 + (i % 6) as f32 / 100.0)
                .collect()
        };
        Dataset {
            name: "grid".into(),
            inputs: 36,
            classes: 2,
            train_x: (0..train).flat_map(img).collect(),
            train_y: vec![0; train],
            test_x: (0..test).flat_map(|k| img(10 + k)).collect(),
            test_y: vec![1; test],
        }
    }

    #[test]
    fn crop_keeps_the_centre_of_every_image() {
        let mut d = grid(2, 1);
        d.crop(4).unwrap();
        assert_eq!(d.inputs, 16);
        assert_eq!((d.train_len(), d.test_len()), (2, 1));
        assert_eq!((d.train_x.len(), d.test_x.len()), (32, 16));
        // Sample 1, first kept pixel: row 1, column 1; last: row 4, column 4.
        let (x, _) = d.train_sample(1);
        assert!((x[0] - 1.11).abs() < 1e-6, "{x:?}");
        assert!((x[3] - 1.14).abs() < 1e-6, "{x:?}");
        assert!((x[15] - 1.44).abs() < 1e-6, "{x:?}");
        let (t, _) = d.test_sample(0);
        assert!((t[5] - 10.22).abs() < 1e-5, "{t:?}");
        // An odd margin drops the extra row and column at the end: 6 -> 3 starts at row 1.
        let mut odd = grid(1, 0);
        odd.crop(3).unwrap();
        assert!((odd.train_x[0] - 0.11).abs() < 1e-6);
        // The full side is the identity.
        let mut same = grid(1, 1);
        same.crop(6).unwrap();
        assert_eq!(same, grid(1, 1));
    }

    #[test]
    fn crop_refuses_what_it_cannot_do() {
        let mut d = grid(1, 1);
        assert!(d.crop(7).unwrap_err().contains("[1, 6]"));
        assert!(d.crop(0).is_err());
        assert_eq!(d, grid(1, 1), "a refused crop changes nothing");
        let mut flat = teacher_student(4, 2, 20, 10, 3);
        assert!(flat.crop(4).unwrap_err().contains("square"));
    }

    #[test]
    fn binarize_thresholds_at_or_above() {
        let mut d = grid(1, 1);
        d.train_x = vec![0.0, 0.49, 0.5, 0.51, 1.0];
        d.test_x = vec![0.2, 0.7];
        d.binarize(0.5);
        assert_eq!(d.train_x, vec![0.0, 0.0, 1.0, 1.0, 1.0]);
        assert_eq!(d.test_x, vec![0.0, 1.0]);
    }
}
