//! Mini-batches and convolutional layers: the passes of [`Mlp`] over many weight reads at once.
//!
//! A batch of `B` samples goes forward layer by layer, each layer reading all of its inputs together
//! (`B` per dense layer, `B x positions` per convolution: [`Weights::forward_batch`], the weights
//! fetched from memory once per batch); the errors come back the same way; then every layer takes its
//! `B x positions` outer products as the device sees them ([`BatchUpdate`]: by default each as its own
//! pulsed update, in sample order and, within a sample, in position order, as aihwkit's analog tiles
//! do). The loss is the batch mean, so each sample's step is `lr / B`; a convolution's positions add up
//! (the gradient of a shared kernel is the sum over positions). Every tile sees its inputs in sample
//! order, so its random draws do not depend on the batch's grouping of layers; at `B = 1` a dense
//! network computes the bits of [`Mlp::train_step`] (tested).

use aimsim_sim::ledger::Ledger;
use aimsim_sim::par::Par;
use aimsim_sim::rng::{Pcg, Purpose, stream};

use super::*;

/// A layer's buffers for mini-batch and convolutional passes (rewritten by every pass).
#[derive(Debug, Default)]
pub struct BatchBuffers {
    /// The weights' inputs, one row per read (`B x positions`), with the bias column in tile mode.
    xs: Vec<f32>,
    /// Pre-activations, one row of `out_dim` per read.
    zs: Vec<f32>,
    /// Activations, as `zs`.
    acts: Vec<f32>,
    /// A convolution's activated maps, channel by channel, per sample (before pooling).
    maps: Vec<f32>,
    /// Max pooling: the map index each pooled value came from.
    arg: Vec<u32>,
    /// The layer's outputs, `output_len` per sample (the next layer's inputs).
    out: Vec<f32>,
    /// Errors at the pre-activations, as `zs`.
    ds: Vec<f32>,
    /// Backward reads, one row of the weights' columns per read.
    backs: Vec<f32>,
    /// Gradient of the loss with respect to the layer's outputs, `output_len` per sample.
    grad: Vec<f32>,
}

impl Mlp {
    /// Whether the network has convolutional layers (it then runs every pass through the batch path).
    pub fn has_conv(&self) -> bool {
        self.layers.iter().any(|l| l.conv.is_some())
    }

