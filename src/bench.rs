//! Benchmarks: `aimsim bench tiles` (the tile engine against a plain f32 loop measured in the same run),
//! `aimsim bench kernels` (the micro-benchmarks behind the speed claims of docs/results.md) and
//! `aimsim bench train` (the reference training workload).

use std::hint::black_box;
use std::time::Instant;

use aimsim_devices::{DeviceSpec, Dist, Model, Param, Spread, StepKind, StepParams, Variation};
use aimsim_sim::io::IoConfig;
use aimsim_sim::ledger::{CostModel, Ledger, Phase};
use aimsim_sim::matrix::AnalogMatrix;
use aimsim_sim::par::{Par, Spread as TeamSpread, Team, TeamReport};
use aimsim_sim::rng::{Pcg, Purpose, stream};
use aimsim_sim::tile::{CellKind, Tile, TileConfig};
use aimsim_sim::update::{ControllerSpec, PulseScheme, apply_scheme};
use anyhow::{Context, Result};
use rand::RngExt;
use std::path::Path;

/// The reference device of the benchmarks: constant step 0.001, d2d 0.3 on the step, c2c 0.3.
pub fn reference_device() -> DeviceSpec {
    let mut spec = DeviceSpec::new(Model::Step(StepParams::new(StepKind::Constant, 0.001)));
    spec.c2c = 0.3;
    spec.d2d.push((
        Param::DwMin,
        Variation {
            dist: Dist::Normal,
            spread: Spread::Relative(0.3),
        },
    ));
    spec
}

/// Runs `f` repeatedly for about `seconds` and returns calls per second.
fn rate(seconds: f64, mut f: impl FnMut()) -> f64 {
    // Warm up caches and branch predictors.
    for _ in 0..3 {
        f();
    }
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        for _ in 0..8 {
            f();
        }
        calls += 8;
    }
    calls as f64 / start.elapsed().as_secs_f64()
}

/// The plain f32 matrix-vector loop the engine is compared with: one running sum per row.
fn plain_gemv(w: &[f32], cols: usize, x: &[f32], y: &mut [f32]) {
    for (row, out) in w.chunks_exact(cols).zip(y.iter_mut()) {
        let mut s = 0.0f32;
        for (a, b) in row.iter().zip(x) {
            s += a * b;
        }
        *out = s;
    }
}

/// Plain transposed loop.
fn plain_gemv_t(w: &[f32], cols: usize, d: &[f32], z: &mut [f32]) {
    for (j, out) in z.iter_mut().enumerate() {
        let mut s = 0.0f32;
        for (i, di) in d.iter().enumerate() {
            s += w[i * cols + j] * di;
        }
        *out = s;
    }
}

fn random_vec(n: usize, lo: f32, hi: f32, rng: &mut Pcg) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Figures of one benchmark run.
#[derive(Debug, Clone, Default)]
pub struct TileBench {
    /// Lines to print, in order.
    pub lines: Vec<String>,
    /// Engine time over plain-loop time for a 256x256 MVM (worse of forward and backward).
    pub mvm_vs_plain: f64,
    /// Device pairs whose coincidence count a stochastic update resolves per second on one core (the
    /// slower of the two error regimes).
    pub coincidences_per_s_per_core: f64,
}

/// What the tile benchmark runs on.
#[derive(Debug, Clone)]
pub struct BenchSetup {
    /// Devices.
    pub device: DeviceSpec,
    /// Tile shape, cell and periphery.
    pub tile: TileConfig,
    /// Pulse scheme of the update figures.
    pub scheme: PulseScheme,
    /// Costs for the ledger figures.
    pub cost: CostModel,
}

impl Default for BenchSetup {
    /// The reference: [`reference_device`] on 256x256 pair tiles, default periphery, stochastic pulses
    /// with BL 31 and update/BL management, default costs.
    fn default() -> Self {
        BenchSetup {
            device: reference_device(),
            tile: TileConfig::default(),
            scheme: PulseScheme::Stochastic {
                bl: 31,
                update_management: true,
                bl_management: true,
            },
            cost: CostModel::default(),
        }
    }
}

