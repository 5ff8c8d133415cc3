//! The stages of loading up to deserialization: parse the TOML, apply `--set` overrides, the values
//! of a sweep point and a variant's `set` table, expand a preset, and deserialize into the sections
//! (mapping serde's errors to located [`ScenarioError`]s).

use std::cell::RefCell;
use std::path::Path;

use toml::{Table, Value};

use super::locate::{Locator, Source, line_col, split_key};
use super::sections::ScenarioFile;
use super::{Loaded, Scenario, ScenarioError, convert};
use crate::presets;

/// Reads, overrides, expands, deserializes and validates a scenario file.
pub fn load(path: &Path, sets: &[String]) -> Result<Loaded, ScenarioError> {
    let display = path.display().to_string();
    let source = read_scenario_text(path)?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_str(&source, &display, &base_dir, sets).map(|(scenario, effective, overrides)| Loaded {
        scenario,
        path: path.to_path_buf(),
        source,
        effective,
        overrides,
    })
}

/// Reads a scenario file as UTF-8 text. Bytes that are not UTF-8 are reported at their line, column and
/// byte offset (a TOML file must be UTF-8), not as a bare "stream did not contain valid UTF-8".
pub fn read_scenario_text(path: &Path) -> Result<String, ScenarioError> {
    let display = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ScenarioError {
        origin: display.clone(),
        key: None,
        message: format!("cannot read the scenario file: {e}"),
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let good = std::str::from_utf8(&e.as_bytes()[..at]).unwrap_or_default();
        let (l, c) = line_col(good, at);
        ScenarioError {
            origin: format!("{display}:{l}:{c}"),
            key: None,
            message: format!(
                "byte {at} (0x{:02x}) is not UTF-8; a scenario file must be UTF-8 text",
                e.as_bytes()[at]
            ),
        }
    })
}

/// Parses TOML text, mapping a syntax error to `origin:line:col`.
fn parse_table(text: &str, origin: &str) -> Result<Table, ScenarioError> {
    text.parse::<Table>().map_err(|e| {
        let (l, c) = e.span().map_or((1, 1), |s| line_col(text, s.start));
        let mut message = format!("invalid TOML: {}", e.message().trim().replace('\n', " "));
        // The parser names no key for a duplicate: take it from the text at the error's position.
        if message.ends_with("duplicate key")
            && let Some(span) = e.span()
        {
            let rest = &text[span.start.min(text.len())..];
            let key = rest
                .lines()
                .next()
                .unwrap_or("")
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches(['[', ']']);
            if !key.is_empty() {
                message = format!("{message} `{key}` (each key may be set once per table)");
            }
        }
        ScenarioError {
            origin: format!("{origin}:{l}:{c}"),
            key: None,
            message,
        }
    })
}

