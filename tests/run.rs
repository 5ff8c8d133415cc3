//! End-to-end tests of `aimsim run` on the quickstart scenario (built-in data, about a second).

use std::path::{Path, PathBuf};
use std::process::Command;

fn aimsim(args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_aimsim"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cannot spawn aimsim");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn temp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("aimsim-run-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn quickstart_trains_and_is_reproducible() {
    let (a, b) = (temp("a"), temp("b"));
    let (code, out, err) = aimsim(&[
        "run",
        "scenarios/quickstart.toml",
        "--out",
        a.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    for v in ["software", "bidirectional", "unidirectional"] {
        assert!(out.contains(v), "summary table lacks {v}: {out}");
        for f in [
            "metrics.csv",
            "accuracy.svg",
            "accuracy.png",
            "manifest.json",
        ] {
            assert!(a.join(v).join(f).is_file(), "{v}/{f} missing");
        }
    }
    for f in ["trace.npy", "trace.csv", "histogram.csv", "histogram.png"] {
        assert!(a.join("unidirectional").join(f).is_file(), "{f} missing");
    }
    // A run with a trace draws it, as `aimsim plot` does, and lists it in its manifest.
    let manifest = read(&a.join("unidirectional/manifest.json"));
    for f in ["trace.svg", "trace.png"] {
        assert!(a.join("unidirectional").join(f).is_file(), "{f} missing");
        assert!(
            manifest.contains(&format!("\"{f}\"")),
            "{f} not in the manifest"
        );
    }
    let svg = read(&a.join("unidirectional/trace.svg"));
    for text in [
        "traced devices during training",
        "conductance (uS)",
        "training sample",
    ] {
        assert!(svg.contains(text), "trace.svg lacks {text}");
    }
    assert!(a.join("summary.csv").is_file() && a.join("accuracy.png").is_file());

    // metrics.csv: one row per epoch plus epoch 0, accuracy well above chance for the software run.
    let m = read(&a.join("software/metrics.csv"));
    let rows: Vec<Vec<String>> = m
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    assert_eq!(rows.len(), 6);
    let last_acc: f64 = rows[5][3].parse().unwrap();
    assert!(
        last_acc > 60.0,
        "software baseline reached only {last_acc}%"
    );

    // Unidirectional updates never send a depression pulse; bidirectional ones do.
    let uni = read(&a.join("unidirectional/metrics.csv"));
    for l in uni.lines().skip(1) {
        assert_eq!(l.split(',').nth(5), Some("0"), "depression pulses in {l}");
    }
    let bi = read(&a.join("bidirectional/metrics.csv"));
    assert!(bi.lines().skip(2).any(|l| l.split(',').nth(5) != Some("0")));

    // Same scenario and seed: byte-identical metrics and traces.
    let (code, _, err) = aimsim(&[
        "run",
        "scenarios/quickstart.toml",
        "--out",
        b.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    for f in [
        "software/metrics.csv",
        "bidirectional/metrics.csv",
        "unidirectional/metrics.csv",
        "unidirectional/trace.npy",
        "summary.csv",
    ] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs"
        );
    }
    // A different seed changes the hardware runs. (Without a trace, no trace plot either.)
    let c = temp("c");
    let (code, _, _) = aimsim(&[
        "run",
        "scenarios/quickstart.toml",
        "--out",
        c.to_str().unwrap(),
        "--set",
        "scenario.seed=8",
        "--set",
        "train.trace_every=0",
    ]);
    assert_eq!(code, Some(0));
    assert_ne!(
        std::fs::read(a.join("bidirectional/metrics.csv")).unwrap(),
        std::fs::read(c.join("bidirectional/metrics.csv")).unwrap()
    );
    assert!(!c.join("unidirectional/trace.csv").exists());
    assert!(!c.join("unidirectional/trace.svg").exists());
    for d in [a, b, c] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn run_refuses_scenarios_without_training_and_bad_variants() {
    let o = temp("d");
    let (code, _, err) = aimsim(&[
        "run",
        "scenarios/device-quickstart.toml",
        "--out",
        o.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("[train]"), "{err}");
    let (code, _, err) = aimsim(&[
        "run",
        "scenarios/quickstart.toml",
        "--out",
        o.to_str().unwrap(),
        "--set",
        "update.refresh_hi=2",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("update.refresh_hi"), "{err}");
    assert!(!err.contains("panicked"));
}

#[cfg(target_os = "linux")]
#[test]
fn an_output_folder_in_use_is_refused_and_a_dead_holder_is_taken_over() {
    let out = temp("locked");
    std::fs::create_dir_all(&out).unwrap();
    // A live process whose name says aimsim holds the folder.
    let sleeper = out.with_file_name("aimsim-lock-holder");
    std::fs::copy("/bin/sleep", &sleeper).unwrap();
    let mut holder = Command::new(&sleeper).arg("60").spawn().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    std::fs::write(
        out.join(".aimsim.lock"),
        format!(
            "pid={}\nhost={host}\ncommand=aimsim run other.toml\n",
            holder.id()
        ),
    )
    .unwrap();
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/quickstart.toml");
    let args = [
        "run",
        scenario,
        "--out",
        out.to_str().unwrap(),
        "--set",
        "train.epochs=1",
        "--set",
        "train.train_samples=200",
    ];
    let (code, _, err) = aimsim(&args);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("in use by another aimsim (pid {}", holder.id()))
            && err.contains("aimsim run other.toml"),
        "{err}"
    );
    assert!(
        !out.join("summary.csv").exists(),
        "no work before the refusal"
    );
    // Once the holder is gone its lock is stale: the run takes the folder, and frees it at the end.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let (code, _, err) = aimsim(&args);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.join(".aimsim.lock").exists());
    let _ = std::fs::remove_file(&sleeper);
    // histogram.csv numbers layers from 0 at the input side, as trace.csv and [trace] do.
    let hist = read(&out.join("bidirectional").join("histogram.csv"));
    let layers: std::collections::BTreeSet<&str> = hist
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(layers.into_iter().collect::<Vec<_>>(), ["0", "1"], "{hist}");
}

#[test]
fn a_diverging_run_fails_with_a_clear_message_and_keeps_finished_runs() {
    let out = temp("diverged");
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/quickstart.toml");
    let (code, _, err) = aimsim(&[
        "run",
        scenario,
        "--out",
        out.to_str().unwrap(),
        "--set",
        "train.lr=100",
        "--set",
        "train.epochs=1",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("training diverged in epoch 1"), "{err}");
    assert!(err.contains("lower train.lr"), "{err}");
    // The software baseline ran first and finished: its results are kept, and hold finite numbers.
    let metrics = read(&out.join("software").join("metrics.csv"));
    assert!(
        !metrics.to_lowercase().contains("nan") && !metrics.contains("inf"),
        "{metrics}"
    );
    // Epoch 0 measures no training: its train loss and accuracy are empty, not 0.
    let epoch0 = metrics.lines().nth(1).unwrap();
    assert!(epoch0.starts_with("0,,,"), "{epoch0}");
    // The summary holds the run that finished; the diverged ones are marked.
    let summary = read(&out.join("summary.csv"));
    assert!(
        summary.lines().nth(1).unwrap().starts_with("software,"),
        "{summary}"
    );
    assert!(out.join("bidirectional").join("FAILED.txt").is_file());
}

/// Three variants, the middle one diverging (lr 100): small enough to run in a fraction of a second.
const DIVERGING: &str = r#"
[scenario]
name = "t"
seed = 7

[device]
model = "neurosim"
levels = 64
nl_up = 2.4
nl_down = -4.88
g_min = 0.1
g_max = 10.0

[tile]
rows = 64
cols = 64

[train]
dataset = "glyphs"
glyph_side = 8
train_samples = 200
test_samples = 100
hidden = [8]
epochs = 2
lr = 0.1
trace_devices = 2
trace_every = 50

[[variant]]
name = "first"
set = { "train.lr" = 0.1 }

[[variant]]
name = "wild"
set = { "train.lr" = 100.0 }

[[variant]]
name = "last"
set = { "train.lr" = 0.05 }
"#;

/// A run that fails mid-way loses no other run: the later variants still run, summary.csv holds every
/// run that finished, failed.csv and the printed table name the failed one and why, and its folder
/// holds FAILED.txt instead of a finished run's files. A rerun that succeeds clears both marks; a
/// failure in a folder of an earlier run names that run's files as not its own.
#[test]
fn a_failed_variant_is_marked_and_the_others_are_summarized() {
    let dir = temp("failed-variant");
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("v.toml");
    std::fs::write(&scenario, DIVERGING).unwrap();
    let out = dir.join("out");
    let run = |text: &str| {
        std::fs::write(&scenario, text).unwrap();
        aimsim(&[
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let (code, stdout, err) = run(DIVERGING);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("wild: training diverged in epoch 1"), "{err}");
    assert!(
        err.contains("1 of 3 run(s) failed (wild seed 7)") && err.contains("failed.csv"),
        "{err}"
    );
    assert!(
        stdout.contains("wild             FAILED (seed 7): wild: training diverged"),
        "{stdout}"
    );
    // The variant after the failed one ran and finished.
    for v in ["first", "last"] {
        assert!(out.join(v).join("manifest.json").is_file(), "{v}");
    }
    let summary = read(&out.join("summary.csv"));
    let names: Vec<&str> = summary
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(names, ["first", "last"], "{summary}");
    let failed = read(&out.join("failed.csv"));
    assert!(
        failed.starts_with("variant,seed,folder,error\nwild,7,wild,"),
        "{failed}"
    );
    assert!(failed.contains("training diverged"), "{failed}");
    let wild = out.join("wild");
    let marker = read(&wild.join("FAILED.txt"));
    assert!(
        marker.contains("did not finish") && marker.contains("training diverged"),
        "{marker}"
    );
    assert!(!marker.contains("Left by an earlier run"), "{marker}");
    for f in ["metrics.csv", "manifest.json", "trace.npy", "trace.csv"] {
        assert!(!wild.join(f).exists(), "a failed run wrote {f}");
    }

    // Fixed, the rerun finishes every variant and clears the marks.
    let (code, _, err) = run(&DIVERGING.replace("100.0 }", "1.0 }"));
    assert_eq!(code, Some(0), "{err}");
    assert!(!wild.join("FAILED.txt").exists() && !out.join("failed.csv").exists());
    assert_eq!(read(&out.join("summary.csv")).lines().count(), 4);
    assert!(wild.join("manifest.json").is_file());

    // Diverging again in that folder: the finished run's files are left, and named as not this run's.
    let (code, _, _) = run(DIVERGING);
    assert_eq!(code, Some(1));
    let marker = read(&wild.join("FAILED.txt"));
    assert!(
        marker.contains("Left by an earlier run") && marker.contains("manifest.json, metrics.csv"),
        "{marker}"
    );
    assert_eq!(read(&out.join("summary.csv")).lines().count(), 3);
}

#[test]
fn a_bad_variant_is_refused_by_validate_and_run_before_any_work_with_its_line() {
    let dir = temp("bad-variant");
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("v.toml");
    std::fs::write(
        &scenario,
        "[scenario]\nname = \"v\"\nseed = 1\n[device]\nmodel = \"soft-bounds\"\ndw_min = 0.01\n\
         [train]\ndataset = \"glyphs\"\ntrain_samples = 200\ntest_samples = 100\nepochs = 1\n\
         seeds = [1, 2]\n\n[[variant]]\nname = \"good\"\nset = { \"train.lr\" = 0.1 }\n\n\
         [[variant]]\nname = \"typo\"\nset = { \"train.lrr\" = 0.1 }\n",
    )
    .unwrap();
    let s = scenario.to_str().unwrap();
    let (code, _, err) = aimsim(&["validate", s]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("v.toml:20:9: [[variant]] `typo`"), "{err}");
    assert!(err.contains("train.lrr"), "{err}");
    let out = dir.join("out");
    let (code, _, err) = aimsim(&["run", s, "--out", out.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("v.toml:20:9"), "{err}");
    assert!(
        !out.exists(),
        "the good variant must not train before the refusal"
    );
}

#[test]
fn runs_that_cannot_fit_are_refused_before_any_work() {
    let out = temp("too-big");
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/quickstart.toml");
    for (set, key) in [
        ("train.train_samples=1000000000", "train.train_samples"),
        ("train.hidden=[65536, 65536]", "train.hidden"),
        ("train.trace_devices=100000", "train.trace_every"),
    ] {
        let mut args = vec![
            "run",
            scenario,
            "--out",
            out.to_str().unwrap(),
            "--set",
            set,
        ];
        if key == "train.trace_every" {
            args.extend(["--set", "train.trace_every=1"]);
        }
        let started = std::time::Instant::now();
        let (code, _, err) = aimsim(&args);
        assert_eq!(code, Some(1), "{set}: {err}");
        assert!(err.contains(&format!("`{key}`")), "{set}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("memory allocation"),
            "{err}"
        );
        assert!(
            started.elapsed().as_secs() < 10,
            "{set}: refused only after work"
        );
        assert!(!out.exists(), "{set}: refused before any work");
    }
}
