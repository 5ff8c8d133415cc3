//! `aimsim infer` from the command line: its files, bit-identity at any thread count, the ways a network
//! comes in (trained in software, on the chip, loaded from an npz), composition with `[sweep]`, and its
//! errors.

mod common;

use std::fs;
use std::path::Path;

use common::{TempDir, aimsim};

const BASE: &str = r#"[scenario]
name = "infer-test"
seed = 5

[device]
model = "constant-step"
dw_min = 0.005
g_min = 0.0
g_max = 25.0
c2c = 0.2

[tile]
rows = 32
cols = 32
cell = "one-sided"

[update]
controller = "unidirectional"

[train]
dataset = "glyphs"
glyph_side = 8
train_samples = 400
test_samples = 120
hidden = [12]
epochs = 2
lr = 0.2
software = true
"#;

const INFER: &str = r#"
[inference]
tolerance = 0.02
noise = "none"
times_s = [10.0, 3600.0, 3.0e7]
repeats = 3
"#;

fn infer(work: &TempDir, tag: &str, text: &str, extra: &[&str]) -> (String, common::Out) {
    let file = work.write(&format!("{tag}.toml"), text);
    let out = work.sub(&format!("out-{tag}"));
    let mut args = vec!["infer", file.as_str(), "--out", out.as_str()];
    args.extend_from_slice(extra);
    let o = aimsim(&args);
    (out, o)
}

fn read(dir: &str, name: &str) -> String {
    fs::read_to_string(Path::new(dir).join(name)).unwrap_or_else(|e| panic!("{dir}/{name}: {e}"))
}

#[test]
fn writes_tidy_accuracy_against_time_and_the_programming_record() {
    let work = TempDir::new("infer-files");
    let (out, o) = infer(&work, "a", &format!("{BASE}{INFER}"), &[]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let csv = read(&out, "accuracy_vs_time.csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "variant,t_s,compensation,seed,repeat,accuracy"
    );
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    // 3 times x 3 compensations x 3 repeats.
    assert_eq!(rows.len(), 27);
    for comp in ["none", "global", "column"] {
        assert_eq!(rows.iter().filter(|r| r[2] == comp).count(), 9);
    }
    for r in &rows {
        let a: f64 = r[5].parse().unwrap();
        assert!((0.0..=100.0).contains(&a));
    }
    for f in [
        "accuracy_vs_time.svg",
        "accuracy_vs_time.png",
        "programming.csv",
        "conductances.csv",
        "conductances.png",
        "metrics.csv",
        "weights.npz",
    ] {
        assert!(Path::new(&out).join(f).is_file(), "{f}");
    }
    let prog = read(&out, "programming.csv");
    let cells: Vec<&str> = prog.lines().nth(1).unwrap().split(',').collect();
    // Every device of 12x64 and 10x12 one-sided cells was programmed by write-verify.
    assert_eq!(cells[0], "1776");
    assert!(cells[3].parse::<u64>().unwrap() > 0, "pulses up: {prog}");
    let manifest: serde_json::Value = serde_json::from_str(&read(&out, "manifest.json")).unwrap();
    assert_eq!(
        manifest["inference"]["deployed"],
        "float weights, programmed"
    );
    assert_eq!(manifest["inference"]["repeats"], 3);
    // The programmed conductances sit inside [0, 25] uS.
    let hist = read(&out, "conductances.csv");
    let programmed: u64 = hist
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("programmed"))
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            let hi: f64 = c[4].parse().unwrap();
            let n: u64 = c[5].parse().unwrap();
            if n > 0 {
                assert!(
                    hi <= 25.0 + 0.6,
                    "a programmed conductance above g_max: {l}"
                );
            }
            n
        })
        .sum();
    assert_eq!(programmed, 1776);
}

