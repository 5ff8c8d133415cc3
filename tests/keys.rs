//! The key audit: no key is accepted and ignored. For every key documented in docs/scenarios.md, changing
//! it (from a context in which it applies) changes some output of the command it belongs to, compared
//! byte by byte with the same run without the change. A documented key missing from the table below
//! fails the suite, so a new key cannot skip the audit.
//!
//! What is compared: every file the command writes, except `manifest.json` (it records the effective
//! scenario, so any change shows there) and the bytes of `checkpoint.bin` (they carry the scenario's
//! hash; whether it is written counts); keys whose
//! only purpose is to be recorded (`description`, `citation`) are compared on the manifest alone.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use common::docs::documented;
use common::{TempDir, aimsim};

/// The commands a key can belong to, each with its small base scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cmd {
    Run,
    Device,
    EpFidelity,
    Local,
    Sweep,
    Infer,
}

const RUN: &str = r#"[scenario]
name = "audit"
seed = 1

[tile]
rows = 16
cols = 32

[train]
dataset = "glyphs"
train_samples = 60
test_samples = 30
hidden = [8]
epochs = 1
"#;

/// The device of the `run` and `sweep` bases, unless an entry's overrides pick a model of another family.
const RUN_DEVICE: &str = "[device]\nmodel = \"soft-bounds\"\ndw_min = 0.01\nc2c = 0.1\n";

const DEVICE: &str = r#"[scenario]
name = "audit-device"
seed = 1

[device]
label = "audit device"
model = "soft-bounds"
dw_min = 0.02
c2c = 0.1

[protocol]
pulses = 40
cycles = 1
devices = 4
"#;

const EP: &str = r#"[scenario]
name = "audit-ep"
seed = 1

[device]
model = "constant-step"
dw_min = 1e-3

[update]
controller = "sgd-count"
max_pulses = 1000

[train]
algorithm = "ep"
dataset = "glyphs"
glyph_side = 8
train_samples = 4
test_samples = 1
hidden = [6]
lr = 0.05

[ep]
steps_free = 30
steps_nudged = 10
fidelity_betas = [0.1, 0.5]
fidelity_nudges = ["one-sided", "symmetric"]
fidelity_samples = 4
"#;

const LOCAL: &str = r#"[scenario]
name = "audit-local"
seed = 1

[device]
model = "neurosim"
levels = 64
nl_up = 1.0
nl_down = -1.0
g_min = 0.1
g_max = 10.0

[local]
rule = "curl"
inputs = 10
hidden = 6
lr = 0.05
steps = 200
eval_every = 50
test_samples = 50
"#;

/// Appended to the run base for `aimsim infer`: a software network deployed on one-sided pairs, read at
/// two times with two repeats.
const INFER: &str = r#"
[inference]
times_s = [30.0, 1e7]
repeats = 2
"#;

const SWEEP: &str = r#"
[sweep]
grid = { "train.lr" = [0.05, 0.2] }
"#;

/// One audited key: the sets (and file text) that make it apply, and the change.
struct Entry {
    section: &'static str,
    key: &'static str,
    cmd: Cmd,
    /// `--set` overrides of both runs.
    ctx: &'static [&'static str],
    /// Text appended to the base scenario of both runs.
    text: &'static str,
    /// The change: extra `--set` overrides of the second run...
    change: &'static [&'static str],
    /// ... or the text that replaces `text` in the second run.
    text_changed: Option<&'static str>,
    /// Compare `manifest.json` only (keys that are recorded, not simulated).
    recorded: bool,
}

const fn e(
    section: &'static str,
    key: &'static str,
    cmd: Cmd,
    ctx: &'static [&'static str],
    change: &'static [&'static str],
) -> Entry {
    Entry {
        section,
        key,
        cmd,
        ctx,
        text: "",
        change,
        text_changed: None,
        recorded: false,
    }
}

const fn t(
    section: &'static str,
    key: &'static str,
    cmd: Cmd,
    text: &'static str,
    text_changed: &'static str,
) -> Entry {
    Entry {
        section,
        key,
        cmd,
        ctx: &[],
        text,
        change: &[],
        text_changed: Some(text_changed),
        recorded: false,
    }
}

const fn recorded(
    section: &'static str,
    key: &'static str,
    change: &'static [&'static str],
) -> Entry {
    Entry {
        section,
        key,
        cmd: Cmd::Run,
        ctx: &[],
        text: "",
        change,
        text_changed: None,
        recorded: true,
    }
}

use Cmd::*;

