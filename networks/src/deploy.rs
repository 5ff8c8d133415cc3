//! After training: a network deployed on the chip, and what it computes a time `t` after programming.
//!
//! A [`Deployment`] starts from a trained network: float weights (trained in software, or loaded) are
//! mapped to conductances and programmed onto tiles; a network trained on the chip keeps its devices as
//! they are. Either way every device then has a programmed conductance `G_prog` (uS, its state fraction
//! times `g_max`), optionally blurred by statistical programming noise, and draws its drift exponent,
//! relaxation rate and failure time once ([`aimsim_devices::aging`]). At each time the devices read
//! `G(t)` with fresh 1/f read noise, through the tiles' own periphery (DAC, ADC, read noise, bound
//! management), and the outputs are rescaled digitally: by the weight mapping, and by the drift
//! compensation chosen ([`Compensation`]).
//!
//! **Mapping** of float weights ([`Mapping`]): each layer's (or each output's) largest `|w|` becomes a
//! normalized weight of 1, which a cell maps to its devices as [`Tile::program`] does (a one-sided
//! pair puts `|w|` on one device and leaves the other at 0, the PCM mapping of physics.md section 9; a
//! push-pull pair centres both on mid-range); the digital output factor `max|w| / w_scale` undoes it.
//!
//! **Compensation** (as aihwkit's): at deployment each layer reads the unit vectors `e_k` of its
//! inputs and keeps the mean `|y|` over all outputs and inputs (global) and per output (column); at
//! time `t` it reads them again and scales its outputs by the ratio reference / now (readouts clamped
//! at 1e-4).
//!
//! **Randomness**: programming noise and per-device draws come from `(seed, Deploy, layer/tile/array)`,
//! the read noise of the conductances at time index `ti` of repeat `r` from `(seed, Aging, ...)`, and the
//! periphery of every read from `(seed, InferRead, ...)` with the compensation in the index, so every
//! accuracy is a function of (seed, time index, repeat, compensation) alone: bit-identical whatever
//! runs in parallel or in which order.
//!
//! [`Tile::program`]: aimsim_sim::tile::Tile::program

use aimsim_devices::aging::{Aging, AgingDraw, Programming};
use aimsim_devices::{SpecError, StateError};
use aimsim_sim::ledger::Ledger;
use aimsim_sim::par::Par;
use aimsim_sim::rng::{Purpose, stream};
use aimsim_sim::tile::VerifyReport;

use crate::data::Dataset;
use crate::mlp::{Hardware, Mlp, MlpConfig, MlpState};

/// How float weights are written onto the tiles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Program {
    /// Every device set to its share exactly, without pulses (d2d bounds and stuck devices still
    /// show); with [`DeployConfig::noise`] this is the statistical programming model.
    Exact,
    /// Closed-loop write-verify through the device model ([`aimsim_sim::tile::Tile::write_verify`]):
    /// read, compare, pulse, until within `tolerance` (a fraction of a device's range) or `max_pulses`
    /// per device.
    WriteVerify {
        /// Tolerance of a device's read, as a fraction of its nominal range.
        tolerance: f32,
        /// Pulse budget per device.
        max_pulses: u32,
    },
}

/// How float weights become normalized weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// One scale per layer: its largest `|w|` is a normalized weight of 1.
    Layer,
    /// One scale per output (a crossbar column): each output's largest `|w|` is 1.
    Column,
}

/// Digital drift compensation of a layer's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compensation {
    /// None.
    None,
    /// One factor per layer: mean `|y|` of the unit-vector reads at deployment over now.
    Global,
    /// One factor per output.
    Column,
}

impl Compensation {
    /// The name in scenarios and outputs.
    pub fn name(self) -> &'static str {
        match self {
            Compensation::None => "none",
            Compensation::Global => "global",
            Compensation::Column => "column",
        }
    }
}

/// How to deploy a network and age it.
#[derive(Debug, Clone)]
pub struct DeployConfig {
    /// How float weights are written (not used for a network trained on the chip).
    pub program: Program,
    /// Statistical programming noise on the programmed conductances (also on a network trained on
    /// the chip, when not [`Programming::Exact`]).
    pub noise: Programming,
    /// Scaling of float weights.
    pub mapping: Mapping,
    /// Conductance (uS) of a device at the top of its nominal range, for the models in uS.
    pub g_max_us: f64,
    /// Drift or relaxation, 1/f read noise, failures.
    pub aging: Aging,
}

