//! The validation split (`train.validation`), model selection on it, the summary's statistics over
//! seeds and the paired differences between variants.

mod common;

use std::fs;
use std::path::Path;

use aimsim::networks::train::EpochMetrics;
use aimsim::run::{
    VariantResult, mean_sd_cell, paired_comparisons, paired_difference, summary_row, t_975,
};
use common::{TempDir, aimsim, read_npy};

/// A small run on built-in glyphs: two hardware variants and the software baseline.
const SCENARIO: &str = r#"
[scenario]
name = "val"
seed = 3

[device]
model = "neurosim"
levels = 64
nl_up = 2.4
nl_down = -4.88
g_min = 0.1
g_max = 10.0
c2c = 0.01

[tile]
rows = 64
cols = 64
cell = "pair"

[update]
controller = "bidirectional"
scheme = "stochastic"
bl = 31

[train]
dataset = "glyphs"
glyph_side = 8
train_samples = 160
test_samples = 60
hidden = [16]
epochs = 3
lr = 0.1
validation = 40
trace_devices = 1
trace_every = 1

[[variant]]
name = "software"
set = { "train.software" = true }

[[variant]]
name = "bidirectional"
set = { "update.controller" = "bidirectional" }

[[variant]]
name = "unidirectional"
set = { "update.controller" = "unidirectional" }
"#;

type Csv = (Vec<String>, Vec<Vec<String>>);

fn csv(p: &Path) -> Csv {
    let text = fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut lines = text.lines();
    let split = |l: &str| l.split(',').map(String::from).collect::<Vec<_>>();
    let header = split(lines.next().unwrap());
    (header, lines.map(split).collect())
}

fn col(t: &Csv, name: &str) -> usize {
    t.0.iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", t.0))
}

fn run(args: &[&str]) -> String {
    let o = aimsim(args);
    assert_eq!(o.code, Some(0), "aimsim {args:?}\n{}", o.stderr);
    o.stdout
}

