//! Conductance traces streamed to disk: which devices, how often, and the files (docs/traces.md).
//!
//! A [`TraceWriter`] appends one row per record to `trace.npy` (float32, rows = records in time, columns
//! = traced devices) and to the tidy `trace.csv` (one line per record and device) through fixed-size
//! buffers, so memory stays bounded however long the run. Both files grow under hidden `.partial` names
//! and are renamed into place by [`TraceWriter::finish`], after the `.npy` header (fixed size, padded)
//! has been patched with the final row count. A [`TracePosition`] taken at a checkpoint lets a resumed
//! run truncate what was written after it and continue appending ([`TraceWriter::resume`]).
//!
//! [`TraceRecorder`] sits on top for training: it picks the devices of a network's tiles (by address
//! and/or a seeded random sample), applies the cadence (`every` updates or pulses) and writes the
//! sidecar `trace_devices.csv` naming each column. Any network whose weights live on tiles can use it
//! through [`Network`].

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use aimsim_networks::train::Network;
use aimsim_sim::rng::{Purpose, stream};
use aimsim_sim::tile::CellKind;
use anyhow::{Context, Result, bail};
use rand::RngExt;

use crate::output::write_atomic;

/// What counts towards a trace's cadence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceUnit {
    /// Updates: training samples (`aimsim run`), protocol steps (`aimsim device`).
    Updates,
    /// Write pulses: all pulses applied by the network (`aimsim run`; a row is recorded after each
    /// update during which the running total crossed a multiple of `every`), one pulse per device and
    /// step (`aimsim device`).
    Pulses,
}

impl TraceUnit {
    /// Scenario name.
    pub fn name(self) -> &'static str {
        match self {
            TraceUnit::Updates => "updates",
            TraceUnit::Pulses => "pulses",
        }
    }
}

/// A device addressed in a scenario's `[trace] devices` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceAddress {
    /// Layer, from 0 (input side).
    pub layer: usize,
    /// Tile within the layer, in grid order.
    pub tile: usize,
    /// Row within the tile.
    pub row: usize,
    /// Column within the tile.
    pub col: usize,
    /// Device array of the cell; `None`: every device of the cell.
    pub array: Option<usize>,
}

/// Which devices are traced and how often (the validated `[trace]` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSpec {
    /// Devices given by address, in order.
    pub devices: Vec<DeviceAddress>,
    /// Devices added at random (seeded from the scenario seed), after the addressed ones.
    pub sample: u32,
    /// A record every `every` units; 0 disables the trace.
    pub every: u64,
    /// Unit of `every`.
    pub unit: TraceUnit,
}

/// One traced device: an npy column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedDevice {
    /// Layer (0 for the protocol).
    pub layer: usize,
    /// Tile within the layer (0 for the protocol).
    pub tile: usize,
    /// Device array of the cell.
    pub array: usize,
    /// Role of the device in its cell: `G` (single device), `G+`/`G-` (pair), `A+`/`A-`/`C+`/`C-`
    /// (multi-array cell).
    pub role: &'static str,
    /// Row within the tile.
    pub row: usize,
    /// Column within the tile (the device index for the protocol).
    pub col: usize,
}

impl TracedDevice {
    /// Index of the device in its population (row-major).
    pub fn index(&self, cols: usize) -> usize {
        self.row * cols + self.col
    }
}

/// Role name of device array `array` in a cell.
pub fn role(cell: CellKind, array: usize) -> &'static str {
    match (cell, array) {
        (CellKind::Single, _) => "G",
        (CellKind::Pair | CellKind::OneSided, 0) => "G+",
        (CellKind::Pair | CellKind::OneSided, _) => "G-",
        (CellKind::MultiArray { .. }, 0) => "A+",
        (CellKind::MultiArray { .. }, 1) => "A-",
        (CellKind::MultiArray { .. }, 2) => "C+",
        (CellKind::MultiArray { .. }, _) => "C-",
    }
}

