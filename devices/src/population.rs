//! A population of devices of one model, stored as flat per-device arrays.
//!
//! Its size (about 1,050 lines, tests apart) is earned: every model's state, per-device parameters and
//! pulse law share these arrays, and the reference write, its batch form and the reads must sit
//! together to stay bit-identical.

use rand::{Rng, RngExt};
use rand_distr::{Distribution, StandardNormal};

use crate::lanes::NormalLanes;
use crate::normal::standard_normal;
use crate::step::{self, ConstantStepView, clip};

use crate::curves::{ExpCurve, MonotoneCurve};
use crate::spec::{DeviceSpec, Model, NL_LIMIT, Param, SpecError, StepKind, StepParams};

/// A per-device value that is stored once when every device shares it (no d2d variation on it), and as a
/// flat array otherwise. Lookups are branch-predictable and allocation-free.
#[derive(Debug, Clone, PartialEq)]
enum PerDevice<T> {
    Shared(T),
    Each(Vec<T>),
}

impl<T: Copy> PerDevice<T> {
    #[inline]
    fn get(&self, i: usize) -> T {
        match self {
            PerDevice::Shared(v) => *v,
            PerDevice::Each(v) => v[i],
        }
    }

    /// `(values, mask)` with `values[i & mask]` the value of device `i`, for loops that should not
    /// branch on the representation.
    #[inline]
    fn indexed(&self) -> (&[T], usize) {
        match self {
            PerDevice::Shared(v) => (std::slice::from_ref(v), 0),
            PerDevice::Each(v) => (v, usize::MAX),
        }
    }
}

/// Per-device parameters of a step model, already combined into up/down step sizes.
#[derive(Debug, Clone, PartialEq)]
struct StepKernel {
    kind: StepKind,
    dw_up: PerDevice<f32>,
    dw_down: PerDevice<f32>,
    gamma_up: PerDevice<f32>,
    gamma_down: PerDevice<f32>,
    a: PerDevice<f32>,
    b: PerDevice<f32>,
    a_up: PerDevice<f32>,
    a_down: PerDevice<f32>,
    /// `dw_up == dw_down` for every device: a write's step is then its sign times one column.
    symmetric: bool,
    /// Nominal bounds (linear-step slopes are referenced to them).
    w_min: f32,
    w_max: f32,
    levels: Option<u32>,
    /// Additive c2c: sigma of the per-pulse term `c2c dw_min` (0 = multiplicative c2c).
    c2c_add: f32,
}

#[derive(Debug, Clone, PartialEq)]
enum Kernel {
    Step(StepKernel),
    NeuroSim {
        up: PerDevice<ExpCurve>,
        down: PerDevice<ExpCurve>,
    },
    Table {
        up: MonotoneCurve,
        down: MonotoneCurve,
    },
}

/// Devices of one model. The state of each device is kept in the model's native unit: weight units for
/// the step models, microsiemens for `neurosim` and `table`; [`Population::conductance`] maps it to uS.
///
/// Every device stays inside its own bounds `[lo_i, hi_i]` (which d2d variation may move) after any
/// sequence of operations.
#[derive(Debug, Clone, PartialEq)]
pub struct Population {
    kernel: Kernel,
    state: Vec<f32>,
    lo: PerDevice<f32>,
    hi: PerDevice<f32>,
    /// Empty when no device is stuck.
    stuck: Vec<bool>,
    c2c: f32,
    /// Read-noise sigma in native units.
    read_sigma: f32,
    /// Conductance map `G = g_off + g_scale * state`.
    g_off: f64,
    g_scale: f64,
    levels_up: Option<u32>,
    levels_down: Option<u32>,
    name: &'static str,
    weight_units: bool,
    /// Nominal native range (`[w_min, w_max]` or `[g_min, g_max]`).
    nominal: (f32, f32),
    /// Nominal step of one pulse as a fraction of the nominal range.
    nominal_step: f32,
    /// Weight granularity as a fraction of the nominal range (see [`Population::granularity`]).
    granularity: f32,
    /// `1 / (nominal.1 - nominal.0)`.
    nominal_inv: f32,
    /// Write noise sigma in native units (0: none).
    write_sigma: f32,
    /// Per device, the write noise drawn at its last write (what reads see on top of the state); empty
    /// without write noise.
    offset: Vec<f32>,
    /// Per device, the reference subtracted from what reads see (SoftBoundsReference); shared 0 without.
    reference: PerDevice<f32>,
}

/// A saved state that does not fit the object it is restored into (another shape, a value out of range).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StateError(pub String);

/// Distance to an integer below which a recovered pulse position is taken to be that integer; absorbs the
/// f32 rounding of a stored conductance on flat parts of a curve.
const SNAP: f64 = 1e-3;

/// Distance to an integer within which a recovered pulse position is also tested against the level
/// itself (see [`snap`]): enough for levels ten or more f32 steps of conductance apart.
const SNAP_LEVEL: f64 = 0.05;