    /// Forward pass of `batch` samples (`inputs`, one after another), layer by layer; returns the
    /// scores, one row of classes per sample. With `noise` (training), float layers read their
    /// weights with the hardware-aware noise of [`Mlp::set_weight_noise`], sample `b` from the stream
    /// of the ledger's sample count plus `b`.
    pub fn forward_many(
        &mut self,
        inputs: &[f32],
        batch: usize,
        ledger: &mut Ledger,
        par: Par<'_>,
        noise: bool,
    ) -> &[f32] {
        let mut rngs: Vec<Pcg> = if noise && self.weight_noise.0 > 0.0 {
            (0..batch as u64)
                .map(|b| {
                    stream(
                        self.weight_noise.1,
                        Purpose::WeightNoise,
                        ledger.samples() + b,
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        let level = self.weight_noise.0;
        for l in 0..self.layers.len() {
            let (prev, rest) = self.layers.split_at_mut(l);
            let layer = &mut rest[0];
            let src: &[f32] = if l == 0 { inputs } else { &prev[l - 1].buf.out };
            layer_forward(layer, src, batch, ledger, par, &mut rngs, level);
        }
        let classes = self.probs.len();
        self.batch_probs.resize(batch * classes, 0.0);
        let last = &self.layers.last().expect("layers").buf.out;
        for (a, p) in last
            .chunks_exact(classes)
            .zip(self.batch_probs.chunks_exact_mut(classes))
        {
            scores(self.loss, a, p);
        }
        if let Some(p) = self.batch_probs.rchunks_exact(classes).next() {
            self.probs.copy_from_slice(p);
        }
        &self.batch_probs
    }

    /// The class each sample of the last [`Mlp::forward_many`] scored highest (the first of equals).
    pub fn batch_predictions(&self) -> Vec<usize> {
        self.batch_probs
            .chunks_exact(self.probs.len())
            .map(argmax)
            .collect()
    }

    /// One on-chip learning step on a mini-batch of `labels.len()` samples (`inputs`, one after
    /// another): forward and backward of the batch on the same weights, then every layer's outer
    /// products as `mode` says ([`BatchUpdate::Sequential`]: each its own pulsed update, in order),
    /// each with `lr / B` (the batch-mean loss), the layers' tiles in parallel as `par` allows. Returns
    /// each sample's loss and predicted class.
    pub fn train_batch(
        &mut self,
        inputs: &[f32],
        labels: &[usize],
        lr: f32,
        mode: BatchUpdate,
        ledger: &mut Ledger,
        par: Par<'_>,
    ) -> Vec<(f32, usize)> {
        let batch = labels.len();
        self.forward_many(inputs, batch, ledger, par, true);
        let classes = self.probs.len();
        let mut out = Vec::with_capacity(batch);
        let n = self.layers.len();
        {
            let last = &mut self.layers[n - 1];
            let rows = last.positions() * batch;
            debug_assert_eq!(rows, batch);
            last.buf.ds.resize(rows * last.out_dim, 0.0);
            for (b, &label) in labels.iter().enumerate() {
                let p = &self.batch_probs[b * classes..(b + 1) * classes];
                let d = &mut last.buf.ds[b * classes..(b + 1) * classes];
                let loss = match self.loss {
                    Loss::CrossEntropy => {
                        for (k, (d, p)) in d.iter_mut().zip(p).enumerate() {
                            *d = p - if k == label { 1.0 } else { 0.0 };
                        }
                        -(p[label].max(1e-12)).ln()
                    }
                    Loss::Mse => {
                        let f = last.act.expect("MSE output has an activation");
                        let z = &last.buf.zs[b * classes..(b + 1) * classes];
                        let mut loss = 0.0;
                        for k in 0..classes {
                            let e = p[k] - if k == label { 1.0 } else { 0.0 };
                            loss += 0.5 * e * e;
                            d[k] = e * f.derivative(z[k], p[k]);
                        }
                        loss
                    }
                };
                out.push((loss, argmax(p)));
            }
        }
        // Backward: each layer's errors from the layer above, through the above's transposes.
        for l in (1..n).rev() {
            let (lower, upper) = self.layers.split_at_mut(l);
            let above = &mut upper[0];
            let below = &mut lower[l - 1];
            layer_backward(above, batch, ledger, par);
            errors_from_grad(below, &above.buf.grad, batch);
        }
        // Updates: every layer's jobs at once, each layer charging its own ledger, merged in layer
        // order (totals independent of the thread count).
        let scale = lr / batch as f32;
        let mut ledgers = vec![Ledger::default(); n];
        let mut jobs = Vec::new();
        for (k, layer) in self.layers.iter_mut().enumerate() {
            let rows = batch * layer.positions();
            jobs.extend(layer.weights.update_batch_jobs(
                &layer.buf.xs,
                &layer.buf.ds,
                rows,
                scale * self.lr_scale[k],
                mode,
            ));
        }
        par.run(jobs);
        for ((layer, own), f) in self.layers.iter_mut().zip(&mut ledgers).zip(&self.lr_scale) {
            layer.weights.finish_update(own);
            if layer.bias_mode == BiasMode::Digital {
                let s = scale * f;
                let mut g = vec![0.0f32; layer.out_dim];
                for d in layer.buf.ds.chunks_exact(layer.out_dim) {
                    for (g, d) in g.iter_mut().zip(d) {
                        *g += d;
                    }
                }
                for (b, g) in layer.bias.iter_mut().zip(&g) {
                    *b -= s * g;
                }
            }
        }
        for own in &ledgers {
            ledger.absorb(own);
        }
        for _ in 0..batch {
            ledger.count_sample();
        }
        out
    }
}

/// The index of the largest value (the first of equals).
pub(super) fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (k, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = k;
        }
    }
    best
}

/// One layer's forward pass of `batch` inputs `src` (`input_len` each) into `layer.buf.out`.
fn layer_forward(
    layer: &mut Layer,
    src: &[f32],
    batch: usize,
    ledger: &mut Ledger,
    par: Par<'_>,
    rngs: &mut [Pcg],
    level: f32,
) {
    let cols = layer.x.len();
    let tile_bias = layer.bias_mode == BiasMode::Tile;
    let pos = layer.positions();
    let rows = batch * pos;
    let in_len = layer.input_len();
    let out_len = layer.output_len();
    let buf = &mut layer.buf;
    buf.xs.resize(rows * cols, 0.0);
    match layer.conv {
        Some(g) => {
            for b in 0..batch {
                g.im2col(
                    &src[b * in_len..(b + 1) * in_len],
                    &mut buf.xs[b * pos * cols..(b + 1) * pos * cols],
                    cols,
                    tile_bias,
                );
            }
        }
        None => {
            for (row, x) in buf.xs.chunks_exact_mut(cols).zip(src.chunks_exact(in_len)) {
                row[..in_len].copy_from_slice(x);
                if tile_bias {
                    row[in_len] = 1.0;
                }
            }
        }
    }
    buf.zs.resize(rows * layer.out_dim, 0.0);
    layer
        .weights
        .forward_batch(&buf.xs, &mut buf.zs, rows, ledger, par);
    if !rngs.is_empty() && layer.weights.tiles().is_empty() {
        let w_max = layer
            .weights
            .weights()
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()));
        for (r, (z, x)) in buf
            .zs
            .chunks_exact_mut(layer.out_dim)
            .zip(buf.xs.chunks_exact(cols))
            .enumerate()
        {
            let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt();
            let sigma = level * w_max * norm;
            let rng = &mut rngs[r / pos];
            for z in z.iter_mut() {
                let xi: f32 = aimsim_devices::normal::standard_normal(rng);
                *z += sigma * xi;
            }
        }
    }
    buf.acts.resize(rows * layer.out_dim, 0.0);
    for (z, a) in buf
        .zs
        .chunks_exact_mut(layer.out_dim)
        .zip(buf.acts.chunks_exact_mut(layer.out_dim))
    {
        digital_tail(&layer.out_scale, layer.bias_mode, &layer.bias, z);
        match layer.act {
            Some(f) => {
                for (a, z) in a.iter_mut().zip(z.iter()) {
                    *a = f.apply(*z);
                }
            }
            None => a.copy_from_slice(z),
        }
    }
    buf.out.resize(batch * out_len, 0.0);
    match layer.conv {
        None => buf.out.copy_from_slice(&buf.acts),
        Some(g) => {
            // Position-major reads to channel-major maps.
            let map_len = g.output_len();
            buf.maps.resize(batch * map_len, 0.0);
            for b in 0..batch {
                let acts = &buf.acts[b * pos * g.c_out..(b + 1) * pos * g.c_out];
                let maps = &mut buf.maps[b * map_len..(b + 1) * map_len];
                for (p, a) in acts.chunks_exact(g.c_out).enumerate() {
                    for (c, v) in a.iter().enumerate() {
                        maps[c * pos + p] = *v;
                    }
                }
            }
            match layer.pool {
                None => buf.out.copy_from_slice(&buf.maps),
                Some(p) => {
                    buf.arg.resize(batch * out_len, 0);
                    for b in 0..batch {
                        p.forward(
                            &buf.maps[b * map_len..(b + 1) * map_len],
                            &mut buf.out[b * out_len..(b + 1) * out_len],
                            &mut buf.arg[b * out_len..(b + 1) * out_len],
                        );
                    }
                }
            }
        }
    }
}