/// Runs the tile benchmarks for about `seconds` per figure.
pub fn tiles(seconds: f64, setup: &BenchSetup) -> Result<TileBench> {
    let mut out = TileBench::default();
    let spec = setup.device.clone();
    let mut rng = stream(1, Purpose::Data, 0);
    let (n, m) = (setup.tile.rows, setup.tile.cols);
    let macs = (n * m) as f64;

    // Plain loops on the same shape.
    let w: Vec<f32> = random_vec(n * m, -1.0, 1.0, &mut rng);
    let x = random_vec(m, 0.0, 1.0, &mut rng);
    let d = random_vec(n, -0.1, 0.1, &mut rng);
    let mut y = vec![0.0; n];
    let mut z = vec![0.0; m];
    let plain_f = rate(seconds, || {
        plain_gemv(black_box(&w), m, black_box(&x), &mut y);
        black_box(&mut y);
    });
    let plain_b = rate(seconds, || {
        plain_gemv_t(black_box(&w), m, black_box(&d), &mut z);
        black_box(&mut z);
    });

    // The engine: a 256x256 tile, default periphery (7-bit DAC, 9-bit ADC, noise, bound management).
    let cfg = setup.tile.clone();
    let mut tile = Tile::new(0, &cfg, &spec, 1)?;
    let target: Vec<f32> = random_vec(n * m, -0.1, 0.1, &mut rng);
    tile.program(&target);
    let mut yt = vec![0.0; n];
    let mut zt = vec![0.0; m];
    let tile_f = rate(seconds, || {
        black_box(tile.forward(black_box(&x), &mut yt));
    });
    let tile_b = rate(seconds, || {
        black_box(tile.backward(black_box(&d), &mut zt));
    });
    let g = |r: f64| r * macs / 1e9;
    out.lines.push(format!(
        "device: {}; tile {n}x{m} {} cells",
        spec,
        cfg.cell.name()
    ));
    out.lines.push(format!(
        "{n}x{m} forward:  plain f32 loop {:.2} GMAC/s, tile (full periphery) {:.2} GMAC/s, time ratio tile/plain {:.2}",
        g(plain_f),
        g(tile_f),
        plain_f / tile_f
    ));
    out.lines.push(format!(
        "{n}x{m} backward: plain f32 loop {:.2} GMAC/s, tile (full periphery) {:.2} GMAC/s, time ratio tile/plain {:.2}",
        g(plain_b),
        g(tile_b),
        plain_b / tile_b
    ));
    out.mvm_vs_plain = (plain_f / tile_f).max(plain_b / tile_b);

    // A 1024x1024 layer over a 4x4 grid of 256x256 tiles, on rayon pools of 1 and 2 threads.
    let big = 1024;
    let wb: Vec<f32> = random_vec(big * big, -1.0, 1.0, &mut rng);
    let xb = random_vec(big, 0.0, 1.0, &mut rng);
    let db = random_vec(big, -0.1, 0.1, &mut rng);
    let mut yb = vec![0.0; big];
    let plain_big = rate(seconds, || {
        plain_gemv(black_box(&wb), big, black_box(&xb), &mut yb);
        black_box(&mut yb);
    });
    let mut layer = AnalogMatrix::new(
        big,
        big,
        &cfg,
        &spec,
        &ControllerSpec::default(),
        1.0,
        setup.cost.clone(),
        1,
        0,
    )?;
    let layer_target: Vec<f32> = random_vec(big * big, -0.1, 0.1, &mut rng);
    layer.program(&layer_target);
    let bmacs = (big * big) as f64;
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        let mut ledger = Ledger::default();
        let (f, b) = pool.install(|| {
            let f = rate(seconds, || {
                layer.forward(&xb, &mut yb, &mut ledger, Par::Rayon)
            });
            let mut zb = vec![0.0; big];
            let b = rate(seconds, || {
                layer.backward(&db, &mut zb, &mut ledger, Par::Rayon)
            });
            (f, b)
        });
        out.lines.push(format!(
            "1024x1024 on {} tiles, {threads} thread(s): forward {:.2} GMAC/s, backward {:.2} GMAC/s (plain f32 loop, 1 thread: {:.2} GMAC/s)",
            layer.tile_count(),
            f * bmacs / 1e9,
            b * bmacs / 1e9,
            plain_big * bmacs / 1e9
        ));
    }
    // Simulated cost of one forward and one backward pass of the layer, from the ledger.
    let mut ledger = Ledger::default();
    let mut zb = vec![0.0; big];
    layer.forward(&xb, &mut yb, &mut ledger, Par::Seq);
    layer.backward(&db, &mut zb, &mut ledger, Par::Seq);
    for phase in [Phase::Forward, Phase::Backward] {
        let t = ledger.phase(phase);
        out.lines.push(format!(
            "simulated 1024x1024 {}: {} cycles = {:.1} ns, {:.1} pJ, {} conversions",
            phase.name(),
            t.cycles,
            t.cycles as f64 / setup.cost.clock_hz * 1e9,
            t.energy_pj,
            t.conversions
        ));
    }

    // Stochastic update on one 256x256 tile: sigmoid-like inputs, small errors, BL 31 with update and
    // BL management, every coincidence its own noisy pulse.
    let scheme = setup.scheme.clone();
    let xu = random_vec(m, 0.0, 1.0, &mut rng);
    let lr = 0.01;
    out.coincidences_per_s_per_core = f64::INFINITY;
    // Two error magnitudes: typical hidden-layer errors (|d| <= 0.01, a few percent of the pairs pulse)
    // and large output-layer errors (|d| <= 0.05, every pulse costs a device write with its noise).
    for (label, d_max) in [
        ("typical errors |d| <= 0.01", 0.01f32),
        ("large errors |d| <= 0.05", 0.05),
    ] {
        let du = random_vec(n, -d_max, d_max, &mut rng);
        // Alternate the sign of d so the weights random-walk around their programmed values.
        let neg: Vec<f32> = du.iter().map(|v| -v).collect();
        let (mut evals, mut pulses, mut updates) = (0u64, 0u64, 0u64);
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < seconds {
            let dd = if updates % 2 == 0 { &du } else { &neg };
            let r = apply_scheme(&scheme, &mut tile, &xu, dd, lr);
            evals += r.evaluations;
            pulses += r.up + r.down;
            updates += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        // Every device pair's coincidence count is resolved by an update: explicitly (popcount) for pairs
        // whose row and column both fire, implicitly (zero) for pairs in silent rows or columns.
        let resolved = (n * m) as f64 * updates as f64 / secs;
        out.coincidences_per_s_per_core = out.coincidences_per_s_per_core.min(resolved);
        out.lines.push(format!(
            "update {n}x{m}, {:?}, lr {lr}, x in [0,1], {label}: {:.0} device pairs resolved/s/core \
             ({:.0} evaluated by popcount), {:.0} device pulses per update, {:.1} M device pulses/s, {:.0} updates/s",
            scheme,
            resolved,
            evals as f64 / secs,
            pulses as f64 / updates as f64,
            pulses as f64 / secs / 1e6,
            updates as f64 / secs
        ));
    }

    // Ideal periphery for reference: how much of the tile's time is the periphery.
    let ideal = TileConfig {
        forward: IoConfig::ideal(),
        backward: IoConfig::ideal(),
        ..cfg
    };
    let mut t_ideal = Tile::new(0, &ideal, &spec, 1)?;
    t_ideal.program(&target);
    let ideal_f = rate(seconds, || {
        black_box(t_ideal.forward(black_box(&x), &mut yt));
    });
    out.lines.push(format!(
        "{n}x{m} forward with an ideal periphery: {:.2} GMAC/s",
        g(ideal_f)
    ));
    Ok(out)
}

