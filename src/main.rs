//! The `aimsim` command-line interface.

use std::path::PathBuf;
use std::process::ExitCode;

use aimsim::commands::{self, ProtocolFlags};
use aimsim::presets::PRESETS;
use aimsim::scenario;
use clap::{Args, Parser, Subcommand};

/// aimsim: a cycle-level simulator of analog in-memory-computing hardware.
///
/// Scenarios are TOML files (see docs/scenarios.md). Every command that reads a scenario accepts
/// `--set <dotted.key>=<value>` (repeatable) to override any key without editing the file; overrides are
/// validated exactly like the file.
#[derive(Parser, Debug)]
#[command(name = "aimsim", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Scenario file plus overrides, shared by every command that reads a scenario.
#[derive(Args, Debug)]
struct ScenarioArgs {
    /// Scenario file (TOML).
    scenario: PathBuf,
    /// Override a scenario key, e.g. `--set device.c2c=0.02` or `--set device.d2d.nl_up={dist="normal",sigma=0.5}`.
    /// Repeatable; applied in order, before validation.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pulse-response protocol on a device scenario and write traces and plots.
    ///
    /// Every sampled device (with its own device-to-device variation) starts at its minimum conductance and
    /// receives N potentiation pulses then N depression pulses, for K cycles. Writes into --out:
    /// trace.npy (float32, rows = pulses incl. the initial state, columns = traced devices), trace.csv
    /// (cycle, pulse, direction, column, device, conductance in uS), trace_devices.csv (which device
    /// each column is), response.svg and response.png, manifest.json. A [trace] section picks devices
    /// and a cadence (docs/traces.md).
    Device {
        #[command(flatten)]
        scenario: ScenarioArgs,
        /// Output folder (created if missing; files in it are replaced atomically).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Pulses per direction N [default: the scenario's protocol.pulses, else the device's level count].
        #[arg(long, value_name = "N")]
        pulses: Option<u32>,
        /// Up/down cycles K [default: protocol.cycles, else 1].
        #[arg(long, value_name = "K")]
        cycles: Option<u32>,
        /// Devices sampled M [default: protocol.devices, else 8].
        #[arg(long, value_name = "M")]
        devices: Option<u32>,
    },
    /// Check a scenario file and print what it defines (exit 0), or the first error with its file, line,
    /// column and key (exit 1).
    Validate {
        #[command(flatten)]
        scenario: ScenarioArgs,
    },
    /// Train a network on the simulated chip: every `[[variant]]` of the scenario (or the scenario
    /// itself), each epoch evaluated on the test set.
    ///
    /// Writes into --out (one folder per variant when there are variants): metrics.csv (per epoch: loss,
    /// accuracies, pulses by polarity, refreshes, simulated latency and energy), trace.npy/trace.csv
    /// (conductances of sampled devices during training), histogram.csv, accuracy.svg/png,
    /// histogram.svg/png, manifest.json; then summary.csv and, with variants, accuracy.svg/png comparing
    /// them. Prints a summary table. Shows a progress bar on a terminal, log lines otherwise.
    Run {
        #[command(flatten)]
        scenario: ScenarioArgs,
        /// Output folder (created if missing; files in it are replaced atomically).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Continue from the checkpoints in --out (docs/checkpoints.md): same scenario and --set
        /// overrides; the results are bit-identical to an uninterrupted run.
        #[arg(long)]
        resume: bool,
        /// Stop after epoch N of the first run that reaches it, once its checkpoint is written
        /// (simulates an interruption; continue with --resume).
        #[arg(long, value_name = "N")]
        stop_after_epoch: Option<u32>,
    },
    /// Run a variation sweep: every point of the scenario's `[sweep]` section (docs/sweeps.md), in
    /// parallel, resumable.
    ///
    /// Writes into --out: plan.json and plan.csv (the expanded plan), points/<id>/ (each point's
    /// training outputs, as `aimsim run` writes them, and point.json, its completion marker), results.csv
    /// (one row per finished point: id, swept values, repeat, seed, final metrics, simulated energy and
    /// latency, wall_s), manifest.json. Rerunning the same command skips finished points. Each point is
    /// seeded from (master seed, point index), so shards merged equal a single run bit for bit.
    /// `aimsim sweep merge <shard dirs...> --out <dir>` merges the folders of shards.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Sweep {
        #[command(subcommand)]
        merge: Option<SweepCommand>,
        /// Scenario file (TOML) with a [sweep] section.
        #[arg(required = true)]
        scenario: Option<PathBuf>,
        /// Override a scenario key for every point (repeatable), e.g. `--set train.epochs=2`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Output folder (created if missing; rerunning into it resumes).
        #[arg(long, value_name = "DIR", required = true)]
        out: Option<PathBuf>,
        /// Threads in all [default: SLURM_CPUS_PER_TASK, else all cores]. Points run concurrently first;
        /// tile-level threads inside a point get what is left (docs/sweeps.md).
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
        /// Run only shard i of N (round robin over the plan) [default: from SLURM_ARRAY_TASK_ID and
        /// SLURM_ARRAY_TASK_COUNT when set].
        #[arg(long, value_name = "i/N")]
        shard: Option<String>,
        /// Write the expanded plan (plan.json, plan.csv) into --out and stop.
        #[arg(long)]
        plan: bool,
        /// Write <out>/sweep.sbatch, a Slurm job-array script running the sweep in this many shards, and
        /// stop.
        #[arg(long, value_name = "SHARDS")]
        emit_sbatch: Option<usize>,
        /// With --emit-sbatch: each task's time limit (#SBATCH --time), in Slurm's forms (M, H:M:S,
        /// D-H:M:S, ...).
        #[arg(long, value_name = "TIME", default_value = "1-00:00:00")]
        sbatch_time: String,
        /// With --emit-sbatch: each task's memory (#SBATCH --mem), e.g. 4G.
        #[arg(long, value_name = "MEM", default_value = "4G")]
        sbatch_mem: String,
        /// Run at most this many unfinished points, then stop (a later run resumes).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Draw the plots of an output folder (SVG and PNG): device response, training accuracy and
    /// conductance histograms, and for sweeps a metric against a swept key.
    ///
    /// Detects what the folder holds: a device run (trace.csv with cycle/direction), a training run
    /// (metrics.csv, histogram.csv, trace.csv), a folder of runs (variants or seeds), or a sweep
    /// (results.csv): then one line per value of --by, error bars = standard deviation over repeats,
    /// one chart per combination of the other swept keys.
    Plot {
        /// Output folder of `aimsim device`, `run` or `sweep`.
        dir: PathBuf,
        /// Where to write the plots [default: into the folder itself; sweeps: <dir>/plots].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Sweeps: swept key on the x axis [default: the first swept key with numeric values].
        #[arg(long, value_name = "KEY")]
        x: Option<String>,
        /// Sweeps: swept key with one line per value [default: the next swept key].
        #[arg(long, value_name = "KEY")]
        by: Option<String>,
        /// Sweeps: results.csv column on the y axis (repeatable) [default: final_test_accuracy and
        /// train_energy_pj].
        #[arg(long, value_name = "COLUMN")]
        metric: Vec<String>,
    },
    /// Deploy a trained network on the chip and measure its accuracy at times after programming
    /// (docs/inference.md).
    ///
    /// Trains every variant x seed as `aimsim run` does (into the same folders; with
    /// `train.epochs = 0` and `train.init_weights` it starts from given weights), then programs it as
    /// `[inference]` says (a network trained on the chip keeps its devices as they are), draws each
    /// device's drift, relaxation and failure once, and reads the test set at every time in
    /// `inference.times_s` with fresh 1/f read noise, for each compensation and repeat. Writes
    /// accuracy_vs_time.csv (t_s, compensation, seed, repeat, accuracy) and its plot, and per run
    /// programming.csv, conductances.csv/svg/png, trace_t.csv (with a [trace] section) and
    /// inference.json.
    Infer {
        #[command(flatten)]
        scenario: ScenarioArgs,
        /// Output folder (created if missing; files in it are replaced atomically).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Threads for the evaluations [default: SLURM_CPUS_PER_TASK, else all cores].
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
    },
    /// Gradient fidelity of equilibrium propagation: for a batch, EP's update against the exact gradient
    /// of the same network, for every beta and estimator in `[ep]`, every `[[variant]]` and seed.
    ///
    /// The exact gradient is computed at the free fixed point with the weights the devices hold, by
    /// implicit differentiation (docs/ep.md). Writes into --out: fidelity.csv (variant, seed, feedback,
    /// beta, estimator, cosine, cosine_median, rel_error, cosine_applied, rel_error_applied, norms), cosine.svg/png,
    /// error.svg/png, manifest.json. Prints a table (mean +- std over seeds).
    EpFidelity {
        #[command(flatten)]
        scenario: ScenarioArgs,
        /// Output folder (created if missing; files in it are replaced atomically).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Local plasticity rules on the tiles (`[local]`): Hebbian, anti-Hebbian, or curl descent in the
    /// teacher-student setting, every `[[variant]]` and seed.
    ///
    /// Writes into --out: local.csv (test loss, alignment, weight norm at every evaluation), summary.csv
    /// (one row per run), loss.svg/png, stability.svg/png (curl descent with variants: final over initial
    /// loss against the flipped fraction), manifest.json. Prints a table (mean +- std over seeds).
    Local {
        #[command(flatten)]
        scenario: ScenarioArgs,
        /// Output folder (created if missing; files in it are replaced atomically).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Read given input vectors through a layer of tiles holding given weights: the periphery's outputs
    /// next to the exact products.
    ///
    /// The layer is built from the scenario's [tile], [io], [io.backward], [device], tile.w_scale and seed
    /// (a matrix larger than a tile is split over a grid of tiles, partial sums added digitally). Writes
    /// into --out: outputs.npy (vectors x outputs, float32), exact.npy (the float products with the given
    /// weights), weights.npy (what the devices hold) and manifest.json (with the error's mean and sd).
    Mvm {
        #[command(flatten)]
        scenario: ScenarioArgs,
        /// Weights, a 2-D float32/float64 .npy file (outputs x inputs of the forward read, layer units).
        #[arg(long, value_name = "FILE")]
        weights: PathBuf,
        /// Input vectors, a 2-D .npy file: one vector per row (of the weights' column count forward, of
        /// its row count backward).
        #[arg(long, value_name = "FILE")]
        inputs: PathBuf,
        /// Read forward (`y = W x`) or backward (`z = W^T d`).
        #[arg(long, value_enum, default_value_t = Direction::Forward)]
        direction: Direction,
        /// How the weights reach the devices: `exact` sets every device to its share without pulses (to
        /// measure the periphery alone), `pulses` programs them closed loop as training does.
        #[arg(long, value_enum, default_value_t = Programming::Exact)]
        program: Programming,
        /// Output folder (created if missing; files in it are replaced atomically).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// List the built-in device presets (usable as `preset = "<name>"` in a [device] section).
    Presets,
    /// Benchmarks that print figures; the last line of each is a machine-readable summary.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand, Debug)]
enum SweepCommand {
    /// Merge the --out folders of the shards of one sweep: checks that they hold the same plan and that
    /// every point finished in exactly one of them, then writes the merged folder (results.csv equal to
    /// a single-machine run's, except wall_s).
    Merge {
        /// Shard folders.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Merged output folder (new, or a previous merge of the same plan).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// Direction of an `aimsim mvm` read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Direction {
    /// `y = W x`.
    Forward,
    /// `z = W^T d`.
    Backward,
}

/// How `aimsim mvm` writes the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Programming {
    /// Every device set to its share without pulses.
    Exact,
    /// Closed-loop potentiation pulses, as training's initial programming.
    Pulses,
}

#[derive(Subcommand, Debug)]
enum BenchWhat {
    /// Single-pulse write throughput of every built-in preset on one core. Last line:
    /// `device_pulses_per_s_min=<n> device_pulses_per_s_median=<n>`.
    Devices {
        /// Devices per population.
        #[arg(long, default_value_t = 65_536)]
        devices: usize,
        /// Seconds of measurement per preset.
        #[arg(long, default_value_t = 0.5)]
        seconds: f64,
    },
    /// Speed of the tile engine: forward/backward MVM GMAC/s on a 256x256 tile and on a 1024x1024 layer
    /// over 16 tiles (1 and 2 threads) against a plain f32 loop run in the same process, and stochastic
    /// update throughput. Last line: `mvm_vs_plain=<engine time / plain-loop time, worse of forward and
    /// backward> update_coincidences_per_s_per_core=<device-pair evaluations per second on one core>`.
    Tiles {
        /// Seconds of measurement per figure.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        /// Take the device, [tile], [io], [update] and [cost] settings from this scenario instead of the
        /// reference (constant-step dw_min 0.001, d2d and c2c 0.3, 256x256 pair tiles, aihwkit periphery).
        #[arg(long, value_name = "SCENARIO")]
        scenario: Option<PathBuf>,
        /// Override a key of that scenario (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE", requires = "scenario")]
        set: Vec<String>,
    },
    /// Micro-benchmarks of the hot kernels against the plain versions they replaced, measured in the
    /// same run: noise lanes against the ziggurat, pulse trains against the plain loop, batched
    /// constant-step writes against single writes, and the 256x256 matrix-vector kernels. Last line:
    /// `lanes_ns_per_sample=<n> train_bl31_ns=<n> batch_write_ns=<n> gemv_256_us=<n>`.
    Kernels {
        /// Seconds of measurement per figure.
        #[arg(long, default_value_t = 0.5)]
        seconds: f64,
    },
    /// Training speed of a convolutional network on tiles with mini-batches: the LeNet of
    /// scenarios/conv/lenet-fmnist.toml (or the reference MLP, `--network mlp`) with its chip and
    /// periphery, on Fashion-MNIST training images (synthetic ones when it is not installed). Last line:
    /// `conv_samples_per_s=<n>`.
    Conv {
        /// Folder of the Fashion-MNIST IDX files [default: AIMSIM_DATA, then
        /// /usr/share/datasets/fashion-mnist].
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// Training samples timed.
        #[arg(long, default_value_t = 2000)]
        samples: usize,
        /// Samples per mini-batch.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Threads [default: SLURM_CPUS_PER_TASK, else all cores].
        #[arg(long)]
        threads: Option<usize>,
        /// `lenet` or `mlp` (784-256-128-10 sigmoid on the same chip).
        #[arg(long, default_value = "lenet", value_parser = ["lenet", "mlp"])]
        network: String,
    },
    /// Inference speed after deployment: a 784-256-128-10 MLP deployed by write-verify on PCM-like
    /// one-sided pairs, read on the Fashion-MNIST test set (synthetic inputs when it is not installed) at
    /// 8 times x 3 compensations x 5 repeats. Last line: `infer_s=<n> inferences_per_s=<n>`.
    Infer {
        /// Folder of the Fashion-MNIST IDX files [default: AIMSIM_DATA, then
        /// /usr/share/datasets/fashion-mnist].
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// Test samples.
        #[arg(long, default_value_t = 10_000)]
        test_samples: usize,
        /// Threads [default: SLURM_CPUS_PER_TASK, else all cores].
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Training speed on the reference workload: Fashion-MNIST, 784-256-128-10 sigmoid, batch 1,
    /// stochastic pulses BL 31, constant-step devices (dw_min 0.001, d2d and c2c 0.3, one device per
    /// weight), 7-bit DAC, 9-bit ADC, output noise 0.06; one epoch. Last line: `train_samples_per_s=<n> test_accuracy=<%>`.
    Train {
        /// Folder of the Fashion-MNIST IDX files [default: AIMSIM_DATA, then
        /// /usr/share/datasets/fashion-mnist].
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// Training samples of the epoch (the first ones).
        #[arg(long, default_value_t = 60_000)]
        train_samples: usize,
        /// Test samples.
        #[arg(long, default_value_t = 10_000)]
        test_samples: usize,
        /// Learning rate.
        #[arg(long, default_value_t = 0.05)]
        lr: f32,
        /// Threads [default: SLURM_CPUS_PER_TASK, else all cores].
        #[arg(long)]
        threads: Option<usize>,
        /// Unit cell: `single` (one device per weight, the reference) or `pair` (push-pull G+/G-, twice
        /// the device writes per coincidence).
        #[arg(long, default_value = "single", value_parser = ["single", "pair"])]
        cell: String,
        /// Where the tiles' parallel phases run: `team` (the threads of `aimsim run`: helpers that poll
        /// between phases, and run on one thread while that is measured faster, as on a busy machine),
        /// `team-always` (the same team, always spreading phases over every thread) or `rayon` (a rayon
        /// pool). The outputs are the same bits on each.
        #[arg(long, default_value = "team", value_parser = ["team", "team-always", "rayon"])]
        executor: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

use aimsim::sweep::default_threads;

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Device {
            scenario,
            out,
            pulses,
            cycles,
            devices,
        } => {
            let flags = ProtocolFlags {
                pulses,
                cycles,
                devices,
            };
            let loaded = commands::load(&scenario.scenario, &scenario.set, &flags.as_overrides())?;
            let run = commands::device(&loaded, &out)?;
            println!(
                "{}: traced {} device(s) over {} pulse(s); wrote {} into {}",
                loaded.scenario.name,
                run.devices,
                2 * u64::from(loaded.scenario.protocol.pulses)
                    * u64::from(loaded.scenario.protocol.cycles),
                run.files.join(", "),
                run.out.display()
            );
            Ok(())
        }
        Command::Run {
            scenario,
            out,
            resume,
            stop_after_epoch,
        } => {
            let opts = aimsim::run::RunOptions {
                resume,
                stop_after_epoch,
            };
            aimsim::run::run_with(&scenario.scenario, &scenario.set, &out, &opts)?;
            Ok(())
        }
        Command::Infer {
            scenario,
            out,
            threads,
        } => {
            let opts = aimsim::infer::InferOptions {
                threads: threads.unwrap_or_else(aimsim::sweep::default_threads),
            };
            aimsim::infer::infer(&scenario.scenario, &scenario.set, &out, &opts)?;
            Ok(())
        }
        Command::EpFidelity { scenario, out } => {
            aimsim::ep::run(&scenario.scenario, &scenario.set, &out)?;
            Ok(())
        }
        Command::Local { scenario, out } => {
            aimsim::local::run(&scenario.scenario, &scenario.set, &out)?;
            Ok(())
        }
        Command::Validate { scenario } => {
            let loaded = commands::load(&scenario.scenario, &scenario.set, &[])?;
            // Every variant x seed is loaded as it will run, so a bad `set` in any variant shows here.
            let runs = aimsim::variants::ScenarioSource::read(&scenario.scenario)?
                .check_runs(&scenario.set, &loaded.scenario)?;
            print!("{}", scenario::describe(&loaded.scenario));
            if runs > 1 {
                println!("runs: {runs} (variant x seed), every one validated");
            }
            if loaded.scenario.sweep.is_some() {
                // Every point is loaded as it will run, so a bad value anywhere in the grid shows here.
                let plan = aimsim::sweep::plan(&scenario.scenario, &scenario.set)?;
                println!(
                    "sweep: {} point(s) over {} (master seed {}, {} repeat(s)); every point validated",
                    plan.points.len(),
                    if plan.columns.is_empty() {
                        "no key".to_string()
                    } else {
                        plan.columns.join(", ")
                    },
                    plan.master_seed,
                    plan.repeats
                );
            }
            println!("ok: {} is valid", scenario.scenario.display());
            Ok(())
        }
        Command::Bench {
            what: BenchWhat::Devices { devices, seconds },
        } => {
            if devices == 0 || !seconds.is_finite() || seconds <= 0.0 {
                anyhow::bail!("--devices must be >= 1 and --seconds > 0");
            }
            let rows = commands::bench_devices(devices, seconds)?;
            println!("{:<28} {:<14} {:>16}", "preset", "model", "pulses/s/core");
            for r in &rows {
                println!("{:<28} {:<14} {:>16.0}", r.preset, r.model, r.pulses_per_s);
            }
            let mut v: Vec<f64> = rows.iter().map(|r| r.pulses_per_s).collect();
            v.sort_by(f64::total_cmp);
            println!(
                "device_pulses_per_s_min={:.0} device_pulses_per_s_median={:.0}",
                v[0],
                v[v.len() / 2]
            );
            Ok(())
        }
        Command::Bench {
            what:
                BenchWhat::Tiles {
                    seconds,
                    scenario,
                    set,
                },
        } => {
            if !seconds.is_finite() || seconds <= 0.0 {
                anyhow::bail!("--seconds must be > 0");
            }
            let setup = match scenario {
                None => aimsim::bench::BenchSetup::default(),
                Some(path) => {
                    let s = commands::load(&path, &set, &[])?.scenario;
                    aimsim::bench::BenchSetup {
                        device: s.hardware.device,
                        tile: s.hardware.tile,
                        scheme: s.hardware.controller.scheme().clone(),
                        cost: s.hardware.cost,
                    }
                }
            };
            let r = aimsim::bench::tiles(seconds, &setup)?;
            for l in &r.lines {
                println!("{l}");
            }
            println!(
                "mvm_vs_plain={:.2} update_coincidences_per_s_per_core={:.0}",
                r.mvm_vs_plain, r.coincidences_per_s_per_core
            );
            Ok(())
        }
        Command::Bench {
            what: BenchWhat::Kernels { seconds },
        } => {
            if !seconds.is_finite() || seconds <= 0.0 {
                anyhow::bail!("--seconds must be > 0");
            }
            for l in aimsim::bench::kernels(seconds)? {
                println!("{l}");
            }
            Ok(())
        }
        Command::Bench {
            what:
                BenchWhat::Infer {
                    data,
                    test_samples,
                    threads,
                },
        } => {
            let d = match aimsim::data::find_data_dir(data.as_deref(), "fashion-mnist") {
                Ok(dir) => {
                    let mut d = aimsim::data::load_idx(&dir, "fashion-mnist")?;
                    d.truncate(0, test_samples);
                    d
                }
                Err(e) if data.is_none() => {
                    eprintln!("note: {e}; reading synthetic inputs instead");
                    let mut d =
                        aimsim::networks::data::teacher_student(0, test_samples, 784, 10, 1);
                    d.name = "synthetic".into();
                    d
                }
                Err(e) => return Err(e.into()),
            };
            let threads = threads.unwrap_or_else(default_threads).max(1);
            let r = aimsim::bench::infer(&d, threads)?;
            for l in &r.lines {
                println!("{l}");
            }
            println!(
                "infer_s={:.2} inferences_per_s={:.0}",
                r.eval_s, r.inferences_per_s
            );
            Ok(())
        }
        Command::Bench {
            what:
                BenchWhat::Conv {
                    data,
                    samples,
                    batch,
                    threads,
                    network,
                },
        } => {
            if batch == 0 || samples == 0 {
                anyhow::bail!("--batch and --samples must be at least 1");
            }
            let d = match aimsim::data::find_data_dir(data.as_deref(), "fashion-mnist") {
                Ok(dir) => {
                    let mut d = aimsim::data::load_idx(&dir, "fashion-mnist")?;
                    d.truncate(samples, 0);
                    d
                }
                Err(e) if data.is_none() => {
                    eprintln!("note: {e}; training on synthetic inputs instead");
                    let mut d = aimsim::networks::data::teacher_student(samples, 0, 784, 10, 1);
                    d.name = "synthetic".into();
                    d
                }
                Err(e) => return Err(e.into()),
            };
            let threads = threads.unwrap_or_else(default_threads).max(1);
            let net = if network == "mlp" {
                aimsim::bench::ConvBenchNet::Mlp
            } else {
                aimsim::bench::ConvBenchNet::Lenet
            };
            let r = aimsim::bench::conv(&d, net, batch, threads)?;
            for l in &r.lines {
                println!("{l}");
            }
            println!("conv_samples_per_s={:.1}", r.samples_per_s);
            Ok(())
        }
        Command::Bench {
            what:
                BenchWhat::Train {
                    data,
                    train_samples,
                    test_samples,
                    lr,
                    threads,
                    cell,
                    executor,
                },
        } => {
            let dir = aimsim::data::find_data_dir(data.as_deref(), "fashion-mnist")?;
            let mut d = aimsim::data::load_idx(&dir, "fashion-mnist")?;
            d.truncate(train_samples, test_samples);
            let threads = threads.unwrap_or_else(default_threads).max(1);
            let cell = if cell == "pair" {
                aimsim::sim::tile::CellKind::Pair
            } else {
                aimsim::sim::tile::CellKind::Single
            };
            let executor = match executor.as_str() {
                "team-always" => aimsim::bench::Executor::TeamAlways,
                "rayon" => aimsim::bench::Executor::Rayon,
                _ => aimsim::bench::Executor::Team,
            };
            let r = aimsim::bench::train(&d, lr, threads, cell, executor)?;
            for l in &r.lines {
                println!("{l}");
            }
            println!(
                "train_samples_per_s={:.0} test_accuracy={:.2}",
                r.samples_per_s, r.test_accuracy
            );
            Ok(())
        }
        Command::Sweep {
            merge: Some(SweepCommand::Merge { dirs, out }),
            ..
        } => {
            let r = aimsim::sweep::merge(&dirs, &out)?;
            println!(
                "merged {} point(s) from {} folder(s) into {}",
                r.points,
                r.shards,
                out.display()
            );
            Ok(())
        }
        Command::Sweep {
            merge: None,
            scenario,
            set,
            out,
            threads,
            shard,
            plan,
            emit_sbatch,
            sbatch_time,
            sbatch_mem,
            limit,
        } => {
            let (Some(scenario), Some(out)) = (scenario, out) else {
                anyhow::bail!("give a scenario and --out <DIR>");
            };
            let shard = match shard {
                Some(s) => Some(aimsim::sweep::parse_shard(&s)?),
                None => aimsim::sweep::shard_from_env()?,
            };
            let threads = threads.unwrap_or_else(default_threads).max(1);
            if let Some(shards) = emit_sbatch {
                let limits = aimsim::sweep::SlurmLimits {
                    time: sbatch_time,
                    mem: sbatch_mem,
                };
                let file =
                    aimsim::sweep::emit_sbatch(&scenario, &set, &out, shards, threads, &limits)?;
                println!(
                    "wrote {} (submit with: sbatch {})",
                    file.display(),
                    file.display()
                );
                return Ok(());
            }
            if plan {
                let p = aimsim::sweep::write_plan_only(&scenario, &set, &out, shard)?;
                let mine = p
                    .points
                    .iter()
                    .filter(|q| aimsim::sweep::in_shard(q.index, shard))
                    .count();
                println!(
                    "plan: {} point(s) over {}; {} in this shard; wrote {}/plan.json and plan.csv",
                    p.points.len(),
                    p.columns.join(", "),
                    mine,
                    out.display()
                );
                return Ok(());
            }
            let r = aimsim::sweep::run(
                &scenario,
                &set,
                &out,
                &aimsim::sweep::SweepOptions {
                    threads,
                    shard,
                    limit,
                },
            )?;
            println!(
                "sweep: {} point(s) in the plan, {} in this shard: {} already finished, {} run now ({} at a time, {} tile thread(s) each), {} pending; results in {}",
                r.total,
                r.in_shard,
                r.skipped,
                r.ran,
                r.workers.0,
                r.workers.1,
                r.pending,
                out.join("results.csv").display()
            );
            Ok(())
        }
        Command::Plot {
            dir,
            out,
            x,
            by,
            metric,
        } => {
            let files = aimsim::plotdir::plot_dir(
                &dir,
                out.as_deref(),
                &aimsim::plotdir::SweepPlotOptions {
                    x,
                    by,
                    metrics: metric,
                },
            )?;
            for f in &files {
                println!("{}", f.display());
            }
            Ok(())
        }
        Command::Mvm {
            scenario,
            weights,
            inputs,
            direction,
            program,
            out,
        } => {
            let loaded = commands::load(&scenario.scenario, &scenario.set, &[])?;
            let r = aimsim::mvm::mvm(
                &loaded,
                &weights,
                &inputs,
                aimsim::mvm::MvmMode {
                    backward: direction == Direction::Backward,
                    exact: program == Programming::Exact,
                },
                &out,
            )?;
            println!(
                "{}: {} vector(s) read; error (output - exact) mean {:.6}, sd {:.6}; wrote {}",
                loaded.scenario.name,
                r.vectors,
                r.error_mean,
                r.error_sd,
                out.display()
            );
            Ok(())
        }
        Command::Presets => {
            for p in PRESETS {
                let label = p
                    .toml
                    .lines()
                    .find_map(|l| {
                        l.trim().strip_prefix("label").map(|r| {
                            r.trim_start_matches([' ', '='])
                                .trim_matches('"')
                                .to_string()
                        })
                    })
                    .unwrap_or_default();
                println!("{:<28} {}", p.name, label);
            }
            Ok(())
        }
    }
}
