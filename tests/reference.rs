//! docs/scenarios.md and the scenario parser agree: every documented key is a key the parser accepts
//! (and nothing else is), every documented default validates, and every documented range is the range
//! validation enforces (values at its edges pass, values just outside fail, naming the key).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use aimsim::scenario::{ScenarioError, load_str};

const DOC: &str = include_str!("../docs/scenarios.md");

mod common;
use common::docs::{Row, documented};

const META: &str = "[scenario]\nname = \"t\"\n";
const STEP: &str = "[device]\nmodel = \"soft-bounds\"\ndw_min = 0.1\n";
const LINEAR: &str = "[device]\nmodel = \"linear-step\"\ndw_min = 0.1\n";
const EXP: &str = "[device]\nmodel = \"exp-step\"\ndw_min = 0.1\n";
const SB_REFERENCE: &str = "[device]\nmodel = \"soft-bounds-reference\"\ndw_min = 0.1\n";
const NEUROSIM: &str = "[device]\nmodel = \"neurosim\"\nlevels = 16\nnl_up = 1.0\nnl_down = -1.0\ng_min = 0.1\ng_max = 10.0\n";

/// The keys the parser accepts in a section, read from its "unknown field" message.
fn accepted(section: &str) -> BTreeSet<String> {
    let body = match section {
        "" => format!("zz_not_a_key = 1\n{META}{STEP}"),
        "scenario" => format!("{STEP}{META}zz_not_a_key = 1\n"),
        "device" => format!("{META}{STEP}zz_not_a_key = 1\n"),
        "device.d2d.*" => format!(
            "{META}{STEP}[device.d2d.dw_min]\ndist = \"normal\"\ncv = 0.1\nzz_not_a_key = 1\n"
        ),
        "variant" => format!("{META}{STEP}[[variant]]\nname = \"a\"\nzz_not_a_key = 1\n"),
        s => format!("{META}{STEP}[{s}]\nzz_not_a_key = 1\n"),
    };
    let e = load_str(&body, "t.toml", Path::new("."), &[]).unwrap_err();
    let list = e
        .message
        .split("expected one of ")
        .nth(1)
        .or_else(|| e.message.split("expected ").nth(1))
        .unwrap_or_else(|| panic!("{section}: no key list in {e}"));
    list.split(", ")
        .flat_map(|k| k.split(" or "))
        .map(|k| k.trim().trim_matches('`').to_string())
        .filter(|k| !k.is_empty())
        .collect()
}

#[test]
fn documented_keys_are_exactly_the_accepted_keys() {
    let rows = documented();
    let mut by_section: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &rows {
        by_section
            .entry(r.section.clone())
            .or_default()
            .insert(r.key.clone());
    }
    // Every section the parser knows has a documented table, and the same keys.
    let top = accepted("");
    for s in &top {
        let s = if s == "device" {
            // [device] sub-tables are documented separately.
            for sub in ["device.table", "device.d2d.*"] {
                assert_eq!(
                    by_section.get(sub).cloned().unwrap_or_default(),
                    accepted(sub),
                    "docs/scenarios.md [{sub}] and the parser disagree"
                );
            }
            "device"
        } else {
            s.as_str()
        };
        assert_eq!(
            by_section.get(s).cloned().unwrap_or_default(),
            accepted(s),
            "docs/scenarios.md [{s}] and the parser disagree (left: documented, right: accepted)"
        );
    }
    assert_eq!(
        accepted("io.backward"),
        by_section["io.backward"],
        "[io.backward]"
    );
    // Every documented section is one the parser knows.
    for s in by_section.keys() {
        let root = s.split('.').next().unwrap();
        assert!(
            top.contains(root),
            "docs/scenarios.md documents unknown section [{s}]"
        );
    }
    // The d2d parameters are listed in the prose of [device.d2d].
    let d2d = DOC
        .split("### `[device.d2d]`")
        .nth(1)
        .unwrap()
        .split("| key |")
        .next()
        .unwrap();
    for p in accepted("device.d2d") {
        assert!(
            d2d.contains(&format!("`{p}`")),
            "[device.d2d] prose does not list `{p}`"
        );
    }
}

