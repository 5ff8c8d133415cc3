//! Weights in and out as `.npz` files (numpy's zip of `.npy` arrays: `numpy.load` reads them,
//! `numpy.savez` writes them): a run's final parameters (`weights.npz`), its device arrays
//! (`conductances.npz`), and the starting weights of a scenario (`train.init_weights`). The only place
//! that knows the layout of these files (docs/training.md, "Weights in and out").
//!
//! Arrays are written by `output::npy_f32` (the one `.npy` header writer) into a zip archive (crate
//! `zip`), and read with `npyz`, which checks dtype, byte order and shape.

use std::fmt;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aimsim_devices::Model;
use aimsim_networks::ep::EpNetwork;
use aimsim_networks::mlp::{Hardware, Mlp};
use aimsim_sim::tile::Tile;
use anyhow::{Context, Result};
use serde_json::json;

use crate::output::{npy_f32, write_atomic};

/// File name of a run's final parameters.
pub const WEIGHTS_FILE: &str = "weights.npz";
/// File name of a run's device arrays.
pub const CONDUCTANCES_FILE: &str = "conductances.npz";

/// One array of an npz file: float32 in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Name as `numpy.load` shows it (the archive entry is `<name>.npy`).
    pub name: String,
    /// Shape, outermost first (`[]` for a scalar).
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// The bytes of an npz archive of `arrays`, in the order given: one `<name>.npy` entry each, stored
/// without compression as `numpy.savez` writes them, with a fixed time stamp (1980-01-01) so that the
/// same arrays always give the same bytes.
pub fn npz_bytes(arrays: &[Array]) -> Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for a in arrays {
        let npy = npy_f32(&a.shape, &a.data);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(0o644)
            .large_file(npy.len() as u64 >= u64::from(u32::MAX));
        zip.start_file(npyz::npz::file_name_from_array_name(&a.name), opts)
            .with_context(|| format!("cannot add {} to an npz archive", a.name))?;
        zip.write_all(&npy)?;
    }
    Ok(zip.finish()?.into_inner())
}

/// Writes `arrays` as an npz file at `path`, atomically.
pub fn write_npz(path: &Path, arrays: &[Array]) -> Result<()> {
    write_atomic(path, &npz_bytes(arrays)?)
}

/// One entry of an npz file as read: its array name, and its values as float32 or why they cannot be
/// weights (not a float array, not an `.npy` entry, unreadable).
#[derive(Debug)]
pub struct Entry {
    /// Array name (the entry name without `.npy`; other entries keep their whole name).
    pub name: String,
    /// The array, converted to float32 and C order, or what is wrong with it.
    pub array: Result<Array, String>,
}

/// Reads every entry of the npz file at `path`, in archive order. float32 and float64 arrays (either
/// byte order, C or Fortran order, stored or compressed as `numpy.savez_compressed` writes them) are
/// read and converted to float32 in C order; other entries come back with what is wrong with them. Errors
/// only for a file that cannot be read or is not a zip archive.
pub fn read_npz(path: &Path) -> Result<Vec<Entry>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| {
        format!(
            "{} is not an npz file (a zip archive of .npy arrays, as numpy.savez writes): {e}",
            path.display()
        )
    })?;
    let mut out = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut file = zip
            .by_index(i)
            .map_err(|e| format!("{}: entry {i}: {e}", path.display()))?;
        if file.is_dir() {
            continue;
        }
        let entry = file
            .name()
            .map_err(|e| format!("{}: entry {i}: {e}", path.display()))?
            .to_string();
        let Some(name) = npyz::npz::array_name_from_file_name(&entry).map(str::to_string) else {
            out.push(Entry {
                name: entry.clone(),
                array: Err(format!("`{entry}` is not a .npy array")),
            });
            continue;
        };
        let mut npy = Vec::new();
        let array = file
            .read_to_end(&mut npy)
            .map_err(|e| format!("cannot read `{entry}`: {e}"))
            .and_then(|_| parse_npy(&name, &npy));
        out.push(Entry { name, array });
    }
    Ok(out)
}

