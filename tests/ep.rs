//! End-to-end tests of equilibrium propagation and the local rules: `aimsim ep-fidelity`, `aimsim run`
//! with `train.algorithm = "ep"`, `aimsim local`, and their errors on bad input.

use std::fs;
use std::path::Path;
use std::process::Command;

mod common;
use common::*;

/// Parses a CSV with a header into (header, rows).
fn csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

fn col(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
}

#[test]
fn ep_fidelity_on_ideal_devices_writes_the_csv_and_finds_the_gradient() {
    let out = TempDir::new("ep-fidelity");
    let o = aimsim(&[
        "ep-fidelity",
        "scenarios/ep/fidelity-ideal.toml",
        "--out",
        out.0.to_str().unwrap(),
        "--set",
        "train.seeds=[1]",
    ]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let (h, rows) = csv(&out.0.join("fidelity.csv"));
    for c in ["variant", "seed", "feedback", "beta", "estimator", "cosine"] {
        col(&h, c);
    }
    assert_eq!(rows.len(), 5 * 3, "5 betas x 3 estimators");
    let (b, e, med) = (
        col(&h, "beta"),
        col(&h, "estimator"),
        col(&h, "cosine_median"),
    );
    let get = |beta: &str, est: &str| -> f64 {
        rows.iter()
            .find(|r| r[b] == beta && r[e] == est)
            .unwrap_or_else(|| panic!("no row {beta} {est}"))[med]
            .parse()
            .unwrap()
    };
    assert!(
        get("0.01", "symmetric") > 0.99,
        "{}",
        get("0.01", "symmetric")
    );
    // The one-sided estimate's bias grows with beta.
    let one: Vec<f64> = ["0.01", "0.03", "0.1", "0.3", "1"]
        .iter()
        .map(|beta| get(beta, "one-sided"))
        .collect();
    for w in one.windows(2) {
        assert!(
            w[1] < w[0],
            "one-sided cosine does not fall with beta: {one:?}"
        );
    }
    assert!(get("0.3", "symmetric") > get("0.3", "one-sided"));
    for f in [
        "cosine.svg",
        "cosine.png",
        "error.svg",
        "error.png",
        "manifest.json",
    ] {
        assert!(out.0.join(f).is_file(), "{f} missing");
    }
    assert!(
        fs::read(out.0.join("cosine.png"))
            .unwrap()
            .starts_with(b"\x89PNG")
    );
    assert!(o.stdout.contains("median cosine"), "{}", o.stdout);
}

#[test]
fn ep_trains_on_glyphs_through_aimsim_run_and_is_reproducible_at_any_thread_count() {
    let (a, b) = (TempDir::new("ep-run-a"), TempDir::new("ep-run-b"));
    let args = |dir: &str| {
        vec![
            "run".to_string(),
            "scenarios/ep/glyphs.toml".into(),
            "--out".into(),
            dir.to_string(),
            "--set".into(),
            "train.seeds=[1]".into(),
            "--set".into(),
            "train.epochs=2".into(),
            "--set".into(),
            "train.train_samples=1000".into(),
            "--set".into(),
            "train.test_samples=300".into(),
        ]
    };
    let run = |dir: &str, threads: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_aimsim"))
            .args(args(dir))
            .env("RAYON_NUM_THREADS", threads)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let table = run(a.0.to_str().unwrap(), "1");
    for v in ["ep-software", "ep-linear", "bp-linear"] {
        assert!(table.contains(v), "{table}");
    }
    let (h, rows) = csv(&a.0.join("summary.csv"));
    let acc = |v: &str| -> f64 {
        rows.iter().find(|r| r[0] == v).unwrap()[col(&h, "final_test_accuracy")]
            .parse()
            .unwrap()
    };
    assert!(
        acc("ep-software") > 60.0,
        "EP software {}",
        acc("ep-software")
    );
    assert!(acc("ep-linear") > 20.0, "EP on tiles {}", acc("ep-linear"));
    let m = fs::read_to_string(a.0.join("ep-linear/seed-1/metrics.csv")).unwrap();
    assert!(m.lines().count() == 4, "{m}");
    // Relaxation reads and pulses are charged: EP on tiles has energy and latency.
    let (mh, mrows) = csv(&a.0.join("ep-linear/seed-1/metrics.csv"));
    let e: f64 = mrows[1][col(&mh, "train_energy_pj")].parse().unwrap();
    assert!(e > 0.0);
    run(b.0.to_str().unwrap(), "2");
    for v in ["ep-linear", "ep-nonlinear"] {
        let p = format!("{v}/seed-1/metrics.csv");
        assert_eq!(
            fs::read(a.0.join(&p)).unwrap(),
            fs::read(b.0.join(&p)).unwrap(),
            "{p} differs between 1 and 2 threads"
        );
    }
}

#[test]
fn curl_descent_sweep_learns_with_few_flips_and_breaks_with_all() {
    let out = TempDir::new("ep-curl");
    let o = aimsim(&[
        "local",
        "scenarios/ep/curl-sweep.toml",
        "--out",
        out.0.to_str().unwrap(),
        "--set",
        "local.steps=4000",
        "--set",
        "local.seeds=[1]",
        "--set",
        "local.test_samples=200",
    ]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let (h, rows) = csv(&out.0.join("summary.csv"));
    assert_eq!(rows.len(), 11);
    let ratio = |v: &str| -> f64 {
        rows.iter().find(|r| r[0] == v).unwrap()[col(&h, "final_over_initial")]
            .parse()
            .unwrap()
    };
    assert!(ratio("flip-000") < 0.3, "{}", ratio("flip-000"));
    assert!(ratio("flip-100") > 0.8, "{}", ratio("flip-100"));
    assert!(ratio("flip-000") < ratio("flip-090"));
    let (lh, _) = csv(&out.0.join("local.csv"));
    for c in ["variant", "seed", "flip_fraction", "step", "test_loss"] {
        col(&lh, c);
    }
    for f in [
        "loss.png",
        "stability.png",
        "stability.svg",
        "manifest.json",
    ] {
        assert!(out.0.join(f).is_file(), "{f} missing");
    }
}

#[test]
fn hebbian_rules_run_on_tiles() {
    let out = TempDir::new("ep-hebbian");
    let o = aimsim(&[
        "local",
        "scenarios/ep/hebbian.toml",
        "--out",
        out.0.to_str().unwrap(),
        "--set",
        "local.seeds=[1]",
    ]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let (h, rows) = csv(&out.0.join("summary.csv"));
    let get = |v: &str, c: &str| -> f64 {
        rows.iter().find(|r| r[0] == v).unwrap()[col(&h, c)]
            .parse()
            .unwrap()
    };
    assert!(get("hebbian", "final_alignment") > 0.9);
    assert!(get("hebbian", "pulses_up") > 0.0);
    assert!(get("anti-hebbian", "final_alignment") < 0.5);
}

#[test]
fn bad_ep_and_local_keys_are_located() {
    let dir = TempDir::new("ep-bad");
    let cases = [
        ("scenarios/ep/glyphs.toml", "ep.nudge=sideways", "ep.nudge"),
        ("scenarios/ep/glyphs.toml", "ep.eps=0", "ep.eps"),
        (
            "scenarios/ep/glyphs.toml",
            "train.activation=tanh",
            "train.activation",
        ),
        (
            "scenarios/ep/glyphs.toml",
            "ep.fidelity_betas=[0.1, -1.0]",
            "ep.fidelity_betas",
        ),
        (
            "scenarios/ep/curl-sweep.toml",
            "local.flip_fraction=1.5",
            "local.flip_fraction",
        ),
        (
            "scenarios/ep/hebbian.toml",
            "local.hidden=64",
            "local.hidden",
        ),
    ];
    for (file, set, key) in cases {
        let o = aimsim(&["validate", file, "--set", set]);
        assert_eq!(o.code, Some(1), "{set}: {}", o.stdout);
        assert!(
            o.stderr.contains(&format!("key `{key}`")),
            "{set}: {}",
            o.stderr
        );
        assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    }
    // A wrong value in the file names its line.
    let text = fs::read_to_string("scenarios/ep/glyphs.toml")
        .unwrap()
        .replace("nudge = \"symmetric\"", "nudge = \"both\"");
    let line = text.lines().position(|l| l.contains("\"both\"")).unwrap() + 1;
    let p = dir.write("bad.toml", text);
    let o = aimsim(&["validate", &p]);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains(&format!("bad.toml:{line}:")),
        "{}",
        o.stderr
    );
    // Commands that need a section say so.
    let o = aimsim(&["local", "scenarios/ep/glyphs.toml", "--out", &dir.sub("x")]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("[local]"), "{}", o.stderr);
    let o = aimsim(&[
        "ep-fidelity",
        "scenarios/ep/hebbian.toml",
        "--out",
        &dir.sub("y"),
    ]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("[train]"), "{}", o.stderr);
}

#[test]
fn ep_on_fashion_mnist_runs_when_the_data_is_installed() {
    let installed = std::env::var_os("AIMSIM_DATA")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain([std::path::PathBuf::from(
            "/usr/share/datasets/fashion-mnist",
        )])
        .any(|d| {
            d.join("train-images-idx3-ubyte.gz").is_file()
                || d.join("train-images-idx3-ubyte").is_file()
        });
    if !installed {
        eprintln!("Fashion-MNIST not installed: skipped");
        return;
    }
    let out = TempDir::new("ep-fmnist");
    let o = aimsim(&[
        "run",
        "scenarios/ep/fashion-mnist.toml",
        "--out",
        out.0.to_str().unwrap(),
        "--set",
        "train.seeds=[1]",
        "--set",
        "train.train_samples=300",
        "--set",
        "train.test_samples=200",
        "--set",
        "train.epochs=1",
        "--set",
        "train.hidden=[32]",
    ]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let (h, rows) = csv(&out.0.join("summary.csv"));
    let acc: f64 = rows.iter().find(|r| r[0] == "ep-software").unwrap()
        [col(&h, "final_test_accuracy")]
    .parse()
    .unwrap();
    assert!(acc > 30.0, "EP software on 300 Fashion-MNIST images: {acc}");
}
