//! Pulsed weight updates: pulse schemes and the controllers (learning rules' hands) that use them.
//!
//! Sign convention: `d` is the gradient of the loss with respect to the tile's outputs, so the desired
//! step of the normalized weight is `dW_ij = -lr d_i x_j` (`lr` in normalized weight units).
//!
//! Its size (about 1,050 lines, tests apart) is earned: the pulse schemes and every controller act on
//! the same tile API and share the sizing rules; apart, each would repeat them.

use aimsim_devices::StateError;

use crate::kernels::rowwrite::RowTrain;
use crate::ledger::{Charge, CostModel};
use crate::tile::{CellKind, Routing, Tile};

/// How a desired outer-product step becomes pulses.
#[derive(Debug, Clone, PartialEq)]
pub enum PulseScheme {
    /// Stochastic pulse trains of `bl` slots; a coincidence of a row pulse and a column pulse in a slot
    /// is one device pulse (aihwkit's default update).
    Stochastic {
        /// Bit length (slots), at most 64.
        bl: u32,
        /// Balance row and column probabilities by `sqrt(x_max / d_max)`.
        update_management: bool,
        /// Shorten the train to `ceil(lr x_max d_max / dw)` slots when fewer suffice.
        bl_management: bool,
    },
    /// Deterministic counts `n = round(lr |x d| / dw)`, capped (NeuroSim-like).
    Count {
        /// Largest pulse count per device per update.
        max_pulses: u32,
    },
    /// One pulse of the step's sign where `lr |x d| / dw >= threshold`.
    SignThreshold {
        /// Threshold in units of one nominal step.
        threshold: f32,
    },
    /// Pulse counts relative to the largest `|x d|` of each update (aimsim's own quantization,
    /// docs/controllers.md): the largest product gets `N = clamp(round(lr x_max d_max / dw), 1,
    /// max_pulses)` pulses, the others `round(N |x d| / (x_max d_max))`, and products below
    /// `threshold x_max d_max` get none.
    RelativeCount {
        /// Largest pulse count per device per update.
        max_pulses: u32,
        /// Relative threshold in [0, 1).
        threshold: f32,
    },
}

