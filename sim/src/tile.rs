//! A crossbar tile: `rows x cols` unit cells of devices, its periphery, its random stream and its
//! pulse counters.
//!
//! Its size (about 1,150 lines, tests apart) is earned: device arrays, weight cache, energy sums and
//! pulse counters must change together on every write path, so the write paths live next to the state
//! they keep consistent.

use aimsim_devices::lanes::{NormalLanes, WORDS};
use aimsim_devices::{DeviceSpec, Population, SpecError, StateError};

use crate::io::{IoConfig, MvmReport, convert, convert_batch};
use crate::kernels::gemv::{gemv, gemv_batch, gemv_t};
use crate::kernels::rowwrite::{RowBook, RowTrain, Scratch, Trains};
use crate::rng::{Pcg, Purpose, stream};

/// How the devices of a unit cell make one weight. Weights are kept in normalized units: a device's
/// state as a fraction `u` of its nominal range, combined per cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CellKind {
    /// One device against a mid-range reference: `w = 2u - 1`, in `[-1, 1]`.
    Single,
    /// Differential pair, both directions used: `w = u+ - u-`. A weight step of `+n` pulses potentiates
    /// `G+` by `n` and depresses `G-` by `n` (push-pull).
    Pair,
    /// One-sided (unidirectional) pair: `w = u+ - u-`; every pulse is a potentiation pulse, `G+` for a
    /// positive step and `G-` for a negative one.
    OneSided,
    /// Two pairs, a fast array A and a slow array C: `w = gamma (uA+ - uA-) + (uC+ - uC-)`. Updates go to
    /// A; transfer rules move A onto C.
    MultiArray {
        /// Weight of the fast array.
        gamma: f32,
    },
}

impl CellKind {
    /// Device arrays per cell.
    pub fn arrays(self) -> usize {
        match self {
            CellKind::Single => 1,
            CellKind::Pair | CellKind::OneSided => 2,
            CellKind::MultiArray { .. } => 4,
        }
    }

    /// Scenario name.
    pub fn name(self) -> &'static str {
        match self {
            CellKind::Single => "single",
            CellKind::Pair => "pair",
            CellKind::OneSided => "one-sided",
            CellKind::MultiArray { .. } => "multi-array",
        }
    }
}

/// Which devices a weight step goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// The cell's own rule (see [`CellKind`]).
    Cell,
    /// Both polarities: push-pull on a pair (`+n` on the first device, `-n` on the second), `+-n` on a
    /// single device; on a multi-array cell the fast pair A.
    Bidirectional,
    /// Potentiation only: `G+` for a positive step, `G-` for a negative one (the fast pair on a multi-array
    /// cell). A single-device cell has no second device and falls back to both polarities.
    Unidirectional,
}

/// Shape and periphery of a tile.
#[derive(Debug, Clone, PartialEq)]
pub struct TileConfig {
    /// Rows (outputs of the forward pass).
    pub rows: usize,
    /// Columns (inputs of the forward pass).
    pub cols: usize,
    /// Unit cell.
    pub cell: CellKind,
    /// Periphery of the forward pass.
    pub forward: IoConfig,
    /// Periphery of the backward pass.
    pub backward: IoConfig,
    /// Single-device cells only: read each device against a reference at its model's `w = 0` (weight
    /// units) instead of at the middle of its nominal range, as aihwkit's single-device tiles read the
    /// device weight itself. Changes the weights only of devices whose nominal range is not centred on 0
    /// (the cell's weight is then `2u - 1 + (w_min + w_max) / (w_max - w_min)`).
    pub zero_reference: bool,
}

impl Default for TileConfig {
    fn default() -> Self {
        TileConfig {
            rows: 256,
            cols: 256,
            cell: CellKind::Pair,
            forward: IoConfig::default(),
            backward: IoConfig::default(),
            zero_reference: false,
        }
    }
}

/// Pulses applied to a tile's devices, by polarity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PulseTally {
    /// Potentiation pulses.
    pub up: u64,
    /// Depression pulses.
    pub down: u64,
}

/// Scratch space of [`Tile::pulse_row`]: device indices, pulse counts and write noise of
/// one array's share of a row.
#[derive(Debug, Clone, Default)]
struct Batch {
    idx: Vec<u32>,
    n: Vec<i32>,
    noise: Vec<f32>,
}

/// One crossbar tile. Owns its devices, its effective-weight cache, its random stream (seeded from the
/// scenario seed and the tile id) and per-device pulse counters.
#[derive(Debug, Clone)]
pub struct Tile {
    id: u64,
    rows: usize,
    cols: usize,
    cell: CellKind,
    forward_io: IoConfig,
    backward_io: IoConfig,
    /// Weight of a single-device cell at mid-range (0 unless [`TileConfig::zero_reference`]).
    single_offset: f32,
    arrays: Vec<Population>,
    /// Effective normalized weights, row-major.
    w: Vec<f32>,
    /// Sum over the cell's devices of the conductance (uS; normalized range for weight-unit models) by
    /// row and by column, for read energy.
    g_row: Vec<f64>,
    g_col: Vec<f64>,
    /// Per device array: potentiation and depression pulses of each device.
    up_count: Vec<Vec<u32>>,
    down_count: Vec<Vec<u32>>,
    tally: PulseTally,
    rng: Pcg,
    /// Bulk write noise of the batched constant-step path (see [`Population::pulse_many`]).
    lanes: NormalLanes,
    scratch: Vec<f32>,
    /// Scratch of the batched row writes.
    batch: Batch,
    /// Scratch of the row kernel.
    row_scratch: Scratch,
    /// Scratch of the batched forward reads (the quantized inputs).
    batch_scratch: Vec<f32>,
    /// Reused buffers of the stochastic update's column and row trains (see [`Tile::take_trains`]).
    trains: (Trains, Vec<RowTrain>),
    /// Per array: change of the read-energy conductance per unit of native device state.
    energy_scale: Vec<f64>,
    /// Per array: true when its devices report weight units (read energy then uses the fraction of a
    /// 1 uS range).
    weight_units: Vec<bool>,
    /// Sigma of one cell's read noise in normalized weight units: the devices' `read_noise` (a fraction of
    /// their range) combined over the cell's devices with their weights in the cell (see [`CellKind`]).
    read_sigma: f32,
}

