//! End-to-end tests of weights in and out: `weights.npz` and `conductances.npz` of `aimsim run`, and
//! runs that start from such a file (`train.init_weights`), through the binary.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use aimsim::weights::{Array, read_npz};
use common::{TempDir, aimsim};

/// A small run on built-in glyphs (a fraction of a second).
const BASE: &str = r#"
[scenario]
name = "weights"
seed = 3

[device]
model = "soft-bounds"
dw_min = 0.01
c2c = 0.1

[tile]
rows = 16
cols = 24

[train]
dataset = "glyphs"
glyph_side = 8
train_samples = 80
test_samples = 40
hidden = [12]
epochs = 2
lr = 0.2
"#;

fn run(args: &[&str]) {
    let o = aimsim(args);
    assert_eq!(o.code, Some(0), "aimsim {args:?}\n{}", o.stderr);
}

fn arrays(path: &Path) -> Vec<Array> {
    read_npz(path)
        .unwrap()
        .into_iter()
        .map(|e| e.array.unwrap())
        .collect()
}

/// The test accuracy of a run's last epoch, as metrics.csv writes it.
fn final_test_accuracy(dir: &Path) -> String {
    let text = fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "test_accuracy").unwrap();
    let last = lines.last().unwrap();
    last.split(',').nth(col).unwrap().to_string()
}

/// Trains with `sets`, then runs 0 epochs from the run's weights.npz: the same test accuracy, and
/// the same weights.npz byte for byte.
fn assert_round_trip(tag: &str, sets: &[&str]) {
    let t = TempDir::new(tag);
    let sc = t.write("s.toml", BASE);
    let (trained, again) = (t.sub("trained"), t.sub("again"));
    let mut args = vec!["run", &sc, "--out", &trained];
    for s in sets {
        args.extend(["--set", s]);
    }
    run(&args);
    fs::copy(
        Path::new(&trained).join("weights.npz"),
        t.0.join("trained.npz"),
    )
    .unwrap();
    let mut args = vec![
        "run",
        &sc,
        "--out",
        &again,
        "--set",
        "train.epochs=0",
        "--set",
        "train.init_weights=\"trained.npz\"",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    run(&args);
    let (a, b) = (Path::new(&trained), Path::new(&again));
    assert_eq!(
        final_test_accuracy(a),
        final_test_accuracy(b),
        "{tag}: test accuracy"
    );
    assert_eq!(
        fs::read(a.join("weights.npz")).unwrap(),
        fs::read(b.join("weights.npz")).unwrap(),
        "{tag}: weights.npz"
    );
    let m: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(b.join("manifest.json")).unwrap()).unwrap();
    assert!(
        m["files"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("weights.npz")),
        "{m}"
    );
}

#[test]
fn float_weights_round_trip_bit_exactly() {
    assert_round_trip("rt-digital", &["train.software=true"]);
    assert_round_trip("rt-tile-bias", &["train.software=true", "train.bias=tile"]);
    assert_round_trip(
        "rt-ep",
        &[
            "train.software=true",
            "train.algorithm=ep",
            "train.hidden=[6]",
            "ep.steps_free=15",
            "ep.steps_nudged=5",
        ],
    );
    assert_round_trip(
        "rt-ep-separate",
        &[
            "train.software=true",
            "train.algorithm=ep",
            "train.hidden=[6, 5]",
            "ep.feedback=separate",
            "ep.steps_free=15",
            "ep.steps_nudged=5",
        ],
    );
}