#[test]
fn results_are_the_same_bits_at_one_and_two_threads() {
    let work = TempDir::new("infer-threads");
    let text = format!("{BASE}{INFER}");
    let (a, o) = infer(&work, "one", &text, &["--threads", "1"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let (b, o) = infer(&work, "two", &text, &["--threads", "2"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    for f in [
        "accuracy_vs_time.csv",
        "programming.csv",
        "conductances.csv",
    ] {
        assert_eq!(read(&a, f), read(&b, f), "{f}");
    }
}

#[test]
fn drift_costs_accuracy_that_compensation_recovers() {
    // A strong, uniform drift (nu = 0.15 everywhere): at 3e7 s the weights are 0.12 of their
    // programmed values; digital biases then dominate without compensation, and one global factor
    // per layer restores the outputs (up to the ADC's resolution).
    let work = TempDir::new("infer-drift");
    let text = format!(
        "{BASE}\n[inference]\nnoise = \"none\"\nprogram = \"exact\"\ndrift = \"constant\"\nnu_mean = 0.15\nread_noise = \"none\"\ntimes_s = [10.0, 3.0e7]\nrepeats = 1\ncompensation = [\"none\", \"global\"]\n"
    );
    let (out, o) = infer(&work, "d", &text, &["--set", "io.out_noise=0.0"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let csv = read(&out, "accuracy_vs_time.csv");
    let acc = |t: &str, c: &str| -> f64 {
        csv.lines()
            .find(|l| {
                let f: Vec<&str> = l.split(',').collect();
                f[1] == t && f[2] == c
            })
            .unwrap()
            .rsplit(',')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let early = acc("10", "none");
    assert!(early > 50.0, "{csv}");
    assert!(acc("30000000", "none") < early - 20.0, "{csv}");
    assert!(acc("30000000", "global") > early - 5.0, "{csv}");
}

#[test]
fn deploys_a_network_trained_on_the_chip_as_it_is_and_weights_from_a_file() {
    let work = TempDir::new("infer-ways");
    // On the chip: pairs with bidirectional updates.
    let (out, o) = infer(
        &work,
        "chip",
        &format!("{BASE}{INFER}"),
        &[
            "--set",
            "train.software=false",
            "--set",
            "tile.cell=pair",
            "--set",
            "update.controller=bidirectional",
        ],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let manifest: serde_json::Value = serde_json::from_str(&read(&out, "manifest.json")).unwrap();
    assert_eq!(
        manifest["inference"]["deployed"],
        "trained on the chip, as trained"
    );
    // Nothing re-programmed: no write-verify pulses.
    let prog = read(&out, "programming.csv");
    let cells: Vec<&str> = prog.lines().nth(1).unwrap().split(',').collect();
    assert_eq!((cells[3], cells[4]), ("0", "0"), "{prog}");

    // A software run's weights.npz, loaded without training: the same deployment as deploying it
    // right after training.
    let (trained, o) = infer(&work, "sw", &format!("{BASE}{INFER}"), &[]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let npz = Path::new(&trained).join("weights.npz");
    let (loaded, o) = infer(
        &work,
        "file",
        &format!("{BASE}{INFER}"),
        &[
            "--set",
            "train.epochs=0",
            "--set",
            &format!("train.init_weights=\"{}\"", npz.display()),
        ],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    for f in [
        "accuracy_vs_time.csv",
        "programming.csv",
        "conductances.csv",
    ] {
        assert_eq!(read(&trained, f), read(&loaded, f), "{f}");
    }
}

#[test]
fn a_sweep_deploys_every_point() {
    let work = TempDir::new("infer-sweep");
    let file = work.write(
        "s.toml",
        format!("{BASE}{INFER}\n[sweep]\ngrid = {{ \"inference.tolerance\" = [0.01, 0.2] }}\n"),
    );
    let out = work.sub("out");
    let o = aimsim(&["sweep", &file, "--out", &out]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let csv = read(&out, "inference.csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "point,inference.tolerance,repeat,seed,t_s,compensation,accuracy_mean,accuracy_sd,repeats"
    );
    assert_eq!(lines.count(), 2 * 3 * 3);
    // Each point's folder holds its own inference files.
    for p in ["p0000", "p0001"] {
        assert!(
            Path::new(&out)
                .join("points")
                .join(p)
                .join("programming.csv")
                .is_file()
        );
    }
    // The looser tolerance programs with fewer pulses.
    let pulses = |p: &str| -> u64 {
        let t = read(&format!("{out}/points/{p}"), "programming.csv");
        let c: Vec<&str> = t.lines().nth(1).unwrap().split(',').collect();
        c[3].parse::<u64>().unwrap() + c[4].parse::<u64>().unwrap()
    };
    assert!(pulses("p0001") < pulses("p0000"));
}

#[test]
fn errors_are_located_before_any_work() {
    let work = TempDir::new("infer-errors");
    // No [inference] section.
    let (out, o) = infer(&work, "none", BASE, &[]);
    assert_ne!(o.code, Some(0));
    assert!(
        o.stderr.contains("needs an [inference] section"),
        "{}",
        o.stderr
    );
    assert!(!Path::new(&out).join("metrics.csv").exists());
    // A key of another choice, located at its line.
    let (_, o) = infer(
        &work,
        "other",
        &format!("{BASE}{INFER}nu_mean = 0.1\n"),
        &[],
    );
    assert_ne!(o.code, Some(0));
    assert!(
        o.stderr.contains("other.toml:35:1") && o.stderr.contains("inference.nu_mean"),
        "{}",
        o.stderr
    );
    // Times that do not increase.
    let (_, o) = infer(
        &work,
        "times",
        &format!("{BASE}{INFER}"),
        &["--set", "inference.times_s=[10.0, 5.0]"],
    );
    assert!(o.stderr.contains("times must increase"), "{}", o.stderr);
    // Weight noise on a network of tiles.
    let (_, o) = infer(
        &work,
        "wn",
        &format!("{BASE}{INFER}"),
        &[
            "--set",
            "train.software=false",
            "--set",
            "train.weight_noise=0.1",
        ],
    );
    assert!(o.stderr.contains("train.weight_noise"), "{}", o.stderr);
}

#[test]
fn traces_devices_over_time_and_plot_redraws_the_folder() {
    let work = TempDir::new("infer-trace");
    let text = format!(
        "{BASE}{INFER}\n[trace]\nsample = 3\n\n[[trace.devices]]\nlayer = 1\nrow = 4\ncol = 2\n"
    );
    let (out, o) = infer(&work, "t", &text, &[]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let csv = read(&out, "trace_t.csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "t_s,repeat,layer,tile,row,col,role,g_prog_us,g_us"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    // The addressed cell's two devices and three sampled devices, at 3 times x 3 repeats.
    assert_eq!(rows.len(), 5 * 3 * 3);
    let addressed: Vec<_> = rows
        .iter()
        .filter(|r| r[2] == "1" && r[4] == "4" && r[5] == "2")
        .collect();
    assert_eq!(addressed.len(), 2 * 3 * 3);
    // A device's programmed conductance is the same at every time and repeat.
    let g0: Vec<&str> = addressed
        .iter()
        .filter(|r| r[6] == "G+")
        .map(|r| r[7])
        .collect();
    assert!(g0.iter().all(|g| *g == g0[0]));
    // `aimsim plot` redraws the accuracy plot of an infer folder.
    let plots = work.sub("plots");
    let o = aimsim(&["plot", &out, "--out", &plots]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(Path::new(&plots).join("accuracy_vs_time.svg").is_file());
}

#[test]
fn a_convolutional_network_deploys_bit_identically_at_any_thread_count() {
    // Trained in software and on the chip: the kernel matrices are programmed and aged like dense
    // layers (one row per kernel), every output position read through the aged tiles.
    let work = TempDir::new("infer-conv");
    let conv = BASE.replace(
        "hidden = [12]\n",
        "layers = [{ kind = \"conv\", channels = 3, kernel = 3, padding = 1 }, { kind = \"maxpool\", size = 2 }, { kind = \"dense\", units = 12 }]\nactivation = \"tanh\"\n",
    )
    .replace("epochs = 2\nlr = 0.2", "epochs = 3\nlr = 0.1");
    assert!(conv.contains("epochs = 3"));
    for (tag, text) in [
        ("sw", format!("{conv}{INFER}")),
        (
            "chip",
            format!(
                "{}{INFER}",
                conv.replace("software = true", "software = false")
            ),
        ),
    ] {
        let (a, o) = infer(&work, &format!("{tag}-1"), &text, &["--threads", "1"]);
        assert_eq!(o.code, Some(0), "{}", o.stderr);
        let (b, o) = infer(&work, &format!("{tag}-2"), &text, &["--threads", "2"]);
        assert_eq!(o.code, Some(0), "{}", o.stderr);
        for f in ["accuracy_vs_time.csv", "programming.csv"] {
            assert_eq!(read(&a, f), read(&b, f), "{tag}: {f}");
        }
        if tag == "chip" {
            // Deployed as trained: nothing is programmed.
            continue;
        }
        // Kernels 3 x 9 and the dense layers 12 x 48 and 10 x 12, one device per weight on
        // one-sided pairs (two devices each).
        let p = read(&a, "programming.csv");
        let devices: u64 = p
            .lines()
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(devices, 2 * (3 * 9 + 12 * 48 + 10 * 12), "{tag}");
        // Above chance right after programming.
        let acc = read(&a, "accuracy_vs_time.csv");
        let first: Vec<f64> = acc
            .lines()
            .filter(|l| l.contains(",10,none,"))
            .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
            .collect();
        assert!(!first.is_empty());
        assert!(
            first.iter().sum::<f64>() / first.len() as f64 > 30.0,
            "{tag}: {acc}"
        );
    }
}
