//! After training: what the conductance of a deployed device does between programming and a read.
//!
//! Pure functions and small plain-data configurations over slices of conductances (uS); nothing here
//! knows tiles, weights or files. Randomness comes from the caller's generator, one standard normal
//! ([`crate::normal::standard_normal`]) or one uniform at a time, in the documented order below. Every
//! function that needs the normalised conductance `g = G / g_max` takes `g_max` (uS). Time `t` is in
//! seconds since the end of programming.
//!
//! # Models
//!
//! **Programming noise** ([`Programming`]), statistical, one draw per device when a target is written:
//! `G_prog = clip(G_target + s_prog(G_target) xi, 0, upper)`. For PCM (Nandakumar et al., ICECS 2019;
//! aihwkit's `PCMLikeNoiseModel`) `s_prog = (c0 + c1 g + c2 g^2) g_max / 25` with
//! `(c0, c1, c2) = (0.26348, 1.9650, -1.1731)` uS ([`PCM_PROG_COEFFS`]), fitted at `g_max = 25` uS.
//!
//! **Drift** ([`Drift`], in [`Retention::Drift`]): `G(t) = G_prog (t / t0)^(-nu)` for `t > t0`, and no
//! drift before `t0` (the fit starts at the first read, `t0` = 20 s for PCM, [`PCM_T0`]). The exponent
//! `nu` is drawn once per device: PCM (Joshi et al., Nat. Commun. 11, 2473, 2020) `nu = |mu + s xi|`
//! with `mu = clamp(-0.0155 ln g + 0.0244, 0.049, 0.1)` and
//! `s = clamp(-0.0125 ln g - 0.0059, 0.008, 0.045)`; constant `nu = |nu_mean + nu_sd xi|`. aihwkit's
//! `t_inference` counts from `t0`: its results at `t_inference` are ours at `t = t_inference + t0`.
//!
//! **1/f read noise** ([`ReadNoise1f`]), drawn afresh on every read:
//! `G += |G(t)| q_s sqrt(max(0, ln((t + t_read) / (2 t_read)))) xi`, clipped at 0; PCM
//! `q_s = min(0.0088 / max(g^0.65, 1e-3), 0.2)` with `t_read` = 250 ns ([`PCM_T_READ`]). As in aihwkit,
//! `q_s` is taken at the programmed conductance (a failed device: at its stuck conductance), not at the
//! drifted one. The logarithm is negative for `t < t_read`; the noise is then zero.
//!
//! **Relaxation** ([`Relaxation`], in [`Retention::Relaxation`]) — *aimsim's own generic model, not
//! from a paper*, for RRAM-like devices whose conductance decays in log-time towards a relaxed level:
//!
//! ```text
//! G(t) = G_r + (G_prog - G_r) * max(0, 1 - r ln(1 + t / tau)),   G_r = g_relaxed * g_max
//! ```
//!
//! with a per-device rate `r = rate_median * exp(rate_sigma xi)` (log-normal with median
//! `rate_median`, per unit of `ln(1 + t / tau)`), `tau` the time (s) after which the log-time decay
//! sets in. `G(0) = G_prog`; the distance to `G_r` shrinks by the fraction `r` per e-fold of
//! `1 + t / tau` and reaches 0 at `t = tau (exp(1 / r) - 1)`. `G(t)` lies between `G_prog` and `G_r`,
//! so a device programmed within `[0, g_max]` stays there.
//!
//! **Stuck failures** ([`Failures`]): each device fails at a time `T` drawn once from a Weibull
//! distribution, `P(T <= t) = 1 - exp(-(t / tau)^shape)` ([`weibull_failed_fraction`]); from `T` on it
//! reads `g_max` with probability `p_high` (drawn once per device) and 0 otherwise, whatever its
//! retention model did. Read noise still applies to a device stuck at `g_max`.
//!
//! # Order of random draws
//!
//! The number of draws depends on the configuration and the number of devices only, never on the
//! conductances or on `t`, and devices are drawn one after another, so the first `m` devices of a
//! draw do not depend on how many follow:
//!
//! - [`Programming::program`]: one normal per device in index order (none for [`Programming::Exact`]).
//! - [`Aging::draw`]: for each device in index order: one normal for its drift exponent or relaxation
//!   rate (none for [`Retention::None`] or [`Drift::None`]), then, with failures, one uniform for its
//!   failure time and one uniform for its stuck level.
//! - [`Aging::at`]: one normal per device in index order for read noise (none for
//!   [`ReadNoise1f::None`]), failed devices included.
//!
//! Mapping weights to conductances and drift compensation are the simulated chip's business (`sim`).