/// The base text and extra overrides under which a key applies.
fn context(section: &str, key: &str) -> (String, Vec<String>) {
    let dev = match (section, key) {
        ("device", "nl_up" | "nl_down" | "levels_down" | "g_min" | "g_max") => NEUROSIM,
        ("device", "gamma_up" | "gamma_down") => LINEAR,
        ("device", "a" | "b" | "a_up" | "a_down") => EXP,
        ("device", "reference_mean" | "reference_std" | "subtract_symmetry_point") => SB_REFERENCE,
        _ => STEP,
    };
    let sets: Vec<String> = match (section, key) {
        ("update", "scheme") => vec!["update.controller=bidirectional".into()],
        ("update", "max_pulses") => vec!["update.controller=sgd-count".into()],
        ("update", "threshold") => vec!["update.controller=sign-threshold".into()],
        ("update", "direction") => vec!["update.controller=relative-count".into()],
        // refresh_lo <= refresh_hi: probe each against the other's extreme.
        ("update", "refresh_hi") => vec![
            "update.controller=unidirectional".into(),
            "update.refresh_lo=0".into(),
        ],
        ("update", "refresh_lo") => vec![
            "update.controller=unidirectional".into(),
            "update.refresh_hi=1".into(),
        ],
        ("update", k) if k.starts_with("refresh") => {
            vec!["update.controller=unidirectional".into()]
        }
        ("update", k) if k.starts_with("transfer") => vec![
            "update.controller=tiki-taka".into(),
            "tile.cell=multi-array".into(),
        ],
        ("tile", "gamma") => vec!["tile.cell=multi-array".into()],
        ("tile", "reference") => vec!["tile.cell=single".into()],
        ("sweep", _) => vec!["train.epochs=1".into()],
        ("train", "weight_noise") => vec!["train.software=true".into()],
        ("inference", k) => {
            let mut v = vec!["train.dataset=\"glyphs\"".to_string()];
            v.extend(
                match k {
                    "noise_sigma_us" => &["inference.noise=\"constant\""][..],
                    "nu_mean" => &["inference.drift=\"constant\""][..],
                    "nu_sd" => &["inference.drift=\"constant\"", "inference.nu_mean=0.1"][..],
                    "relaxed" | "rate_median" | "rate_sigma" | "tau_s" => {
                        &["inference.retention=\"relaxation\""][..]
                    }
                    "q_s" => &["inference.read_noise=\"constant\""][..],
                    "fail_shape" | "fail_p_high" => &["inference.fail_tau_s=1e6"][..],
                    _ => &[][..],
                }
                .iter()
                .map(|s| s.to_string()),
            );
            v
        }
        ("device.d2d.*", "sigma" | "cv") => vec!["device.d2d.dw_min.dist=normal".into()],
        ("device.d2d.*", _) => vec!["device.d2d.dw_min.dist=uniform".into()],
        _ => vec![],
    };
    (format!("{META}{dev}"), sets)
}

fn dotted(section: &str, key: &str) -> String {
    match section {
        "device.d2d.*" => format!("device.d2d.dw_min.{key}"),
        // The probed entry of `try_value`: the convolution first, a pooling or dense layer second.
        "train.layers" if ["size", "units"].contains(&key) => format!("train.layers.1.{key}"),
        "train.layers" => format!("train.layers.0.{key}"),
        s => format!("{s}.{key}"),
    }
}

fn try_value(r: &Row, value: &str) -> Result<(), ScenarioError> {
    if r.section == "train.layers" {
        // Entries of an array of tables, written into the file: a convolution (64x64 glyphs, so
        // that kernels and windows up to 64 fit), then the probed layer where it is not the conv.
        let (text, mut sets) = context("train", &r.key);
        sets.push("train.glyph_side=64".into());
        let mut conv = vec![("kind", "\"conv\"".to_string()), ("channels", "2".into())];
        conv.push(("kernel", "1".into()));
        let mut second: Option<Vec<(&str, String)>> = None;
        match r.key.as_str() {
            "kind" => conv[0].1 = value.to_string(),
            "channels" | "kernel" | "stride" | "padding" => {
                conv.retain(|(k, _)| *k != r.key.as_str());
                conv.push((r.key.as_str(), value.to_string()));
            }
            "size" => second = Some(vec![("kind", "\"maxpool\"".into()), ("size", value.into())]),
            _ => {
                second = Some(vec![
                    ("kind", "\"dense\"".into()),
                    (r.key.as_str(), value.into()),
                ])
            }
        }
        if r.key == "units" {
            sets.push("train.hidden=[]".into());
        }
        let table = |kv: &[(&str, String)]| {
            let mut t = "[[train.layers]]\n".to_string();
            for (k, v) in kv {
                t += &format!("{k} = {v}\n");
            }
            t
        };
        let mut text = format!("{text}{}", table(&conv));
        if let Some(s) = second {
            text += &table(&s);
        }
        return load_str(&text, "t.toml", Path::new("."), &sets).map(|_| ());
    }
    if r.section == "trace.devices" {
        // Entries of an array of tables: written into the file, since `--set` paths name tables.
        let (text, sets) = context(&r.section, &r.key);
        let col = if r.key == "col" { "" } else { "col = 0\n" };
        let text = format!("{text}[[trace.devices]]\n{col}{} = {value}\n", r.key);
        return load_str(&text, "t.toml", Path::new("."), &sets).map(|_| ());
    }
    let (text, mut sets) = context(&r.section, &r.key);
    sets.push(format!("{}={value}", dotted(&r.section, &r.key)));
    load_str(&text, "t.toml", Path::new("."), &sets).map(|_| ())
}