/// Size of the `.npy` header, magic included: fixed, so the shape can be patched in place.
pub const NPY_HEADER_BYTES: usize = 128;

/// Bytes each output file buffers before it writes to disk.
pub const BUFFER_BYTES: usize = 64 * 1024;

/// The `.npy` header of a float32 C-ordered `rows x cols` array, padded to [`NPY_HEADER_BYTES`]
/// ([`crate::output::npy_header`]).
pub fn npy_header(rows: u64, cols: usize) -> [u8; NPY_HEADER_BYTES] {
    // The longest possible text (two 20-digit numbers) still fits: 10 + 58 + 40 + 1 < 128.
    crate::output::npy_header(&[rows, cols as u64], NPY_HEADER_BYTES)
        .try_into()
        .expect("a trace header fits its fixed size")
}

/// How far a trace had been written: enough to truncate and continue it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TracePosition {
    /// Rows (records) written.
    pub rows: u64,
    /// Bytes of `trace.csv` written.
    pub csv_bytes: u64,
}

/// The columns of a trace's tidy CSV, around the per-device ones.
#[derive(Debug, Clone)]
pub struct CsvLayout {
    /// Columns that describe the record (e.g. `step,pulses`), first on every line.
    pub time: Vec<&'static str>,
    /// Columns that describe a device (e.g. `layer,tile,array,role,row,col`), after `column`.
    pub device: Vec<&'static str>,
}

/// Streams a trace to `<dir>/trace.npy` and `<dir>/trace.csv` (see the module docs).
pub struct TraceWriter {
    dir: PathBuf,
    cols: usize,
    npy: BufWriter<File>,
    csv: BufWriter<File>,
    /// Per device, its CSV cells (`column` and the device columns), pre-formatted.
    device_cells: Vec<String>,
    line: String,
    position: TracePosition,
}

/// Final and partial paths of one output.
fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (dir.join(name), dir.join(format!(".{name}.partial")))
}

fn io_err(path: &Path, what: &str) -> String {
    format!("cannot {what} the trace file {}", path.display())
}

impl TraceWriter {
    /// Starts a trace of `devices` columns in `dir`: writes the CSV header and a placeholder `.npy`
    /// header. `device_cells[d]` holds device `d`'s values of `layout.device`, comma-separated.
    pub fn create(dir: &Path, layout: &CsvLayout, device_cells: &[String]) -> Result<Self> {
        let mut files = Vec::new();
        for name in ["trace.npy", "trace.csv"] {
            let (_, partial) = paths(dir, name);
            let f = File::create(&partial).with_context(|| io_err(&partial, "create"))?;
            files.push(BufWriter::with_capacity(BUFFER_BYTES, f));
        }
        let csv = files.pop().expect("two files");
        let npy = files.pop().expect("two files");
        let mut w = Self::assemble(dir, npy, csv, device_cells);
        w.npy
            .write_all(&npy_header(0, w.cols))
            .with_context(|| io_err(&w.partial("trace.npy"), "write"))?;
        let header: Vec<&str> = layout
            .time
            .iter()
            .copied()
            .chain(["column"])
            .chain(layout.device.iter().copied())
            .chain(["conductance"])
            .collect();
        let header = format!("{}\n", header.join(","));
        w.csv
            .write_all(header.as_bytes())
            .with_context(|| io_err(&w.partial("trace.csv"), "write"))?;
        w.position.csv_bytes = header.len() as u64;
        Ok(w)
    }

