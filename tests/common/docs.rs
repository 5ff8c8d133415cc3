//! The key tables of docs/scenarios.md, read row by row (shared by the reference and key-audit tests).

use std::collections::BTreeMap;

const DOC: &str = include_str!("../../docs/scenarios.md");

/// One documented key.
#[derive(Debug, Clone)]
pub struct Row {
    /// Dotted section path (`io`, `device.d2d.*`, `variant`, ...).
    pub section: String,
    /// The key's name.
    pub key: String,
    /// The type column.
    pub ty: String,
    /// The default column.
    pub default: String,
}

/// Every row of every key table of docs/scenarios.md, with the section its heading names.
pub fn documented() -> Vec<Row> {
    let mut rows = Vec::new();
    let mut sections: Vec<String> = Vec::new();
    let mut cols: Option<BTreeMap<String, usize>> = None;
    for line in DOC.lines() {
        if line.starts_with('#') {
            // `## `[io]` and `[io.backward]``: the table documents both.
            sections = line
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|s| s.starts_with('['))
                .map(|s| s.trim_matches(|c| c == '[' || c == ']').to_string())
                .collect();
            cols = None;
            continue;
        }
        let cells: Vec<String> = line.split('|').map(|c| c.trim().to_string()).collect();
        if !line.starts_with('|') {
            cols = None;
            continue;
        }
        if cells.get(1).map(String::as_str) == Some("key") {
            let map: BTreeMap<String, usize> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| (c.clone(), i))
                .collect();
            for need in ["type", "default", "meaning"] {
                assert!(
                    map.contains_key(need),
                    "docs/scenarios.md: the key table under {sections:?} lacks a `{need}` column"
                );
            }
            cols = Some(map);
            continue;
        }
        let Some(c) = &cols else { continue };
        if cells[1].starts_with("---") {
            continue;
        }
        let key = cells[1].trim_matches('`').to_string();
        for cell in ["type", "default", "meaning"] {
            assert!(
                !cells[c[cell]].is_empty(),
                "docs/scenarios.md: `{key}` under {sections:?} has an empty {cell}"
            );
        }
        for s in &sections {
            // `backward` is the sub-table itself, a key of [io] only; `zero_grad_at_bound` is a rule of the
            // forward read, refused in [io.backward].
            if s == "io.backward" && (key == "backward" || key == "zero_grad_at_bound") {
                continue;
            }
            let section = if s == "device.d2d" {
                "device.d2d.*".to_string()
            } else {
                s.clone()
            };
            rows.push(Row {
                section,
                key: key.clone(),
                ty: cells[c["type"]].clone(),
                default: cells[c["default"]].clone(),
            });
        }
    }
    rows
}