/// Everything of a tile that training changes, as plain data (a checkpoint's view of a tile): device
/// states, the incrementally kept energy sums, pulse counters and the random stream. Device parameters
/// and the weight cache are not in it: they follow from the scenario and the states.
#[derive(Debug, Clone, PartialEq)]
pub struct TileState {
    /// Per device array, every device's state in native units.
    pub states: Vec<Vec<f32>>,
    /// Per device array, every device's write-noise offset (empty without write noise).
    pub offsets: Vec<Vec<f32>>,
    /// Conductance sums by row (kept incrementally, so restored rather than recomputed).
    pub g_row: Vec<f64>,
    /// Conductance sums by column.
    pub g_col: Vec<f64>,
    /// Per device array, potentiation pulses of each device.
    pub up_count: Vec<Vec<u32>>,
    /// Per device array, depression pulses of each device.
    pub down_count: Vec<Vec<u32>>,
    /// Pulses applied so far.
    pub tally: PulseTally,
    /// The tile's random stream, where it stands.
    pub rng: Pcg,
    /// The tile's bulk write-noise lanes, where they stand ([`NormalLanes::words`]).
    pub lanes: [u32; WORDS],
}

/// What a [`Tile::write_verify`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Devices programmed.
    pub devices: u64,
    /// Devices that ended outside the tolerance (pulse budget spent, or stuck, or at a bound).
    pub unconverged: u64,
    /// Verify reads (one device each).
    pub reads: u64,
    /// Pulse trains applied (each a slot of `n` pulses).
    pub slots: u64,
    /// Potentiation pulses.
    pub pulses_up: u64,
    /// Depression pulses.
    pub pulses_down: u64,
}

impl VerifyReport {
    /// Adds another report's counts.
    pub fn add(&mut self, o: &VerifyReport) {
        self.devices += o.devices;
        self.unconverged += o.unconverged;
        self.reads += o.reads;
        self.slots += o.slots;
        self.pulses_up += o.pulses_up;
        self.pulses_down += o.pulses_down;
    }
}

/// What a converted MVM of a tile did, for the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReadReport {
    /// Passes and clipping of the periphery.
    pub mvm: MvmReport,
    /// Inputs driven (DAC conversions per pass).
    pub inputs: usize,
    /// Outputs converted (ADC conversions per pass).
    pub outputs: usize,
    /// `sum over devices of G x^2` over all passes, with `G` in uS and `x` the applied input in units of
    /// the read voltage: read energy = this x V^2 x t_read.
    pub g_x2: f64,
}

impl Tile {
    /// Builds a tile of devices drawn from `spec`. Device draws come from the stream
    /// `(seed, DeviceDraw, id * 4 + array)`, write and read noise from `(seed, Write, id)`, the lanes of
    /// the batched constant-step write noise are seeded from `(seed, WriteNoise, id)`.
    pub fn new(id: u64, cfg: &TileConfig, spec: &DeviceSpec, seed: u64) -> Result<Self, SpecError> {
        let n = cfg.rows * cfg.cols;
        let mut arrays = Vec::with_capacity(cfg.cell.arrays());
        for a in 0..cfg.cell.arrays() {
            let mut draw = stream(seed, Purpose::DeviceDraw, id * 4 + a as u64);
            arrays.push(Population::new(spec, n, &mut draw)?);
        }
        let mut tile = Tile {
            id,
            rows: cfg.rows,
            cols: cfg.cols,
            cell: cfg.cell,
            forward_io: cfg.forward.clone(),
            backward_io: cfg.backward.clone(),
            single_offset: 0.0,
            up_count: vec![vec![0; n]; arrays.len()],
            down_count: vec![vec![0; n]; arrays.len()],
            arrays,
            w: vec![0.0; n],
            g_row: vec![0.0; cfg.rows],
            g_col: vec![0.0; cfg.cols],
            tally: PulseTally::default(),
            rng: stream(seed, Purpose::Write, id),
            lanes: NormalLanes::from_rng(&mut stream(seed, Purpose::WriteNoise, id)),
            scratch: vec![0.0; cfg.rows.max(cfg.cols)],
            energy_scale: Vec::new(),
            batch: Batch::default(),
            row_scratch: Scratch::default(),
            batch_scratch: Vec::new(),
            trains: Default::default(),
            weight_units: Vec::new(),
            read_sigma: 0.0,
        };
        tile.weight_units = tile.arrays.iter().map(|p| p.unit() != "uS").collect();
        if cfg.zero_reference && cfg.cell == CellKind::Single {
            let (lo, hi) = tile.arrays[0].nominal_range();
            tile.single_offset = (lo + hi) / (hi - lo);
        }
        tile.energy_scale = tile
            .arrays
            .iter()
            .map(|p| {
                if p.unit() != "uS" {
                    p.fraction_scale() as f64
                } else {
                    p.conductance_scale()
                }
            })
            .collect();
        // The weight of each device in the cell's weight (w = 2u - 1; u+ - u-; gamma A + C): the cell's
        // read noise is the sum of its devices' independent fluctuations.
        let coef: &[f32] = match cfg.cell {
            CellKind::Single => &[2.0],
            CellKind::Pair | CellKind::OneSided => &[1.0, 1.0],
            CellKind::MultiArray { gamma } => &[gamma, gamma, 1.0, 1.0],
        };
        tile.read_sigma = coef
            .iter()
            .zip(&tile.arrays)
            .map(|(c, p)| (c * p.read_noise_fraction()).powi(2))
            .sum::<f32>()
            .sqrt();
        tile.recompute_all();
        Ok(tile)
    }

