//! Pulsed weight updates: pulse schemes and the controllers (learning rules' hands) that use them.
//!
//! Sign convention: `d` is the gradient of the loss with respect to the tile's outputs, so the desired
//! step of the normalized weight is `dW_ij = -lr d_i x_j` (`lr` in normalized weight units).

use rand::Rng;

use crate::ledger::{Charge, CostModel};
use crate::tile::Tile;

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
    let before = tile.tally();
    let mut r = match scheme {
        PulseScheme::Stochastic {
            bl,
            update_management,
            bl_management,
        } => stochastic(tile, x, d, lr, *bl, *update_management, *bl_management),
        PulseScheme::Count { max_pulses } => counted(tile, x, d, lr, *max_pulses, 0.0),
        PulseScheme::SignThreshold { threshold } => counted(tile, x, d, lr, 1, *threshold),
    };
    let after = tile.tally();
    r.up = after.up - before.up;
    r.down = after.down - before.down;
    r
}

fn abs_max(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, a| m.max(a.abs()))
}

/// Draws a `bl`-slot pulse train with firing probability `p` per slot.
#[inline]
fn train<R: Rng + ?Sized>(p: f32, bl: u32, rng: &mut R) -> u64 {
    if p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return if bl == 64 { u64::MAX } else { (1u64 << bl) - 1 };
    }
    let threshold = (p as f64 * 4_294_967_296.0) as u64;
    let mut bits = 0u64;
    let mut slot = 0;
    while slot < bl {
        let r = rng.next_u64();
        if (r & 0xFFFF_FFFF) < threshold {
            bits |= 1 << slot;
        }
        if slot + 1 < bl && (r >> 32) < threshold {
            bits |= 1 << (slot + 1);
        }
        slot += 2;
    }
    bits
}

#[allow(clippy::too_many_arguments)]
fn stochastic(
    tile: &mut Tile,
    x: &[f32],
    d: &[f32],
    lr: f32,
    bl_max: u32,
    um: bool,
    blm: bool,
) -> UpdateReport {
    let (rows, cols) = (tile.rows(), tile.cols());
    let dw = tile.cell_step();
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
    let (a, b) = if um {
        ((gain * x_max / d_max).sqrt(), (gain * d_max / x_max).sqrt())
    } else {
        (gain.sqrt(), gain.sqrt())
    };
    // Column trains: only active columns are kept (index, bits, sign).
    let mut col_idx = Vec::with_capacity(cols);
    let mut col_bits = Vec::with_capacity(cols);
    let mut col_pos = Vec::with_capacity(cols);
    for (j, v) in x.iter().enumerate() {
        let bits = train(b * v.abs(), bl, tile.rng());
        if bits != 0 {
            col_idx.push(j as u32);
            col_bits.push(bits);
            col_pos.push(*v > 0.0);
        }
    }
    let mut counts = vec![0u8; col_idx.len()];
    let mut evaluations = 0u64;
    for (i, v) in d.iter().enumerate().take(rows) {
        let row_bits = train(a * v.abs(), bl, tile.rng());
        if row_bits == 0 || col_idx.is_empty() {
            continue;
        }
        evaluations += col_idx.len() as u64;
        // Count every coincidence first (branch-free, vectorizable), then pulse where any occurred.
        for (c, bits) in counts.iter_mut().zip(&col_bits) {
            *c = (row_bits & bits).count_ones() as u8;
        }
        let d_pos = *v > 0.0;
        let base = i * cols;
        for (k, c) in counts.iter().enumerate() {
            if *c != 0 {
                // dW = -lr d x: the weight rises when d and x have opposite signs.
                let n = *c as i32;
                let n = if d_pos != col_pos[k] { n } else { -n };
                tile.pulse_cell(base + col_idx[k] as usize, n);
            }
        }
    }
    UpdateReport {
        evaluations,
        slots: bl as u64,
        ..UpdateReport::default()
    }
}

fn counted(
    tile: &mut Tile,
    x: &[f32],
    d: &[f32],
    lr: f32,
    cap: u32,
    threshold: f32,
) -> UpdateReport {
    let (rows, cols) = (tile.rows(), tile.cols());
    let dw = tile.cell_step();
    let mut r = UpdateReport::default();
    if lr <= 0.0 {
        return r;
    }
    let scale = lr / dw;
    for (i, di) in d.iter().enumerate().take(rows) {
        if *di == 0.0 {
            continue;
        }
        r.evaluations += cols as u64;
        let mut row_max = 0;
        for (j, xj) in x.iter().enumerate().take(cols) {
            let want = -scale * di * xj;
            let n = if threshold > 0.0 || cap == 1 {
                if want.abs() >= threshold.max(0.5) {
                    1
                } else {
                    0
                }
            } else {
                (want.abs().round() as u32).min(cap)
            };
            if n > 0 {
                row_max = row_max.max(n);
                let n = n as i32;
                tile.pulse_cell(i * cols + j, if want > 0.0 { n } else { -n });
            }
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

/// Which controller a layer's tiles get, as plain data (one instance is made per tile).
#[derive(Debug, Clone, PartialEq)]
pub enum ControllerSpec {
    /// `sgd-stochastic` with its scheme.
    SgdStochastic(PulseScheme),
    /// `sgd-count` with its scheme.
    SgdCount(PulseScheme),
    /// `sign-threshold` with its scheme.
    SignThreshold(PulseScheme),
}

impl ControllerSpec {
    /// A fresh controller for one tile.
    pub fn build(&self) -> Box<dyn Controller> {
        match self {
            ControllerSpec::SgdStochastic(s) => Box::new(SgdStochastic { scheme: s.clone() }),
            ControllerSpec::SgdCount(s) => Box::new(SgdCount { scheme: s.clone() }),
            ControllerSpec::SignThreshold(s) => Box::new(SignThreshold { scheme: s.clone() }),
        }
    }

    /// The scheme inside.
    pub fn scheme(&self) -> &PulseScheme {
        match self {
            ControllerSpec::SgdStochastic(s)
            | ControllerSpec::SgdCount(s)
            | ControllerSpec::SignThreshold(s) => s,
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