#[test]
fn feedback_weights_need_a_network_with_separate_feedback_arrays() {
    let t = TempDir::new("feedback");
    let sc = t.write("s.toml", BASE);
    let ep = [
        "--set",
        "train.software=true",
        "--set",
        "train.algorithm=ep",
        "--set",
        "train.hidden=[6, 5]",
    ];
    let out = t.sub("out");
    let mut args = vec!["run", &sc, "--out", &out, "--set", "ep.feedback=separate"];
    args.extend(ep);
    run(&args);
    let names: Vec<String> = arrays(&Path::new(&out).join("weights.npz"))
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert!(
        names.contains(&"layer1.feedback".to_string())
            && names.contains(&"layer2.feedback".to_string())
            && !names.contains(&"layer0.feedback".to_string()),
        "{names:?}"
    );
    fs::copy(Path::new(&out).join("weights.npz"), t.0.join("ep.npz")).unwrap();
    let mut args = vec!["validate", &sc, "--set", "train.init_weights=\"ep.npz\""];
    args.extend(ep);
    let o = aimsim(&args);
    assert!(
        o.stderr.contains("train.init_weights")
            && o.stderr.contains("`layer1.feedback`")
            && o.stderr.contains("ep.feedback = \"separate\""),
        "{}",
        o.stderr
    );
    // A BP network takes no feedback arrays at all.
    let o = aimsim(&[
        "validate",
        &sc,
        "--set",
        "train.init_weights=\"ep.npz\"",
        "--set",
        "train.hidden=[6, 5]",
    ]);
    assert!(
        o.stderr
            .contains("unexpected array(s) layer1.feedback, layer2.feedback"),
        "{}",
        o.stderr
    );
}

#[test]
fn weights_npz_holds_the_networks_layers_and_conductances_npz_its_devices() {
    let t = TempDir::new("layout");
    let sc = t.write("s.toml", BASE);
    let out = t.sub("out");
    run(&["run", &sc, "--out", &out, "--set", "train.bias=tile"]);
    let out = Path::new(&out);
    let w = arrays(&out.join("weights.npz"));
    let names: Vec<(&str, &[usize])> = w
        .iter()
        .map(|a| (a.name.as_str(), a.shape.as_slice()))
        .collect();
    assert_eq!(
        names,
        [
            ("layer0.weight", &[12usize, 64][..]),
            ("layer0.bias", &[12][..]),
            ("layer1.weight", &[10, 12][..]),
            ("layer1.bias", &[10][..]),
        ]
    );
    // 65 columns (64 inputs and the bias) on tiles of 24: block columns 0..3; 12 rows: one block row.
    let c = arrays(&out.join("conductances.npz"));
    let got: Vec<(&str, &[usize])> = c
        .iter()
        .map(|a| (a.name.as_str(), a.shape.as_slice()))
        .collect();
    let want: Vec<(String, Vec<usize>)> = [(0, 24), (1, 24), (2, 17)]
        .iter()
        .flat_map(|(k, cols)| {
            (0..2).map(move |a| (format!("layer0.tile0.{k}.array{a}"), vec![12, *cols]))
        })
        .chain((0..2).map(|a| (format!("layer1.tile0.0.array{a}"), vec![10, 13])))
        .collect();
    assert_eq!(
        got,
        want.iter()
            .map(|(n, s)| (n.as_str(), s.as_slice()))
            .collect::<Vec<_>>()
    );
    // The manifest says how to read them; on pair cells w = w_scale (u+ - u-) with
    // u = (G - lo) / (hi - lo) gives back the weights and the bias column.
    let m: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let note = &m["conductances"];
    assert_eq!(note["unit"], "w", "{note}");
    assert_eq!(note["cell"], "pair", "{note}");
    let lo = note["nominal_range"][0].as_f64().unwrap() as f32;
    let hi = note["nominal_range"][1].as_f64().unwrap() as f32;
    let scale = note["w_scale"].as_f64().unwrap() as f32;
    let get = |n: &str| &c.iter().find(|a| a.name == n).unwrap().data;
    let (plus, minus) = (get("layer1.tile0.0.array0"), get("layer1.tile0.0.array1"));
    let (w1, b1) = (&w[2].data, &w[3].data);
    for i in 0..10 {
        for j in 0..13 {
            let k = i * 13 + j;
            let v = scale * ((plus[k] - lo) / (hi - lo) - (minus[k] - lo) / (hi - lo));
            let want = if j < 12 { w1[i * 12 + j] } else { b1[i] };
            assert!((v - want).abs() < 1e-5, "({i}, {j}): {v} vs {want}");
        }
    }
}

