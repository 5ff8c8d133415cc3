//! `[local]`: the local-rule experiment of `aimsim local` (Hebbian, anti-Hebbian, curl descent).

use aimsim_networks::local::{LocalConfig, LocalRule};

use super::ScenarioError;
use super::locate::{Locator, split_key};
use super::sections::{LocalRuleName, LocalSection};
use super::train::seed_list;

/// The `[local]` section, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalSpec {
    /// The experiment's settings.
    pub config: LocalConfig,
    /// Float weights instead of tiles.
    pub software: bool,
    /// Seeds to repeat every run with (empty: the scenario's seed once).
    pub seeds: Vec<u64>,
}

/// Validates `[local]`.
pub fn local_spec(l: LocalSection, loc: &Locator) -> Result<LocalSpec, ScenarioError> {
    let key = |k: &str| split_key(&format!("local.{k}"));
    let d = LocalConfig::default();
    let rule = l.rule.map_or(d.rule, |r| match r {
        LocalRuleName::Curl => LocalRule::Curl,
        LocalRuleName::Hebbian => LocalRule::Hebbian,
        LocalRuleName::AntiHebbian => LocalRule::AntiHebbian,
    });
    let size = |v: Option<u32>, d: usize, k: &str| match v.map_or(d, |v| v as usize) {
        s @ 1..=4096 => Ok(s),
        s => Err(loc.error(&key(k), format!("must lie in [1, 4096], got {s}"))),
    };
    let inputs = size(l.inputs, d.inputs, "inputs")?;
    let hidden = size(l.hidden, d.hidden, "hidden")?;
    let outputs = size(l.outputs, d.outputs, "outputs")?;
    if rule != LocalRule::Curl {
        for (k, present) in [
            ("outputs", l.outputs.is_some()),
            ("flip_fraction", l.flip_fraction.is_some()),
        ] {
            if present {
                return Err(loc.error(&key(k), "applies to rule = \"curl\" only"));
            }
        }
        if hidden > inputs {
            return Err(loc.error(
                &key("hidden"),
                format!(
                    "a Hebbian layer extracts at most `inputs` ({inputs}) directions, got {hidden}"
                ),
            ));
        }
    }
    let flip_fraction = l.flip_fraction.unwrap_or(d.flip_fraction);
    if !(0.0..=1.0).contains(&flip_fraction) {
        return Err(loc.error(
            &key("flip_fraction"),
            format!("is a fraction of the hidden neurons in [0, 1], got {flip_fraction}"),
        ));
    }
    let lr = l.lr.unwrap_or(d.lr);
    if !(lr.is_finite() && lr > 0.0) {
        return Err(loc.error(&key("lr"), format!("must be > 0, got {lr}")));
    }
    let steps = l.steps.map_or(d.steps, u64::from);
    if !(1..=100_000_000).contains(&steps) {
        return Err(loc.error(&key("steps"), format!("must lie in [1, 1e8], got {steps}")));
    }
    let eval_every = l.eval_every.map_or(d.eval_every, u64::from);
    if eval_every == 0 {
        return Err(loc.error(&key("eval_every"), "must be at least 1"));
    }
    let test_samples = l.test_samples.map_or(d.test_samples, |n| n as usize);
    if !(1..=1_000_000).contains(&test_samples) {
        return Err(loc.error(
            &key("test_samples"),
            format!("must lie in [1, 1000000], got {test_samples}"),
        ));
    }
    let seeds = seed_list(l.seeds, &key("seeds"), loc)?;
    Ok(LocalSpec {
        config: LocalConfig {
            rule,
            inputs,
            hidden,
            outputs,
            flip_fraction,
            lr,
            steps,
            eval_every,
            test_samples,
        },
        software: l.software.unwrap_or(false),
        seeds,
    })
}