    /// Sigma of one cell's read noise in normalized weight units (0 when the devices have no read noise).
    pub fn read_sigma(&self) -> f32 {
        self.read_sigma
    }

    /// A read of device `i` of array `a` as a fraction of its nominal range, with the device's read noise
    /// drawn from the tile's stream (no draw when the device has none). What refresh and transfer
    /// decisions see.
    pub fn read_fraction(&mut self, a: usize, i: usize) -> f32 {
        let p = &self.arrays[a];
        let f = p.read_fraction(i);
        let s = p.read_noise_fraction();
        if s == 0.0 {
            return f;
        }
        let xi: f32 = aimsim_devices::normal::standard_normal(&mut self.rng);
        f + s * xi
    }

    /// Tile id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Unit cell.
    pub fn cell(&self) -> CellKind {
        self.cell
    }

    /// Effective normalized weights, row-major (`rows x cols`).
    pub fn weights(&self) -> &[f32] {
        &self.w
    }

    /// Device array `a` (see [`CellKind`] for the order: `G+`, `G-`, then C's `G+`, `G-`).
    pub fn array(&self, a: usize) -> &Population {
        &self.arrays[a]
    }

    /// The tile's random stream (write noise, read noise, stochastic pulse trains).
    pub fn rng(&mut self) -> &mut Pcg {
        &mut self.rng
    }

    /// Pulses applied so far, by polarity.
    pub fn tally(&self) -> PulseTally {
        self.tally
    }

    /// Potentiation and depression pulses received by device `i` of array `a`.
    pub fn device_pulses(&self, a: usize, i: usize) -> (u32, u32) {
        (self.up_count[a][i], self.down_count[a][i])
    }

    /// What training has changed in this tile (see [`TileState`]).
    pub fn export_state(&self) -> TileState {
        TileState {
            states: self.arrays.iter().map(|p| p.states().to_vec()).collect(),
            offsets: self
                .arrays
                .iter()
                .map(|p| p.write_offsets().to_vec())
                .collect(),
            g_row: self.g_row.clone(),
            g_col: self.g_col.clone(),
            up_count: self.up_count.clone(),
            down_count: self.down_count.clone(),
            tally: self.tally,
            rng: self.rng.clone(),
            lanes: self.lanes.words(),
        }
    }

    /// Restores a state made by [`Tile::export_state`] on a tile built from the same scenario; the
    /// tile then continues exactly as the exported one would have. Refuses a state of another shape
    /// (the tile is left unchanged unless a device array rejects its states midway).
    pub fn import_state(&mut self, s: &TileState) -> Result<(), StateError> {
        let n = self.rows * self.cols;
        let arrays = self.arrays.len();
        let shape_ok = s.states.len() == arrays
            && s.offsets.len() == arrays
            && s.up_count.len() == arrays
            && s.down_count.len() == arrays
            && s.up_count.iter().chain(&s.down_count).all(|c| c.len() == n)
            && s.g_row.len() == self.rows
            && s.g_col.len() == self.cols;
        if !shape_ok {
            return Err(StateError(format!(
                "tile {}: saved state does not match a {}x{} tile of {} device array(s)",
                self.id, self.rows, self.cols, arrays
            )));
        }
        let lanes = NormalLanes::from_words(&s.lanes).ok_or_else(|| {
            StateError(format!(
                "tile {}: saved write-noise lanes are missing or all zero",
                self.id
            ))
        })?;
        for (a, (states, offsets)) in s.states.iter().zip(&s.offsets).enumerate() {
            self.arrays[a]
                .set_states(states)
                .and_then(|()| self.arrays[a].set_write_offsets(offsets))
                .map_err(|e| StateError(format!("tile {} array {a}: {e}", self.id)))?;
        }
        for i in 0..n {
            self.w[i] = self.cell_weight(i);
        }
        self.g_row.copy_from_slice(&s.g_row);
        self.g_col.copy_from_slice(&s.g_col);
        self.up_count.clone_from(&s.up_count);
        self.down_count.clone_from(&s.down_count);
        self.tally = s.tally;
        self.rng = s.rng.clone();
        self.lanes = lanes;
        Ok(())
    }

    /// Nominal change of the normalized weight for one pulse of the cell's default routing
    /// ([`Tile::pulse_step`] of [`Routing::Cell`]).
    pub fn cell_step(&self) -> f32 {
        self.pulse_step(Routing::Cell)
    }