/// Pulse position of a stored state `w` recovered as `p` from the curve: the nearest integer `r` when `p`
/// lies within [`SNAP`] of it, or within [`SNAP_LEVEL`] when writing level `r` (`level(r)`: the
/// noise-free write, [`curve_point`] rounded to f32) gives `w` exactly. The second test catches the flat end of a strongly
/// nonlinear curve, where one f32 step of conductance spans more than `SNAP` pulses and the f32 rounding
/// of a level moves the recovered position off its integer; it costs one curve evaluation, made only
/// for positions that close to an integer.
#[inline]
fn snap(p: f64, w: f32, level: impl FnOnce(f64) -> f32) -> f64 {
    let r = p.round();
    let d = (p - r).abs();
    if d < SNAP || (d < SNAP_LEVEL && level(r) == w) {
        r
    } else {
        p
    }
}

/// The weight granularity of a step model in weight units (see [`Population::granularity`]).
fn step_granularity(s: &StepParams) -> f64 {
    match s.kind {
        StepKind::Pow => s.dw_min * 0.5f64.powf((s.gamma_up + s.gamma_down) / 2.0),
        StepKind::Exp => {
            let down = s.dw_min * (1.0 - s.up_down.max(0.0));
            let g = down * (1.0 - s.a_down * (-s.gamma_down * s.b).exp()).max(0.0);
            if g > 0.0 { g } else { s.dw_min }
        }
        _ => s.dw_min,
    }
}

/// Draws the per-device values of one parameter (or shares the nominal value), then applies `fix` to keep
/// each drawn value physical.
fn column(values: &Option<Vec<f64>>, nominal: f64, fix: impl Fn(f64) -> f64) -> PerDevice<f32> {
    match values {
        None => PerDevice::Shared(nominal as f32),
        Some(v) => PerDevice::Each(v.iter().map(|x| fix(*x) as f32).collect()),
    }
}

