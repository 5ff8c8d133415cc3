//! Validated, format-free description of a device population.
//!
//! The scenario layer (serde, TOML) lives in the `aimsim` package; it builds a [`DeviceSpec`] and calls
//! [`DeviceSpec::validate`], so the physical rules live here, next to the physics, and every front end
//! enforces the same ones.

use std::fmt;

use rand::{Rng, RngExt};
use rand_distr::{Distribution, StandardNormal};

/// An error in a device description: the offending key (relative to the device section, e.g.
/// `g_min` or `d2d.nl_up`) and what is wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SpecError {
    /// Key path relative to the device section, dotted.
    pub key: String,
    /// What is wrong, and what is allowed.
    pub message: String,
}

impl SpecError {
    /// Builds an error for `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The aihwkit-style step models: the state is a weight in `[b_min, b_max]` changed by one step per pulse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Constant step `dw` per pulse.
    Constant,
    /// Step that shrinks linearly with the weight, slopes `gamma_up`/`gamma_down`.
    Linear,
    /// Step that shrinks linearly to zero at the device's own bounds.
    SoftBounds,
    /// Exponential dependence of the step on the weight.
    Exp,
    /// Power-law dependence of the step on the distance to the bound.
    Pow,
}

impl StepKind {
    /// Scenario name of the model.
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Constant => "constant-step",
            StepKind::Linear => "linear-step",
            StepKind::SoftBounds => "soft-bounds",
            StepKind::Exp => "exp-step",
            StepKind::Pow => "pow-step",
        }
    }
}

/// Calls the macro `$m` with the device parameters that can vary from device to device: for each,
/// its doc line, its [`Param`] variant and its scenario key, in the fixed order in which per-device
/// draws are made. This is the one list of these parameters: [`Param`], [`Param::ALL`] and
/// [`Param::key`] are generated from it here, and so are the nominal values of the scenario's
/// `[device]` section and the variations of its `[device.d2d]` section in the `aimsim` package.
#[macro_export]
macro_rules! with_device_params {
    ($m:ident) => {
        $m! {
            /// Nominal step of step models.
            DwMin dw_min,
            /// Up/down asymmetry of step models.
            UpDown up_down,
            /// Lower weight bound of step models.
            WMin w_min,
            /// Upper weight bound of step models.
            WMax w_max,
            /// `gamma_up` of linear-, exp- and pow-step.
            GammaUp gamma_up,
            /// `gamma_down` of linear-, exp- and pow-step.
            GammaDown gamma_down,
            /// `a` of exp-step.
            A a,
            /// `b` of exp-step.
            B b,
            /// `a_up` (aihwkit `A_up`) of exp-step.
            AUp a_up,
            /// `a_down` (aihwkit `A_down`) of exp-step.
            ADown a_down,
            /// NeuroSim potentiation nonlinearity label.
            NlUp nl_up,
            /// NeuroSim depression nonlinearity label.
            NlDown nl_down,
            /// Conductance at the lower bound (neurosim, table).
            GMin g_min,
            /// Conductance at the upper bound (neurosim, table).
            GMax g_max,
        }
    };
}

/// Defines [`Param`] from the list of [`with_device_params!`].
macro_rules! define_param {
    ($($(#[$doc:meta])* $variant:ident $key:ident,)*) => {
        /// A parameter that can vary from device to device.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Param {
            $($(#[$doc])* $variant,)*
        }

        impl Param {
            /// Every parameter, in the fixed order in which per-device draws are made.
            pub const ALL: [Param; [$(Param::$variant),*].len()] = [$(Param::$variant),*];

            /// Scenario key of the parameter.
            pub fn key(self) -> &'static str {
                match self {
                    $(Param::$variant => stringify!($key),)*
                }
            }
        }
    };
}

with_device_params!(define_param);

impl Param {
    /// Parameter for a scenario key.
    pub fn from_key(key: &str) -> Option<Param> {
        Param::ALL.into_iter().find(|p| p.key() == key)
    }
}

/// Distribution family of a device-to-device variation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dist {
    /// `nominal + sigma * xi`.
    Normal,
    /// Log-normal with mean `nominal` and the given spread (mean-preserving); keeps the sign of nominal.
    LogNormal,
    /// Uniform on `nominal +- half_width`.
    Uniform,
    /// Log-normal that keeps the *median* at `nominal`: `nominal exp(sigma xi)`, `sigma` the standard
    /// deviation of `ln(value / nominal)` (aihwkit's log-normal device-to-device draws); the mean is
    /// `nominal exp(sigma^2 / 2)`.
    LogNormalMedian,
}

impl Dist {
    /// Scenario name.
    pub fn name(self) -> &'static str {
        match self {
            Dist::Normal => "normal",
            Dist::LogNormal => "lognormal",
            Dist::Uniform => "uniform",
            Dist::LogNormalMedian => "lognormal-median",
        }
    }
}