/// The literal TOML value of a documented default, when it is one.
fn literal(r: &Row) -> Option<String> {
    let d = r.default.split(" (").next()?.trim();
    let d = d
        .strip_prefix('`')
        .and_then(|x| x.strip_suffix('`'))
        .unwrap_or(d);
    if ["none", "required", "search"].contains(&d) || d.contains(' ') {
        return None;
    }
    let v = if r.ty.starts_with("string") {
        format!("\"{d}\"")
    } else {
        d.to_string()
    };
    format!("v = {v}").parse::<toml::Table>().ok().map(|_| v)
}

#[test]
fn documented_defaults_validate() {
    let mut checked = 0;
    for r in documented() {
        let Some(v) = literal(&r) else { continue };
        if let Err(e) = try_value(&r, &v) {
            panic!(
                "the documented default of `{}` ({v}) does not validate: {e}",
                dotted(&r.section, &r.key)
            );
        }
        checked += 1;
    }
    assert!(checked >= 60, "only {checked} defaults checked");
}

/// Values inside and just outside a documented range: `integer A..B`, `integer >= A`,
/// `integer, 0 or A..B`, `float >= A`, `float > A`, `float in [A, B]`, `float in (A, B]`,
/// `fraction in [0, 1]`, `array of integers A..B`. Symbolic or open ranges give nothing.
fn range_probes(ty: &str) -> Option<(Vec<String>, Vec<String>)> {
    let head = ty.split(" (").next()?;
    let num = |s: &str| s.trim().parse::<f64>().ok();
    let int_range = |r: &str| -> Option<(f64, f64)> {
        let (a, b) = r.split_once("..")?;
        Some((num(a)?, num(b.split(',').next()?)?))
    };
    let f = |v: f64| {
        if v.fract() == 0.0 && v.abs() < 1e15 {
            format!("{v:.1}")
        } else {
            v.to_string()
        }
    };
    let i = |v: f64| format!("{}", v as i64);
    if let Some(r) = head.strip_prefix("integer, 0 or ") {
        let (a, b) = int_range(r)?;
        return Some((vec![i(0.0), i(a), i(b)], vec![i(a - 1.0), i(b + 1.0)]));
    }
    if let Some(r) = head.strip_prefix("array of integers ") {
        let (a, b) = int_range(r.split(',').next()?)?;
        return Some((
            vec![format!("[{}]", i(a)), format!("[{}]", i(b))],
            vec![format!("[{}]", i(a - 1.0)), format!("[{}]", i(b + 1.0))],
        ));
    }
    // `float in [a, b], unit`: the unit follows the closing bracket.
    let head = match head.find([']', ')']) {
        Some(end) if head.contains(" in ") => &head[..=end],
        _ => head.split(',').next()?,
    };
    if let Some(r) = head.strip_prefix("integer ") {
        if let Some(a) = r.strip_prefix(">= ") {
            let a = num(a)?;
            return Some((vec![i(a)], vec![i(a - 1.0)]));
        }
        let (a, b) = int_range(r)?;
        let mut out = vec![i(a - 1.0)];
        if b < 1e15 {
            out.push(i(b + 1.0));
        }
        return Some((vec![i(a)], out));
    }
    let r = head
        .strip_prefix("float ")
        .or_else(|| head.strip_prefix("fraction "))?;
    if let Some(a) = r.strip_prefix(">= ") {
        let a = num(a)?;
        return Some((vec![f(a), f(a + 1.0)], vec![f(a - 0.5)]));
    }
    if let Some(a) = r.strip_prefix("> ") {
        let a = num(a)?;
        return Some((vec![f(a + 0.5)], vec![f(a), f(a - 1.0)]));
    }
    let inner = r.strip_prefix("in ")?;
    let (lo_open, hi_open) = (inner.starts_with('('), inner.ends_with(')'));
    let (a, b) = inner[1..inner.len() - 1].split_once(',')?;
    let (a, b) = (num(a)?, num(b)?);
    let mut inside = vec![f((a + b) / 2.0)];
    let mut outside = vec![f(a - 1.0), f(b + 1.0)];
    if lo_open {
        outside.push(f(a));
    } else {
        inside.push(f(a));
    }
    if hi_open {
        outside.push(f(b));
    } else {
        inside.push(f(b));
    }
    Some((inside, outside))
}