/// One device array of one tile after programming.
#[derive(Debug, Clone)]
struct ArrayDeploy {
    /// Programmed conductances, uS.
    g_prog: Vec<f64>,
    /// Per-device draws of the aging models.
    draw: AgingDraw,
}

/// One layer after programming.
#[derive(Debug, Clone)]
struct LayerDeploy {
    /// Digital factor of the weight mapping: one, or one per output.
    map: Vec<f32>,
    /// Per tile, per device array.
    tiles: Vec<Vec<ArrayDeploy>>,
    /// Mean `|y|` of the unit-vector reads at deployment: over everything, and per output.
    ref_global: f32,
    ref_column: Vec<f32>,
}

/// A layer's float weights to deploy.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatLayer {
    /// Row-major `out x in` (with the bias as a last column when the network keeps its bias on the
    /// tiles).
    pub weights: Vec<f32>,
    /// The digital bias, one per output (ignored when the bias is on the tiles).
    pub bias: Vec<f32>,
}

impl FloatLayer {
    /// The layers of a float network, as [`Deployment::from_float`] takes them (the bias column
    /// included when the network keeps its bias on the tiles).
    pub fn from_mlp(net: &Mlp) -> Vec<FloatLayer> {
        net.layers()
            .iter()
            .map(|l| FloatLayer {
                weights: l.weights.weights(),
                bias: l.bias().to_vec(),
            })
            .collect()
    }
}

/// One device array's conductances after deployment (see [`Deployment::conductances`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayConductances {
    /// Layer, from 0.
    pub layer: usize,
    /// Tile of the layer, in grid order.
    pub tile: usize,
    /// Device array of the cell.
    pub array: usize,
    /// Programmed conductances, uS, row-major over the tile.
    pub g_prog: Vec<f64>,
    /// Conductances a read sees at the time asked for, uS.
    pub g_t: Vec<f64>,
}

/// What programming a network cost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProgramReport {
    /// Write-verify counts (zero for exact programming and for a network trained on the chip).
    pub verify: VerifyReport,
    /// RMS of programmed minus target weight, in normalized weight units (the weights reads see right
    /// after programming, before statistical noise), over all weights; 0 for a network trained on the
    /// chip.
    pub rms_error: f64,
}

/// A network on the chip after programming (see the module docs).
#[derive(Debug)]
pub struct Deployment {
    cfg: MlpConfig,
    hw: Hardware,
    state: MlpState,
    /// The digital biases per layer (the programmed state holds them, kept for clarity of rebuilding).
    layers: Vec<LayerDeploy>,
    deploy: DeployConfig,
    seed: u64,
    report: ProgramReport,
}

/// Stream index of `(layer, tile, array)`.
fn device_index(l: usize, k: usize, a: usize) -> u64 {
    ((l as u64) << 40) | ((k as u64) << 8) | a as u64
}

/// Stream index of a read at time index `ti`, repeat `r`, compensation `c` on `(layer, tile[, array])`.
fn read_index(ti: usize, r: u32, c: usize, l: usize, k: usize, a: usize) -> u64 {
    debug_assert!(ti < 256 && r < 65536 && c < 4 && l < 256 && k < (1 << 20) && a < 4);
    ((r as u64) << 48)
        | ((ti as u64) << 40)
        | ((c as u64) << 38)
        | ((l as u64) << 30)
        | ((k as u64) << 4)
        | a as u64
}

impl Deployment {
    /// Deploys a network trained on the chip as it is: its devices' states are the programmed
    /// conductances (no re-programming); digital biases and output factors are kept.
    pub fn from_trained(
        net: &Mlp,
        cfg: &MlpConfig,
        hw: &Hardware,
        deploy: &DeployConfig,
    ) -> Result<Self, SpecError> {
        let mut net = rebuild(cfg, hw, &net.export_state()).map_err(state_to_spec)?;
        let maps = vec![vec![1.0]; net.layers().len()];
        Deployment::finish(&mut net, cfg, hw, deploy, maps, ProgramReport::default())
    }