    /// The change of the normalized weight that pulse schemes size their pulses by, for one pulse sent
    /// through `routing`: the devices' weight granularity ([`Population::granularity`]) times the number
    /// of devices one pulse moves and their weight in the cell. A push-pull pulse on a pair moves two
    /// devices (`2 g`), a unidirectional pulse one (`g`); a single device against its reference moves the
    /// weight `w = 2u - 1` by `2 g`; the fast pair of a multi-array cell counts `gamma` times. So every
    /// rule asks for the same expected weight change `-lr d x` whatever the routing.
    pub fn pulse_step(&self, routing: Routing) -> f32 {
        let g = self.arrays[0].granularity();
        let one_device = match routing {
            Routing::Cell => self.cell == CellKind::OneSided,
            Routing::Bidirectional => false,
            Routing::Unidirectional => self.cell != CellKind::Single,
        };
        let devices = if one_device { 1.0 } else { 2.0 };
        match self.cell {
            CellKind::Single => 2.0 * g,
            CellKind::Pair | CellKind::OneSided => devices * g,
            CellKind::MultiArray { gamma } => devices * gamma * g,
        }
    }

    #[inline]
    fn energy_g(&self, a: usize, i: usize) -> f64 {
        let p = &self.arrays[a];
        if self.weight_units[a] {
            p.fraction(i) as f64
        } else {
            p.conductance(i) as f64
        }
    }

    /// The map `(off, inv)` of a population's native state to a single-device cell's weight,
    /// `w = 2 (state - off) inv - 1`: [`Population::fraction_map`] shifted by the cell's offset (the same
    /// bits when there is none).
    fn single_map(p: &Population, single_offset: f32) -> (f32, f32) {
        let (off, inv) = p.fraction_map();
        if single_offset == 0.0 {
            (off, inv)
        } else {
            (off - single_offset / (2.0 * inv), inv)
        }
    }

    /// The weight reads see: from each device's [`Population::read_fraction`] (its state, plus write
    /// noise, minus its reference).
    #[inline(always)]
    fn cell_weight(&self, i: usize) -> f32 {
        let f = |a: usize| self.arrays[a].read_fraction(i);
        match self.cell {
            // The same map as the write paths' (`single_map`), so cached weights agree to the bit.
            CellKind::Single => {
                let (off, inv) = Self::single_map(&self.arrays[0], self.single_offset);
                2.0 * ((self.arrays[0].read_state(i) - off) * inv) - 1.0
            }
            CellKind::Pair | CellKind::OneSided => f(0) - f(1),
            CellKind::MultiArray { gamma } => gamma * (f(0) - f(1)) + (f(2) - f(3)),
        }
    }

    fn recompute_all(&mut self) {
        self.g_row.iter_mut().for_each(|v| *v = 0.0);
        self.g_col.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..self.rows * self.cols {
            self.w[i] = self.cell_weight(i);
            let g: f64 = (0..self.arrays.len()).map(|a| self.energy_g(a, i)).sum();
            self.g_row[i / self.cols] += g;
            self.g_col[i % self.cols] += g;
        }
    }

    /// Every device's state in array `a` as a fraction of its nominal range (0 at the lower, 1 at the
    /// upper nominal bound), without write noise or reference: what drift and relaxation act on after
    /// deployment.
    pub fn state_fractions(&self, a: usize) -> Vec<f32> {
        let p = &self.arrays[a];
        (0..self.rows * self.cols).map(|i| p.fraction(i)).collect()
    }

    /// Makes reads see, for device `i` of array `a`, the state fraction `aged[a][i]` (for example the
    /// conductance at a time after programming) instead of the device's own state; the device's
    /// write-noise offset and reference still apply as in [`Population::read_fraction`]. Device
    /// states, pulse counters and the random stream are untouched; the read-energy sums follow the
    /// aged conductances. Lasts until [`Tile::restore_reads`] or the next write.
    pub fn set_read_fractions(&mut self, aged: &[Vec<f32>]) {
        assert_eq!(
            aged.len(),
            self.arrays.len(),
            "one fraction array per device array"
        );
        let n = self.rows * self.cols;
        for v in aged {
            assert_eq!(v.len(), n, "one fraction per device");
        }
        self.g_row.iter_mut().for_each(|v| *v = 0.0);
        self.g_col.iter_mut().for_each(|v| *v = 0.0);
        #[allow(clippy::needless_range_loop)] // `i` indexes every array of the cell
        for i in 0..n {
            let mut f = [0.0f32; 4];
            let mut g = 0.0f64;
            for (a, p) in self.arrays.iter().enumerate() {
                let now = p.fraction(i);
                f[a] = aged[a][i] + (p.read_fraction(i) - now);
                g += if self.weight_units[a] {
                    aged[a][i] as f64
                } else {
                    p.conductance(i) as f64
                        + p.conductance_scale() * ((aged[a][i] - now) / p.fraction_scale()) as f64
                };
            }
            self.w[i] = match self.cell {
                CellKind::Single => 2.0 * f[0] + self.single_offset - 1.0,
                CellKind::Pair | CellKind::OneSided => f[0] - f[1],
                CellKind::MultiArray { gamma } => gamma * (f[0] - f[1]) + (f[2] - f[3]),
            };
            self.g_row[i / self.cols] += g;
            self.g_col[i % self.cols] += g;
        }
    }

    /// Makes reads see the devices' own states again (after [`Tile::set_read_fractions`]).
    pub fn restore_reads(&mut self) {
        self.recompute_all();
    }

    /// Replaces the tile's random stream (read and write noise), e.g. to give each repeat of an
    /// inference its own stream so that repeats do not depend on the order they run in.
    pub fn set_rng(&mut self, rng: Pcg) {
        self.rng = rng;
    }

    /// Applies `n` pulses (`n > 0` potentiation) to device `i` of array `a`, keeping the weight cache,
    /// the energy sums and the counters current.
    #[inline]
    pub fn pulse_device(&mut self, a: usize, i: usize, n: i32) {
        self.pulse_raw(a, i, n);
        self.w[i] = self.cell_weight(i);
    }

