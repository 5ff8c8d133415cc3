//! End-to-end tests of checkpoints (`aimsim run --resume`) and of traces streamed to disk, through the
//! binary.

mod common;

use std::fs;
use std::path::Path;

use common::{TempDir, aimsim, read_npy};

/// A small training run on built-in glyphs (about a second in a dev build). `{cell}` and `{update}` are
/// filled in per test so every controller with state gets resumed.
const BASE: &str = r#"
[scenario]
name = "ckpt"
seed = 11

[device]
model = "neurosim"
levels = 64
nl_up = 2.4
nl_down = -4.88
g_min = 0.1
g_max = 10.0
c2c = 0.02
read_noise = 0.01

[tile]
rows = 16
cols = 24
cell = "{cell}"

[update]
{update}

[train]
dataset = "glyphs"
glyph_side = 8
train_samples = 120
test_samples = 40
hidden = [20]
epochs = 4
lr = 0.1
checkpoint_every = {every}

[trace]
devices = [{ layer = 0, tile = 1, row = 3, col = 5 }, { layer = 1, row = 2, col = 7, array = 0 }]
sample = 4
every = {trace_every}
unit = "{unit}"
"#;

fn scenario(cell: &str, update: &str, every: u32, trace_every: u32, unit: &str) -> String {
    fill(BASE, cell, update, every, trace_every, unit)
}

/// `base` (a scenario text with `BASE`'s placeholders) filled in.
fn fill(base: &str, cell: &str, update: &str, every: u32, trace_every: u32, unit: &str) -> String {
    base.replace("{cell}", cell)
        .replace("{update}", update)
        .replace("{every}", &every.to_string())
        .replace("{trace_every}", &trace_every.to_string())
        .replace("{unit}", unit)
}

/// Every result file of a run folder (plots and the manifest hold wall times or render-dependent bytes
/// and are left out).
fn results(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for f in [
        "metrics.csv",
        "histogram.csv",
        "trace.npy",
        "trace.csv",
        "trace_devices.csv",
        "checkpoint.bin",
        "summary.csv",
        "weights.npz",
        "conductances.npz",
    ] {
        let p = dir.join(f);
        out.push((
            f.to_string(),
            fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        ));
    }
    out
}

fn run(args: &[&str]) {
    let o = aimsim(args);
    assert_eq!(o.code, Some(0), "aimsim {args:?}\n{}", o.stderr);
}

/// Runs the scenario uninterrupted, then stopped after `stop` epochs (with rows past the last
/// checkpoint left in the partial trace files, as a crash would) and resumed; compares every result.
fn assert_resume_is_bit_identical(text: &str, stop: u32) {
    let t = TempDir::new("resume");
    let sc = t.write("s.toml", text);
    let (full, cut) = (t.sub("full"), t.sub("cut"));
    run(&["run", &sc, "--out", &full]);
    run(&[
        "run",
        &sc,
        "--out",
        &cut,
        "--stop-after-epoch",
        &stop.to_string(),
    ]);
    assert!(
        !Path::new(&cut).join("metrics.csv").exists(),
        "a stopped run wrote its results"
    );
    // Garbage after what the checkpoint knows about must be dropped on resume.
    for f in [".trace.npy.partial", ".trace.csv.partial"] {
        let p = Path::new(&cut).join(f);
        let mut b = fs::read(&p).unwrap();
        b.extend_from_slice(b"\x01\x02garbage past the checkpoint\n");
        fs::write(&p, b).unwrap();
    }
    run(&["run", &sc, "--out", &cut, "--resume"]);
    for ((name, a), (_, b)) in results(Path::new(&full))
        .into_iter()
        .zip(results(Path::new(&cut)))
    {
        assert!(
            a == b,
            "{name} differs between the uninterrupted and the resumed run"
        );
    }
}

#[test]
fn resumed_run_is_bit_identical_with_unidirectional_refresh() {
    let update =
        "controller = \"unidirectional\"\nscheme = \"stochastic\"\nbl = 31\nrefresh_every = 3";
    // Checkpoints every other epoch, stopped after epoch 3: epoch 3 is redone from epoch 2's checkpoint.
    assert_resume_is_bit_identical(&scenario("pair", update, 2, 7, "updates"), 3);
}

