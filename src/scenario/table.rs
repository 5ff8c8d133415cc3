//! Measured curves of the `table` model: `[device.table]` with `up` and `down` arrays, or a CSV file
//! (`direction,pulse,conductance`) next to the scenario or built into a preset.

use std::collections::BTreeMap;
use std::path::Path;

use aimsim_devices::TableCurve;
use aimsim_devices::spec::MAGNITUDE_LIMIT;

use super::ScenarioError;
use super::locate::{Locator, split_key};
use super::sections::TableSection;

/// The curve of `[device.table]`: its arrays, or its file (a preset's data file is built in, unless a
/// file of that name lies next to the scenario).
pub fn load_table(
    t: &TableSection,
    loc: &Locator,
    base_dir: &Path,
    preset_files: &[(&str, &str)],
) -> Result<TableCurve, ScenarioError> {
    match (&t.file, &t.up, &t.down) {
        (Some(f), None, None) => {
            // A preset's data file is built in; a user's is read next to the scenario.
            let user_dir_file = base_dir.join(f);
            let (name, text) = match preset_files.iter().find(|(n, _)| n == f) {
                Some((n, text)) if !user_dir_file.exists() => (format!("preset data file {n}"), text.to_string()),
                _ => {
                    let text = std::fs::read_to_string(&user_dir_file).map_err(|e| {
                        loc.error(
                            &split_key("device.table.file"),
                            format!("cannot read {}: {e}", user_dir_file.display()),
                        )
                    })?;
                    (user_dir_file.display().to_string(), text)
                }
            };
            parse_table_csv(&text, &name)
        }
        (None, Some(up), Some(down)) => Ok(TableCurve {
            up: up.clone(),
            down: down.clone(),
        }),
        _ => Err(loc.error(
            &split_key("device.table"),
            "give either `file` (a CSV with columns direction,pulse,conductance) or both `up` and `down` arrays",
        )),
    }
}

/// 1-based column (in characters) of field `field` of the CSV row that starts at byte `start` of
/// `text`: after its leading spaces, as the reader trims them.
fn field_column(text: &str, start: usize, field: usize) -> usize {
    let line = text.get(start..).unwrap_or("");
    let line = line.split('\n').next().unwrap_or("");
    let (mut commas, mut quoted, mut col) = (0, false, 0);
    for (i, ch) in line.chars().enumerate() {
        if commas == field {
            if ch == ' ' || ch == '\t' {
                continue;
            }
            return i + 1;
        }
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => commas += 1,
            _ => {}
        }
        col = i + 1;
    }
    col + 1
}

/// Parses a measured-curve CSV (`direction,pulse,conductance`; direction `up` or `down`, pulses 0..n-1
/// once each, conductances finite, >= 0 and at most [`MAGNITUDE_LIMIT`] uS). Errors about a cell name
/// the file, line and column (`file:line:col`); errors about a row, its line and byte offset.
pub fn parse_table_csv(text: &str, name: &str) -> Result<TableCurve, ScenarioError> {
    let err = |pos: Option<&csv::Position>, message: String| ScenarioError {
        origin: match pos {
            Some(p) => format!("{name}:{} (byte {})", p.line(), p.byte()),
            None => name.to_string(),
        },
        key: None,
        message,
    };
    let cell_err = |pos: &csv::Position, field: usize, message: String| ScenarioError {
        origin: format!(
            "{name}:{}:{}",
            pos.line(),
            field_column(text, pos.byte() as usize, field)
        ),
        key: None,
        message,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| err(e.position(), format!("cannot read the header: {e}")))?;
    let want = ["direction", "pulse", "conductance"];
    if headers.iter().collect::<Vec<_>>() != want {
        return Err(err(
            Some(&csv::Position::new().set_line(1).clone()),
            format!(
                "the header must be `direction,pulse,conductance`, got `{}`",
                headers.iter().collect::<Vec<_>>().join(",")
            ),
        ));
    }
    let mut sweeps: BTreeMap<bool, Vec<(u64, f64, csv::Position)>> = BTreeMap::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| err(e.position(), format!("malformed row: {e}")))?;
        let pos = rec.position().cloned().unwrap_or_else(csv::Position::new);
        let up = match &rec[0] {
            "up" => true,
            "down" => false,
            other => {
                return Err(cell_err(
                    &pos,
                    0,
                    format!("direction must be `up` or `down`, got `{other}`"),
                ));
            }
        };
        let pulse: u64 = rec[1].parse().map_err(|_| {
            cell_err(
                &pos,
                1,
                format!("pulse must be a whole number >= 0, got `{}`", &rec[1]),
            )
        })?;
        let g: f64 = rec[2].parse().map_err(|_| {
            cell_err(
                &pos,
                2,
                format!("conductance must be a number (uS), got `{}`", &rec[2]),
            )
        })?;
        if !(g.is_finite() && (0.0..=MAGNITUDE_LIMIT).contains(&g)) {
            return Err(cell_err(
                &pos,
                2,
                format!(
                    "conductance must be finite, >= 0 and at most {MAGNITUDE_LIMIT:e} uS, got `{}`",
                    &rec[2]
                ),
            ));
        }
        sweeps.entry(up).or_default().push((pulse, g, pos));
    }
    let mut take = |up: bool| -> Result<Vec<f64>, ScenarioError> {
        let dir = if up { "up" } else { "down" };
        let mut rows = sweeps.remove(&up).unwrap_or_default();
        rows.sort_by_key(|r| r.0);
        for (i, (p, _, pos)) in rows.iter().enumerate() {
            if *p != i as u64 {
                return Err(cell_err(
                    pos,
                    1,
                    format!(
                        "the {dir} sweep must list pulses 0, 1, 2, ... once each; pulse {i} is missing or repeated (found {p})"
                    ),
                ));
            }
        }
        let values: Vec<f64> = rows.iter().map(|r| r.1).collect();
        // Report monotonicity problems at the row.
        for i in 1..values.len() {
            let ok = if up {
                values[i] > values[i - 1]
            } else {
                values[i] < values[i - 1]
            };
            if !ok {
                return Err(cell_err(
                    &rows[i].2,
                    2,
                    format!(
                        "the {dir} sweep must be strictly {} in pulse number: pulse {} has {} after {}; \
                         smooth or thin out the measured curve",
                        if up { "increasing" } else { "decreasing" },
                        i,
                        values[i],
                        values[i - 1]
                    ),
                ));
            }
        }
        if values.len() < 2 {
            return Err(err(
                None,
                format!(
                    "the {dir} sweep needs at least 2 rows, got {}",
                    values.len()
                ),
            ));
        }
        Ok(values)
    };
    let up = take(true)?;
    let down = take(false)?;
    Ok(TableCurve { up, down })
}