/// Size of a variation: absolute, or relative to the magnitude of the nominal value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spread {
    /// Absolute (standard deviation, or half width for uniform), in the parameter's units.
    Absolute(f64),
    /// Relative to `|nominal|` (coefficient of variation, or relative half width for uniform).
    Relative(f64),
}

/// A device-to-device variation of one parameter, drawn once per device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Variation {
    /// Distribution family.
    pub dist: Dist,
    /// Spread.
    pub spread: Spread,
}

impl Variation {
    /// Absolute spread for a nominal value.
    fn width(&self, nominal: f64) -> f64 {
        match self.spread {
            Spread::Absolute(s) => s,
            Spread::Relative(r) => r * nominal.abs(),
        }
    }

    /// Draws one device's value of a parameter whose nominal value is `nominal`.
    pub fn sample<R: Rng + ?Sized>(&self, nominal: f64, rng: &mut R) -> f64 {
        let w = self.width(nominal);
        if w == 0.0 {
            return nominal;
        }
        match self.dist {
            Dist::Normal => {
                let xi: f64 = StandardNormal.sample(rng);
                nominal + w * xi
            }
            Dist::LogNormal => {
                // Mean-preserving: E[value] = nominal, std = w (validated: nominal != 0).
                let m = nominal.abs();
                let cv = w / m;
                let s2 = (1.0 + cv * cv).ln();
                let mu = m.ln() - 0.5 * s2;
                let xi: f64 = StandardNormal.sample(rng);
                nominal.signum() * (mu + s2.sqrt() * xi).exp()
            }
            Dist::Uniform => {
                let u: f64 = rng.random();
                nominal + w * (2.0 * u - 1.0)
            }
            Dist::LogNormalMedian => {
                let s = match self.spread {
                    Spread::Absolute(s) | Spread::Relative(s) => s,
                };
                let xi: f64 = StandardNormal.sample(rng);
                nominal * (s * xi).exp()
            }
        }
    }

    fn validate(&self, key: &str, nominal: f64) -> Result<(), SpecError> {
        let (v, what) = match self.spread {
            Spread::Absolute(s) => (
                s,
                if self.dist == Dist::Uniform {
                    "half_width"
                } else {
                    "sigma"
                },
            ),
            Spread::Relative(r) => (
                r,
                if self.dist == Dist::Uniform {
                    "rel_half_width"
                } else {
                    "cv"
                },
            ),
        };
        if !v.is_finite() || !(0.0..=MAGNITUDE_LIMIT).contains(&v) {
            return Err(SpecError::new(
                format!("{key}.{what}"),
                format!("must be a finite number in [0, {MAGNITUDE_LIMIT:e}], got {v}"),
            ));
        }
        if matches!(self.dist, Dist::LogNormal | Dist::LogNormalMedian) && nominal == 0.0 && v > 0.0
        {
            return Err(SpecError::new(
                key,
                "a log-normal variation needs a non-zero nominal value (it scales the magnitude); \
                 use dist = \"normal\" or \"uniform\" for a parameter whose nominal value is 0",
            ));
        }
        Ok(())
    }
}