impl Population {
    /// Builds `n` devices from a validated spec, drawing device-to-device variation and stuck devices from
    /// `rng` device by device (so the first `m` devices do not depend on `n`). All devices start at their
    /// lower bound, stuck devices at their stuck value.
    pub fn new<R: Rng + ?Sized>(
        spec: &DeviceSpec,
        n: usize,
        rng: &mut R,
    ) -> Result<Self, SpecError> {
        spec.validate()?;
        let varied: Vec<Param> = Param::ALL
            .into_iter()
            .filter(|p| spec.variation(*p).is_some())
            .collect();
        let stuck_any = spec.stuck_min + spec.stuck_max + spec.stuck_random > 0.0;
        let mut draws: Vec<Option<Vec<f64>>> = vec![None; Param::ALL.len()];
        for p in &varied {
            draws[*p as usize] = Some(Vec::with_capacity(n));
        }
        // 0 = healthy, 1 = stuck at min, 2 = at max, 3 = at the random fraction `stuck_u` of the range.
        let mut stuck_class = Vec::new();
        let mut stuck_u = Vec::new();
        let reference = match &spec.model {
            Model::Step(s) => s.reference,
            _ => None,
        };
        let mut ref_xi = Vec::new();
        for _ in 0..n {
            if stuck_any {
                let u: f64 = rng.random();
                let class = if u < spec.stuck_min {
                    1u8
                } else if u < spec.stuck_min + spec.stuck_max {
                    2
                } else if u < spec.stuck_min + spec.stuck_max + spec.stuck_random {
                    3
                } else {
                    0
                };
                stuck_class.push(class);
                stuck_u.push(if class == 3 { rng.random::<f64>() } else { 0.0 });
            }
            for p in &varied {
                let nominal = spec
                    .nominal(*p)
                    .expect("validated: parameter belongs to the model");
                let v = spec.variation(*p).expect("filtered").sample(nominal, rng);
                draws[*p as usize].as_mut().expect("allocated").push(v);
            }
            if reference.is_some_and(|r| r.std > 0.0) {
                ref_xi.push(StandardNormal.sample(rng));
            }
        }
        let d = |p: Param| &draws[p as usize];
        let g_range = spec.g_max - spec.g_min;

        let (kernel, lo, hi, g_off, g_scale, levels_up, levels_down) = match &spec.model {
            Model::Step(s) => {
                let range = s.w_max - s.w_min;
                let eps = 1e-3 * range;
                let soft = s.kind == StepKind::SoftBounds || s.kind == StepKind::Linear;
                let mut lo = column(d(Param::WMin), s.w_min, |v| {
                    if soft {
                        v.min(-1e-3 * s.w_min.abs())
                    } else {
                        v
                    }
                });
                let mut hi = column(d(Param::WMax), s.w_max, |v| {
                    if soft { v.max(1e-3 * s.w_max.abs()) } else { v }
                });
                // Keep hi above lo for every device.
                if let (PerDevice::Each(_), _) | (_, PerDevice::Each(_)) = (&lo, &hi) {
                    let lo_v: Vec<f32> = (0..n).map(|i| lo.get(i)).collect();
                    let hi_v: Vec<f32> = (0..n)
                        .map(|i| hi.get(i).max(lo.get(i) + eps as f32))
                        .collect();
                    lo = PerDevice::Each(lo_v);
                    hi = PerDevice::Each(hi_v);
                }
                let gain = column(d(Param::DwMin), s.dw_min, |v| v.max(0.0));
                let ud = column(d(Param::UpDown), s.up_down, |v| v);
                // dw_up = (gain + min(ud,0) + r) dw_min, dw_down = (gain - max(ud,0) - r) dw_min, with
                // gain*dw_min the device's dw_min and r the device's deviation of up_down.
                let dw_up = combine(&gain, &ud, n, |g, u| {
                    (g as f64 + s.dw_min * (s.up_down.min(0.0) + (u as f64 - s.up_down))).max(0.0)
                        as f32
                });
                let dw_down = combine(&gain, &ud, n, |g, u| {
                    (g as f64 + s.dw_min * (-s.up_down.max(0.0) - (u as f64 - s.up_down))).max(0.0)
                        as f32
                });
                let nonneg = s.kind == StepKind::Pow;
                let kernel = StepKernel {
                    kind: s.kind,
                    symmetric: dw_up == dw_down,
                    dw_up,
                    dw_down,
                    gamma_up: column(d(Param::GammaUp), s.gamma_up, |v| {
                        if nonneg { v.max(0.0) } else { v }
                    }),
                    gamma_down: column(d(Param::GammaDown), s.gamma_down, |v| {
                        if nonneg { v.max(0.0) } else { v }
                    }),
                    a: column(d(Param::A), s.a, |v| v),
                    b: column(d(Param::B), s.b, |v| v),
                    a_up: column(d(Param::AUp), s.a_up, |v| v),
                    a_down: column(d(Param::ADown), s.a_down, |v| v),
                    w_min: s.w_min as f32,
                    w_max: s.w_max as f32,
                    levels: s.levels,
                    c2c_add: if spec.c2c_additive {
                        (spec.c2c * s.dw_min) as f32
                    } else {
                        0.0
                    },
                };
                // Weight units unless a conductance range is given; then the nominal weight range maps
                // linearly onto it, and no device's lower bound may map below 0 uS.
                let (g_off, g_scale) = match s.g_range {
                    None => (0.0, 1.0),
                    Some((g0, g1)) => {
                        let scale = (g1 - g0) / range;
                        (g0 - s.w_min * scale, scale)
                    }
                };
                if s.g_range.is_some() {
                    let floor = (-g_off / g_scale) as f32;
                    lo = match lo {
                        PerDevice::Shared(v) => PerDevice::Shared(v.max(floor)),
                        PerDevice::Each(v) => {
                            PerDevice::Each(v.into_iter().map(|x| x.max(floor)).collect())
                        }
                    };
                    if let PerDevice::Each(h) = &mut hi {
                        for (i, x) in h.iter_mut().enumerate() {
                            *x = x.max(lo.get(i) + eps as f32);
                        }
                    }
                }
                (
                    Kernel::Step(kernel),
                    lo,
                    hi,
                    g_off,
                    g_scale,
                    s.levels,
                    s.levels,
                )
            }
            Model::NeuroSim(p) => {
                let curves = |levels: u32, nl: f64, param: Param| match d(param) {
                    None => PerDevice::Shared(ExpCurve::new(levels, nl)),
                    Some(v) => PerDevice::Each(
                        v.iter()
                            .map(|x| ExpCurve::new(levels, x.clamp(-NL_LIMIT, NL_LIMIT)))
                            .collect(),
                    ),
                };
                let up = curves(p.levels_up, p.nl_up, Param::NlUp);
                let down = curves(p.levels_down, p.nl_down, Param::NlDown);
                let (lo, hi) = conductance_bounds(spec, d(Param::GMin), d(Param::GMax), n);
                (
                    Kernel::NeuroSim { up, down },
                    lo,
                    hi,
                    0.0,
                    1.0,
                    Some(p.levels_up),
                    Some(p.levels_down),
                )
            }
            Model::Table(t) => {
                let (tlo, thi) = (t.g_lo(), t.g_hi());
                let norm = |v: &[f64]| {
                    v.iter()
                        .map(|g| (g - tlo) / (thi - tlo))
                        .collect::<Vec<_>>()
                };
                let (lo, hi) = conductance_bounds(spec, d(Param::GMin), d(Param::GMax), n);
                (
                    Kernel::Table {
                        up: MonotoneCurve::new(norm(&t.up)),
                        down: MonotoneCurve::new(norm(&t.down)),
                    },
                    lo,
                    hi,
                    0.0,
                    1.0,
                    Some(t.up.len() as u32),
                    Some(t.down.len() as u32),
                )
            }
        };

        let mut state: Vec<f32> = (0..n).map(|i| lo.get(i)).collect();
        let mut stuck = Vec::new();
        if stuck_any {
            stuck = stuck_class.iter().map(|c| *c != 0).collect();
            for i in 0..n {
                let (l, h) = (lo.get(i), hi.get(i));
                state[i] = match stuck_class[i] {
                    2 => h,
                    3 => (l as f64 + stuck_u[i] * (h - l) as f64).clamp(l as f64, h as f64) as f32,
                    _ => l,
                };
            }
        }
        let native_range = match &spec.model {
            Model::Step(s) => s.w_max - s.w_min,
            _ => g_range,
        };
        let write_sigma = match &spec.model {
            Model::Step(s) => (spec.write_noise * s.dw_min) as f32,
            _ => 0.0,
        };
        // The reference of each device: mean + std xi, plus its symmetry point when asked for.
        let reference = match (&kernel, reference) {
            (Kernel::Step(k), Some(r)) if r.std > 0.0 || r.subtract_symmetry_point => {
                PerDevice::Each(
                    (0..n)
                        .map(|i| {
                            let mut v = r.mean + ref_xi.get(i).map_or(0.0, |x: &f64| r.std * x);
                            if r.subtract_symmetry_point {
                                let (up, down) = (k.dw_up.get(i) as f64, k.dw_down.get(i) as f64);
                                let (l, h) = (lo.get(i) as f64, hi.get(i) as f64);
                                let den = up / h - down / l;
                                if den != 0.0 {
                                    v += (up - down) / den;
                                }
                            }
                            v as f32
                        })
                        .collect(),
                )
            }
            (_, Some(r)) => PerDevice::Shared(r.mean as f32),
            _ => PerDevice::Shared(0.0),
        };
        Ok(Population {
            kernel,
            state,
            lo,
            hi,
            stuck,
            c2c: spec.c2c as f32,
            read_sigma: (spec.read_noise * native_range) as f32,
            g_off,
            g_scale,
            levels_up,
            levels_down,
            name: spec.model.name(),
            weight_units: matches!(&spec.model, Model::Step(s) if s.g_range.is_none()),
            nominal: match &spec.model {
                Model::Step(s) => (s.w_min as f32, s.w_max as f32),
                _ => (spec.g_min as f32, spec.g_max as f32),
            },
            nominal_inv: match &spec.model {
                Model::Step(s) => (1.0 / (s.w_max - s.w_min)) as f32,
                _ => (1.0 / (spec.g_max - spec.g_min)) as f32,
            },
            nominal_step: match &spec.model {
                Model::Step(s) => (s.dw_min / (s.w_max - s.w_min)) as f32,
                Model::NeuroSim(n) => 1.0 / (n.levels_up - 1) as f32,
                Model::Table(t) => 1.0 / (t.up.len() - 1) as f32,
            },
            granularity: match &spec.model {
                Model::Step(s) => (step_granularity(s) / (s.w_max - s.w_min)) as f32,
                Model::NeuroSim(n) => 1.0 / (n.levels_up - 1) as f32,
                Model::Table(t) => 1.0 / (t.up.len() - 1) as f32,
            },
            write_sigma,
            offset: if write_sigma > 0.0 {
                vec![0.0; n]
            } else {
                Vec::new()
            },
            reference,
        })
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.state.len()
    }