/// The micro-benchmarks of the hot kernels, each against the plain version it replaced, measured in the
/// same run for about `seconds` per figure: the noise lanes against the ziggurat on PCG64 (ns per
/// standard-normal sample), the pulse-train draw against one draw per two slots (ns per train, BL 31
/// and BL 4), the batched constant-step write against single writes (ns per device write, 1 to 3
/// pulses each), and the matrix-vector kernels on a 256x256 matrix (us per product). Returns the lines
/// to print; the last is `lanes_ns_per_sample=<n> train_bl31_ns=<n> batch_write_ns=<n>
/// gemv_256_us=<n>`.
pub fn kernels(seconds: f64) -> Result<Vec<String>> {
    use aimsim_devices::Population;
    use aimsim_devices::lanes::NormalLanes;
    use aimsim_devices::normal::standard_normal;
    use aimsim_sim::float::FloatMatrix;

    let mut lines = Vec::new();
    let ns = |calls_per_s: f64, per_call: f64| 1e9 / (calls_per_s * per_call);

    // Write noise: one bulk fill of the lanes against one ziggurat draw at a time.
    let mut lanes = NormalLanes::from_rng(&mut stream(1, Purpose::Write, 0));
    let mut buf = vec![0.0f32; 4096];
    let lanes_ns = ns(
        rate(seconds, || {
            lanes.fill(&mut buf);
            black_box(&mut buf);
        }),
        buf.len() as f64,
    );
    let mut pcg = stream(1, Purpose::Write, 1);
    let zig_ns = ns(
        rate(seconds, || {
            for v in buf.iter_mut() {
                *v = standard_normal(&mut pcg);
            }
            black_box(&mut buf);
        }),
        buf.len() as f64,
    );
    lines.push(format!(
        "noise lanes (devices/src/lanes.rs): {lanes_ns:.2} ns per sample; ziggurat on PCG64: {zig_ns:.2} ns per sample; ratio {:.2}",
        zig_ns / lanes_ns
    ));

    // Pulse trains: the jumped draw against the plain loop, for a long and a short train.
    let mut train_ns = [0.0; 2];
    for (k, bl) in [31u32, 4].into_iter().enumerate() {
        let probs: Vec<f32> = (0..1024).map(|i| (i % 97) as f32 / 97.0).collect();
        let mut fast = stream(1, Purpose::Write, 2);
        let mut plain = fast.clone();
        let f = ns(
            rate(seconds, || {
                for p in &probs {
                    black_box(fast.train(*p, bl));
                }
            }),
            probs.len() as f64,
        );
        let p = ns(
            rate(seconds, || {
                for q in &probs {
                    black_box(plain.train_plain(*q, bl));
                }
            }),
            probs.len() as f64,
        );
        train_ns[k] = f;
        lines.push(format!(
            "pulse train BL {bl} (sim/src/rng.rs, Pcg::train): {f:.1} ns per train; plain loop: {p:.1} ns; ratio {:.2}",
            p / f
        ));
    }

    // Device writes of the reference device: the batch (noise lanes, fused loop) against single writes.
    let devices = 65_536;
    let mut pop = Population::new(
        &reference_device(),
        devices,
        &mut stream(1, Purpose::DeviceDraw, 0),
    )?;
    let mut rng = stream(1, Purpose::Data, 1);
    let idx: Vec<u32> = (0..devices as u32).collect();
    let counts: Vec<i32> = (0..devices)
        .map(|_| {
            let m = rng.random_range(1..=3);
            if rng.random::<bool>() { m } else { -m }
        })
        .collect();
    let mut noise = Vec::new();
    let mut delta = vec![0.0f32; devices];
    let batch_ns = ns(
        rate(seconds, || {
            pop.pulse_many(&idx, &counts, &mut rng, &mut lanes, &mut noise, &mut delta);
            black_box(&mut delta);
        }),
        devices as f64,
    );
    let single_ns = ns(
        rate(seconds, || {
            for (i, m) in counts.iter().enumerate() {
                pop.pulse(i, *m, &mut rng);
            }
        }),
        devices as f64,
    );
    lines.push(format!(
        "constant-step writes of 1-3 pulses, random signs (Population::pulse_many): {batch_ns:.2} ns per write; single writes (Population::pulse): {single_ns:.2} ns; ratio {:.2}",
        single_ns / batch_ns
    ));

    // Matrix-vector kernels, weights in cache.
    let (n, m) = (256, 256);
    let mut w = FloatMatrix::new(n, m);
    w.weights_mut()
        .copy_from_slice(&random_vec(n * m, -1.0, 1.0, &mut rng));
    let x = random_vec(m, 0.0, 1.0, &mut rng);
    let d = random_vec(n, -0.1, 0.1, &mut rng);
    let (mut y, mut z) = (vec![0.0; n], vec![0.0; m]);
    let fwd_us = 1e6 / rate(seconds, || w.forward(black_box(&x), black_box(&mut y)));
    let bwd_us = 1e6 / rate(seconds, || w.backward(black_box(&d), black_box(&mut z)));
    lines.push(format!(
        "gemv {n}x{m} (sim/src/kernels/gemv.rs): forward {fwd_us:.2} us ({:.2} GMAC/s), transposed {bwd_us:.2} us ({:.2} GMAC/s)",
        (n * m) as f64 / fwd_us / 1e3,
        (n * m) as f64 / bwd_us / 1e3
    ));
    lines.push(format!(
        "lanes_ns_per_sample={lanes_ns:.2} train_bl31_ns={:.1} batch_write_ns={batch_ns:.2} gemv_256_us={fwd_us:.2}",
        train_ns[0]
    ));
    Ok(lines)
}