    /// [`Tile::pulse_device`] without refreshing the weight cache (the caller does it once per cell).
    #[inline]
    fn pulse_raw(&mut self, a: usize, i: usize, n: i32) {
        if n == 0 {
            return;
        }
        let before = self.energy_g(a, i);
        self.arrays[a].pulse(i, n, &mut self.rng);
        let delta = self.energy_g(a, i) - before;
        self.g_row[i / self.cols] += delta;
        self.g_col[i % self.cols] += delta;
        if n > 0 {
            self.up_count[a][i] = self.up_count[a][i].saturating_add(n as u32);
            self.tally.up += n as u64;
        } else {
            self.down_count[a][i] = self.down_count[a][i].saturating_add(n.unsigned_abs());
            self.tally.down += n.unsigned_abs() as u64;
        }
    }

    /// Applies a weight step of `n` pulses (`n > 0` raises the weight) to cell `i` through the cell's
    /// default routing (see [`CellKind`]).
    #[inline]
    pub fn pulse_cell(&mut self, i: usize, n: i32) {
        self.pulse_routed(i, n, Routing::Cell);
    }

    /// Applies a weight step of `n` pulses to cell `i` with an explicit routing.
    #[inline]
    pub fn pulse_routed(&mut self, i: usize, n: i32, routing: Routing) {
        if n == 0 {
            return;
        }
        let unidirectional = match routing {
            Routing::Cell => self.cell == CellKind::OneSided,
            Routing::Bidirectional => false,
            Routing::Unidirectional => self.cell != CellKind::Single,
        };
        match (self.cell, unidirectional) {
            (CellKind::Single, _) => self.pulse_raw(0, i, n),
            (_, true) => {
                if n > 0 {
                    self.pulse_raw(0, i, n);
                } else {
                    self.pulse_raw(1, i, -n);
                }
            }
            (_, false) => {
                self.pulse_raw(0, i, n);
                self.pulse_raw(1, i, -n);
            }
        }
        self.w[i] = self.cell_weight(i);
    }

    /// Applies weight steps to cells of row `row`: cell `(row, cols[k])` gets `n[k]` pulses (`n > 0`
    /// raises the weight) through `routing`, exactly as [`Tile::pulse_routed`] would cell by cell, except
    /// that the devices of each array are written as one batch (array `G+` first, then `G-`, ...), which
    /// fixes the order of the write-noise draws. Keeps the weight cache, the energy sums and the counters
    /// current.
    ///
    /// # Panics
    /// If `cols` and `n` differ in length or an index is out of range.
    pub fn pulse_row(&mut self, row: usize, cols: &[u32], n: &[i32], routing: Routing) {
        assert_eq!(cols.len(), n.len(), "row batch shape");
        assert!(row < self.rows, "row out of range");
        let top = cols.iter().fold(0u32, |a, b| a.max(*b)) as usize;
        assert!(cols.is_empty() || top < self.cols, "column out of range");
        let unidirectional = match routing {
            Routing::Cell => self.cell == CellKind::OneSided,
            Routing::Bidirectional => false,
            Routing::Unidirectional => self.cell != CellKind::Single,
        };
        let base = row * self.cols;
        if self.cell == CellKind::Single && self.arrays[0].batched_noise() {
            let row_sum = self.pulse_row_single(base, cols, n);
            self.g_row[row] += row_sum;
            return;
        }
        let arrays = if self.cell == CellKind::Single { 1 } else { 2 };
        let mut b = std::mem::take(&mut self.batch);
        let mut row_sum = 0.0f64;
        for a in 0..arrays {
            // The pulses each device of this array receives.
            b.idx.resize(cols.len(), 0);
            b.n.resize(cols.len(), 0);
            let mut len = 0;
            for (c, k) in cols.iter().zip(n) {
                let m = match (a, unidirectional) {
                    (0, true) => (*k).max(0),
                    (_, true) => (-*k).max(0),
                    (0, false) => *k,
                    (_, false) => -*k,
                };
                b.idx[len] = base as u32 + *c;
                b.n[len] = m;
                len += usize::from(m != 0);
            }
            if len == 0 {
                continue;
            }
            let scale = self.energy_scale[a];
            // The weight follows from the state alone only when reads see the state itself.
            let single = self.cell == CellKind::Single && self.arrays[a].plain_reads();
            // Counters by polarity, picked without a branch (signs come in random order).
            let mut counters = [&mut self.down_count[a], &mut self.up_count[a]];
            let mut by_sign = [0u64; 2];
            let g_col = &mut self.g_col;
            // A single-device cell's weight follows from its one device: refreshed in the same pass.
            let (off, inv) = Self::single_map(&self.arrays[a], self.single_offset);
            let w = &mut self.w;
            let (idx, counts) = (&b.idx[..len], &b.n[..len]);
            self.arrays[a].pulse_many_with(
                idx,
                counts,
                &mut self.rng,
                &mut self.lanes,
                &mut b.noise,
                #[inline(always)]
                |k, state, d| {
                    // SAFETY: `k < len` (the batch position), and every column is below `self.cols`
                    // (checked on entry), so `i = base + column` indexes the tile's devices.
                    unsafe {
                        let i = *idx.get_unchecked(k) as usize;
                        let m = *counts.get_unchecked(k);
                        let g = d as f64 * scale;
                        row_sum += g;
                        *g_col.get_unchecked_mut(i - base) += g;
                        if single {
                            *w.get_unchecked_mut(i) = 2.0 * ((state - off) * inv) - 1.0;
                        }
                        let up = usize::from(m > 0);
                        let c = counters.get_unchecked_mut(up).get_unchecked_mut(i);
                        *c = c.saturating_add(m.unsigned_abs());
                        *by_sign.get_unchecked_mut(up) += m.unsigned_abs() as u64;
                    }
                },
            );
            let (down, up) = (by_sign[0], by_sign[1]);
            self.tally.up += up;
            self.tally.down += down;
        }
        self.batch = b;
        self.g_row[row] += row_sum;
        if self.cell != CellKind::Single || !self.arrays[0].plain_reads() {
            for c in cols {
                let i = base + *c as usize;
                self.w[i] = self.cell_weight(i);
            }
        }
    }

