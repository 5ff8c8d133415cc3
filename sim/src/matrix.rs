//! A weight matrix of any size mapped onto a grid of tiles, run in parallel.
//!
//! The `out x in` matrix is cut into blocks of `rows x cols`; block `(r, c)` lives on tile
//! `r * grid_cols + c`. Partial sums of a forward (backward) pass are combined digitally, block column by
//! block column (row by row), in a fixed order on one thread, so results do not depend on which
//! thread runs which tile (see [`crate::par`]).

use aimsim_devices::{DeviceSpec, SpecError, StateError};
use rayon::prelude::*;

use crate::par::{Job, Par};

use crate::ledger::{Charge, CostModel, Ledger, Phase};
use crate::tile::{ReadReport, Tile, TileConfig, TileState, VerifyReport};
use crate::update::{BatchUpdate, Controller, ControllerSpec, ControllerState, UpdateReport};

/// A layer's weights on tiles.
#[derive(Debug)]
pub struct AnalogMatrix {
    out_dim: usize,
    in_dim: usize,
    grid_rows: usize,
    grid_cols: usize,
    cfg: TileConfig,
    /// Layer weight of a normalized weight of 1.
    w_scale: f32,
    tiles: Vec<Tile>,
    controllers: Vec<Box<dyn Controller>>,
    /// Per-tile output buffers of the last pass.
    partial: Vec<Vec<f32>>,
    /// Per-tile reports of the update in progress.
    reports: Vec<UpdateReport>,
    /// The input of a forward read the update jobs already made (see
    /// [`AnalogMatrix::update_jobs_ahead`]): its outputs wait in `partial`, its charges in
    /// `ahead_charges`.
    ahead: Option<Vec<f32>>,
    ahead_charges: Vec<Charge>,
    cost: CostModel,
    /// Per tile, the outputs of the last forward read that reached the bound (only with
    /// [`IoConfig::zero_grad_at_bound`](crate::io::IoConfig::zero_grad_at_bound)): their errors are
    /// zeroed in the next backward read.
    at_bound: Vec<Vec<bool>>,
    /// Per tile, the masked error block of a backward read (scratch).
    masked: Vec<Vec<f32>>,
    /// Per tile, for each input of the last [`AnalogMatrix::forward_batch`] in order, its outputs that
    /// reached the bound (only with `zero_grad_at_bound`; empty otherwise).
    batch_bound: Vec<Vec<bool>>,
    /// Inputs of the last [`AnalogMatrix::forward_batch`].
    bound_batch: usize,
    /// Per tile, scratch of the batch reads and updates: outputs, reports, and the inputs and errors
    /// of the tile's block (kept between calls so that large batches do not allocate every time).
    scratch: Vec<BatchScratch>,
}

/// One tile's buffers for batch reads and updates.
#[derive(Debug, Default)]
struct BatchScratch {
    out: Vec<f32>,
    reports: Vec<ReadReport>,
    xs: Vec<f32>,
    ds: Vec<f32>,
}

/// The normalized weights of one tile's block `((r0, r1), (c0, c1))` of layer weights (row-major, `in_dim`
/// columns, layer units divided by `scale`), row-major over the block.
fn block_target(
    weights: &[f32],
    in_dim: usize,
    scale: f32,
    ((r0, r1), (c0, c1)): ((usize, usize), (usize, usize)),
) -> Vec<f32> {
    let mut target = Vec::with_capacity((r1 - r0) * (c1 - c0));
    for i in r0..r1 {
        target.extend(
            weights[i * in_dim + c0..i * in_dim + c1]
                .iter()
                .map(|w| w / scale),
        );
    }
    target
}

/// Everything of a layer's tiles that training changes: each tile's state and its controller's state, in
/// grid order.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixState {
    /// Per tile.
    pub tiles: Vec<TileState>,
    /// Per tile, its controller.
    pub controllers: Vec<ControllerState>,
}

/// The slice `[start, end)` of block `b` of size `size` in a dimension of length `len`.
fn block(b: usize, size: usize, len: usize) -> (usize, usize) {
    (b * size, ((b + 1) * size).min(len))
}

