//! `aimsim mvm`: given weights and inputs through one layer of tiles and the scenario's periphery, the
//! outputs as the chip reads them, next to the exact products. What a cross-check of the periphery
//! against another simulator needs (docs/validation.md).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::time::Instant;

use aimsim_sim::ledger::Ledger;
use aimsim_sim::matrix::AnalogMatrix;
use aimsim_sim::par::Par;
use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::output::{crate_versions_json, npy_f32, write_atomic, write_manifest};
use crate::scenario::Loaded;

/// Largest number of weights (rows x columns) `aimsim mvm` accepts.
pub const MAX_WEIGHTS: u64 = 16 << 20;
/// Largest number of input values (vectors x length) `aimsim mvm` accepts.
pub const MAX_INPUTS: u64 = 64 << 20;

/// A 2-D float array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Array2 {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// Reads a 2-D float32 or float64 `.npy` file (C order) with at most `limit` values. Errors name the
/// file and what is wrong with it.
pub fn read_npy_2d(path: &Path, limit: u64) -> Result<Array2> {
    let f = path.display();
    let file = File::open(path).with_context(|| format!("{f}: cannot open"))?;
    let npy = npyz::NpyFile::new(BufReader::new(file))
        .with_context(|| format!("{f}: not a readable .npy file"))?;
    let shape = npy.shape().to_vec();
    if shape.len() != 2 {
        bail!("{f}: a 2-D array is needed, this one has shape {shape:?}");
    }
    if npy.order() != npyz::Order::C {
        bail!("{f}: the array is stored in Fortran order; save it in C order (numpy's default)");
    }
    let n = shape[0].saturating_mul(shape[1]);
    if n == 0 {
        bail!("{f}: the array is empty (shape {shape:?})");
    }
    if n > limit {
        bail!("{f}: {n} values (shape {shape:?}) exceed the limit of {limit}");
    }
    let descr = match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => other.descr(),
    };
    let data: Vec<f32> = match descr.as_str() {
        "<f4" => npy
            .into_vec::<f32>()
            .with_context(|| format!("{f}: cannot read its float32 data"))?,
        "<f8" => npy
            .into_vec::<f64>()
            .with_context(|| format!("{f}: cannot read its float64 data"))?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        other => {
            bail!("{f}: dtype {other}; little-endian float32 (<f4) or float64 (<f8) is needed")
        }
    };
    if let Some(k) = data.iter().position(|v| !v.is_finite()) {
        bail!(
            "{f}: value {k} (row {}, column {}) is not finite",
            k / shape[1] as usize,
            k % shape[1] as usize
        );
    }
    Ok(Array2 {
        rows: shape[0] as usize,
        cols: shape[1] as usize,
        data,
    })
}

/// What `aimsim mvm` does: the read direction and how the weights reach the devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MvmMode {
    /// Backward reads `z = W^T d` instead of forward reads `y = W x`.
    pub backward: bool,
    /// Set the devices exactly ([`AnalogMatrix::set_weights_exact`]) instead of programming them with
    /// pulses.
    pub exact: bool,
}

/// Files written by [`mvm`], and the mean and standard deviation of the error.
#[derive(Debug, Clone)]
pub struct MvmRun {
    /// Vectors read.
    pub vectors: usize,
    /// Mean of (output - exact product) over every output.
    pub error_mean: f64,
    /// Standard deviation of the same.
    pub error_sd: f64,
}

/// Sets (or programs) `weights` (`out x in`, layer units) on a layer of tiles built from the scenario
/// (`[tile]`, `[io]`, `[device]`, `tile.w_scale`, seed) and reads every row of `inputs` through it.
/// Writes `outputs.npy` (vectors x outputs), `exact.npy` (the float products with the given weights),
/// `weights.npy` (what the devices hold) and `manifest.json` into `out`.
pub fn mvm(
    loaded: &Loaded,
    weights: &Path,
    inputs: &Path,
    mode: MvmMode,
    out: &Path,
) -> Result<MvmRun> {
    let started = Instant::now();
    let s = &loaded.scenario;
    let w = read_npy_2d(weights, MAX_WEIGHTS)?;
    let x = read_npy_2d(inputs, MAX_INPUTS)?;
    let (in_len, out_len) = if mode.backward {
        (w.rows, w.cols)
    } else {
        (w.cols, w.rows)
    };
    if x.cols != in_len {
        bail!(
            "{}: each row is one input vector of {} values ({} read of a {}x{} weight matrix), got {}",
            inputs.display(),
            in_len,
            if mode.backward {
                "a backward"
            } else {
                "a forward"
            },
            w.rows,
            w.cols,
            x.cols
        );
    }
    let _lock = crate::output::lock_out(out)?;
    let mut m = AnalogMatrix::new(
        w.rows,
        w.cols,
        &s.hardware.tile,
        &s.hardware.device,
        &s.hardware.controller,
        s.hardware.w_scale,
        s.hardware.cost.clone(),
        s.seed(),
        0,
    )
    .context("the device description was accepted by validation but could not be built")?;
    if mode.exact {
        m.set_weights_exact(&w.data);
    } else {
        m.program(&w.data);
    }
    let mut ledger = Ledger::default();
    let mut outputs = Vec::with_capacity(x.rows * out_len);
    let mut exact = Vec::with_capacity(x.rows * out_len);
    let (mut sum, mut sum2) = (0.0f64, 0.0f64);
    let mut y = vec![0.0f32; out_len];
    for v in x.data.chunks_exact(in_len) {
        if mode.backward {
            m.backward(v, &mut y, &mut ledger, Par::Rayon);
        } else {
            m.forward(v, &mut y, &mut ledger, Par::Rayon);
        }
        for (o, yo) in y.iter().enumerate() {
            let e: f64 = (0..in_len)
                .map(|k| {
                    let wk = if mode.backward {
                        w.data[k * w.cols + o]
                    } else {
                        w.data[o * w.cols + k]
                    };
                    wk as f64 * v[k] as f64
                })
                .sum();
            let err = *yo as f64 - e;
            sum += err;
            sum2 += err * err;
            exact.push(e as f32);
        }
        outputs.extend_from_slice(&y);
    }
    let n = outputs.len() as f64;
    let error_mean = sum / n;
    let error_sd = (sum2 / n - error_mean * error_mean).max(0.0).sqrt();
    write_atomic(
        &out.join("outputs.npy"),
        &npy_f32(&[x.rows, out_len], &outputs),
    )?;
    write_atomic(&out.join("exact.npy"), &npy_f32(&[x.rows, out_len], &exact))?;
    write_atomic(
        &out.join("weights.npy"),
        &npy_f32(&[w.rows, w.cols], &m.weights()),
    )?;
    let manifest = json!({
        "command": "mvm",
        "aimsim_version": env!("CARGO_PKG_VERSION"),
        "crate_versions": crate_versions_json(),
        "scenario": crate::commands::scenario_json(loaded),
        "seed": s.seed(),
        "weights": weights.display().to_string(),
        "inputs": inputs.display().to_string(),
        "direction": if mode.backward { "backward" } else { "forward" },
        "program": if mode.exact { "exact" } else { "pulses" },
        "vectors": x.rows,
        "error_mean": error_mean,
        "error_sd": error_sd,
        "files": ["outputs.npy", "exact.npy", "weights.npy", "manifest.json"],
        "wall_s": started.elapsed().as_secs_f64(),
    });
    write_manifest(out, &manifest)?;
    Ok(MvmRun {
        vectors: x.rows,
        error_mean,
        error_sd,
    })
}