#[test]
fn resumed_run_is_bit_identical_with_tiki_taka_and_mixed_precision() {
    let tt = "controller = \"tiki-taka\"\nscheme = \"stochastic\"\ntransfer_every = 3";
    assert_resume_is_bit_identical(&scenario("multi-array", tt, 1, 500, "pulses"), 1);
    let mp = "controller = \"mixed-precision\"\nmax_pulses = 4";
    assert_resume_is_bit_identical(&scenario("pair", mp, 1, 13, "updates"), 2);
}

#[test]
fn corrupt_or_foreign_checkpoints_are_refused_with_clear_errors() {
    let t = TempDir::new("corrupt");
    let text = scenario("pair", "controller = \"bidirectional\"", 1, 10, "updates");
    let sc = t.write("s.toml", &text);
    let out = t.sub("out");
    run(&["run", &sc, "--out", &out, "--stop-after-epoch", "1"]);
    let ck = Path::new(&out).join("checkpoint.bin");
    let good = fs::read(&ck).unwrap();
    let resume = |extra: &[&str]| {
        let mut args = vec!["run", sc.as_str(), "--out", out.as_str(), "--resume"];
        args.extend_from_slice(extra);
        aimsim(&args)
    };

    // One flipped byte in the payload.
    let mut b = good.clone();
    let mid = b.len() / 2;
    b[mid] ^= 0x01;
    fs::write(&ck, &b).unwrap();
    let o = resume(&[]);
    assert_eq!(o.code, Some(1), "a corrupt checkpoint was accepted");
    assert!(
        o.stderr.contains("checkpoint.bin") && o.stderr.contains("corrupt"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);

    // Truncated.
    fs::write(&ck, &good[..good.len() - 100]).unwrap();
    let o = resume(&[]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("truncated"), "{}", o.stderr);

    // Not a checkpoint at all.
    fs::write(&ck, b"hello").unwrap();
    let o = resume(&[]);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("not an aimsim checkpoint"),
        "{}",
        o.stderr
    );

    // Another format version.
    let mut b = good.clone();
    b[8..12].copy_from_slice(&99u32.to_le_bytes());
    fs::write(&ck, &b).unwrap();
    let o = resume(&[]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("format version 99"), "{}", o.stderr);

    // Another scenario (an override changes the effective configuration).
    fs::write(&ck, &good).unwrap();
    let o = resume(&["--set", "train.lr=0.2"]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("another scenario"), "{}", o.stderr);

    // The intact checkpoint still resumes.
    let o = resume(&[]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);

    // Nothing to resume from.
    let empty = t.sub("empty");
    let o = aimsim(&["run", &sc, "--out", &empty, "--resume"]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("no checkpoint.bin"), "{}", o.stderr);
}

#[test]
fn training_trace_has_the_selected_devices_cadence_and_documented_shape() {
    let t = TempDir::new("trace");
    let every = 7u64;
    let text = scenario(
        "pair",
        "controller = \"bidirectional\"",
        1,
        every as u32,
        "updates",
    );
    let sc = t.write("s.toml", &text);
    let out = t.sub("out");
    run(&["run", &sc, "--out", &out]);
    let dir = Path::new(&out);

    // Columns: the addressed devices first (both devices of the first cell, G+ of the second), then 4
    // random ones.
    let side = fs::read_to_string(dir.join("trace_devices.csv")).unwrap();
    let lines: Vec<&str> = side.lines().collect();
    assert_eq!(lines[0], "column,layer,tile,array,role,row,col,unit");
    assert_eq!(lines[1], "0,0,1,0,G+,3,5,uS");
    assert_eq!(lines[2], "1,0,1,1,G-,3,5,uS");
    assert_eq!(lines[3], "2,1,0,0,G+,2,7,uS");
    assert_eq!(lines.len(), 1 + 3 + 4);

    // npy: rows = records (step 0, then every 7th of 4 x 120 updates), columns = devices.
    let (shape, v) = read_npy(&dir.join("trace.npy"));
    let records = 1 + (4 * 120) / every as usize;
    assert_eq!(shape, [records, 7]);
    assert!(
        v.iter().all(|g| (0.1..=10.0).contains(g)),
        "conductance out of range"
    );

    // csv: one line per record and device, matching the npy bit for bit; steps follow the cadence.
    let csv = fs::read_to_string(dir.join("trace.csv")).unwrap();
    let mut it = csv.lines();
    assert_eq!(
        it.next(),
        Some("step,pulses,column,layer,tile,array,role,row,col,conductance")
    );
    let rows: Vec<Vec<&str>> = it.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), records * 7);
    for (k, r) in rows.iter().enumerate() {
        let (rec, col) = (k / 7, k % 7);
        assert_eq!(r[0], (rec as u64 * every).to_string(), "step of line {k}");
        assert_eq!(r[2], col.to_string());
        assert_eq!(
            r[3..9].join(","),
            lines[1 + col]
                .split(',')
                .skip(1)
                .take(6)
                .collect::<Vec<_>>()
                .join(",")
        );
        let g: f32 = r[9].parse().unwrap();
        assert_eq!(g.to_bits(), v[rec * 7 + col].to_bits());
    }
    // The pulse counter only grows.
    let pulses: Vec<u64> = rows
        .iter()
        .step_by(7)
        .map(|r| r[1].parse().unwrap())
        .collect();
    assert!(pulses.windows(2).all(|w| w[0] <= w[1]) && pulses[records - 1] > 0);
}