    /// Continues a trace written up to `at` (a position from [`TraceWriter::checkpoint`]): opens the
    /// partial files (or the finished ones, which go back to partial), drops everything after `at`
    /// and appends from there. Refuses files shorter than `at` or not holding this trace's `.npy`.
    pub fn resume(dir: &Path, device_cells: &[String], at: TracePosition) -> Result<Self> {
        let cols = device_cells.len();
        let npy_len = NPY_HEADER_BYTES as u64 + at.rows * cols as u64 * 4;
        let mut files = Vec::new();
        for (name, len) in [("trace.npy", npy_len), ("trace.csv", at.csv_bytes)] {
            let (done, partial) = paths(dir, name);
            if !partial.exists() && done.exists() {
                fs::rename(&done, &partial).with_context(|| io_err(&done, "reopen"))?;
            }
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&partial)
                .with_context(|| {
                    format!(
                        "cannot resume the trace: {} is missing (the checkpoint expects {len} bytes)",
                        partial.display()
                    )
                })?;
            let have = f
                .metadata()
                .with_context(|| io_err(&partial, "read"))?
                .len();
            if have < len {
                bail!(
                    "cannot resume the trace: {} holds {have} bytes, the checkpoint expects at least {len}",
                    partial.display()
                );
            }
            if name == "trace.npy" {
                let mut head = [0u8; 10];
                std::io::Read::read_exact(&mut f, &mut head)
                    .with_context(|| io_err(&partial, "read"))?;
                if &head[..8] != b"\x93NUMPY\x01\x00"
                    || u16::from_le_bytes([head[8], head[9]]) as usize != NPY_HEADER_BYTES - 10
                {
                    bail!(
                        "cannot resume the trace: {} (byte 0) is not a trace .npy written by aimsim",
                        partial.display()
                    );
                }
            }
            f.set_len(len)
                .with_context(|| io_err(&partial, "truncate"))?;
            f.seek(SeekFrom::End(0))
                .with_context(|| io_err(&partial, "seek in"))?;
            files.push(BufWriter::with_capacity(BUFFER_BYTES, f));
        }
        let csv = files.pop().expect("two files");
        let npy = files.pop().expect("two files");
        let mut w = Self::assemble(dir, npy, csv, device_cells);
        w.position = at;
        Ok(w)
    }

    fn assemble(
        dir: &Path,
        npy: BufWriter<File>,
        csv: BufWriter<File>,
        device_cells: &[String],
    ) -> Self {
        TraceWriter {
            dir: dir.to_path_buf(),
            cols: device_cells.len(),
            npy,
            csv,
            device_cells: device_cells
                .iter()
                .enumerate()
                .map(|(d, c)| {
                    if c.is_empty() {
                        d.to_string()
                    } else {
                        format!("{d},{c}")
                    }
                })
                .collect(),
            line: String::new(),
            position: TracePosition::default(),
        }
    }

    fn partial(&self, name: &str) -> PathBuf {
        paths(&self.dir, name).1
    }

    /// Columns (devices) per row.
    pub fn columns(&self) -> usize {
        self.cols
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.position.rows
    }

    /// Bytes held in memory, not yet written to disk (at most `2 x BUFFER_BYTES`).
    pub fn buffered(&self) -> usize {
        self.npy.buffer().len() + self.csv.buffer().len()
    }

    /// Appends one record: `time` holds the values of the layout's time columns, comma-separated;
    /// `values` one conductance per device.
    pub fn push(&mut self, time: &str, values: &[f32]) -> Result<()> {
        assert_eq!(values.len(), self.cols, "one value per traced device");
        for v in values {
            self.npy
                .write_all(&v.to_le_bytes())
                .with_context(|| io_err(&self.partial("trace.npy"), "write"))?;
        }
        for (cells, v) in self.device_cells.iter().zip(values) {
            self.line.clear();
            use std::fmt::Write as _;
            let _ = writeln!(self.line, "{time},{cells},{v}");
            self.csv
                .write_all(self.line.as_bytes())
                .with_context(|| io_err(&self.partial("trace.csv"), "write"))?;
            self.position.csv_bytes += self.line.len() as u64;
        }
        self.position.rows += 1;
        Ok(())
    }

    /// Writes everything buffered to disk (synced) and returns the position to store in a checkpoint.
    pub fn checkpoint(&mut self) -> Result<TracePosition> {
        for (w, name) in [(&mut self.npy, "trace.npy"), (&mut self.csv, "trace.csv")] {
            w.flush()
                .and_then(|_| w.get_ref().sync_data())
                .with_context(|| io_err(&paths(&self.dir, name).1, "write"))?;
        }
        Ok(self.position)
    }

    /// Patches the `.npy` header with the row count, syncs both files and renames them into place.
    /// Returns the file names written.
    pub fn finish(mut self) -> Result<Vec<String>> {
        self.checkpoint()?;
        let header = npy_header(self.position.rows, self.cols);
        let npy_partial = self.partial("trace.npy");
        let mut f = self
            .npy
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| io_err(&npy_partial, "write"))?;
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.write_all(&header))
            .and_then(|_| f.sync_all())
            .with_context(|| io_err(&npy_partial, "write the header of"))?;
        drop(f);
        drop(self.csv);
        for name in ["trace.npy", "trace.csv"] {
            let (done, partial) = paths(&self.dir, name);
            fs::rename(&partial, &done).with_context(|| {
                format!("cannot move {} to {}", partial.display(), done.display())
            })?;
        }
        Ok(vec!["trace.npy".into(), "trace.csv".into()])
    }
}

