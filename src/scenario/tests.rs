//! Unit tests of the scenario loader: documented keys, overrides, presets, error locations.

use std::path::Path;

use aimsim_devices::Model;
use toml::Value;

use super::{load_str, parse_override, parse_table_csv};

/// The keys serde accepts where `zz_not_a_key` is written, read from its "unknown field" message.
fn accepted_keys(text: &str) -> Vec<String> {
    let err = load_str(text, "t.toml", Path::new("."), &[]).unwrap_err();
    let msg = err.message;
    let list = msg
        .split("expected one of ")
        .nth(1)
        .or_else(|| msg.split("expected ").nth(1))
        .unwrap_or_else(|| panic!("no key list in: {msg}"));
    list.split(", ")
        .flat_map(|k| k.split(" or "))
        .map(|k| k.trim().trim_matches('`').to_string())
        .filter(|k| !k.is_empty())
        .collect()
}

#[test]
fn every_key_is_documented() {
    let doc = include_str!("../../docs/scenarios.md");
    let meta = "[scenario]\nname = \"t\"\n";
    let dev = "[device]\nmodel = \"soft-bounds\"\ndw_min = 0.1\n";
    let texts = [
        format!("zz_not_a_key = 1\n{meta}{dev}"),
        format!("{dev}[scenario]\nname = \"t\"\nzz_not_a_key = 1\n"),
        format!("{meta}{dev}zz_not_a_key = 1\n"),
        format!("{meta}{dev}[device.d2d]\nzz_not_a_key = 1\n"),
        format!("{meta}{dev}[device.d2d.dw_min]\ndist = \"normal\"\ncv = 0.1\nzz_not_a_key = 1\n"),
        format!("{meta}{dev}[device.table]\nzz_not_a_key = 1\n"),
        format!("{meta}{dev}[protocol]\nzz_not_a_key = 1\n"),
        format!("{meta}{dev}[tile]\nzz_not_a_key = 1\n"),
        format!("{meta}{dev}[io]\nzz_not_a_key = 1\n"),
        format!("{meta}{dev}[io.backward]\nzz_not_a_key = 1\n"),
        format!("{meta}{dev}[update]\nzz_not_a_key = 1\n"),
        format!("{meta}{dev}[cost]\nzz_not_a_key = 1\n"),
        format!("{meta}{dev}[train]\nzz_not_a_key = 1\n"),
        format!("{meta}{dev}[ep]\nzz_not_a_key = 1\n"),
        format!("{meta}{dev}[local]\nzz_not_a_key = 1\n"),
        format!("{meta}{dev}[inference]\nzz_not_a_key = 1\n"),
        format!("{meta}{dev}[trace]\nzz_not_a_key = 1\n"),
        format!("{meta}{dev}[[trace.devices]]\ncol = 0\nzz_not_a_key = 1\n"),
        format!("{meta}{dev}[[train.layers]]\nkind = \"dense\"\nzz_not_a_key = 1\n"),
        format!("{meta}{dev}[[variant]]\nname = \"a\"\nzz_not_a_key = 1\n"),
        format!("{meta}{dev}[sweep]\nzz_not_a_key = 1\n"),
    ];
    let mut total = 0;
    for text in &texts {
        let keys = accepted_keys(text);
        assert!(keys.len() >= 2, "{text}: {keys:?}");
        for k in keys {
            total += 1;
            let documented = doc.contains(&format!("`{k}`")) || doc.contains(&format!("`[{k}]`"));
            assert!(documented, "docs/scenarios.md does not document `{k}`");
        }
    }
    assert_eq!(
        total, 228,
        "a section gained or lost keys: update this count and docs/scenarios.md"
    );
}

#[test]
fn overrides_parse_toml_or_fall_back_to_strings() {
    let (p, v) = parse_override("device.c2c=0.5").unwrap();
    assert_eq!(p, vec!["device", "c2c"]);
    assert_eq!(v, Value::Float(0.5));
    let (_, v) = parse_override("device.model=soft-bounds").unwrap();
    assert_eq!(v, Value::String("soft-bounds".into()));
    let (_, v) = parse_override("device.d2d.nl_up={dist=\"normal\",sigma=0.5}").unwrap();
    assert!(v.is_table());
    assert!(parse_override("novalue").is_err());
    assert!(parse_override("a..b=1").is_err());
}

#[test]
fn preset_keys_merge_and_user_keys_win() {
    let text = "[scenario]\nname = \"t\"\n[device]\npreset = \"neurosim-epiram\"\nc2c = 0.0\n";
    let (s, _, _) = load_str(text, "t.toml", Path::new("."), &[]).unwrap();
    assert_eq!(s.hardware.device.c2c, 0.0);
    assert_eq!(s.preset.as_deref(), Some("neurosim-epiram"));
    match &s.hardware.device.model {
        Model::NeuroSim(n) => assert_eq!((n.nl_up, n.nl_down), (0.5, -0.5)),
        m => panic!("{m:?}"),
    }
}