#[test]
fn analog_layers_are_programmed_with_the_given_weights() {
    let t = TempDir::new("program");
    let sc = t.write("s.toml", BASE);
    let float = t.sub("float");
    run(&["run", &sc, "--out", &float, "--set", "train.software=true"]);
    fs::copy(Path::new(&float).join("weights.npz"), t.0.join("w.npz")).unwrap();
    let given = arrays(&t.0.join("w.npz"));
    for (program, tol) in [("exact", 1e-5f32), ("pulses", 0.05)] {
        let out = t.sub(program);
        run(&[
            "run",
            &sc,
            "--out",
            &out,
            "--set",
            "train.epochs=0",
            "--set",
            "train.init_weights=\"w.npz\"",
            "--set",
            &format!("train.init_program={program}"),
        ]);
        let held = arrays(&Path::new(&out).join("weights.npz"));
        assert_eq!(held.len(), given.len());
        for (g, h) in given.iter().zip(&held) {
            assert_eq!((&g.name, &g.shape), (&h.name, &h.shape));
            // Weights inside the devices' range: exact programming holds them up to rounding, pulses
            // up to the verify tolerance and write noise. Digital biases are taken as they are.
            let worst = g
                .data
                .iter()
                .zip(&h.data)
                .filter(|(a, _)| a.abs() < 0.9)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst <= tol, "{program}: {} off by {worst}", g.name);
        }
    }
}

#[test]
fn a_bad_starting_file_is_a_located_error_before_any_work() {
    let t = TempDir::new("errors");
    let text = format!("{BASE}init_weights = \"w.npz\"\n");
    let sc = t.write("s.toml", &text);
    let line = text.lines().count();
    let out = t.sub("out");
    // Missing file: named, at the key's line.
    let o = aimsim(&["run", &sc, "--out", &out]);
    assert_ne!(o.code, Some(0));
    assert!(
        o.stderr.contains(&format!("s.toml:{line}:1"))
            && o.stderr.contains("train.init_weights")
            && o.stderr.contains("w.npz: no such file"),
        "{}",
        o.stderr
    );
    assert!(!Path::new(&out).join("metrics.csv").exists());
    // A file of another network: the array, both shapes and the key that sizes it.
    let float = t.sub("float");
    let plain = t.write("plain.toml", BASE);
    run(&[
        "run",
        &plain,
        "--out",
        &float,
        "--set",
        "train.software=true",
    ]);
    fs::copy(Path::new(&float).join("weights.npz"), t.0.join("w.npz")).unwrap();
    let o = aimsim(&["validate", &sc, "--set", "train.hidden=[7]"]);
    assert_ne!(o.code, Some(0));
    assert!(
        o.stderr.contains(&format!("s.toml:{line}:1"))
            && o.stderr
                .contains("`layer0.weight` has shape (12, 64), expected (7, 64)")
            && o.stderr.contains("train.hidden = [7]"),
        "{}",
        o.stderr
    );
    // A network of more layers: the missing arrays by name.
    let o = aimsim(&["validate", &sc, "--set", "train.hidden=[12, 5]"]);
    assert!(
        o.stderr
            .contains("missing array(s) layer2.weight, layer2.bias"),
        "{}",
        o.stderr
    );
    // 0 epochs only with starting weights.
    let o = aimsim(&["validate", &plain, "--set", "train.epochs=0"]);
    assert!(o.stderr.contains("train.init_weights"), "{}", o.stderr);
}

