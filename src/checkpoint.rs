//! Checkpoints of a training run (docs/checkpoints.md): the only place that knows bincode.
//!
//! A checkpoint holds everything a run carries from one epoch to the next: every tile's device states,
//! energy sums, pulse counters and random stream, every controller's state, float weights and digital
//! biases, the training loop's progress (epoch, step, learning rate, sample order, metrics rows so far),
//! the trace files' positions and the histograms taken so far. The physics crates export that state as
//! plain data; this module mirrors it in serde types and encodes it with bincode, so the core types stay
//! free of serde and bincode could be swapped here alone.
//!
//! File layout (little-endian):
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | magic `AIMSIMCK` |
//! | 8..12 | format version (u32) |
//! | 12..44 | aimsim version, UTF-8, zero-padded |
//! | 44..76 | SHA-256 of the run's effective scenario |
//! | 76..84 | payload length `n` (u64) |
//! | 84..84+n | payload (bincode 2, standard configuration) |
//! | last 32 | SHA-256 of every byte before it |

use std::path::Path;

use aimsim_devices::lanes::WORDS;
use aimsim_networks::mlp::{LayerState, MlpState, WeightsState};
use aimsim_networks::train::{EpochMetrics, TrainProgress};
use aimsim_sim::matrix::MatrixState;
use aimsim_sim::rng::Pcg;
use aimsim_sim::tile::{PulseTally, TileState};
use aimsim_sim::update::ControllerState;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::output::write_atomic;
use crate::trace::{RecorderState, TracePosition};

/// Name of the checkpoint file in a run's output folder.
pub const FILE_NAME: &str = "checkpoint.bin";

/// Magic bytes at the start of every checkpoint.
pub const MAGIC: &[u8; 8] = b"AIMSIMCK";

/// Version of the file layout and payload; bumped whenever either changes.
pub const FORMAT_VERSION: u32 = 4;

const VERSION_BYTES: usize = 32;
const HEADER_BYTES: usize = 8 + 4 + VERSION_BYTES + 32 + 8;
const CHECKSUM_BYTES: usize = 32;

/// Largest payload bincode may claim while decoding: a corrupt length cannot make it allocate more.
const MAX_PAYLOAD: usize = 1 << 32;

/// Per-variant histograms: (label, per-layer bin counts).
pub type Histograms = Vec<(String, Vec<Vec<u64>>)>;

/// Everything a resumed run needs, as the physics crates export it.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The training loop's progress, metrics rows included.
    pub progress: TrainProgress,
    /// The network: a BP network's layers, or an EP network's weight arrays (its matrices with the
    /// biases, then its separate feedback arrays; `EpNetwork::export_state`).
    pub net: MlpState,
    /// EP: samples trained so far (the nudge signs' stream index); 0 for BP.
    pub ep_samples: u64,
    /// The trace files' position and cadence state.
    pub trace: RecorderState,
    /// Histograms taken so far.
    pub histograms: Histograms,
}

// -------------------------------------------------------------------------------------------------
// Serde mirrors of the plain-data state types.

#[derive(Serialize, Deserialize)]
struct Payload {
    epoch: u32,
    step: u64,
    lr: f32,
    order: Vec<u32>,
    rows: Vec<MetricsRow>,
    layers: Vec<LayerSnap>,
    trace_rows: u64,
    trace_csv_bytes: u64,
    trace_last_pulses: u64,
    histograms: Histograms,
    ep_samples: u64,
}