#[test]
fn errors_point_at_the_line_of_the_key() {
    let text = "[scenario]\nname = \"t\"\n\n[device]\nmodel = \"neurosim\"\nlevels = 64\ng_min = 2.0\ng_max = 1.0\nnl_up = 1\nnl_down = -1\n";
    let e = load_str(text, "t.toml", Path::new("."), &[]).unwrap_err();
    assert_eq!(e.origin, "t.toml:7:1");
    assert_eq!(e.key.as_deref(), Some("device.g_min"));
    let e = load_str(text, "t.toml", Path::new("."), &["device.g_max=0.5".into()]).unwrap_err();
    assert_eq!(e.origin, "t.toml:7:1", "g_min is still the offending key");
    let e = load_str(text, "t.toml", Path::new("."), &["device.g_min=-1".into()]).unwrap_err();
    assert_eq!(e.origin, "--set device.g_min=-1");
}

#[test]
fn crop_binarize_and_lr_scale_are_checked() {
    let base = "[scenario]\nname = \"t\"\n[device]\nmodel = \"soft-bounds\"\ndw_min = 0.1\n[train]\nhidden = [8]\n";
    let load = |sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        load_str(base, "t.toml", Path::new("."), &sets)
    };
    let (s, _, _) = load(&[
        "train.crop=12",
        "train.binarize=0.5",
        "train.lr_scale=[1.0, 0.25]",
    ])
    .unwrap();
    let t = s.train.unwrap();
    assert_eq!((t.crop, t.binarize), (Some(12), Some(0.5)));
    assert_eq!(t.lr_scale, vec![1.0, 0.25]);
    let (s, _, _) = load(&[]).unwrap();
    let t = s.train.unwrap();
    assert_eq!((t.crop, t.binarize, t.lr_scale.len()), (None, None, 0));
    for (set, key, says) in [
        ("train.crop=17", "train.crop", "[1, 16]"),
        ("train.crop=0", "train.crop", "[1, 16]"),
        ("train.binarize=0", "train.binarize", "(0, 1]"),
        ("train.binarize=1.5", "train.binarize", "(0, 1]"),
        (
            "train.lr_scale=[1.0]",
            "train.lr_scale",
            "one factor per weight layer (2",
        ),
        ("train.lr_scale=[1.0, -1.0]", "train.lr_scale", "> 0"),
    ] {
        let e = load(&[set]).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{set}");
        assert!(e.to_string().contains(says), "{set}: {e}");
    }
    let e = load(&["train.dataset=teacher-student", "train.crop=4"]).unwrap_err();
    assert!(e.to_string().contains("image datasets"), "{e}");
    let e = load(&["train.algorithm=ep", "train.lr_scale=[1.0, 1.0]"]).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("train.lr_scale"));
}

#[test]
fn table_csv_errors_name_line_and_byte() {
    let csv = "direction,pulse,conductance\nup,0,1\nup,1,0.5\ndown,0,2\ndown,1,1\n";
    let e = parse_table_csv(csv, "m.csv").unwrap_err();
    // Not increasing: the conductance cell of line 3.
    assert_eq!(e.origin, "m.csv:3:6");
    let ok = "direction,pulse,conductance\ndown,1,1\nup,1,2\nup,0,1\ndown,0,2\n";
    let t = parse_table_csv(ok, "m.csv").unwrap();
    assert_eq!(t.up, vec![1.0, 2.0]);
    assert_eq!(t.down, vec![2.0, 1.0]);
    let gap = "direction,pulse,conductance\nup,0,1\nup,2,2\ndown,0,2\ndown,1,1\n";
    assert!(
        parse_table_csv(gap, "m.csv")
            .unwrap_err()
            .message
            .contains("pulse 1")
    );
}

/// Conductances that parse as numbers but no device has (inf, negative, 1e300) are reported at their
/// cell of the CSV, not at the scenario's `[device.table]` line.
#[test]
fn table_csv_values_out_of_range_name_their_cell() {
    for (bad, shown) in [
        ("inf", "`inf`"),
        ("-inf", "`-inf`"),
        ("NaN", "`NaN`"),
        ("-0.5", "`-0.5`"),
        ("1e300", "`1e300`"),
    ] {
        let csv = format!("direction,pulse,conductance\nup,0,1\nup,1, {bad}\ndown,0,2\ndown,1,1\n");
        let e = parse_table_csv(&csv, "m.csv").unwrap_err();
        assert_eq!(e.origin, "m.csv:3:7", "{bad}");
        assert_eq!(e.key, None, "{bad}");
        assert!(
            e.message.contains(shown) && e.message.contains("at most 1e30 uS"),
            "{bad}: {}",
            e.message
        );
    }
    // Quoted cells and the other columns.
    let e =
        parse_table_csv("direction,pulse,conductance\n\"up\",\"0,\", 1\n", "m.csv").unwrap_err();
    assert_eq!(e.origin, "m.csv:2:6", "{}", e.message);
    let e = parse_table_csv("direction,pulse,conductance\nsideways,0,1\n", "m.csv").unwrap_err();
    assert_eq!(e.origin, "m.csv:2:1");
}

