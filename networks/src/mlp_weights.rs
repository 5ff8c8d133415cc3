//! A layer's weight store behind one trait: analog tiles (`AnalogMatrix`) or exact float weights
//! (`FloatMatrix`), with the single and batch forms of the three phases of on-chip learning.

use super::*;

/// A layer's weight store: the three phases of on-chip learning. Each phase may run its tiles in
/// parallel as `par` allows.
pub trait Weights: Send + std::fmt::Debug {
    /// `y = W x`.
    fn forward(&mut self, x: &[f32], y: &mut [f32], ledger: &mut Ledger, par: Par<'_>);
    /// `y_b = W x_b` for `batch` inputs one after another (`xs` to `ys`): the same outputs, draws and
    /// charges as [`Weights::forward`] on each in order, the tiles in parallel as `par` allows; a
    /// [`Weights::backward_batch`] of as many errors may follow.
    fn forward_batch(
        &mut self,
        xs: &[f32],
        ys: &mut [f32],
        batch: usize,
        ledger: &mut Ledger,
        par: Par<'_>,
    ) {
        let (inp, out) = (xs.len() / batch.max(1), ys.len() / batch.max(1));
        for b in 0..batch {
            self.forward(
                &xs[b * inp..(b + 1) * inp],
                &mut ys[b * out..(b + 1) * out],
                ledger,
                par,
            );
        }
    }
    /// `z_b = W^T d_b` for `batch` errors one after another, after a [`Weights::forward_batch`] of as
    /// many inputs (whose outputs at the bound mask their errors where the periphery says so).
    fn backward_batch(
        &mut self,
        ds: &[f32],
        zs: &mut [f32],
        batch: usize,
        ledger: &mut Ledger,
        par: Par<'_>,
    );
    /// The updates `W -= lr d_b x_b^T` of `batch` inputs and errors as jobs (as
    /// [`Weights::update_jobs`]; then [`Weights::finish_update`]), each step its own update in order
    /// or, with [`BatchUpdate::Accumulated`], one update of their sum.
    fn update_batch_jobs<'a>(
        &'a mut self,
        xs: &'a [f32],
        ds: &'a [f32],
        batch: usize,
        lr: f32,
        mode: BatchUpdate,
    ) -> Vec<Job<'a>>;
    /// `z = W^T d`.
    fn backward(&mut self, d: &[f32], z: &mut [f32], ledger: &mut Ledger, par: Par<'_>);
    /// `W -= lr d x^T`.
    fn update(&mut self, x: &[f32], d: &[f32], lr: f32, ledger: &mut Ledger, par: Par<'_>);
    /// [`Weights::update`] as independent jobs (one per tile on analog weights), so that a network can
    /// run the updates of all its layers at once; the caller runs them with [`Par::run`], then calls
    /// [`Weights::finish_update`].
    fn update_jobs<'a>(&'a mut self, x: &'a [f32], d: &'a [f32], lr: f32) -> Vec<Job<'a>>;
    /// [`Weights::update_jobs`] that may also read ahead: given `next`, the jobs may make the forward
    /// read of `next` after their updates, which the next [`Weights::forward`] (of `next`) then
    /// returns, with the same results. By default they do not.
    fn update_jobs_ahead<'a>(
        &'a mut self,
        x: &'a [f32],
        d: &'a [f32],
        lr: f32,
        next: Option<&'a [f32]>,
    ) -> Vec<Job<'a>> {
        let _ = next;
        self.update_jobs(x, d, lr)
    }
    /// Charges `ledger` with the update made by the jobs of [`Weights::update_jobs`].
    fn finish_update(&mut self, ledger: &mut Ledger);
    /// Current weights, row-major `out x in`.
    fn weights(&self) -> Vec<f32>;
    /// Sets initial weights (programmed with pulses on tiles).
    fn program(&mut self, w: &[f32]);
    /// Sets initial weights exactly, without pulses (the same as [`Weights::program`] for float
    /// weights).
    fn set_exact(&mut self, w: &[f32]) {
        self.program(w);
    }
    /// The tiles, if the weights are analog.
    fn tiles(&self) -> &[Tile] {
        &[]
    }
    /// The layer on tiles, if the weights are analog (deployment works on it directly).
    fn analog_mut(&mut self) -> Option<&mut AnalogMatrix> {
        None
    }
    /// What training has changed in the store, for checkpoints.
    fn export_state(&self) -> WeightsState;
    /// Restores a state made by [`Weights::export_state`] on a store built from the same scenario.
    fn import_state(&mut self, state: &WeightsState) -> Result<(), StateError>;
}

/// A weight store's state as plain data.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightsState {
    /// Float weights, row-major.
    Float(Vec<f32>),
    /// Tiles and their controllers.
    Analog(MatrixState),
}