/// Figures of `aimsim bench train`.
#[derive(Debug, Clone)]
pub struct TrainBench {
    /// Lines to print.
    pub lines: Vec<String>,
    /// Training samples per second (wall clock, all threads).
    pub samples_per_s: f64,
    /// Test accuracy after the epoch, percent.
    pub test_accuracy: f64,
    /// What the team did, when the tiles ran on one.
    pub team: Option<TeamReport>,
}

/// Where `aimsim bench train` runs the tiles' parallel phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    /// A [`Team`] that measures whether spreading a phase over its threads pays and adapts (what
    /// `aimsim run` uses).
    Team,
    /// A [`Team`] that always spreads its phases over every thread.
    TeamAlways,
    /// A rayon pool of the same threads: the general-purpose executor, for comparison.
    Rayon,
}

impl Executor {
    /// Name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Executor::Team => "team",
            Executor::TeamAlways => "team-always",
            Executor::Rayon => "rayon",
        }
    }
}

/// The `threads` line of `aimsim bench train`: how many threads the tiles used and why.
pub fn threads_line(executor: Executor, threads: usize, team: Option<&TeamReport>) -> String {
    let Some(r) = team.filter(|r| r.threads > 1) else {
        return match executor {
            Executor::Rayon => {
                format!("threads: {threads} (a rayon pool of {threads}; it does not adapt)")
            }
            _ => format!(
                "threads: 1 (asked for {threads}; a team of one runs every job on the calling thread)"
            ),
        };
    };
    let n = r.threads;
    let share = 100.0 * r.spread_share();
    if r.spread == TeamSpread::Always {
        return format!(
            "threads: {n} (a team that always spreads: {n} threads for every parallel phase)"
        );
    }
    let now = if r.spreading { n } else { 1 };
    let why = match r.last_rates {
        Some((spread, solo)) => format!(
            "the last of {} comparison(s) measured {spread:.0} parallel phases/s on {n} threads against {solo:.0} on 1; {} switch(es)",
            r.comparisons, r.switches
        ),
        None => "no comparison completed".to_string(),
    };
    format!(
        "threads: {n} available, {now} chosen at the end; {n} threads ran {share:.1}% of the parallel phases, 1 thread the rest ({why})"
    )
}

