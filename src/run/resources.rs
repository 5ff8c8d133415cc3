//! What a run needs before it starts: its memory and trace size, refused with the key to change
//! when they cannot fit.

use anyhow::{Result, bail};

use crate::scenario::Scenario;

/// Bytes a training run needs, roughly: the dataset in memory (4 bytes a feature, both splits, plus
/// a shuffled index) and the network's tiles (per device about 40 bytes: state, its write counters,
/// its share of the weight cache and per-device parameters). With the parts that dominate, naming
/// the key each depends on.
pub fn memory_estimate(s: &Scenario) -> Option<(u64, Vec<(&'static str, u64)>)> {
    use crate::scenario::DatasetSpec;
    let t = s.train.as_ref()?;
    let inputs = match &t.dataset {
        DatasetSpec::Glyphs { side } => (*side as u64).pow(2),
        DatasetSpec::TeacherStudent => 64,
        DatasetSpec::Idx { .. } => t.crop.map_or(784, |c| (c as u64).pow(2)),
    };
    let samples = t.train_samples as u64 + t.test_samples as u64;
    let data = samples * (inputs * 4 + 16);
    let mut sizes = vec![inputs];
    sizes.extend(t.hidden.iter().map(|h| *h as u64));
    sizes.push(10);
    let weights: u64 = sizes.windows(2).map(|w| w[0] * w[1]).sum();
    let arrays = if t.software {
        0
    } else {
        s.hardware.tile.cell.arrays() as u64
    };
    let net = weights * (8 + 40 * arrays);
    Some((
        data + net,
        vec![("train.train_samples", data), ("train.hidden", net)],
    ))
}

/// Refuses, before any work, a run that cannot fit in this machine's available memory or whose
/// training trace would exceed the trace limit, with the estimate and the key to change.
pub(super) fn check_resources(s: &Scenario, origin: &str, variant: Option<&str>) -> Result<()> {
    let Some(t) = s.train.as_ref() else {
        return Ok(());
    };
    let which = variant
        .map(|v| format!(" (variant `{v}`)"))
        .unwrap_or_default();
    if let Some((need, parts)) = memory_estimate(s)
        && let Some(avail) = available_memory()
        && need > avail
    {
        let (key, _) = parts.iter().max_by_key(|(_, b)| *b).expect("parts");
        bail!(
            "{origin}{which}: this run needs about {:.1} GB of memory and {:.1} GB are available; \
             reduce `{key}` ({})",
            need as f64 / 1e9,
            avail as f64 / 1e9,
            parts
                .iter()
                .map(|(k, b)| format!("{k}: {:.1} GB", *b as f64 / 1e9))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if t.trace_every > 0 && !t.software {
        let rows = t.epochs as u64 * t.train_samples as u64 / t.trace_every as u64 + 1;
        let cells = rows * t.trace_devices as u64;
        let limit = crate::scenario::MAX_TRACE_CELLS;
        if cells > limit {
            bail!(
                "{origin}{which}: the training trace would hold {cells} values ({rows} records x {} \
                 devices), above the limit of {limit} (0.8 GB as .npy, several GB as CSV); raise \
                 `train.trace_every` or lower `train.trace_devices`",
                t.trace_devices
            );
        }
    }
    Ok(())
}

/// `MemAvailable` of /proc/meminfo in bytes (Linux); `None` elsewhere.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
