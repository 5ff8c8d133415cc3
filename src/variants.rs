//! The runs of a scenario file: every `[[variant]]` and listed seed, each loaded as it runs (shared by
//! `aimsim run`, `aimsim local` and `aimsim ep-fidelity`).

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::scenario::{self, Scenario};

/// A scenario file read from disk, with what loading its variants needs.
#[derive(Debug, Clone)]
pub struct ScenarioSource {
    /// The file's text.
    pub text: String,
    /// The path as shown in errors and manifests.
    pub origin: String,
    /// The folder relative data files are looked up in.
    pub base_dir: PathBuf,
}

impl ScenarioSource {
    /// Reads the scenario file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = scenario::read_scenario_text(path)?;
        Ok(Self {
            text,
            origin: path.display().to_string(),
            base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        })
    }

    /// Loads the scenario with the `--set` overrides `sets` and, if given, `variant` applied.
    pub fn load(&self, sets: &[String], variant: Option<&str>) -> Result<Scenario> {
        let (s, _, _) =
            scenario::load_variant_str(&self.text, &self.origin, &self.base_dir, sets, variant)?;
        Ok(s)
    }
}

impl ScenarioSource {
    /// Loads every (variant, seed) run of `base` (the scenario loaded with `sets` and no variant) as it
    /// will run, before any work starts: a bad key or value in any `[[variant]]` `set` stops the
    /// command here, located at its line, instead of after the earlier runs have trained. Returns the
    /// number of runs checked.
    pub fn check_runs(&self, sets: &[String], base: &Scenario) -> Result<usize> {
        let seeds: &[u64] = match (&base.train, &base.local) {
            (Some(t), _) => &t.seeds,
            (None, Some(l)) => &l.seeds,
            (None, None) => &[],
        };
        let all = runs(&base.variants, seeds);
        for (name, seed) in &all {
            self.load(&seed_sets(sets, *seed), name.as_deref())?;
        }
        Ok(all.len())
    }
}

/// `sets` followed by `scenario.seed=<seed>` when `seed` is given (a seed repeat).
pub fn seed_sets(sets: &[String], seed: Option<u64>) -> Vec<String> {
    let mut run_sets = sets.to_vec();
    if let Some(seed) = seed {
        run_sets.push(format!("scenario.seed={seed}"));
    }
    run_sets
}

/// Every (variant, seed) run, variants outermost. `None` stands for the scenario itself when it has
/// no variants, and for the scenario's own seed when no seeds are listed.
pub fn runs(variants: &[String], seeds: &[u64]) -> Vec<(Option<String>, Option<u64>)> {
    let names: Vec<Option<String>> = if variants.is_empty() {
        vec![None]
    } else {
        variants.iter().cloned().map(Some).collect()
    };
    let seeds: Vec<Option<u64>> = if seeds.is_empty() {
        vec![None]
    } else {
        seeds.iter().copied().map(Some).collect()
    };
    names
        .iter()
        .flat_map(|n| seeds.iter().map(move |s| (n.clone(), *s)))
        .collect()
}

/// The distinct `names` in first-seen order (the rows of a per-variant table).
pub fn first_seen<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut order: Vec<&str> = Vec::new();
    for n in names {
        if !order.contains(&n) {
            order.push(n);
        }
    }
    order
}

/// The folder of one run under `out`: `out/<variant>/seed-<seed>`, without the parts a scenario does
/// not have (no variants: `out/seed-<seed>`; neither: `out`).
pub fn run_dir(out: &Path, name: Option<&str>, seed: Option<u64>) -> PathBuf {
    let mut dir = match name {
        Some(n) => out.join(n),
        None => out.to_path_buf(),
    };
    if let Some(seed) = seed {
        dir = dir.join(format!("seed-{seed}"));
    }
    dir
}

/// The name a run is shown under in progress lines: the variant (or scenario) name, and its seed.
pub fn run_label(name: &str, seed: Option<u64>) -> String {
    match seed {
        Some(sd) => format!("{name} seed {sd}"),
        None => name.to_string(),
    }
}