/// numpy reads the files, when python3 with numpy is there (CI may have neither; the archive's
/// structure is checked in Rust by the unit tests of `weights`).
#[test]
fn numpy_loads_the_files_when_it_is_installed() {
    let has_numpy = Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_numpy {
        eprintln!("python3 with numpy not found: skipped");
        return;
    }
    let t = TempDir::new("numpy");
    let sc = t.write("s.toml", BASE);
    let out = t.sub("out");
    run(&["run", &sc, "--out", &out]);
    let script = "import numpy as np, sys\n\
        w = np.load(sys.argv[1] + '/weights.npz')\n\
        c = np.load(sys.argv[1] + '/conductances.npz')\n\
        print(sorted((k, w[k].dtype.str, w[k].shape) for k in w.files))\n\
        print(len(c.files), c['layer1.tile0.0.array0'].shape)\n";
    let o = Command::new("python3")
        .args(["-c", script, &out])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        text.contains("('layer0.bias', '<f4', (12,)), ('layer0.weight', '<f4', (12, 64))")
            && text.contains("8 (10, 12)"),
        "{text}"
    );
}

#[test]
fn a_conv_network_writes_pytorch_conv2d_weights() {
    // The shipped VGG-style scenario, shortened: its convolutions' weights come out as PyTorch's
    // `Conv2d` weights `(out, in_channels, k, k)`, the dense layers' as `(out, in)`.
    let t = TempDir::new("conv-weights");
    let out = t.sub("out");
    run(&[
        "run",
        "scenarios/conv/vgg-glyphs.toml",
        "--out",
        &out,
        "--set",
        "train.train_samples=48",
        "--set",
        "train.test_samples=16",
        "--set",
        "train.epochs=1",
        "--set",
        "train.seeds=[1]",
    ]);
    for variant in ["software", "reference", "mixed-precision"] {
        let dir = Path::new(&out).join(variant).join("seed-1");
        let arrays = read_npz(&dir.join("weights.npz")).unwrap();
        let shape = |n: &str| {
            arrays
                .iter()
                .find(|a| a.name == n)
                .unwrap_or_else(|| panic!("{variant}: no {n}"))
                .array
                .as_ref()
                .unwrap()
                .shape
                .clone()
        };
        assert_eq!(shape("layer0.weight"), vec![8, 1, 3, 3]);
        assert_eq!(shape("layer1.weight"), vec![8, 8, 3, 3]);
        assert_eq!(shape("layer3.weight"), vec![16, 16, 3, 3]);
        // 16x16 glyphs, two poolings: 16 x 4 x 4 = 256 inputs to the dense layer.
        assert_eq!(shape("layer4.weight"), vec![64, 256]);
        assert_eq!(shape("layer5.weight"), vec![10, 64]);
        assert_eq!(shape("layer3.bias"), vec![16]);
    }
    // The conv weights go back in: a software network started from a run's weights.npz and not
    // trained (epochs = 0) scores what the run ended with.
    let dir = Path::new(&out).join("software/seed-1");
    let w = dir.join("weights.npz");
    let again = t.sub("again");
    let init = format!("train.init_weights=\"{}\"", w.display());
    let o = aimsim(&[
        "run",
        "scenarios/conv/vgg-glyphs.toml",
        "--out",
        &again,
        "--set",
        "train.train_samples=48",
        "--set",
        "train.test_samples=16",
        "--set",
        "train.epochs=0",
        "--set",
        "train.seeds=[1]",
        "--set",
        &init,
    ]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let final_acc = |p: &Path| {
        let m = fs::read_to_string(p.join("metrics.csv")).unwrap();
        let header: Vec<String> = m
            .lines()
            .next()
            .unwrap()
            .split(',')
            .map(String::from)
            .collect();
        let col = header.iter().position(|h| h == "test_accuracy").unwrap();
        m.lines()
            .last()
            .unwrap()
            .split(',')
            .nth(col)
            .unwrap()
            .to_string()
    };
    assert_eq!(
        final_acc(&dir),
        final_acc(&Path::new(&again).join("software/seed-1"))
    );
    // A file of another network is refused with the shapes it needs.
    let o = aimsim(&[
        "validate",
        "scenarios/conv/vgg-glyphs.toml",
        "--set",
        "train.layers=[{kind=\"conv\", channels=4, kernel=3}]",
        "--set",
        &init,
    ]);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("train.init_weights") && o.stderr.contains("(4, 1, 3, 3)"),
        "{}",
        o.stderr
    );
}