const NEUROSIM: &[&str] = &[
    "device.model=neurosim",
    "device.levels=32",
    "device.nl_up=1.0",
    "device.nl_down=-1.0",
    "device.g_min=0.1",
    "device.g_max=10.0",
];
/// A single device against its reference cell: on a pair, a reference shared by both devices cancels.
const SBREF: &[&str] = &[
    "device.model=soft-bounds-reference",
    "device.up_down=0.2",
    "tile.cell=single",
];
const EXP: &[&str] = &[
    "device.model=exp-step",
    "device.a=0.2",
    "device.b=0.1",
    "device.a_up=0.3",
    "device.a_down=0.3",
    "device.gamma_up=2.0",
    "device.gamma_down=2.0",
];
const TABLE: &[&str] = &[
    "device.model=table",
    "device.table.up=[1.0, 4.0, 6.0, 7.0, 7.5]",
    "device.table.down=[7.5, 5.0, 3.0, 1.5, 1.0]",
];
const UNI: &[&str] = &[
    "update.controller=unidirectional",
    "train.lr=2.0",
    "train.train_samples=200",
];
const TT: &[&str] = &[
    "update.controller=tiki-taka",
    "tile.cell=multi-array",
    "train.lr=0.5",
];
const CLIPPING: &[&str] = &["io.out_bound=0.3", "train.init_scale=3.0"];
const EPOCHS2: &[&str] = &["train.epochs=2"];
/// A software network deployed on one-sided pairs (`aimsim infer`).
const SW1: &[&str] = &["train.software=true", "tile.cell=one-sided"];
const NU: &[&str] = &[
    "train.software=true",
    "tile.cell=one-sided",
    "inference.drift=constant",
    "inference.nu_mean=0.05",
];
const RELAX: &[&str] = &[
    "train.software=true",
    "tile.cell=one-sided",
    "inference.retention=relaxation",
];