impl AnalogMatrix {
    /// Maps an `out_dim x in_dim` matrix onto tiles of `cfg.rows x cfg.cols` (edge tiles are smaller),
    /// with devices from `spec`. Tile `k` of this matrix gets id `id_base + k` (its device and noise
    /// streams derive from `seed` and that id).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        out_dim: usize,
        in_dim: usize,
        cfg: &TileConfig,
        spec: &DeviceSpec,
        controller: &ControllerSpec,
        w_scale: f32,
        cost: CostModel,
        seed: u64,
        id_base: u64,
    ) -> Result<Self, SpecError> {
        let grid_rows = out_dim.div_ceil(cfg.rows);
        let grid_cols = in_dim.div_ceil(cfg.cols);
        let mut tiles = Vec::with_capacity(grid_rows * grid_cols);
        for r in 0..grid_rows {
            for c in 0..grid_cols {
                let (r0, r1) = block(r, cfg.rows, out_dim);
                let (c0, c1) = block(c, cfg.cols, in_dim);
                let tc = TileConfig {
                    rows: r1 - r0,
                    cols: c1 - c0,
                    ..cfg.clone()
                };
                tiles.push(Tile::new(
                    id_base + (r * grid_cols + c) as u64,
                    &tc,
                    spec,
                    seed,
                )?);
            }
        }
        let partial = tiles
            .iter()
            .map(|t| vec![0.0; t.rows().max(t.cols())])
            .collect();
        Ok(AnalogMatrix {
            out_dim,
            in_dim,
            grid_rows,
            grid_cols,
            cfg: cfg.clone(),
            w_scale,
            controllers: tiles.iter().map(|_| controller.build()).collect(),
            tiles,
            partial,
            reports: Vec::new(),
            ahead: None,
            ahead_charges: Vec::new(),
            cost,
            at_bound: Vec::new(),
            masked: Vec::new(),
            batch_bound: Vec::new(),
            bound_batch: 0,
            scratch: Vec::new(),
        })
    }

    /// Output dimension.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Input dimension.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Tiles, in grid order.
    pub fn tiles(&self) -> &[Tile] {
        &self.tiles
    }

    /// Grid of tiles: (block rows, block columns).
    pub fn grid(&self) -> (usize, usize) {
        (self.grid_rows, self.grid_cols)
    }

    /// Number of tiles.
    pub fn tile_count(&self) -> usize {
        self.tiles.len()
    }

    /// Layer weight of a normalized weight of 1.
    pub fn w_scale(&self) -> f32 {
        self.w_scale
    }

    /// What training has changed in this layer (see [`MatrixState`]).
    pub fn export_state(&self) -> MatrixState {
        assert!(self.ahead.is_none(), "a forward read ahead is waiting");
        MatrixState {
            tiles: self.tiles.iter().map(Tile::export_state).collect(),
            controllers: self.controllers.iter().map(|c| c.export_state()).collect(),
        }
    }

    /// Restores a state made by [`AnalogMatrix::export_state`] on a matrix built from the same scenario.
    pub fn import_state(&mut self, s: &MatrixState) -> Result<(), StateError> {
        if s.tiles.len() != self.tiles.len() || s.controllers.len() != self.controllers.len() {
            return Err(StateError(format!(
                "saved state has {} tile(s) and {} controller(s), the layer has {} tile(s)",
                s.tiles.len(),
                s.controllers.len(),
                self.tiles.len()
            )));
        }
        for (t, ts) in self.tiles.iter_mut().zip(&s.tiles) {
            t.import_state(ts)?;
        }
        for (k, (c, cs)) in self.controllers.iter_mut().zip(&s.controllers).enumerate() {
            c.import_state(cs)
                .map_err(|e| StateError(format!("controller of tile {k}: {e}")))?;
        }
        Ok(())
    }

    fn tile_block(&self, k: usize) -> ((usize, usize), (usize, usize)) {
        let (r, c) = (k / self.grid_cols, k % self.grid_cols);
        (
            block(r, self.cfg.rows, self.out_dim),
            block(c, self.cfg.cols, self.in_dim),
        )
    }

    /// Programs layer weights (row-major `out x in`, layer units) onto the tiles with pulses.
    /// Returns the programming pulses used.
    pub fn program(&mut self, weights: &[f32]) -> u64 {
        assert_eq!(weights.len(), self.out_dim * self.in_dim, "weight shape");
        let blocks: Vec<_> = (0..self.tiles.len()).map(|k| self.tile_block(k)).collect();
        let (in_dim, scale) = (self.in_dim, self.w_scale);
        self.tiles
            .par_iter_mut()
            .zip(blocks)
            .map(|(t, block)| {
                let target = block_target(weights, in_dim, scale, block);
                t.program(&target)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .sum()
    }

    /// Programs layer weights (row-major `out x in`, layer units) onto the tiles with closed-loop
    /// write-verify ([`Tile::write_verify`]), tiles in parallel. Returns the counts of all tiles.
    pub fn write_verify(
        &mut self,
        weights: &[f32],
        tolerance: f32,
        max_pulses: u32,
    ) -> VerifyReport {
        assert_eq!(weights.len(), self.out_dim * self.in_dim, "weight shape");
        let blocks: Vec<_> = (0..self.tiles.len()).map(|k| self.tile_block(k)).collect();
        let (in_dim, scale) = (self.in_dim, self.w_scale);
        let reports: Vec<VerifyReport> = self
            .tiles
            .par_iter_mut()
            .zip(blocks)
            .map(|(t, block)| {
                let target = block_target(weights, in_dim, scale, block);
                t.write_verify(&target, tolerance, max_pulses)
            })
            .collect();
        let mut all = VerifyReport::default();
        for r in &reports {
            all.add(r);
        }
        all
    }

    /// The tiles, to change what their reads see (deployment; see [`Tile::set_read_fractions`]).
    pub fn tiles_mut(&mut self) -> &mut [Tile] {
        &mut self.tiles
    }

    /// The block of the layer matrix tile `k` holds: `((row0, row1), (col0, col1))`, ends exclusive.
    pub fn block(&self, k: usize) -> ((usize, usize), (usize, usize)) {
        self.tile_block(k)
    }

    /// Sets layer weights (row-major `out x in`, layer units) without pulses ([`Tile::set_weights_exact`]).
    pub fn set_weights_exact(&mut self, weights: &[f32]) {
        assert_eq!(weights.len(), self.out_dim * self.in_dim, "weight shape");
        for k in 0..self.tiles.len() {
            let ((r0, r1), (c0, c1)) = self.tile_block(k);
            let mut target = Vec::with_capacity((r1 - r0) * (c1 - c0));
            for i in r0..r1 {
                target.extend(
                    weights[i * self.in_dim + c0..i * self.in_dim + c1]
                        .iter()
                        .map(|w| w / self.w_scale),
                );
            }
            self.tiles[k].set_weights_exact(&target);
        }
    }

    /// The weights the devices hold now, in layer units, row-major `out x in`.
    pub fn weights(&self) -> Vec<f32> {
        let mut w = vec![0.0; self.out_dim * self.in_dim];
        for (k, t) in self.tiles.iter().enumerate() {
            let ((r0, r1), (c0, c1)) = self.tile_block(k);
            for i in r0..r1 {
                for j in c0..c1 {
                    w[i * self.in_dim + j] =
                        self.w_scale * t.weights()[(i - r0) * t.cols() + (j - c0)];
                }
            }
        }
        w
    }

    /// Forward pass `y = W x` on every tile, in parallel as `par` allows; charges the ledger.
    ///
    /// When the last update jobs already read `x` (see [`AnalogMatrix::update_jobs_ahead`]), their
    /// outputs and charges are used: the same values, charged at the same point.
    ///
    /// # Panics
    /// If a read ahead is waiting for a different input.
    pub fn forward(&mut self, x: &[f32], y: &mut [f32], ledger: &mut Ledger, par: Par<'_>) {
        assert_eq!(
            (x.len(), y.len()),
            (self.in_dim, self.out_dim),
            "forward shapes"
        );
        if let Some(read) = self.ahead.take() {
            assert!(
                read.iter()
                    .map(|v| v.to_bits())
                    .eq(x.iter().map(|v| v.to_bits())),
                "a forward read ahead waits for another input"
            );
            self.sum_partials(Phase::Forward, y);
            ledger.charge(Phase::Forward, &self.ahead_charges);
        } else {
            self.read(Phase::Forward, x, y, ledger, par);
        }
        self.mark_bound();
    }

    /// Forward passes of `batch` inputs (`xs`, `in_dim` values each, into `ys`, `out_dim` each), one job
    /// per tile ([`Tile::forward_batch`]: the weights fetched from memory once per batch), in parallel
    /// as `par` allows: the same outputs and random draws as [`AnalogMatrix::forward`] on each input in
    /// order, and the same charges, made input by input. With
    /// [`IoConfig::zero_grad_at_bound`](crate::io::IoConfig::zero_grad_at_bound) it records, for every
    /// input, which tile outputs reached the bound, for [`AnalogMatrix::backward_batch`] of the same
    /// batch.
    pub fn forward_batch(
        &mut self,
        xs: &[f32],
        ys: &mut [f32],
        batch: usize,
        ledger: &mut Ledger,
        par: Par<'_>,
    ) {
        assert!(self.ahead.is_none(), "a forward read ahead is waiting");
        assert!(xs.len() >= batch * self.in_dim && ys.len() >= batch * self.out_dim);
        let in_dim = self.in_dim;
        let blocks: Vec<_> = (0..self.tiles.len()).map(|k| self.tile_block(k)).collect();
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.resize_with(self.tiles.len(), BatchScratch::default);
        let jobs = self
            .tiles
            .iter_mut()
            .zip(scratch.iter_mut())
            .zip(&blocks)
            .map(|((t, sc), ((r0, r1), (c0, c1)))| {
                let work = (t.rows() * t.cols() * batch) as u64;
                Job::new(work, move || {
                    sc.xs.clear();
                    for b in 0..batch {
                        sc.xs
                            .extend_from_slice(&xs[b * in_dim + c0..b * in_dim + c1]);
                    }
                    sc.out.clear();
                    sc.out.resize(batch * (r1 - r0), 0.0);
                    sc.reports = t.forward_batch(&sc.xs, &mut sc.out, batch);
                })
            })
            .collect();
        par.run(jobs);
        self.sum_batch(&scratch, Phase::Forward, ys, batch, ledger);
        let io = &self.cfg.forward;
        self.batch_bound.clear();
        if io.zero_grad_at_bound && io.out_bound.is_finite() {
            let limit = 0.999 * io.out_bound;
            self.batch_bound = scratch
                .iter()
                .map(|sc| sc.out.iter().map(|v| v.abs() >= limit).collect())
                .collect();
        }
        self.scratch = scratch;
        self.bound_batch = batch;
    }

    /// Backward passes `z_b = W^T d_b` of `batch` errors (`ds`, `out_dim` values each, into `zs`,
    /// `in_dim` each), one job per tile reading its errors in order, in parallel as `par` allows: the
    /// same outputs, draws and charges as [`AnalogMatrix::backward`] on each error in order. After
    /// [`AnalogMatrix::forward_batch`] of as many inputs with `zero_grad_at_bound`, each error is
    /// masked by its own input's outputs at the bound.
    pub fn backward_batch(
        &mut self,
        ds: &[f32],
        zs: &mut [f32],
        batch: usize,
        ledger: &mut Ledger,
        par: Par<'_>,
    ) {
        assert!(self.ahead.is_none(), "a forward read ahead is waiting");
        assert!(ds.len() >= batch * self.out_dim && zs.len() >= batch * self.in_dim);
        let out_dim = self.out_dim;
        let masks = if self.batch_bound.is_empty() {
            None
        } else {
            assert_eq!(
                self.bound_batch, batch,
                "a backward batch of another size than its forward batch"
            );
            Some(&self.batch_bound)
        };
        let blocks: Vec<_> = (0..self.tiles.len()).map(|k| self.tile_block(k)).collect();
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.resize_with(self.tiles.len(), BatchScratch::default);
        let jobs = self
            .tiles
            .iter_mut()
            .zip(scratch.iter_mut())
            .zip(&blocks)
            .enumerate()
            .map(|(k, ((t, sc), ((r0, r1), (c0, c1))))| {
                let work = (t.rows() * t.cols() * batch) as u64;
                Job::new(work, move || {
                    let (n_in, n_out) = (r1 - r0, c1 - c0);
                    sc.out.clear();
                    sc.out.resize(batch * n_out, 0.0);
                    sc.ds.clear();
                    sc.ds.resize(n_in, 0.0);
                    sc.reports.clear();
                    for b in 0..batch {
                        let d = &ds[b * out_dim + r0..b * out_dim + r1];
                        match masks {
                            Some(m) => {
                                let m = &m[k][b * n_in..(b + 1) * n_in];
                                for ((v, d), at) in sc.ds.iter_mut().zip(d).zip(m) {
                                    *v = if *at { 0.0 } else { *d };
                                }
                            }
                            None => sc.ds.copy_from_slice(d),
                        }
                        let r = t.backward(&sc.ds, &mut sc.out[b * n_out..(b + 1) * n_out]);
                        sc.reports.push(r);
                    }
                })
            })
            .collect();
        par.run(jobs);
        self.sum_batch(&scratch, Phase::Backward, zs, batch, ledger);
        self.scratch = scratch;
    }

    /// Adds the tiles' outputs of a batch read (in `scratch`) into `output`, input by input and tile by
    /// tile as `sum_partials` adds them, and charges each input's reads in order.
    fn sum_batch(
        &self,
        scratch: &[BatchScratch],
        phase: Phase,
        output: &mut [f32],
        batch: usize,
        ledger: &mut Ledger,
    ) {
        let width = if phase == Phase::Forward {
            self.out_dim
        } else {
            self.in_dim
        };
        output[..batch * width].iter_mut().for_each(|v| *v = 0.0);
        for (k, sc) in scratch.iter().enumerate() {
            let (rows, cols) = self.tile_block(k);
            let (o0, o1) = if phase == Phase::Forward { rows } else { cols };
            let n = o1 - o0;
            for b in 0..batch {
                for (o, v) in output[b * width + o0..b * width + o1]
                    .iter_mut()
                    .zip(&sc.out[b * n..(b + 1) * n])
                {
                    *o += self.w_scale * v;
                }
            }
        }
        let mut charges = Vec::with_capacity(scratch.len());
        for b in 0..batch {
            charges.clear();
            charges.extend(scratch.iter().map(|sc| self.cost.read(&sc.reports[b])));
            ledger.charge(phase, &charges);
        }
    }

    /// The pulsed updates of a mini-batch, `dW = -lr d_b x_b^T` for the `batch` inputs `xs` and errors
    /// `ds` (layer units), as one job per tile: each tile's controller takes the batch as `mode` says
    /// ([`Controller::update_batch`]: by default every step in order, as the device sees a batch). Run
    /// the jobs (see [`Par::run`]), then call [`AnalogMatrix::finish_update`].
    pub fn update_batch_jobs<'a>(
        &'a mut self,
        xs: &'a [f32],
        ds: &'a [f32],
        batch: usize,
        lr: f32,
        mode: BatchUpdate,
    ) -> Vec<Job<'a>> {
        assert!(xs.len() >= batch * self.in_dim && ds.len() >= batch * self.out_dim);
        assert!(self.ahead.is_none(), "a forward read ahead is waiting");
        let (in_dim, out_dim) = (self.in_dim, self.out_dim);
        let lr_norm = lr / self.w_scale;
        let blocks: Vec<_> = (0..self.tiles.len()).map(|k| self.tile_block(k)).collect();
        self.reports.clear();
        self.reports
            .resize(self.tiles.len(), UpdateReport::default());
        self.scratch
            .resize_with(self.tiles.len(), BatchScratch::default);
        self.tiles
            .iter_mut()
            .zip(self.controllers.iter_mut())
            .zip(self.reports.iter_mut().zip(self.scratch.iter_mut()))
            .zip(blocks)
            .map(|(((t, c), (report, sc)), ((r0, r1), (c0, c1)))| {
                // A rough cost for the scheduler (results do not depend on it): the coincidence
                // work of each step, without summing the inputs' norms as the batch-1 estimate does.
                let work = (batch * (t.rows() * t.cols() / 8 + 2 * (t.rows() + t.cols()))) as u64;
                Job::new(work, move || {
                    sc.xs.clear();
                    sc.ds.clear();
                    for b in 0..batch {
                        sc.xs
                            .extend_from_slice(&xs[b * in_dim + c0..b * in_dim + c1]);
                        sc.ds
                            .extend_from_slice(&ds[b * out_dim + r0..b * out_dim + r1]);
                    }
                    *report = c.update_batch(t, &sc.xs, &sc.ds, batch, lr_norm, mode);
                })
            })
            .collect()
    }

    /// Whether every tile's controller accumulates digitally (so a batch may be one update, see
    /// [`BatchUpdate::Accumulated`]).
    pub fn accumulates(&self) -> bool {
        self.controllers.iter().all(|c| c.accumulates())
    }

    /// With [`IoConfig::zero_grad_at_bound`](crate::io::IoConfig::zero_grad_at_bound), records which
    /// tile outputs of the forward read now in `partial` reached `0.999 out_bound` (aihwkit's test).
    fn mark_bound(&mut self) {
        let io = &self.cfg.forward;
        if !io.zero_grad_at_bound || !io.out_bound.is_finite() {
            return;
        }
        let limit = 0.999 * io.out_bound;
        if self.at_bound.len() != self.tiles.len() {
            self.at_bound = self.tiles.iter().map(|t| vec![false; t.rows()]).collect();
            self.masked = self.tiles.iter().map(|t| vec![0.0; t.rows()]).collect();
        }
        for (mask, (out, t)) in self
            .at_bound
            .iter_mut()
            .zip(self.partial.iter().zip(&self.tiles))
        {
            for (m, v) in mask.iter_mut().zip(&out[..t.rows()]) {
                *m = v.abs() >= limit;
            }
        }
    }

    /// Adds the tiles' partial outputs of the last read into `output`, in tile order.
    fn sum_partials(&self, phase: Phase, output: &mut [f32]) {
        output.iter_mut().for_each(|v| *v = 0.0);
        for (k, out) in self.partial.iter().enumerate() {
            let (rows, cols) = self.tile_block(k);
            let (o0, o1) = if phase == Phase::Forward { rows } else { cols };
            for (o, v) in output[o0..o1].iter_mut().zip(out) {
                *o += self.w_scale * v;
            }
        }
    }

    /// Backward pass `z = W^T d` on every tile, in parallel as `par` allows; charges the ledger.
    pub fn backward(&mut self, d: &[f32], z: &mut [f32], ledger: &mut Ledger, par: Par<'_>) {
        assert_eq!(
            (d.len(), z.len()),
            (self.out_dim, self.in_dim),
            "backward shapes"
        );
        self.read(Phase::Backward, d, z, ledger, par);
    }

    /// One read phase: every tile converts its block of `input` (in parallel as `par` allows); the
    /// partial outputs are added in tile order on this thread.
    fn read(
        &mut self,
        phase: Phase,
        input: &[f32],
        output: &mut [f32],
        ledger: &mut Ledger,
        par: Par<'_>,
    ) {
        assert!(self.ahead.is_none(), "a forward read ahead is waiting");
        let forward = phase == Phase::Forward;
        // (input block, output block) of each tile.
        let blocks: Vec<_> = (0..self.tiles.len())
            .map(|k| {
                let (rows, cols) = self.tile_block(k);
                if forward { (cols, rows) } else { (rows, cols) }
            })
            .collect();
        // A backward read after a forward read with `zero_grad_at_bound`: each tile reads its error block
        // with the errors of its outputs that reached the bound set to 0.
        let masking = !forward && !self.at_bound.is_empty();
        if masking {
            for (k, m) in self.masked.iter_mut().enumerate() {
                let (i0, i1) = blocks[k].0;
                for ((v, d), at) in m.iter_mut().zip(&input[i0..i1]).zip(&self.at_bound[k]) {
                    *v = if *at { 0.0 } else { *d };
                }
            }
        }
        let masked = &self.masked;
        let cost = &self.cost;
        let mut charges = vec![Charge::default(); self.tiles.len()];
        let jobs = self
            .tiles
            .iter_mut()
            .zip(self.partial.iter_mut())
            .zip(&blocks)
            .zip(charges.iter_mut())
            .enumerate()
            .map(|(k, (((t, out), ((i0, i1), (o0, o1))), charge))| {
                let work = (t.rows() * t.cols()) as u64;
                Job::new(work, move || {
                    let r = if forward {
                        t.forward(&input[*i0..*i1], &mut out[..o1 - o0])
                    } else if masking {
                        t.backward(&masked[k][..i1 - i0], &mut out[..o1 - o0])
                    } else {
                        t.backward(&input[*i0..*i1], &mut out[..o1 - o0])
                    };
                    *charge = cost.read(&r);
                })
            })
            .collect();
        par.run(jobs);
        self.sum_partials(phase, output);
        ledger.charge(phase, &charges);
    }

    /// Pulsed update for the layer step `dW = -lr d x^T` (layer units): every tile's controller acts on
    /// its block, in parallel as `par` allows. Returns the per-tile reports in tile order; charges the
    /// ledger.
    pub fn update(
        &mut self,
        x: &[f32],
        d: &[f32],
        lr: f32,
        ledger: &mut Ledger,
        par: Par<'_>,
    ) -> Vec<UpdateReport> {
        par.run(self.update_jobs(x, d, lr));
        self.finish_update(ledger)
    }

    /// [`AnalogMatrix::update`] as one job per tile, for a caller that runs the updates of several
    /// layers at once: run the jobs (see [`Par::run`]), then call [`AnalogMatrix::finish_update`].
    pub fn update_jobs<'a>(&'a mut self, x: &'a [f32], d: &'a [f32], lr: f32) -> Vec<Job<'a>> {
        self.update_jobs_ahead(x, d, lr, None)
    }

    /// [`AnalogMatrix::update_jobs`] that also read ahead: with `next`, each tile's job makes the
    /// tile's forward read of `next` right after its update, and the next [`AnalogMatrix::forward`]
    /// (which must be of `next`) returns that result. Every tile does the same reads and writes in the
    /// same order as an update followed by a forward pass, so results are the same bits; the forward
    /// read just runs among the other tiles' updates instead of after all of them.
    pub fn update_jobs_ahead<'a>(
        &'a mut self,
        x: &'a [f32],
        d: &'a [f32],
        lr: f32,
        next: Option<&'a [f32]>,
    ) -> Vec<Job<'a>> {
        assert_eq!(
            (x.len(), d.len()),
            (self.in_dim, self.out_dim),
            "update shapes"
        );
        assert!(self.ahead.is_none(), "a forward read ahead is waiting");
        if let Some(n) = next {
            assert_eq!(n.len(), self.in_dim, "forward shapes");
        }
        self.ahead = next.map(|n| n.to_vec());
        self.ahead_charges.clear();
        self.ahead_charges
            .resize(self.tiles.len(), Charge::default());
        let cost = &self.cost;
        let lr_norm = lr / self.w_scale;
        let blocks: Vec<_> = (0..self.tiles.len()).map(|k| self.tile_block(k)).collect();
        self.reports.clear();
        self.reports
            .resize(self.tiles.len(), UpdateReport::default());
        self.tiles
            .iter_mut()
            .zip(self.controllers.iter_mut())
            .zip(self.reports.iter_mut())
            .zip(self.partial.iter_mut().zip(self.ahead_charges.iter_mut()))
            .zip(blocks)
            .map(
                |((((t, c), report), (out, charge)), ((r0, r1), (c0, c1)))| {
                    // Expected pulses of a stochastic or counted update, lr |d|_1 |x|_1 / step, plus the
                    // pulse trains of the rows and columns.
                    let l1 = |v: &[f32]| v.iter().map(|a| a.abs() as f64).sum::<f64>();
                    let pulses = lr_norm as f64 * l1(&x[c0..c1]) * l1(&d[r0..r1])
                        / t.cell_step().max(f32::MIN_POSITIVE) as f64;
                    let mut work = pulses.min(1e15) as u64 + 2 * (t.rows() + t.cols()) as u64;
                    if next.is_some() {
                        work += (t.rows() * t.cols()) as u64 / 8;
                    }
                    Job::new(work, move || {
                        *report = c.update(t, &x[c0..c1], &d[r0..r1], lr_norm);
                        if let Some(n) = next {
                            let r = t.forward(&n[c0..c1], &mut out[..r1 - r0]);
                            *charge = cost.read(&r);
                        }
                    })
                },
            )
            .collect()
    }

    /// Charges the ledger with the updates made by the jobs of [`AnalogMatrix::update_jobs`] and returns
    /// their reports in tile order.
    pub fn finish_update(&mut self, ledger: &mut Ledger) -> Vec<UpdateReport> {
        let reports = std::mem::take(&mut self.reports);
        let charges: Vec<Charge> = reports.iter().map(|r| r.charge(&self.cost)).collect();
        ledger.charge(Phase::Update, &charges);
        reports
    }
}