/// Defines `MetricsRow`, the checkpoint's copy of [`EpochMetrics`] (same fields, same order), and
/// the conversions both ways, from the list of `aimsim_networks::with_epoch_metrics!`.
macro_rules! metrics_row {
    ($($(#[$doc:meta])* $field:ident: $ty:ty => $decimals:literal,)*) => {
        #[derive(Serialize, Deserialize)]
        struct MetricsRow {
            $($field: $ty,)*
        }

        impl From<&EpochMetrics> for MetricsRow {
            fn from(m: &EpochMetrics) -> Self {
                MetricsRow {
                    $($field: m.$field,)*
                }
            }
        }

        impl From<MetricsRow> for EpochMetrics {
            fn from(m: MetricsRow) -> Self {
                EpochMetrics {
                    $($field: m.$field,)*
                }
            }
        }
    };
}

aimsim_networks::with_epoch_metrics!(metrics_row);

#[derive(Serialize, Deserialize)]
struct LayerSnap {
    bias: Vec<f32>,
    weights: WeightsSnap,
}

#[derive(Serialize, Deserialize)]
enum WeightsSnap {
    Float(Vec<f32>),
    Analog {
        tiles: Vec<TileSnap>,
        controllers: Vec<ControllerSnap>,
    },
}

#[derive(Serialize, Deserialize)]
struct TileSnap {
    states: Vec<Vec<f32>>,
    offsets: Vec<Vec<f32>>,
    g_row: Vec<f64>,
    g_col: Vec<f64>,
    up_count: Vec<Vec<u32>>,
    down_count: Vec<Vec<u32>>,
    tally_up: u64,
    tally_down: u64,
    rng: RngSnap,
    lanes: Vec<u32>,
}

/// A tile's PCG64 stream: the fields, in the order and encoding, of `rand_pcg::Pcg64`'s own serde form.
#[derive(Serialize, Deserialize)]
struct RngSnap {
    state: u128,
    increment: u128,
}

impl From<&Pcg> for RngSnap {
    fn from(p: &Pcg) -> Self {
        let (state, increment) = p.parts();
        RngSnap { state, increment }
    }
}

#[derive(Serialize, Deserialize)]
struct ControllerSnap {
    counters: Vec<u64>,
    values: Vec<f32>,
}

impl From<&Checkpoint> for Payload {
    fn from(c: &Checkpoint) -> Self {
        let p = &c.progress;
        Payload {
            epoch: p.epoch,
            step: p.step,
            lr: p.lr,
            order: p.order.clone(),
            rows: p.rows.iter().map(MetricsRow::from).collect(),
            layers: c
                .net
                .layers
                .iter()
                .map(|l| LayerSnap {
                    bias: l.bias.clone(),
                    weights: match &l.weights {
                        WeightsState::Float(w) => WeightsSnap::Float(w.clone()),
                        WeightsState::Analog(m) => WeightsSnap::Analog {
                            tiles: m
                                .tiles
                                .iter()
                                .map(|t| TileSnap {
                                    states: t.states.clone(),
                                    offsets: t.offsets.clone(),
                                    g_row: t.g_row.clone(),
                                    g_col: t.g_col.clone(),
                                    up_count: t.up_count.clone(),
                                    down_count: t.down_count.clone(),
                                    tally_up: t.tally.up,
                                    tally_down: t.tally.down,
                                    rng: RngSnap::from(&t.rng),
                                    lanes: t.lanes.to_vec(),
                                })
                                .collect(),
                            controllers: m
                                .controllers
                                .iter()
                                .map(|c| ControllerSnap {
                                    counters: c.counters.clone(),
                                    values: c.values.clone(),
                                })
                                .collect(),
                        },
                    },
                })
                .collect(),
            trace_rows: c.trace.position.rows,
            trace_csv_bytes: c.trace.position.csv_bytes,
            trace_last_pulses: c.trace.last_pulses,
            histograms: c.histograms.clone(),
            ep_samples: c.ep_samples,
        }
    }
}

impl From<Payload> for Checkpoint {
    fn from(p: Payload) -> Self {
        Checkpoint {
            progress: TrainProgress {
                epoch: p.epoch,
                step: p.step,
                lr: p.lr,
                order: p.order,
                rows: p.rows.into_iter().map(EpochMetrics::from).collect(),
            },
            net: MlpState {
                layers: p
                    .layers
                    .into_iter()
                    .map(|l| LayerState {
                        bias: l.bias,
                        weights: match l.weights {
                            WeightsSnap::Float(w) => WeightsState::Float(w),
                            WeightsSnap::Analog { tiles, controllers } => {
                                WeightsState::Analog(MatrixState {
                                    tiles: tiles
                                        .into_iter()
                                        .map(|t| TileState {
                                            states: t.states,
                                            offsets: t.offsets,
                                            g_row: t.g_row,
                                            g_col: t.g_col,
                                            up_count: t.up_count,
                                            down_count: t.down_count,
                                            tally: PulseTally {
                                                up: t.tally_up,
                                                down: t.tally_down,
                                            },
                                            rng: Pcg::from_parts(t.rng.state, t.rng.increment),
                                            // A wrong length reads as no lanes, which the tile
                                            // refuses with an error when the state is restored.
                                            lanes: t.lanes.try_into().unwrap_or([0; WORDS]),
                                        })
                                        .collect(),
                                    controllers: controllers
                                        .into_iter()
                                        .map(|c| ControllerState {
                                            counters: c.counters,
                                            values: c.values,
                                        })
                                        .collect(),
                                })
                            }
                        },
                    })
                    .collect(),
            },
            trace: RecorderState {
                position: TracePosition {
                    rows: p.trace_rows,
                    csv_bytes: p.trace_csv_bytes,
                },
                last_pulses: p.trace_last_pulses,
            },
            histograms: p.histograms,
            ep_samples: p.ep_samples,
        }
    }
}

// -------------------------------------------------------------------------------------------------
// Encoding.

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_PAYLOAD>()
}

/// SHA-256 of what one run of a scenario is: its effective scenario text (its variant's `set`
/// applied) without the list of the other variants and of the other seeds (`[[variant]]`,
/// `train.seeds`), plus the variant's name. What a checkpoint is tied to: adding a variant or a seed
/// to a scenario leaves the checkpoints of its other runs valid.
pub fn scenario_hash(effective: &str, variant: Option<&str>) -> [u8; 32] {
    let text = match effective.parse::<toml::Table>() {
        Ok(mut table) => {
            table.remove("variant");
            if let Some(toml::Value::Table(t)) = table.get_mut("train") {
                t.remove("seeds");
            }
            toml::to_string(&table).unwrap_or_else(|_| effective.to_string())
        }
        Err(_) => effective.to_string(),
    };
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    h.update(b"\nvariant = ");
    h.update(variant.unwrap_or("").as_bytes());
    h.finalize().into()
}

/// Encodes a checkpoint for the scenario with hash `scenario`.
pub fn encode(c: &Checkpoint, scenario: &[u8; 32]) -> Result<Vec<u8>> {
    let payload = bincode::serde::encode_to_vec(Payload::from(c), config())
        .context("cannot encode the checkpoint")?;
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len() + CHECKSUM_BYTES);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    let mut version = [0u8; VERSION_BYTES];
    let v = env!("CARGO_PKG_VERSION").as_bytes();
    version[..v.len().min(VERSION_BYTES)].copy_from_slice(&v[..v.len().min(VERSION_BYTES)]);
    out.extend_from_slice(&version);
    out.extend_from_slice(scenario);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

/// Decodes a checkpoint read from `origin` (named in errors), checking in turn: the magic, the format
/// version, the length, the checksum, the aimsim version and the scenario hash. Never panics on any
/// input.
pub fn decode(bytes: &[u8], origin: &Path, scenario: &[u8; 32]) -> Result<Checkpoint> {
    let f = origin.display();
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        bail!("{f}: not an aimsim checkpoint (bytes 0..8 are not `AIMSIMCK`)");
    }
    if bytes.len() < HEADER_BYTES + CHECKSUM_BYTES {
        bail!(
            "{f}: checkpoint truncated: {} bytes, shorter than its {}-byte header and checksum",
            bytes.len(),
            HEADER_BYTES + CHECKSUM_BYTES
        );
    }
    let format = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if format != FORMAT_VERSION {
        bail!(
            "{f}: checkpoint format version {format} (bytes 8..12), this aimsim reads version \
             {FORMAT_VERSION}; rerun without --resume"
        );
    }
    let len = u64::from_le_bytes(bytes[76..84].try_into().expect("8 bytes"));
    let expected = (HEADER_BYTES + CHECKSUM_BYTES) as u64 + len.min(u64::MAX / 2);
    if bytes.len() as u64 != expected {
        bail!(
            "{f}: checkpoint corrupt or truncated: {} bytes, but its header (bytes 76..84) announces a \
             {len}-byte payload, i.e. {expected} bytes in all",
            bytes.len()
        );
    }
    let body = bytes.len() - CHECKSUM_BYTES;
    if Sha256::digest(&bytes[..body]).as_slice() != &bytes[body..] {
        bail!(
            "{f}: checkpoint corrupt: the SHA-256 of bytes 0..{body} does not match the checksum \
             stored at byte {body}; the file was damaged after it was written"
        );
    }
    let version_field = &bytes[12..12 + VERSION_BYTES];
    let version = String::from_utf8_lossy(version_field)
        .trim_end_matches('\0')
        .to_string();
    if version != env!("CARGO_PKG_VERSION") {
        bail!(
            "{f}: checkpoint written by aimsim {version}, this is aimsim {}; a resumed run would not be \
             bit-identical across versions: rerun without --resume",
            env!("CARGO_PKG_VERSION")
        );
    }
    if &bytes[44..76] != scenario {
        bail!(
            "{f}: checkpoint written for another scenario (its SHA-256 of the effective configuration, \
             bytes 44..76, differs): resume with the same scenario file and --set overrides, or rerun \
             without --resume"
        );
    }
    let (payload, used): (Payload, usize) =
        bincode::serde::decode_from_slice(&bytes[HEADER_BYTES..body], config()).map_err(|e| {
            anyhow::anyhow!(
                "{f}: cannot decode the checkpoint payload (from byte {HEADER_BYTES}): {e}"
            )
        })?;
    if used != body - HEADER_BYTES {
        bail!(
            "{f}: checkpoint payload ends at byte {}, but the file's payload runs to byte {body}",
            HEADER_BYTES + used
        );
    }
    Ok(payload.into())
}