const ENTRIES: &[Entry] = &[
    // [scenario]
    e("scenario", "name", Run, &[], &["scenario.name=other"]),
    e("scenario", "seed", Run, &[], &["scenario.seed=2"]),
    recorded("scenario", "description", &["scenario.description=changed"]),
    // [device]
    e(
        "device",
        "preset",
        Run,
        &[],
        &["device.preset=aihwkit-reram-sb"],
    ),
    e("device", "label", Device, &[], &["device.label=another"]),
    recorded("device", "citation", &["device.citation=somebody"]),
    e("device", "model", Run, &[], &["device.model=constant-step"]),
    e(
        "device",
        "g_min",
        Run,
        &["device.g_min=1", "device.g_max=20"],
        &["device.g_min=2"],
    ),
    e(
        "device",
        "g_max",
        Run,
        &["device.g_min=1", "device.g_max=20"],
        &["device.g_max=30"],
    ),
    e("device", "c2c", Run, &[], &["device.c2c=0.4"]),
    e(
        "device",
        "c2c_mode",
        Run,
        &[],
        &["device.c2c_mode=additive"],
    ),
    e("device", "write_noise", Run, &[], &["device.write_noise=5"]),
    e(
        "device",
        "reference_mean",
        Run,
        SBREF,
        &["device.reference_mean=0.2"],
    ),
    e(
        "device",
        "reference_std",
        Run,
        SBREF,
        &["device.reference_std=0.1"],
    ),
    e(
        "device",
        "subtract_symmetry_point",
        Run,
        SBREF,
        &["device.subtract_symmetry_point=true"],
    ),
    e(
        "device",
        "read_noise",
        Run,
        &[],
        &["device.read_noise=0.05"],
    ),
    e("device", "stuck_min", Run, &[], &["device.stuck_min=0.2"]),
    e("device", "stuck_max", Run, &[], &["device.stuck_max=0.2"]),
    e(
        "device",
        "stuck_random",
        Run,
        &[],
        &["device.stuck_random=0.2"],
    ),
    e("device", "levels", Run, &[], &["device.levels=30"]),
    e(
        "device",
        "levels_down",
        Run,
        NEUROSIM,
        &["device.levels_down=16"],
    ),
    e("device", "nl_up", Run, NEUROSIM, &["device.nl_up=3.0"]),
    e("device", "nl_down", Run, NEUROSIM, &["device.nl_down=-3.0"]),
    e("device", "dw_min", Run, &[], &["device.dw_min=0.03"]),
    e("device", "up_down", Run, &[], &["device.up_down=0.3"]),
    e("device", "w_min", Run, &[], &["device.w_min=-0.5"]),
    e("device", "w_max", Run, &[], &["device.w_max=0.5"]),
    e(
        "device",
        "gamma_up",
        Run,
        &["device.model=linear-step"],
        &["device.gamma_up=0.5"],
    ),
    e(
        "device",
        "gamma_down",
        Run,
        &["device.model=linear-step"],
        &["device.gamma_down=0.5"],
    ),
    e("device", "a", Run, EXP, &["device.a=0.6"]),
    e("device", "b", Run, EXP, &["device.b=0.5"]),
    e("device", "a_up", Run, EXP, &["device.a_up=0.6"]),
    e("device", "a_down", Run, EXP, &["device.a_down=0.6"]),
    e(
        "device",
        "table",
        Run,
        TABLE,
        &["device.table.up=[1.0, 2.0, 3.0, 5.0, 7.5]"],
    ),
    e(
        "device",
        "d2d",
        Run,
        &[],
        &["device.d2d.dw_min={dist=\"normal\",cv=0.3}"],
    ),
    // [device.table]
    t(
        "device.table",
        "file",
        Run,
        "[device]\nmodel = \"table\"\n[device.table]\nfile = \"a.csv\"\n",
        "[device]\nmodel = \"table\"\n[device.table]\nfile = \"b.csv\"\n",
    ),
    e(
        "device.table",
        "up",
        Run,
        TABLE,
        &["device.table.up=[1.0, 2.0, 3.0, 5.0, 7.5]"],
    ),
    e(
        "device.table",
        "down",
        Run,
        TABLE,
        &["device.table.down=[7.5, 7.0, 6.0, 2.0, 1.0]"],
    ),
    // [device.d2d] entries
    e(
        "device.d2d.*",
        "dist",
        Run,
        &["device.d2d.dw_min={dist=\"normal\",cv=0.3}"],
        &["device.d2d.dw_min.dist=lognormal"],
    ),
    e(
        "device.d2d.*",
        "sigma",
        Run,
        &["device.d2d.dw_min={dist=\"normal\",sigma=0.002}"],
        &["device.d2d.dw_min.sigma=0.004"],
    ),
    e(
        "device.d2d.*",
        "cv",
        Run,
        &["device.d2d.dw_min={dist=\"normal\",cv=0.2}"],
        &["device.d2d.dw_min.cv=0.4"],
    ),
    e(
        "device.d2d.*",
        "half_width",
        Run,
        &["device.d2d.dw_min={dist=\"uniform\",half_width=0.002}"],
        &["device.d2d.dw_min.half_width=0.004"],
    ),
    e(
        "device.d2d.*",
        "rel_half_width",
        Run,
        &["device.d2d.dw_min={dist=\"uniform\",rel_half_width=0.2}"],
        &["device.d2d.dw_min.rel_half_width=0.4"],
    ),
    // [protocol]
    e("protocol", "pulses", Device, &[], &["protocol.pulses=20"]),
    e("protocol", "cycles", Device, &[], &["protocol.cycles=2"]),
    e("protocol", "devices", Device, &[], &["protocol.devices=3"]),
    // [tile]
    e("tile", "rows", Run, &[], &["tile.rows=8"]),
    e("tile", "cols", Run, &[], &["tile.cols=16"]),
    e("tile", "cell", Run, &[], &["tile.cell=single"]),
    e(
        "tile",
        "gamma",
        Run,
        &["tile.cell=multi-array"],
        &["tile.gamma=0.5"],
    ),
    e("tile", "w_scale", Run, &[], &["tile.w_scale=2.0"]),
    e(
        "tile",
        "reference",
        Run,
        &["tile.cell=single", "device.w_min=-0.5"],
        &["tile.reference=device-zero"],
    ),
    // [io] and [io.backward]
    e("io", "dac_bits", Run, &[], &["io.dac_bits=3"]),
    e("io", "adc_bits", Run, &[], &["io.adc_bits=4"]),
    e("io", "inp_bound", Run, &[], &["io.inp_bound=0.5"]),
    e("io", "out_bound", Run, &[], &["io.out_bound=0.5"]),
    e("io", "out_noise", Run, &[], &["io.out_noise=0.3"]),
    e("io", "w_noise", Run, &[], &["io.w_noise=0.1"]),
    e(
        "io",
        "noise_management",
        Run,
        &[],
        &["io.noise_management=false"],
    ),
    e(
        "io",
        "bound_management",
        Run,
        CLIPPING,
        &["io.bound_management=false"],
    ),
    e(
        "io",
        "max_bm_iterations",
        Run,
        CLIPPING,
        &["io.max_bm_iterations=1"],
    ),
    e(
        "io",
        "max_bm_res",
        Run,
        &["io.out_bound=0.05", "train.init_scale=3.0"],
        &["io.max_bm_res=0"],
    ),
    e(
        "io",
        "zero_grad_at_bound",
        Run,
        CLIPPING,
        &["io.zero_grad_at_bound=true"],
    ),
    e("io", "backward", Run, &[], &["io.backward.out_noise=0.5"]),
    e(
        "io.backward",
        "dac_bits",
        Run,
        &[],
        &["io.backward.dac_bits=3"],
    ),
    e(
        "io.backward",
        "adc_bits",
        Run,
        &[],
        &["io.backward.adc_bits=4"],
    ),
    e(
        "io.backward",
        "inp_bound",
        Run,
        &[],
        &["io.backward.inp_bound=0.3"],
    ),
    e(
        "io.backward",
        "out_bound",
        Run,
        &[],
        &["io.backward.out_bound=0.1"],
    ),
    e(
        "io.backward",
        "out_noise",
        Run,
        &[],
        &["io.backward.out_noise=0.5"],
    ),
    e(
        "io.backward",
        "w_noise",
        Run,
        &[],
        &["io.backward.w_noise=0.2"],
    ),
    e(
        "io.backward",
        "noise_management",
        Run,
        &[],
        &["io.backward.noise_management=false"],
    ),
    e(
        "io.backward",
        "bound_management",
        Run,
        &["io.backward.out_bound=0.05"],
        &["io.backward.bound_management=true"],
    ),
    e(
        "io.backward",
        "max_bm_iterations",
        Run,
        &[
            "io.backward.out_bound=0.05",
            "io.backward.bound_management=true",
            "io.backward.max_bm_res=0",
        ],
        &["io.backward.max_bm_iterations=1"],
    ),
    e(
        "io.backward",
        "max_bm_res",
        Run,
        &[
            "io.backward.out_bound=0.01",
            "io.backward.bound_management=true",
        ],
        &["io.backward.max_bm_res=0"],
    ),
    // [update]
    e(
        "update",
        "controller",
        Run,
        &[],
        &["update.controller=sgd-count"],
    ),
    e(
        "update",
        "scheme",
        Run,
        &["update.controller=bidirectional"],
        &["update.scheme=count"],
    ),
    e("update", "bl", Run, &[], &["update.bl=1"]),
    e(
        "update",
        "update_management",
        Run,
        &[],
        &["update.update_management=false"],
    ),
    e(
        "update",
        "bl_management",
        Run,
        &[],
        &["update.bl_management=false"],
    ),
    e(
        "update",
        "max_pulses",
        Run,
        &["update.controller=sgd-count", "train.lr=1.0"],
        &["update.max_pulses=1"],
    ),
    e(
        "update",
        "threshold",
        Run,
        &["update.controller=sign-threshold"],
        &["update.threshold=3.0"],
    ),
    e(
        "update",
        "direction",
        Run,
        &["update.controller=relative-count"],
        &["update.direction=unidirectional"],
    ),
    e(
        "update",
        "refresh_every",
        Run,
        UNI,
        &["update.refresh_every=5"],
    ),
    e("update", "refresh_hi", Run, UNI, &["update.refresh_hi=0.5"]),
    e(
        "update",
        "refresh_lo",
        Run,
        UNI,
        &["update.refresh_lo=0.05"],
    ),
    e(
        "update",
        "transfer_every",
        Run,
        TT,
        &["update.transfer_every=3"],
    ),
    e(
        "update",
        "transfer_lr",
        Run,
        TT,
        &["update.transfer_lr=0.5"],
    ),
    e(
        "update",
        "transfer_max_pulses",
        Run,
        TT,
        &["update.transfer_max_pulses=1"],
    ),
    // [train]
    e(
        "train",
        "dataset",
        Run,
        &[],
        &["train.dataset=teacher-student"],
    ),
    t(
        "train",
        "data_dir",
        Run,
        "[train]\ndataset = \"mnist\"\ndata_dir = \"idx-a\"\ntrain_samples = 40\ntest_samples = 20\n",
        "[train]\ndataset = \"mnist\"\ndata_dir = \"idx-b\"\ntrain_samples = 40\ntest_samples = 20\n",
    ),
    e(
        "train",
        "train_samples",
        Run,
        &[],
        &["train.train_samples=50"],
    ),
    e(
        "train",
        "test_samples",
        Run,
        &[],
        &["train.test_samples=20"],
    ),
    e("train", "glyph_side", Run, &[], &["train.glyph_side=10"]),
    e("train", "crop", Run, &[], &["train.crop=12"]),
    e("train", "binarize", Run, &[], &["train.binarize=0.5"]),
    e("train", "hidden", Run, &[], &["train.hidden=[6]"]),
    e("train", "activation", Run, &[], &["train.activation=tanh"]),
    e("train", "loss", Run, &[], &["train.loss=mse"]),
    e("train", "bias", Run, &[], &["train.bias=tile"]),
    e("train", "init_scale", Run, &[], &["train.init_scale=0.3"]),
    e(
        "train",
        "init_program",
        Run,
        &[],
        &["train.init_program=exact"],
    ),
    // `w.npz` (written by the test) fits the base network, 256-8-10.
    e(
        "train",
        "init_weights",
        Run,
        &[],
        &["train.init_weights=\"w.npz\""],
    ),
    e("train", "epochs", Run, &[], &["train.epochs=2"]),
    e("train", "lr", Run, &[], &["train.lr=0.3"]),
    e(
        "train",
        "lr_scale",
        Run,
        &[],
        &["train.lr_scale=[1.0, 0.5]"],
    ),
    e("train", "lr_decay", Run, EPOCHS2, &["train.lr_decay=0.5"]),
    e("train", "shuffle", Run, &[], &["train.shuffle=false"]),
    e("train", "software", Run, &[], &["train.software=true"]),
    e(
        "train",
        "weight_noise",
        Run,
        &["train.software=true"],
        &["train.weight_noise=0.3"],
    ),
    e(
        "train",
        "trace_devices",
        Run,
        &["train.trace_every=20"],
        &["train.trace_devices=2"],
    ),
    e(
        "train",
        "trace_every",
        Run,
        &["train.trace_devices=4"],
        &["train.trace_every=10"],
    ),
    e(
        "train",
        "checkpoint_every",
        Run,
        &[],
        &["train.checkpoint_every=0"],
    ),
    e(
        "train",
        "histogram_bins",
        Run,
        &[],
        &["train.histogram_bins=10"],
    ),
    e("train", "seeds", Run, &[], &["train.seeds=[1, 2]"]),
    e("train", "algorithm", Run, &[], &["train.algorithm=ep"]),
    e("train", "validation", Run, &[], &["train.validation=10"]),
    e("train", "batch", Run, &[], &["train.batch=4"]),
    e(
        "train",
        "batch_update",
        Run,
        &["update.controller=mixed-precision", "train.batch=4"],
        &["train.batch_update=accumulated"],
    ),
    e(
        "train",
        "layers",
        Run,
        &[],
        &["train.layers=[{kind=\"conv\", channels=2, kernel=3}]"],
    ),
    // [[train.layers]]: whole arrays through `--set`, a conv (with pooling) before the base's dense
    // layer.
    e(
        "train.layers",
        "kind",
        Run,
        &["train.layers=[{kind=\"conv\", channels=2, kernel=3}, {kind=\"maxpool\", size=2}]"],
        &["train.layers=[{kind=\"conv\", channels=2, kernel=3}, {kind=\"avgpool\", size=2}]"],
    ),
    e(
        "train.layers",
        "channels",
        Run,
        &["train.layers=[{kind=\"conv\", channels=2, kernel=3}]"],
        &["train.layers=[{kind=\"conv\", channels=3, kernel=3}]"],
    ),
    e(
        "train.layers",
        "kernel",
        Run,
        &["train.layers=[{kind=\"conv\", channels=2, kernel=3}]"],
        &["train.layers=[{kind=\"conv\", channels=2, kernel=5}]"],
    ),
    e(
        "train.layers",
        "stride",
        Run,
        &["train.layers=[{kind=\"conv\", channels=2, kernel=3}]"],
        &["train.layers=[{kind=\"conv\", channels=2, kernel=3, stride=2}]"],
    ),
    e(
        "train.layers",
        "padding",
        Run,
        &["train.layers=[{kind=\"conv\", channels=2, kernel=3}]"],
        &["train.layers=[{kind=\"conv\", channels=2, kernel=3, padding=1}]"],
    ),
    e(
        "train.layers",
        "size",
        Run,
        &["train.layers=[{kind=\"conv\", channels=2, kernel=3}, {kind=\"maxpool\", size=2}]"],
        &["train.layers=[{kind=\"conv\", channels=2, kernel=3}, {kind=\"maxpool\", size=3}]"],
    ),
    e(
        "train.layers",
        "units",
        Run,
        &[
            "train.hidden=[]",
            "train.layers=[{kind=\"conv\", channels=2, kernel=3}, {kind=\"dense\", units=6}]",
        ],
        &["train.layers=[{kind=\"conv\", channels=2, kernel=3}, {kind=\"dense\", units=5}]"],
    ),
    // [ep]
    e(
        "ep",
        "steps_free",
        Run,
        &["train.algorithm=ep"],
        &["ep.steps_free=5"],
    ),
    e(
        "ep",
        "steps_nudged",
        Run,
        &["train.algorithm=ep"],
        &["ep.steps_nudged=1"],
    ),
    e("ep", "eps", Run, &["train.algorithm=ep"], &["ep.eps=0.2"]),
    e("ep", "beta", Run, &["train.algorithm=ep"], &["ep.beta=0.1"]),
    e(
        "ep",
        "nudge",
        Run,
        &["train.algorithm=ep"],
        &["ep.nudge=one-sided"],
    ),
    e(
        "ep",
        "activation",
        Run,
        &["train.algorithm=ep"],
        &["ep.activation=hard-sigmoid"],
    ),
    e(
        "ep",
        "feedback",
        Run,
        &["train.algorithm=ep"],
        &["ep.feedback=separate"],
    ),
    e(
        "ep",
        "update",
        Run,
        &["train.algorithm=ep"],
        &["ep.update=two-phase"],
    ),
    e(
        "ep",
        "tolerance",
        Run,
        &["train.algorithm=ep"],
        &["ep.tolerance=0.01"],
    ),
    e(
        "ep",
        "fidelity_betas",
        EpFidelity,
        &[],
        &["ep.fidelity_betas=[0.2]"],
    ),
    e(
        "ep",
        "fidelity_nudges",
        EpFidelity,
        &[],
        &["ep.fidelity_nudges=[\"random-sign\"]"],
    ),
    e(
        "ep",
        "fidelity_samples",
        EpFidelity,
        &[],
        &["ep.fidelity_samples=2"],
    ),
    // [local]
    e("local", "rule", Local, &[], &["local.rule=hebbian"]),
    e("local", "inputs", Local, &[], &["local.inputs=8"]),
    e("local", "hidden", Local, &[], &["local.hidden=4"]),
    e("local", "outputs", Local, &[], &["local.outputs=2"]),
    e(
        "local",
        "flip_fraction",
        Local,
        &[],
        &["local.flip_fraction=0.5"],
    ),
    e("local", "lr", Local, &[], &["local.lr=0.2"]),
    e("local", "steps", Local, &[], &["local.steps=100"]),
    e("local", "eval_every", Local, &[], &["local.eval_every=20"]),
    e(
        "local",
        "test_samples",
        Local,
        &[],
        &["local.test_samples=30"],
    ),
    e("local", "software", Local, &[], &["local.software=true"]),
    e("local", "seeds", Local, &[], &["local.seeds=[1, 2]"]),
    // [trace] and [[trace.devices]]
    t("trace", "devices", Run, "", "[[trace.devices]]\ncol = 1\n"),
    e("trace", "sample", Run, &[], &["trace.sample=5"]),
    e(
        "trace",
        "every",
        Run,
        &["trace.sample=3"],
        &["trace.every=7"],
    ),
    e(
        "trace",
        "unit",
        Run,
        &["trace.sample=3", "trace.every=500"],
        &["trace.unit=pulses"],
    ),
    t(
        "trace.devices",
        "layer",
        Run,
        "[[trace.devices]]\ncol = 1\n",
        "[[trace.devices]]\ncol = 1\nlayer = 1\n",
    ),
    t(
        "trace.devices",
        "tile",
        Run,
        "[[trace.devices]]\ncol = 1\n",
        "[[trace.devices]]\ncol = 1\ntile = 1\n",
    ),
    t(
        "trace.devices",
        "row",
        Run,
        "[[trace.devices]]\ncol = 1\n",
        "[[trace.devices]]\ncol = 1\nrow = 3\n",
    ),
    t(
        "trace.devices",
        "col",
        Run,
        "[[trace.devices]]\ncol = 1\n",
        "[[trace.devices]]\ncol = 2\n",
    ),
    t(
        "trace.devices",
        "array",
        Run,
        "[[trace.devices]]\ncol = 1\n",
        "[[trace.devices]]\ncol = 1\narray = 1\n",
    ),
    // [[variant]]
    t(
        "variant",
        "name",
        Run,
        "[[variant]]\nname = \"a\"\n",
        "[[variant]]\nname = \"b\"\n",
    ),
    t(
        "variant",
        "set",
        Run,
        "[[variant]]\nname = \"a\"\n",
        "[[variant]]\nname = \"a\"\nset = { \"train.lr\" = 0.5 }\n",
    ),
    Entry {
        section: "variant",
        key: "group",
        cmd: Run,
        ctx: &["train.validation=10"],
        text: "[[variant]]\nname = \"a\"\ngroup = \"x\"\n",
        change: &[],
        text_changed: Some("[[variant]]\nname = \"a\"\ngroup = \"y\"\n"),
        recorded: false,
    },
    // [sweep]
    e(
        "sweep",
        "grid",
        Sweep,
        &[],
        &["sweep.grid={\"train.lr\"=[0.05, 0.3]}"],
    ),
    t(
        "sweep",
        "zip",
        Sweep,
        "",
        "zip = [{ \"train.epochs\" = [1, 2], \"train.init_scale\" = [1.0, 0.5] }]\n",
    ),
    e("sweep", "repeats", Sweep, &[], &["sweep.repeats=2"]),
    e("sweep", "seed", Sweep, &[], &["sweep.seed=9"]),
    // [inference] (aimsim infer; a software network deployed on one-sided pairs)
    e(
        "inference",
        "program",
        Infer,
        SW1,
        &["inference.program=exact"],
    ),
    e(
        "inference",
        "tolerance",
        Infer,
        SW1,
        &["inference.tolerance=0.2"],
    ),
    e(
        "inference",
        "max_pulses",
        Infer,
        SW1,
        &["inference.max_pulses=1"],
    ),
    e("inference", "noise", Infer, SW1, &["inference.noise=none"]),
    e(
        "inference",
        "noise_sigma_us",
        Infer,
        &[
            "train.software=true",
            "tile.cell=one-sided",
            "inference.noise=constant",
            "inference.noise_sigma_us=0.5",
        ],
        &["inference.noise_sigma_us=3.0"],
    ),
    e(
        "inference",
        "mapping",
        Infer,
        SW1,
        &["inference.mapping=column"],
    ),
    e(
        "inference",
        "g_max_us",
        Infer,
        SW1,
        &["inference.g_max_us=10.0"],
    ),
    e(
        "inference",
        "retention",
        Infer,
        SW1,
        &["inference.retention=none"],
    ),
    e(
        "inference",
        "drift",
        Infer,
        SW1,
        &["inference.drift=constant", "inference.nu_mean=0.3"],
    ),
    e(
        "inference",
        "nu_mean",
        Infer,
        NU,
        &["inference.nu_mean=0.3"],
    ),
    e("inference", "nu_sd", Infer, NU, &["inference.nu_sd=0.05"]),
    e("inference", "t0_s", Infer, SW1, &["inference.t0_s=1000.0"]),
    e(
        "inference",
        "relaxed",
        Infer,
        RELAX,
        &["inference.relaxed=0.1"],
    ),
    e(
        "inference",
        "rate_median",
        Infer,
        RELAX,
        &["inference.rate_median=0.5"],
    ),
    e(
        "inference",
        "rate_sigma",
        Infer,
        RELAX,
        &["inference.rate_sigma=2.0"],
    ),
    e("inference", "tau_s", Infer, RELAX, &["inference.tau_s=1e4"]),
    e(
        "inference",
        "read_noise",
        Infer,
        SW1,
        &["inference.read_noise=none"],
    ),
    e(
        "inference",
        "q_s",
        Infer,
        &[
            "train.software=true",
            "tile.cell=one-sided",
            "inference.read_noise=constant",
            "inference.q_s=0.1",
        ],
        &["inference.q_s=0.5"],
    ),
    e(
        "inference",
        "t_read_s",
        Infer,
        SW1,
        &["inference.t_read_s=1e-3"],
    ),
    e(
        "inference",
        "fail_tau_s",
        Infer,
        SW1,
        &["inference.fail_tau_s=1e5"],
    ),
    e(
        "inference",
        "fail_shape",
        Infer,
        &[
            "train.software=true",
            "tile.cell=one-sided",
            "inference.fail_tau_s=1e6",
        ],
        &["inference.fail_shape=3.0"],
    ),
    e(
        "inference",
        "fail_p_high",
        Infer,
        &[
            "train.software=true",
            "tile.cell=one-sided",
            "inference.fail_tau_s=1e4",
        ],
        &["inference.fail_p_high=1.0"],
    ),
    e(
        "inference",
        "times_s",
        Infer,
        SW1,
        &["inference.times_s=[60.0, 1e8]"],
    ),
    e(
        "inference",
        "compensation",
        Infer,
        SW1,
        &["inference.compensation=[\"none\"]"],
    ),
    e("inference", "repeats", Infer, SW1, &["inference.repeats=3"]),
    e(
        "inference",
        "histogram_bins",
        Infer,
        SW1,
        &["inference.histogram_bins=7"],
    ),
    // [cost]
    e("cost", "clock_hz", Run, &[], &["cost.clock_hz=5e8"]),
    e("cost", "read_cycles", Run, &[], &["cost.read_cycles=20"]),
    e("cost", "adc_cycles", Run, &[], &["cost.adc_cycles=4"]),
    e(
        "cost",
        "adc_energy_pj",
        Run,
        &[],
        &["cost.adc_energy_pj=3.0"],
    ),
    e(
        "cost",
        "outputs_per_adc",
        Run,
        &[],
        &["cost.outputs_per_adc=2"],
    ),
    e(
        "cost",
        "dac_energy_pj",
        Run,
        &[],
        &["cost.dac_energy_pj=0.5"],
    ),
    e("cost", "read_voltage", Run, &[], &["cost.read_voltage=0.3"]),
    e("cost", "pulse_cycles", Run, &[], &["cost.pulse_cycles=3"]),
    e(
        "cost",
        "pulse_energy_pj",
        Run,
        &[],
        &["cost.pulse_energy_pj=2.0"],
    ),
];