impl PulseScheme {
    /// Checks the settings; returns the offending field and what is allowed.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        match self {
            PulseScheme::Stochastic { bl, .. } if !(1..=64).contains(bl) => Err((
                "bl",
                format!("the bit length must lie in [1, 64], got {bl}"),
            )),
            PulseScheme::Count { max_pulses } if *max_pulses == 0 => {
                Err(("max_pulses", "must be at least 1".into()))
            }
            PulseScheme::SignThreshold { threshold }
                if !(threshold.is_finite() && *threshold >= 0.0) =>
            {
                Err((
                    "threshold",
                    format!("must be a finite number >= 0, got {threshold}"),
                ))
            }
            PulseScheme::RelativeCount { max_pulses, .. } if *max_pulses == 0 => {
                Err(("max_pulses", "must be at least 1".into()))
            }
            PulseScheme::RelativeCount { threshold, .. } if !(0.0..1.0).contains(threshold) => {
                Err((
                    "threshold",
                    format!(
                        "the relative-count threshold is relative to the largest |x d| and must lie in [0, 1), got {threshold}"
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// What one update of one tile did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateReport {
    /// Device pairs (row, column) examined for coincidences or counts.
    pub evaluations: u64,
    /// Pulse slots spent in sequence (the update's latency in pulse widths).
    pub slots: u64,
    /// Potentiation pulses applied.
    pub up: u64,
    /// Depression pulses applied.
    pub down: u64,
    /// Refresh operations.
    pub refreshes: u64,
}

impl UpdateReport {
    /// Adds the counts of `o` (an update made after this one on the same tile).
    pub fn add(&mut self, o: &UpdateReport) {
        self.evaluations += o.evaluations;
        self.slots += o.slots;
        self.up += o.up;
        self.down += o.down;
        self.refreshes += o.refreshes;
    }

    /// The ledger charge of this update.
    pub fn charge(&self, cost: &CostModel) -> Charge {
        let mut c = cost.update(self.slots, self.up, self.down);
        c.refreshes = self.refreshes;
        c
    }
}

/// A learning rule's hands on one tile: it receives what the tile's periphery would have (the input `x`,
/// the error `d`, a learning rate, and read/write access to the tile) and decides the pulses. One
/// controller instance serves one tile, so it may keep per-tile state.
pub trait Controller: Send + std::fmt::Debug {
    /// Scenario name of the rule.
    fn name(&self) -> &'static str;

    /// Updates `tile` for the desired step `dW = -lr d x^T` (normalized weight units).
    fn update(&mut self, tile: &mut Tile, x: &[f32], d: &[f32], lr: f32) -> UpdateReport;

    /// Updates `tile` for the `batch` steps `dW = -lr d_b x_b^T` of a mini-batch (`xs` holds `batch`
    /// inputs of the tile's columns one after another, `ds` as many errors of its rows). `Sequential`:
    /// each step as its own update, in order, as the device sees a batch ([`Controller::update`]
    /// `batch` times: the same bits). `Accumulated`: one update of the summed step, which only a rule
    /// that accumulates digitally can make ([`Controller::accumulates`]); the others make sequential
    /// ones (callers refuse the combination before).
    fn update_batch(
        &mut self,
        tile: &mut Tile,
        xs: &[f32],
        ds: &[f32],
        batch: usize,
        lr: f32,
        mode: BatchUpdate,
    ) -> UpdateReport {
        let _ = mode;
        sequential_updates(self, tile, xs, ds, batch, lr)
    }

    /// Whether the rule accumulates updates digitally, so that a batch's summed step can be one update
    /// ([`BatchUpdate::Accumulated`]).
    fn accumulates(&self) -> bool {
        false
    }

    /// The rule's own state between updates (counters, accumulators), for checkpoints. Stateless rules
    /// keep the default: an empty state.
    fn export_state(&self) -> ControllerState {
        ControllerState::default()
    }

    /// Restores a state made by [`Controller::export_state`] of the same rule on the same tile.
    /// Refuses a state that does not fit this rule.
    fn import_state(&mut self, state: &ControllerState) -> Result<(), StateError> {
        if *state == ControllerState::default() {
            Ok(())
        } else {
            Err(StateError(format!(
                "`{}` keeps no state, but the saved controller state is not empty",
                self.name()
            )))
        }
    }
}

/// How a tile takes the steps of a mini-batch (or of a convolution's positions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchUpdate {
    /// Each outer product as its own pulsed update, in order (aihwkit's analog tiles).
    #[default]
    Sequential,
    /// The outer products summed digitally, then one update (a controller that accumulates, e.g.
    /// mixed precision).
    Accumulated,
}

/// [`Controller::update`] on each of `batch` steps in order, the reports added.
pub fn sequential_updates<C: Controller + ?Sized>(
    c: &mut C,
    tile: &mut Tile,
    xs: &[f32],
    ds: &[f32],
    batch: usize,
    lr: f32,
) -> UpdateReport {
    let (cols, rows) = (xs.len() / batch.max(1), ds.len() / batch.max(1));
    let mut total = UpdateReport::default();
    for b in 0..batch {
        let r = c.update(
            tile,
            &xs[b * cols..(b + 1) * cols],
            &ds[b * rows..(b + 1) * rows],
            lr,
        );
        total.add(&r);
    }
    total
}

/// A controller's state between updates as plain data: integer counters and float values whose meaning
/// belongs to the rule (`unidirectional`: `[updates]`; `tiki-taka`: `[updates, next column]`;
/// `mixed-precision`: the accumulator as values).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ControllerState {
    /// Counters.
    pub counters: Vec<u64>,
    /// Float values.
    pub values: Vec<f32>,
}

/// Checks that a saved state has `counters` counters and (when given) `values` values.
fn expect_state(
    name: &str,
    s: &ControllerState,
    counters: usize,
    values: Option<usize>,
) -> Result<(), StateError> {
    if s.counters.len() != counters || values.is_some_and(|v| v != s.values.len()) {
        return Err(StateError(format!(
            "saved state of `{name}` has {} counter(s) and {} value(s), expected {counters} and {}",
            s.counters.len(),
            s.values.len(),
            values.map_or("any".to_string(), |v| v.to_string())
        )));
    }
    Ok(())
}

/// Applies a pulse scheme through the tile's default cell routing. Shared by the SGD controllers and
/// available to later rules.
pub fn apply_scheme(
    scheme: &PulseScheme,
    tile: &mut Tile,
    x: &[f32],
    d: &[f32],
    lr: f32,
) -> UpdateReport {
    apply_scheme_with(scheme, tile, x, d, lr, Routing::Cell, None)
}

/// Applies a pulse scheme with an explicit routing; when `touched` is given, the index of every cell
/// that received pulses is appended to it.
pub fn apply_scheme_with(
    scheme: &PulseScheme,
    tile: &mut Tile,
    x: &[f32],
    d: &[f32],
    lr: f32,
    routing: Routing,
    mut touched: Option<&mut Vec<u32>>,
) -> UpdateReport {
    let before = tile.tally();
    // The row kernel writes straight from the trains; it cannot report touched cells.
    let kernel = touched.is_none();
    let mut apply = |tile: &mut Tile, row: usize, cols: &[u32], n: &[i32]| {
        tile.pulse_row(row, cols, n, routing);
        if let Some(t) = touched.as_deref_mut() {
            let base = (row * tile.cols()) as u32;
            t.extend(cols.iter().map(|c| base + c));
        }
    };
    let mut r = match scheme {
        PulseScheme::Stochastic {
            bl,
            update_management,
            bl_management,
        } => stochastic(
            tile,
            x,
            d,
            lr,
            routing,
            *bl,
            *update_management,
            *bl_management,
            kernel,
            &mut apply,
        ),
        PulseScheme::Count { max_pulses } => counted(
            tile,
            x,
            d,
            lr,
            routing,
            Counting::Round(*max_pulses),
            &mut apply,
        ),
        PulseScheme::SignThreshold { threshold } => counted(
            tile,
            x,
            d,
            lr,
            routing,
            Counting::Sign(*threshold),
            &mut apply,
        ),
        PulseScheme::RelativeCount {
            max_pulses,
            threshold,
        } => counted(
            tile,
            x,
            d,
            lr,
            routing,
            Counting::Relative(*max_pulses, *threshold),
            &mut apply,
        ),
    };
    let after = tile.tally();
    r.up = after.up - before.up;
    r.down = after.down - before.down;
    r
}

fn abs_max(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, a| m.max(a.abs()))
}

/// Coincidences of one row's pulse train with a set of column trains, found slot by slot: for every
/// slot, the columns that fire in it (in column order). A row then visits only the columns that fire in
/// one of its own slots, so the work follows the number of coincidences rather than the number of
/// columns, while the result is exactly `popcount(row & column)` for every column with a coincidence,
/// in column order.
#[derive(Debug)]
pub struct Coincidences {
    /// Slot `s` fires in columns `cols[start[s]..start[s + 1]]`.
    start: Vec<u32>,
    cols: Vec<u32>,
    /// Per column: coincidences of the current row (zero between rows).
    counts: Vec<u8>,
    /// Columns with a coincidence in the current row, as a bit set.
    seen: Vec<u64>,
}

impl Coincidences {
    /// Indexes the column trains `bits` (slots `0..bl`, `bl <= 64`).
    pub fn new(bits: &[u64], bl: u32) -> Self {
        let slots = bl as usize;
        let mut start = vec![0u32; slots + 1];
        for b in bits {
            let mut b = *b;
            while b != 0 {
                start[b.trailing_zeros() as usize + 1] += 1;
                b &= b - 1;
            }
        }
        for s in 0..slots {
            start[s + 1] += start[s];
        }
        let mut fill: Vec<u32> = start[..slots].to_vec();
        let mut cols = vec![0u32; start[slots] as usize];
        for (k, b) in bits.iter().enumerate() {
            let mut b = *b;
            while b != 0 {
                let s = b.trailing_zeros() as usize;
                cols[fill[s] as usize] = k as u32;
                fill[s] += 1;
                b &= b - 1;
            }
        }
        Coincidences {
            start,
            cols,
            counts: vec![0; bits.len()],
            seen: vec![0; bits.len().div_ceil(64)],
        }
    }