/// A `.npy` array of float32 or float64 values as float32 in C order.
fn parse_npy(name: &str, bytes: &[u8]) -> Result<Array, String> {
    let npy =
        npyz::NpyFile::new(bytes).map_err(|e| format!("`{name}` is not a valid .npy: {e}"))?;
    let dtype = npy.dtype();
    let size = match &dtype {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float => t.size_field(),
        _ => 0,
    };
    if size != 4 && size != 8 {
        return Err(format!(
            "`{name}` has dtype {}; weights must be float32 or float64 (e.g. \
             tensor.detach().numpy().astype(\"float32\"))",
            dtype.descr().trim_matches('\'')
        ));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|d| *d as usize).collect();
    let fortran = npy.order() == npyz::Order::Fortran;
    let data: Vec<f32> = if size == 4 {
        npy.into_vec::<f32>()
    } else {
        npy.into_vec::<f64>()
            .map(|v| v.into_iter().map(|x| x as f32).collect())
    }
    .map_err(|e| format!("cannot read the values of `{name}`: {e}"))?;
    let data = if fortran && shape.len() > 1 {
        c_order(&shape, &data)
    } else {
        data
    };
    Ok(Array {
        name: name.to_string(),
        shape,
        data,
    })
}

/// The values of a Fortran-ordered (column-major) array of `shape` in C (row-major) order.
fn c_order(shape: &[usize], f: &[f32]) -> Vec<f32> {
    let mut c = Vec::with_capacity(f.len());
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..f.len() {
        // Offset of the multi-index in column-major order: the first index varies fastest.
        let mut off = 0;
        for k in (0..shape.len()).rev() {
            off = off * shape[k] + idx[k];
        }
        c.push(f[off]);
        // Next multi-index in row-major order: the last index varies fastest.
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    c
}

/// One layer's parameters as `weights.npz` holds them, in the convention of PyTorch's `nn.Linear`
/// (`z = weight x + bias`, `weight` of shape `(out, in)`), in layer units.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerParams {
    /// Inputs.
    pub inputs: usize,
    /// Outputs.
    pub outputs: usize,
    /// Row-major `outputs x inputs`.
    pub weight: Vec<f32>,
    /// One per output.
    pub bias: Vec<f32>,
    /// The weights of an equilibrium-propagation layer's separate feedback array (the same shape as
    /// `weight`; its backward reads use the transpose), where the network has one.
    pub feedback: Option<Vec<f32>>,
    /// A convolution's input channels and kernel side: `weight` is then PyTorch's `Conv2d` weight
    /// `(out, channels, kernel, kernel)` in the same memory order.
    pub conv: Option<(usize, usize)>,
}

/// The arrays of `weights.npz` for these layers: `layer{i}.weight` `(out, in)` (a convolution's
/// `(out, in_channels, kernel, kernel)`), `layer{i}.bias` `(out,)` and, where there is one,
/// `layer{i}.feedback` `(out, in)`, layer 0 on the input side.
pub fn parameter_arrays(layers: &[LayerParams]) -> Vec<Array> {
    let mut out = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        out.push(Array {
            name: format!("layer{i}.weight"),
            shape: match l.conv {
                Some((c, k)) => vec![l.outputs, c, k, k],
                None => vec![l.outputs, l.inputs],
            },
            data: l.weight.clone(),
        });
        out.push(Array {
            name: format!("layer{i}.bias"),
            shape: vec![l.outputs],
            data: l.bias.clone(),
        });
        if let Some(f) = &l.feedback {
            out.push(Array {
                name: format!("layer{i}.feedback"),
                shape: vec![l.outputs, l.inputs],
                data: f.clone(),
            });
        }
    }
    out
}