    /// Programs float weights onto new tiles of `hw`, mapped by [`DeployConfig::mapping`] and written
    /// by [`DeployConfig::program`].
    pub fn from_float(
        layers: &[FloatLayer],
        cfg: &MlpConfig,
        hw: &Hardware,
        deploy: &DeployConfig,
    ) -> Result<Self, SpecError> {
        let mut build = cfg.clone();
        build.exact_init = true;
        let mut rng = stream(hw.seed, Purpose::Init, 0);
        let mut net = Mlp::new(&build, Some(hw), &mut rng)?;
        assert_eq!(
            layers.len(),
            net.layers().len(),
            "one weight matrix per layer"
        );
        let mut maps = Vec::new();
        let mut report = ProgramReport::default();
        let (mut sq, mut count) = (0.0f64, 0usize);
        for (
            layer,
            FloatLayer {
                weights: w,
                bias: b,
            },
        ) in net.layers_mut().iter_mut().zip(layers)
        {
            let out = layer.out_dim();
            assert_eq!(w.len() % out, 0, "weights of a layer");
            let cols = w.len() / out;
            let scale: Vec<f32> = match deploy.mapping {
                Mapping::Layer => vec![w.iter().fold(0.0f32, |m, v| m.max(v.abs()))],
                Mapping::Column => w
                    .chunks(cols)
                    .map(|row| row.iter().fold(0.0f32, |m, v| m.max(v.abs())))
                    .collect(),
            };
            let scale: Vec<f32> = scale
                .into_iter()
                .map(|s| if s > 0.0 { s } else { 1.0 })
                .collect();
            let matrix = layer
                .weights
                .analog_mut()
                .expect("a deployment builds analog layers");
            let w_scale = matrix.w_scale();
            let target: Vec<f32> = w
                .iter()
                .enumerate()
                .map(|(i, v)| v / scale[if scale.len() == 1 { 0 } else { i / cols }] * w_scale)
                .collect();
            match deploy.program {
                Program::Exact => matrix.set_weights_exact(&target),
                Program::WriteVerify {
                    tolerance,
                    max_pulses,
                } => report
                    .verify
                    .add(&matrix.write_verify(&target, tolerance, max_pulses)),
            }
            for (got, want) in matrix.weights().iter().zip(&target) {
                sq += (((got - want) / w_scale) as f64).powi(2);
                count += 1;
            }
            layer.set_bias(b);
            maps.push(scale.iter().map(|s| s / w_scale).collect());
        }
        report.rms_error = (sq / count.max(1) as f64).sqrt();
        Deployment::finish(&mut net, cfg, hw, deploy, maps, report)
    }

    /// Programming noise, per-device draws and the compensation references of a programmed network.
    fn finish(
        net: &mut Mlp,
        cfg: &MlpConfig,
        hw: &Hardware,
        deploy: &DeployConfig,
        maps: Vec<Vec<f32>>,
        report: ProgramReport,
    ) -> Result<Self, SpecError> {
        let g_max = deploy.g_max_us;
        let mut layers = Vec::new();
        for (l, (layer, map)) in net.layers_mut().iter_mut().zip(maps).enumerate() {
            let matrix = layer
                .weights
                .analog_mut()
                .ok_or_else(|| SpecError::new("train.software", "deploying needs analog layers"))?;
            let mut tiles = Vec::new();
            for (k, tile) in matrix.tiles_mut().iter_mut().enumerate() {
                let mut arrays = Vec::new();
                for a in 0..tile.cell().arrays() {
                    let target: Vec<f64> = tile
                        .state_fractions(a)
                        .iter()
                        .map(|f| *f as f64 * g_max)
                        .collect();
                    let mut rng = stream(hw.seed, Purpose::Deploy, device_index(l, k, a));
                    let mut g_prog = vec![0.0; target.len()];
                    deploy
                        .noise
                        .program(&target, g_max, None, &mut rng, &mut g_prog);
                    let draw = deploy.aging.draw(&g_prog, g_max, &mut rng);
                    arrays.push(ArrayDeploy { g_prog, draw });
                }
                tiles.push(arrays);
            }
            layers.push(LayerDeploy {
                map,
                tiles,
                ref_global: 0.0,
                ref_column: Vec::new(),
            });
        }
        let mut d = Deployment {
            cfg: cfg.clone(),
            hw: hw.clone(),
            state: net.export_state(),
            layers,
            deploy: deploy.clone(),
            seed: hw.seed,
            report,
        };
        // References: the programmed conductances, no drift and no 1/f noise, read through the
        // periphery with streams of their own (time index 255).
        for l in 0..d.layers.len() {
            let fr = d.layers[l]
                .tiles
                .iter()
                .map(|arrays| {
                    arrays
                        .iter()
                        .map(|ad| ad.g_prog.iter().map(|g| (g / g_max) as f32).collect())
                        .collect()
                })
                .collect::<Vec<Vec<Vec<f32>>>>();
            let layer = &mut net.layers_mut()[l];
            let matrix = layer.weights.analog_mut().expect("analog");
            for (k, (tile, f)) in matrix.tiles_mut().iter_mut().zip(&fr).enumerate() {
                tile.set_read_fractions(f);
                tile.set_rng(stream(
                    d.seed,
                    Purpose::InferRead,
                    read_index(255, 0, 3, l, k, 0),
                ));
            }
            let (g, c) = unit_readout(net, l);
            d.layers[l].ref_global = g;
            d.layers[l].ref_column = c;
        }
        Ok(d)
    }