/// The reference training workload: 784-256-128-10 sigmoid MLP, batch 1, on 256x256 tiles of `cell`
/// cells (the reference: [`CellKind::Single`], one device per weight as in aihwkit's single-device tiles) of
/// [`reference_device`] with the aihwkit periphery and stochastic pulses (BL 31), one epoch of `train`
/// samples, then the test accuracy on `test` samples. `data` is Fashion-MNIST (or any dataset with 784
/// inputs and 10 classes).
///
/// The tiles run on `executor` with `threads` threads; the outputs are the same bits on any.
pub fn train(
    data: &aimsim_networks::data::Dataset,
    lr: f32,
    threads: usize,
    cell: CellKind,
    executor: Executor,
) -> Result<TrainBench> {
    use aimsim_networks::mlp::{Hardware, Mlp};
    use aimsim_networks::train::{self as tr, Quiet, TrainConfig};

    let mut setup = BenchSetup::default();
    setup.tile.cell = cell;
    let hw = Hardware {
        device: setup.device.clone(),
        tile: setup.tile.clone(),
        controller: ControllerSpec::default(),
        w_scale: 1.0,
        cost: setup.cost.clone(),
        seed: 1,
    };
    let cfg = reference_network(data, false);
    let mut net = Mlp::new(&cfg, Some(&hw), &mut stream(1, Purpose::Init, 0))?;
    let tc = TrainConfig {
        epochs: 1,
        lr,
        lr_decay: 1.0,
        shuffle: true,
        seed: 1,
        validation: 0,
        batch: 1,
        batch_update: Default::default(),
    };
    // Time the training epoch alone: evaluation runs inside `train` too, so measure it separately.
    let mut measure = |par: Par<'_>| {
        let start = Instant::now();
        let rows = tr::train(&mut net, data, &tc, &setup.cost, &mut Quiet, par);
        let total = start.elapsed().as_secs_f64();
        let mut eval_net_ledger = Ledger::default();
        let eval_start = Instant::now();
        let acc = tr::evaluate(&mut net, data, &mut eval_net_ledger, par);
        (rows, total, acc, eval_start.elapsed().as_secs_f64())
    };
    let ((rows, total, acc, eval), team) = match executor {
        Executor::Rayon => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            (pool.install(|| measure(Par::Rayon)), None)
        }
        Executor::Team | Executor::TeamAlways => {
            let spread = if executor == Executor::Team {
                TeamSpread::Adaptive
            } else {
                TeamSpread::Always
            };
            let team = Team::with_spread(threads, spread);
            (measure(team.par()), Some(team.report()))
        }
    };
    // `train` evaluated twice (before and after the epoch): subtract both.
    let train_s = (total - 2.0 * eval).max(1e-9);
    let samples_per_s = data.train_len() as f64 / train_s;
    let last = rows.last().cloned().unwrap_or_default();
    let lines = vec![
        format!(
            "workload: {} ({} train / {} test), 784-256-128-10 sigmoid, batch 1, {} cells of {}; lr {lr}; {threads} thread(s), executor {}",
            data.name,
            data.train_len(),
            data.test_len(),
            cell.name(),
            setup.device,
            executor.name()
        ),
        format!(
            "epoch 1: train loss {:.4}, train accuracy {:.2}%, test accuracy {:.2}% (re-evaluated: {:.2}%)",
            last.train_loss, last.train_accuracy, last.test_accuracy, acc
        ),
        format!(
            "pulses: {} up, {} down; simulated training energy {:.3} uJ, latency {:.3} ms",
            last.pulses_up,
            last.pulses_down,
            last.train_energy_pj / 1e6,
            last.train_latency_ns / 1e6
        ),
        format!(
            "wall: {:.2} s training ({:.0} samples/s), {:.2} s per test pass ({:.0} samples/s)",
            train_s,
            samples_per_s,
            eval,
            data.test_len() as f64 / eval.max(1e-9)
        ),
        threads_line(executor, threads, team.as_ref()),
    ];
    Ok(TrainBench {
        lines,
        samples_per_s,
        test_accuracy: last.test_accuracy,
        team,
    })
}