    /// Column visits that [`Coincidences::row`] makes for `row`: the summed size of its slots' lists.
    #[inline]
    pub fn work(&self, row: u64) -> usize {
        let mut b = row;
        let mut n = 0;
        while b != 0 {
            let s = b.trailing_zeros() as usize;
            n += (self.start[s + 1] - self.start[s]) as usize;
            b &= b - 1;
        }
        n
    }

    /// Calls `hit(k, n)` for every column `k` (in increasing order) whose train shares `n > 0` slots with
    /// `row`.
    #[inline]
    pub fn row(&mut self, row: u64, mut hit: impl FnMut(usize, i32)) {
        let Coincidences {
            start,
            cols,
            counts,
            seen,
        } = self;
        let slot = |s: usize| &cols[start[s] as usize..start[s + 1] as usize];
        if row.is_power_of_two() {
            // One slot: its columns, once each, already in order.
            for k in slot(row.trailing_zeros() as usize) {
                hit(*k as usize, 1);
            }
            return;
        }
        let mut b = row;
        while b != 0 {
            // A slot's columns are in order: bits of the same word gather in a register, so the bit
            // set is not read back from memory after every column.
            let (mut word, mut bits) = (usize::MAX, 0u64);
            for k in slot(b.trailing_zeros() as usize) {
                let k = *k as usize;
                counts[k] += 1;
                if k / 64 != word {
                    if word != usize::MAX {
                        seen[word] |= bits;
                    }
                    (word, bits) = (k / 64, 0);
                }
                bits |= 1 << (k % 64);
            }
            if word != usize::MAX {
                seen[word] |= bits;
            }
            b &= b - 1;
        }
        for (w, word) in seen.iter_mut().enumerate() {
            let mut m = *word;
            while m != 0 {
                let k = w * 64 + m.trailing_zeros() as usize;
                hit(k, counts[k] as i32);
                counts[k] = 0;
                m &= m - 1;
            }
            *word = 0;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn stochastic(
    tile: &mut Tile,
    x: &[f32],
    d: &[f32],
    lr: f32,
    routing: Routing,
    bl_max: u32,
    um: bool,
    blm: bool,
    kernel: bool,
    apply: &mut impl FnMut(&mut Tile, usize, &[u32], &[i32]),
) -> UpdateReport {
    let (rows, cols) = (tile.rows(), tile.cols());
    let dw = tile.pulse_step(routing);
    let (x_max, d_max) = (abs_max(x), abs_max(d));
    if x_max == 0.0 || d_max == 0.0 || lr <= 0.0 {
        return UpdateReport::default();
    }
    let bl = if blm {
        ((lr * x_max * d_max / dw).ceil() as u32).clamp(1, bl_max)
    } else {
        bl_max
    };
    let gain = lr / (dw * bl as f32);
    let (a, b) = if um && gain * x_max * d_max > 1.0 {
        // Saturating update (aihwkit): the balanced probabilities would exceed 1. x's probabilities are
        // scaled to reach 1 at x_max and the rest of the gain goes onto d, whose largest probabilities
        // then clip: x's proportions survive instead of both sides saturating alike.
        (gain * x_max, 1.0 / x_max)
    } else if um {
        ((gain * x_max / d_max).sqrt(), (gain * d_max / x_max).sqrt())
    } else {
        (gain.sqrt(), gain.sqrt())
    };
    if kernel && bl <= 32 && tile.trains_kernel() {
        // Dense column trains for the row kernel: the same draws, in the same order, as below.
        let (mut t, mut firing) = tile.take_trains();
        for v in [&mut t.bits, &mut t.neg] {
            v.clear();
            v.resize(cols, 0);
        }
        firing.clear();
        let mut active = 0u64;
        for (j, v) in x.iter().enumerate() {
            let bits = tile.rng().train(b * v.abs(), bl) as u32;
            t.bits[j] = bits;
            t.neg[j] = if *v > 0.0 { 0 } else { u32::MAX };
            active += u64::from(bits != 0);
        }
        t.index_chunks();
        for (i, v) in d.iter().enumerate().take(rows) {
            let bits = tile.rng().train(a * v.abs(), bl) as u32;
            if bits != 0 && active != 0 {
                let neg = if *v > 0.0 { 0 } else { u32::MAX };
                firing.push(RowTrain {
                    row: i as u32,
                    bits,
                    neg,
                });
            }
        }
        let evaluations = active * firing.len() as u64;
        tile.pulse_rows_trains(&t, &firing);
        tile.put_trains((t, firing));
        return UpdateReport {
            evaluations,
            slots: bl as u64,
            ..UpdateReport::default()
        };
    }
    // Column trains: only active columns are kept (index, bits, sign).
    let mut col_idx = Vec::with_capacity(cols);
    let mut col_bits = Vec::with_capacity(cols);
    let mut col_sign: Vec<i32> = Vec::with_capacity(cols);
    for (j, v) in x.iter().enumerate() {
        let bits = tile.rng().train(b * v.abs(), bl);
        if bits != 0 {
            col_idx.push(j as u32);
            col_bits.push(bits);
            col_sign.push(if *v > 0.0 { 1 } else { -1 });
        }
    }
    let mut found = Coincidences::new(&col_bits, bl);
    // The branch-free pass writes at most at the index of the column it is on, so one entry per active
    // column is enough.
    let (mut hit_cols, mut hit_n) = (vec![0u32; col_idx.len()], vec![0i32; col_idx.len()]);
    let mut evaluations = 0u64;
    for (i, v) in d.iter().enumerate().take(rows) {
        let row_bits = tile.rng().train(a * v.abs(), bl);
        if row_bits == 0 || col_idx.is_empty() {
            continue;
        }
        evaluations += col_idx.len() as u64;
        // dW = -lr d x: the weight rises when d and x have opposite signs.
        let flip = if *v > 0.0 { -1 } else { 1 };
        let mut hits = 0;
        if !row_bits.is_power_of_two() && found.work(row_bits) * 2 > col_idx.len() {
            // Many coincidences over several slots: one branch-free pass over the active columns is
            // cheaper than counting through the slot lists (same hits, same order). A single slot's list
            // is already the hit list.
            for ((c, bits), sign) in col_idx.iter().zip(&col_bits).zip(&col_sign) {
                let n = (row_bits & bits).count_ones() as i32;
                hit_cols[hits] = *c;
                hit_n[hits] = n * sign * flip;
                hits += usize::from(n != 0);
            }
        } else {
            found.row(row_bits, |k, n| {
                hit_cols[hits] = col_idx[k];
                hit_n[hits] = n * col_sign[k] * flip;
                hits += 1;
            });
        }
        if hits != 0 {
            apply(tile, i, &hit_cols[..hits], &hit_n[..hits]);
        }
    }
    UpdateReport {
        evaluations,
        slots: bl as u64,
        ..UpdateReport::default()
    }
}

/// How a deterministic scheme turns `lr |x d| / dw` into a pulse count.
#[derive(Debug, Clone, Copy)]
enum Counting {
    Round(u32),
    Sign(f32),
    Relative(u32, f32),
}

fn counted(
    tile: &mut Tile,
    x: &[f32],
    d: &[f32],
    lr: f32,
    routing: Routing,
    counting: Counting,
    apply: &mut impl FnMut(&mut Tile, usize, &[u32], &[i32]),
) -> UpdateReport {
    let (rows, cols) = (tile.rows(), tile.cols());
    let dw = tile.pulse_step(routing);
    let mut r = UpdateReport::default();
    if lr <= 0.0 {
        return r;
    }
    let scale = lr / dw;
    // Relative count: the largest product of this update sets its count.
    let (top, full) = match counting {
        Counting::Relative(cap, _) => {
            let m = abs_max(x) * abs_max(d);
            if m == 0.0 {
                return r;
            }
            (m, (scale * m).round().clamp(1.0, cap as f32))
        }
        _ => (1.0, 0.0),
    };
    let (mut hit_cols, mut hit_n) = (Vec::with_capacity(cols), Vec::with_capacity(cols));
    for (i, di) in d.iter().enumerate().take(rows) {
        if *di == 0.0 {
            continue;
        }
        r.evaluations += cols as u64;
        let mut row_max = 0;
        hit_cols.clear();
        hit_n.clear();
        for (j, xj) in x.iter().enumerate().take(cols) {
            let want = -di * xj;
            let n = match counting {
                Counting::Round(cap) => ((scale * want).abs().round() as u32).min(cap),
                Counting::Sign(threshold) => {
                    u32::from(want != 0.0 && (scale * want).abs() >= threshold)
                }
                Counting::Relative(_, threshold) => {
                    let rel = want.abs() / top;
                    if rel < threshold {
                        0
                    } else {
                        (full * rel).round() as u32
                    }
                }
            };
            if n > 0 {
                row_max = row_max.max(n);
                let n = n as i32;
                hit_cols.push(j as u32);
                hit_n.push(if want > 0.0 { n } else { -n });
            }
        }
        if !hit_cols.is_empty() {
            apply(tile, i, &hit_cols, &hit_n);
        }
        // Rows are written one after another; a row takes as many slots as its largest count.
        r.slots += row_max as u64;
    }
    r
}

/// Stochastic-pulse SGD (`sgd-stochastic`).
#[derive(Debug, Clone)]
pub struct SgdStochastic {
    /// Scheme settings.
    pub scheme: PulseScheme,
}

/// Deterministic-count SGD (`sgd-count`).
#[derive(Debug, Clone)]
pub struct SgdCount {
    /// Scheme settings.
    pub scheme: PulseScheme,
}

/// Sign-and-threshold updates (`sign-threshold`).
#[derive(Debug, Clone)]
pub struct SignThreshold {
    /// Scheme settings.
    pub scheme: PulseScheme,
}

macro_rules! scheme_controller {
    ($t:ty, $name:literal) => {
        impl Controller for $t {
            fn name(&self) -> &'static str {
                $name
            }
            fn update(&mut self, tile: &mut Tile, x: &[f32], d: &[f32], lr: f32) -> UpdateReport {
                apply_scheme(&self.scheme, tile, x, d, lr)
            }
        }
    };
}

scheme_controller!(SgdStochastic, "sgd-stochastic");
scheme_controller!(SgdCount, "sgd-count");
scheme_controller!(SignThreshold, "sign-threshold");

/// Refresh policy of unidirectional updates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refresh {
    /// 0: check each cell right after it was pulsed; `k >= 1`: check every cell of the tile every `k`
    /// updates.
    pub every: u32,
    /// A pair is refreshed when its larger device is above `hi` ...
    pub hi: f32,
    /// ... and its smaller device above `lo` (fractions of the device range).
    pub lo: f32,
}

impl Default for Refresh {
    fn default() -> Self {
        Refresh {
            every: 0,
            hi: 0.75,
            lo: 0.25,
        }
    }
}

/// Both polarities through the cell (`bidirectional`; also the `sgd-*` shorthands).
#[derive(Debug, Clone)]
pub struct Bidirectional {
    /// Pulse scheme.
    pub scheme: PulseScheme,
    /// Name reported.
    pub name: &'static str,
}

impl Controller for Bidirectional {
    fn name(&self) -> &'static str {
        self.name
    }
    fn update(&mut self, tile: &mut Tile, x: &[f32], d: &[f32], lr: f32) -> UpdateReport {
        apply_scheme_with(&self.scheme, tile, x, d, lr, Routing::Bidirectional, None)
    }
}

/// Potentiation pulses only, on a pair: `G+` for positive steps, `G-` for negative ones, with refresh
/// when both devices of a pair climb high (`unidirectional`).
#[derive(Debug, Clone)]
pub struct Unidirectional {
    /// Pulse scheme.
    pub scheme: PulseScheme,
    /// Refresh policy.
    pub refresh: Refresh,
    updates: u64,
    touched: Vec<u32>,
}

impl Unidirectional {
    /// A controller with an empty history.
    pub fn new(scheme: PulseScheme, refresh: Refresh) -> Self {
        Unidirectional {
            scheme,
            refresh,
            updates: 0,
            touched: Vec::new(),
        }
    }
}

/// Refreshes cell `i` of a pair tile if both devices are high: erase both, then write the pair's
/// difference onto one device with potentiation pulses. Returns the pulses used, if refreshed. The
/// decision and the difference come from reads of the two devices, with their read noise.
pub fn refresh_cell(tile: &mut Tile, i: usize, hi: f32, lo: f32) -> Option<u64> {
    let (p, m) = (tile.read_fraction(0, i), tile.read_fraction(1, i));
    if p.max(m) <= hi || p.min(m) <= lo {
        return None;
    }
    let w = p - m;
    let mut used = 0;
    if w >= 0.0 {
        tile.reset_device(1, i);
        used += tile.write_fraction(0, i, w);
    } else {
        tile.reset_device(0, i);
        used += tile.write_fraction(1, i, -w);
    }
    Some(used)
}

impl Controller for Unidirectional {
    fn name(&self) -> &'static str {
        "unidirectional"
    }
    fn update(&mut self, tile: &mut Tile, x: &[f32], d: &[f32], lr: f32) -> UpdateReport {
        self.touched.clear();
        let track = self.refresh.every == 0;
        let mut r = apply_scheme_with(
            &self.scheme,
            tile,
            x,
            d,
            lr,
            Routing::Unidirectional,
            track.then_some(&mut self.touched),
        );
        self.updates += 1;
        if tile.cell() == CellKind::Single {
            return r;
        }
        let before = tile.tally();
        let mut refresh_slots = 0;
        let mut check = |tile: &mut Tile, i: usize, r: &mut UpdateReport| {
            if let Some(used) = refresh_cell(tile, i, self.refresh.hi, self.refresh.lo) {
                r.refreshes += 1;
                // One erase slot, then the re-programming pulses, cell after cell.
                refresh_slots += 1 + used;
            }
        };
        if track {
            self.touched.sort_unstable();
            self.touched.dedup();
            for k in 0..self.touched.len() {
                check(tile, self.touched[k] as usize, &mut r);
            }
        } else if self.updates.is_multiple_of(self.refresh.every as u64) {
            for i in 0..tile.rows() * tile.cols() {
                check(tile, i, &mut r);
            }
        }
        let after = tile.tally();
        r.up += after.up - before.up;
        r.down += after.down - before.down;
        r.slots += refresh_slots;
        r
    }