    /// [`Tile::pulse_row`] for single-device cells with batched write noise, fused into one loop: the
    /// row's draws in one fill, then per device its pulses, weight, energy sums and counters. Returns
    /// the change of the row's energy sum.
    fn pulse_row_single(&mut self, base: usize, cols: &[u32], n: &[i32]) -> f64 {
        let total: usize = n.iter().map(|m| m.unsigned_abs() as usize).sum();
        let noise = &mut self.batch.noise;
        noise.resize(total + 2, 0.0);
        self.lanes.fill(&mut noise[..total]);
        let width = self.cols;
        let map = Self::single_map(&self.arrays[0], self.single_offset);
        let mut view = self.arrays[0]
            .constant_step_view()
            .expect("batched-noise population");
        let mut book = RowBook::new(
            map,
            self.energy_scale[0],
            &mut self.w[base..base + width],
            [
                &mut self.down_count[0][base..base + width],
                &mut self.up_count[0][base..base + width],
            ],
            &mut self.g_col[..width],
        );
        let mut next = 0usize;
        for (c, m) in cols.iter().zip(n) {
            next += book.write(&mut view, base, *c as usize, *m, &noise[next..]);
        }
        self.tally.down += total as u64 - book.up;
        self.tally.up += book.up;
        book.row_sum
    }

    /// The buffers of a stochastic update's trains, to fill and pass to [`Tile::pulse_rows_trains`];
    /// [`Tile::put_trains`] keeps them for the next update, so their memory is reused.
    pub(crate) fn take_trains(&mut self) -> (Trains, Vec<RowTrain>) {
        std::mem::take(&mut self.trains)
    }

    /// Gives back what [`Tile::take_trains`] took.
    pub(crate) fn put_trains(&mut self, trains: (Trains, Vec<RowTrain>)) {
        self.trains = trains;
    }

    /// True when [`Tile::pulse_row_trains`] can run: single-device cells of the batched constant-step
    /// model, on a CPU with AVX2.
    pub(crate) fn trains_kernel(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self.cell == CellKind::Single
            && self.arrays[0].batched_noise()
            && std::arch::is_x86_feature_detected!("avx2")
        {
            return true;
        }
        false
    }

    /// Writes the rows `rows` (each with its pulse train and sign word, in row order) from the column
    /// trains `t` (see [`crate::kernels::rowwrite::write_row`]): bit-identical to finding each row's hits and
    /// passing them to [`Tile::pulse_row`] one row after the other.
    ///
    /// # Panics
    /// If [`Tile::trains_kernel`] does not hold, the trains do not match the tile's columns or a row is
    /// out of range.
    pub(crate) fn pulse_rows_trains(&mut self, t: &Trains, rows: &[RowTrain]) {
        assert!(self.trains_kernel(), "row kernel unavailable");
        let width = self.cols;
        assert!(
            t.bits.len() == width && t.neg.len() == width,
            "train columns"
        );
        assert!(
            t.chunks.iter().all(|k| (*k as usize + 1) * 8 <= width),
            "train chunks"
        );
        assert!(
            rows.iter().all(|r| (r.row as usize) < self.rows),
            "row out of range"
        );
        let map = Self::single_map(&self.arrays[0], self.single_offset);
        let mut view = self.arrays[0]
            .constant_step_view()
            .expect("batched-noise population");
        for r in rows {
            let base = r.row as usize * width;
            let mut book = RowBook::new(
                map,
                self.energy_scale[0],
                &mut self.w[base..base + width],
                [
                    &mut self.down_count[0][base..base + width],
                    &mut self.up_count[0][base..base + width],
                ],
                &mut self.g_col[..width],
            );
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 is present (`trains_kernel`), the trains span the row's `width` columns
            // and their chunks lie inside it, the row is in range (all checked above), and the
            // book's slices span the row.
            let total = unsafe {
                crate::kernels::rowwrite::write_row(
                    &mut view,
                    &mut book,
                    base,
                    width,
                    t,
                    r.bits,
                    r.neg,
                    &mut self.lanes,
                    &mut self.row_scratch,
                )
            };
            #[cfg(not(target_arch = "x86_64"))]
            let total: u64 = unreachable!("row kernel on a CPU without AVX2");
            if total != 0 {
                self.tally.down += total - book.up;
                self.tally.up += book.up;
                self.g_row[r.row as usize] += book.row_sum;
            }
        }
    }

    /// Erases device `i` of array `a` and writes it to the fraction `goal` of its range with closed-loop
    /// potentiation pulses (counted like any other pulses). Returns the pulses used.
    pub fn write_fraction(&mut self, a: usize, i: usize, goal: f32) -> u64 {
        self.reset_device(a, i);
        let before = self.energy_g(a, i);
        let mut counted = 0u64;
        let used = climb(&mut self.arrays[a], i, goal, &mut self.rng, |_, n| {
            counted += n as u64;
        });
        self.up_count[a][i] =
            self.up_count[a][i].saturating_add(counted.min(u32::MAX as u64) as u32);
        self.tally.up += counted;
        let delta = self.energy_g(a, i) - before;
        self.g_row[i / self.cols] += delta;
        self.g_col[i % self.cols] += delta;
        self.w[i] = self.cell_weight(i);
        used
    }