/// The reference network of the training and inference benchmarks: `inputs`-256-128-`classes`, sigmoid,
/// cross-entropy, digital bias; initial weights set exactly or programmed with pulses.
fn reference_network(
    data: &aimsim_networks::data::Dataset,
    exact_init: bool,
) -> aimsim_networks::mlp::MlpConfig {
    use aimsim_networks::mlp::{Activation, BiasMode, Loss, MlpConfig};
    MlpConfig {
        sizes: vec![data.inputs, 256, 128, data.classes],
        activation: Activation::Sigmoid,
        loss: Loss::CrossEntropy,
        bias: BiasMode::Digital,
        init_scale: 1.0,
        exact_init,
        conv: None,
    }
}

/// What `aimsim bench infer` measured.
#[derive(Debug, Clone)]
pub struct InferBench {
    /// Wall time of the evaluations (every time x compensation x repeat on the test set), seconds.
    pub eval_s: f64,
    /// Wall time of deploying (programming by write-verify, per-device draws, references), seconds.
    pub program_s: f64,
    /// Test-set inferences per second.
    pub inferences_per_s: f64,
    /// Human-readable lines.
    pub lines: Vec<String>,
}

/// The inference workload of issue 15: a 784-256-128-10 sigmoid MLP (its float weights drawn as at
/// the start of training) deployed by write-verify on one-sided pairs of a PCM-like constant-step
/// device (0-25 uS, 400 steps, c2c 0.2) with the default periphery and output noise 0.04, PCM drift
/// and 1/f read noise, then read on `data`'s test set at the 8 default times x 3 compensations x 5
/// repeats on `threads` threads.
pub fn infer(data: &aimsim_networks::data::Dataset, threads: usize) -> Result<InferBench> {
    use aimsim_devices::aging::{Aging, Programming};
    use aimsim_networks::deploy::{
        Compensation, DeployConfig, Deployment, FloatLayer, Mapping, Program,
    };
    use aimsim_networks::mlp::{Hardware, Mlp};

    let mut step = StepParams::new(StepKind::Constant, 0.0025);
    step.g_range = Some((0.0, 25.0));
    let mut device = DeviceSpec::new(Model::Step(step));
    device.c2c = 0.2;
    let tile = TileConfig {
        rows: 256,
        cols: 256,
        cell: CellKind::OneSided,
        forward: IoConfig {
            out_noise: 0.04,
            ..IoConfig::default()
        },
        backward: IoConfig::default(),
        zero_reference: false,
    };
    let hw = Hardware {
        device,
        tile,
        controller: ControllerSpec::default(),
        w_scale: 1.0,
        cost: CostModel::default(),
        seed: 1,
    };
    let cfg = reference_network(data, true);
    let float = Mlp::new(&cfg, None, &mut stream(1, Purpose::Init, 0))?;
    let layers = FloatLayer::from_mlp(&float);
    let deploy = DeployConfig {
        program: Program::WriteVerify {
            tolerance: 0.01,
            max_pulses: 2000,
        },
        noise: Programming::Exact,
        mapping: Mapping::Layer,
        g_max_us: 25.0,
        aging: Aging::pcm(),
    };
    let started = Instant::now();
    let d = Deployment::from_float(&layers, &cfg, &hw, &deploy)?;
    let program_s = started.elapsed().as_secs_f64();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    let times = crate::scenario::DEFAULT_TIMES_S;
    let comps = [
        Compensation::None,
        Compensation::Global,
        Compensation::Column,
    ];
    let started = Instant::now();
    let (jobs, _) = crate::infer::evaluate_grid(&d, data, &times, 5, &comps, &pool);
    let eval_s = started.elapsed().as_secs_f64();
    let inferences = jobs.len() * comps.len() * data.test_len();
    let inferences_per_s = inferences as f64 / eval_s.max(1e-9);
    let lines = vec![
        format!(
            "network {:?} on {}x{} one-sided tiles; {} test samples; {} times x {} compensations x 5 repeats on {} thread(s)",
            cfg.sizes,
            hw.tile.rows,
            hw.tile.cols,
            data.test_len(),
            times.len(),
            comps.len(),
            threads.max(1)
        ),
        format!(
            "deploy (write-verify, draws, references): {program_s:.2} s; evaluations: {eval_s:.2} s, {inferences} inferences, {inferences_per_s:.0} inferences/s"
        ),
    ];
    Ok(InferBench {
        eval_s,
        program_s,
        inferences_per_s,
        lines,
    })
}

