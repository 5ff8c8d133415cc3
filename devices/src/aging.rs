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
mod tests {
    use super::*;
    use crate::normal::tests::phi;
    use rand::SeedableRng;
    use rand_pcg::Pcg64Mcg;

    fn rng(seed: u64) -> Pcg64Mcg {
        Pcg64Mcg::seed_from_u64(seed)
    }

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b} (tol {tol})");
    }

    fn mean_sd(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / n;
        let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
        (m, v.sqrt())
    }

    /// Mean and standard deviation of `|X|`, `X ~ N(mu, s^2)` (the folded normal).
    fn folded(mu: f64, s: f64) -> (f64, f64) {
        let a = mu / s;
        let pdf = (-0.5 * a * a).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let m = mu * (1.0 - 2.0 * phi(-a)) + 2.0 * s * pdf;
        (m, (mu * mu + s * s - m * m).sqrt())
    }

    // -------------------------------------------------------------------- hand-computed formulas

    #[test]
    fn pcm_programming_sigma_by_hand() {
        // g = 0: c0 = 0.26348.
        close(pcm_prog_sigma(0.0, 25.0), 0.26348, 1e-12);
        // g = 0.5: 0.26348 + 1.9650 * 0.5 - 1.1731 * 0.25 = 0.26348 + 0.9825 - 0.293275 = 0.952705.
        close(pcm_prog_sigma(12.5, 25.0), 0.952705, 1e-12);
        // g = 1: 0.26348 + 1.9650 - 1.1731 = 1.05538.
        close(pcm_prog_sigma(25.0, 25.0), 1.05538, 1e-12);
        // g_max = 50 uS, g = 0.5: twice the 25 uS value, 1.90541.
        close(pcm_prog_sigma(25.0, 50.0), 1.90541, 1e-12);
        // g = 0.2: 0.26348 + 0.393 - 0.046924 = 0.609556.
        close(pcm_prog_sigma(5.0, 25.0), 0.609556, 1e-12);
        // Outside the fit's range g is clamped: above g_max as at g_max, below 0 as at 0.
        close(pcm_prog_sigma(60.0, 25.0), 1.05538, 1e-12);
        close(pcm_prog_sigma(-1.0, 25.0), 0.26348, 1e-12);
        assert_eq!(Programming::Exact.sigma_us(3.0, 25.0), 0.0);
        assert_eq!(
            Programming::Constant { sigma_us: 0.7 }.sigma_us(3.0, 25.0),
            0.7
        );
        close(Programming::Pcm.sigma_us(12.5, 25.0), 0.952705, 1e-12);
    }

    #[test]
    fn pcm_drift_exponent_by_hand() {
        // g = 0.5: ln 0.5 = -0.693147; mu = 0.0155 * 0.693147 + 0.0244 = 0.035144 -> clamped to 0.049;
        // s = 0.0125 * 0.693147 - 0.0059 = 0.002764 -> clamped to 0.008.
        close(pcm_nu_mean(0.5), 0.049, 1e-15);
        close(pcm_nu_sd(0.5), 0.008, 1e-15);
        // g = 1: mu = 0.0244 -> 0.049; s = -0.0059 -> 0.008.
        close(pcm_nu_mean(1.0), 0.049, 1e-15);
        close(pcm_nu_sd(1.0), 0.008, 1e-15);
        // g = 0.1: ln 0.1 = -2.302585; mu = 0.035690 + 0.0244 = 0.060090 (inside the clamp);
        // s = 0.028782 - 0.0059 = 0.022882 (inside).
        close(pcm_nu_mean(0.1), 0.060_090_07, 1e-7);
        close(pcm_nu_sd(0.1), 0.022_882_32, 1e-7);
        // g = 0.05: ln 0.05 = -2.995732; mu = 0.046434 + 0.0244 = 0.070834; s = 0.037447 - 0.0059
        // = 0.031547.
        close(pcm_nu_mean(0.05), 0.070_833_85, 1e-7);
        close(pcm_nu_sd(0.05), 0.031_546_66, 1e-7);
        // g = 0.01: ln 0.01 = -4.605170; mu = 0.071380 + 0.0244 = 0.095780 (inside);
        // s = 0.057565 - 0.0059 = 0.051665 -> clamped to 0.045.
        close(pcm_nu_mean(0.01), 0.095_780_14, 1e-7);
        close(pcm_nu_sd(0.01), 0.045, 1e-15);
        // g = 0.001: mu = 0.0155 * 6.907755 + 0.0244 = 0.131470 -> 0.1.
        close(pcm_nu_mean(0.001), 0.1, 1e-15);
        // g = 0 is floored at 1e-7, deep in the clamps: the fit's values for an empty device.
        close(pcm_nu_mean(0.0), 0.1, 1e-15);
        close(pcm_nu_sd(0.0), 0.045, 1e-15);
        // Through the enum: g_prog = 2.5 uS of 25 is g = 0.1.
        let (m, s) = Drift::Pcm.nu_mean_sd(2.5, 25.0);
        close(m, 0.060_090_07, 1e-7);
        close(s, 0.022_882_32, 1e-7);
    }

    #[test]
    fn drift_factor_by_hand() {
        // nu = 0.05, t = 2000 s, t0 = 20 s: 100^-0.05 = exp(-0.05 * 4.605170) = exp(-0.230259)
        // = 0.794328.
        close(drift_factor(0.05, 2000.0, 20.0), 0.794_328_23, 1e-8);
        // One year (3.1536e7 s), nu = 0.1: (1.5768e6)^-0.1 = exp(-0.1 * 14.270870) = exp(-1.427087)
        // = 0.240006.
        close(drift_factor(0.1, 3.1536e7, 20.0), 0.240_006_13, 1e-8);
        // No drift up to t0, and none with nu = 0.
        assert_eq!(drift_factor(0.1, 0.0, 20.0), 1.0);
        assert_eq!(drift_factor(0.1, 19.9, 20.0), 1.0);
        assert_eq!(drift_factor(0.1, 20.0, 20.0), 1.0);
        assert_eq!(drift_factor(0.0, 1e9, 20.0), 1.0);
    }

    #[test]
    fn pcm_read_noise_by_hand() {
        // g = 1: 0.0088 / 1 = 0.0088.
        close(pcm_q_s(1.0), 0.0088, 1e-15);
        // g = 0.5: 0.5^0.65 = exp(-0.65 * 0.693147) = exp(-0.450546) = 0.637280; 0.0088 / 0.637280
        // = 0.013809.
        close(pcm_q_s(0.5), 0.013_808_68, 1e-7);
        // g = 0.1: 0.1^0.65 = exp(-1.496654) = 0.223872; 0.0088 / 0.223872 = 0.039308.
        close(pcm_q_s(0.1), 0.039_308_3, 1e-6);
        // g = 1e-4: 1e-4^0.65 = 0.002512; 0.0088 / 0.002512 = 3.50 -> capped at 0.2.
        close(pcm_q_s(1e-4), 0.2, 1e-15);
        // g = 0: the floor 1e-3 gives 8.8 -> capped at 0.2.
        close(pcm_q_s(0.0), 0.2, 1e-15);
        // Time factor at t = 1 s: (1 + 2.5e-7) / 5e-7 = 2000000.5; ln = 14.508658; sqrt = 3.809023.
        close(read_noise_time_factor(1.0, PCM_T_READ), 3.809_023, 1e-6);
        // t = 0 gives ln 0.5 < 0 and t = t_read gives ln 1 = 0: no noise.
        assert_eq!(read_noise_time_factor(0.0, PCM_T_READ), 0.0);
        assert_eq!(read_noise_time_factor(PCM_T_READ, PCM_T_READ), 0.0);
        // Through the enum: g = 12.5 of 25 uS is g = 0.5.
        close(ReadNoise1f::Pcm.q_s(12.5, 25.0), 0.013_808_68, 1e-7);
        assert_eq!(ReadNoise1f::Constant { q_s: 0.03 }.q_s(1.0, 25.0), 0.03);
        assert_eq!(ReadNoise1f::None.q_s(1.0, 25.0), 0.0);
    }

    #[test]
    fn relaxation_by_hand() {
        let r = Relaxation {
            g_relaxed: 0.5,
            rate_median: 0.1,
            rate_sigma: 0.0,
            tau: 1.0,
        };
        // G_r = 12.5 uS; t = 9 s: ln(10) = 2.302585; factor 1 - 0.2302585 = 0.7697415;
        // 12.5 + 7.5 * 0.7697415 = 18.273061.
        close(r.conductance(20.0, 0.1, 9.0, 25.0), 18.273_061, 1e-6);
        // From below: 2 uS -> 12.5 - 10.5 * 0.7697415 = 4.417714.
        close(r.conductance(2.0, 0.1, 9.0, 25.0), 4.417_714, 1e-6);
        // At t = 0 as programmed; after ln(1 + t / tau) >= 1 / r = 10 (t >= e^10 - 1 = 22025.5 s)
        // fully relaxed.
        assert_eq!(r.conductance(20.0, 0.1, 0.0, 25.0), 20.0);
        assert_eq!(r.conductance(20.0, 0.1, 22_100.0, 25.0), 12.5);
        assert_eq!(relaxation_factor(0.1, 1e12, 1.0), 0.0);
    }

    #[test]
    fn weibull_by_hand() {
        // tau = 100 s, shape 2, t = 50 s: 1 - exp(-0.25) = 0.221199.
        close(
            weibull_failed_fraction(50.0, 100.0, 2.0),
            0.221_199_22,
            1e-8,
        );
        // At t = tau: 1 - 1/e = 0.632121.
        close(
            weibull_failed_fraction(100.0, 100.0, 0.5),
            0.632_120_56,
            1e-8,
        );
        assert_eq!(weibull_failed_fraction(0.0, 100.0, 2.0), 0.0);
    }

    // -------------------------------------------------------------------- Aging::at, deterministic

    #[test]
    fn drift_through_at_matches_the_formula() {
        let aging = Aging {
            retention: Retention::Drift {
                nu: Drift::Constant {
                    nu_mean: 0.05,
                    nu_sd: 0.0,
                },
                t0: 20.0,
            },
            ..Aging::default()
        };
        let g = [10.0, 0.0, 25.0];
        let d = aging.draw(&g, 25.0, &mut rng(1));
        assert_eq!(d.nu, vec![0.05; 3]);
        let mut out = [0.0; 3];
        aging.at(&d, &g, 2000.0, 25.0, &mut rng(2), &mut out);
        // 10 * 0.794328 = 7.94328; 25 * 0.794328 = 19.858206.
        close(out[0], 7.943_282_3, 1e-6);
        assert_eq!(out[1], 0.0);
        close(out[2], 19.858_205_9, 1e-6);
        aging.at(&d, &g, 10.0, 25.0, &mut rng(2), &mut out);
        assert_eq!(out, g, "no drift before t0");
    }

    #[test]
    fn failed_devices_are_stuck() {
        let all_fail = |p_high| Aging {
            retention: Retention::Relaxation(Relaxation::default()),
            failures: Some(Failures {
                tau: 1e-12,
                shape: 1.0,
                p_high,
            }),
            ..Aging::default()
        };
        let g = [3.0, 7.0, 11.0];
        let mut out = [0.0; 3];
        for (p, want) in [(1.0, 25.0), (0.0, 0.0)] {
            let a = all_fail(p);
            let d = a.draw(&g, 25.0, &mut rng(5));
            // The failure times are ~1e-12 s: at 1 s every device is stuck.
            a.at(&d, &g, 1.0, 25.0, &mut rng(6), &mut out);
            assert_eq!(out, [want; 3]);
        }
        // Never-failing devices relax normally.
        let a = Aging {
            failures: Some(Failures {
                tau: 1e30,
                shape: 1.0,
                p_high: 1.0,
            }),
            ..all_fail(1.0)
        };
        let d = a.draw(&g, 25.0, &mut rng(5));
        a.at(&d, &g, 0.0, 25.0, &mut rng(6), &mut out);
        assert_eq!(out, g);
    }

    // -------------------------------------------------------------------- statistics

    #[test]
    fn pcm_exponents_match_the_fit_over_many_devices() {
        let n = 200_000;
        let aging = Aging::pcm();
        for (g_norm, mu, s) in [
            (0.1, 0.060_090_07, 0.022_882_32),
            (0.5, 0.049, 0.008),
            (0.01, 0.095_780_14, 0.045),
        ] {
            let g = vec![g_norm * 25.0; n];
            let d = aging.draw(&g, 25.0, &mut rng(7));
            assert!(d.nu.iter().all(|&nu| nu >= 0.0));
            let (m, sd) = mean_sd(&d.nu);
            let (want_m, want_sd) = folded(mu, s);
            // Folding barely matters here (mu / s >= 2.1): the folded mean is within 1% of mu.
            assert!((want_m - mu).abs() < 0.01 * mu);
            let se = want_sd / (n as f64).sqrt();
            close(m, want_m, 5.0 * se);
            close(sd, want_sd, 0.01 * want_sd);
        }
    }

    #[test]
    fn constant_exponents_fold_at_zero() {
        // nu_mean = 0, nu_sd = 0.02: |N(0, s^2)| has mean s sqrt(2 / pi) = 0.0159577.
        let n = 200_000;
        let drift = Drift::Constant {
            nu_mean: 0.0,
            nu_sd: 0.02,
        };
        let g = vec![1.0; n];
        let mut nu = vec![0.0; n];
        drift.draw_nu(&g, 25.0, &mut rng(8), &mut nu);
        let (m, _) = mean_sd(&nu);
        close(m, 0.015_957_69, 5.0 * 0.012 / (n as f64).sqrt());
        assert!(nu.iter().all(|&x| x >= 0.0));
    }

    #[test]
    fn programming_noise_has_the_fitted_spread() {
        let n = 200_000;
        // g = 0.5 of 25 uS: sigma 0.952705 uS; 12.5 uS is 13 sigma above 0, so no clipping.
        let target = vec![12.5; n];
        let mut out = vec![0.0; n];
        Programming::Pcm.program(&target, 25.0, None, &mut rng(9), &mut out);
        let (m, sd) = mean_sd(&out);
        close(m, 12.5, 5.0 * 0.952705 / (n as f64).sqrt());
        close(sd, 0.952705, 0.01 * 0.952705);
        // Exact draws nothing and copies.
        let mut r = rng(9);
        Programming::Exact.program(&target, 25.0, None, &mut r, &mut out);
        assert_eq!(out, target);
        let mut r0 = rng(9);
        assert_eq!(r.next_u64(), r0.next_u64(), "Exact drew from the generator");
    }

    #[test]
    fn programming_clips_to_the_bounds() {
        let n = 20_000;
        // At 0 and at g_max the spread reaches past both bounds.
        let target: Vec<f64> = (0..n)
            .map(|i| if i % 2 == 0 { 0.0 } else { 25.0 })
            .collect();
        let mut out = vec![0.0; n];
        Programming::Constant { sigma_us: 2.0 }.program(
            &target,
            25.0,
            Some(25.0),
            &mut rng(10),
            &mut out,
        );
        assert!(out.iter().all(|&g| (0.0..=25.0).contains(&g)));
        // About half of each end sits on its bound.
        let at_bounds = out.iter().filter(|&&g| g == 0.0 || g == 25.0).count();
        close(at_bounds as f64 / n as f64, 0.5, 0.03);
        // Without an upper bound only 0 clips.
        Programming::Pcm.program(&target, 25.0, None, &mut rng(10), &mut out);
        assert!(out.iter().all(|&g| g >= 0.0));
        assert!(out.iter().any(|&g| g > 25.0));
    }

    #[test]
    fn read_noise_has_the_fitted_spread() {
        let n = 200_000;
        let aging = Aging {
            read_noise: ReadNoise1f::Pcm,
            ..Aging::default()
        };
        let g = vec![12.5; n];
        let d = aging.draw(&g, 25.0, &mut rng(11));
        let mut out = vec![0.0; n];
        aging.at(&d, &g, 1.0, 25.0, &mut rng(12), &mut out);
        // Relative sd q_s(0.5) * 3.809023 = 0.013809 * 3.809023 = 0.052598 -> 0.657 uS.
        let want = 12.5 * 0.013_808_68 * 3.809_023;
        let (m, sd) = mean_sd(&out);
        close(m, 12.5, 5.0 * want / (n as f64).sqrt());
        close(sd, want, 0.01 * want);
        // A new read draws new noise.
        let first = out.clone();
        aging.at(&d, &g, 1.0, 25.0, &mut rng(13), &mut out);
        assert_ne!(first, out);
    }

    #[test]
    fn relaxation_rates_are_log_normal() {
        let n = 200_000;
        let r = Relaxation {
            g_relaxed: 0.3,
            rate_median: 0.05,
            rate_sigma: 0.4,
            tau: 2.0,
        };
        let aging = Aging {
            retention: Retention::Relaxation(r),
            ..Aging::default()
        };
        let d = aging.draw(&vec![1.0; n], 25.0, &mut rng(14));
        let logs: Vec<f64> = d.rate.iter().map(|x| x.ln()).collect();
        let (m, sd) = mean_sd(&logs);
        // ln 0.05 = -2.995732.
        close(m, -2.995_732, 5.0 * 0.4 / (n as f64).sqrt());
        close(sd, 0.4, 0.01 * 0.4);
    }

    #[test]
    fn failure_fraction_follows_the_weibull_law() {
        let n = 100_000;
        let f = Failures {
            tau: 100.0,
            shape: 2.0,
            p_high: 0.3,
        };
        let aging = Aging {
            failures: Some(f),
            ..Aging::default()
        };
        let g = vec![10.0; n];
        let d = aging.draw(&g, 25.0, &mut rng(15));
        let mut out = vec![0.0; n];
        for t in [0.0, 20.0, 50.0, 100.0, 300.0] {
            let p = f.failed_fraction(t);
            let failed = (0..n).filter(|&i| d.failed(i, t)).count() as f64 / n as f64;
            close(failed, p, 5.0 * (p * (1.0 - p) / n as f64).sqrt() + 1e-12);
            // What reads see agrees: failed devices at 0 or 25, the others at 10.
            aging.at(&d, &g, t, 25.0, &mut rng(16), &mut out);
            let stuck = out.iter().filter(|&&x| x != 10.0).count() as f64 / n as f64;
            assert_eq!(stuck, failed);
        }
        // At 300 s (1 - exp(-9): nearly all failed) a fraction p_high of them reads g_max.
        let high = out.iter().filter(|&&x| x == 25.0).count() as f64 / n as f64;
        close(
            high,
            0.3 * f.failed_fraction(300.0),
            5.0 * (0.21 / n as f64).sqrt(),
        );
    }

    // -------------------------------------------------------------------- determinism

    fn everything() -> Aging {
        Aging {
            failures: Some(Failures {
                tau: 1e6,
                shape: 0.7,
                p_high: 0.5,
            }),
            ..Aging::pcm()
        }
    }

    #[test]
    fn same_seed_same_conductances() {
        let a = everything();
        let g: Vec<f64> = (0..500).map(|i| i as f64 * 0.05).collect();
        let run = || {
            let d = a.draw(&g, 25.0, &mut rng(17));
            let mut out = vec![0.0; g.len()];
            a.at(&d, &g, 3600.0, 25.0, &mut rng(18), &mut out);
            (d, out)
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn first_devices_do_not_depend_on_how_many_follow() {
        let a = everything();
        let g: Vec<f64> = (0..400).map(|i| i as f64 * 0.06).collect();
        let long = a.draw(&g, 25.0, &mut rng(19));
        let short = a.draw(&g[..100], 25.0, &mut rng(19));
        assert_eq!(short.nu[..], long.nu[..100]);
        assert_eq!(short.fail_time[..], long.fail_time[..100]);
        assert_eq!(short.fail_high[..], long.fail_high[..100]);
    }

    #[test]
    fn draws_per_device_are_as_documented() {
        // Drift + failures: one normal and two uniforms (three words in the common case) per device;
        // checked by replaying the documented order by hand.
        let a = everything();
        let g = [5.0, 20.0];
        let d = a.draw(&g, 25.0, &mut rng(20));
        let mut r = rng(20);
        let f = a.failures.unwrap();
        for (i, &gi) in g.iter().enumerate() {
            let nu = (pcm_nu_mean(gi / 25.0) + pcm_nu_sd(gi / 25.0) * normal(&mut r)).abs();
            assert_eq!(d.nu[i], nu);
            let u: f64 = r.random();
            assert_eq!(
                d.fail_time[i],
                f.tau * (-(1.0 - u).ln()).powf(1.0 / f.shape)
            );
            assert_eq!(d.fail_high[i], r.random::<f64>() < f.p_high);
        }
        // A read draws one normal per device and nothing else, at any t.
        let mut out = [0.0; 2];
        for t in [0.0, 1e5] {
            let mut r = rng(21);
            a.at(&d, &g, t, 25.0, &mut r, &mut out);
            let mut r0 = rng(21);
            normal(&mut r0);
            normal(&mut r0);
            assert_eq!(r.next_u64(), r0.next_u64());
        }
    }

    // -------------------------------------------------------------------- validation

    #[test]
    fn every_parameter_is_validated() {
        assert!(Aging::pcm().validate().is_ok());
        assert!(everything().validate().is_ok());
        assert!(Aging::default().validate().is_ok());
        let relax = |f: fn(&mut Relaxation)| {
            let mut r = Relaxation::default();
            f(&mut r);
            Aging {
                retention: Retention::Relaxation(r),
                ..Aging::default()
            }
        };
        let fail = |f: fn(&mut Failures)| {
            let mut x = Failures {
                tau: 1.0,
                shape: 1.0,
                p_high: 0.5,
            };
            f(&mut x);
            Aging {
                failures: Some(x),
                ..Aging::default()
            }
        };
        let drift = |nu_mean, nu_sd, t0| Aging {
            retention: Retention::Drift {
                nu: Drift::Constant { nu_mean, nu_sd },
                t0,
            },
            ..Aging::default()
        };
        let cases: Vec<(Aging, &str)> = vec![
            (drift(-0.1, 0.0, 20.0), "drift.nu_mean"),
            (drift(f64::NAN, 0.0, 20.0), "drift.nu_mean"),
            (drift(0.1, -1.0, 20.0), "drift.nu_sd"),
            (drift(0.1, f64::INFINITY, 20.0), "drift.nu_sd"),
            (drift(0.1, 0.0, 0.0), "drift.t0"),
            (drift(0.1, 0.0, f64::NAN), "drift.t0"),
            (
                Aging {
                    read_noise: ReadNoise1f::Constant { q_s: -0.1 },
                    ..Aging::default()
                },
                "read_noise.q_s",
            ),
            (
                Aging {
                    t_read: 0.0,
                    ..Aging::default()
                },
                "t_read",
            ),
            (relax(|r| r.g_relaxed = 1.5), "relaxation.g_relaxed"),
            (relax(|r| r.g_relaxed = f64::NAN), "relaxation.g_relaxed"),
            (relax(|r| r.rate_median = -1.0), "relaxation.rate_median"),
            (relax(|r| r.rate_sigma = 11.0), "relaxation.rate_sigma"),
            (relax(|r| r.rate_sigma = f64::NAN), "relaxation.rate_sigma"),
            (relax(|r| r.tau = 0.0), "relaxation.tau"),
            (relax(|r| r.tau = f64::INFINITY), "relaxation.tau"),
            (fail(|f| f.tau = -1.0), "failures.tau"),
            (fail(|f| f.shape = 0.0), "failures.shape"),
            (fail(|f| f.shape = f64::NAN), "failures.shape"),
            (fail(|f| f.p_high = 1.01), "failures.p_high"),
        ];
        for (a, key) in cases {
            let e = a.validate().expect_err(key);
            assert_eq!(e.key, key, "{e}");
        }
        let e = Programming::Constant { sigma_us: -1.0 }
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "programming.sigma_us");
        assert!(e.to_string().starts_with("programming.sigma_us: "), "{e}");
        assert!(Programming::Pcm.validate().is_ok());
    }
}