/// Parameters of the step models (weight units, aihwkit conventions).
#[derive(Debug, Clone, PartialEq)]
pub struct StepParams {
    /// Which step model.
    pub kind: StepKind,
    /// Nominal step size.
    pub dw_min: f64,
    /// Up/down asymmetry (`dw_up = dw_min (1 + min(up_down, 0))`, `dw_down = dw_min (1 - max(up_down, 0))`).
    pub up_down: f64,
    /// Nominal lower bound.
    pub w_min: f64,
    /// Nominal upper bound.
    pub w_max: f64,
    /// Linear-step slope / pow-step exponent / exp-step gamma for potentiation.
    pub gamma_up: f64,
    /// Same for depression.
    pub gamma_down: f64,
    /// Exp-step `a`.
    pub a: f64,
    /// Exp-step `b`.
    pub b: f64,
    /// Exp-step `A_up`.
    pub a_up: f64,
    /// Exp-step `A_down`.
    pub a_down: f64,
    /// Optional number of discrete states between the device's bounds (stochastic rounding).
    pub levels: Option<u32>,
    /// Optional conductance range `(g_min, g_max)` in uS onto which the nominal weight range
    /// `[w_min, w_max]` maps linearly. Without it, conductances are reported in weight units.
    pub g_range: Option<(f64, f64)>,
    /// A fixed per-device reference subtracted from the weight that reads see (aihwkit's
    /// SoftBoundsReference; soft-bounds only).
    pub reference: Option<Reference>,
}

/// The reference of aihwkit's SoftBoundsReference device: reads see `w - r`, with `r = mean + std xi`
/// drawn once per device, plus the device's own symmetry point when `subtract_symmetry_point` is set
/// (`w* = (dw_up - dw_down) / (dw_up / b_max - dw_down / b_min)`, where its up and down steps balance).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reference {
    /// Added to every device's reference (weight units).
    pub mean: f64,
    /// Sigma of the per-device normal variation of the reference (weight units).
    pub std: f64,
    /// Add each device's symmetry point to its reference.
    pub subtract_symmetry_point: bool,
}

impl StepParams {
    /// Defaults of a step model: `w` in `[-1, 1]`, no asymmetry, all shape parameters 0.
    pub fn new(kind: StepKind, dw_min: f64) -> Self {
        StepParams {
            kind,
            dw_min,
            up_down: 0.0,
            w_min: -1.0,
            w_max: 1.0,
            gamma_up: 0.0,
            gamma_down: 0.0,
            a: 0.0,
            b: 0.0,
            a_up: 0.0,
            a_down: 0.0,
            levels: None,
            g_range: None,
            reference: None,
        }
    }

    /// Nominal value of a parameter, if the model has it.
    pub fn nominal(&self, p: Param) -> Option<f64> {
        let uses_gamma = matches!(self.kind, StepKind::Linear | StepKind::Exp | StepKind::Pow);
        let exp = self.kind == StepKind::Exp;
        Some(match p {
            Param::DwMin => self.dw_min,
            Param::UpDown => self.up_down,
            Param::WMin => self.w_min,
            Param::WMax => self.w_max,
            Param::GammaUp if uses_gamma => self.gamma_up,
            Param::GammaDown if uses_gamma => self.gamma_down,
            Param::A if exp => self.a,
            Param::B if exp => self.b,
            Param::AUp if exp => self.a_up,
            Param::ADown if exp => self.a_down,
            _ => return None,
        })
    }
}

/// Parameters of the MLP+NeuroSim exponential model.
#[derive(Debug, Clone, PartialEq)]
pub struct NeuroSimParams {
    /// Levels of the potentiation curve (max pulse number + 1).
    pub levels_up: u32,
    /// Levels of the depression curve.
    pub levels_down: u32,
    /// Nonlinearity label of potentiation.
    pub nl_up: f64,
    /// Nonlinearity label of depression (as NeuroSim tables give it, usually negative).
    pub nl_down: f64,
}

/// A measured response: conductance against pulse number for a full up sweep and a full down sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct TableCurve {
    /// Up sweep, strictly increasing, conductance in uS at pulse 0, 1, ...
    pub up: Vec<f64>,
    /// Down sweep, strictly decreasing, conductance in uS at pulse 0, 1, ...
    pub down: Vec<f64>,
}