use rand::{Rng, RngExt};

use crate::normal::standard_normal;
use crate::spec::MAGNITUDE_LIMIT;

/// Programming-noise polynomial of the PCM model `(c0, c1, c2)`, uS at `g_max = 25` uS
/// (Nandakumar et al., ICECS 2019).
pub const PCM_PROG_COEFFS: [f64; 3] = [0.26348, 1.9650, -1.1731];

/// The `g_max` (uS) at which [`PCM_PROG_COEFFS`] were fitted; the noise scales with `g_max / 25`.
pub const PCM_G_MAX_REF: f64 = 25.0;

/// Reference time of the PCM drift fit (s): the first read after programming.
pub const PCM_T0: f64 = 20.0;

/// Time constant of the PCM 1/f read-noise fit (s): the duration of one read.
pub const PCM_T_READ: f64 = 250e-9;

/// Floor of the normalised conductance in the PCM drift fit (aihwkit's `_ZERO_CLIP`), so that a device
/// at 0 gets the fit's value for a nearly empty device rather than `ln 0`.
pub const PCM_G_FLOOR: f64 = 1e-7;

/// Largest log-normal sigma of a relaxation rate: beyond it the rates of one population would span
/// more than 40 decades.
pub const MAX_LOG_SIGMA: f64 = 10.0;

/// An error in an aging configuration: the offending key (relative to the aging configuration, e.g.
/// `drift.nu_sd` or `failures.p_high`) and what is wrong and what is allowed. Same shape as
/// [`crate::SpecError`], so a scenario layer can locate it the same way.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct AgingError {
    /// Key path relative to the aging configuration, dotted.
    pub key: String,
    /// What is wrong, and what is allowed.
    pub message: String,
}

impl AgingError {
    /// Builds an error for `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        AgingError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// `v` is finite and in `[0, MAGNITUDE_LIMIT]`.
fn non_negative(key: &str, what: &str, v: f64) -> Result<(), AgingError> {
    if v.is_finite() && (0.0..=MAGNITUDE_LIMIT).contains(&v) {
        Ok(())
    } else {
        Err(AgingError::new(
            key,
            format!("is {what} and must lie in [0, {MAGNITUDE_LIMIT:e}], got {v}"),
        ))
    }
}

/// `v` is finite and in `(0, MAGNITUDE_LIMIT]`.
fn positive(key: &str, what: &str, v: f64) -> Result<(), AgingError> {
    if v.is_finite() && v > 0.0 && v <= MAGNITUDE_LIMIT {
        Ok(())
    } else {
        Err(AgingError::new(
            key,
            format!("is {what} and must lie in (0, {MAGNITUDE_LIMIT:e}], got {v}"),
        ))
    }
}

/// `v` is in `[0, 1]`.
fn fraction(key: &str, what: &str, v: f64) -> Result<(), AgingError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(AgingError::new(
            key,
            format!("is {what} and must lie in [0, 1], got {v}"),
        ))
    }
}

/// Panics unless `g_max` is a usable maximal conductance (the callers take it from a validated spec).
fn check_g_max(g_max: f64) {
    assert!(
        g_max.is_finite() && g_max > 0.0,
        "g_max must be finite and positive, got {g_max}"
    );
}

/// A standard normal as `f64`.
#[inline]
fn normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    f64::from(standard_normal(rng))
}

// ------------------------------------------------------------------------------------------------
// Programming
// ------------------------------------------------------------------------------------------------

/// How far a programmed conductance lands from its target: the statistical model of one-shot (or
/// write-verified, to its residual) programming.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Programming {
    /// The target exactly; draws nothing.
    Exact,
    /// Gaussian error of standard deviation `sigma_us` (uS) at every conductance.
    Constant {
        /// Standard deviation of the programming error (uS).
        sigma_us: f64,
    },
    /// The PCM fit: standard deviation [`pcm_prog_sigma`] of the target.
    Pcm,
}