    fn export_state(&self) -> ControllerState {
        ControllerState {
            counters: vec![self.updates],
            values: Vec::new(),
        }
    }

    fn import_state(&mut self, state: &ControllerState) -> Result<(), StateError> {
        expect_state(self.name(), state, 1, Some(0))?;
        self.updates = state.counters[0];
        Ok(())
    }
}

/// Tiki-Taka (TTv1, `tiki-taka`) on multi-array cells: SGD pulses go to the fast pair A; every
/// `transfer_every` updates one column of A is read and added to the slow pair C with
/// `round(transfer_lr a / dw)` pulses (push-pull), columns in turn.
#[derive(Debug, Clone)]
pub struct TikiTaka {
    /// Scheme of the SGD pulses onto A.
    pub scheme: PulseScheme,
    /// Updates between two column transfers.
    pub transfer_every: u32,
    /// Scale of a transfer: C gains `transfer_lr` times A's column (in weight units of the pairs).
    pub transfer_lr: f32,
    /// Largest pulse count of one transfer per device.
    pub max_pulses: u32,
    updates: u64,
    next_col: usize,
}

impl TikiTaka {
    /// A controller starting with column 0.
    pub fn new(
        scheme: PulseScheme,
        transfer_every: u32,
        transfer_lr: f32,
        max_pulses: u32,
    ) -> Self {
        TikiTaka {
            scheme,
            transfer_every,
            transfer_lr,
            max_pulses,
            updates: 0,
            next_col: 0,
        }
    }
}

