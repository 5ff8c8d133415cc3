//! Every shipped scenario validates and runs, and the built-in preset list matches `scenarios/devices/`.
//!
//! These tests spawn the real `aimsim` binary, as a user would.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

const PULSES: usize = 20;
const DEVICES: usize = 3;
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
const FILES: [&str; 8] = [
    "trace.npy",
    "trace.csv",
    "trace_devices.csv",
    "response.svg",
    "response.png",
    "step_vs_g.svg",
    "step_vs_g.png",
    "manifest.json",
];

mod common;
use common::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `*.toml` under `dir`, recursively, as paths relative to the package root, sorted.
fn tomls_under(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "toml") {
                out.push(p);
            }
        }
    }
    let mut found = Vec::new();
    walk(&root().join(dir), &mut found);
    let mut rel: Vec<String> = found
        .iter()
        .map(|p| {
            p.strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    rel.sort();
    rel
}

/// Reads a version-1.0 little-endian float32 C-order `.npy` file: (shape, values).
fn stem(rel: &str) -> String {
    Path::new(rel)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn every_scenario_file_validates() {
    let all = tomls_under(Path::new("scenarios"));
    assert!(
        all.len() >= 14,
        "expected the shipped scenarios, found {all:?}"
    );
    // Every folder of shipped scenarios is walked, the NeuroSim protocol set included (validated only:
    // its run takes tens of minutes, docs/results.md).
    for must in [
        "scenarios/neurosim/neurosim.toml",
        "scenarios/seed/d-neurosim-presets.toml",
    ] {
        assert!(all.iter().any(|r| r == must), "{must} not found in {all:?}");
    }
    std::thread::scope(|s| {
        for rel in &all {
            s.spawn(move || {
                let o = aimsim(&["validate", rel]);
                assert_eq!(o.code, Some(0), "{rel}: {}", o.stderr);
                assert!(o.stderr.is_empty(), "{rel}: unexpected stderr {}", o.stderr);
                assert_eq!(
                    o.stdout.lines().last(),
                    Some(format!("ok: {rel} is valid").as_str()),
                    "{rel}: {}",
                    o.stdout
                );
            });
        }
    });
}

/// Runs `aimsim device` on one scenario and checks everything it wrote.
fn check_device_run(rel: &str) {
    let out = TempDir::new(&stem(rel));
    let pulses = PULSES.to_string();
    let devices = DEVICES.to_string();
    let o = aimsim(&[
        "device",
        rel,
        "--out",
        out.0.to_str().unwrap(),
        "--pulses",
        &pulses,
        "--devices",
        &devices,
        "--cycles",
        "1",
    ]);
    assert_eq!(o.code, Some(0), "{rel}: {}", o.stderr);

    let mut names: Vec<String> = fs::read_dir(&out.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = FILES.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        names, want,
        "{rel}: output folder holds exactly the result files"
    );

    let text = fs::read_to_string(root().join(rel)).unwrap();
    let m: Value =
        serde_json::from_str(&fs::read_to_string(out.0.join("manifest.json")).unwrap()).unwrap();
    let rows = 1 + 2 * PULSES;
    assert_eq!(m["command"], "device");
    assert_eq!(m["scenario"]["path"], rel);
    let sha: String = Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        m["scenario"]["sha256"],
        sha.as_str(),
        "{rel}: manifest sha256 is not the file's"
    );
    let name_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("name"))
        .unwrap();
    assert!(
        name_line.contains(&format!("\"{}\"", m["scenario"]["name"].as_str().unwrap())),
        "{rel}: manifest name {} vs {name_line}",
        m["scenario"]["name"]
    );
    assert_eq!(m["protocol"]["pulses"], PULSES);
    assert_eq!(
        m["protocol"]["cycles"], 1,
        "{rel}: shipped scenarios run one cycle"
    );
    assert_eq!(m["protocol"]["devices"], DEVICES);
    assert_eq!(m["trace"]["rows"], rows);
    assert_eq!(m["trace"]["devices"], DEVICES);
    let files: Vec<&str> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(files, FILES, "{rel}");

    let (shape, v) = read_npy(&out.0.join("trace.npy"));
    assert_eq!(shape, [rows, DEVICES], "{rel}");
    assert!(
        v.iter().all(|x| x.is_finite()),
        "{rel}: non-finite value in trace.npy"
    );
    let unit = m["trace"]["unit"].as_str().unwrap();
    match unit {
        // Conductances: never negative, and nowhere near absurd for the shipped devices.
        "uS" => assert!(
            v.iter().all(|x| (0.0..1e4).contains(x)),
            "{rel}: conductance outside [0, 1e4) uS"
        ),
        // Weights of the aihwkit-style step models live near [-1, 1] (with device-to-device spread).
        "w" => assert!(
            v.iter().all(|x| x.abs() < 10.0),
            "{rel}: weight outside (-10, 10)"
        ),
        other => panic!("{rel}: unexpected unit {other}"),
    }
    let at = |r: usize, d: usize| v[r * DEVICES + d];
    // Without read or write noise (the trace records what a read sees) or stuck devices, every device
    // starts at its minimum and potentiates.
    let plain = ![
        "read_noise",
        "write_noise",
        "stuck_min",
        "stuck_max",
        "stuck_random",
    ]
    .iter()
    .any(|k| text.contains(k));
    for d in (0..DEVICES).filter(|_| plain) {
        let min = (0..rows).map(|r| at(r, d)).fold(f32::INFINITY, f32::min);
        assert_eq!(
            at(0, d),
            min,
            "{rel}: device {d} does not start at its minimum"
        );
        assert!(
            at(PULSES, d) > at(0, d),
            "{rel}: device {d} did not potentiate: {} after {PULSES} up pulses from {}",
            at(PULSES, d),
            at(0, d)
        );
    }

    let csv = fs::read_to_string(out.0.join("trace.csv")).unwrap();
    assert_eq!(
        csv.lines().next(),
        Some("cycle,pulse,direction,column,device,conductance")
    );
    assert_eq!(csv.lines().count(), 1 + rows * DEVICES, "{rel}");

    let png = fs::read(out.0.join("response.png")).unwrap();
    assert!(
        png.starts_with(PNG_MAGIC),
        "{rel}: response.png is not a PNG"
    );
    assert_eq!(&png[12..16], b"IHDR");
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert!(w >= 200 && h >= 200, "{rel}: PNG is {w}x{h}");
    let svg = fs::read_to_string(out.0.join("response.svg")).unwrap();
    assert!(svg.contains("<svg"), "{rel}: response.svg is not SVG");
    assert!(
        svg.contains("pulse number"),
        "{rel}: SVG lacks the x axis label"
    );
    // The axis says what is plotted, in the prefix that suits the device (Ag:a-Si's tens of nS).
    let y_labels: Vec<String> = if unit == "uS" {
        ["p", "n", "u", "m"]
            .iter()
            .map(|p| format!("conductance ({p}S)"))
            .collect()
    } else {
        vec!["weight (normalized units)".into()]
    };
    assert!(
        y_labels.iter().any(|l| svg.contains(l.as_str())),
        "{rel}: SVG lacks the y axis label, one of {y_labels:?}"
    );
    if rel.contains("ag-a-si") {
        assert!(svg.contains("conductance (nS)"), "{rel}: not in nS");
    }
    let steps = fs::read_to_string(out.0.join("step_vs_g.svg")).unwrap();
    for text in [
        " change per pulse (",
        " before the pulse (",
        "10-90 percentile",
    ] {
        assert!(steps.contains(text), "{rel}: step_vs_g.svg lacks {text}");
    }
}