    /// True when the population holds no device.
    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }

    /// Scenario name of the model.
    pub fn model_name(&self) -> &'static str {
        self.name
    }

    /// Nominal range of the native state: `[w_min, w_max]` for step models, `[g_min, g_max]` otherwise.
    pub fn nominal_range(&self) -> (f32, f32) {
        self.nominal
    }

    /// Nominal size of one pulse as a fraction of the nominal range: `dw_min / (w_max - w_min)` for step
    /// models, `1 / (levels - 1)` (the mean step of a full sweep) for `neurosim` and `table`.
    pub fn nominal_step(&self) -> f32 {
        self.nominal_step
    }

    /// The weight granularity that pulse schemes size their pulses by, as a fraction of the nominal
    /// range (aihwkit's convention): `dw_min` for constant-, linear-step and soft-bounds; for pow-step
    /// `dw_min 0.5^gamma` (the step at mid-range; `gamma` the mean of `gamma_up` and `gamma_down`); for
    /// exp-step the nominal down step at `w = 0`, `dw_down max(1 - a_down exp(-gamma_down b), 0)` (or
    /// `dw_min` where that is 0); for `neurosim` and `table` the mean step of a full sweep,
    /// `1 / (levels - 1)`.
    pub fn granularity(&self) -> f32 {
        self.granularity
    }

    /// State of device `i` as a fraction of the nominal range (0 at the nominal lower bound, 1 at the
    /// upper; d2d variation may take a device slightly outside `[0, 1]`).
    #[inline]
    pub fn fraction(&self, i: usize) -> f32 {
        (self.state[i] - self.nominal.0) * self.nominal_inv
    }

    /// What a read sees of device `i`, as a fraction of the nominal range: the state plus the write noise
    /// of its last write, minus its reference (equal to [`Population::fraction`] for devices with
    /// neither).
    #[inline]
    pub fn read_fraction(&self, i: usize) -> f32 {
        (self.read_state(i) - self.nominal.0) * self.nominal_inv
    }

    /// What a read sees of device `i` in native units: the state plus the write noise of its last write,
    /// minus its reference ([`Population::read_fraction`] before it is mapped onto the nominal range).
    #[inline]
    pub fn read_state(&self, i: usize) -> f32 {
        let mut s = self.state[i];
        if !self.offset.is_empty() {
            s += self.offset[i];
        }
        if self.has_reference() {
            s -= self.reference.get(i);
        }
        s
    }

    fn has_reference(&self) -> bool {
        !matches!(self.reference, PerDevice::Shared(r) if r == 0.0)
    }

    /// True when reads see the state itself ([`Population::read_fraction`] equals
    /// [`Population::fraction`]): no write noise and no reference.
    pub fn plain_reads(&self) -> bool {
        self.offset.is_empty() && !self.has_reference()
    }

    /// Every device's current write-noise offset (native units; empty without write noise), for
    /// checkpoints.
    pub fn write_offsets(&self) -> &[f32] {
        &self.offset
    }

    /// Restores offsets made by [`Population::write_offsets`]. Refuses a slice of another length or a
    /// non-finite value.
    pub fn set_write_offsets(&mut self, offsets: &[f32]) -> Result<(), StateError> {
        if offsets.len() != self.offset.len() || offsets.iter().any(|v| !v.is_finite()) {
            return Err(StateError(format!(
                "{} write-noise offsets for a population that keeps {}",
                offsets.len(),
                self.offset.len()
            )));
        }
        self.offset.copy_from_slice(offsets);
        Ok(())
    }

    /// Unit of [`Population::conductance`]: `"uS"`, or `"w"` (weight units) for a step model without a
    /// conductance range.
    pub fn unit(&self) -> &'static str {
        if self.weight_units { "w" } else { "uS" }
    }

    /// Levels of a full potentiation sweep and of a full depression sweep, for discrete models.
    pub fn levels(&self) -> (Option<u32>, Option<u32>) {
        (self.levels_up, self.levels_down)
    }

    /// State of device `i` in native units (weight units for step models, uS otherwise).
    #[inline]
    pub fn state(&self, i: usize) -> f32 {
        self.state[i]
    }

    /// All states in native units.
    pub fn states(&self) -> &[f32] {
        &self.state
    }

    /// Overwrites every device's state (native units) with `states`, e.g. from a checkpoint made by
    /// [`Population::states`]. Per-device parameters are not touched: they are rebuilt from the spec and
    /// seed. Refuses (leaving the population unchanged) a slice of another length or a value that is not
    /// finite or lies outside that device's bounds, which is what a state from another population shows.
    pub fn set_states(&mut self, states: &[f32]) -> Result<(), StateError> {
        if states.len() != self.state.len() {
            return Err(StateError(format!(
                "{} device states for a population of {}",
                states.len(),
                self.state.len()
            )));
        }
        for (i, v) in states.iter().enumerate() {
            let (lo, hi) = self.bounds(i);
            if !(v.is_finite() && *v >= lo && *v <= hi) {
                return Err(StateError(format!(
                    "device {i}: state {v} outside its bounds [{lo}, {hi}]"
                )));
            }
        }
        self.state.copy_from_slice(states);
        Ok(())
    }

    /// Bounds `[lo, hi]` of device `i` in native units.
    #[inline]
    pub fn bounds(&self, i: usize) -> (f32, f32) {
        (self.lo.get(i), self.hi.get(i))
    }

    /// Conductance of device `i` (noise-free), in [`Population::unit`].
    #[inline]
    pub fn conductance(&self, i: usize) -> f32 {
        (self.g_off + self.g_scale * self.state[i] as f64) as f32
    }

    /// The conductance a read of device `i` sees without read noise, in [`Population::unit`]: the state
    /// plus the write noise of its last write, minus its reference ([`Population::read_fraction`]);
    /// equal to [`Population::conductance`] for devices with neither.
    #[inline]
    pub fn read_conductance(&self, i: usize) -> f32 {
        if self.plain_reads() {
            return self.conductance(i);
        }
        let s = self.nominal.0 as f64 + self.read_fraction(i) as f64 / self.nominal_inv as f64;
        (self.g_off + self.g_scale * s) as f32
    }

    /// Conductance bounds of device `i`, in [`Population::unit`].
    pub fn conductance_bounds(&self, i: usize) -> (f32, f32) {
        let (l, h) = self.bounds(i);
        let m = |v: f32| (self.g_off + self.g_scale * v as f64) as f32;
        (m(l), m(h))
    }

    /// Whether device `i` ignores pulses.
    #[inline]
    pub fn is_stuck(&self, i: usize) -> bool {
        !self.stuck.is_empty() && self.stuck[i]
    }

    /// A noisy read of device `i`'s conductance (in [`Population::unit`]): `G + read_noise range xi`, where
    /// range is `g_max - g_min` (or `w_max - w_min` for step models, mapped to uS when they have a
    /// conductance range); not clipped
    /// (a read is a current measurement and does not disturb the device).
    #[inline]
    pub fn read<R: Rng + ?Sized>(&self, i: usize, rng: &mut R) -> f32 {
        let g = self.conductance(i);
        if self.read_sigma == 0.0 {
            return g;
        }
        let xi: f32 = standard_normal(rng);
        g + (self.g_scale as f32) * self.read_sigma * xi
    }

    /// Sigma of a read as a fraction of the nominal range (the spec's `read_noise`).
    pub fn read_noise_fraction(&self) -> f32 {
        self.read_sigma * self.nominal_inv
    }

    /// Sets device `i` to the fraction `f` of its nominal range without pulses (an ideal write, as a
    /// simulator's "set weights" does), clipped to the device's own bounds; stuck devices do not move,
    /// and the write-noise offset is left as it is.
    pub fn set_fraction(&mut self, i: usize, f: f32) {
        if self.is_stuck(i) {
            return;
        }
        let (lo, hi) = self.bounds(i);
        let v = self.nominal.0 + f / self.nominal_inv;
        self.state[i] = v.clamp(lo, hi);
    }

    /// Moves device `i` to its lower bound (an ideal reset; stuck devices do not move).
    pub fn reset_to_min(&mut self, i: usize) {
        if !self.is_stuck(i) {
            self.state[i] = self.lo.get(i);
        }
    }

    /// Moves device `i` to its upper bound (stuck devices do not move).
    pub fn reset_to_max(&mut self, i: usize) {
        if !self.is_stuck(i) {
            self.state[i] = self.hi.get(i);
        }
    }

    /// True when [`Population::pulse_many`] draws this population's write noise from its `lanes`
    /// argument (the continuous constant-step model with c2c noise and no stuck devices) rather than
    /// calling [`Population::pulse`].
    pub fn batched_noise(&self) -> bool {
        matches!(&self.kernel, Kernel::Step(k)
            if self.stuck.is_empty() && k.kind == StepKind::Constant && k.levels.is_none()
                && k.c2c_add == 0.0)
            && self.c2c > 0.0
            && self.plain_reads()
    }

    /// The fused-loop view of a continuous constant-step population whose write noise comes in
    /// batches (`Some` exactly when [`Population::batched_noise`] holds).
    pub fn constant_step_view(&mut self) -> Option<ConstantStepView<'_>> {
        if !self.batched_noise() {
            return None;
        }
        let c2c = self.c2c;
        Some(self.view_parts(c2c))
    }

    /// The view of a constant-step population without stuck devices (any c2c).
    fn view_parts(&mut self, c2c: f32) -> ConstantStepView<'_> {
        let Kernel::Step(k) = &self.kernel else {
            unreachable!("constant-step view of another model")
        };
        let n = self.state.len();
        let cols = [
            self.lo.indexed(),
            self.hi.indexed(),
            k.dw_up.indexed(),
            k.dw_down.indexed(),
        ];
        for (v, m) in cols {
            assert!(
                v.len() == n || (m == 0 && !v.is_empty()),
                "parameter column"
            );
        }
        let [lo, hi, up, down] = cols;
        ConstantStepView {
            state: &mut self.state,
            lo,
            hi,
            up,
            down,
            symmetric: k.symmetric,
            c2c,
        }
    }

    /// One write of the batched constant-step path with given standard-normal draws `z`, one per
    /// pulse: `|n| = z.len()` pulses, each one [`step::pulse`]. The reference that
    /// [`Population::pulse_many`] follows when [`Population::batched_noise`] holds.
    ///
    /// # Panics
    /// If [`Population::batched_noise`] does not hold, `z.len() != |n|` or `i` is out of range.
    pub fn pulse_with_normals(&mut self, i: usize, n: i32, z: &[f32]) {
        assert!(self.batched_noise(), "not the batched constant-step model");
        assert_eq!(z.len(), n.unsigned_abs() as usize, "one draw per pulse");
        let Kernel::Step(k) = &self.kernel else {
            unreachable!()
        };
        let (lo, hi) = (self.lo.get(i), self.hi.get(i));
        let dw = if n > 0 {
            k.dw_up.get(i)
        } else {
            -k.dw_down.get(i)
        };
        let mut w = self.state[i];
        for x in z {
            w = step::pulse(w, dw, self.c2c, *x, lo, hi);
        }
        self.state[i] = w;
    }

    /// Applies `n` pulses to device `i`: potentiation for `n > 0`, depression for `n < 0`.
    ///
    /// Step models apply each pulse on its own (its own c2c draw); `neurosim` and `table` move `|n|`
    /// positions along the curve in one write and add c2c noise scaled by `sqrt(|n|)`, as NeuroSim does.
    /// The result is clipped to the device's bounds. Stuck devices ignore pulses.
    #[inline]
    pub fn pulse<R: Rng + ?Sized>(&mut self, i: usize, n: i32, rng: &mut R) {
        if n == 0 || self.is_stuck(i) {
            return;
        }
        let (lo, hi) = (self.lo.get(i), self.hi.get(i));
        let w = self.state[i];
        let new = match &self.kernel {
            Kernel::Step(k) => step_pulses(k, i, w, n, lo, hi, self.c2c, rng),
            Kernel::NeuroSim { up, down } => {
                let (l, h) = (lo as f64, hi as f64);
                let range = h - l;
                let u = ((w as f64 - l) / range).clamp(0.0, 1.0);
                let u_new = if n > 0 {
                    let c = up.get(i);
                    let p = snap(c.p(u), w, |r| curve_point(l, range, c.u(r)) as f32);
                    c.u((p + n as f64).min(c.pmax))
                } else {
                    let c = down.get(i);
                    let p = snap(c.p(u), w, |r| curve_point(l, range, c.u(r)) as f32);
                    c.u((p + n as f64).max(0.0))
                };
                curve_write(l, range, u_new, n, self.c2c, rng)
            }
            Kernel::Table { up, down } => {
                let (l, h) = (lo as f64, hi as f64);
                let range = h - l;
                let u = ((w as f64 - l) / range).clamp(0.0, 1.0);
                let u_new = if n > 0 {
                    let p = snap(up.position(u), w, |r| {
                        curve_point(l, range, up.value(r)) as f32
                    });
                    up.value(p + n as f64)
                } else {
                    let p = snap(down.position(u), w, |r| {
                        curve_point(l, range, down.value(r)) as f32
                    });
                    down.value(p - n as f64)
                };
                curve_write(l, range, u_new, n, self.c2c, rng)
            }
        };
        self.state[i] = new.clamp(lo, hi);
        if self.write_sigma > 0.0 {
            let xi: f32 = standard_normal(rng);
            self.offset[i] = self.write_sigma * xi;
        }
    }

    /// Applies `n[k]` pulses to device `idx[k]` for every `k` in order, and writes each device's change of
    /// state (native units) into `delta[k]`.
    ///
    /// For every model but one this is exactly a sequence of [`Population::pulse`] calls: the same random
    /// draws from `rng` in the same order and bit-identical states. The exception is the continuous
    /// constant-step model (the reference of the speed benchmarks) with write noise: there the standard
    /// normal draws of the whole batch, one per pulse in write order, come from `lanes` in one bulk fill
    /// into `noise` (scratch space, reused between calls), and every pulse is then the same
    /// `w <- clip(w + dw (1 + c2c z))` as in [`Population::pulse`]; `rng` is not used. A device may
    /// appear more than once.
    ///
    /// # Panics
    /// If the three slices differ in length or an index is out of range.
    pub fn pulse_many<R: Rng + ?Sized>(
        &mut self,
        idx: &[u32],
        n: &[i32],
        rng: &mut R,
        lanes: &mut NormalLanes,
        noise: &mut Vec<f32>,
        delta: &mut [f32],
    ) {
        assert_eq!(n.len(), delta.len(), "batch shape");
        self.pulse_many_with(idx, n, rng, lanes, noise, |k, _, d| delta[k] = d);
    }

    /// [`Population::pulse_many`] that hands every write to `each(k, new_state, change)` as it happens
    /// (`k` the position in the batch, states in native units) instead of collecting the changes, so a
    /// caller can keep its own per-device sums in the same pass.
    ///
    /// # Panics
    /// If `idx` and `n` differ in length or an index is out of range.
    #[inline]
    pub fn pulse_many_with<R: Rng + ?Sized>(
        &mut self,
        idx: &[u32],
        n: &[i32],
        rng: &mut R,
        lanes: &mut NormalLanes,
        noise: &mut Vec<f32>,
        mut each: impl FnMut(usize, f32, f32),
    ) {
        assert_eq!(idx.len(), n.len(), "batch shape");
        match &self.kernel {
            Kernel::Step(k)
                if self.stuck.is_empty()
                    && k.kind == StepKind::Constant
                    && k.levels.is_none()
                    && k.c2c_add == 0.0
                    && self.offset.is_empty() =>
            {
                let total: usize = n.iter().map(|m| m.unsigned_abs() as usize).sum();
                if self.c2c > 0.0 {
                    noise.resize(total + 2, 0.0);
                    lanes.fill(&mut noise[..total]);
                } else {
                    // Zeros, read again for every write (multiplied by c2c = 0, they leave the steps
                    // exact).
                    let longest = n
                        .iter()
                        .map(|m| m.unsigned_abs() as usize)
                        .max()
                        .unwrap_or(0);
                    noise.clear();
                    noise.resize(longest.max(2), 0.0);
                }
                let c2c = self.c2c;
                let mut view = self.view_parts(c2c);
                let mut next = 0;
                for (j, (i, m)) in idx.iter().zip(n).enumerate() {
                    let (w0, w) = view.write(*i as usize, *m, &noise[next..]);
                    if c2c > 0.0 {
                        next += m.unsigned_abs() as usize;
                    }
                    each(j, w, w - w0);
                }
            }
            _ => {
                for (j, (i, m)) in idx.iter().zip(n).enumerate() {
                    let i = *i as usize;
                    let w = self.state[i];
                    self.pulse(i, *m, rng);
                    each(j, self.state[i], self.state[i] - w);
                }
            }
        }
    }

    /// The map from a native state to [`Population::fraction`]: `(offset, scale)` with
    /// `fraction = (state - offset) * scale`.
    pub fn fraction_map(&self) -> (f32, f32) {
        (self.nominal.0, self.nominal_inv)
    }

    /// Conductance change per unit of native state (`dG = conductance_scale * d state`), in
    /// [`Population::unit`] per native unit.
    pub fn conductance_scale(&self) -> f64 {
        self.g_scale
    }

    /// `1 / (nominal upper - nominal lower)`: the change of [`Population::fraction`] per native unit.
    pub fn fraction_scale(&self) -> f32 {
        self.nominal_inv
    }
}

