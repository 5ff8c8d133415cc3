//! `aimsim mvm`: given weights and inputs through a layer of tiles and the scenario's periphery.

mod common;

use std::path::Path;

use aimsim::output::npy_f32;
use common::{TempDir, aimsim, read_npy};

const SCENARIO: &str = "[scenario]\nname = \"mvm\"\nseed = 1\n[tile]\nrows = 32\ncols = 32\n\
                        [device]\nmodel = \"constant-step\"\ndw_min = 0.001\n";

/// A deterministic `rows x cols` matrix of values in (-1, 1).
fn matrix(rows: usize, cols: usize, salt: u32) -> Vec<f32> {
    (0..rows * cols)
        .map(|k| {
            let h = (k as u32 ^ salt).wrapping_mul(2_654_435_761) >> 8;
            (h % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// An ideal periphery with exactly set weights reads the float products (the layer spans a grid of
/// tiles, so the digital partial sums are checked too); aihwkit's default periphery scatters them by its
/// output noise and quantization; backward reads take vectors of the row count; bad input is refused
/// naming the file.
#[test]
fn mvm_reads_products_through_the_periphery() {
    let dir = TempDir::new("mvm");
    let file = dir.write("s.toml", SCENARIO);
    let (rows, cols, n) = (40, 70, 50);
    let w = dir.write("w.npy", npy_f32(&[rows, cols], &matrix(rows, cols, 1)));
    let x = dir.write("x.npy", npy_f32(&[n, cols], &matrix(n, cols, 2)));
    let d = dir.write("d.npy", npy_f32(&[n, rows], &matrix(n, rows, 3)));
    let ideal = [
        "--set",
        "io.dac_bits=0",
        "--set",
        "io.adc_bits=0",
        "--set",
        "io.out_noise=0",
        "--set",
        "io.noise_management=false",
        "--set",
        "io.out_bound=inf",
    ];
    let out = dir.sub("ideal");
    let mut args = vec!["mvm", &file, "--weights", &w, "--inputs", &x, "--out", &out];
    args.extend(ideal);
    let o = aimsim(&args);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let (shape, y) = read_npy(&Path::new(&out).join("outputs.npy"));
    let (_, e) = read_npy(&Path::new(&out).join("exact.npy"));
    assert_eq!(shape, [n, rows]);
    let worst = y
        .iter()
        .zip(&e)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-4, "ideal read off by {worst}");

    // aihwkit's default periphery: output noise 0.06 plus DAC/ADC rounding, no bias.
    for (dir_flag, inputs, len) in [("forward", &x, rows), ("backward", &d, cols)] {
        let out = dir.sub(dir_flag);
        let o = aimsim(&[
            "mvm",
            &file,
            "--weights",
            &w,
            "--inputs",
            inputs,
            "--direction",
            dir_flag,
            "--out",
            &out,
        ]);
        assert_eq!(o.code, Some(0), "{}", o.stderr);
        let (shape, y) = read_npy(&Path::new(&out).join("outputs.npy"));
        let (_, e) = read_npy(&Path::new(&out).join("exact.npy"));
        assert_eq!(shape, [n, len]);
        let err: Vec<f64> = y.iter().zip(&e).map(|(a, b)| (a - b) as f64).collect();
        let mean = err.iter().sum::<f64>() / err.len() as f64;
        let sd = (err.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / err.len() as f64).sqrt();
        // Two tiles' noise adds for the grid's partial sums: between 0.06 and about 0.06 sqrt(3).
        assert!(sd > 0.055 && sd < 0.12, "{dir_flag}: error sd {sd}");
        assert!(
            mean.abs() < 4.0 * sd / (err.len() as f64).sqrt(),
            "{dir_flag}: mean {mean}"
        );
    }

    // A backward input of the forward length, and a file that is not .npy.
    let o = aimsim(&[
        "mvm",
        &file,
        "--weights",
        &w,
        "--inputs",
        &x,
        "--direction",
        "backward",
        "--out",
        &dir.sub("bad"),
    ]);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("x.npy") && o.stderr.contains("40 values"),
        "{}",
        o.stderr
    );
    let junk = dir.write("junk.npy", "not numpy");
    let o = aimsim(&[
        "mvm",
        &file,
        "--weights",
        &junk,
        "--inputs",
        &x,
        "--out",
        &dir.sub("bad2"),
    ]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("junk.npy"), "{}", o.stderr);
}