impl Programming {
    /// Checks the parameters (key `programming.sigma_us`).
    pub fn validate(&self) -> Result<(), AgingError> {
        match *self {
            Programming::Exact | Programming::Pcm => Ok(()),
            Programming::Constant { sigma_us } => non_negative(
                "programming.sigma_us",
                "a standard deviation in uS",
                sigma_us,
            ),
        }
    }

    /// Standard deviation (uS) of the programming error at target `g_target` (uS).
    pub fn sigma_us(&self, g_target: f64, g_max: f64) -> f64 {
        match *self {
            Programming::Exact => 0.0,
            Programming::Constant { sigma_us } => sigma_us,
            Programming::Pcm => pcm_prog_sigma(g_target, g_max),
        }
    }

    /// Programs every device of `g_target` (uS) into `out`:
    /// `out_i = clip(g_target_i + sigma_us(g_target_i) xi_i, 0, upper)` (no upper clip when `upper` is
    /// `None`). Draws one normal per device in index order, none for [`Programming::Exact`].
    ///
    /// # Panics
    /// If the slices differ in length, `g_max` is not finite and positive, or `upper` is negative or
    /// NaN.
    pub fn program<R: Rng + ?Sized>(
        &self,
        g_target: &[f64],
        g_max: f64,
        upper: Option<f64>,
        rng: &mut R,
        out: &mut [f64],
    ) {
        assert_eq!(g_target.len(), out.len(), "one output per target");
        check_g_max(g_max);
        let hi = upper.unwrap_or(f64::INFINITY);
        assert!(hi >= 0.0, "the upper bound must be non-negative, got {hi}");
        debug_assert!(self.validate().is_ok(), "{:?}", self.validate());
        for (o, &g) in out.iter_mut().zip(g_target) {
            let noisy = match self {
                Programming::Exact => g,
                _ => g + self.sigma_us(g, g_max) * normal(rng),
            };
            *o = noisy.clamp(0.0, hi);
        }
    }
}

/// Standard deviation (uS) of PCM programming at target `g_target` (uS):
/// `(c0 + c1 g + c2 g^2) g_max / 25` with `g = g_target / g_max` clamped to `[0, 1]`, the range of
/// the fit (the polynomial would turn negative above `g = 1.8`).
pub fn pcm_prog_sigma(g_target: f64, g_max: f64) -> f64 {
    let g = (g_target / g_max).clamp(0.0, 1.0);
    let [c0, c1, c2] = PCM_PROG_COEFFS;
    (c0 + c1 * g + c2 * g * g) * g_max / PCM_G_MAX_REF
}

// ------------------------------------------------------------------------------------------------
// Drift
// ------------------------------------------------------------------------------------------------

/// The per-device drift exponent `nu` of `G(t) = G_prog (t / t0)^(-nu)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Drift {
    /// No drift (`nu = 0`); draws nothing.
    None,
    /// `nu = |nu_mean + nu_sd xi|` at every conductance.
    Constant {
        /// Mean drift exponent (before folding at 0).
        nu_mean: f64,
        /// Device-to-device standard deviation of the exponent.
        nu_sd: f64,
    },
    /// The PCM fit: `nu = |mu(g) + s(g) xi|` with [`pcm_nu_mean`] and [`pcm_nu_sd`].
    Pcm,
}

impl Drift {
    /// Checks the parameters (keys `drift.nu_mean`, `drift.nu_sd`).
    pub fn validate(&self) -> Result<(), AgingError> {
        match *self {
            Drift::None | Drift::Pcm => Ok(()),
            Drift::Constant { nu_mean, nu_sd } => {
                non_negative("drift.nu_mean", "a drift exponent", nu_mean)?;
                non_negative("drift.nu_sd", "a standard deviation", nu_sd)
            }
        }
    }

    /// Mean and standard deviation (before folding at 0) of the exponent of a device programmed to
    /// `g_prog` (uS).
    pub fn nu_mean_sd(&self, g_prog: f64, g_max: f64) -> (f64, f64) {
        match *self {
            Drift::None => (0.0, 0.0),
            Drift::Constant { nu_mean, nu_sd } => (nu_mean, nu_sd),
            Drift::Pcm => {
                let g = g_prog / g_max;
                (pcm_nu_mean(g), pcm_nu_sd(g))
            }
        }
    }