/// A table curve as CSV (`direction,pulse,conductance`).
fn curve_csv(up: &[f64], down: &[f64]) -> String {
    let mut s = String::from("direction,pulse,conductance\n");
    for (dir, v) in [("up", up), ("down", down)] {
        for (k, g) in v.iter().enumerate() {
            s.push_str(&format!("{dir},{k},{g}\n"));
        }
    }
    s
}

/// Starting weights (`train.init_weights`) for a network of layer sizes `sizes`: fixed values in
/// +-0.16, no bias.
fn write_weights(path: &Path, sizes: &[usize]) {
    let mut arrays = Vec::new();
    for (i, w) in sizes.windows(2).enumerate() {
        let (inp, out) = (w[0], w[1]);
        arrays.push(aimsim::weights::Array {
            name: format!("layer{i}.weight"),
            shape: vec![out, inp],
            data: (0..out * inp)
                .map(|k| ((k * 37 % 17) as f32 - 8.0) * 0.02)
                .collect(),
        });
        arrays.push(aimsim::weights::Array {
            name: format!("layer{i}.bias"),
            shape: vec![out],
            data: vec![0.0; out],
        });
    }
    aimsim::weights::write_npz(path, &arrays).unwrap();
}

/// A tiny MNIST-layout IDX folder (gzip-free): `n` 28x28 images of one bright stripe whose position
/// follows the label, with a shift that differs between folders.
fn write_idx(dir: &Path, n: usize, shift: usize) {
    fs::create_dir_all(dir).unwrap();
    for (prefix, count) in [("train", n), ("t10k", n)] {
        let mut img = Vec::new();
        img.extend_from_slice(&0x0000_0803u32.to_be_bytes());
        for d in [count as u32, 28, 28] {
            img.extend_from_slice(&d.to_be_bytes());
        }
        let mut lab = Vec::new();
        lab.extend_from_slice(&0x0000_0801u32.to_be_bytes());
        lab.extend_from_slice(&(count as u32).to_be_bytes());
        for k in 0..count {
            let label = (k % 10) as u8;
            let mut px = vec![0u8; 28 * 28];
            let row = (2 * label as usize + shift + k % 3) % 28;
            for c in 0..28 {
                px[row * 28 + c] = 255;
            }
            img.extend_from_slice(&px);
            lab.push(label);
        }
        fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), img).unwrap();
        fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), lab).unwrap();
    }
}