/// Conductance bounds (uS) per device for the conductance-based models.
fn conductance_bounds(
    spec: &DeviceSpec,
    gmin: &Option<Vec<f64>>,
    gmax: &Option<Vec<f64>>,
    n: usize,
) -> (PerDevice<f32>, PerDevice<f32>) {
    let lo = column(gmin, spec.g_min, |v| v.max(0.0));
    let hi = column(gmax, spec.g_max, |v| v);
    let eps = (1e-3 * (spec.g_max - spec.g_min)) as f32;
    match (&lo, &hi) {
        (PerDevice::Shared(_), PerDevice::Shared(_)) => (lo, hi),
        _ => {
            let hi_v = (0..n).map(|i| hi.get(i).max(lo.get(i) + eps)).collect();
            let lo_v = (0..n).map(|i| lo.get(i)).collect();
            (PerDevice::Each(lo_v), PerDevice::Each(hi_v))
        }
    }
}

/// Per-device combination of two columns.
fn combine(
    a: &PerDevice<f32>,
    b: &PerDevice<f32>,
    n: usize,
    f: impl Fn(f32, f32) -> f32,
) -> PerDevice<f32> {
    match (a, b) {
        (PerDevice::Shared(x), PerDevice::Shared(y)) => PerDevice::Shared(f(*x, *y)),
        _ => PerDevice::Each((0..n).map(|i| f(a.get(i), b.get(i))).collect()),
    }
}