    /// Draws the exponent of every device of `g_prog` (uS) into `nu_out`: one normal per device in
    /// index order, none for [`Drift::None`] (which writes zeros).
    ///
    /// # Panics
    /// If the slices differ in length or `g_max` is not finite and positive.
    pub fn draw_nu<R: Rng + ?Sized>(
        &self,
        g_prog: &[f64],
        g_max: f64,
        rng: &mut R,
        nu_out: &mut [f64],
    ) {
        assert_eq!(g_prog.len(), nu_out.len(), "one exponent per device");
        check_g_max(g_max);
        for (nu, &g) in nu_out.iter_mut().zip(g_prog) {
            *nu = self.draw_one(g, g_max, rng);
        }
    }

    /// One device's exponent (one normal unless [`Drift::None`]).
    fn draw_one<R: Rng + ?Sized>(&self, g_prog: f64, g_max: f64, rng: &mut R) -> f64 {
        if *self == Drift::None {
            return 0.0;
        }
        let (mu, s) = self.nu_mean_sd(g_prog, g_max);
        (mu + s * normal(rng)).abs()
    }
}

/// Mean drift exponent of the PCM fit at normalised conductance `g`:
/// `clamp(-0.0155 ln g + 0.0244, 0.049, 0.1)`, with `|g|` floored at [`PCM_G_FLOOR`].
pub fn pcm_nu_mean(g: f64) -> f64 {
    let g = g.abs().max(PCM_G_FLOOR);
    (-0.0155 * g.ln() + 0.0244).clamp(0.049, 0.1)
}

/// Device-to-device standard deviation of the PCM drift exponent at normalised conductance `g`:
/// `clamp(-0.0125 ln g - 0.0059, 0.008, 0.045)`, with `|g|` floored at [`PCM_G_FLOOR`].
pub fn pcm_nu_sd(g: f64) -> f64 {
    let g = g.abs().max(PCM_G_FLOOR);
    (-0.0125 * g.ln() - 0.0059).clamp(0.008, 0.045)
}

/// The factor `(t / t0)^(-nu)` of drift at `t` seconds after programming; 1 for `t <= t0` (no drift
/// before the first read of the fit).
pub fn drift_factor(nu: f64, t: f64, t0: f64) -> f64 {
    if t > t0 { (t / t0).powf(-nu) } else { 1.0 }
}

// ------------------------------------------------------------------------------------------------
// Read noise
// ------------------------------------------------------------------------------------------------

/// 1/f read noise accumulated since programming, drawn afresh on every read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadNoise1f {
    /// Noise-free reads; draws nothing.
    None,
    /// The PCM fit: `q_s` = [`pcm_q_s`] of the programmed conductance.
    Pcm,
    /// The same `q_s` at every conductance.
    Constant {
        /// Relative noise amplitude per `sqrt` of log-time (dimensionless).
        q_s: f64,
    },
}

impl ReadNoise1f {
    /// Checks the parameters (key `read_noise.q_s`).
    pub fn validate(&self) -> Result<(), AgingError> {
        match *self {
            ReadNoise1f::None | ReadNoise1f::Pcm => Ok(()),
            ReadNoise1f::Constant { q_s } => {
                non_negative("read_noise.q_s", "a relative noise amplitude", q_s)
            }
        }
    }

    /// The amplitude `q_s` of a device whose programmed (or stuck) conductance is `g` (uS).
    pub fn q_s(&self, g: f64, g_max: f64) -> f64 {
        match *self {
            ReadNoise1f::None => 0.0,
            ReadNoise1f::Pcm => pcm_q_s(g / g_max),
            ReadNoise1f::Constant { q_s } => q_s,
        }
    }
}

/// `q_s` of the PCM 1/f fit at normalised conductance `g`: `min(0.0088 / max(|g|^0.65, 1e-3), 0.2)`.
pub fn pcm_q_s(g: f64) -> f64 {
    (0.0088 / g.abs().powf(0.65).max(1e-3)).min(0.2)
}

/// The time factor `sqrt(max(0, ln((t + t_read) / (2 t_read))))` of 1/f read noise at `t`: the
/// relative standard deviation of a read is `q_s` times it. Zero for `t <= t_read`.
pub fn read_noise_time_factor(t: f64, t_read: f64) -> f64 {
    ((t + t_read) / (2.0 * t_read)).ln().max(0.0).sqrt()
}

// ------------------------------------------------------------------------------------------------
// Relaxation (aimsim's own)
// ------------------------------------------------------------------------------------------------