/// Every output file of a finished command, by path relative to its folder, as compared here: the
/// manifest and checkpoints left out (or only the manifest, for recorded keys).
fn outputs(dir: &Path, recorded: bool) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>, recorded: bool) {
        for entry in fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out, recorded);
                continue;
            }
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let manifest = name == "manifest.json";
            if recorded != manifest || name.starts_with('.') {
                continue;
            }
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
            // A checkpoint counts by its presence: its bytes carry the scenario's hash.
            let bytes = if name.ends_with(".bin") {
                Vec::new()
            } else {
                fs::read(&p).unwrap()
            };
            out.insert(rel, bytes);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out, recorded);
    out
}

fn run(
    work: &TempDir,
    tag: &str,
    cmd: Cmd,
    text: &str,
    sets: &[&str],
    recorded: bool,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let other_family = sets.iter().any(|s| {
        s.starts_with("device.model=neurosim")
            || s.starts_with("device.model=\"table\"")
            || s.starts_with("device.model=table")
    });
    let device = if other_family { "" } else { RUN_DEVICE };
    let base = match cmd {
        Run => format!("{RUN}{device}"),
        Device => DEVICE.to_string(),
        EpFidelity => EP.to_string(),
        Local => LOCAL.to_string(),
        Sweep => format!("{RUN}{device}{SWEEP}"),
        Infer => format!("{RUN}{device}{INFER}"),
    };
    let file = work.write(&format!("{tag}.toml"), format!("{base}{text}"));
    let out = work.sub(&format!("out-{tag}"));
    let verb = match cmd {
        Run => "run",
        Device => "device",
        EpFidelity => "ep-fidelity",
        Local => "local",
        Sweep => "sweep",
        Infer => "infer",
    };
    let mut args: Vec<String> = vec![verb.into(), file, "--out".into(), out.clone()];
    for s in sets {
        args.push("--set".into());
        args.push((*s).to_string());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = aimsim(&refs);
    if o.code != Some(0) {
        return Err(format!("exit {:?}: {}", o.code, o.stderr.trim()));
    }
    Ok(outputs(Path::new(&out), recorded))
}

/// Merges two scenario texts that both open a `[train]` or `[device]` table: TOML refuses a table
/// defined twice, so a context text's tables replace the base's keys through `--set` instead. Only the
/// texts used above need this: they are appended where the base has no such table, or the keys are
/// moved into overrides.
fn split_text(text: &str) -> (String, Vec<String>) {
    // `[device]` / `[train]` / `[device.table]` blocks become overrides; other tables stay as text.
    let mut keep = String::new();
    let mut sets = Vec::new();
    let mut table: Option<String> = None;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            let name = l.trim_matches(|c| c == '[' || c == ']').to_string();
            if ["device", "train", "device.table"].contains(&name.as_str()) && !l.starts_with("[[")
            {
                table = Some(name);
                continue;
            }
            table = None;
        }
        match &table {
            Some(t) if !l.is_empty() => {
                let (k, v) = l.split_once('=').unwrap();
                sets.push(format!("{t}.{}={}", k.trim(), v.trim()));
            }
            Some(_) => {}
            None => {
                keep.push_str(line);
                keep.push('\n');
            }
        }
    }
    (keep, sets)
}

