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
    // Convolutions: their kernel matrices, and the buffers of a batch's passes (per read: the
    // unrolled patch and the backward read's row; per output value: pre-activation, activation,
    // error, map; 4 bytes each).
    let (mut weights, mut passes) = (0u64, 0u64);
    let first = match t.conv.as_ref().map(|f| f.shapes()) {
        Some(Ok((layers, flat))) => {
            for (g, _) in &layers {
                let (patch, pos) = (g.patch() as u64 + 1, g.positions() as u64);
                weights += g.c_out as u64 * patch;
                passes += t.batch as u64 * pos * (2 * patch + 4 * g.c_out as u64) * 4;
            }
            flat as u64
        }
        _ => inputs,
    };
    let mut sizes = vec![first];
    sizes.extend(t.hidden.iter().map(|h| *h as u64));
    sizes.push(10);
    weights += sizes.windows(2).map(|w| w[0] * w[1]).sum::<u64>();
    let arrays = if t.software {
        0
    } else {
        s.hardware.tile.cell.arrays() as u64
    };
    let net = weights * (8 + 40 * arrays);
    let mut parts = vec![("train.train_samples", data), ("train.hidden", net)];
    if t.conv.is_some() {
        parts[1].0 = "train.layers";
        parts.push(("train.batch", passes));
    }
    Some((data + net + passes, parts))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn estimate(sets: &[&str]) -> (u64, Vec<(&'static str, u64)>) {
        let text = "[scenario]\nname = \"m\"\n[device]\nmodel = \"soft-bounds\"\ndw_min = 0.01\n[train]\nhidden = [16]\n";
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let (s, _, _) = crate::scenario::load_str(text, "m.toml", Path::new("."), &sets).unwrap();
        memory_estimate(&s).unwrap()
    }

    #[test]
    fn conv_networks_count_their_kernels_and_the_batch_buffers() {
        let (mlp, parts) = estimate(&[]);
        assert_eq!(parts.len(), 2);
        let conv = "train.layers=[{kind=\"conv\", channels=8, kernel=3}]";
        let (one, p1) = estimate(&[conv]);
        let (big, p64) = estimate(&[conv, "train.batch=64"]);
        assert!(one > mlp && big > one);
        // 16x16 glyphs, 14x14 = 196 positions, patch 9 + bias column, 8 channels: per sample
        // 196 x (2 x 10 + 4 x 8) x 4 bytes.
        assert_eq!(p1[2], ("train.batch", 196 * (2 * 10 + 4 * 8) * 4));
        assert_eq!(p64[2].1, 64 * p1[2].1);
        // The dense layer takes the 8 x 14 x 14 maps; kernels 8 x 10.
        let weights = 8 * 10 + 8 * 14 * 14 * 16 + 16 * 10;
        assert_eq!(p1[1], ("train.layers", weights * (8 + 40 * 2)));
    }
}