/// The backward reads of a layer's errors `buf.ds` into `buf.grad`, the gradient of its inputs
/// (`input_len` per sample).
fn layer_backward(layer: &mut Layer, batch: usize, ledger: &mut Ledger, par: Par<'_>) {
    let cols = layer.x.len();
    let pos = layer.positions();
    let rows = batch * pos;
    let in_len = layer.input_len();
    let buf = &mut layer.buf;
    buf.backs.resize(rows * cols, 0.0);
    layer
        .weights
        .backward_batch(&buf.ds, &mut buf.backs, rows, ledger, par);
    buf.grad.resize(batch * in_len, 0.0);
    match layer.conv {
        None => {
            for (g, z) in buf
                .grad
                .chunks_exact_mut(in_len)
                .zip(buf.backs.chunks_exact(cols))
            {
                g.copy_from_slice(&z[..in_len]);
            }
        }
        Some(geom) => {
            buf.grad.iter_mut().for_each(|v| *v = 0.0);
            for b in 0..batch {
                geom.col2im_add(
                    &buf.backs[b * pos * cols..(b + 1) * pos * cols],
                    cols,
                    &mut buf.grad[b * in_len..(b + 1) * in_len],
                );
            }
        }
    }
}

/// A layer's errors at its pre-activations from the gradient of its outputs `grad` (`output_len` per
/// sample): through the pooling, then times the activation's derivative.
fn errors_from_grad(layer: &mut Layer, grad: &[f32], batch: usize) {
    let f = layer.act.expect("hidden layers have an activation");
    let pos = layer.positions();
    let out_len = layer.output_len();
    let buf = &mut layer.buf;
    buf.ds.resize(batch * pos * layer.out_dim, 0.0);
    match layer.conv {
        None => {
            for ((d, g), (z, a)) in buf
                .ds
                .iter_mut()
                .zip(grad)
                .zip(buf.zs.iter().zip(&buf.acts))
            {
                *d = g * f.derivative(*z, *a);
            }
        }
        Some(geom) => {
            let map_len = geom.output_len();
            let mut g_maps = vec![0.0f32; map_len];
            for b in 0..batch {
                let g_out = &grad[b * out_len..(b + 1) * out_len];
                let g_maps: &[f32] = match layer.pool {
                    Some(p) => {
                        p.backward(g_out, &buf.arg[b * out_len..(b + 1) * out_len], &mut g_maps);
                        &g_maps
                    }
                    None => g_out,
                };
                let base = b * pos * geom.c_out;
                for p in 0..pos {
                    for c in 0..geom.c_out {
                        let i = base + p * geom.c_out + c;
                        buf.ds[i] = g_maps[c * pos + p] * f.derivative(buf.zs[i], buf.acts[i]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "mlp_batch_tests.rs"]
mod tests;