/// Runs entry `k` without and with its change; returns its name when no output changed.
fn audit(work: &TempDir, k: usize, e: &Entry) -> Option<String> {
    let (text, mut ctx) = split_text(e.text);
    ctx.splice(0..0, e.ctx.iter().map(|s| s.to_string()));
    let ctx_refs: Vec<&str> = ctx.iter().map(String::as_str).collect();
    let before = run(work, &format!("{k}a"), e.cmd, &text, &ctx_refs, e.recorded);
    let (text2, mut sets2) = match e.text_changed {
        Some(t) => split_text(t),
        None => (text.clone(), Vec::new()),
    };
    sets2.splice(0..0, e.ctx.iter().map(|s| s.to_string()));
    sets2.extend(e.change.iter().map(|s| s.to_string()));
    let refs2: Vec<&str> = sets2.iter().map(String::as_str).collect();
    let after = run(work, &format!("{k}b"), e.cmd, &text2, &refs2, e.recorded);
    let what = format!("[{}] {} ({:?})", e.section, e.key, e.cmd);
    match (before, after) {
        (Ok(a), Ok(b)) => (a == b).then_some(what),
        (Err(m), _) => panic!("{what}: the run without the change failed: {m}"),
        (_, Err(m)) => panic!("{what}: the changed run failed: {m}"),
    }
}