impl Weights for AnalogMatrix {
    fn forward(&mut self, x: &[f32], y: &mut [f32], ledger: &mut Ledger, par: Par<'_>) {
        AnalogMatrix::forward(self, x, y, ledger, par);
    }
    fn forward_batch(
        &mut self,
        xs: &[f32],
        ys: &mut [f32],
        batch: usize,
        ledger: &mut Ledger,
        par: Par<'_>,
    ) {
        AnalogMatrix::forward_batch(self, xs, ys, batch, ledger, par);
    }
    fn backward_batch(
        &mut self,
        ds: &[f32],
        zs: &mut [f32],
        batch: usize,
        ledger: &mut Ledger,
        par: Par<'_>,
    ) {
        AnalogMatrix::backward_batch(self, ds, zs, batch, ledger, par);
    }
    fn update_batch_jobs<'a>(
        &'a mut self,
        xs: &'a [f32],
        ds: &'a [f32],
        batch: usize,
        lr: f32,
        mode: BatchUpdate,
    ) -> Vec<Job<'a>> {
        AnalogMatrix::update_batch_jobs(self, xs, ds, batch, lr, mode)
    }
    fn backward(&mut self, d: &[f32], z: &mut [f32], ledger: &mut Ledger, par: Par<'_>) {
        AnalogMatrix::backward(self, d, z, ledger, par);
    }
    fn update(&mut self, x: &[f32], d: &[f32], lr: f32, ledger: &mut Ledger, par: Par<'_>) {
        AnalogMatrix::update(self, x, d, lr, ledger, par);
    }
    fn update_jobs<'a>(&'a mut self, x: &'a [f32], d: &'a [f32], lr: f32) -> Vec<Job<'a>> {
        AnalogMatrix::update_jobs(self, x, d, lr)
    }
    fn update_jobs_ahead<'a>(
        &'a mut self,
        x: &'a [f32],
        d: &'a [f32],
        lr: f32,
        next: Option<&'a [f32]>,
    ) -> Vec<Job<'a>> {
        AnalogMatrix::update_jobs_ahead(self, x, d, lr, next)
    }
    fn finish_update(&mut self, ledger: &mut Ledger) {
        AnalogMatrix::finish_update(self, ledger);
    }
    fn weights(&self) -> Vec<f32> {
        AnalogMatrix::weights(self)
    }
    fn program(&mut self, w: &[f32]) {
        AnalogMatrix::program(self, w);
    }
    fn set_exact(&mut self, w: &[f32]) {
        AnalogMatrix::set_weights_exact(self, w);
    }
    fn tiles(&self) -> &[Tile] {
        AnalogMatrix::tiles(self)
    }
    fn analog_mut(&mut self) -> Option<&mut AnalogMatrix> {
        Some(self)
    }
    fn export_state(&self) -> WeightsState {
        WeightsState::Analog(AnalogMatrix::export_state(self))
    }
    fn import_state(&mut self, state: &WeightsState) -> Result<(), StateError> {
        match state {
            WeightsState::Analog(m) => AnalogMatrix::import_state(self, m),
            WeightsState::Float(_) => Err(StateError(
                "saved float weights for a layer on tiles".into(),
            )),
        }
    }
}

impl Weights for FloatMatrix {
    fn forward(&mut self, x: &[f32], y: &mut [f32], _: &mut Ledger, _: Par<'_>) {
        FloatMatrix::forward(self, x, y);
    }
    fn forward_batch(
        &mut self,
        xs: &[f32],
        ys: &mut [f32],
        batch: usize,
        _: &mut Ledger,
        _: Par<'_>,
    ) {
        FloatMatrix::forward_batch(self, xs, ys, batch);
    }
    fn backward_batch(
        &mut self,
        ds: &[f32],
        zs: &mut [f32],
        batch: usize,
        _: &mut Ledger,
        _: Par<'_>,
    ) {
        let (o, i) = self.shape();
        for (d, z) in ds.chunks_exact(o).zip(zs.chunks_exact_mut(i)).take(batch) {
            FloatMatrix::backward(self, d, z);
        }
    }
    fn update_batch_jobs<'a>(
        &'a mut self,
        xs: &'a [f32],
        ds: &'a [f32],
        batch: usize,
        lr: f32,
        mode: BatchUpdate,
    ) -> Vec<Job<'a>> {
        let cost = (self.weights().len() * batch) as u64;
        vec![Job::new(cost, move || {
            FloatMatrix::update_batch(self, xs, ds, batch, lr, mode)
        })]
    }
    fn backward(&mut self, d: &[f32], z: &mut [f32], _: &mut Ledger, _: Par<'_>) {
        FloatMatrix::backward(self, d, z);
    }
    fn update(&mut self, x: &[f32], d: &[f32], lr: f32, _: &mut Ledger, _: Par<'_>) {
        FloatMatrix::update(self, x, d, lr);
    }
    fn update_jobs<'a>(&'a mut self, x: &'a [f32], d: &'a [f32], lr: f32) -> Vec<Job<'a>> {
        let cost = self.weights().len() as u64;
        vec![Job::new(cost, move || FloatMatrix::update(self, x, d, lr))]
    }
    fn finish_update(&mut self, _: &mut Ledger) {}
    fn weights(&self) -> Vec<f32> {
        FloatMatrix::weights(self).to_vec()
    }
    fn program(&mut self, w: &[f32]) {
        self.weights_mut().copy_from_slice(w);
    }
    fn export_state(&self) -> WeightsState {
        WeightsState::Float(FloatMatrix::weights(self).to_vec())
    }
    fn import_state(&mut self, state: &WeightsState) -> Result<(), StateError> {
        match state {
            WeightsState::Float(w) if w.len() == FloatMatrix::weights(self).len() => {
                self.weights_mut().copy_from_slice(w);
                Ok(())
            }
            WeightsState::Float(w) => Err(StateError(format!(
                "{} saved float weights for a {}x{} layer",
                w.len(),
                self.shape().0,
                self.shape().1
            ))),
            WeightsState::Analog(_) => Err(StateError(
                "saved tile state for a layer of float weights".into(),
            )),
        }
    }
}