/// Writes the sidecar naming each column of a trace: `column`, the device columns, `unit`.
pub fn write_sidecar(
    dir: &Path,
    layout: &CsvLayout,
    device_cells: &[String],
    unit: &str,
) -> Result<()> {
    let mut text = String::from("column");
    for c in &layout.device {
        text.push(',');
        text.push_str(c);
    }
    text.push_str(",unit\n");
    for (d, cells) in device_cells.iter().enumerate() {
        text.push_str(&d.to_string());
        if !cells.is_empty() {
            text.push(',');
            text.push_str(cells);
        }
        text.push(',');
        text.push_str(unit);
        text.push('\n');
    }
    write_atomic(&dir.join("trace_devices.csv"), text.as_bytes())
}

/// Reads a trace's `.npy` (float32, C order, rows x traced devices, as [`TraceWriter`] writes it) row by
/// row, holding one row in memory: calls `f(row, values)` for every row in order. Returns the row count.
pub fn for_each_npy_row(path: &Path, f: &mut dyn FnMut(u64, &[f32])) -> Result<u64> {
    let p = path.display();
    let file = File::open(path).with_context(|| format!("cannot open {p}"))?;
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file))
        .with_context(|| format!("{p}: not a readable .npy file"))?;
    let &[rows, cols] = npy.shape() else {
        bail!(
            "{p}: a trace is a 2-D array, this one has shape {:?}",
            npy.shape()
        );
    };
    if npy.order() != npyz::Order::C {
        bail!("{p}: a trace is stored in C order");
    }
    let mut data = npy
        .data::<f32>()
        .with_context(|| format!("{p}: not float32 data"))?;
    let mut row = vec![0.0f32; cols as usize];
    for r in 0..rows {
        for v in row.iter_mut() {
            *v = data
                .next()
                .with_context(|| format!("{p}: shorter than its header says"))?
                .with_context(|| format!("{p}: cannot read row {r}"))?;
        }
        f(r, &row);
    }
    Ok(rows)
}

/// Pulses applied so far by every tile of `net`.
fn total_pulses(net: &dyn Network) -> u64 {
    net.layer_tiles()
        .into_iter()
        .flatten()
        .map(|t| {
            let p = t.tally();
            p.up + p.down
        })
        .sum()
}

/// Where a training trace stands at a checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderState {
    /// Files written so far.
    pub position: TracePosition,
    /// Network pulse total at the last cadence check.
    pub last_pulses: u64,
}

/// The CSV layout of a training trace.
pub fn training_layout() -> CsvLayout {
    CsvLayout {
        time: vec!["step", "pulses"],
        device: vec!["layer", "tile", "array", "role", "row", "col"],
    }
}

