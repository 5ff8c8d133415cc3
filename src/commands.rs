//! What each CLI subcommand does, callable from tests without spawning a process.

use std::path::{Path, PathBuf};
use std::time::Instant;

use aimsim_devices::Population;
use aimsim_sim::protocol::pulse_response_each;
use aimsim_sim::rng::{Purpose, stream};
use anyhow::{Context, Result, bail};
use rand::RngExt;
use serde_json::json;

use crate::output::{crate_versions_json, sha256_hex, write_manifest};
use crate::plot::{self, ResponsePlot};
use crate::scenario::{self, Loaded};
use crate::trace::{CsvLayout, TraceSpec, TraceWriter, write_sidecar};

/// Protocol settings given on the command line; each becomes a `--set protocol.<key>=<value>` override,
/// validated like the file.
#[derive(Debug, Clone, Default)]
pub struct ProtocolFlags {
    /// `--pulses`.
    pub pulses: Option<u32>,
    /// `--cycles`.
    pub cycles: Option<u32>,
    /// `--devices`.
    pub devices: Option<u32>,
}

impl ProtocolFlags {
    /// The flags as `--set protocol.<key>=<value>` overrides.
    pub fn as_overrides(&self) -> Vec<String> {
        [
            ("pulses", self.pulses),
            ("cycles", self.cycles),
            ("devices", self.devices),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("protocol.{k}={v}")))
        .collect()
    }
}

/// Loads a scenario with the user's `--set` overrides (plus any extra ones), as every command does.
pub fn load(
    path: &Path,
    sets: &[String],
    extra: &[String],
) -> Result<Loaded, scenario::ScenarioError> {
    let all: Vec<String> = sets.iter().chain(extra).cloned().collect();
    scenario::load(path, &all)
}

/// What `aimsim device` wrote.
#[derive(Debug, Clone)]
pub struct DeviceRun {
    /// Output folder.
    pub out: PathBuf,
    /// Files written, relative to `out`.
    pub files: Vec<String>,
    /// Rows of the trace (pulses + 1).
    pub rows: usize,
    /// Devices traced.
    pub devices: usize,
}

/// Curves drawn in `response.png` at most (the first traced devices).
const PLOT_CURVES: usize = 32;

/// Points per curve in `response.png` at most (rows are thinned evenly beyond it).
const PLOT_POINTS: u64 = 2000;

/// The protocol's devices to trace, in column order: the `[trace]` section's addressed devices (the
/// protocol's devices form one tile of one row: `col` is the device number), then its random sample;
/// every device when it names none. Errors name the offending key.
pub fn protocol_devices(spec: Option<&TraceSpec>, devices: usize, seed: u64) -> Result<Vec<usize>> {
    let Some(spec) = spec.filter(|t| !t.devices.is_empty() || t.sample > 0) else {
        return Ok((0..devices).collect());
    };
    let mut out: Vec<usize> = Vec::new();
    for (k, a) in spec.devices.iter().enumerate() {
        if a.layer != 0 || a.tile != 0 || a.row != 0 || a.array.is_some_and(|x| x != 0) {
            bail!(
                "trace.devices.{k}: the protocol's devices form one tile (0) of one row (0) of single \
                 devices (array 0); address them by `col` alone"
            );
        }
        if a.col >= devices {
            bail!(
                "trace.devices.{k}: col {} is not among the protocol's {devices} device(s) (protocol.devices)",
                a.col
            );
        }
        if !out.contains(&a.col) {
            out.push(a.col);
        }
    }
    let mut rng = stream(seed, Purpose::Trace, 0);
    let mut chosen = std::collections::BTreeSet::new();
    while chosen.len() < (spec.sample as usize).min(devices) {
        chosen.insert(rng.random_range(0..devices));
    }
    out.extend(
        chosen
            .into_iter()
            .filter(|d| !out.contains(d))
            .collect::<Vec<_>>(),
    );
    Ok(out)
}

