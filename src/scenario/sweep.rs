//! `[sweep]`: the axes, repeats and master seed of `aimsim sweep` (docs/sweeps.md).

use toml::Value;

use super::ScenarioError;
use super::locate::{Locator, split_key};
use super::sections::SweepSection;
use super::train::TrainSpec;

/// One axis of a sweep: dotted keys that advance together (one key for a grid axis, all the keys of a
/// zipped group) and their values, step by step.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepAxis {
    /// Dotted key paths, in the order of the results columns.
    pub keys: Vec<String>,
    /// `values[step][k]` is the value of `keys[k]` at this step of the axis.
    pub values: Vec<Vec<Value>>,
    /// Where each key was written (`[sweep] grid` or `[sweep] zip[i]`), for error messages.
    pub section: String,
}

/// The `[sweep]` section, validated. Axes are in plan order: grid keys sorted by name, then zipped
/// groups in file order; the first axis varies slowest, repeats fastest.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSpec {
    /// Axes of the cartesian product.
    pub axes: Vec<SweepAxis>,
    /// Runs per combination of values, each with its own seed.
    pub repeats: u32,
    /// Master seed of the sweep (`sweep.seed`, else `scenario.seed`).
    pub seed: u64,
}

/// Largest number of points a sweep may expand to.
pub const MAX_SWEEP_POINTS: u64 = 1_000_000;

/// Checks that `key` is a dotted key path a sweep may vary.
fn sweep_key_ok(key: &str) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|s| {
        s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) {
        return Err(
            "is not a dotted key path (letters, digits, `_` and `-` separated by dots)".into(),
        );
    }
    match (parts[0], key) {
        ("sweep" | "variant", _) => Err(format!("a sweep cannot vary the `{}` section", parts[0])),
        (_, "scenario.seed") => Err(
            "every point's seed is derived from the master seed and the point index: use `repeats` for more seeds"
                .into(),
        ),
        (_, "train.seeds") => Err("use `sweep.repeats` to repeat points with distinct seeds".into()),
        _ => Ok(()),
    }
}

/// Validates `[sweep]`: the axes in plan order, repeats, the master seed, and the size of the plan.
pub fn sweep_spec(
    sw: SweepSection,
    scenario_seed: u64,
    has_variants: bool,
    train: Option<&TrainSpec>,
    loc: &Locator,
) -> Result<SweepSpec, ScenarioError> {
    let key = |k: &str| split_key(&format!("sweep.{k}"));
    let Some(t) = train else {
        return Err(loc.error(
            &split_key("sweep"),
            "every sweep point trains a network: add a [train] section",
        ));
    };
    if has_variants {
        return Err(loc.error(
            &split_key("sweep"),
            "a scenario with [sweep] cannot have [[variant]]s: put the settings they compare in `sweep.grid` \
             (e.g. \"update.controller\" = [\"bidirectional\", \"unidirectional\"])",
        ));
    }
    if !t.seeds.is_empty() {
        return Err(loc.error(
            &split_key("train.seeds"),
            "does not apply to a sweep: use `sweep.repeats`; each point's seed comes from the master seed and its index",
        ));
    }
    let mut axes: Vec<SweepAxis> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut check_values =
        |path: Vec<String>, k: &str, v: &Value| -> Result<Vec<Value>, ScenarioError> {
            sweep_key_ok(k).map_err(|m| loc.error(&path, m))?;
            if seen.iter().any(|s| s == k) {
                return Err(loc.error(
                    &path,
                    "is swept twice (in `grid` and a `zip` group, or two groups)",
                ));
            }
            seen.push(k.to_string());
            match v {
                Value::Array(a) if !a.is_empty() && a.len() <= 10_000 => Ok(a.clone()),
                Value::Array(a) => {
                    Err(loc.error(&path, format!("needs 1 to 10000 values, got {}", a.len())))
                }
                _ => Err(loc.error(
                    &path,
                    "must be an array of the values to sweep, e.g. [0.5, 1.0, 2.0]",
                )),
            }
        };
    // Grid keys in name order (a TOML table has no order of its own).
    for (k, v) in sw.grid.unwrap_or_default() {
        let values = check_values(vec!["sweep".into(), "grid".into(), k.clone()], &k, &v)?;
        axes.push(SweepAxis {
            keys: vec![k],
            values: values.into_iter().map(|v| vec![v]).collect(),
            section: "grid".into(),
        });
    }
    for (i, group) in sw.zip.unwrap_or_default().into_iter().enumerate() {
        let gpath = vec!["sweep".into(), "zip".into(), i.to_string()];
        if group.is_empty() {
            return Err(loc.error(&gpath, "a zipped group needs at least one key"));
        }
        let mut keys = Vec::new();
        let mut cols: Vec<Vec<Value>> = Vec::new();
        for (k, v) in group {
            let mut path = gpath.clone();
            path.push(k.clone());
            let values = check_values(path.clone(), &k, &v)?;
            if let Some(first) = cols.first()
                && first.len() != values.len()
            {
                return Err(loc.error(
                    &path,
                    format!(
                        "the keys of a zipped group advance together and need equal lengths: `{}` has {}, this one {}",
                        keys[0],
                        first.len(),
                        values.len()
                    ),
                ));
            }
            keys.push(k);
            cols.push(values);
        }
        let steps = cols[0].len();
        axes.push(SweepAxis {
            keys,
            values: (0..steps)
                .map(|s| cols.iter().map(|c| c[s].clone()).collect())
                .collect(),
            section: format!("zip[{i}]"),
        });
    }
    let repeats = sw.repeats.unwrap_or(1);
    if !(1..=1000).contains(&repeats) {
        return Err(loc.error(
            &key("repeats"),
            format!("must lie in [1, 1000], got {repeats}"),
        ));
    }
    let points = axes
        .iter()
        .map(|a| a.values.len() as u64)
        .product::<u64>()
        .saturating_mul(u64::from(repeats));
    if points > MAX_SWEEP_POINTS {
        return Err(loc.error(
            &split_key("sweep"),
            format!("expands to {points} points, above the limit of {MAX_SWEEP_POINTS}"),
        ));
    }
    Ok(SweepSpec {
        axes,
        repeats,
        seed: sw.seed.unwrap_or(scenario_seed),
    })
}