#[test]
fn pulse_cadence_records_after_every_k_pulses() {
    let t = TempDir::new("pulses");
    let k = 2000u64;
    let text = scenario(
        "pair",
        "controller = \"bidirectional\"",
        1,
        k as u32,
        "pulses",
    );
    let sc = t.write("s.toml", &text);
    let out = t.sub("out");
    run(&["run", &sc, "--out", &out]);
    let csv = fs::read_to_string(Path::new(&out).join("trace.csv")).unwrap();
    let pulses: Vec<u64> = csv
        .lines()
        .skip(1)
        .step_by(7)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(pulses.len() > 3, "too few records: {pulses:?}");
    assert_eq!(pulses[0], 0);
    // Each record after the first follows the update that crossed the next multiple of k.
    for w in pulses.windows(2) {
        assert!(
            w[1] / k > w[0] / k,
            "records at {} and {} pulses",
            w[0],
            w[1]
        );
    }
}

#[test]
fn trace_addresses_outside_the_network_are_refused() {
    let t = TempDir::new("badaddr");
    let text = scenario("pair", "controller = \"bidirectional\"", 1, 10, "updates").replace(
        "{ layer = 1, row = 2, col = 7, array = 0 }",
        "{ layer = 1, row = 2, col = 7, array = 2 }",
    );
    let sc = t.write("s.toml", &text);
    let o = aimsim(&["run", &sc, "--out", &t.sub("out")]);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("trace.devices.1") && o.stderr.contains("no array 2"),
        "{}",
        o.stderr
    );
}

#[test]
fn protocol_trace_selects_devices_and_keeps_the_cadence() {
    let t = TempDir::new("proto-trace");
    let text = r#"
[scenario]
name = "p"
seed = 5

[device]
model = "neurosim"
levels = 32
nl_up = 1.5
nl_down = -1.5
g_min = 1.0
g_max = 5.0
c2c = 0.01

[protocol]
pulses = 31
devices = 50

[trace]
devices = [{ col = 42 }, { col = 7 }]
sample = 3
every = 4
"#;
    let sc = t.write("p.toml", text);
    let out = t.sub("out");
    run(&["device", &sc, "--out", &out]);
    let dir = Path::new(&out);
    let side = fs::read_to_string(dir.join("trace_devices.csv")).unwrap();
    let lines: Vec<&str> = side.lines().collect();
    assert_eq!(lines[0], "column,device,unit");
    assert_eq!(lines[1], "0,42,uS");
    assert_eq!(lines[2], "1,7,uS");
    assert_eq!(lines.len(), 1 + 5, "{side}");
    // 62 pulses: records after pulses 0, 4, ..., 60.
    let (shape, v) = read_npy(&dir.join("trace.npy"));
    assert_eq!(shape, [16, 5]);
    let csv = fs::read_to_string(dir.join("trace.csv")).unwrap();
    let pulses: Vec<&str> = csv
        .lines()
        .skip(1)
        .step_by(5)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    let want: Vec<String> = (0..16).map(|r| (4 * r).to_string()).collect();
    assert_eq!(pulses, want);
    // The same devices traced on their own give the same values: selection does not change the draws.
    let all = t.sub("all");
    let whole = t.write("w.toml", text.split("[trace]").next().unwrap());
    run(&["device", &whole, "--out", &all]);
    let (shape_all, w) = read_npy(&Path::new(&all).join("trace.npy"));
    assert_eq!(shape_all, [63, 50]);
    for r in 0..16 {
        assert_eq!(v[r * 5].to_bits(), w[4 * r * 50 + 42].to_bits(), "row {r}");
        assert_eq!(
            v[r * 5 + 1].to_bits(),
            w[4 * r * 50 + 7].to_bits(),
            "row {r}"
        );
    }
    // Addresses outside the protocol are refused with the key named.
    let bad = t.write("b.toml", text.replace("col = 42", "col = 50"));
    let o = aimsim(&["device", &bad, "--out", &t.sub("bad")]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("trace.devices.0"), "{}", o.stderr);
}