/// Writes a checkpoint to `path` atomically (temporary sibling, then rename).
pub fn save(path: &Path, c: &Checkpoint, scenario: &[u8; 32]) -> Result<()> {
    write_atomic(path, &encode(c, scenario)?)
}

/// Reads and checks the checkpoint at `path` (see [`decode`]).
pub fn load(path: &Path, scenario: &[u8; 32]) -> Result<Checkpoint> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the checkpoint {}", path.display()))?;
    decode(&bytes, path, scenario)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aimsim_sim::rng::{Purpose, stream};
    use rand::Rng;

    /// The tile stream's snapshot encodes exactly like `rand_pcg::Pcg64`'s serde form (format 2 files
    /// written before the project's own PCG type keep loading), and decodes to the same stream.
    #[test]
    fn rng_snapshots_encode_like_rand_pcg() {
        let (state, selector) = (0xDEAD_BEEF_0123_4567_89AB_CDEF_1357_9BDFu128, 77u128);
        let mut ours = Pcg::new(state, selector);
        let mut theirs = rand_pcg::Pcg64::new(state, selector);
        for _ in 0..5 {
            assert_eq!(ours.next_u64(), theirs.next_u64());
        }
        let a = bincode::serde::encode_to_vec(RngSnap::from(&ours), config()).unwrap();
        let b = bincode::serde::encode_to_vec(&theirs, config()).unwrap();
        assert_eq!(a, b);
        let (back, _): (RngSnap, usize) = bincode::serde::decode_from_slice(&b, config()).unwrap();
        let mut back = Pcg::from_parts(back.state, back.increment);
        assert_eq!(back.next_u64(), theirs.next_u64());
    }

    fn sample() -> Checkpoint {
        let mut rng = stream(3, Purpose::Write, 1);
        rng.next_u64();
        Checkpoint {
            progress: TrainProgress {
                epoch: 2,
                step: 600,
                lr: 0.05,
                order: vec![2, 0, 1],
                rows: vec![
                    EpochMetrics::default(),
                    EpochMetrics {
                        epoch: 1,
                        train_loss: 0.7,
                        ..EpochMetrics::default()
                    },
                    EpochMetrics::default(),
                ],
            },
            net: MlpState {
                layers: vec![
                    LayerState {
                        weights: WeightsState::Analog(MatrixState {
                            tiles: vec![TileState {
                                states: vec![vec![0.25, 0.5], vec![0.1, 0.9]],
                                offsets: vec![vec![], vec![0.01, -0.02]],
                                g_row: vec![1.5],
                                g_col: vec![0.25, 1.25],
                                up_count: vec![vec![1, 2], vec![3, 4]],
                                down_count: vec![vec![0, 0], vec![5, 6]],
                                tally: PulseTally { up: 10, down: 11 },
                                rng,
                                lanes: std::array::from_fn(|k| 3 * k as u32 + 1),
                            }],
                            controllers: vec![ControllerState {
                                counters: vec![7],
                                values: vec![0.125],
                            }],
                        }),
                        bias: vec![0.5],
                    },
                    LayerState {
                        weights: WeightsState::Float(vec![1.0, -2.0]),
                        bias: vec![],
                    },
                ],
            },
            trace: RecorderState {
                position: TracePosition {
                    rows: 4,
                    csv_bytes: 99,
                },
                last_pulses: 21,
            },
            histograms: vec![("initial".into(), vec![vec![1, 2, 3]])],
            ep_samples: 17,
        }
    }

    const HASH: [u8; 32] = [7; 32];

    #[test]
    fn round_trip_is_exact() {
        let c = sample();
        let bytes = encode(&c, &HASH).unwrap();
        let back = decode(&bytes, Path::new("c.bin"), &HASH).unwrap();
        assert_eq!(back, c);
        // The restored stream continues where the saved one stood.
        let (mut a, mut b) = match (&c.net.layers[0].weights, &back.net.layers[0].weights) {
            (WeightsState::Analog(a), WeightsState::Analog(b)) => {
                (a.tiles[0].rng.clone(), b.tiles[0].rng.clone())
            }
            _ => unreachable!(),
        };
        assert_eq!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn corrupt_checkpoints_are_refused_with_the_file_named() {
        let bytes = encode(&sample(), &HASH).unwrap();
        let name = Path::new("run/checkpoint.bin");
        let err = |b: &[u8]| format!("{:#}", decode(b, name, &HASH).unwrap_err());
        // Every single flipped byte is caught, by the magic, the version, the length or the checksum.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            let e = err(&b);
            assert!(e.starts_with("run/checkpoint.bin: "), "byte {i}: {e}");
        }
        let mut b = bytes.clone();
        b[HEADER_BYTES + 3] ^= 1;
        assert!(err(&b).contains("checksum"), "{}", err(&b));
        // Truncation at any point.
        for cut in [0, 5, 40, HEADER_BYTES, bytes.len() / 2, bytes.len() - 1] {
            let e = err(&bytes[..cut]);
            assert!(
                e.contains("truncated") || e.contains("not an aimsim checkpoint"),
                "cut {cut}: {e}"
            );
        }
        // A huge announced length is refused before anything is allocated.
        let mut b = bytes.clone();
        b[76..84].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(err(&b).contains("announces"), "{}", err(&b));
    }

    #[test]
    fn other_versions_and_scenarios_are_refused() {
        let bytes = encode(&sample(), &HASH).unwrap();
        let name = Path::new("c.bin");
        // Another format version.
        let mut b = bytes.clone();
        b[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let e = format!("{:#}", decode(&b, name, &HASH).unwrap_err());
        let want = format!("format version {}", FORMAT_VERSION + 1);
        assert!(e.contains(&want), "{e}");
        // Another aimsim version, with a valid checksum.
        let mut b = bytes[..bytes.len() - CHECKSUM_BYTES].to_vec();
        b[12..12 + VERSION_BYTES].fill(0);
        b[12..17].copy_from_slice(b"9.9.9");
        let sum = Sha256::digest(&b);
        b.extend_from_slice(&sum);
        let e = format!("{:#}", decode(&b, name, &HASH).unwrap_err());
        assert!(e.contains("written by aimsim 9.9.9"), "{e}");
        // Another scenario.
        let e = format!("{:#}", decode(&bytes, name, &[8; 32]).unwrap_err());
        assert!(e.contains("another scenario"), "{e}");
    }
}