/// Parses one `--set key=value` argument into a key path and a TOML value. Values that are not valid
/// TOML are taken as strings, so `--set device.model=soft-bounds` needs no quotes.
pub fn parse_override(raw: &str) -> Result<(Vec<String>, Value), ScenarioError> {
    let err = |message: String| ScenarioError {
        origin: format!("--set {raw}"),
        key: None,
        message,
    };
    let Some((key, value)) = raw.split_once('=') else {
        return Err(err(
            "expected <dotted.key>=<value>, e.g. --set device.c2c=0.02".into(),
        ));
    };
    let key = key.trim();
    let path = split_key(key);
    if path.iter().any(|s| {
        s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) {
        return Err(err(format!(
            "`{key}` is not a dotted key path (letters, digits, `_` and `-` separated by dots)"
        )));
    }
    let value = value.trim();
    let parsed = format!("v = {value}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(value.to_string()));
    Ok((path, parsed))
}

fn apply_override(
    table: &mut Table,
    path: &[String],
    value: Value,
    raw: &str,
) -> Result<(), ScenarioError> {
    let mut cur = table;
    for (i, seg) in path[..path.len() - 1].iter().enumerate() {
        let entry = cur
            .entry(seg.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        cur = match entry {
            Value::Table(t) => t,
            _ => {
                return Err(ScenarioError {
                    origin: format!("--set {raw}"),
                    key: Some(path[..=i].join(".")),
                    message: "is a value, not a section: cannot set a key inside it".into(),
                });
            }
        };
    }
    cur.insert(path[path.len() - 1].clone(), value);
    Ok(())
}

/// Overlays `top` onto `base`, merging sub-tables key by key.
fn deep_merge(base: &mut Table, top: Table) {
    for (k, v) in top {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(t)) => deep_merge(b, t),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// [`load`] on text already read. `base_dir` resolves relative data files.
pub fn load_str(
    text: &str,
    origin: &str,
    base_dir: &Path,
    sets: &[String],
) -> Result<(Scenario, String, Vec<String>), ScenarioError> {
    load_variant_str(text, origin, base_dir, sets, None)
}

/// Loads a scenario as seen by one of its `[[variant]]`s: the variant's `set` table is applied after the
/// command line's overrides.
pub fn load_variant_str(
    text: &str,
    origin: &str,
    base_dir: &Path,
    sets: &[String],
    variant: Option<&str>,
) -> Result<(Scenario, String, Vec<String>), ScenarioError> {
    load_point_str(text, origin, base_dir, sets, variant, &[])
}

/// One value a sweep point sets: dotted key path, value, and where it was written (for errors).
#[derive(Debug, Clone)]
pub struct PointSet {
    /// Dotted key path.
    pub key: String,
    /// The value.
    pub value: Value,
    /// Where the value comes from, e.g. `sweep.toml:12:3 (sweep point p0003)`.
    pub origin: String,
}

/// [`load_variant_str`] plus the values of one sweep point, applied after the command line's overrides
/// exactly like `--set` (so any key path works), with errors pointing at `PointSet::origin`.
pub fn load_point_str(
    text: &str,
    origin: &str,
    base_dir: &Path,
    sets: &[String],
    variant: Option<&str>,
    point: &[PointSet],
) -> Result<(Scenario, String, Vec<String>), ScenarioError> {
    Parsed::new(text, origin, sets)?.load(base_dir, variant, point)
}

/// The data files built into a preset: (file name, contents).
type PresetFiles = &'static [(&'static str, &'static str)];

/// A scenario file parsed once, with the command line's `--set` overrides applied: what every point of
/// a sweep starts from, so that expanding a plan parses the file once rather than once per point.
pub struct Parsed<'a> {
    text: &'a str,
    origin: &'a str,
    table: Table,
    overrides: Vec<(Vec<String>, String)>,
    applied: Vec<String>,
    /// Presets already parsed: their `[device]` tables, by name.
    presets: RefCell<Vec<(String, Table)>>,
}

impl<'a> Parsed<'a> {
    /// Parses `text` (named `origin` in errors) and applies `sets`.
    pub fn new(text: &'a str, origin: &'a str, sets: &[String]) -> Result<Self, ScenarioError> {
        let mut table = parse_table(text, origin)?;
        let mut overrides = Vec::new();
        for raw in sets {
            let (path, value) = parse_override(raw)?;
            apply_override(&mut table, &path, value, raw)?;
            overrides.push((path, format!("--set {raw}")));
        }
        Ok(Parsed {
            text,
            origin,
            table,
            overrides,
            applied: sets.to_vec(),
            presets: RefCell::new(Vec::new()),
        })
    }

    /// Loads the scenario as one point (`point`, its values applied after the overrides) of one
    /// variant (its `set` table applied last) sees it: the validated scenario, the effective
    /// configuration as TOML and the overrides applied.
    pub fn load(
        &self,
        base_dir: &Path,
        variant: Option<&str>,
        point: &[PointSet],
    ) -> Result<(Scenario, String, Vec<String>), ScenarioError> {
        let (table, mut locator, applied) = self.point_table(variant, point)?;
        let (table, preset_files) = self.expand_preset(table, &mut locator)?;
        let effective = toml::to_string(&table).unwrap_or_default();
        let scenario = deserialize_convert(table, &locator, self.origin, base_dir, preset_files)?;
        Ok((scenario, effective, applied))
    }

    /// The effective configuration of a point as TOML (what [`Parsed::load`] returns second), without
    /// validating it: the cheap part of a point that a sweep plan needs for every point.
    pub fn effective(&self, point: &[PointSet]) -> Result<String, ScenarioError> {
        let (table, mut locator, _) = self.point_table(None, point)?;
        let (table, _) = self.expand_preset(table, &mut locator)?;
        Ok(toml::to_string(&table).unwrap_or_default())
    }

    /// The table with a point's values and a variant's `set` applied, the locator of its keys and the
    /// overrides applied, in order.
    fn point_table(
        &self,
        variant: Option<&str>,
        point: &[PointSet],
    ) -> Result<(Table, Locator<'a>, Vec<String>), ScenarioError> {
        let (text, origin) = (self.text, self.origin);
        let mut table = self.table.clone();
        let mut overrides = self.overrides.clone();
        let mut applied = self.applied.clone();
        for p in point {
            let path = split_key(&p.key);
            let raw = format!("{}={}", p.key, p.value);
            apply_override(&mut table, &path, p.value.clone(), &raw).map_err(|mut e| {
                e.origin = p.origin.clone();
                e
            })?;
            overrides.push((path, p.origin.clone()));
            applied.push(format!("sweep: {raw}"));
        }
        if let Some(name) = variant {
            let entry = table
                .get("variant")
                .and_then(Value::as_array)
                .and_then(|vs| {
                    vs.iter()
                        .find(|v| v.get("name").and_then(Value::as_str) == Some(name))
                })
                .cloned();
            let Some(entry) = entry else {
                return Err(ScenarioError {
                    origin: origin.to_string(),
                    key: Some("variant".into()),
                    message: format!("no [[variant]] is named `{name}`"),
                });
            };
            if let Some(Value::Table(set)) = entry.get("set") {
                for (k, v) in set {
                    let path = split_key(k);
                    let raw = format!("{k}={v}");
                    let at = variant_set_position(text, name, k)
                        .map(|(l, c)| format!(":{l}:{c}"))
                        .unwrap_or_default();
                    let label = format!("{origin}{at}: [[variant]] `{name}` set {k} = {v}");
                    if path.iter().any(|p| p.is_empty()) || path[0] == "variant" {
                        return Err(ScenarioError {
                            origin: label,
                            key: Some(k.clone()),
                            message: "is not a dotted key path of a scenario key".into(),
                        });
                    }
                    apply_override(&mut table, &path, v.clone(), &raw).map_err(|mut e| {
                        e.origin = label.clone();
                        e
                    })?;
                    overrides.push((path, label));
                    applied.push(format!("variant {name}: {raw}"));
                }
            }
        }
        let locator = Locator {
            overrides,
            sources: vec![Source {
                origin: origin.to_string(),
                text,
            }],
        };
        Ok((table, locator, applied))
    }

    /// Preset expansion: the preset's `[device]` table is the base, the user's keys override it.
    /// Returns the table and the preset's data files; the locator learns the preset's text.
    fn expand_preset(
        &self,
        mut table: Table,
        locator: &mut Locator<'a>,
    ) -> Result<(Table, PresetFiles), ScenarioError> {
        let name = match table.get("device").and_then(|d| d.get("preset")) {
            None => return Ok((table, &[])),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(locator.error(
                    &split_key("device.preset"),
                    "must be a string naming a built-in preset",
                ));
            }
        };
        let Some(p) = presets::find(&name) else {
            return Err(locator.error(
                &split_key("device.preset"),
                format!(
                    "unknown preset `{name}`; built-in presets: {}",
                    presets::PRESETS
                        .iter()
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        let preset_origin = format!("preset `{}` (scenarios/devices/{}.toml)", p.name, p.name);
        let cached = self
            .presets
            .borrow()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.clone());
        let mut base = match cached {
            Some(t) => t,
            None => {
                let mut preset_table = parse_table(p.toml, &preset_origin)?;
                let Some(Value::Table(mut base)) = preset_table.remove("device") else {
                    return Err(ScenarioError {
                        origin: preset_origin,
                        key: Some("device".into()),
                        message: "a preset needs a [device] section".into(),
                    });
                };
                base.remove("preset");
                self.presets.borrow_mut().push((name.clone(), base.clone()));
                base
            }
        };
        if let Some(Value::Table(user)) = table.remove("device") {
            // Keys of the preset that do not fit a model the user switched to are reported (in the
            // preset's file) by the model-key check in `convert`.
            deep_merge(&mut base, user);
        }
        base.insert("preset".into(), Value::String(name));
        table.insert("device".into(), Value::Table(base));
        locator.sources.push(Source {
            origin: preset_origin,
            text: p.toml,
        });
        Ok((table, p.files))
    }
}

/// Deserializes an expanded table into the sections (serde's errors located) and converts them.
fn deserialize_convert(
    table: Table,
    locator: &Locator,
    origin: &str,
    base_dir: &Path,
    preset_files: &[(&str, &str)],
) -> Result<Scenario, ScenarioError> {
    let file: ScenarioFile = serde_path_to_error::deserialize(Value::Table(table)).map_err(|e| {
        let mut path: Vec<String> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                serde_path_to_error::Segment::Map { key } | serde_path_to_error::Segment::Enum { variant: key } => {
                    Some(key.clone())
                }
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        let message = e.inner().to_string();
        let mut message = message.trim().trim_end_matches('.').replace('\n', " ");
        // The TOML value deserializer appends the path itself; the error already names the key.
        if let Some(idx) = message.rfind(" in `") {
            message.truncate(idx);
        }
        let message = readable(&message);
        // Unknown fields are reported at the parent: name the field itself.
        if let Some(rest) = message.strip_prefix("unknown field `")
            && let Some((field, _)) = rest.split_once('`')
            && path.last().map(String::as_str) != Some(field)
        {
            path.push(field.to_string());
        }
        if path.is_empty() {
            return ScenarioError {
                origin: origin.to_string(),
                key: None,
                message: format!("{message} (a scenario needs a [scenario] section with `name`, and a [device] section)"),
            };
        }
        locator.error(&path, message)
    })?;

    convert(file, locator, base_dir, preset_files)
}

/// A deserializer's message as a person reads it: Rust type names become what they accept, and an
/// unknown field or value gets the closest accepted name as a suggestion
/// (`unknown field `lrr` (did you mean `lr`?), expected one of ...`).
pub(crate) fn readable(message: &str) -> String {
    let mut m = message.to_string();
    for (rust, plain) in [
        ("expected u8", "expected a whole number >= 0"),
        ("expected u16", "expected a whole number >= 0"),
        ("expected u32", "expected a whole number >= 0"),
        ("expected u64", "expected a whole number >= 0"),
        ("expected usize", "expected a whole number >= 0"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected f32", "expected a number"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
    ] {
        if let Some(i) = m.find(rust)
            && !m[i + rust.len()..].starts_with(|c: char| c.is_alphanumeric())
        {
            m.replace_range(i..i + rust.len(), plain);
        }
    }
    for lead in ["unknown field `", "unknown variant `"] {
        let Some(rest) = m.strip_prefix(lead) else {
            continue;
        };
        let Some((given, tail)) = rest.split_once('`') else {
            continue;
        };
        let Some(list) = tail.split_once("expected ").map(|(_, l)| l) else {
            continue;
        };
        let best = list
            .split(['`'])
            .skip(1)
            .step_by(2)
            .map(|c| (strsim::jaro_winkler(given, c), c))
            .filter(|(score, _)| *score >= 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((_, c)) = best {
            let at = lead.len() + given.len() + 1;
            m.insert_str(at, &format!(" (did you mean `{c}`?)"));
        }
        break;
    }
    m
}

/// Line and column (1-based) of key `key` in the `set` of the `[[variant]]` named `name`, found in the
/// file's text: the first line after that variant's `name = "..."` line (and before the next
/// `[[variant]]`) that holds the key, quoted or bare.
fn variant_set_position(text: &str, name: &str, key: &str) -> Option<(usize, usize)> {
    let quoted = format!("\"{key}\"");
    let mut inside = false;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("[[variant]]") {
            if inside {
                return None;
            }
            continue;
        }
        if !inside {
            let named = t
                .strip_prefix("name")
                .map(str::trim_start)
                .and_then(|r| r.strip_prefix('='));
            if let Some(v) = named
                && v.trim().trim_matches(['"', '\'']) == name
            {
                inside = true;
            }
            continue;
        }
        if let Some(col) = line.find(&quoted).or_else(|| {
            line.find(key).filter(|i| {
                line[i + key.len()..].trim_start().starts_with('=')
                    && !line[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '.')
            })
        }) {
            return Some((n + 1, col + 1));
        }
    }
    None
}

#[cfg(test)]
mod position_tests {
    #[test]
    fn messages_suggest_the_closest_name_and_speak_plainly() {
        let m = super::readable(
            "unknown field `lrr`, expected one of `dataset`, `lr`, `lr_scale`, `seeds`",
        );
        assert_eq!(
            m,
            "unknown field `lrr` (did you mean `lr`?), expected one of `dataset`, `lr`, `lr_scale`, `seeds`"
        );
        let m = super::readable(
            "unknown variant `bidirectonal`, expected one of `bidirectional`, `unidirectional`",
        );
        assert!(m.contains("(did you mean `bidirectional`?)"), "{m}");
        // Nothing close: no suggestion.
        let m = super::readable("unknown field `zz_not_a_key`, expected `a` or `b`");
        assert!(!m.contains("did you mean"), "{m}");
        let m = super::readable("invalid type: floating point `1.5`, expected u32");
        assert_eq!(
            m,
            "invalid type: floating point `1.5`, expected a whole number >= 0"
        );
    }

    #[test]
    fn a_variant_set_key_is_found_at_its_line() {
        let text = "[[variant]]\nname = \"a\"\nset = { \"train.lr\" = 0.1 }\n\n[[variant]]\nname = \"b\"\nset = { \"train.lrr\" = 0.1, x = 1 }\n";
        assert_eq!(
            super::variant_set_position(text, "b", "train.lrr"),
            Some((7, 9))
        );
        assert_eq!(
            super::variant_set_position(text, "a", "train.lr"),
            Some((3, 9))
        );
        assert_eq!(super::variant_set_position(text, "b", "x"), Some((7, 28)));
        assert_eq!(super::variant_set_position(text, "c", "train.lr"), None);
    }
}