/// Runs the pulse-response protocol of a loaded scenario and writes trace.npy, trace.csv,
/// trace_devices.csv, response.svg/png, step_vs_g.svg/png (step size against state) and manifest.json
/// into `out`. The trace is streamed to disk as the protocol runs.
pub fn device(loaded: &Loaded, out: &Path) -> Result<DeviceRun> {
    let started = Instant::now();
    let s = &loaded.scenario;
    let origin = loaded.path.display();
    let every = s.trace.as_ref().map_or(1, |t| t.every);
    if every == 0 {
        bail!(
            "{origin}: trace.every = 0 turns the trace off, and the trace is what `aimsim device` \
             produces: set it to 1 or more"
        );
    }
    let traced = protocol_devices(s.trace.as_ref(), s.protocol.devices as usize, s.seed())
        .map_err(|e| anyhow::anyhow!("{origin}: {e:#}"))?;
    let _lock = crate::output::lock_out(out)?;
    let mut draw = stream(s.seed(), Purpose::DeviceDraw, 0);
    let mut write = stream(s.seed(), Purpose::Write, 0);
    let mut pop = Population::new(&s.hardware.device, s.protocol.devices as usize, &mut draw)
        .context("the device description was accepted by validation but could not be built")?;

    let layout = CsvLayout {
        time: vec!["cycle", "pulse", "direction"],
        device: vec!["device"],
    };
    let cells: Vec<String> = traced.iter().map(|d| d.to_string()).collect();
    write_sidecar(out, &layout, &cells, pop.unit())?;
    let mut writer = TraceWriter::create(out, &layout, &cells)?;
    let total_rows = 1 + 2 * u64::from(s.protocol.pulses) * u64::from(s.protocol.cycles);
    let stride = total_rows.div_ceil(PLOT_POINTS).max(1);
    let mut curves: Vec<(String, Vec<(f32, f32)>)> = traced
        .iter()
        .take(PLOT_CURVES)
        .map(|d| (format!("device {d}"), Vec::new()))
        .collect();
    let mut values = vec![0.0f32; traced.len()];
    let mut result = Ok(());
    pulse_response_each(
        &mut pop,
        s.protocol.pulses,
        s.protocol.cycles,
        &mut write,
        |pop, step| {
            let r = u64::from(step.pulse);
            if result.is_err() || !r.is_multiple_of(every) {
                return;
            }
            for (v, d) in values.iter_mut().zip(&traced) {
                // What a measurement reads: write noise and reference included (no read noise).
                *v = pop.read_conductance(*d);
            }
            if r.is_multiple_of(stride) || r + 1 == total_rows {
                for (c, v) in curves.iter_mut().zip(&values) {
                    c.1.push((step.pulse as f32, *v));
                }
            }
            let time = format!("{},{},{}", step.cycle, step.pulse, step.direction.name());
            result = writer.push(&time, &values);
        },
    );
    result?;
    let rows = writer.rows() as usize;
    let mut files = writer.finish()?;
    files.push("trace_devices.csv".into());

    let title = s.label.clone().unwrap_or_else(|| s.name.clone());
    let subtitle = format!(
        "{} | {} device(s), {} pulse(s) up then down, {} cycle(s), seed {}",
        pop.model_name(),
        s.protocol.devices,
        s.protocol.pulses,
        s.protocol.cycles,
        s.seed()
    );
    plot::response(
        out,
        "response",
        &ResponsePlot {
            curves: &curves,
            title: &title,
            subtitle: &subtitle,
            unit: pop.unit(),
        },
    )?;
    files.extend(["response.svg", "response.png"].map(String::from));
    let steps = crate::plotdir::StepPlot {
        title: &title,
        unit: pop.unit(),
        every,
        pulses: u64::from(s.protocol.pulses),
    };
    if crate::plotdir::step_plot(out, out, &steps)? {
        let stem = crate::plotdir::STEP_PLOT;
        files.extend([format!("{stem}.svg"), format!("{stem}.png")]);
    }
    files.push("manifest.json".into());
    let manifest = json!({
        "command": "device",
        "aimsim_version": env!("CARGO_PKG_VERSION"),
        "crate_versions": crate_versions_json(),
        "scenario": scenario_json(loaded),
        "seed": s.seed(),
        "protocol": {
            "pulses": s.protocol.pulses,
            "cycles": s.protocol.cycles,
            "devices": s.protocol.devices,
        },
        "device": s.hardware.device.to_string(),
        "trace": {
            "rows": rows,
            "devices": traced.len(),
            "every": every,
            "unit": pop.unit(),
            "npy_layout": "rows x traced devices, float32, C order; row r = after pulse r x every (row 0 = initial state); column c = data line c of trace_devices.csv",
        },
        "files": files,
        "wall_s": started.elapsed().as_secs_f64(),
    });
    write_manifest(out, &manifest)?;
    Ok(DeviceRun {
        out: out.to_path_buf(),
        files,
        rows,
        devices: traced.len(),
    })
}

/// What a manifest records about the scenario a command read: path, name, hashes of the file and of
/// the effective configuration, overrides, preset.
pub fn scenario_json(loaded: &Loaded) -> serde_json::Value {
    json!({
        "path": loaded.path.display().to_string(),
        "name": loaded.scenario.name,
        "sha256": sha256_hex(loaded.source.as_bytes()),
        "effective_sha256": sha256_hex(loaded.effective.as_bytes()),
        "overrides": loaded.overrides,
        "preset": loaded.scenario.preset,
    })
}

/// One line of `aimsim bench devices`.
#[derive(Debug, Clone)]
pub struct DeviceBench {
    /// Preset measured.
    pub preset: &'static str,
    /// Model of the preset.
    pub model: &'static str,
    /// Single-pulse writes per second on one core.
    pub pulses_per_s: f64,
}

/// Measures single-pulse write throughput of every built-in preset on one core: a population of
/// `devices` devices (with the preset's d2d variation and noise) receives alternating blocks of up and
/// down pulses, device after device, for about `seconds` per preset.
pub fn bench_devices(devices: usize, seconds: f64) -> Result<Vec<DeviceBench>> {
    let mut out = Vec::new();
    for p in crate::presets::PRESETS {
        let text = p.toml;
        let (s, _, _) = scenario::load_str(text, p.name, Path::new("scenarios/devices"), &[])
            .map_err(|e| anyhow::anyhow!("preset {}: {e}", p.name))?;
        let mut draw = stream(s.seed(), Purpose::DeviceDraw, 0);
        let mut write = stream(s.seed(), Purpose::Write, 0);
        let mut pop = Population::new(&s.hardware.device, devices, &mut draw)?;
        // Start mid-range so both directions move.
        for i in 0..devices {
            pop.pulse(i, (s.protocol.pulses / 2).max(1) as i32, &mut write);
        }
        let started = Instant::now();
        let mut pulses = 0u64;
        let mut round = 0u32;
        while started.elapsed().as_secs_f64() < seconds {
            // Eight rounds of 4 up pulses then 4 down pulses per device keep states away from the bounds.
            let sign = if (round / 4).is_multiple_of(2) { 1 } else { -1 };
            for i in 0..devices {
                pop.pulse(i, sign, &mut write);
            }
            pulses += devices as u64;
            round += 1;
        }
        let elapsed = started.elapsed().as_secs_f64();
        // Keep the optimizer from discarding the work.
        std::hint::black_box(pop.states());
        out.push(DeviceBench {
            preset: p.name,
            model: pop.model_name(),
            pulses_per_s: pulses as f64 / elapsed,
        });
    }
    Ok(out)
}