    /// Resets device `i` of array `a` to its lower bound (an erase; counted as neither polarity).
    pub fn reset_device(&mut self, a: usize, i: usize) {
        let before = self.energy_g(a, i);
        self.arrays[a].reset_to_min(i);
        let delta = self.energy_g(a, i) - before;
        self.g_row[i / self.cols] += delta;
        self.g_col[i % self.cols] += delta;
        self.w[i] = self.cell_weight(i);
    }

    /// Programs normalized target weights (row-major, clipped to the cell's range) with closed-loop
    /// potentiation pulses from the erased state: every device is reset, then pulsed until it reaches its
    /// target fraction or stops moving. Push-pull pairs are centred on mid-range (`u+- = 1/2 +- w/2`),
    /// one-sided pairs put the weight on one device and erase the other. Returns the pulses used. Device-to-device
    /// variation, levels and write noise all shape the programmed weights, as on a chip.
    pub fn program(&mut self, target: &[f32]) -> u64 {
        assert_eq!(target.len(), self.rows * self.cols, "target shape");
        let mut pulses = 0;
        for (i, t) in target.iter().enumerate() {
            // Push-pull pairs sit around mid-range so both devices can move both ways; potentiation-only
            // pairs start with one device erased, leaving both room to climb; multi-array targets go
            // onto the slow pair C, the fast pair A balanced at mid-range.
            let goals = self.cell_goals(*t);
            for (a, goal) in goals.iter().enumerate().take(self.arrays.len()) {
                self.arrays[a].reset_to_min(i);
                pulses += self.program_device(a, i, *goal);
            }
        }
        self.recompute_all();
        pulses
    }

    /// The fraction each device of a cell holds for the normalized weight `t` (clipped to `[-1, 1]`):
    /// pairs around mid-range, one-sided pairs on one device, multi-array cells on C with A balanced.
    fn cell_goals(&self, t: f32) -> [f32; 4] {
        let t = (t - self.single_offset).clamp(-1.0, 1.0);
        match self.cell {
            CellKind::Single => [(t + 1.0) / 2.0, 0.0, 0.0, 0.0],
            CellKind::Pair => [0.5 + t / 2.0, 0.5 - t / 2.0, 0.0, 0.0],
            CellKind::OneSided => [t.max(0.0), (-t).max(0.0), 0.0, 0.0],
            CellKind::MultiArray { .. } => [0.5, 0.5, 0.5 + t / 2.0, 0.5 - t / 2.0],
        }
    }

    /// Programs normalized target weights (row-major) with closed-loop write-verify, device by device
    /// from its present state: read the device (with its read noise), compare with its share of the
    /// cell's weight (as in [`Tile::program`]), and if it is off by more than `tolerance` (a fraction
    /// of the device's nominal range) apply a train of pulses toward the goal (potentiation up,
    /// depression down; about half the remaining distance by the device's nominal step, at least one
    /// pulse), then read again, until the read is within tolerance or the device has used `max_pulses`
    /// pulses. What is left over (the programming error) comes from the device model itself: its c2c
    /// noise, nonlinearity, levels, bounds, stuck devices and the read noise of the verify reads.
    pub fn write_verify(
        &mut self,
        target: &[f32],
        tolerance: f32,
        max_pulses: u32,
    ) -> VerifyReport {
        assert_eq!(target.len(), self.rows * self.cols, "target shape");
        let mut report = VerifyReport::default();
        for (i, t) in target.iter().enumerate() {
            let goals = self.cell_goals(*t);
            for (a, goal) in goals.iter().enumerate().take(self.arrays.len()) {
                let step = self.arrays[a].nominal_step().max(1e-9);
                let mut used = 0u32;
                let mut converged = false;
                loop {
                    report.reads += 1;
                    let err = goal - self.read_fraction(a, i);
                    if err.abs() <= tolerance {
                        converged = true;
                        break;
                    }
                    if used >= max_pulses {
                        break;
                    }
                    let want = ((0.5 * err.abs() / step).floor() as u32).max(1);
                    let n = want.min(max_pulses - used);
                    used += n;
                    if err > 0.0 {
                        report.pulses_up += n as u64;
                        self.pulse_raw(a, i, n as i32);
                    } else {
                        report.pulses_down += n as u64;
                        self.pulse_raw(a, i, -(n as i32));
                    }
                    report.slots += 1;
                }
                report.devices += 1;
                if !converged {
                    report.unconverged += 1;
                }
            }
            self.w[i] = self.cell_weight(i);
        }
        report
    }

    /// Sets normalized target weights (row-major) without pulses: every device takes its share of the
    /// cell's weight as in [`Tile::program`], exactly, clipped to its own bounds (d2d variation and stuck
    /// devices still show; levels, nonlinearity and write noise do not). For measuring the periphery
    /// alone (`aimsim mvm --program exact`).
    pub fn set_weights_exact(&mut self, target: &[f32]) {
        assert_eq!(target.len(), self.rows * self.cols, "target shape");
        for (i, t) in target.iter().enumerate() {
            let goals = self.cell_goals(*t);
            for (a, goal) in goals.iter().enumerate().take(self.arrays.len()) {
                self.arrays[a].set_fraction(i, *goal);
            }
        }
        self.recompute_all();
    }