impl TableCurve {
    /// Lowest conductance of the table.
    pub fn g_lo(&self) -> f64 {
        self.up
            .iter()
            .chain(&self.down)
            .copied()
            .fold(f64::INFINITY, f64::min)
    }
    /// Highest conductance of the table.
    pub fn g_hi(&self) -> f64 {
        self.up
            .iter()
            .chain(&self.down)
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

/// The response model of a population.
#[derive(Debug, Clone, PartialEq)]
pub enum Model {
    /// One of the step models.
    Step(StepParams),
    /// NeuroSim exponential curves.
    NeuroSim(NeuroSimParams),
    /// Measured table.
    Table(TableCurve),
}

impl Model {
    /// Scenario name of the model.
    pub fn name(&self) -> &'static str {
        match self {
            Model::Step(p) => p.kind.name(),
            Model::NeuroSim(_) => "neurosim",
            Model::Table(_) => "table",
        }
    }
}

/// Everything needed to build a population of devices.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSpec {
    /// Response model and its parameters.
    pub model: Model,
    /// Conductance (uS) of the lower bound.
    pub g_min: f64,
    /// Conductance (uS) of the upper bound.
    pub g_max: f64,
    /// Cycle-to-cycle write noise (relative step sigma for step models; fraction of range per sqrt(pulse)
    /// for neurosim and table).
    pub c2c: f64,
    /// Step models: the c2c term is additive, `c2c dw_min xi` per pulse whatever the step's size
    /// (aihwkit's `mult_noise = false`), instead of multiplicative `dw (1 + c2c xi)`.
    pub c2c_additive: bool,
    /// Step models: sigma of the write noise in units of `dw_min` (aihwkit's `write_noise_std`). Reads see
    /// the stored weight plus a per-device Gaussian redrawn at every write of that device; the stored
    /// weight evolves without it.
    pub write_noise: f64,
    /// Read noise, sigma as a fraction of `g_max - g_min`.
    pub read_noise: f64,
    /// Fraction of devices stuck at their lower bound.
    pub stuck_min: f64,
    /// Fraction of devices stuck at their upper bound.
    pub stuck_max: f64,
    /// Fraction of devices stuck at a uniformly random conductance.
    pub stuck_random: f64,
    /// Device-to-device variations, in [`Param::ALL`] order.
    pub d2d: Vec<(Param, Variation)>,
}

impl DeviceSpec {
    /// A spec with no noise, no variation and no stuck devices, conductance range `[0, 1]` uS.
    pub fn new(model: Model) -> Self {
        let (g_min, g_max) = match &model {
            Model::Table(t) => (t.g_lo(), t.g_hi()),
            _ => (0.0, 1.0),
        };
        DeviceSpec {
            model,
            g_min,
            g_max,
            c2c: 0.0,
            c2c_additive: false,
            write_noise: 0.0,
            read_noise: 0.0,
            stuck_min: 0.0,
            stuck_max: 0.0,
            stuck_random: 0.0,
            d2d: Vec::new(),
        }
    }

    /// Nominal value of a parameter, if this spec's model has it.
    pub fn nominal(&self, p: Param) -> Option<f64> {
        match (&self.model, p) {
            (Model::Step(s), p) => s.nominal(p),
            (_, Param::GMin) => Some(self.g_min),
            (_, Param::GMax) => Some(self.g_max),
            (Model::NeuroSim(n), Param::NlUp) => Some(n.nl_up),
            (Model::NeuroSim(n), Param::NlDown) => Some(n.nl_down),
            _ => None,
        }
    }

    /// Variation of a parameter, if any.
    pub fn variation(&self, p: Param) -> Option<&Variation> {
        self.d2d.iter().find(|(q, _)| *q == p).map(|(_, v)| v)
    }

    /// Number of levels of the potentiation sweep, when the model is discrete.
    pub fn levels(&self) -> Option<u32> {
        match &self.model {
            Model::Step(s) => s.levels,
            Model::NeuroSim(n) => Some(n.levels_up),
            Model::Table(t) => Some(t.up.len() as u32),
        }
    }

    /// Pulses that take a nominal device from one bound to the other (used as the default length of the
    /// pulse-response protocol).
    pub fn full_sweep_pulses(&self) -> u32 {
        match &self.model {
            Model::Step(s) => match s.levels {
                Some(l) => l,
                None => {
                    let n = ((s.w_max - s.w_min) / s.dw_min).ceil();
                    n.clamp(1.0, 1.0e6) as u32
                }
            },
            Model::NeuroSim(n) => n.levels_up.max(n.levels_down),
            Model::Table(t) => t.up.len().max(t.down.len()) as u32,
        }
    }