#[test]
fn resumed_run_is_bit_identical_with_batched_constant_step_noise() {
    // Single cells of a continuous constant-step device with c2c noise: the rows are written by the fused
    // loop with the tiles' noise lanes, whose state the checkpoint must carry.
    let device = "[device]\nmodel = \"constant-step\"\ndw_min = 0.01\nup_down = 0.0\nw_min = -1.0\n\
                  w_max = 1.0\nc2c = 0.3\n\n[device.d2d]\ndw_min = { dist = \"normal\", cv = 0.3 }\n";
    let start = BASE.find("[device]").unwrap();
    let end = BASE.find("[tile]").unwrap();
    let base = format!("{}{}\n{}", &BASE[..start], device, &BASE[end..]);
    let update = "controller = \"sgd-stochastic\"\nbl = 31";
    let text = fill(&base, "single", update, 1, 9, "updates");
    assert_resume_is_bit_identical(&text, 2);
}

#[test]
fn resumed_run_with_a_validation_split_is_bit_identical() {
    // The validation metrics travel in the checkpoint's metrics rows and the sample order covers the
    // training part of the split only.
    let update = "controller = \"bidirectional\"\nscheme = \"stochastic\"\nbl = 31";
    let text = scenario("pair", update, 1, 11, "updates")
        .replace("epochs = 4\n", "epochs = 4\nvalidation = 30\n");
    assert!(text.contains("validation = 30"));
    assert_resume_is_bit_identical(&text, 2);
}

#[test]
fn stop_after_epoch_without_checkpoints_is_refused_up_front() {
    let t = TempDir::new("stop-no-ckpt");
    let text = scenario("pair", "controller = \"bidirectional\"", 0, 10, "updates");
    let sc = t.write("s.toml", &text);
    let out = t.sub("out");
    let o = aimsim(&["run", &sc, "--out", &out, "--stop-after-epoch", "1"]);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(
        o.stderr.contains("train.checkpoint_every = 0"),
        "{}",
        o.stderr
    );
    assert!(!Path::new(&out).exists(), "refused before any work");
}

/// The checkpoint scenario as a small convolutional network trained in mini-batches of 7 (the last batch
/// of each epoch shorter), a device of the conv layer traced.
fn conv_scenario(update: &str, cell: &str) -> String {
    let text = scenario(cell, update, 1, 9, "updates")
        .replace(
            "hidden = [20]\n",
            "batch = 7\nlayers = [\n  { kind = \"conv\", channels = 4, kernel = 3, padding = 1 },\n  { kind = \"maxpool\", size = 2 },\n  { kind = \"dense\", units = 20 },\n]\n",
        )
        .replace("{ layer = 0, tile = 1, row = 3, col = 5 }", "{ layer = 0, row = 3, col = 5 }")
        .replace("{ layer = 1, row = 2, col = 7, array = 0 }", "{ layer = 2, row = 2, col = 7, array = 0 }");
    assert!(text.contains("batch = 7") && text.contains("layer = 2"));
    text
}

#[test]
fn resumed_conv_run_in_mini_batches_is_bit_identical() {
    let update = "controller = \"bidirectional\"\nscheme = \"stochastic\"\nbl = 31";
    assert_resume_is_bit_identical(&conv_scenario(update, "pair"), 2);
    let mp = "controller = \"mixed-precision\"\nmax_pulses = 4";
    let text = conv_scenario(mp, "pair")
        .replace("batch = 7\n", "batch = 7\nbatch_update = \"accumulated\"\n");
    assert_resume_is_bit_identical(&text, 1);
}