    fn program_device(&mut self, a: usize, i: usize, goal: f32) -> u64 {
        climb(&mut self.arrays[a], i, goal, &mut self.rng, |_, _| {})
    }

    /// Forward read `y = W x` (`x` of length `cols`, `y` of length `rows`) through the forward periphery.
    pub fn forward(&mut self, x: &[f32], y: &mut [f32]) -> ReadReport {
        let (rows, cols) = (self.rows, self.cols);
        let w = &self.w;
        let g_col = &self.g_col;
        let mut g_x2 = 0.0;
        let mvm = convert(
            &self.forward_io,
            self.read_sigma,
            x,
            y,
            &mut self.scratch[..cols],
            &mut self.rng,
            |xq, out| {
                gemv(w, rows, cols, xq, out);
                g_x2 += xq
                    .iter()
                    .zip(g_col)
                    .map(|(v, g)| (v * v) as f64 * g)
                    .sum::<f64>();
            },
        );
        ReadReport {
            mvm,
            inputs: cols,
            outputs: rows,
            g_x2,
        }
    }

    /// Forward reads of `batch` inputs (`xs`, `cols` values each, into `ys`, `rows` each): the same
    /// outputs, reports and random draws as [`Tile::forward`] on each input in order, with the first
    /// pass of every input made together so that the weights are read from memory once per batch.
    pub fn forward_batch(&mut self, xs: &[f32], ys: &mut [f32], batch: usize) -> Vec<ReadReport> {
        let (rows, cols) = (self.rows, self.cols);
        let w = &self.w;
        let g_col = &self.g_col;
        let mut xq = std::mem::take(&mut self.batch_scratch);
        // Energy of each pass, in pass order: the batched first passes, then any further ones.
        let g_x2 = std::cell::RefCell::new(Vec::new());
        let energy = |xq: &[f32]| {
            xq.iter()
                .zip(g_col)
                .map(|(v, g)| (v * v) as f64 * g)
                .sum::<f64>()
        };
        let mvm = convert_batch(
            &self.forward_io,
            self.read_sigma,
            xs,
            ys,
            (cols, rows, batch),
            &mut xq,
            &mut self.rng,
            |xqs, out| {
                gemv_batch(w, rows, cols, xqs, out, batch);
                let mut e = g_x2.borrow_mut();
                e.extend(xqs.chunks_exact(cols).map(|q| (energy(q), 1u32)));
            },
            |q, out| {
                gemv(w, rows, cols, q, out);
                g_x2.borrow_mut().push((energy(q), 0));
            },
        );
        self.batch_scratch = xq;
        // The further passes ran input by input after the first ones: give each input its own.
        let passes = g_x2.into_inner();
        let (first, more): (Vec<_>, Vec<_>) = passes.into_iter().partition(|(_, f)| *f == 1);
        let mut more = more.into_iter();
        mvm.into_iter()
            .zip(first)
            .map(|(m, (e0, _))| {
                let mut e = if m.passes == 0 { 0.0 } else { e0 };
                for _ in 1..m.passes {
                    e += more.next().expect("a further pass").0;
                }
                ReadReport {
                    mvm: m,
                    inputs: cols,
                    outputs: rows,
                    g_x2: e,
                }
            })
            .collect()
    }

    /// Backward read `z = W^T d` (`d` of length `rows`, `z` of length `cols`) through the backward
    /// periphery, on the same conductances.
    pub fn backward(&mut self, d: &[f32], z: &mut [f32]) -> ReadReport {
        let (rows, cols) = (self.rows, self.cols);
        let w = &self.w;
        let g_row = &self.g_row;
        let mut g_x2 = 0.0;
        let mvm = convert(
            &self.backward_io,
            self.read_sigma,
            d,
            z,
            &mut self.scratch[..rows],
            &mut self.rng,
            |dq, out| {
                gemv_t(w, rows, cols, dq, out);
                g_x2 += dq
                    .iter()
                    .zip(g_row)
                    .map(|(v, g)| (v * v) as f64 * g)
                    .sum::<f64>();
            },
        );
        ReadReport {
            mvm,
            inputs: rows,
            outputs: cols,
            g_x2,
        }
    }
}

/// Closed-loop write with potentiation pulses only: pulses device `i` until its fraction is within half a
/// step of `goal` (or it stops moving). Each write lumps at most half the remaining distance, judged by
/// the device's own last observed step, so nonlinear curves are not overshot. `each(i, n)` sees every
/// write. Returns the pulses used.
fn climb<R: rand::Rng + ?Sized>(
    p: &mut Population,
    i: usize,
    goal: f32,
    rng: &mut R,
    mut each: impl FnMut(usize, i32),
) -> u64 {
    let nominal = p.nominal_step();
    let limit = (4.0 / nominal).ceil() as u64 + 64;
    let (mut used, mut stalled) = (0u64, 0);
    let mut observed = 0.0f32;
    loop {
        let f = p.fraction(i);
        let tol = 0.5
            * if observed > 0.0 {
                observed.min(nominal.max(observed))
            } else {
                nominal
            };
        if f >= goal - tol || used >= limit || stalled >= 64 {
            break;
        }
        let n = if observed > 0.0 {
            ((0.5 * (goal - f) / observed).floor()).clamp(1.0, 4096.0) as i32
        } else {
            1
        };
        p.pulse(i, n, rng);
        each(i, n);
        used += n as u64;
        let moved = p.fraction(i) - f;
        if moved > 0.0 {
            observed = moved / n as f32;
            stalled = 0;
        } else {
            stalled += 1;
        }
    }
    used
}

#[cfg(test)]
#[path = "tile_tests.rs"]
mod tests;