#[test]
fn validation_samples_are_held_out_and_select_the_reported_epoch() {
    let t = TempDir::new("val");
    let sc = t.write("val.toml", SCENARIO);
    let (a, b) = (t.sub("a"), t.sub("b"));
    let seeds = "train.seeds=[1, 2, 3]";
    let out = run(&["run", &sc, "--out", &a, "--set", seeds]);
    let a = Path::new(&a);

    for v in ["software", "bidirectional", "unidirectional"] {
        for seed in 1..=3 {
            let dir = a.join(v).join(format!("seed-{seed}"));
            let m = csv(&dir.join("metrics.csv"));
            assert_eq!(m.1.len(), 4, "epochs 0..=3");
            for r in &m.1 {
                let acc: f64 = r[col(&m, "val_accuracy")].parse().unwrap();
                assert!((0.0..=100.0).contains(&acc));
                // 40 samples: accuracies are multiples of 2.5 %.
                assert!((acc / 2.5 - (acc / 2.5).round()).abs() < 1e-9, "{acc}");
                let loss: f64 = r[col(&m, "val_loss")].parse().unwrap();
                assert!(loss.is_finite() && loss > 0.0);
            }
            let manifest: serde_json::Value =
                serde_json::from_str(&fs::read_to_string(dir.join("manifest.json")).unwrap())
                    .unwrap();
            assert_eq!(manifest["dataset"]["train"], 120);
            assert_eq!(manifest["dataset"]["validation"], 40);
            if v != "software" {
                // One trace record after programming, then one per training update: 120 per epoch,
                // never one for the 40 held-out samples.
                let (shape, _) = read_npy(&dir.join("trace.npy"));
                assert_eq!(shape[0], 1 + 3 * (160 - 40), "{v} seed {seed}");
            }
        }
    }

    // summary.csv: the best validation epoch's numbers, taken from metrics.csv by hand.
    let s = csv(&a.join("summary.csv"));
    assert!(!s.0.iter().any(|h| h == "best_test_accuracy"), "{:?}", s.0);
    assert_eq!(s.1.len(), 9);
    for r in &s.1 {
        let m = csv(&a
            .join(&r[0])
            .join(format!("seed-{}", r[1]))
            .join("metrics.csv"));
        let num = |row: &Vec<String>, c: &str| row[col(&m, c)].parse::<f64>().unwrap();
        let mut best: Option<&Vec<String>> = None;
        for row in m.1.iter().skip(1) {
            if best.is_none_or(|b| num(row, "val_accuracy") > num(b, "val_accuracy")) {
                best = Some(row);
            }
        }
        let best = best.unwrap();
        let cell = |c: &str| r[col(&s, c)].parse::<f64>().unwrap();
        assert_eq!(cell("best_val_accuracy"), num(best, "val_accuracy"));
        assert_eq!(
            cell("test_accuracy_at_best_val"),
            num(best, "test_accuracy")
        );
        assert_eq!(
            cell("final_test_accuracy"),
            num(m.1.last().unwrap(), "test_accuracy")
        );
    }

    // The table reports mean +- sd over 3 seeds and the paired differences against the first
    // hardware variant, also written to paired.csv.
    assert!(
        out.contains("best val %") && out.contains("test % at best val"),
        "{out}"
    );
    assert!(!out.contains("best test %"), "{out}");
    assert!(
        out.contains("paired difference (final test %): software - bidirectional = "),
        "{out}"
    );
    assert!(
        out.contains("paired difference (final test %): unidirectional - bidirectional = "),
        "{out}"
    );
    assert!(out.contains("(95% CI, 3 seeds)"), "{out}");
    let p = csv(&a.join("paired.csv"));
    assert_eq!(p.1.len(), 4, "2 variants x 2 metrics: {:?}", p.1);
    for r in &p.1 {
        assert_eq!(r[col(&p, "reference")], "bidirectional");
        assert_eq!(r[col(&p, "seeds")], "3");
        let (lo, m, hi): (f64, f64, f64) = (
            r[col(&p, "ci95_low")].parse().unwrap(),
            r[col(&p, "mean_difference")].parse().unwrap(),
            r[col(&p, "ci95_high")].parse().unwrap(),
        );
        assert!(lo <= m && m <= hi, "{r:?}");
    }

    // Determinism: the same scenario and seeds give the same bytes.
    run(&["run", &sc, "--out", &b, "--set", seeds]);
    let b = Path::new(&b);
    for f in [
        "summary.csv",
        "paired.csv",
        "bidirectional/seed-2/metrics.csv",
        "unidirectional/seed-3/metrics.csv",
        "unidirectional/seed-3/trace.npy",
    ] {
        assert_eq!(
            fs::read(a.join(f)).unwrap(),
            fs::read(b.join(f)).unwrap(),
            "{f} differs"
        );
    }
    // The run's plot and `aimsim plot`, which redraws the folder in place, show the validation curve.
    let svg = a.join("bidirectional/seed-1/accuracy.svg");
    assert!(fs::read_to_string(&svg).unwrap().contains("validation"));
    fs::remove_file(&svg).unwrap();
    let o = aimsim(&["plot", a.to_str().unwrap()]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(fs::read_to_string(&svg).unwrap().contains("validation"));
}

#[test]
fn no_split_leaves_training_unchanged_and_reports_no_selection() {
    let t = TempDir::new("noval");
    let text = SCENARIO.replace("validation = 40\n", "");
    let sc = t.write("noval.toml", &text);
    let (a, b) = (t.sub("a"), t.sub("b"));
    let out = run(&["run", &sc, "--out", &a]);
    // An explicit 0 is the default: byte-identical results.
    run(&["run", &sc, "--out", &b, "--set", "train.validation=0"]);
    let (a, b) = (Path::new(&a), Path::new(&b));
    for f in [
        "summary.csv",
        "bidirectional/metrics.csv",
        "unidirectional/trace.npy",
    ] {
        assert_eq!(
            fs::read(a.join(f)).unwrap(),
            fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
    // Every sample trains: one trace record per update of 160 samples.
    let (shape, _) = read_npy(&a.join("bidirectional/trace.npy"));
    assert_eq!(shape[0], 1 + 3 * 160);
    // Empty validation columns, "-" in the table, one seed shown as n=1, no paired differences.
    let m = csv(&a.join("bidirectional/metrics.csv"));
    assert!(m.1.iter().all(|r| r[col(&m, "val_accuracy")].is_empty()));
    let s = csv(&a.join("summary.csv"));
    for r in &s.1 {
        assert!(r[col(&s, "best_val_accuracy")].is_empty());
        assert!(r[col(&s, "test_accuracy_at_best_val")].is_empty());
    }
    assert!(out.contains("(n=1)") && !out.contains("+- 0.00"), "{out}");
    assert!(!out.contains("paired difference"), "{out}");
    assert!(!a.join("paired.csv").exists());
}

#[test]
fn a_split_that_leaves_nothing_to_train_on_is_refused_with_its_location() {
    let t = TempDir::new("valbad");
    let text = SCENARIO.replace("validation = 40", "validation = 160");
    let sc = t.write("bad.toml", &text);
    let line = text
        .lines()
        .position(|l| l.starts_with("validation = 160"))
        .unwrap()
        + 1;
    for cmd in ["validate", "run"] {
        let mut args = vec![cmd, sc.as_str()];
        let out = t.sub("out");
        if cmd == "run" {
            args.extend(["--out", out.as_str()]);
        }
        let o = aimsim(&args);
        assert_eq!(o.code, Some(1), "{cmd}: {}", o.stderr);
        assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
        assert!(
            o.stderr
                .contains(&format!("bad.toml:{line}:1: key `train.validation`")),
            "{cmd}: {}",
            o.stderr
        );
        assert!(o.stderr.contains("160"), "{}", o.stderr);
    }
    // Through --set: the override is named.
    let ok = t.write("ok.toml", SCENARIO);
    let o = aimsim(&["validate", &ok, "--set", "train.validation=500"]);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("--set train.validation=500"),
        "{}",
        o.stderr
    );
}

#[test]
fn t_quantiles_match_student_t() {
    // Reference values of t_{0.975, dof} (numerical inversion of Student's t CDF).
    for (dof, t) in [
        (1, 12.706205),
        (2, 4.302653),
        (3, 3.182446),
        (9, 2.262157),
        (30, 2.042272),
        (31, 2.039513),
        (40, 2.021075),
        (60, 2.000298),
        (100, 1.983972),
        (1000, 1.962339),
    ] {
        assert!((t_975(dof) - t).abs() < 2e-6, "dof {dof}: {}", t_975(dof));
    }
}

#[test]
fn paired_difference_matches_a_hand_computed_interval() {
    // Differences 1, 2, 3: mean 2, sample sd 1, t_{0.975, 2} = 4.303.
    let d = paired_difference(&[1.0, 2.0, 3.0]).unwrap();
    assert_eq!(d.n, 3);
    assert!((d.mean - 2.0).abs() < 1e-12 && (d.sd - 1.0).abs() < 1e-12);
    let half = 4.302653 / 3f64.sqrt();
    assert!((d.lo - (2.0 - half)).abs() < 1e-6, "{d:?}");
    assert!((d.hi - (2.0 + half)).abs() < 1e-6, "{d:?}");
    assert!((d.lo - -0.484138).abs() < 1e-5 && (d.hi - 4.484138).abs() < 1e-5);
    // One pair has no interval.
    assert!(paired_difference(&[1.0]).is_none());
    // Table cells: sample sd over seeds, no fake 0.00 for a single seed.
    assert_eq!(mean_sd_cell(&[1.0, 2.0, 3.0]), "2.00 +- 1.00");
    assert_eq!(mean_sd_cell(&[95.8]), "95.80 (n=1)");
    assert_eq!(mean_sd_cell(&[]), "-");
}

fn result(name: &str, seed: u64, software: bool, rows: &[(Option<f64>, f64)]) -> VariantResult {
    VariantResult {
        name: name.into(),
        seed,
        metrics: rows
            .iter()
            .enumerate()
            .map(|(e, (val, test))| EpochMetrics {
                epoch: e as u32,
                val_accuracy: *val,
                test_accuracy: *test,
                ..EpochMetrics::default()
            })
            .collect(),
        software,
        rule: String::new(),
    }
}

#[test]
fn summary_selects_on_validation_and_pairs_by_seed() {
    // Epoch 0 has the best validation accuracy but is untrained; epoch 1 has the best test accuracy;
    // epoch 2 the best validation accuracy of the trained epochs (epoch 3 ties it, later).
    let rows = [
        (Some(99.0), 10.0),
        (Some(50.0), 90.0),
        (Some(70.0), 60.0),
        (Some(70.0), 65.0),
    ];
    let s = summary_row(&result("a", 1, false, &rows).metrics);
    assert_eq!(
        (s.final_test, s.best_val, s.test_at_best_val),
        (65.0, Some(70.0), Some(60.0))
    );
    let s =
        summary_row(&result("a", 1, false, &[(None, 10.0), (None, 90.0), (None, 80.0)]).metrics);
    assert_eq!(
        (s.final_test, s.best_val, s.test_at_best_val),
        (80.0, None, None)
    );

    // The reference is the first hardware variant; b - a over seeds 5, 6, 7 is 1, 2, 3.
    let fin = |t: f64| [(None, 0.0), (None, t)];
    let mut results = Vec::new();
    for (seed, a, b) in [(5, 60.0, 61.0), (6, 70.0, 72.0), (7, 50.0, 53.0)] {
        results.push(result("sw", seed, true, &fin(90.0)));
        results.push(result("a", seed, false, &fin(a)));
        results.push(result("b", seed, false, &fin(b)));
    }
    // A seed only "b" ran is not paired.
    results.push(result("b", 8, false, &fin(0.0)));
    let p = paired_comparisons(&results);
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(
        (p[0].variant.as_str(), p[0].reference.as_str()),
        ("sw", "a")
    );
    assert_eq!(
        (p[1].variant.as_str(), p[1].metric),
        ("b", "final_test_accuracy")
    );
    let d = p[1].diff;
    assert_eq!(d.n, 3);
    assert!((d.mean - 2.0).abs() < 1e-9 && (d.sd - 1.0).abs() < 1e-9);
    assert!((d.hi - d.mean - 4.302653 / 3f64.sqrt()).abs() < 1e-6);
    // One seed: nothing to pair.
    assert!(paired_comparisons(&results[..3]).is_empty());
}

#[test]
fn sweep_results_select_on_validation_only() {
    let t = TempDir::new("valsweep");
    let base = &SCENARIO[..SCENARIO.find("[[variant]]").unwrap()];
    let text = format!("{base}\n[sweep]\ngrid = {{ \"train.validation\" = [0, 40] }}\n");
    let sc = t.write("sweep.toml", &text);
    let out = t.sub("out");
    run(&["sweep", &sc, "--out", &out]);
    let out = Path::new(&out);
    let r = csv(&out.join("results.csv"));
    assert!(!r.0.iter().any(|h| h.starts_with("best_test")), "{:?}", r.0);
    assert_eq!(r.1.len(), 2);
    let key = col(&r, "train.validation");
    for row in &r.1 {
        let cells = [
            row[col(&r, "best_val_accuracy")].as_str(),
            row[col(&r, "test_accuracy_at_best_val")].as_str(),
            row[col(&r, "final_val_accuracy")].as_str(),
        ];
        if row[key] == "0" {
            assert_eq!(cells, ["", "", ""]);
            continue;
        }
        let m = csv(&out.join("points").join(&row[0]).join("metrics.csv"));
        let num = |x: &Vec<String>, c: &str| x[col(&m, c)].parse::<f64>().unwrap();
        let best =
            m.1.iter()
                .skip(1)
                .fold(None::<&Vec<String>>, |b, x| match b {
                    Some(b) if num(b, "val_accuracy") >= num(x, "val_accuracy") => Some(b),
                    _ => Some(x),
                })
                .unwrap();
        let got: Vec<f64> = cells.iter().map(|c| c.parse().unwrap()).collect();
        assert_eq!(
            got,
            [
                num(best, "val_accuracy"),
                num(best, "test_accuracy"),
                num(m.1.last().unwrap(), "val_accuracy")
            ]
        );
    }
}

/// `group`ed variants are candidates of one method: the one with the best mean final validation
/// accuracy is chosen (here a learning rate of 1e-6, which cannot learn, against 0.1), only the chosen
/// variants are compared on test accuracy, paired by seed, and a group without a validation split is
/// refused with its location.
#[test]
fn groups_choose_their_variant_on_the_validation_split() {
    let base = SCENARIO.split("[[variant]]").next().unwrap();
    let text = format!(
        "{base}seeds = [1, 2]\n\
         [[variant]]\nname = \"bi-slow\"\ngroup = \"bi\"\nset = {{ \"train.lr\" = 1e-6 }}\n\
         [[variant]]\nname = \"bi-fast\"\ngroup = \"bi\"\nset = {{ \"train.lr\" = 0.1 }}\n\
         [[variant]]\nname = \"uni-fast\"\ngroup = \"uni\"\nset = {{ \"update.controller\" = \"unidirectional\", \"train.lr\" = 0.1 }}\n\
         [[variant]]\nname = \"uni-slow\"\ngroup = \"uni\"\nset = {{ \"update.controller\" = \"unidirectional\", \"train.lr\" = 1e-6 }}\n"
    );
    let dir = TempDir::new("groups");
    let file = dir.write("g.toml", &text);
    let out = dir.sub("out");
    let o = aimsim(&["run", &file, "--out", &out]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let sel = fs::read_to_string(Path::new(&out).join("selection.csv")).unwrap();
    let chosen: Vec<&str> = sel
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(3) == Some("true"))
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(chosen, ["bi-fast", "uni-fast"], "{sel}");
    assert_eq!(sel.lines().count(), 5, "every candidate is recorded: {sel}");
    let paired = fs::read_to_string(Path::new(&out).join("paired-selected.csv")).unwrap();
    let rows: Vec<&str> = paired.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{paired}");
    assert!(
        rows[0].starts_with("final_test_accuracy,uni,bi,2,"),
        "{paired}"
    );
    assert!(
        o.stdout.contains("chosen on the validation split"),
        "{}",
        o.stdout
    );

    let no_val = text.replace("validation = 40\n", "");
    let file = dir.write("n.toml", &no_val);
    let o = aimsim(&["validate", &file]);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("n.toml:") && o.stderr.contains("variant.0.group"),
        "{}",
        o.stderr
    );
}
