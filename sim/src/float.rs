//! Exact float weights: the software baseline of a layer on tiles, with the matrix-vector kernels of a
//! tile and no periphery, devices or costs.

use crate::kernels::gemv::{gemv, gemv_batch, gemv_t};
use crate::update::BatchUpdate;

/// An `out_dim x in_dim` matrix of exact `f32` weights (row-major), read and updated without noise,
/// quantization or pulses: what a network's layer computes in software.
#[derive(Debug, Clone)]
pub struct FloatMatrix {
    out_dim: usize,
    in_dim: usize,
    w: Vec<f32>,
}

impl FloatMatrix {
    /// A zero matrix.
    pub fn new(out_dim: usize, in_dim: usize) -> Self {
        FloatMatrix {
            out_dim,
            in_dim,
            w: vec![0.0; out_dim * in_dim],
        }
    }

    /// `(out_dim, in_dim)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.out_dim, self.in_dim)
    }

    /// `y = W x` (`x` of length `in_dim`, `y` of length `out_dim`), with the summation order of a
    /// tile's forward read.
    pub fn forward(&self, x: &[f32], y: &mut [f32]) {
        gemv(&self.w, self.out_dim, self.in_dim, x, y);
    }

    /// [`FloatMatrix::forward`] of `batch` inputs one after another (`xs` to `ys`), the same bits.
    pub fn forward_batch(&self, xs: &[f32], ys: &mut [f32], batch: usize) {
        gemv_batch(&self.w, self.out_dim, self.in_dim, xs, ys, batch);
    }

    /// `z = W^T d` (`d` of length `out_dim`, `z` of length `in_dim`), with the summation order of a
    /// tile's backward read.
    pub fn backward(&self, d: &[f32], z: &mut [f32]) {
        gemv_t(&self.w, self.out_dim, self.in_dim, d, z);
    }

    /// The SGD step `W <- W - lr d x^T`, row by row (rows with `d_i = 0` untouched).
    pub fn update(&mut self, x: &[f32], d: &[f32], lr: f32) {
        for (row, di) in self.w.chunks_exact_mut(self.in_dim).zip(d) {
            if *di == 0.0 {
                continue;
            }
            let s = lr * di;
            for (w, xj) in row.iter_mut().zip(x) {
                *w -= s * xj;
            }
        }
    }

    /// The steps `W <- W - lr d_b x_b^T` of `batch` inputs `xs` and errors `ds`: `Sequential`, one
    /// [`FloatMatrix::update`] after another; `Accumulated`, the outer products summed first (row by
    /// row, in batch order), then one subtraction.
    pub fn update_batch(
        &mut self,
        xs: &[f32],
        ds: &[f32],
        batch: usize,
        lr: f32,
        mode: BatchUpdate,
    ) {
        let (rows, cols) = (self.out_dim, self.in_dim);
        match mode {
            BatchUpdate::Sequential => {
                for b in 0..batch {
                    self.update(
                        &xs[b * cols..(b + 1) * cols],
                        &ds[b * rows..(b + 1) * rows],
                        lr,
                    );
                }
            }
            BatchUpdate::Accumulated => {
                let mut g = vec![0.0f32; cols];
                for i in 0..rows {
                    g.iter_mut().for_each(|v| *v = 0.0);
                    let mut any = false;
                    for b in 0..batch {
                        let di = ds[b * rows + i];
                        if di == 0.0 {
                            continue;
                        }
                        any = true;
                        for (gj, xj) in g.iter_mut().zip(&xs[b * cols..(b + 1) * cols]) {
                            *gj += di * xj;
                        }
                    }
                    if any {
                        for (w, gj) in self.w[i * cols..(i + 1) * cols].iter_mut().zip(&g) {
                            *w -= lr * gj;
                        }
                    }
                }
            }
        }
    }

    /// The weights, row-major.
    pub fn weights(&self) -> &[f32] {
        &self.w
    }

    /// The weights, row-major, to overwrite (programming, restoring a checkpoint).
    pub fn weights_mut(&mut self) -> &mut [f32] {
        &mut self.w
    }
}