/// Traces devices of a network's tiles during training (see the module docs).
pub struct TraceRecorder {
    devices: Vec<TracedDevice>,
    /// Per device: its tile's column count (to index its population).
    cols: Vec<usize>,
    every: u64,
    unit: TraceUnit,
    last_pulses: u64,
    values: Vec<f32>,
    writer: Option<TraceWriter>,
}

impl TraceRecorder {
    /// Picks the traced devices of `net` for `spec` (random ones from the stream `(seed, Trace)`).
    /// Errors name the offending `trace.devices` entry when an address is outside the network.
    pub fn select(
        net: &dyn Network,
        spec: &TraceSpec,
        seed: u64,
    ) -> Result<Vec<TracedDevice>, String> {
        let mut out: Vec<TracedDevice> = Vec::new();
        let mut seen = BTreeSet::new();
        let mut add = |d: TracedDevice, out: &mut Vec<TracedDevice>| {
            if seen.insert((d.layer, d.tile, d.array, d.row, d.col)) {
                out.push(d);
            }
        };
        for (k, a) in spec.devices.iter().enumerate() {
            let at = format!("trace.devices.{k}");
            if a.layer >= net.layer_tiles().len() {
                return Err(format!(
                    "{at}: layer {} does not exist (the network has {} layer(s), numbered from 0)",
                    a.layer,
                    net.layer_tiles().len()
                ));
            }
            let tiles = net.layer_tiles()[a.layer];
            let Some(t) = tiles.get(a.tile) else {
                return Err(format!(
                    "{at}: layer {} has {} tile(s) (numbered from 0 in grid order), no tile {}",
                    a.layer,
                    tiles.len(),
                    a.tile
                ));
            };
            if a.row >= t.rows() || a.col >= t.cols() {
                return Err(format!(
                    "{at}: tile {} of layer {} is {}x{}, no device at row {} col {}",
                    a.tile,
                    a.layer,
                    t.rows(),
                    t.cols(),
                    a.row,
                    a.col
                ));
            }
            let arrays = t.cell().arrays();
            let range = match a.array {
                Some(x) if x >= arrays => {
                    return Err(format!(
                        "{at}: a {} cell has {arrays} device array(s), no array {x}",
                        t.cell().name()
                    ));
                }
                Some(x) => x..x + 1,
                None => 0..arrays,
            };
            for array in range {
                add(
                    TracedDevice {
                        layer: a.layer,
                        tile: a.tile,
                        array,
                        role: role(t.cell(), array),
                        row: a.row,
                        col: a.col,
                    },
                    &mut out,
                );
            }
        }
        // Random sample over every device of every tile, drawn without repetition.
        let mut units = Vec::new(); // (layer, tile, array, devices)
        for l in 0..net.layer_tiles().len() {
            for (k, t) in net.layer_tiles()[l].iter().enumerate() {
                for a in 0..t.cell().arrays() {
                    units.push((l, k, a, t.rows() * t.cols()));
                }
            }
        }
        let total: usize = units.iter().map(|u| u.3).sum();
        let want = (spec.sample as usize).min(total);
        let mut rng = stream(seed, Purpose::Trace, 0);
        let mut chosen = BTreeSet::new();
        while chosen.len() < want {
            chosen.insert(rng.random_range(0..total));
        }
        for mut g in chosen {
            for &(l, k, a, n) in &units {
                if g < n {
                    let t = &net.layer_tiles()[l][k];
                    add(
                        TracedDevice {
                            layer: l,
                            tile: k,
                            array: a,
                            role: role(t.cell(), a),
                            row: g / t.cols(),
                            col: g % t.cols(),
                        },
                        &mut out,
                    );
                    break;
                }
                g -= n;
            }
        }
        Ok(out)
    }