impl Controller for TikiTaka {
    fn name(&self) -> &'static str {
        "tiki-taka"
    }
    fn update(&mut self, tile: &mut Tile, x: &[f32], d: &[f32], lr: f32) -> UpdateReport {
        let mut r = apply_scheme_with(&self.scheme, tile, x, d, lr, Routing::Bidirectional, None);
        self.updates += 1;
        let CellKind::MultiArray { gamma } = tile.cell() else {
            return r;
        };
        if !self
            .updates
            .is_multiple_of(self.transfer_every.max(1) as u64)
        {
            return r;
        }
        let before = tile.tally();
        let j = self.next_col;
        let cols = tile.cols();
        self.next_col = (j + 1) % cols;
        // A push-pull pulse on C moves C's pair by 2 g = pulse_step / gamma; A's pair holds uA+ - uA-.
        let step_c = tile.pulse_step(Routing::Bidirectional) / gamma;
        let mut slots = 0;
        for i in 0..tile.rows() {
            let k = i * cols + j;
            // A read of A's pair, with the devices' read noise.
            let a = tile.read_fraction(0, k) - tile.read_fraction(1, k);
            let n = ((self.transfer_lr * a / step_c).round() as i64)
                .clamp(-(self.max_pulses as i64), self.max_pulses as i64)
                as i32;
            if n != 0 {
                tile.pulse_device(2, k, n);
                tile.pulse_device(3, k, -n);
                slots = slots.max(n.unsigned_abs() as u64);
            }
        }
        let after = tile.tally();
        r.up += after.up - before.up;
        r.down += after.down - before.down;
        // One read of the column, then the rows of the column are written in parallel.
        r.slots += slots + 1;
        r
    }

    fn export_state(&self) -> ControllerState {
        ControllerState {
            counters: vec![self.updates, self.next_col as u64],
            values: Vec::new(),
        }
    }

    fn import_state(&mut self, state: &ControllerState) -> Result<(), StateError> {
        expect_state(self.name(), state, 2, Some(0))?;
        self.updates = state.counters[0];
        self.next_col = usize::try_from(state.counters[1])
            .map_err(|_| StateError("tiki-taka: next column out of range".into()))?;
        Ok(())
    }
}