/// Conductance of normalized position `u` on a curve spanning `range` from `lo` (before write noise).
#[inline]
fn curve_point(lo: f64, range: f64, u: f64) -> f64 {
    lo + range * u
}

/// Writes a curve model's new normalized position, with NeuroSim's lumped c2c noise.
#[inline]
fn curve_write<R: Rng + ?Sized>(
    lo: f64,
    range: f64,
    u_new: f64,
    n: i32,
    c2c: f32,
    rng: &mut R,
) -> f32 {
    let mut g = curve_point(lo, range, u_new);
    if c2c > 0.0 {
        let xi: f64 = StandardNormal.sample(rng);
        g += c2c as f64 * range * (n.unsigned_abs() as f64).sqrt() * xi;
    }
    g as f32
}

/// Applies `n` pulses of a step model one by one.
#[inline]
#[allow(clippy::too_many_arguments)]
fn step_pulses<R: Rng + ?Sized>(
    k: &StepKernel,
    i: usize,
    mut w: f32,
    n: i32,
    lo: f32,
    hi: f32,
    c2c: f32,
    rng: &mut R,
) -> f32 {
    let up = n > 0;
    let dw = if up {
        k.dw_up.get(i)
    } else {
        -k.dw_down.get(i)
    };
    let gamma = if up {
        k.gamma_up.get(i)
    } else {
        k.gamma_down.get(i)
    };
    for _ in 0..n.unsigned_abs() {
        let shape = match k.kind {
            StepKind::Constant => 1.0,
            StepKind::Linear => {
                if up {
                    (1.0 - gamma * w / k.w_max).max(0.0)
                } else {
                    (1.0 - gamma * w / k.w_min).max(0.0)
                }
            }
            StepKind::SoftBounds => {
                if up {
                    (1.0 - w / hi).max(0.0)
                } else {
                    (1.0 - w / lo).max(0.0)
                }
            }
            StepKind::Exp => {
                let z = 2.0 * k.a.get(i) * w / (hi - lo) + k.b.get(i);
                if up {
                    (1.0 - k.a_up.get(i) * (gamma * z).exp()).max(0.0)
                } else {
                    (1.0 - k.a_down.get(i) * (-gamma * z).exp()).max(0.0)
                }
            }
            StepKind::Pow => {
                let x = if up {
                    (hi - w) / (hi - lo)
                } else {
                    (w - lo) / (hi - lo)
                };
                x.max(0.0).powf(gamma)
            }
        };
        let step = dw * shape;
        w = if k.c2c_add > 0.0 {
            let xi: f32 = standard_normal(rng);
            clip(w + (step + k.c2c_add * xi), lo, hi)
        } else {
            // Without c2c no draw is made, and `z = 0` leaves the step exact.
            let z: f32 = if c2c > 0.0 { standard_normal(rng) } else { 0.0 };
            step::pulse(w, step, c2c, z, lo, hi)
        };
        if let Some(levels) = k.levels {
            w = quantize(w, lo, hi, levels, rng);
        }
    }
    w
}

/// Stochastic rounding onto `levels` evenly spaced states in `[lo, hi]`: the expected state equals `w`.
#[inline]
fn quantize<R: Rng + ?Sized>(w: f32, lo: f32, hi: f32, levels: u32, rng: &mut R) -> f32 {
    let top = (levels - 1) as f32;
    let spacing = (hi - lo) / top;
    let q = ((w - lo) / spacing).clamp(0.0, top);
    let floor = q.floor();
    let frac = q - floor;
    let k = if frac > 0.0 && rng.random::<f32>() < frac {
        floor + 1.0
    } else {
        floor
    };
    if k >= top { hi } else { lo + k * spacing }
}

#[cfg(test)]
#[path = "population_tests.rs"]
mod tests;