/// Which network `aimsim bench conv` trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvBenchNet {
    /// The LeNet of `scenarios/conv/lenet-fmnist.toml`.
    Lenet,
    /// The reference MLP of `aimsim bench train` (784-256-128-10 sigmoid) on the same chip.
    Mlp,
}

/// What `aimsim bench conv` measured.
#[derive(Debug, Clone)]
pub struct ConvBench {
    /// Human-readable lines.
    pub lines: Vec<String>,
    /// Training samples per second of wall time.
    pub samples_per_s: f64,
}

/// The chip and network of `scenarios/conv/lenet-fmnist.toml` (its base, without variants), built in.
const LENET_SCENARIO: &str = include_str!("../scenarios/conv/lenet-fmnist.toml");

/// Training speed of a convolutional network (or the reference MLP) on tiles with mini-batches: the
/// chip, periphery and update of `scenarios/conv/lenet-fmnist.toml` (the reference device on 256x256
/// single cells, aihwkit's periphery, stochastic pulses BL 31), `batch` samples per update, on
/// `threads` threads (a [`Team`]). Times training on every training sample of `data` (no evaluation).
pub fn conv(
    data: &aimsim_networks::data::Dataset,
    net: ConvBenchNet,
    batch: usize,
    threads: usize,
) -> Result<ConvBench> {
    use aimsim_networks::mlp::{Activation, Mlp, MlpConfig};
    let (s, _, _) = crate::scenario::load_str(
        LENET_SCENARIO,
        "scenarios/conv/lenet-fmnist.toml",
        Path::new("."),
        &[],
    )?;
    let t = s
        .train
        .clone()
        .context("the LeNet scenario has a [train] section")?;
    let cfg = match net {
        ConvBenchNet::Lenet => {
            let mut sizes = vec![data.inputs];
            sizes.extend(t.hidden.iter().map(|h| *h as usize));
            sizes.push(data.classes);
            MlpConfig {
                sizes,
                activation: t.activation,
                loss: t.loss,
                bias: t.bias,
                init_scale: t.init_scale,
                exact_init: t.exact_init,
                conv: t.conv.clone(),
            }
        }
        ConvBenchNet::Mlp => MlpConfig {
            activation: Activation::Sigmoid,
            ..reference_network(data, true)
        },
    };
    let mut model = Mlp::new(&cfg, Some(&s.hardware), &mut stream(1, Purpose::Init, 0))?;
    let team = Team::new(threads);
    let n = data.train_len();
    let lr = t.lr;
    let mut ledger = Ledger::default();
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    let mut correct = 0usize;
    let start = Instant::now();
    for lo in (0..n).step_by(batch.max(1)) {
        let hi = (lo + batch.max(1)).min(n);
        xs.clear();
        ys.clear();
        for i in lo..hi {
            let (x, y) = data.train_sample(i);
            xs.extend_from_slice(x);
            ys.push(y as usize);
        }
        let r = model.train_batch(&xs, &ys, lr, t.batch_update, &mut ledger, team.par());
        correct += r.iter().zip(&ys).filter(|((_, p), y)| p == *y).count();
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let samples_per_s = n as f64 / secs;
    let what = match net {
        ConvBenchNet::Lenet => {
            "LeNet (conv 5x5 1->16, max pool 2, conv 5x5 16->32, max pool 2, 512-128-10 tanh)"
        }
        ConvBenchNet::Mlp => "MLP 784-256-128-10 sigmoid",
    };
    let upd = ledger.phase(Phase::Update);
    let lines = vec![
        format!(
            "workload: {what} on {} ({n} training samples), batch {batch}, lr {lr}; reference device on {}x{} single cells, aihwkit periphery, stochastic pulses BL 31; {threads} thread(s)",
            data.name, s.hardware.tile.rows, s.hardware.tile.cols
        ),
        format!(
            "training accuracy over the pass {:.2}%; pulses {} up, {} down",
            100.0 * correct as f64 / n.max(1) as f64,
            upd.pulses_up,
            upd.pulses_down
        ),
        format!("wall: {secs:.2} s ({samples_per_s:.0} samples/s)"),
        threads_line(Executor::Team, threads, Some(&team.report())),
    ];
    Ok(ConvBench {
        lines,
        samples_per_s,
    })
}