#[test]
fn every_documented_key_is_audited() {
    let documented: std::collections::BTreeSet<(String, String)> = documented()
        .into_iter()
        .map(|r| (r.section, r.key))
        .collect();
    let audited: std::collections::BTreeSet<(String, String)> = ENTRIES
        .iter()
        .map(|e| (e.section.to_string(), e.key.to_string()))
        .collect();
    let missing: Vec<_> = documented.difference(&audited).collect();
    let stale: Vec<_> = audited.difference(&documented).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "keys documented but not audited: {missing:?}; audited but not documented: {stale:?}"
    );
}

#[test]
fn every_key_changes_an_output_of_its_command() {
    let work = TempDir::new("keys");
    work.write(
        "a.csv",
        curve_csv(&[1.0, 4.0, 6.0, 7.0, 7.5], &[7.5, 5.0, 3.0, 1.5, 1.0]),
    );
    work.write(
        "b.csv",
        curve_csv(&[1.0, 2.0, 3.0, 5.0, 7.5], &[7.5, 7.0, 6.0, 2.0, 1.0]),
    );
    write_weights(&work.0.join("w.npz"), &[256, 8, 10]);
    write_idx(&work.0.join("idx-a"), 60, 0);
    write_idx(&work.0.join("idx-b"), 60, 5);
    // Two workers: the runs are independent processes.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let silent = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(e) = ENTRIES.get(k) else { break };
                    if let Some(what) = audit(&work, k, e) {
                        silent.lock().unwrap().push(what);
                    }
                }
            });
        }
    });
    let mut silent = silent.into_inner().unwrap();
    silent.sort();
    assert!(
        silent.is_empty(),
        "accepted keys whose change left every output of their command unchanged: {silent:?}"
    );
}
