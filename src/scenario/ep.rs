//! `[ep]`: equilibrium propagation's relaxation, nudging and update settings, and the settings of
//! `aimsim ep-fidelity` (docs/ep.md).

use aimsim_networks::ep::{EpActivation, EpConfig, EpUpdate, Feedback, Nudge};

use super::ScenarioError;
use super::locate::{Locator, split_key};
use super::sections::{EpActivationName, EpSection, EpUpdateName, FeedbackName, NudgeName};

/// The `[ep]` section, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct EpSpec {
    /// The energy network's settings. Its `sizes` and `init_scale` are not `[ep]` keys: a run sets
    /// them from the dataset, `train.hidden` and `train.init_scale` ([`EpSpec::network`]).
    pub config: EpConfig,
    /// `aimsim ep-fidelity`: nudging strengths.
    pub fidelity_betas: Vec<f32>,
    /// `aimsim ep-fidelity`: estimators.
    pub fidelity_nudges: Vec<Nudge>,
    /// `aimsim ep-fidelity`: samples in the batch.
    pub fidelity_samples: u32,
}

impl EpSpec {
    /// The energy network of layer sizes `sizes` (input first) with initial weights of scale
    /// `init_scale`.
    pub fn network(&self, sizes: &[usize], init_scale: f32) -> EpConfig {
        EpConfig {
            sizes: sizes.to_vec(),
            init_scale,
            ..self.config.clone()
        }
    }
}

fn nudge_of(n: NudgeName) -> Nudge {
    match n {
        NudgeName::OneSided => Nudge::OneSided,
        NudgeName::RandomSign => Nudge::RandomSign,
        NudgeName::Symmetric => Nudge::Symmetric,
    }
}

/// Validates `[ep]` (defaults when absent).
pub fn ep_spec(ep: Option<EpSection>, loc: &Locator) -> Result<EpSpec, ScenarioError> {
    let e = ep.unwrap_or_default();
    let d = EpConfig::default();
    let key = |k: &str| split_key(&format!("ep.{k}"));
    let steps = |v: Option<u32>, d: u32, k: &str| match v.unwrap_or(d) {
        s @ 1..=100_000 => Ok(s),
        s => Err(loc.error(&key(k), format!("must lie in [1, 100000], got {s}"))),
    };
    let steps_free = steps(e.steps_free, d.steps_free, "steps_free")?;
    let steps_nudged = steps(e.steps_nudged, d.steps_nudged, "steps_nudged")?;
    let eps = e.eps.unwrap_or(d.eps);
    if !(eps > 0.0 && eps <= 1.0) {
        return Err(loc.error(&key("eps"), format!("must lie in (0, 1], got {eps}")));
    }
    let positive = |b: f32| b.is_finite() && b > 0.0 && b <= 100.0;
    let beta = e.beta.unwrap_or(d.beta);
    if !positive(beta) {
        return Err(loc.error(&key("beta"), format!("must lie in (0, 100], got {beta}")));
    }
    let fidelity_betas = e
        .fidelity_betas
        .unwrap_or_else(|| vec![0.01, 0.03, 0.1, 0.3, 1.0]);
    if fidelity_betas.is_empty() || fidelity_betas.len() > 100 {
        return Err(loc.error(&key("fidelity_betas"), "list 1 to 100 values"));
    }
    if let Some(b) = fidelity_betas.iter().find(|b| !positive(**b)) {
        return Err(loc.error(
            &key("fidelity_betas"),
            format!("every beta must lie in (0, 100], got {b}"),
        ));
    }
    let fidelity_nudges: Vec<Nudge> = match e.fidelity_nudges {
        None => vec![Nudge::OneSided, Nudge::RandomSign, Nudge::Symmetric],
        Some(v) if v.is_empty() => {
            return Err(loc.error(&key("fidelity_nudges"), "list at least one estimator"));
        }
        Some(v) => v.into_iter().map(nudge_of).collect(),
    };
    let fidelity_samples = e.fidelity_samples.unwrap_or(16);
    if !(1..=10_000).contains(&fidelity_samples) {
        return Err(loc.error(
            &key("fidelity_samples"),
            format!("must lie in [1, 10000], got {fidelity_samples}"),
        ));
    }
    let tolerance = e.tolerance.unwrap_or(d.tolerance);
    if !(tolerance.is_finite() && tolerance >= 0.0) {
        return Err(loc.error(
            &key("tolerance"),
            format!("must be a finite number >= 0, got {tolerance}"),
        ));
    }
    let config = EpConfig {
        activation: e.activation.map_or(d.activation, |a| match a {
            EpActivationName::Clip => EpActivation::Clip,
            EpActivationName::HardSigmoid => EpActivation::HardSigmoid,
        }),
        steps_free,
        steps_nudged,
        eps,
        beta,
        nudge: e.nudge.map_or(d.nudge, nudge_of),
        feedback: e.feedback.map_or(d.feedback, |f| match f {
            FeedbackName::Transpose => Feedback::Transpose,
            FeedbackName::Separate => Feedback::Separate,
        }),
        update: e.update.map_or(d.update, |u| match u {
            EpUpdateName::Decomposed => EpUpdate::Decomposed,
            EpUpdateName::TwoPhase => EpUpdate::TwoPhase,
        }),
        tolerance,
        sizes: Vec::new(),
        ..d
    };
    Ok(EpSpec {
        config,
        fidelity_betas,
        fidelity_nudges,
        fidelity_samples,
    })
}