#[test]
fn long_numbers_are_printed_short() {
    assert_eq!(
        super::short_numbers(&format!("must lie in [0, 1e30], got {}", 1e300f64)),
        "must lie in [0, 1e30], got 1e300"
    );
    assert_eq!(
        super::short_numbers("got 0.25 at line 12."),
        "got 0.25 at line 12."
    );
}

#[test]
fn network_layers_and_batches_are_checked_where_written() {
    let base = "[scenario]\nname = \"t\"\n[device]\nmodel = \"soft-bounds\"\ndw_min = 0.1\n[train]\nbatch = 4\nlayers = [\n  { kind = \"conv\", channels = 4, kernel = 5 },\n  { kind = \"maxpool\", size = 2 },\n  { kind = \"dense\", units = 16 },\n]\n";
    let load = |sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        load_str(base, "t.toml", Path::new("."), &sets)
    };
    let (s, _, _) = load(&[]).unwrap();
    let t = s.train.unwrap();
    let front = t.conv.clone().unwrap();
    // 16x16 glyphs -> 12x12 -> pooled 6x6, then dense 16 and the 10 classes.
    assert_eq!(front.image, (1, 16, 16));
    assert_eq!(front.shapes().unwrap().1, 4 * 6 * 6);
    assert_eq!(
        (t.hidden.clone(), t.batch, t.weight_layers()),
        (vec![16], 4, 3)
    );
    // Each problem is reported at the entry (file line) or key that causes it.
    let text_err = |text: &str| load_str(text, "t.toml", Path::new("."), &[]).unwrap_err();
    let with = |layers: &str| {
        format!(
            "[scenario]\nname = \"t\"\n[device]\nmodel = \"soft-bounds\"\ndw_min = 0.1\n[train]\nlayers = [\n{layers}\n]\n"
        )
    };
    for (layers, key, says) in [
        (
            "{ kind = \"maxpool\", size = 2 }",
            "train.layers.0.kind",
            "follows a convolution",
        ),
        (
            "{ kind = \"dense\", units = 8 },\n{ kind = \"conv\", channels = 2, kernel = 3 }",
            "train.layers.1.kind",
            "before the dense layers",
        ),
        (
            "{ kind = \"conv\", channels = 2 }",
            "train.layers.0",
            "needs `kernel`",
        ),
        (
            "{ kind = \"conv\", channels = 2, kernel = 3, units = 4 }",
            "train.layers.0.units",
            "does not apply",
        ),
        (
            "{ kind = \"conv\", channels = 2, kernel = 17 }",
            "train.layers",
            "does not fit a 16x16 input",
        ),
        (
            "{ kind = \"conv\", channels = 0, kernel = 3 }",
            "train.layers.0.channels",
            "[1, 4096]",
        ),
        (
            "{ kind = \"conv\", channels = 2, kernel = 3 },\n{ kind = \"maxpool\", size = 2 },\n{ kind = \"avgpool\", size = 2 }",
            "train.layers.2.kind",
            "one pooling per convolution",
        ),
    ] {
        let e = text_err(&with(layers));
        assert_eq!(e.key.as_deref(), Some(key), "{layers}: {e}");
        assert!(e.to_string().contains(says), "{layers}: {e}");
        assert!(e.origin.starts_with("t.toml:"), "{e}");
    }
    for (set, key, says) in [
        ("train.batch=0", "train.batch", "[1, 4096]"),
        ("train.hidden=[8]", "train.hidden", "one place"),
        (
            "train.batch_update=accumulated",
            "train.batch_update",
            "mixed-precision",
        ),
        ("train.algorithm=ep", "train.batch", "batch = 1"),
        (
            "train.dataset=teacher-student",
            "train.layers.0.kind",
            "image dataset",
        ),
        (
            "train.lr_scale=[1.0, 1.0]",
            "train.lr_scale",
            "3 for train.layers",
        ),
    ] {
        let e = load(&[set]).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{set}: {e}");
        assert!(e.to_string().contains(says), "{set}: {e}");
    }
    // Accumulated batches where a controller accumulates, or on float weights.
    load(&[
        "train.batch_update=accumulated",
        "update.controller=mixed-precision",
    ])
    .unwrap();
    load(&["train.batch_update=accumulated", "train.software=true"]).unwrap();
    // Without dense entries, train.hidden gives the dense layers; the same network either way.
    let (s2, _, _) = load_str(
        &with("{ kind = \"conv\", channels = 4, kernel = 5 },\n{ kind = \"maxpool\", size = 2 }")
            .replace("[train]\n", "[train]\nhidden = [16]\nbatch = 4\n"),
        "t.toml",
        Path::new("."),
        &[],
    )
    .unwrap();
    assert_eq!(s2.train.unwrap(), t);
}