/// A trained network as a run holds it.
#[derive(Debug, Clone, Copy)]
pub enum NetRef<'a> {
    /// Backpropagation.
    Bp(&'a Mlp),
    /// Equilibrium propagation.
    Ep(&'a EpNetwork),
}

/// A network being prepared for a run.
#[derive(Debug)]
pub enum NetMut<'a> {
    /// Backpropagation; `exact` sets tiles without pulses (`train.init_program = "exact"`).
    Bp(&'a mut Mlp, bool),
    /// Equilibrium propagation (always programmed with pulses, as its initial weights are).
    Ep(&'a mut EpNetwork),
}

impl<'a> NetRef<'a> {
    /// Every layer's parameters, input side first.
    pub fn parameters(self) -> Vec<LayerParams> {
        match self {
            NetRef::Bp(m) => m
                .layers()
                .iter()
                .map(|l| {
                    let (weight, bias) = l.parameters();
                    LayerParams {
                        inputs: l.in_dim(),
                        outputs: l.out_dim(),
                        weight,
                        bias,
                        feedback: None,
                        conv: l.conv().map(|g| (g.c_in, g.k)),
                    }
                })
                .collect(),
            NetRef::Ep(n) => {
                let sizes = &n.config().sizes;
                n.weights()
                    .into_iter()
                    .zip(n.biases())
                    .zip(n.feedback_weights())
                    .enumerate()
                    .map(|(k, ((weight, bias), feedback))| LayerParams {
                        inputs: sizes[k],
                        outputs: sizes[k + 1],
                        weight,
                        bias: bias.clone(),
                        feedback,
                        conv: None,
                    })
                    .collect()
            }
        }
    }

    /// The device arrays of every layer as `(name prefix, outputs, tiles)`: `layer{i}` for the weights
    /// of layer `i`, `layer{i}.feedback` for an EP layer's separate feedback array. Empty for float
    /// networks.
    fn tile_sets(self) -> Vec<(String, usize, &'a [Tile])> {
        match self {
            NetRef::Bp(m) => m
                .layers()
                .iter()
                .enumerate()
                .map(|(i, l)| (format!("layer{i}"), l.out_dim(), l.weights.tiles()))
                .collect(),
            NetRef::Ep(n) => {
                // `tiles` lists every forward layer, then every separate feedback array in layer order.
                let sizes = &n.config().sizes;
                let layers = sizes.len() - 1;
                let all = n.tiles();
                let mut feedback = all[layers..].iter();
                let mut out: Vec<_> = (0..layers)
                    .map(|k| (format!("layer{k}"), sizes[k + 1], all[k]))
                    .collect();
                for k in (0..layers).filter(|k| n.has_feedback(*k)) {
                    if let Some(t) = feedback.next() {
                        out.push((format!("layer{k}.feedback"), sizes[k + 1], *t));
                    }
                }
                out
            }
        }
        .into_iter()
        .filter(|(_, _, t)| !t.is_empty())
        .collect()
    }
}

/// The arrays of `conductances.npz`: for every tile of every layer, each device array as
/// `{prefix}.tile{r}.{c}.array{a}` of shape `(rows, cols)`, tile `(r, c)` holding block row `r` and
/// block column `c` of the layer, in the devices' own unit (`Population::conductance`: the noise-free
/// state, uS, or weight units for a step model without a conductance range).
fn conductance_arrays(net: NetRef<'_>) -> Vec<Array> {
    let mut out = Vec::new();
    for (prefix, outputs, tiles) in net.tile_sets() {
        // Columns of the stored matrix (a tile-bias column included): every device of one array of the
        // layer, over its outputs. A block row ends where its tiles' columns add up to that.
        let devices: usize = tiles.iter().map(|t| t.rows() * t.cols()).sum();
        let columns = devices / outputs.max(1);
        let (mut r, mut c, mut col) = (0, 0, 0);
        for t in tiles {
            for a in 0..t.cell().arrays() {
                let p = t.array(a);
                out.push(Array {
                    name: format!("{prefix}.tile{r}.{c}.array{a}"),
                    shape: vec![t.rows(), t.cols()],
                    data: (0..p.len()).map(|i| p.conductance(i)).collect(),
                });
            }
            col += t.cols();
            c += 1;
            if col >= columns {
                (r, c, col) = (r + 1, 0, 0);
            }
        }
    }
    out
}

/// What a reader of `conductances.npz` needs to turn it into weights, for the run's manifest: the unit,
/// the nominal range in that unit (a device's fraction `u = (G - lo) / (hi - lo)`), the cell (how
/// fractions combine into a normalized weight, docs/tiles.md), the tile shape and `w_scale` (layer
/// weight of a normalized weight of 1).
fn conductance_note(net: NetRef<'_>, hw: &Hardware) -> serde_json::Value {
    let sets = net.tile_sets();
    let Some(p) = sets.first().and_then(|s| s.2.first()).map(|t| t.array(0)) else {
        return serde_json::Value::Null;
    };
    // The nominal range in the unit of `conductance`: the model's own range, or for a step model with
    // a conductance range, that range (onto which its weight range maps linearly).
    let (lo, hi) = match &hw.device.model {
        Model::Step(s) if s.g_range.is_some() => s.g_range.unwrap_or_default(),
        _ => {
            let (lo, hi) = p.nominal_range();
            (f64::from(lo), f64::from(hi))
        }
    };
    json!({
        "file": CONDUCTANCES_FILE,
        "unit": p.unit(),
        "nominal_range": [lo, hi],
        "cell": hw.tile.cell.name(),
        "arrays_per_cell": hw.tile.cell.arrays(),
        "tile_rows": hw.tile.rows,
        "tile_cols": hw.tile.cols,
        "w_scale": hw.w_scale,
    })
}

/// Writes a finished run's `weights.npz` and, for a network on tiles, `conductances.npz` into `dir`.
/// Returns the names of the files written and the manifest's `conductances` note (null without tiles).
pub fn write_run(
    dir: &Path,
    net: NetRef<'_>,
    hw: &Hardware,
) -> Result<(Vec<String>, serde_json::Value)> {
    write_npz(
        &dir.join(WEIGHTS_FILE),
        &parameter_arrays(&net.parameters()),
    )?;
    let mut files = vec![WEIGHTS_FILE.to_string()];
    let conductances = conductance_arrays(net);
    if conductances.is_empty() {
        return Ok((files, serde_json::Value::Null));
    }
    write_npz(&dir.join(CONDUCTANCES_FILE), &conductances)?;
    files.push(CONDUCTANCES_FILE.to_string());
    Ok((files, conductance_note(net, hw)))
}

/// Starting weights (`train.init_weights`): read from an npz file and checked against the network of the
/// scenario. Cheap to clone.
#[derive(Clone, PartialEq)]
pub struct InitWeights {
    /// The file, as resolved against the scenario's folder.
    pub path: PathBuf,
    /// Per layer, input side first.
    pub layers: Arc<Vec<LayerParams>>,
}

impl fmt::Debug for InitWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shapes: Vec<_> = self
            .layers
            .iter()
            .map(|l| (l.outputs, l.inputs, l.feedback.is_some()))
            .collect();
        f.debug_struct("InitWeights")
            .field("path", &self.path)
            .field("layers (out, in, feedback)", &shapes)
            .finish()
    }
}