    /// A recorder writing into `dir` (or, when nothing is traced, one that writes nothing); `resume`
    /// continues the files of a checkpoint instead of starting them.
    pub fn new(
        net: &dyn Network,
        spec: &TraceSpec,
        seed: u64,
        dir: &Path,
        unit_name: &str,
        resume: Option<RecorderState>,
    ) -> Result<Self> {
        let devices = if spec.every == 0 {
            Vec::new()
        } else {
            Self::select(net, spec, seed).map_err(anyhow::Error::msg)?
        };
        let cols = devices
            .iter()
            .map(|d| net.layer_tiles()[d.layer][d.tile].cols())
            .collect();
        let layout = training_layout();
        let cells: Vec<String> = devices
            .iter()
            .map(|d| {
                format!(
                    "{},{},{},{},{},{}",
                    d.layer, d.tile, d.array, d.role, d.row, d.col
                )
            })
            .collect();
        let writer = if devices.is_empty() {
            None
        } else {
            write_sidecar(dir, &layout, &cells, unit_name)?;
            Some(match resume {
                None => TraceWriter::create(dir, &layout, &cells)?,
                Some(s) => TraceWriter::resume(dir, &cells, s.position)?,
            })
        };
        Ok(TraceRecorder {
            values: vec![0.0; devices.len()],
            devices,
            cols,
            every: spec.every,
            unit: spec.unit,
            last_pulses: resume.map_or(0, |s| s.last_pulses),
            writer,
        })
    }

    /// The traced devices, one per column.
    pub fn devices(&self) -> &[TracedDevice] {
        &self.devices
    }

    /// Records a row now, whatever the cadence (e.g. the programmed state at step 0).
    pub fn record(&mut self, net: &dyn Network, step: u64) -> Result<()> {
        let Some(w) = &mut self.writer else {
            return Ok(());
        };
        for ((v, d), cols) in self.values.iter_mut().zip(&self.devices).zip(&self.cols) {
            let t = &net.layer_tiles()[d.layer][d.tile];
            *v = t.array(d.array).conductance(d.index(*cols));
        }
        let pulses = total_pulses(net);
        w.push(&format!("{step},{pulses}"), &self.values)
    }

    /// After update `step` (counted from 1): records a row when the cadence says so.
    pub fn after_update(&mut self, net: &dyn Network, step: u64) -> Result<()> {
        if self.writer.is_none() {
            return Ok(());
        }
        let due = match self.unit {
            TraceUnit::Updates => step.is_multiple_of(self.every),
            TraceUnit::Pulses => {
                let now = total_pulses(net);
                let due = now / self.every > self.last_pulses / self.every;
                self.last_pulses = now;
                due
            }
        };
        if due { self.record(net, step) } else { Ok(()) }
    }

    /// Flushes the files and returns what a checkpoint must store.
    pub fn checkpoint(&mut self) -> Result<RecorderState> {
        let position = match &mut self.writer {
            Some(w) => w.checkpoint()?,
            None => TracePosition::default(),
        };
        Ok(RecorderState {
            position,
            last_pulses: self.last_pulses,
        })
    }

    /// Finishes the files; returns their names (none when nothing was traced).
    pub fn finish(self) -> Result<Vec<String>> {
        let mut files = match self.writer {
            Some(w) => w.finish()?,
            None => return Ok(Vec::new()),
        };
        files.push("trace_devices.csv".into());
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("aimsim-trace-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn layout() -> CsvLayout {
        CsvLayout {
            time: vec!["step"],
            device: vec!["device"],
        }
    }

    fn shape_of(bytes: &[u8]) -> String {
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0, "header not aligned");
        let h = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
        assert!(h.ends_with('\n'));
        h.split("'shape': ")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap()
            .to_string()
            + ")"
    }