#[test]
fn every_device_scenario_runs_and_writes_sane_outputs() {
    let devices = tomls_under(Path::new("scenarios/devices"));
    assert!(!devices.is_empty());
    std::thread::scope(|s| {
        for rel in &devices {
            s.spawn(move || check_device_run(rel));
        }
    });
}

fn listed_presets() -> Vec<String> {
    let o = aimsim(&["presets"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    o.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn presets_list_matches_the_devices_folder() {
    let listed = listed_presets();
    let unique: BTreeSet<&String> = listed.iter().collect();
    assert_eq!(
        unique.len(),
        listed.len(),
        "a preset is listed twice: {listed:?}"
    );
    let on_disk: BTreeSet<String> = tomls_under(Path::new("scenarios/devices"))
        .iter()
        .map(|r| stem(r))
        .collect();
    let listed: BTreeSet<String> = listed.into_iter().collect();
    assert_eq!(
        listed, on_disk,
        "`aimsim presets` and scenarios/devices/*.toml disagree"
    );
    // Each line carries the preset's label, not just its name.
    let o = aimsim(&["presets"]);
    for line in o.stdout.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.split_whitespace().count() >= 2,
            "preset line without a label: {line:?}"
        );
    }
}

/// `preset = "<name>"` in a minimal scenario validates, and reproduces the preset file's own trace
/// (same seed, same protocol flags): the embedded preset is the file.
#[test]
fn every_preset_works_from_a_minimal_scenario() {
    let dir = TempDir::new("presets");
    let names = listed_presets();
    std::thread::scope(|s| {
        for name in &names {
            let dir = &dir.0;
            s.spawn(move || {
                let file = root().join("scenarios/devices").join(format!("{name}.toml"));
                let text = fs::read_to_string(&file).unwrap();
                let seed = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("seed = "))
                    .expect("shipped scenarios set a seed")
                    .trim();
                // The minimal scenario lives in a folder with no data files: the preset's own must be built in.
                let minimal = dir.join(format!("{name}.toml"));
                fs::write(
                    &minimal,
                    format!("[scenario]\nname = \"uses-{name}\"\nseed = {seed}\n\n[device]\npreset = \"{name}\"\n"),
                )
                .unwrap();
                let m = minimal.to_str().unwrap();
                let o = aimsim(&["validate", m]);
                assert_eq!(o.code, Some(0), "preset {name}: {}", o.stderr);
                assert!(o.stdout.contains(&format!("preset {name}")), "{name}: {}", o.stdout);
                assert!(o.stdout.contains(&format!("ok: {m} is valid")), "{name}: {}", o.stdout);

                let flags = ["--pulses", "12", "--devices", "2", "--cycles", "1"];
                let via_preset = dir.join(format!("out-preset-{name}"));
                let via_file = dir.join(format!("out-file-{name}"));
                let o = aimsim(&[&["device", m, "--out", via_preset.to_str().unwrap()], &flags[..]].concat());
                assert_eq!(o.code, Some(0), "preset {name}: {}", o.stderr);
                let rel = format!("scenarios/devices/{name}.toml");
                let o = aimsim(&[&["device", &rel, "--out", via_file.to_str().unwrap()], &flags[..]].concat());
                assert_eq!(o.code, Some(0), "{rel}: {}", o.stderr);
                assert_eq!(
                    fs::read(via_preset.join("trace.npy")).unwrap(),
                    fs::read(via_file.join("trace.npy")).unwrap(),
                    "preset {name} does not reproduce {rel}"
                );
                let mf: Value =
                    serde_json::from_str(&fs::read_to_string(via_preset.join("manifest.json")).unwrap()).unwrap();
                assert_eq!(mf["scenario"]["preset"], name.as_str());
            });
        }
    });
}
