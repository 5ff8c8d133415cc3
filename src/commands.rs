//! What each CLI subcommand does, callable from tests without spawning a process.

use std::path::{Path, PathBuf};
use std::time::Instant;

use aimsim_devices::Population;
use aimsim_sim::protocol::pulse_response;
use aimsim_sim::rng::{Purpose, stream};
use anyhow::{Context, Result};
use serde_json::json;

use crate::output::{CRATE_VERSIONS, ensure_dir, npy_f32, sha256_hex, trace_csv, write_atomic};
use crate::plot::{self, ResponsePlot};
use crate::scenario::{self, Loaded};

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

/// Runs the pulse-response protocol of a loaded scenario and writes trace.csv, trace.npy,
/// response.svg, response.png and manifest.json into `out`.
pub fn device(loaded: &Loaded, out: &Path) -> Result<DeviceRun> {
    let started = Instant::now();
    let s = &loaded.scenario;
    ensure_dir(out)?;
    let mut draw = stream(s.seed, Purpose::DeviceDraw, 0);
    let mut write = stream(s.seed, Purpose::Write, 0);
    let mut pop = Population::new(&s.device, s.protocol.devices as usize, &mut draw)
        .context("the device description was accepted by validation but could not be built")?;
    let trace = pulse_response(&mut pop, s.protocol.pulses, s.protocol.cycles, &mut write);

    write_atomic(&out.join("trace.csv"), &trace_csv(&trace)?)?;
    write_atomic(
        &out.join("trace.npy"),
        &npy_f32(&[trace.steps.len(), trace.devices], &trace.conductance),
    )?;
    let title = s.label.clone().unwrap_or_else(|| s.name.clone());
    let subtitle = format!(
        "{} | {} device(s), {} pulse(s) up then down, {} cycle(s), seed {}",
        pop.model_name(),
        trace.devices,
        s.protocol.pulses,
        s.protocol.cycles,
        s.seed
    );
    plot::response(
        out,
        "response",
        &ResponsePlot {
            trace: &trace,
            title: &title,
            subtitle: &subtitle,
            unit: pop.unit(),
        },
    )?;
    let files: Vec<String> = [
        "trace.csv",
        "trace.npy",
        "response.svg",
        "response.png",
        "manifest.json",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let manifest = json!({
        "command": "device",
        "aimsim_version": env!("CARGO_PKG_VERSION"),
        "crate_versions": CRATE_VERSIONS.iter().map(|(n, v)| (n.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "scenario": {
            "path": loaded.path.display().to_string(),
            "name": s.name,
            "sha256": sha256_hex(loaded.source.as_bytes()),
            "effective_sha256": sha256_hex(loaded.effective.as_bytes()),
            "overrides": loaded.overrides,
            "preset": s.preset,
        },
        "seed": s.seed,
        "protocol": {
            "pulses": s.protocol.pulses,
            "cycles": s.protocol.cycles,
            "devices": s.protocol.devices,
        },
        "device": s.device.to_string(),
        "trace": {
            "rows": trace.steps.len(),
            "devices": trace.devices,
            "unit": pop.unit(),
            "npy_layout": "rows x devices, float32, C order; row 0 = initial state, row r = after pulse r",
        },
        "files": files,
        "wall_s": started.elapsed().as_secs_f64(),
    });
    write_atomic(
        &out.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )?;
    Ok(DeviceRun {
        out: out.to_path_buf(),
        files,
        rows: trace.steps.len(),
        devices: trace.devices,
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
        let mut draw = stream(s.seed, Purpose::DeviceDraw, 0);
        let mut write = stream(s.seed, Purpose::Write, 0);
        let mut pop = Population::new(&s.device, devices, &mut draw)?;
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