    #[test]
    fn streamed_trace_has_a_valid_header_and_bounded_buffers() {
        let dir = temp("stream");
        let cells: Vec<String> = (0..3).map(|d| (10 + d).to_string()).collect();
        let mut w = TraceWriter::create(&dir, &layout(), &cells).unwrap();
        let rows = 200_000u64;
        let mut max_buffered = 0;
        for r in 0..rows {
            let v = [r as f32, -(r as f32), 0.5];
            w.push(&r.to_string(), &v).unwrap();
            max_buffered = max_buffered.max(w.buffered());
        }
        assert!(max_buffered <= 2 * BUFFER_BYTES, "buffered {max_buffered}");
        // The data reached the disk while writing, not at the end.
        let on_disk = fs::metadata(dir.join(".trace.npy.partial")).unwrap().len();
        assert!(
            on_disk + BUFFER_BYTES as u64 >= 128 + rows * 12,
            "{on_disk}"
        );
        assert!(!dir.join("trace.npy").exists(), "finished before finish()");
        w.finish().unwrap();
        let b = fs::read(dir.join("trace.npy")).unwrap();
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        assert_eq!(shape_of(&b), "(200000, 3)");
        assert_eq!(b.len() as u64, 128 + rows * 12);
        let at = |r: usize, c: usize| {
            let o = 128 + (r * 3 + c) * 4;
            f32::from_le_bytes(b[o..o + 4].try_into().unwrap())
        };
        assert_eq!((at(7, 0), at(7, 1), at(7, 2)), (7.0, -7.0, 0.5));
        let csv = fs::read_to_string(dir.join("trace.csv")).unwrap();
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("step,column,device,conductance"));
        assert_eq!(lines.next(), Some("0,0,10,0"));
        assert_eq!(csv.lines().count() as u64, 1 + 3 * rows);
        assert!(!dir.join(".trace.npy.partial").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resume_drops_rows_after_the_checkpoint_and_continues() {
        let dir_a = temp("resume-a");
        let dir_b = temp("resume-b");
        let cells = vec![String::new(), String::new()];
        let row = |r: u64| [r as f32, 2.0 * r as f32];
        // Uninterrupted.
        let mut w = TraceWriter::create(&dir_a, &layout(), &cells).unwrap();
        for r in 0..50 {
            w.push(&r.to_string(), &row(r)).unwrap();
        }
        w.finish().unwrap();
        // Interrupted after a checkpoint at row 20, with rows 20..33 written but lost.
        let mut w = TraceWriter::create(&dir_b, &layout(), &cells).unwrap();
        for r in 0..20 {
            w.push(&r.to_string(), &row(r)).unwrap();
        }
        let at = w.checkpoint().unwrap();
        for r in 20..33 {
            w.push(&r.to_string(), &row(r + 1000)).unwrap();
        }
        w.checkpoint().unwrap();
        drop(w);
        let mut w = TraceWriter::resume(&dir_b, &cells, at).unwrap();
        assert_eq!(w.rows(), 20);
        for r in 20..50 {
            w.push(&r.to_string(), &row(r)).unwrap();
        }
        w.finish().unwrap();
        for f in ["trace.npy", "trace.csv"] {
            assert_eq!(
                fs::read(dir_a.join(f)).unwrap(),
                fs::read(dir_b.join(f)).unwrap(),
                "{f} differs after resume"
            );
        }
        // A finished trace can be reopened too; a too-short one is refused.
        let w = TraceWriter::resume(&dir_b, &cells, at).unwrap();
        drop(w);
        let long = TracePosition {
            rows: 10_000,
            csv_bytes: at.csv_bytes,
        };
        let e = TraceWriter::resume(&dir_b, &cells, long).err().unwrap();
        assert!(format!("{e:#}").contains("expects at least"), "{e:#}");
        fs::remove_dir_all(&dir_a).unwrap();
        fs::remove_dir_all(&dir_b).unwrap();
    }

    #[test]
    fn largest_shapes_fit_the_fixed_header() {
        let h = npy_header(u64::MAX, usize::MAX);
        assert_eq!(h.len(), NPY_HEADER_BYTES);
        assert_eq!(*h.last().unwrap(), b'\n');
    }
}
