//! End-to-end tests of `aimsim sweep`: plan order and seeds, resume after an interruption, shards
//! merged against a single run, merge refusals, the Slurm script, error locations, `aimsim plot`.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TempDir, aimsim};

/// A small sweep: 2 x 2 grid plus a zipped pair, 2 repeats = 16 points of a tiny training run.
const SWEEP: &str = r#"
[scenario]
name = "t-sweep"
seed = 5

[device]
model = "neurosim"
levels = 16
nl_up = 1.0
nl_down = -1.0
g_min = 0.1
g_max = 10.0
c2c = 0.02

[tile]
rows = 32
cols = 32

[update]
controller = "bidirectional"

[train]
dataset = "glyphs"
glyph_side = 8
train_samples = 200
test_samples = 100
hidden = [8]
epochs = 1
lr = 0.1
trace_devices = 2
trace_every = 50

[sweep]
grid = { "update.controller" = ["bidirectional", "unidirectional"], "device.nl_up" = [0.5, 3.0] }
zip = [{ "io.adc_bits" = [6, 8], "io.dac_bits" = [5, 7] }]
repeats = 2
"#;

fn scenario(dir: &TempDir) -> String {
    dir.write("sweep.toml", SWEEP)
}

fn read(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// results.csv without its `wall_s` column (the only one that differs between equal runs).
fn without_wall(csv: &str) -> String {
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert_eq!(
        header.last(),
        Some(&"wall_s"),
        "wall_s must be the last column"
    );
    csv.lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n")
        .collect()
}

fn ok(args: &[&str]) -> String {
    let o = aimsim(args);
    assert_eq!(
        o.code,
        Some(0),
        "aimsim {args:?}\nstdout: {}\nstderr: {}",
        o.stdout,
        o.stderr
    );
    o.stdout
}

fn data_rows(csv: &str) -> usize {
    csv.lines().count() - 1
}

#[test]
fn expansion_order_and_seeds_are_stable() {
    let t = TempDir::new("plan");
    let s = scenario(&t);
    let out = t.sub("plan");
    ok(&["sweep", &s, "--out", &out, "--plan"]);
    let plan = read(Path::new(&out).join("plan.csv"));
    let rows: Vec<&str> = plan.lines().collect();
    assert_eq!(
        rows[0],
        "point,device.nl_up,update.controller,io.adc_bits,io.dac_bits,repeat,seed"
    );
    assert_eq!(rows.len(), 17);
    // Grid keys by name (first slowest), then the zipped group, repeats fastest.
    let values: Vec<String> = rows[1..]
        .iter()
        .map(|r| r.split(',').take(6).collect::<Vec<_>>().join(","))
        .collect();
    let mut want = Vec::new();
    let mut i = 0;
    for nl in ["0.5", "3.0"] {
        for rule in ["bidirectional", "unidirectional"] {
            for (adc, dac) in [("6", "5"), ("8", "7")] {
                for rep in 0..2 {
                    want.push(format!("p{i:04},{nl},{rule},{adc},{dac},{rep}"));
                    i += 1;
                }
            }
        }
    }
    assert_eq!(values, want);
    // Seeds are pinned: they come from (master seed 5, point index) and nothing else.
    let seeds: Vec<u64> = rows[1..]
        .iter()
        .map(|r| r.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    let again = t.sub("plan-again");
    ok(&["sweep", &s, "--out", &again, "--plan", "--shard", "1/3"]);
    assert_eq!(
        read(Path::new(&again).join("plan.csv")),
        plan,
        "sharding changed the plan"
    );
    let mut distinct = seeds.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 16, "every point has its own seed");
    assert_eq!(
        seeds[..3],
        [
            aimsim::sweep::point_seed(5, 0),
            aimsim::sweep::point_seed(5, 1),
            aimsim::sweep::point_seed(5, 2)
        ]
    );
    assert_eq!(seeds[0], PINNED_SEED_5_0, "the seed derivation changed");
    // A different master seed (sweep.seed) changes every seed, not the order.
    let other = t.sub("plan-seed");
    ok(&[
        "sweep",
        &s,
        "--out",
        &other,
        "--plan",
        "--set",
        "sweep.seed=6",
    ]);
    let plan6 = read(Path::new(&other).join("plan.csv"));
    for (a, b) in plan.lines().zip(plan6.lines()).skip(1) {
        assert_eq!(a.rsplit_once(',').unwrap().0, b.rsplit_once(',').unwrap().0);
        assert_ne!(a.rsplit(',').next(), b.rsplit(',').next());
    }
}

/// First seed of master seed 5 (stream (5, SweepPoint, 0), first draw, top 63 bits).
const PINNED_SEED_5_0: u64 = 273_206_254_679_030_381;

#[test]
fn resume_after_a_limit_equals_an_uninterrupted_run_and_threads_do_not_matter() {
    let t = TempDir::new("resume");
    let s = scenario(&t);
    let full = t.sub("full");
    ok(&["sweep", &s, "--out", &full, "--threads", "2"]);
    let reference = read(Path::new(&full).join("results.csv"));
    assert_eq!(data_rows(&reference), 16);

    let part = t.sub("part");
    let o = ok(&[
        "sweep",
        &s,
        "--out",
        &part,
        "--threads",
        "1",
        "--limit",
        "5",
    ]);
    assert!(o.contains("5 run now"), "{o}");
    assert_eq!(data_rows(&read(Path::new(&part).join("results.csv"))), 5);
    let o = ok(&["sweep", &s, "--out", &part, "--threads", "1"]);
    assert!(o.contains("5 already finished, 11 run now"), "{o}");
    let resumed = read(Path::new(&part).join("results.csv"));
    assert_eq!(without_wall(&resumed), without_wall(&reference));
    // Per-point outputs are identical too, and a rerun of a finished sweep runs nothing.
    for id in ["p0000", "p0007", "p0015"] {
        for f in ["metrics.csv", "trace.csv", "histogram.csv"] {
            assert_eq!(
                read(Path::new(&full).join("points").join(id).join(f)),
                read(Path::new(&part).join("points").join(id).join(f)),
                "{id}/{f}"
            );
        }
    }
    let o = ok(&["sweep", &s, "--out", &part]);
    assert!(o.contains("16 already finished, 0 run now"), "{o}");
}

#[test]
fn kill_9_loses_only_points_in_flight() {
    let t = TempDir::new("kill");
    let s = scenario(&t);
    // Longer points, so the kill lands in the middle of the sweep.
    let slow = [
        "--set",
        "train.train_samples=2000",
        "--set",
        "train.epochs=2",
    ];
    let out = t.sub("out");
    let mut args = vec!["sweep", s.as_str(), "--out", out.as_str(), "--threads", "2"];
    args.extend(slow);
    let mut child = Command::new(env!("CARGO_BIN_EXE_aimsim"))
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let results = Path::new(&out).join("results.csv");
    let started = Instant::now();
    loop {
        let rows = fs::read_to_string(&results)
            .map(|r| data_rows(&r))
            .unwrap_or(0);
        if rows >= 2 || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = read(&results);
    let finished = data_rows(&partial);
    assert!(
        (2..16).contains(&finished),
        "kill landed outside the sweep ({finished} points finished)"
    );
    // Every row of the partial results.csv is a finished point with its marker.
    for l in partial.lines().skip(1) {
        let id = l.split(',').next().unwrap();
        assert!(
            Path::new(&out)
                .join("points")
                .join(id)
                .join("point.json")
                .is_file()
        );
    }
    // A point's marker is written before results.csv is rebuilt, so the kill may land between the two:
    // the markers are what a resumed sweep counts.
    let markers = fs::read_dir(Path::new(&out).join("points"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("point.json").is_file())
        .count();
    assert!(
        (finished..=finished + 2).contains(&markers),
        "{markers} markers for {finished} finished rows"
    );
    let mut again = vec!["sweep", s.as_str(), "--out", out.as_str(), "--threads", "2"];
    again.extend(slow);
    let o = ok(&again);
    assert!(o.contains(&format!("{markers} already finished")), "{o}");
    let full = t.sub("full");
    let mut clean = vec![
        "sweep",
        s.as_str(),
        "--out",
        full.as_str(),
        "--threads",
        "2",
    ];
    clean.extend(slow);
    ok(&clean);
    assert_eq!(
        without_wall(&read(&results)),
        without_wall(&read(Path::new(&full).join("results.csv")))
    );
}

#[test]
fn three_shards_merged_equal_one_run_and_merge_refuses_gaps_and_duplicates() {
    let t = TempDir::new("shards");
    let s = scenario(&t);
    let single = t.sub("single");
    ok(&["sweep", &s, "--out", &single, "--threads", "1"]);
    let shard = |i: usize| t.sub(&format!("shard-{i}"));
    ok(&["sweep", &s, "--out", &shard(0), "--shard", "0/3"]);
    ok(&["sweep", &s, "--out", &shard(1), "--shard", "1/3"]);
    // The third shard takes its share from Slurm's job-array variables.
    let o = Command::new(env!("CARGO_BIN_EXE_aimsim"))
        .args(["sweep", &s, "--out", &shard(2)])
        .env("SLURM_ARRAY_TASK_ID", "2")
        .env("SLURM_ARRAY_TASK_COUNT", "3")
        .env("SLURM_CPUS_PER_TASK", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let so = String::from_utf8_lossy(&o.stdout);
    assert!(
        so.contains("16 point(s) in the plan, 5 in this shard"),
        "{so}"
    );
    assert!(so.contains("1 at a time, 1 tile thread(s) each"), "{so}");
    let rows: Vec<usize> = (0..3)
        .map(|i| data_rows(&read(Path::new(&shard(i)).join("results.csv"))))
        .collect();
    assert_eq!(rows, vec![6, 5, 5]);

    let merged = t.sub("merged");
    let o = ok(&[
        "sweep",
        "merge",
        &shard(0),
        &shard(1),
        &shard(2),
        "--out",
        &merged,
    ]);
    assert!(o.contains("merged 16 point(s) from 3 folder(s)"), "{o}");
    assert_eq!(
        without_wall(&read(Path::new(&merged).join("results.csv"))),
        without_wall(&read(Path::new(&single).join("results.csv")))
    );
    for id in ["p0001", "p0008", "p0014"] {
        for f in ["metrics.csv", "trace.csv", "histogram.csv"] {
            assert_eq!(
                fs::read(Path::new(&merged).join("points").join(id).join(f)).unwrap(),
                fs::read(Path::new(&single).join("points").join(id).join(f)).unwrap(),
                "{id}/{f}"
            );
        }
    }

    // A missing shard: refused, naming the missing points.
    let gap = t.sub("gap");
    let o = aimsim(&["sweep", "merge", &shard(0), &shard(1), "--out", &gap]);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("5 of 16 point(s) finished in none"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("p0002"), "{}", o.stderr);
    // A point present twice: refused, naming both folders.
    let dup = t.sub("dup");
    let o = aimsim(&[
        "sweep",
        "merge",
        &shard(0),
        &shard(1),
        &shard(2),
        &single,
        "--out",
        &dup,
    ]);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("point p0000 finished in both"),
        "{}",
        o.stderr
    );
    // Shards of another plan: refused.
    let other = t.sub("other");
    ok(&[
        "sweep",
        &s,
        "--out",
        &other,
        "--shard",
        "2/3",
        "--set",
        "train.epochs=2",
        "--limit",
        "1",
    ]);
    let o = aimsim(&[
        "sweep",
        "merge",
        &shard(0),
        &shard(1),
        &other,
        "--out",
        &t.sub("mixed"),
    ]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("holds another sweep"), "{}", o.stderr);
}

#[test]
fn an_output_folder_of_another_sweep_is_refused() {
    let t = TempDir::new("other-plan");
    let s = scenario(&t);
    let out = t.sub("out");
    ok(&["sweep", &s, "--out", &out, "--limit", "1"]);
    let o = aimsim(&["sweep", &s, "--out", &out, "--set", "train.lr=0.2"]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("holds another sweep"), "{}", o.stderr);
}

#[test]
fn the_sbatch_script_runs_shards_that_merge_into_the_single_run() {
    let t = TempDir::new("sbatch");
    let s = scenario(&t);
    // Blanks, shell expansions, a single quote and a Slurm pattern: none may be expanded.
    let job = t.sub("job $HOME `false` 'q' %j");
    let o = ok(&[
        "sweep",
        &s,
        "--out",
        &job,
        "--emit-sbatch",
        "2",
        "--threads",
        "1",
    ]);
    assert!(o.contains("sweep.sbatch"), "{o}");
    let script = read(Path::new(&job).join("sweep.sbatch"));
    for want in [
        "#SBATCH --array=0-1",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --time=1-00:00:00",
        "#SBATCH --mem=4G",
        "%%j/logs/shard-%a.log\"",
        "--shard \"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\"",
        "sweep merge",
    ] {
        assert!(script.contains(want), "script lacks {want}:\n{script}");
    }
    assert!(
        Path::new(&job).join("logs").is_dir(),
        "Slurm needs the log folder to exist"
    );
    // Run the array's two tasks as Slurm would, then merge.
    for task in ["0", "1"] {
        let o = Command::new("bash")
            .arg(Path::new(&job).join("sweep.sbatch"))
            .env("AIMSIM", env!("CARGO_BIN_EXE_aimsim"))
            .env("SLURM_ARRAY_TASK_ID", task)
            .env("SLURM_ARRAY_TASK_COUNT", "2")
            .env("SLURM_CPUS_PER_TASK", "1")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "task {task}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // The merge hint of the script, run by the shell as written (its glob finds both shards).
    let hint = script
        .lines()
        .find_map(|l| l.strip_prefix("#   \"$AIMSIM\" sweep merge "))
        .expect("merge hint");
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!("\"$AIMSIM\" sweep merge {hint}"))
        .env("AIMSIM", env!("CARGO_BIN_EXE_aimsim"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "merge hint: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let merged = format!("{job}/merged");
    let single = t.sub("single");
    ok(&["sweep", &s, "--out", &single]);
    assert_eq!(
        without_wall(&read(Path::new(&merged).join("results.csv"))),
        without_wall(&read(Path::new(&single).join("results.csv")))
    );
}

#[test]
fn bad_sweep_values_are_located_before_anything_runs() {
    let t = TempDir::new("errors");
    let bad = SWEEP.replace(
        "\"device.nl_up\" = [0.5, 3.0]",
        "\"device.nl_up\" = [0.5, 30.0]",
    );
    let s = t.write("bad.toml", &bad);
    let line = bad.lines().position(|l| l.starts_with("grid")).unwrap() + 1;
    for cmd in [
        vec!["validate", s.as_str()],
        vec!["sweep", s.as_str(), "--out", &t.sub("o")],
    ] {
        let o = aimsim(&cmd);
        assert_eq!(o.code, Some(1), "{cmd:?}");
        assert!(
            o.stderr.contains(&format!("bad.toml:{line}:"))
                && o.stderr.contains("key `device.nl_up`"),
            "{cmd:?}: {}",
            o.stderr
        );
        assert!(o.stderr.contains("device.nl_up = 30.0"), "{}", o.stderr);
    }
    assert!(
        !Path::new(&t.sub("o")).join("points").exists(),
        "nothing may run"
    );

    let cases = [
        (
            "\"device.nl_up\" = [0.5, 3.0]",
            "\"device.nl_upp\" = [0.5]",
            "device.nl_upp",
            "unknown field",
        ),
        (
            "\"device.nl_up\" = [0.5, 3.0]",
            "\"device.nl_up\" = []",
            "sweep.grid.device.nl_up",
            "1 to 10000 values",
        ),
        (
            "\"device.nl_up\" = [0.5, 3.0]",
            "\"device.nl_up\" = 0.5",
            "sweep.grid.device.nl_up",
            "must be an array",
        ),
        (
            "\"device.nl_up\" = [0.5, 3.0]",
            "\"scenario.seed\" = [1, 2]",
            "sweep.grid.scenario.seed",
            "repeats",
        ),
        (
            "\"io.dac_bits\" = [5, 7]",
            "\"io.dac_bits\" = [5]",
            "sweep.zip.0.io.dac_bits",
            "equal lengths",
        ),
        ("repeats = 2", "repeats = 0", "sweep.repeats", "[1, 1000]"),
        (
            "repeats = 2",
            "repeats = 2\nstep = 1",
            "sweep.step",
            "unknown field",
        ),
    ];
    for (from, to, key, msg) in cases {
        let text = SWEEP.replace(from, to);
        assert_ne!(text, SWEEP, "{from}");
        let s = t.write("case.toml", &text);
        let o = aimsim(&["validate", &s]);
        assert_eq!(o.code, Some(1), "{to}: {}", o.stdout);
        assert!(
            o.stderr.contains(&format!("key `{key}`"))
                && o.stderr.contains(msg)
                && o.stderr.contains("case.toml:"),
            "{to}: {}",
            o.stderr
        );
    }
    // A sweep needs [train]; `aimsim sweep` needs a [sweep].
    let o = aimsim(&[
        "sweep",
        "scenarios/quickstart.toml",
        "--out",
        &t.sub("q"),
        "--plan",
    ]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("needs a [sweep] section"), "{}", o.stderr);
}

/// A large plan is validated by group of linked sections, not point by point (docs/sweeps.md); one bad
/// value among many is still reported at the first point that has it, with its line and column.
#[test]
fn one_bad_value_among_twenty_thousand_points_is_located() {
    let t = TempDir::new("many");
    let nl: Vec<String> = (0..200)
        .map(|i| {
            if i == 137 {
                "30.5".into()
            } else {
                format!("{:.2}", i as f64 * 0.01)
            }
        })
        .collect();
    let lr: Vec<String> = (1..=50)
        .map(|i| format!("{:.3}", i as f64 * 0.002))
        .collect();
    let grid = format!(
        "grid = {{ \"device.nl_up\" = [{}], \"train.lr\" = [{}] }}",
        nl.join(", "),
        lr.join(", ")
    );
    let text = SWEEP
        .lines()
        .map(|l| {
            if l.starts_with("grid") {
                grid.as_str()
            } else {
                l
            }
        })
        .filter(|l| !l.starts_with("zip"))
        .collect::<Vec<_>>()
        .join("\n");
    let s = t.write("many.toml", &text);
    let line = text.lines().position(|l| l.starts_with("grid")).unwrap() + 1;
    let col = grid.find("30.5").unwrap() + 1;
    // Axes device.nl_up (slowest), train.lr, 2 repeats: value 137 first appears at point 137 x 100.
    let want = format!(
        "many.toml:{line}:{col} (sweep point p13700: device.nl_up = 30.5): key `device.nl_up`"
    );
    for cmd in [
        vec!["validate", s.as_str()],
        vec!["sweep", s.as_str(), "--out", &t.sub("o"), "--plan"],
    ] {
        let o = aimsim(&cmd);
        assert_eq!(o.code, Some(1), "{cmd:?}: {}", o.stdout);
        assert!(
            o.stderr.contains(&want),
            "{cmd:?}: want {want}\n{}",
            o.stderr
        );
        assert!(o.stderr.contains("must lie in [-10, 10]"), "{}", o.stderr);
    }
    assert!(!Path::new(&t.sub("o")).join("plan.json").exists());
    // Fixed, the 20,000 points expand (and every one is in the plan).
    let fixed = t.write("fixed.toml", text.replace("30.5", "1.37"));
    let out = t.sub("fixed");
    ok(&["sweep", &fixed, "--out", &out, "--plan"]);
    assert_eq!(data_rows(&read(Path::new(&out).join("plan.csv"))), 20_000);
}

#[test]
fn plot_draws_sweeps_runs_and_devices() {
    let t = TempDir::new("plot");
    let s = scenario(&t);
    let out = t.sub("out");
    ok(&["sweep", &s, "--out", &out]);
    let listed = ok(&["plot", &out]);
    let files: Vec<&str> = listed.lines().collect();
    // x = device.nl_up (first numeric key), lines by update.controller, one chart per ADC/DAC pair.
    assert_eq!(files.len(), 2 * 2 * 2, "{listed}");
    for f in &files {
        assert!(fs::metadata(f).unwrap().len() > 1000, "{f} is empty");
    }
    assert!(listed.contains("sweep-final_test_accuracy-vs-device.nl_up-by-update.controller-adc_bits=6-dac_bits=5.png"), "{listed}");
    let svg = read(files.iter().find(|f| f.ends_with(".svg")).unwrap());
    for text in [
        "device.nl_up (NeuroSim NL label)",
        "update.controller = unidirectional",
        "error bars",
    ] {
        assert!(svg.contains(text), "plot lacks {text}");
    }
    let listed = ok(&[
        "plot",
        &out,
        "--x",
        "io.adc_bits",
        "--by",
        "device.nl_up",
        "--metric",
        "pulses_up",
    ]);
    assert!(
        listed.contains(
            "sweep-pulses_up-vs-io.adc_bits-by-device.nl_up-controller=bidirectional.svg"
        ),
        "{listed}"
    );
    let o = aimsim(&["plot", &out, "--x", "device.levels"]);
    assert!(
        o.code == Some(1) && o.stderr.contains("not a swept key"),
        "{}",
        o.stderr
    );
    let o = aimsim(&["plot", &out, "--metric", "accuracy"]);
    assert!(
        o.code == Some(1) && o.stderr.contains("final_test_accuracy"),
        "{}",
        o.stderr
    );

    // A point folder is a training run; a device run draws its response.
    let listed = ok(&[
        "plot",
        &format!("{out}/points/p0003"),
        "--out",
        &t.sub("run-plots"),
    ]);
    for stem in ["accuracy", "histogram", "trace"] {
        assert!(listed.contains(&format!("{stem}.png")), "{listed}");
    }
    let dev = t.sub("dev");
    ok(&[
        "device",
        "scenarios/device-quickstart.toml",
        "--out",
        &dev,
        "--devices",
        "2",
    ]);
    let listed = ok(&["plot", &dev, "--out", &t.sub("dev-plots")]);
    for stem in ["response", "step_vs_g"] {
        assert!(listed.contains(&format!("{stem}.png")), "{listed}");
    }
    let o = aimsim(&["plot", &t.sub("nothing-here")]);
    assert_eq!(o.code, Some(1));
}

#[test]
fn tiny_example_sweep_runs() {
    let t = TempDir::new("tiny");
    let out = t.sub("tiny");
    ok(&["sweep", "scenarios/sweeps/tiny.toml", "--out", &out]);
    let results = read(Path::new(&out).join("results.csv"));
    assert_eq!(data_rows(&results), 8);
}

#[test]
fn sbatch_limits_are_set_and_checked() {
    let t = TempDir::new("sbatch-limits");
    let s = scenario(&t);
    let job = t.sub("job");
    ok(&[
        "sweep",
        &s,
        "--out",
        &job,
        "--emit-sbatch",
        "3",
        "--sbatch-time",
        "2-12:00:00",
        "--sbatch-mem",
        "16G",
    ]);
    let script = read(Path::new(&job).join("sweep.sbatch"));
    assert!(script.contains("#SBATCH --time=2-12:00:00\n"), "{script}");
    assert!(script.contains("#SBATCH --mem=16G\n"), "{script}");
    for (flag, bad) in [
        ("--sbatch-time", "12h"),
        ("--sbatch-time", "0"),
        ("--sbatch-time", "1:2:3:4"),
        ("--sbatch-mem", "4GB"),
        ("--sbatch-mem", "lots"),
        ("--sbatch-mem", "0"),
    ] {
        let o = aimsim(&[
            "sweep",
            &s,
            "--out",
            &t.sub("bad"),
            "--emit-sbatch",
            "2",
            flag,
            bad,
        ]);
        assert_eq!(o.code, Some(1), "{flag} {bad}");
        assert!(o.stderr.contains(flag), "{flag} {bad}: {}", o.stderr);
    }
}

#[test]
fn merge_refuses_a_non_empty_folder_that_holds_no_sweep() {
    let t = TempDir::new("merge-unrelated");
    let s = scenario(&t);
    let single = t.sub("single");
    ok(&["sweep", &s, "--out", &single]);
    let unrelated = t.sub("notes");
    std::fs::create_dir_all(&unrelated).unwrap();
    std::fs::write(Path::new(&unrelated).join("thesis.tex"), "keep me").unwrap();
    let o = aimsim(&["sweep", "merge", &single, "--out", &unrelated]);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("holds no sweep"), "{}", o.stderr);
    assert_eq!(read(Path::new(&unrelated).join("thesis.tex")), "keep me");
    // An empty or new folder is fine.
    ok(&["sweep", "merge", &single, "--out", &t.sub("merged")]);
}
