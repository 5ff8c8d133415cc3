//! Datasets made in memory: the glyph generator, the teacher-student task and `Dataset` itself (the IDX
//! reader is tested with the `aimsim` package, `tests/data.rs`).

use aimsim_networks::data::{Dataset, glyphs, teacher_student};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;

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
