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
    /// List the built-in device presets (usable as `preset = "<name>"` in a [device] section).
    Presets,
    /// Benchmarks that print figures; the last line of each is a machine-readable summary.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
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
    /// Training speed on the reference workload: Fashion-MNIST, 784-256-128-10 sigmoid, batch 1,
    /// stochastic pulses BL 31, constant-step devices (dw_min 0.001, d2d and c2c 0.3), 7-bit DAC,
    /// 9-bit ADC, output noise 0.06; one epoch. Last line: `train_samples_per_s=<n> test_accuracy=<%>`.
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

/// Threads to use: SLURM_CPUS_PER_TASK when set, else the machine's cores.
fn default_threads() -> usize {
    std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

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
        Command::Validate { scenario } => {
            let loaded = commands::load(&scenario.scenario, &scenario.set, &[])?;
            print!("{}", scenario::describe(&loaded.scenario));
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
                        device: s.device,
                        tile: s.tile,
                        scheme: s.controller.scheme().clone(),
                        cost: s.cost,
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
            what:
                BenchWhat::Train {
                    data,
                    train_samples,
                    test_samples,
                    lr,
                    threads,
                },
        } => {
            let dir = aimsim::networks::data::find_data_dir(data.as_deref(), "fashion-mnist")?;
            let mut d = aimsim::networks::data::load_idx(&dir, "fashion-mnist")?;
            d.truncate(train_samples, test_samples);
            let threads = threads.unwrap_or_else(default_threads).max(1);
            let r = aimsim::bench::train(&d, lr, threads)?;
            for l in &r.lines {
                println!("{l}");
            }
            println!(
                "train_samples_per_s={:.0} test_accuracy={:.2}",
                r.samples_per_s, r.test_accuracy
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