/// Log-time relaxation towards a relaxed conductance, for RRAM-like devices — aimsim's own generic
/// model, not from a paper (equation in the module docs). The [`Default`] values are illustrative,
/// not fitted to any device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Relaxation {
    /// Relaxed conductance `G_r` as a fraction of `g_max` (in `[0, 1]`; default 0.5, mid-range).
    pub g_relaxed: f64,
    /// Median over devices of the rate `r` (per unit of `ln(1 + t / tau)`; default 0.02).
    pub rate_median: f64,
    /// Log-normal sigma of the rate over devices (`ln r` has this standard deviation; default 0.5).
    pub rate_sigma: f64,
    /// Time (s) after which the decay goes as `ln t` (default 1 s).
    pub tau: f64,
}

impl Default for Relaxation {
    fn default() -> Self {
        Relaxation {
            g_relaxed: 0.5,
            rate_median: 0.02,
            rate_sigma: 0.5,
            tau: 1.0,
        }
    }
}

impl Relaxation {
    /// Checks the parameters (keys `relaxation.g_relaxed`, `.rate_median`, `.rate_sigma`, `.tau`).
    pub fn validate(&self) -> Result<(), AgingError> {
        fraction(
            "relaxation.g_relaxed",
            "a fraction of g_max",
            self.g_relaxed,
        )?;
        non_negative("relaxation.rate_median", "a rate", self.rate_median)?;
        if !(0.0..=MAX_LOG_SIGMA).contains(&self.rate_sigma) {
            return Err(AgingError::new(
                "relaxation.rate_sigma",
                format!(
                    "is a log-normal sigma and must lie in [0, {MAX_LOG_SIGMA}], got {}",
                    self.rate_sigma
                ),
            ));
        }
        positive("relaxation.tau", "a time in seconds", self.tau)
    }

    /// One device's rate `rate_median exp(rate_sigma xi)` (one normal).
    fn draw_rate<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        self.rate_median * (self.rate_sigma * normal(rng)).exp()
    }

    /// Conductance (uS) at `t` of a device programmed to `g_prog` (uS) with rate `rate`:
    /// `G_r + (g_prog - G_r) relaxation_factor(rate, t, tau)`, `G_r = g_relaxed g_max`.
    pub fn conductance(&self, g_prog: f64, rate: f64, t: f64, g_max: f64) -> f64 {
        let g_r = self.g_relaxed * g_max;
        g_r + (g_prog - g_r) * relaxation_factor(rate, t, self.tau)
    }
}

/// The remaining fraction `max(0, 1 - rate ln(1 + t / tau))` of a device's distance to its relaxed
/// conductance at `t`.
pub fn relaxation_factor(rate: f64, t: f64, tau: f64) -> f64 {
    (1.0 - rate * (t / tau).ln_1p()).max(0.0)
}

// ------------------------------------------------------------------------------------------------
// Failures
// ------------------------------------------------------------------------------------------------

/// Devices that fail over time and stay stuck: a Weibull failure time per device, then `g_max` with
/// probability `p_high` and 0 otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Failures {
    /// Weibull scale (s): a fraction `1 - 1/e` of the devices has failed at `t = tau`.
    pub tau: f64,
    /// Weibull shape: below 1 early failures dominate, above 1 wear-out.
    pub shape: f64,
    /// Probability that a failed device is stuck at `g_max` rather than at 0.
    pub p_high: f64,
}

impl Failures {
    /// Checks the parameters (keys `failures.tau`, `failures.shape`, `failures.p_high`).
    pub fn validate(&self) -> Result<(), AgingError> {
        positive("failures.tau", "a time in seconds", self.tau)?;
        positive("failures.shape", "a Weibull shape", self.shape)?;
        fraction("failures.p_high", "a probability", self.p_high)
    }

    /// Expected fraction of devices failed by `t`: [`weibull_failed_fraction`].
    pub fn failed_fraction(&self, t: f64) -> f64 {
        weibull_failed_fraction(t, self.tau, self.shape)
    }

    /// One device's failure time and stuck level (two uniforms: time, then level).
    fn draw_one<R: Rng + ?Sized>(&self, rng: &mut R) -> (f64, bool) {
        // 1 - u lies in (0, 1], so -ln is finite and P(T <= t) = 1 - exp(-(t / tau)^shape) exactly.
        let u: f64 = rng.random();
        let time = self.tau * (-(1.0 - u).ln()).powf(1.0 / self.shape);
        let high = rng.random::<f64>() < self.p_high;
        (time, high)
    }
}