/// Mixed-precision updates (`mixed-precision`): a digital accumulator `chi += -lr d x^T`; where
/// `|chi| >= dw` the cell gets `trunc(chi / dw)` pulses (capped, through the cell's own routing:
/// push-pull on pairs, potentiation only on one-sided cells, the fast pair of a multi-array cell) and
/// `chi` keeps the remainder.
#[derive(Debug, Clone)]
pub struct MixedPrecision {
    /// Largest pulse count per device per update.
    pub max_pulses: u32,
    chi: Vec<f32>,
    /// Rows touched since the last transfer (scratch, kept between updates).
    active: Vec<bool>,
}

impl MixedPrecision {
    /// A controller with an empty accumulator.
    pub fn new(max_pulses: u32) -> Self {
        MixedPrecision {
            max_pulses,
            chi: Vec::new(),
            active: Vec::new(),
        }
    }

    /// The accumulator (row-major, normalized weight units).
    pub fn accumulator(&self) -> &[f32] {
        &self.chi
    }
}

impl MixedPrecision {
    /// Transfers the accumulator to the devices: rows `rows` of `chi` (only rows with `active[i]`),
    /// each cell with `|chi| >= dw` gets its pulses and keeps the remainder.
    fn transfer(&mut self, tile: &mut Tile, active: &[bool]) -> UpdateReport {
        let cols = tile.cols();
        let dw = tile.pulse_step(Routing::Cell);
        let before = tile.tally();
        let mut r = UpdateReport::default();
        for (i, on) in active.iter().enumerate() {
            if !on {
                continue;
            }
            r.evaluations += cols as u64;
            let mut row_max = 0u32;
            for j in 0..cols {
                let k = i * cols + j;
                let c = self.chi[k];
                let n = ((c / dw).trunc() as i64)
                    .clamp(-(self.max_pulses as i64), self.max_pulses as i64)
                    as i32;
                if n != 0 {
                    tile.pulse_routed(k, n, Routing::Cell);
                    row_max = row_max.max(n.unsigned_abs());
                    self.chi[k] = c - n as f32 * dw;
                }
            }
            r.slots += row_max as u64;
        }
        let after = tile.tally();
        r.up = after.up - before.up;
        r.down = after.down - before.down;
        r
    }