    /// What programming cost and how far it landed from the targets.
    pub fn report(&self) -> ProgramReport {
        self.report
    }

    /// A working copy of the deployed network, for [`Deployment::accuracy`]; one per thread.
    pub fn network(&self) -> Result<Mlp, StateError> {
        rebuild(&self.cfg, &self.hw, &self.state)
    }

    /// Every device array's programmed conductances (uS) and what reads see at time `t` (time index
    /// `ti`, repeat `repeat`), layer by layer, tile by tile. For histograms and traces.
    pub fn conductances(&self, t: f64, ti: usize, repeat: u32) -> Vec<ArrayConductances> {
        let mut out = Vec::new();
        for (l, ld) in self.layers.iter().enumerate() {
            for (k, arrays) in ld.tiles.iter().enumerate() {
                for (a, ad) in arrays.iter().enumerate() {
                    out.push(ArrayConductances {
                        layer: l,
                        tile: k,
                        array: a,
                        g_prog: ad.g_prog.clone(),
                        g_t: self.aged(ad, t, ti, repeat, l, k, a),
                    });
                }
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn aged(
        &self,
        ad: &ArrayDeploy,
        t: f64,
        ti: usize,
        repeat: u32,
        l: usize,
        k: usize,
        a: usize,
    ) -> Vec<f64> {
        let mut rng = stream(
            self.seed,
            Purpose::Aging,
            read_index(ti, repeat, 0, l, k, a),
        );
        let mut out = vec![0.0; ad.g_prog.len()];
        self.deploy.aging.at(
            &ad.draw,
            &ad.g_prog,
            t,
            self.deploy.g_max_us,
            &mut rng,
            &mut out,
        );
        out
    }

    /// Test accuracies (percent) at time `t` (s after programming; time index `ti`, repeat `repeat`)
    /// for each of `comps`, on `net` (from [`Deployment::network`]): the conductances age once, then
    /// each compensation reads the test set with its own periphery streams.
    pub fn accuracy(
        &self,
        net: &mut Mlp,
        data: &Dataset,
        t: f64,
        ti: usize,
        repeat: u32,
        comps: &[Compensation],
    ) -> Vec<f64> {
        let g_max = self.deploy.g_max_us;
        for (l, ld) in self.layers.iter().enumerate() {
            let matrix = net.layers_mut()[l].weights.analog_mut().expect("analog");
            for (k, (tile, arrays)) in matrix.tiles_mut().iter_mut().zip(&ld.tiles).enumerate() {
                let fr: Vec<Vec<f32>> = arrays
                    .iter()
                    .enumerate()
                    .map(|(a, ad)| {
                        self.aged(ad, t, ti, repeat, l, k, a)
                            .iter()
                            .map(|g| (g / g_max) as f32)
                            .collect()
                    })
                    .collect();
                tile.set_read_fractions(&fr);
            }
        }
        let mut acc = Vec::new();
        for comp in comps {
            let c = *comp as usize;
            self.reseed(net, ti, repeat, c);
            for l in 0..self.layers.len() {
                let ld = &self.layers[l];
                let scale: Vec<f32> = match comp {
                    Compensation::None => ld.map.clone(),
                    Compensation::Global => {
                        net.layers_mut()[l].set_out_scale(&[]);
                        let (g, _) = unit_readout(net, l);
                        let alpha = ld.ref_global / g;
                        ld.map.iter().map(|m| m * alpha).collect()
                    }
                    Compensation::Column => {
                        net.layers_mut()[l].set_out_scale(&[]);
                        let (_, col) = unit_readout(net, l);
                        let out = col.len();
                        (0..out)
                            .map(|j| {
                                let m = ld.map[if ld.map.len() == 1 { 0 } else { j }];
                                m * ld.ref_column[j] / col[j]
                            })
                            .collect()
                    }
                };
                net.layers_mut()[l].set_out_scale(&scale);
            }
            acc.push(accuracy_batched(net, data));
        }
        acc
    }

    /// Gives every tile of `net` the periphery stream of (time index, repeat, compensation).
    fn reseed(&self, net: &mut Mlp, ti: usize, repeat: u32, c: usize) {
        for (l, layer) in net.layers_mut().iter_mut().enumerate() {
            let matrix = layer.weights.analog_mut().expect("analog");
            for (k, tile) in matrix.tiles_mut().iter_mut().enumerate() {
                tile.set_rng(stream(
                    self.seed,
                    Purpose::InferRead,
                    read_index(ti, repeat, c, l, k, 0),
                ));
            }
        }
    }
}

/// Inputs per batch of the evaluations (weights read once per batch).
const EVAL_BATCH: usize = 64;

/// Test accuracy (percent) of `net` on `data`, read in batches ([`Mlp::predict_batch`]: the
/// predictions of reading the samples one by one).
fn accuracy_batched(net: &mut Mlp, data: &Dataset) -> f64 {
    let n = data.test_len();
    if n == 0 {
        return 0.0;
    }
    let mut ledger = Ledger::default();
    let mut correct = 0usize;
    let mut start = 0;
    while start < n {
        let b = EVAL_BATCH.min(n - start);
        let xs = &data.test_x[start * data.inputs..(start + b) * data.inputs];
        let pred = net.predict_batch(xs, b, &mut ledger);
        correct += pred
            .iter()
            .zip(&data.test_y[start..start + b])
            .filter(|(p, y)| **p == **y as usize)
            .count();
        start += b;
    }
    100.0 * correct as f64 / n as f64
}

/// Reads layer `l`'s weights (through the periphery, no digital factors) with every unit vector of its
/// inputs: the mean `|y|` over all reads and outputs, and per output (each clamped at 1e-4).
fn unit_readout(net: &mut Mlp, l: usize) -> (f32, Vec<f32>) {
    let layer = &mut net.layers_mut()[l];
    let matrix = layer.weights.analog_mut().expect("analog");
    let (out, inp) = (matrix.out_dim(), matrix.in_dim());
    let mut x = vec![0.0f32; inp];
    let mut y = vec![0.0f32; out];
    let mut col = vec![0.0f64; out];
    let mut ledger = Ledger::default();
    for k in 0..inp {
        x[k] = 1.0;
        matrix.forward(&x, &mut y, &mut ledger, Par::Seq);
        x[k] = 0.0;
        for (c, v) in col.iter_mut().zip(&y) {
            *c += v.abs() as f64;
        }
    }
    let total: f64 = col.iter().sum::<f64>() / (out * inp) as f64;
    let col = col
        .iter()
        .map(|c| ((c / inp as f64) as f32).max(1e-4))
        .collect();
    ((total as f32).max(1e-4), col)
}

/// A network of `cfg` on `hw` holding `state`.
fn rebuild(cfg: &MlpConfig, hw: &Hardware, state: &MlpState) -> Result<Mlp, StateError> {
    let mut build = cfg.clone();
    build.exact_init = true;
    let mut rng = stream(hw.seed, Purpose::Init, 0);
    let mut net = Mlp::new(&build, Some(hw), &mut rng).map_err(|e| StateError(e.to_string()))?;
    net.import_state(state)?;
    Ok(net)
}

fn state_to_spec(e: StateError) -> SpecError {
    SpecError::new("train", e.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlp::{Activation, BiasMode, Loss};
    use aimsim_devices::aging::{Drift, ReadNoise1f, Retention};
    use aimsim_devices::{DeviceSpec, Model, StepKind, StepParams};
    use aimsim_sim::io::IoConfig;
    use aimsim_sim::ledger::CostModel;
    use aimsim_sim::tile::{CellKind, TileConfig};
    use aimsim_sim::update::ControllerSpec;
    use rand::{RngExt, SeedableRng};

    fn setup(cell: CellKind) -> (MlpConfig, Hardware, Vec<FloatLayer>, Dataset) {
        let hw = Hardware {
            device: DeviceSpec::new(Model::Step(StepParams::new(StepKind::Constant, 1e-5))),
            tile: TileConfig {
                rows: 8,
                cols: 8,
                cell,
                forward: IoConfig::ideal(),
                backward: IoConfig::ideal(),
                zero_reference: false,
            },
            controller: ControllerSpec::default(),
            w_scale: 1.0,
            cost: CostModel::default(),
            seed: 3,
        };
        let cfg = MlpConfig {
            sizes: vec![10, 12, 4],
            activation: Activation::Relu,
            loss: Loss::CrossEntropy,
            bias: BiasMode::Digital,
            init_scale: 1.0,
            exact_init: true,
            conv: None,
        };
        let mut r = rand_pcg::Pcg64::seed_from_u64(1);
        let mut float = Mlp::new(&cfg, None, &mut r).unwrap();
        let mut layers = Vec::new();
        for l in float.layers_mut() {
            let b: Vec<f32> = (0..l.out_dim())
                .map(|_| r.random_range(-0.2..0.2))
                .collect();
            l.set_bias(&b);
            layers.push(FloatLayer {
                weights: l.weights.weights(),
                bias: b,
            });
        }
        // Labels are the float network's own predictions: the deployed network scores 100 % when it
        // computes what the float one does.
        let n = 200;
        let x: Vec<f32> = (0..n * 10).map(|_| r.random_range(0.0..1.0)).collect();
        let mut ledger = Ledger::default();
        let y: Vec<u8> = x
            .chunks(10)
            .map(|s| {
                float.forward(s, &mut ledger, Par::Seq);
                float.predicted() as u8
            })
            .collect();
        let data = Dataset {
            name: "own".into(),
            inputs: 10,
            classes: 4,
            train_x: Vec::new(),
            train_y: Vec::new(),
            test_x: x,
            test_y: y,
        };
        (cfg, hw, layers, data)
    }

    fn deploy_cfg(aging: Aging, mapping: Mapping) -> DeployConfig {
        DeployConfig {
            program: Program::Exact,
            noise: Programming::Exact,
            mapping,
            g_max_us: 25.0,
            aging,
        }
    }

    #[test]
    fn ideal_devices_compute_the_float_network_at_every_time_and_compensation() {
        for mapping in [Mapping::Layer, Mapping::Column] {
            let (cfg, hw, layers, data) = setup(CellKind::OneSided);
            let d =
                Deployment::from_float(&layers, &cfg, &hw, &deploy_cfg(Aging::default(), mapping))
                    .unwrap();
            assert!(d.report().rms_error < 1e-4, "{:?}", d.report());
            let mut net = d.network().unwrap();
            let all = [
                Compensation::None,
                Compensation::Global,
                Compensation::Column,
            ];
            for (ti, t) in [1.0, 3600.0, 3.15e7].into_iter().enumerate() {
                assert_eq!(d.accuracy(&mut net, &data, t, ti, 0, &all), vec![100.0; 3]);
            }
        }
    }

    #[test]
    fn uniform_drift_is_undone_exactly_by_global_compensation() {
        // Every device drifts with nu = 0.1: at t = 2e6 s (t0 = 20 s) every conductance, so every
        // weight of a one-sided cell, is (1e5)^-0.1 = 0.316 of its programmed value. Without
        // compensation the digital biases dominate the shrunken outputs; the global factor restores
        // each layer's outputs.
        let aging = Aging {
            retention: Retention::Drift {
                nu: Drift::Constant {
                    nu_mean: 0.1,
                    nu_sd: 0.0,
                },
                t0: 20.0,
            },
            ..Aging::default()
        };
        let (cfg, hw, layers, data) = setup(CellKind::OneSided);
        let d =
            Deployment::from_float(&layers, &cfg, &hw, &deploy_cfg(aging, Mapping::Layer)).unwrap();
        let mut net = d.network().unwrap();
        let got = d.accuracy(
            &mut net,
            &data,
            2e6,
            0,
            0,
            &[
                Compensation::None,
                Compensation::Global,
                Compensation::Column,
            ],
        );
        assert!(got[0] < 100.0, "{got:?}");
        assert_eq!(&got[1..], &[100.0, 100.0]);
        // The drifted conductances are 0.316 of the programmed ones.
        let g = d.conductances(2e6, 0, 0);
        let (prog, now) = (&g[0].g_prog, &g[0].g_t);
        let f = (1e5f64).powf(-0.1);
        for (p, n) in prog.iter().zip(now) {
            assert!(
                (n - p * f).abs() <= 1e-9 * p.abs().max(1.0),
                "{n} vs {p} x {f}"
            );
        }
    }

    #[test]
    fn repeats_and_times_are_independent_of_the_order_they_run_in() {
        let aging = Aging {
            read_noise: ReadNoise1f::Constant { q_s: 0.05 },
            ..Aging::pcm()
        };
        let (cfg, mut hw, layers, data) = setup(CellKind::OneSided);
        hw.tile.forward = IoConfig::default();
        let d =
            Deployment::from_float(&layers, &cfg, &hw, &deploy_cfg(aging, Mapping::Layer)).unwrap();
        let comps = [Compensation::None, Compensation::Global];
        let mut a = d.network().unwrap();
        let first: Vec<_> = (0..3)
            .map(|r| d.accuracy(&mut a, &data, 86400.0, 2, r, &comps))
            .collect();
        let mut b = d.network().unwrap();
        let second: Vec<_> = (0..3)
            .rev()
            .map(|r| d.accuracy(&mut b, &data, 86400.0, 2, r, &comps))
            .collect();
        assert_eq!(first, second.into_iter().rev().collect::<Vec<_>>());
        // Different repeats draw different noise.
        let g0 = d.conductances(86400.0, 2, 0);
        let g1 = d.conductances(86400.0, 2, 1);
        assert_ne!(g0[0].g_t, g1[0].g_t);
    }

    #[test]
    fn batched_evaluation_predicts_as_one_by_one() {
        let (cfg, mut hw, layers, data) = setup(CellKind::OneSided);
        hw.tile.forward = IoConfig {
            bound_management: true,
            out_bound: 2.0,
            ..IoConfig::default()
        };
        let aging = Aging::pcm();
        let d = Deployment::from_float(&layers, &cfg, &hw, &deploy_cfg(aging, Mapping::Column))
            .unwrap();
        let mut a = d.network().unwrap();
        let mut b = d.network().unwrap();
        let mut ledger = Ledger::default();
        let want = crate::train::evaluate(&mut a, &data, &mut ledger, Par::Seq);
        assert_eq!(accuracy_batched(&mut b, &data), want);
        assert_eq!(a.export_state(), b.export_state());
    }

    #[test]
    fn write_verify_programs_within_its_tolerance_and_counts_its_work() {
        let (cfg, hw, layers, _) = setup(CellKind::OneSided);
        let mut dc = deploy_cfg(Aging::default(), Mapping::Layer);
        dc.program = Program::WriteVerify {
            tolerance: 0.01,
            // Steps of 1e-5 of the range: a full swing takes 1e5 pulses.
            max_pulses: 1_000_000,
        };
        let d = Deployment::from_float(&layers, &cfg, &hw, &dc).unwrap();
        let r = d.report();
        assert_eq!(r.verify.unconverged, 0);
        assert_eq!(r.verify.devices, 2 * (12 * 10 + 4 * 12));
        assert!(r.verify.pulses_up > 0);
        // A weight is the difference of two devices' fractions, each within the tolerance.
        assert!(r.rms_error <= 0.02, "{r:?}");
        assert!(r.rms_error > 0.0);
    }
}
