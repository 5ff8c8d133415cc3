//! The metric columns of aimsim's outputs, each list defined once: `metrics.csv` (one row per epoch:
//! the fields of `EpochMetrics`, listed by `aimsim_networks::with_epoch_metrics!`) and the final
//! metrics of a run ([`FINAL_COLUMNS`]: `results.csv` of a sweep, `summary.csv` of `aimsim run`, the
//! axes of `aimsim plot`).

use anyhow::Result;

use aimsim_networks::train::{EpochMetrics, best_validation};

/// A value as a CSV cell with `decimals` decimals: whole numbers as they are, a missing optional
/// value as an empty cell.
pub trait Cell {
    /// The cell.
    fn cell(&self, decimals: usize) -> String;
}

impl Cell for u32 {
    fn cell(&self, _: usize) -> String {
        self.to_string()
    }
}

impl Cell for u64 {
    fn cell(&self, _: usize) -> String {
        self.to_string()
    }
}

impl Cell for f64 {
    fn cell(&self, decimals: usize) -> String {
        format!("{self:.decimals$}")
    }
}

impl Cell for Option<f64> {
    fn cell(&self, decimals: usize) -> String {
        self.map(|v| v.cell(decimals)).unwrap_or_default()
    }
}

/// Defines the columns of `metrics.csv` from the list of `with_epoch_metrics!`.
macro_rules! epoch_columns {
    ($($(#[$doc:meta])* $field:ident: $ty:ty => $decimals:literal,)*) => {
        /// The columns of `metrics.csv`: the fields of [`EpochMetrics`], in order.
        pub const EPOCH_COLUMNS: &[&str] = &[$(stringify!($field)),*];

        /// One row of `metrics.csv`, aligned with [`EPOCH_COLUMNS`].
        pub fn epoch_cells(m: &EpochMetrics) -> Vec<String> {
            vec![$(m.$field.cell($decimals)),*]
        }
    };
}

aimsim_networks::with_epoch_metrics!(epoch_columns);

/// Columns epoch 0 (before training) does not measure: left empty in its row rather than written as 0.
pub const NOT_MEASURED_AT_EPOCH_0: &[&str] = &["train_loss", "train_accuracy"];

/// Metrics as CSV (simulated quantities only, so equal seeds give byte-identical files). The
/// validation columns come last and are empty without a validation split; epoch 0 leaves the
/// training loss and accuracy empty (nothing was trained).
pub fn metrics_csv(rows: &[EpochMetrics]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(EPOCH_COLUMNS)?;
    for m in rows {
        let mut cells = epoch_cells(m);
        if m.epoch == 0 {
            for (c, name) in cells.iter_mut().zip(EPOCH_COLUMNS) {
                if NOT_MEASURED_AT_EPOCH_0.contains(name) {
                    c.clear();
                }
            }
        }
        w.write_record(cells)?;
    }
    Ok(w.into_inner()?)
}

/// One run's final metrics: what results.csv, summary.csv and the printed tables report of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SummaryRow {
    /// Test accuracy after the last epoch, percent.
    pub final_test: f64,
    /// Validation accuracy of the epoch the validation split selects ([`best_validation`]), percent;
    /// `None` without a split.
    pub best_val: Option<f64>,
    /// Test accuracy of that epoch, percent; `None` without a split.
    pub test_at_best_val: Option<f64>,
    /// Validation accuracy after the last epoch, percent; `None` without a split.
    pub final_val: Option<f64>,
    /// Training accuracy during the last epoch, percent.
    pub final_train_accuracy: f64,
    /// Mean training loss of the last epoch.
    pub final_train_loss: f64,
    /// Potentiation pulses over training.
    pub pulses_up: u64,
    /// Depression pulses over training.
    pub pulses_down: u64,
    /// Refreshes over training.
    pub refreshes: u64,
    /// Simulated training energy, pJ.
    pub energy_pj: f64,
    /// Simulated training latency, ns.
    pub latency_ns: f64,
    /// Simulated inference energy per test sample after the last epoch, pJ.
    pub test_energy_pj_per_sample: f64,
    /// Simulated inference latency per test sample after the last epoch, ns.
    pub test_latency_ns_per_sample: f64,
}

/// The summary of one run's metrics. The test set gives only numbers of the final epoch or of the
/// epoch the validation split selects: no selection is made on test data.
pub fn summary_row(metrics: &[EpochMetrics]) -> SummaryRow {
    let last = metrics.last().cloned().unwrap_or_default();
    let best = best_validation(metrics);
    let sum = |f: fn(&EpochMetrics) -> f64| metrics.iter().map(f).sum::<f64>();
    SummaryRow {
        final_test: last.test_accuracy,
        best_val: best.and_then(|m| m.val_accuracy),
        test_at_best_val: best.map(|m| m.test_accuracy),
        final_val: last.val_accuracy,
        final_train_accuracy: last.train_accuracy,
        final_train_loss: last.train_loss,
        pulses_up: metrics.iter().map(|m| m.pulses_up).sum(),
        pulses_down: metrics.iter().map(|m| m.pulses_down).sum(),
        refreshes: metrics.iter().map(|m| m.refreshes).sum(),
        energy_pj: sum(|m| m.train_energy_pj),
        latency_ns: sum(|m| m.train_latency_ns),
        test_energy_pj_per_sample: last.test_energy_pj_per_sample,
        test_latency_ns_per_sample: last.test_latency_ns_per_sample,
    }
}

/// A column of a run's final metrics.
pub struct FinalColumn {
    /// Column name in results.csv and summary.csv.
    pub name: &'static str,
    /// Axis label of `aimsim plot`, in the unit of `scale`.
    pub label: &'static str,
    /// Factor from the column's unit to the axis unit.
    pub scale: f32,
    /// Whether summary.csv of `aimsim run` has the column (results.csv of a sweep has them all).
    pub in_summary: bool,
    /// The cell of a run.
    pub cell: fn(&SummaryRow) -> String,
}

/// The final metrics of a run, in the order of their columns. No column selects on test data:
/// `test_accuracy_at_best_val` is the test accuracy of the epoch with the best validation accuracy
/// (empty, like the other validation columns, without `train.validation`).
pub static FINAL_COLUMNS: [FinalColumn; 13] = [
    FinalColumn {
        name: "final_test_accuracy",
        label: "final test accuracy (%)",
        scale: 1.0,
        in_summary: true,
        cell: |r| r.final_test.cell(4),
    },
    FinalColumn {
        name: "best_val_accuracy",
        label: "best validation accuracy (%)",
        scale: 1.0,
        in_summary: true,
        cell: |r| r.best_val.cell(4),
    },
    FinalColumn {
        name: "test_accuracy_at_best_val",
        label: "test accuracy at the best validation epoch (%)",
        scale: 1.0,
        in_summary: true,
        cell: |r| r.test_at_best_val.cell(4),
    },
    FinalColumn {
        name: "final_val_accuracy",
        label: "final validation accuracy (%)",
        scale: 1.0,
        in_summary: false,
        cell: |r| r.final_val.cell(4),
    },
    FinalColumn {
        name: "final_train_accuracy",
        label: "train accuracy in the last epoch (%)",
        scale: 1.0,
        in_summary: false,
        cell: |r| r.final_train_accuracy.cell(4),
    },
    FinalColumn {
        name: "final_train_loss",
        label: "train loss in the last epoch",
        scale: 1.0,
        in_summary: false,
        cell: |r| r.final_train_loss.cell(6),
    },
    FinalColumn {
        name: "pulses_up",
        label: "potentiation pulses (millions)",
        scale: 1e-6,
        in_summary: true,
        cell: |r| r.pulses_up.cell(0),
    },
    FinalColumn {
        name: "pulses_down",
        label: "depression pulses (millions)",
        scale: 1e-6,
        in_summary: true,
        cell: |r| r.pulses_down.cell(0),
    },
    FinalColumn {
        name: "refreshes",
        label: "refreshes",
        scale: 1.0,
        in_summary: true,
        cell: |r| r.refreshes.cell(0),
    },
    FinalColumn {
        name: "train_energy_pj",
        label: "simulated training energy (uJ)",
        scale: 1e-6,
        in_summary: true,
        cell: |r| r.energy_pj.cell(1),
    },
    FinalColumn {
        name: "train_latency_ns",
        label: "simulated training latency (ms)",
        scale: 1e-6,
        in_summary: true,
        cell: |r| r.latency_ns.cell(1),
    },
    FinalColumn {
        name: "test_energy_pj_per_sample",
        label: "simulated inference energy per sample (nJ)",
        scale: 1e-3,
        in_summary: false,
        cell: |r| r.test_energy_pj_per_sample.cell(3),
    },
    FinalColumn {
        name: "test_latency_ns_per_sample",
        label: "simulated inference latency per sample (us)",
        scale: 1e-3,
        in_summary: false,
        cell: |r| r.test_latency_ns_per_sample.cell(3),
    },
];

/// The columns of summary.csv after `variant`, `seed` and `rule`.
pub fn summary_columns() -> impl Iterator<Item = &'static FinalColumn> {
    FINAL_COLUMNS.iter().filter(|c| c.in_summary)
}

/// The final metrics of a run as results.csv cells, aligned with [`FINAL_COLUMNS`].
pub fn final_cells(metrics: &[EpochMetrics]) -> Vec<String> {
    let row = summary_row(metrics);
    FINAL_COLUMNS.iter().map(|c| (c.cell)(&row)).collect()
}