#[test]
fn conv_run_in_mini_batches_is_bit_identical_on_one_and_two_threads() {
    let t = TempDir::new("conv-threads");
    let update = "controller = \"sgd-stochastic\"\nbl = 31";
    let sc = t.write("s.toml", conv_scenario(update, "single"));
    let (one, two) = (t.sub("one"), t.sub("two"));
    // `aimsim run` gives each run a team of rayon's thread count.
    for (dir, n) in [(&one, "1"), (&two, "2")] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_aimsim"))
            .args(["run", sc.as_str(), "--out", dir.as_str()])
            .env("RAYON_NUM_THREADS", n)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for ((name, a), (_, b)) in results(Path::new(&one))
        .into_iter()
        .zip(results(Path::new(&two)))
    {
        assert!(a == b, "{name} differs between 1 and 2 threads");
    }
    // The tiles were written (every epoch pulsed).
    let m = fs::read_to_string(Path::new(&one).join("metrics.csv")).unwrap();
    let header: Vec<&str> = m.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "pulses_up").unwrap();
    for row in m.lines().skip(2) {
        let up: u64 = row.split(',').nth(col).unwrap().parse().unwrap();
        assert!(up > 0, "{row}");
    }
}

#[test]
fn adding_a_variant_or_a_seed_keeps_the_other_runs_checkpoints() {
    // A run stopped after epoch 2; the scenario then gains a variant and a seed; --resume continues
    // the stopped run from its checkpoint (and starts the new ones), ending as an uninterrupted run.
    let t = TempDir::new("ckpt-grow");
    let base = scenario("pair", "controller = \"bidirectional\"", 1, 10, "updates")
        .replace("epochs = 4\n", "epochs = 4\nseeds = [11]\n");
    let grown = base.replace("seeds = [11]", "seeds = [11, 12]")
        + "\n[[variant]]\nname = \"a\"\n\n[[variant]]\nname = \"b\"\nset = { \"train.lr\" = 0.05 }\n";
    let first = base + "\n[[variant]]\nname = \"a\"\n";
    let (s1, s2) = (t.write("s1.toml", &first), t.write("s2.toml", &grown));
    let (full, cut) = (t.sub("full"), t.sub("cut"));
    run(&["run", &s1, "--out", &full]);
    run(&["run", &s1, "--out", &cut, "--stop-after-epoch", "2"]);
    let o = aimsim(&["run", &s2, "--out", &cut, "--resume"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    // The three new runs start from epoch 0; the stopped one does not.
    assert_eq!(
        o.stderr.matches("no checkpoint in").count(),
        3,
        "{}",
        o.stderr
    );
    assert!(
        !o.stderr.contains("a seed 11: no checkpoint"),
        "{}",
        o.stderr
    );
    for name in [
        "metrics.csv",
        "histogram.csv",
        "trace.npy",
        "trace.csv",
        "weights.npz",
        "conductances.npz",
    ] {
        let read = |d: &str| fs::read(Path::new(d).join("a/seed-11").join(name)).unwrap();
        assert!(
            read(&full) == read(&cut),
            "{name} differs after resuming in the grown scenario"
        );
    }
    assert!(Path::new(&cut).join("b/seed-12/metrics.csv").exists());
}

#[test]
fn resumed_ep_run_is_bit_identical() {
    // Equilibrium propagation on tiles (random-sign nudges, so the nudge stream's index must travel in
    // the checkpoint) with separate feedback arrays, and in software.
    let update = "controller = \"bidirectional\"\nscheme = \"stochastic\"\nbl = 31";
    let base = scenario("pair", update, 1, 11, "updates")
        .replace("epochs = 4\n", "epochs = 3\nalgorithm = \"ep\"\n")
        .replace(
            "[trace]",
            "[ep]\nnudge = \"random-sign\"\nfeedback = \"separate\"\nsteps_free = 8\nsteps_nudged = 3\n\n[trace]",
        );
    assert!(base.contains("algorithm = \"ep\"") && base.contains("random-sign"));
    assert_resume_is_bit_identical(&base, 2);
    let software = base.replace(
        "algorithm = \"ep\"\n",
        "algorithm = \"ep\"\nsoftware = true\n",
    );
    let t = TempDir::new("resume-ep-sw");
    let sc = t.write("s.toml", &software);
    let (full, cut) = (t.sub("full"), t.sub("cut"));
    run(&["run", &sc, "--out", &full]);
    run(&["run", &sc, "--out", &cut, "--stop-after-epoch", "1"]);
    run(&["run", &sc, "--out", &cut, "--resume"]);
    for name in ["metrics.csv", "weights.npz"] {
        let read = |d: &str| fs::read(Path::new(d).join(name)).unwrap();
        assert!(
            read(&full) == read(&cut),
            "{name}: software EP resumed differently"
        );
    }
}