#[test]
fn documented_ranges_are_enforced_and_errors_name_the_key() {
    let mut checked = 0;
    let mut problems = Vec::new();
    for r in documented() {
        let Some((inside, outside)) = range_probes(&r.ty) else {
            continue;
        };
        let key = dotted(&r.section, &r.key);
        for v in inside {
            if let Err(e) = try_value(&r, &v) {
                problems.push(format!(
                    "`{key}` = {v} lies in the documented range `{}` but is refused: {e}",
                    r.ty
                ));
            }
        }
        for v in outside {
            match try_value(&r, &v) {
                Ok(()) => problems.push(format!(
                    "`{key}` = {v} lies outside the documented range `{}` but validates",
                    r.ty
                )),
                Err(e) if e.key.as_deref() != Some(key.as_str()) => {
                    problems.push(format!("`{key}` = {v}: the error names another key: {e}"))
                }
                Err(_) => {}
            }
        }
        checked += 1;
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 50, "only {checked} ranges checked");
}

#[test]
fn an_undocumented_key_is_refused_with_file_line_and_key() {
    for (section, text) in [
        ("device", format!("{META}{STEP}nl_upp = 1.0\n")),
        ("train", format!("{META}{STEP}[train]\nepoch = 2\n")),
        (
            "sweep",
            format!("{META}{STEP}[train]\n[sweep]\ngrids = 1\n"),
        ),
    ] {
        let e = load_str(&text, "t.toml", Path::new("."), &[]).unwrap_err();
        let line = text.lines().count();
        assert_eq!(e.origin, format!("t.toml:{line}:1"), "{section}: {e}");
        let key = e.key.clone().unwrap();
        assert!(key.starts_with(section), "{e}");
        assert!(
            !DOC.contains(&format!("`{}`", key.rsplit('.').next().unwrap())),
            "{key} is documented"
        );
        assert!(e.message.contains("unknown field"), "{e}");
    }
}

#[test]
fn a_device_zero_reference_needs_a_single_weight_unit_device() {
    let text = format!("{META}{NEUROSIM}[tile]\ncell = \"single\"\nreference = \"device-zero\"\n");
    let e = load_str(&text, "t.toml", Path::new("."), &[]).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("tile.reference"), "{e}");
    assert!(e.message.contains("weight units"), "{e}");
    let text = format!("{META}{STEP}[tile]\nreference = \"device-zero\"\n");
    let e = load_str(&text, "t.toml", Path::new("."), &[]).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("tile.reference"), "{e}");
    assert!(e.message.contains("single"), "{e}");
    let text = format!("{META}{STEP}[tile]\ncell = \"single\"\nreference = \"device-zero\"\n");
    assert!(load_str(&text, "t.toml", Path::new("."), &[]).is_ok());
}

#[test]
fn bounds_and_clocks_that_overflow_are_refused() {
    let text = format!("{META}{STEP}");
    for (set, key) in [
        ("io.inp_bound=inf", "io.inp_bound"),
        ("io.out_bound=inf", "io.out_bound"),
        ("io.backward.inp_bound=inf", "io.backward.inp_bound"),
        ("cost.clock_hz=1e-300", "cost.clock_hz"),
        ("cost.clock_hz=1e300", "cost.clock_hz"),
    ] {
        let e = load_str(&text, "t.toml", Path::new("."), &[set.to_string()]).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{set}: {e}");
    }
    // Without the converter an infinite bound is an ideal periphery.
    let ok = [
        "io.dac_bits=0",
        "io.inp_bound=inf",
        "io.adc_bits=0",
        "io.out_bound=inf",
    ];
    let sets: Vec<String> = ok.iter().map(|s| s.to_string()).collect();
    assert!(load_str(&text, "t.toml", Path::new("."), &sets).is_ok());
}