/// Shape as numpy prints it: `(64, 784)`, `(10,)`.
fn shape_str(shape: &[usize]) -> String {
    crate::output::shape_tuple(&shape.iter().map(|d| *d as u64).collect::<Vec<_>>())
}

/// Names for a message: the first six, then how many more.
fn few(names: &[&str]) -> String {
    let shown = names.iter().take(6).copied().collect::<Vec<_>>().join(", ");
    match names.len() {
        n if n > 6 => format!("{shown} and {} more", n - 6),
        _ => shown,
    }
}

/// Reads the starting weights at `path` for a network of layer sizes `sizes` (input first) and checks
/// them: every `layer{i}.weight` `(sizes[i+1], sizes[i])` and `layer{i}.bias` `(sizes[i+1],)` present,
/// no other array (except `layer{i}.feedback` for `i >= 1` when `feedback` allows EP's separate
/// feedback arrays), float32 or float64 values (converted to float32), all finite. `hidden` is how the
/// scenario wrote the hidden sizes (for the messages). The error is a message for the key
/// `train.init_weights`.
pub fn load_init(
    path: &Path,
    sizes: &[usize],
    conv: Option<&aimsim_networks::conv::ConvFront>,
    feedback: bool,
    hidden: &str,
) -> Result<InitWeights, String> {
    let shown = path.display();
    if !path.is_file() {
        return Err(format!(
            "{shown}: no such file (paths are relative to the scenario file)"
        ));
    }
    let entries = read_npz(path)?;
    // Every weight layer's array shape: a convolution's `(out, in_channels, k, k)`, a dense layer's
    // `(out, in)` (the first one after convolutions takes their flattened maps).
    let mut wshapes: Vec<Vec<usize>> = Vec::new();
    let mut prev = sizes[0];
    if let Some(front) = conv {
        let (layers, flat) = front.shapes()?;
        for (g, _) in &layers {
            wshapes.push(vec![g.c_out, g.c_in, g.k, g.k]);
        }
        prev = flat;
    }
    for &out in &sizes[1..] {
        wshapes.push(vec![out, prev]);
        prev = out;
    }
    let layers = wshapes.len();
    let network = match conv {
        None => format!(
            "the network {} (dataset inputs, train.hidden = {hidden}, classes)",
            sizes
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join("-")
        ),
        Some(_) => format!(
            "the network of train.layers (weights {})",
            wshapes
                .iter()
                .map(|s| shape_str(s))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let expected: Vec<(String, Vec<usize>)> = (0..layers)
        .flat_map(|i| {
            [
                (format!("layer{i}.weight"), wshapes[i].clone()),
                (format!("layer{i}.bias"), vec![wshapes[i][0]]),
            ]
        })
        .collect();
    let optional = |name: &str| -> Option<usize> {
        let i: usize = name
            .strip_prefix("layer")?
            .strip_suffix(".feedback")?
            .parse()
            .ok()?;
        (feedback && (1..layers).contains(&i)).then_some(i)
    };
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let missing: Vec<&str> = expected
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !names.contains(n))
        .collect();
    let extra: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !expected.iter().any(|(e, _)| e == n) && optional(n).is_none())
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        let mut msg = format!("{shown} does not fit {network}:");
        if !missing.is_empty() {
            msg.push_str(&format!(" missing array(s) {}", few(&missing)));
        }
        if !extra.is_empty() {
            if !missing.is_empty() {
                msg.push(';');
            }
            msg.push_str(&format!(" unexpected array(s) {}", few(&extra)));
        }
        msg.push_str(&format!(
            ". It needs layer{{i}}.weight (out, in) and layer{{i}}.bias (out,) for i = 0..{}{}",
            layers - 1,
            if feedback {
                " and may hold layer{i}.feedback (out, in) for i >= 1"
            } else {
                ""
            }
        ));
        if names.iter().any(|n| n.contains(".tile")) {
            msg.push_str(
                " (this looks like a conductances.npz; start from the run's weights.npz instead)",
            );
        }
        return Err(msg);
    }
    let mut arrays = std::collections::HashMap::new();
    for e in entries {
        let a = e.array.map_err(|m| format!("{shown}: {m}"))?;
        let want = match expected.iter().find(|(n, _)| *n == a.name) {
            Some((_, s)) => s.clone(),
            None => wshapes[optional(&a.name).unwrap_or(0)].clone(),
        };
        if a.shape != want {
            return Err(format!(
                "{shown}: `{}` has shape {}, expected {} for {network}",
                a.name,
                shape_str(&a.shape),
                shape_str(&want)
            ));
        }
        if let Some(k) = a.data.iter().position(|v| !v.is_finite()) {
            // The index of the value in every dimension, outermost first.
            let mut idx = Vec::with_capacity(a.shape.len());
            let mut rest = k;
            for d in a.shape.iter().rev() {
                idx.push(rest % d.max(&1));
                rest /= d.max(&1);
            }
            idx.reverse();
            let at = if idx.len() == 1 {
                format!("({},)", idx[0])
            } else {
                format!(
                    "({})",
                    idx.iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(format!(
                "{shown}: `{}` holds a non-finite value at {at} ({} as float32)",
                a.name, a.data[k]
            ));
        }
        arrays.insert(a.name.clone(), a.data);
    }
    let layers = (0..layers)
        .map(|i| {
            let w = &wshapes[i];
            LayerParams {
                inputs: w[1..].iter().product(),
                outputs: w[0],
                weight: arrays
                    .remove(&format!("layer{i}.weight"))
                    .unwrap_or_default(),
                bias: arrays.remove(&format!("layer{i}.bias")).unwrap_or_default(),
                feedback: arrays.remove(&format!("layer{i}.feedback")),
                conv: (w.len() == 4).then(|| (w[1], w[2])),
            }
        })
        .collect();
    Ok(InitWeights {
        path: path.to_path_buf(),
        layers: Arc::new(layers),
    })
}

/// Gives `net` the starting weights `init`: float layers take them exactly, tiles are programmed as
/// initial weights are (see [`NetMut`]). Errors (a network of other sizes than the file was checked
/// against) name the file.
pub fn apply(init: &InitWeights, net: NetMut<'_>) -> Result<()> {
    let count = match &net {
        NetMut::Bp(m, _) => m.layers().len(),
        NetMut::Ep(n) => n.config().sizes.len() - 1,
    };
    let context = || {
        format!(
            "train.init_weights: {} does not fit the network",
            init.path.display()
        )
    };
    if count != init.layers.len() {
        anyhow::bail!(
            "{}: {} layer(s) in the file, {count} in the network",
            context(),
            init.layers.len()
        );
    }
    match net {
        NetMut::Bp(m, exact) => {
            for (k, l) in init.layers.iter().enumerate() {
                m.set_parameters(k, &l.weight, &l.bias, exact)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", context()))?;
            }
        }
        NetMut::Ep(n) => {
            for (k, l) in init.layers.iter().enumerate() {
                n.set_parameters(k, &l.weight, &l.bias, l.feedback.as_deref())
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "{}: {e} (feedback arrays need ep.feedback = \"separate\")",
                            context()
                        )
                    })?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.npy` file written by hand: format 1.0, header padded to 64 bytes as numpy pads it.
    fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let order = if fortran { "True" } else { "False" };
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn le32(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// A zip archive of `(entry name, bytes)`, deflated (as `numpy.savez_compressed` writes) or stored.
    fn zip_of(entries: &[(&str, Vec<u8>)], deflate: bool) -> Vec<u8> {
        let method = if deflate {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, bytes) in entries {
            let opts = zip::write::SimpleFileOptions::default().compression_method(method);
            z.start_file(*name, opts).unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap().into_inner()
    }

    /// A fresh temporary folder for one test.
    struct Tmp(PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("aimsim-weights-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Tmp(p)
        }
        fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn arr(name: &str, shape: &[usize], data: Vec<f32>) -> Array {
        Array {
            name: name.into(),
            shape: shape.to_vec(),
            data,
        }
    }

    /// A 3-2-2 network's parameters with distinct values.
    fn params() -> Vec<Array> {
        let v = |n: usize, k: f32| (0..n).map(|i| k + 0.125 * i as f32).collect::<Vec<_>>();
        vec![
            arr("layer0.weight", &[2, 3], v(6, -0.5)),
            arr("layer0.bias", &[2], v(2, 0.25)),
            arr("layer1.weight", &[2, 2], v(4, 1.5)),
            arr("layer1.bias", &[2], v(2, -2.0)),
        ]
    }

    #[test]
    fn npz_files_are_zip_archives_of_npy_entries_that_numpy_reads() {
        let arrays = params();
        let bytes = npz_bytes(&arrays).unwrap();
        assert_eq!(
            bytes,
            npz_bytes(&arrays).unwrap(),
            "the same arrays, the same bytes"
        );
        let mut z = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        assert_eq!(z.len(), arrays.len());
        for (i, a) in arrays.iter().enumerate() {
            let mut f = z.by_index(i).unwrap();
            assert_eq!(f.name().unwrap(), format!("{}.npy", a.name));
            assert_eq!(f.compression(), zip::CompressionMethod::Stored);
            let mut npy = Vec::new();
            f.read_to_end(&mut npy).unwrap();
            // numpy's format 1.0: magic, version, little-endian header length, a dict padded with
            // spaces and ended by a newline so that the data start at a multiple of 64 bytes.
            assert_eq!(&npy[..8], b"\x93NUMPY\x01\x00");
            let hlen = u16::from_le_bytes([npy[8], npy[9]]) as usize;
            assert_eq!((10 + hlen) % 64, 0);
            let header = std::str::from_utf8(&npy[10..10 + hlen]).unwrap();
            let dims = a.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>();
            let shape = if dims.len() == 1 {
                format!("({},)", dims[0])
            } else {
                format!("({})", dims.join(", "))
            };
            assert_eq!(
                header.trim_end(),
                format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}")
            );
            assert!(header.ends_with('\n'));
            assert_eq!(&npy[10 + hlen..], le32(&a.data).as_slice());
        }
    }

    #[test]
    fn written_arrays_read_back_bit_for_bit() {
        let t = Tmp::new("roundtrip");
        let mut arrays = params();
        arrays.push(arr("odd", &[1, 3], vec![f32::MIN_POSITIVE, -0.0, 1e-45]));
        let p = t.0.join("a.npz");
        write_npz(&p, &arrays).unwrap();
        let back: Vec<Array> = read_npz(&p)
            .unwrap()
            .into_iter()
            .map(|e| e.array.unwrap())
            .collect();
        assert_eq!(back.len(), arrays.len());
        for (a, b) in arrays.iter().zip(&back) {
            assert_eq!((&a.name, &a.shape), (&b.name, &b.shape));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a.data), bits(&b.data), "{}", a.name);
        }
    }

    #[test]
    fn a_file_written_by_hand_loads_to_its_values() {
        // float64 big-endian, float64 Fortran order, float32: all as numpy may write them, deflated as
        // numpy.savez_compressed does.
        let w0: Vec<f64> = vec![0.5, -1.0, 1.5, 2.0, -2.5, 3.0];
        let w0_be: Vec<u8> = w0.iter().flat_map(|x| x.to_be_bytes()).collect();
        // (2, 2) [[1, 2], [3, 4]] stored column by column.
        let w1_f: Vec<u8> = [1.0f64, 3.0, 2.0, 4.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let bytes = zip_of(
            &[
                ("layer0.weight.npy", npy(">f8", false, "(2, 3)", &w0_be)),
                (
                    "layer0.bias.npy",
                    npy("<f4", false, "(2,)", &le32(&[0.25, -0.75])),
                ),
                ("layer1.weight.npy", npy("<f8", true, "(2, 2)", &w1_f)),
                (
                    "layer1.bias.npy",
                    npy("<f4", false, "(2,)", &le32(&[7.0, -8.0])),
                ),
            ],
            true,
        );
        let t = Tmp::new("byhand");
        let p = t.file("w.npz", &bytes);
        let w = load_init(&p, &[3, 2, 2], None, false, "[2]").unwrap();
        let l = &w.layers;
        assert_eq!(l[0].weight, vec![0.5, -1.0, 1.5, 2.0, -2.5, 3.0]);
        assert_eq!(l[0].bias, vec![0.25, -0.75]);
        assert_eq!(l[1].weight, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(l[1].bias, vec![7.0, -8.0]);
        assert_eq!((l[0].outputs, l[0].inputs), (2, 3));
        assert!(l.iter().all(|l| l.feedback.is_none()));
    }

    #[test]
    fn fortran_order_becomes_c_order_in_any_rank() {
        // shape (2, 3, 2): element (i, j, k) has value 100 i + 10 j + k.
        let shape = [2, 3, 2];
        let mut f = vec![0.0; 12];
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..2 {
                    f[i + 2 * j + 6 * k] = (100 * i + 10 * j + k) as f32;
                }
            }
        }
        let c = c_order(&shape, &f);
        let want: Vec<f32> = (0..2)
            .flat_map(|i| {
                (0..3).flat_map(move |j| (0..2).map(move |k| (100 * i + 10 * j + k) as f32))
            })
            .collect();
        assert_eq!(c, want);
    }

    /// The error of loading `entries` (as a stored npz) for a 3-2-2 network.
    fn error_of(tag: &str, entries: &[(&str, Vec<u8>)]) -> String {
        let t = Tmp::new(tag);
        let p = t.file("w.npz", &zip_of(entries, false));
        load_init(&p, &[3, 2, 2], None, false, "[2]").unwrap_err()
    }

    fn good() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            (
                "layer0.weight.npy",
                npy("<f4", false, "(2, 3)", &le32(&[0.0; 6])),
            ),
            (
                "layer0.bias.npy",
                npy("<f4", false, "(2,)", &le32(&[0.0; 2])),
            ),
            (
                "layer1.weight.npy",
                npy("<f4", false, "(2, 2)", &le32(&[0.0; 4])),
            ),
            (
                "layer1.bias.npy",
                npy("<f4", false, "(2,)", &le32(&[0.0; 2])),
            ),
        ]
    }

    #[test]
    fn every_mismatch_is_an_error_naming_the_array() {
        let t = Tmp::new("missing-file");
        let e = load_init(&t.0.join("nope.npz"), &[3, 2, 2], None, false, "[2]").unwrap_err();
        assert!(e.contains("nope.npz") && e.contains("no such file"), "{e}");
        let p = t.file("text.npz", b"not a zip");
        let e = load_init(&p, &[3, 2, 2], None, false, "[2]").unwrap_err();
        assert!(e.contains("not an npz file"), "{e}");

        let mut g = good();
        g.remove(3);
        let e = error_of("missing", &g);
        assert!(e.contains("missing array(s) layer1.bias"), "{e}");
        assert!(e.contains("train.hidden = [2]"), "{e}");

        let mut g = good();
        g.push((
            "layer2.weight.npy",
            npy("<f4", false, "(1,)", &le32(&[0.0])),
        ));
        let e = error_of("extra", &g);
        assert!(e.contains("unexpected array(s) layer2.weight"), "{e}");
        // Feedback arrays only where EP's separate feedback allows them.
        let mut g = good();
        g.push((
            "layer1.feedback.npy",
            npy("<f4", false, "(2, 2)", &le32(&[0.0; 4])),
        ));
        let e = error_of("feedback", &g);
        assert!(e.contains("unexpected array(s) layer1.feedback"), "{e}");

        let mut g = good();
        g[2] = (
            "layer1.weight.npy",
            npy("<f4", false, "(2, 3)", &le32(&[0.0; 6])),
        );
        let e = error_of("shape", &g);
        assert!(
            e.contains("`layer1.weight` has shape (2, 3), expected (2, 2)")
                && e.contains("3-2-2")
                && e.contains("train.hidden = [2]"),
            "{e}"
        );

        let mut g = good();
        g[1] = ("layer0.bias.npy", npy("<i8", false, "(2,)", &[0u8; 16]));
        let e = error_of("dtype", &g);
        assert!(
            e.contains("`layer0.bias` has dtype <i8") && e.contains("float32 or float64"),
            "{e}"
        );

        let mut g = good();
        g[0] = (
            "layer0.weight.npy",
            npy(
                "<f4",
                false,
                "(2, 3)",
                &le32(&[0.0, 0.0, 0.0, 0.0, f32::NAN, 0.0]),
            ),
        );
        let e = error_of("nan", &g);
        assert!(
            e.contains("`layer0.weight` holds a non-finite value at (1, 1)"),
            "{e}"
        );
        // A float64 value beyond the float32 range is not finite once converted.
        let mut g = good();
        let big: Vec<u8> = [1e300f64, 0.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        g[3] = ("layer1.bias.npy", npy("<f8", false, "(2,)", &big));
        let e = error_of("overflow", &g);
        assert!(
            e.contains("`layer1.bias` holds a non-finite value at (0,)"),
            "{e}"
        );

        let mut g = good();
        g.push(("notes.txt", b"hello".to_vec()));
        let e = error_of("not-npy", &g);
        assert!(e.contains("unexpected array(s) notes.txt"), "{e}");
    }

    #[test]
    fn an_ep_file_may_hold_feedback_weights_of_hidden_layers() {
        let mut g = good();
        g.push((
            "layer1.feedback.npy",
            npy("<f4", false, "(2, 2)", &le32(&[1.0, 2.0, 3.0, 4.0])),
        ));
        let t = Tmp::new("ep-feedback");
        let p = t.file("w.npz", &zip_of(&g, false));
        let w = load_init(&p, &[3, 2, 2], None, true, "[2]").unwrap();
        assert_eq!(w.layers[0].feedback, None);
        assert_eq!(w.layers[1].feedback, Some(vec![1.0, 2.0, 3.0, 4.0]));
        g.push((
            "layer0.feedback.npy",
            npy("<f4", false, "(2, 3)", &le32(&[0.0; 6])),
        ));
        let p = t.file("w0.npz", &zip_of(&g, false));
        let e = load_init(&p, &[3, 2, 2], None, true, "[2]").unwrap_err();
        assert!(e.contains("unexpected array(s) layer0.feedback"), "{e}");
    }
}