/// The Weibull distribution function `1 - exp(-(t / tau)^shape)`: the probability that a device has
/// failed by `t` (0 for `t <= 0`).
pub fn weibull_failed_fraction(t: f64, tau: f64, shape: f64) -> f64 {
    if t <= 0.0 {
        0.0
    } else {
        -(-(t / tau).powf(shape)).exp_m1()
    }
}

// ------------------------------------------------------------------------------------------------
// Aging: everything together
// ------------------------------------------------------------------------------------------------

/// What a programmed conductance does over time, apart from read noise: at most one of drift and
/// relaxation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Retention {
    /// The conductance stays as programmed.
    None,
    /// Power-law drift `G_prog (t / t0)^(-nu)` after `t0`.
    Drift {
        /// The per-device exponent.
        nu: Drift,
        /// Reference time (s) of the drift fit: no drift before it ([`PCM_T0`] for PCM).
        t0: f64,
    },
    /// aimsim's own log-time relaxation towards a relaxed conductance.
    Relaxation(Relaxation),
}

/// The whole after-training model of a deployed array: retention, 1/f read noise and stuck failures.
/// Plain data; call [`Aging::validate`] once, then [`Aging::draw`] once per deployment and
/// [`Aging::at`] for every read. [`Aging::default`] changes nothing; [`Aging::pcm`] is the PCM model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aging {
    /// Drift, relaxation or neither.
    pub retention: Retention,
    /// 1/f read noise.
    pub read_noise: ReadNoise1f,
    /// Time constant of the read-noise formula (s; [`PCM_T_READ`]).
    pub t_read: f64,
    /// Stuck failures over time, or none.
    pub failures: Option<Failures>,
}

impl Default for Aging {
    /// No retention loss, noise-free reads, no failures.
    fn default() -> Self {
        Aging {
            retention: Retention::None,
            read_noise: ReadNoise1f::None,
            t_read: PCM_T_READ,
            failures: None,
        }
    }
}

/// The per-device quantities of one deployment, drawn once by [`Aging::draw`]. Plain data, so that a
/// caller can keep or save it; a vector whose mechanism is off is empty.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgingDraw {
    /// Number of devices drawn.
    pub devices: usize,
    /// Drift exponent of each device (with [`Retention::Drift`]; empty otherwise).
    pub nu: Vec<f64>,
    /// Relaxation rate of each device (with [`Retention::Relaxation`]; empty otherwise).
    pub rate: Vec<f64>,
    /// Failure time (s) of each device (with failures; empty otherwise).
    pub fail_time: Vec<f64>,
    /// Whether each device, once failed, is stuck at `g_max` (true) or at 0 (with failures; empty
    /// otherwise).
    pub fail_high: Vec<bool>,
}

impl AgingDraw {
    /// Whether device `i` has failed by `t` (always false without failures).
    pub fn failed(&self, i: usize, t: f64) -> bool {
        self.fail_time.get(i).is_some_and(|&f| t >= f)
    }
}

impl Aging {
    /// The PCM model of physics.md section 9 (aihwkit's `PCMLikeNoiseModel` without programming):
    /// PCM drift from `t0` = 20 s, PCM 1/f read noise with `t_read` = 250 ns, no failures.
    pub fn pcm() -> Self {
        Aging {
            retention: Retention::Drift {
                nu: Drift::Pcm,
                t0: PCM_T0,
            },
            read_noise: ReadNoise1f::Pcm,
            t_read: PCM_T_READ,
            failures: None,
        }
    }

    /// Checks every parameter; the first violation is returned (keys as in the parts' `validate`,
    /// plus `drift.t0` and `t_read`).
    pub fn validate(&self) -> Result<(), AgingError> {
        match &self.retention {
            Retention::None => {}
            Retention::Drift { nu, t0 } => {
                nu.validate()?;
                positive("drift.t0", "a time in seconds", *t0)?;
            }
            Retention::Relaxation(r) => r.validate()?,
        }
        self.read_noise.validate()?;
        positive("t_read", "a time in seconds", self.t_read)?;
        if let Some(f) = &self.failures {
            f.validate()?;
        }
        Ok(())
    }