    /// Adds `-lr d x^T` to the accumulator; marks the rows it touched in `active`.
    fn accumulate(&mut self, x: &[f32], d: &[f32], lr: f32, cols: usize, active: &mut [bool]) {
        for (i, di) in d.iter().enumerate().take(active.len()) {
            if *di == 0.0 {
                continue;
            }
            active[i] = true;
            let row = &mut self.chi[i * cols..(i + 1) * cols];
            for (c, xj) in row.iter_mut().zip(x) {
                *c -= lr * di * xj;
            }
        }
    }

    /// Sizes the accumulator for `tile` (once) and returns the row marks, all cleared.
    fn start(&mut self, tile: &Tile) -> Vec<bool> {
        if self.chi.len() != tile.rows() * tile.cols() {
            self.chi = vec![0.0; tile.rows() * tile.cols()];
        }
        let mut active = std::mem::take(&mut self.active);
        active.clear();
        active.resize(tile.rows(), false);
        active
    }
}

impl Controller for MixedPrecision {
    fn name(&self) -> &'static str {
        "mixed-precision"
    }
    fn update(&mut self, tile: &mut Tile, x: &[f32], d: &[f32], lr: f32) -> UpdateReport {
        let mut active = self.start(tile);
        self.accumulate(x, d, lr, tile.cols(), &mut active);
        let r = self.transfer(tile, &active);
        self.active = active;
        r
    }

    fn update_batch(
        &mut self,
        tile: &mut Tile,
        xs: &[f32],
        ds: &[f32],
        batch: usize,
        lr: f32,
        mode: BatchUpdate,
    ) -> UpdateReport {
        if mode == BatchUpdate::Sequential {
            return sequential_updates(self, tile, xs, ds, batch, lr);
        }
        let mut active = self.start(tile);
        let (rows, cols) = (tile.rows(), tile.cols());
        for b in 0..batch {
            self.accumulate(
                &xs[b * cols..(b + 1) * cols],
                &ds[b * rows..(b + 1) * rows],
                lr,
                cols,
                &mut active,
            );
        }
        let r = self.transfer(tile, &active);
        self.active = active;
        r
    }

    fn accumulates(&self) -> bool {
        true
    }

    fn export_state(&self) -> ControllerState {
        ControllerState {
            counters: Vec::new(),
            values: self.chi.clone(),
        }
    }

    fn import_state(&mut self, state: &ControllerState) -> Result<(), StateError> {
        expect_state(self.name(), state, 0, None)?;
        self.chi.clone_from(&state.values);
        Ok(())
    }
}