    /// Checks every physical rule; the first violation is returned.
    pub fn validate(&self) -> Result<(), SpecError> {
        fn fraction(key: &str, v: f64) -> Result<(), SpecError> {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(SpecError::new(
                    key,
                    format!("is a fraction of devices and must lie in [0, 1], got {v}"),
                ))
            }
        }
        fn sigma(key: &str, v: f64) -> Result<(), SpecError> {
            if v.is_finite() && (0.0..=MAGNITUDE_LIMIT).contains(&v) {
                Ok(())
            } else {
                Err(SpecError::new(
                    key,
                    format!(
                        "is a standard deviation and must lie in [0, {MAGNITUDE_LIMIT:e}], got {v}"
                    ),
                ))
            }
        }
        // The model's own keys first: a table's defaults for g_min/g_max come from the table.
        match &self.model {
            Model::Step(s) => validate_step(s)?,
            Model::NeuroSim(n) => validate_neurosim(n)?,
            Model::Table(t) => validate_table(t)?,
        }
        finite("g_min", self.g_min)?;
        finite("g_max", self.g_max)?;
        if self.g_min < 0.0 {
            return Err(SpecError::new(
                "g_min",
                format!("a conductance cannot be negative, got {} uS", self.g_min),
            ));
        }
        if self.g_min >= self.g_max {
            return Err(SpecError::new(
                "g_min",
                format!(
                    "g_min ({}) must be below g_max ({}): the device's conductance range would be empty",
                    self.g_min, self.g_max
                ),
            ));
        }
        sigma("c2c", self.c2c)?;
        sigma("read_noise", self.read_noise)?;
        sigma("write_noise", self.write_noise)?;
        if !matches!(self.model, Model::Step(_)) {
            if self.c2c_additive {
                return Err(SpecError::new(
                    "c2c_mode",
                    format!(
                        "applies to the step models; `{}` adds its c2c noise to the conductance already",
                        self.model.name()
                    ),
                ));
            }
            if self.write_noise > 0.0 {
                return Err(SpecError::new(
                    "write_noise",
                    format!(
                        "is in units of dw_min and applies to the step models, not to `{}`",
                        self.model.name()
                    ),
                ));
            }
        }
        fraction("stuck_min", self.stuck_min)?;
        fraction("stuck_max", self.stuck_max)?;
        fraction("stuck_random", self.stuck_random)?;
        let stuck = self.stuck_min + self.stuck_max + self.stuck_random;
        if stuck > 1.0 + 1e-12 {
            return Err(SpecError::new(
                "stuck_min",
                format!("stuck_min + stuck_max + stuck_random must not exceed 1, got {stuck}"),
            ));
        }
        for (p, v) in &self.d2d {
            let key = format!("d2d.{}", p.key());
            let Some(nominal) = self.nominal(*p) else {
                return Err(SpecError::new(
                    key,
                    format!(
                        "model `{}` has no parameter `{}`; it can vary: {}",
                        self.model.name(),
                        p.key(),
                        Param::ALL
                            .iter()
                            .filter(|q| self.nominal(**q).is_some())
                            .map(|q| q.key())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            };
            v.validate(&key, nominal)?;
        }
        Ok(())
    }
}

/// Largest magnitude accepted for any parameter: devices compute in f32, whose range ends near 3e38, so
/// this leaves room for products and sums.
pub const MAGNITUDE_LIMIT: f64 = 1e30;

/// Largest number of levels of a discrete model (pulse positions stay exact in f32 far beyond it).
pub const MAX_LEVELS: u32 = 1_000_000;

fn finite(key: &str, v: f64) -> Result<(), SpecError> {
    if v.is_finite() && v.abs() <= MAGNITUDE_LIMIT {
        Ok(())
    } else {
        Err(SpecError::new(
            key,
            format!("must be a finite number of magnitude at most {MAGNITUDE_LIMIT:e}, got {v}"),
        ))
    }
}

fn levels_ok(key: &str, l: u32) -> Result<(), SpecError> {
    if (2..=MAX_LEVELS).contains(&l) {
        Ok(())
    } else {
        Err(SpecError::new(
            key,
            format!("a device needs between 2 and {MAX_LEVELS} levels, got {l}"),
        ))
    }
}

fn validate_step(s: &StepParams) -> Result<(), SpecError> {
    for (k, v) in [
        ("dw_min", s.dw_min),
        ("up_down", s.up_down),
        ("w_min", s.w_min),
        ("w_max", s.w_max),
        ("gamma_up", s.gamma_up),
        ("gamma_down", s.gamma_down),
        ("a", s.a),
        ("b", s.b),
        ("a_up", s.a_up),
        ("a_down", s.a_down),
    ] {
        finite(k, v)?;
    }
    if s.dw_min <= 0.0 {
        return Err(SpecError::new(
            "dw_min",
            format!("the step per pulse must be > 0, got {}", s.dw_min),
        ));
    }
    if s.w_min >= s.w_max {
        return Err(SpecError::new(
            "w_min",
            format!("w_min ({}) must be below w_max ({})", s.w_min, s.w_max),
        ));
    }
    if s.dw_min > s.w_max - s.w_min {
        return Err(SpecError::new(
            "dw_min",
            format!(
                "one step ({}) is larger than the whole weight range w_max - w_min ({})",
                s.dw_min,
                s.w_max - s.w_min
            ),
        ));
    }
    if !(-1.0..=1.0).contains(&s.up_down) {
        return Err(SpecError::new(
            "up_down",
            format!(
                "the up/down asymmetry must lie in [-1, 1] (a step cannot change sign), got {}",
                s.up_down
            ),
        ));
    }
    if let Some(r) = &s.reference {
        if s.kind != StepKind::SoftBounds {
            return Err(SpecError::new(
                "reference_mean",
                "a reference device belongs to the soft-bounds-reference model",
            ));
        }
        finite("reference_mean", r.mean)?;
        if !(r.std.is_finite() && r.std >= 0.0) {
            return Err(SpecError::new(
                "reference_std",
                format!("is a standard deviation and must be >= 0, got {}", r.std),
            ));
        }
    }
    match s.kind {
        StepKind::SoftBounds if !(s.w_min < 0.0 && s.w_max > 0.0) => {
            return Err(SpecError::new(
                "w_min",
                format!(
                    "soft-bounds steps shrink to zero at the bounds and need w_min < 0 < w_max, got [{}, {}]",
                    s.w_min, s.w_max
                ),
            ));
        }
        StepKind::Linear if s.w_min >= 0.0 || s.w_max <= 0.0 => {
            return Err(SpecError::new(
                "w_min",
                format!(
                    "linear-step slopes are referenced to w/w_max and w/w_min and need w_min < 0 < w_max, got [{}, {}]",
                    s.w_min, s.w_max
                ),
            ));
        }
        StepKind::Pow => {
            for (k, v) in [("gamma_up", s.gamma_up), ("gamma_down", s.gamma_down)] {
                if v < 0.0 {
                    return Err(SpecError::new(
                        k,
                        format!("pow-step exponents must be >= 0 (0 = constant step), got {v}"),
                    ));
                }
            }
        }
        _ => {}
    }
    if let Some((lo, hi)) = s.g_range {
        finite("g_min", lo)?;
        finite("g_max", hi)?;
        if lo < 0.0 {
            return Err(SpecError::new(
                "g_min",
                format!("conductances must be finite and >= 0 uS, got [{lo}, {hi}]"),
            ));
        }
        if lo >= hi {
            return Err(SpecError::new(
                "g_min",
                format!(
                    "g_min ({lo}) must be below g_max ({hi}): the device's conductance range would be empty"
                ),
            ));
        }
    }
    if let Some(l) = s.levels {
        levels_ok("levels", l)?;
    }
    Ok(())
}

/// Largest |NL| label the NeuroSim mapping can express: the curve's maximal deviation from linear,
/// 0.099 |NL|, must stay below 1.
pub const NL_LIMIT: f64 = 10.0;

fn validate_neurosim(n: &NeuroSimParams) -> Result<(), SpecError> {
    for (k, l) in [("levels", n.levels_up), ("levels_down", n.levels_down)] {
        levels_ok(k, l)?;
    }
    for (k, v) in [("nl_up", n.nl_up), ("nl_down", n.nl_down)] {
        if !v.is_finite() || v.abs() > NL_LIMIT {
            return Err(SpecError::new(
                k,
                format!(
                    "the NeuroSim nonlinearity label must lie in [-{NL_LIMIT}, {NL_LIMIT}] \
                     (max deviation from linear = 0.099 |NL| < 1), got {v}"
                ),
            ));
        }
    }
    Ok(())
}

fn validate_table(t: &TableCurve) -> Result<(), SpecError> {
    for (k, v, up) in [("table.up", &t.up, true), ("table.down", &t.down, false)] {
        if v.len() < 2 {
            return Err(SpecError::new(
                k,
                format!(
                    "a sweep needs at least 2 points (pulse 0 and 1), got {}",
                    v.len()
                ),
            ));
        }
        for (i, g) in v.iter().enumerate() {
            if !g.is_finite() || *g < 0.0 || *g > MAGNITUDE_LIMIT {
                return Err(SpecError::new(
                    k,
                    format!(
                        "point {i} (pulse {i}) is {g}: conductances must be finite, >= 0 and at most {MAGNITUDE_LIMIT:e} uS"
                    ),
                ));
            }
        }
        for i in 1..v.len() {
            let ok = if up { v[i] > v[i - 1] } else { v[i] < v[i - 1] };
            if !ok {
                return Err(SpecError::new(
                    k,
                    format!(
                        "the {} sweep must be strictly {} in pulse number, but pulse {} ({}) -> pulse {} ({}) is not; \
                         smooth or thin out the measured curve so it is monotone",
                        if up { "up" } else { "down" },
                        if up { "increasing" } else { "decreasing" },
                        i - 1,
                        v[i - 1],
                        i,
                        v[i]
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model {}", self.model.name())?;
        match &self.model {
            Model::Step(s) => {
                write!(
                    f,
                    ", dw_min {}, up_down {}, w in [{}, {}]",
                    s.dw_min, s.up_down, s.w_min, s.w_max
                )?;
                match s.kind {
                    StepKind::Linear | StepKind::Pow => {
                        write!(f, ", gamma_up {}, gamma_down {}", s.gamma_up, s.gamma_down)?
                    }
                    StepKind::Exp => write!(
                        f,
                        ", a {}, b {}, a_up {}, a_down {}, gamma_up {}, gamma_down {}",
                        s.a, s.b, s.a_up, s.a_down, s.gamma_up, s.gamma_down
                    )?,
                    _ => {}
                }
                match s.levels {
                    Some(l) => write!(f, ", {l} levels")?,
                    None => write!(f, ", continuous")?,
                }
            }
            Model::NeuroSim(n) => write!(
                f,
                ", levels {}/{} (up/down), NL {}/{} (up/down)",
                n.levels_up, n.levels_down, n.nl_up, n.nl_down
            )?,
            Model::Table(t) => write!(
                f,
                ", table of {} up / {} down points",
                t.up.len(),
                t.down.len()
            )?,
        }
        let g = match &self.model {
            Model::Step(s) => s.g_range,
            _ => Some((self.g_min, self.g_max)),
        };
        match g {
            Some((g0, g1)) => write!(
                f,
                "; G in [{g0}, {g1}] uS (on/off {})",
                if g0 > 0.0 {
                    format!("{:.3}", g1 / g0)
                } else {
                    "inf".to_string()
                }
            )?,
            None => write!(f, "; reported in weight units (no g_min/g_max)")?,
        }
        write!(f, "; c2c {}; read noise {}", self.c2c, self.read_noise)?;
        if self.stuck_min + self.stuck_max + self.stuck_random > 0.0 {
            write!(
                f,
                "; stuck at min/max/random {}/{}/{}",
                self.stuck_min, self.stuck_max, self.stuck_random
            )?;
        }
        for (p, v) in &self.d2d {
            let spread = match v.spread {
                Spread::Absolute(s) => format!("{s}"),
                Spread::Relative(r) => format!("{}%", (r * 1e8).round() / 1e6),
            };
            write!(f, "; d2d {} {} {}", p.key(), v.dist.name(), spread)?;
        }
        Ok(())
    }
}