    /// Draws the per-device quantities of one deployment of the devices programmed to `g_prog` (uS):
    /// for each device in index order, its drift exponent or relaxation rate (one normal), then its
    /// failure time and stuck level (two uniforms). The PCM exponent depends on `g_prog`; aihwkit
    /// takes it at the target instead, which a caller gets by passing the targets here.
    ///
    /// # Panics
    /// If `g_max` is not finite and positive.
    pub fn draw<R: Rng + ?Sized>(&self, g_prog: &[f64], g_max: f64, rng: &mut R) -> AgingDraw {
        check_g_max(g_max);
        debug_assert!(self.validate().is_ok(), "{:?}", self.validate());
        let n = g_prog.len();
        let mut d = AgingDraw {
            devices: n,
            ..AgingDraw::default()
        };
        match self.retention {
            Retention::Drift { .. } => d.nu.reserve_exact(n),
            Retention::Relaxation(_) => d.rate.reserve_exact(n),
            Retention::None => {}
        }
        if self.failures.is_some() {
            d.fail_time.reserve_exact(n);
            d.fail_high.reserve_exact(n);
        }
        for &g in g_prog {
            match &self.retention {
                Retention::None => {}
                Retention::Drift { nu, .. } => d.nu.push(nu.draw_one(g, g_max, rng)),
                Retention::Relaxation(r) => d.rate.push(r.draw_rate(rng)),
            }
            if let Some(f) = &self.failures {
                let (time, high) = f.draw_one(rng);
                d.fail_time.push(time);
                d.fail_high.push(high);
            }
        }
        d
    }

    /// The conductances (uS) that a read at `t` seconds after programming sees, into `out`: stuck
    /// level of a failed device, otherwise drift or relaxation of `g_prog`; then read noise (one normal
    /// per device in index order) and a clip at 0. No upper clip: read noise may carry a read past
    /// `g_max`, as a measurement can.
    ///
    /// # Panics
    /// If `g_prog`, `out` and `draw` differ in their number of devices, `draw` was not made by an
    /// `Aging` with the same mechanisms, `t` is negative or not finite, or `g_max` is not finite and
    /// positive.
    pub fn at<R: Rng + ?Sized>(
        &self,
        draw: &AgingDraw,
        g_prog: &[f64],
        t: f64,
        g_max: f64,
        rng: &mut R,
        out: &mut [f64],
    ) {
        let n = g_prog.len();
        assert_eq!(out.len(), n, "one output per device");
        assert_eq!(draw.devices, n, "the draw is of another number of devices");
        let want = |on: bool| if on { n } else { 0 };
        assert_eq!(
            draw.nu.len(),
            want(matches!(self.retention, Retention::Drift { .. })),
            "the draw does not match the retention model"
        );
        assert_eq!(
            draw.rate.len(),
            want(matches!(self.retention, Retention::Relaxation(_))),
            "the draw does not match the retention model"
        );
        assert_eq!(
            draw.fail_time.len(),
            want(self.failures.is_some()),
            "the draw does not match the failure model"
        );
        assert_eq!(draw.fail_high.len(), draw.fail_time.len());
        assert!(
            t.is_finite() && t >= 0.0,
            "t must be a finite non-negative time, got {t}"
        );
        check_g_max(g_max);
        debug_assert!(self.validate().is_ok(), "{:?}", self.validate());
        let noise_t = read_noise_time_factor(t, self.t_read);
        for (i, (o, &gp)) in out.iter_mut().zip(g_prog).enumerate() {
            // (conductance before read noise, conductance that sets q_s)
            let (g, g_q) = if draw.failed(i, t) {
                let stuck = if draw.fail_high[i] { g_max } else { 0.0 };
                (stuck, stuck)
            } else {
                let g = match &self.retention {
                    Retention::None => gp,
                    Retention::Drift { t0, .. } => gp * drift_factor(draw.nu[i], t, *t0),
                    Retention::Relaxation(r) => r.conductance(gp, draw.rate[i], t, g_max),
                };
                (g, gp)
            };
            *o = match self.read_noise {
                ReadNoise1f::None => g,
                rn => {
                    let sd = rn.q_s(g_q, g_max) * noise_t;
                    g + g.abs() * sd * normal(rng)
                }
            }
            .max(0.0);
        }
    }
}

#[cfg(test)]
#[path = "aging_tests.rs"]
mod tests;