/// Which controller a layer's tiles get, as plain data (one instance is made per tile).
#[derive(Debug, Clone, PartialEq)]
pub enum ControllerSpec {
    /// `sgd-stochastic`: bidirectional with stochastic pulses.
    SgdStochastic(PulseScheme),
    /// `sgd-count`: bidirectional with counted pulses.
    SgdCount(PulseScheme),
    /// `sign-threshold`: bidirectional with sign pulses.
    SignThreshold(PulseScheme),
    /// `bidirectional` with any scheme.
    Bidirectional(PulseScheme),
    /// `unidirectional` with any scheme and a refresh policy.
    Unidirectional(PulseScheme, Refresh),
    /// `relative-count` (the relative-count scheme), bidirectional or (with a refresh policy)
    /// unidirectional.
    RelativeCount(PulseScheme, Option<Refresh>),
    /// `tiki-taka`: scheme onto A, transfer every k updates with a transfer rate and pulse cap.
    TikiTaka {
        /// Scheme of the SGD pulses onto A.
        scheme: PulseScheme,
        /// Updates between column transfers.
        transfer_every: u32,
        /// Transfer rate.
        transfer_lr: f32,
        /// Pulse cap of a transfer.
        max_pulses: u32,
    },
    /// `mixed-precision` with a pulse cap.
    MixedPrecision {
        /// Pulse cap per update.
        max_pulses: u32,
    },
}

impl ControllerSpec {
    /// A fresh controller for one tile.
    pub fn build(&self) -> Box<dyn Controller> {
        match self {
            ControllerSpec::SgdStochastic(s) => Box::new(SgdStochastic { scheme: s.clone() }),
            ControllerSpec::SgdCount(s) => Box::new(SgdCount { scheme: s.clone() }),
            ControllerSpec::SignThreshold(s) => Box::new(SignThreshold { scheme: s.clone() }),
            ControllerSpec::Bidirectional(s) => Box::new(Bidirectional {
                scheme: s.clone(),
                name: "bidirectional",
            }),
            ControllerSpec::Unidirectional(s, r) => Box::new(Unidirectional::new(s.clone(), *r)),
            ControllerSpec::RelativeCount(s, None) => Box::new(Bidirectional {
                scheme: s.clone(),
                name: "relative-count",
            }),
            ControllerSpec::RelativeCount(s, Some(r)) => {
                Box::new(Unidirectional::new(s.clone(), *r))
            }
            ControllerSpec::TikiTaka {
                scheme,
                transfer_every,
                transfer_lr,
                max_pulses,
            } => Box::new(TikiTaka::new(
                scheme.clone(),
                *transfer_every,
                *transfer_lr,
                *max_pulses,
            )),
            ControllerSpec::MixedPrecision { max_pulses } => {
                Box::new(MixedPrecision::new(*max_pulses))
            }
        }
    }

    /// The pulse scheme inside (mixed precision counts pulses like `Count`).
    pub fn scheme(&self) -> PulseScheme {
        match self {
            ControllerSpec::SgdStochastic(s)
            | ControllerSpec::SgdCount(s)
            | ControllerSpec::SignThreshold(s)
            | ControllerSpec::Bidirectional(s)
            | ControllerSpec::Unidirectional(s, _)
            | ControllerSpec::RelativeCount(s, _) => s.clone(),
            ControllerSpec::TikiTaka { scheme, .. } => scheme.clone(),
            ControllerSpec::MixedPrecision { max_pulses } => PulseScheme::Count {
                max_pulses: *max_pulses,
            },
        }
    }

    /// Scenario name.
    pub fn name(&self) -> &'static str {
        match self {
            ControllerSpec::SgdStochastic(_) => "sgd-stochastic",
            ControllerSpec::SgdCount(_) => "sgd-count",
            ControllerSpec::SignThreshold(_) => "sign-threshold",
            ControllerSpec::Bidirectional(_) => "bidirectional",
            ControllerSpec::Unidirectional(..) => "unidirectional",
            ControllerSpec::RelativeCount(..) => "relative-count",
            ControllerSpec::TikiTaka { .. } => "tiki-taka",
            ControllerSpec::MixedPrecision { .. } => "mixed-precision",
        }
    }
}

impl Default for ControllerSpec {
    fn default() -> Self {
        ControllerSpec::SgdStochastic(PulseScheme::Stochastic {
            bl: 31,
            update_management: true,
            bl_management: true,
        })
    }
}

#[cfg(test)]
#[path = "update_tests.rs"]
mod tests;
