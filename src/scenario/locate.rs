//! Where a key was written: a `--set` argument, a line and column of the user's file, or of the
//! preset the device section started from. Every [`ScenarioError`] about a key is made here.

use std::ops::Range;

use super::ScenarioError;

/// One text a key may have come from.
pub struct Source<'a> {
    /// The file name, or the preset's name and file.
    pub origin: String,
    /// Its text.
    pub text: &'a str,
}

/// Where a dotted key path was written: the overrides win, then the user's file, then the preset.
pub struct Locator<'a> {
    /// Key paths set by `--set`, sweep points and variants, with the origin each error names.
    pub overrides: Vec<(Vec<String>, String)>,
    /// The user's file first, then the preset's.
    pub sources: Vec<Source<'a>>,
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Span of the key (or of an array element) at `path`, or of the deepest ancestor written in `text`.
fn find_span(text: &str, path: &[String]) -> Option<(Range<usize>, bool)> {
    let root = toml::de::DeTable::parse(text).ok()?;
    find_span_in(root.get_ref(), path)
}

/// [`find_span`] in a parsed document.
fn find_span_in(root: &toml::de::DeTable, path: &[String]) -> Option<(Range<usize>, bool)> {
    let mut table = root;
    let mut best: Option<Range<usize>> = None;
    let mut value: Option<&toml::Spanned<toml::de::DeValue>> = None;
    for (depth, seg) in path.iter().enumerate() {
        if let Some(v) = value {
            match v.get_ref() {
                toml::de::DeValue::Table(t) => table = t,
                toml::de::DeValue::Array(a) => {
                    if let Ok(idx) = seg.parse::<usize>()
                        && let Some(el) = a.get(idx)
                    {
                        best = Some(el.span());
                        value = Some(el);
                        if depth + 1 == path.len() {
                            return best.map(|s| (s, true));
                        }
                        continue;
                    }
                    return best.map(|s| (s, false));
                }
                _ => return best.map(|s| (s, false)),
            }
        }
        let Some((k, v)) = table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == seg.as_str())
        else {
            return best.map(|s| (s, false));
        };
        best = Some(k.span());
        value = Some(v);
    }
    best.map(|s| (s, true))
}

impl Locator<'_> {
    /// An error about the key at `key`, located where it was written.
    pub fn error(&self, key: &[String], message: impl Into<String>) -> ScenarioError {
        let dotted = key.join(".");
        for (path, origin) in &self.overrides {
            let n = path.len().min(key.len());
            if path[..n] == key[..n] {
                return ScenarioError {
                    origin: origin.clone(),
                    key: Some(dotted),
                    message: message.into(),
                };
            }
        }
        // Exact location first in any source, then the deepest ancestor in the user's file.
        let mut fallback = None;
        for src in &self.sources {
            if let Some((span, exact)) = find_span(src.text, key) {
                let (l, c) = line_col(src.text, span.start);
                let origin = format!("{}:{l}:{c}", src.origin);
                if exact {
                    return ScenarioError {
                        origin,
                        key: Some(dotted),
                        message: message.into(),
                    };
                }
                fallback.get_or_insert(origin);
            }
        }
        ScenarioError {
            origin: fallback.unwrap_or_else(|| self.sources[0].origin.clone()),
            key: Some(dotted),
            message: message.into(),
        }
    }
}

/// `origin:line:col` of the key at `path` in `text` (or of its deepest written ancestor), else `origin`.
pub fn key_origin(text: &str, origin: &str, path: &[String]) -> String {
    match find_span(text, path) {
        Some((span, _)) => {
            let (l, c) = line_col(text, span.start);
            format!("{origin}:{l}:{c}")
        }
        None => origin.to_string(),
    }
}

/// [`key_origin`] of many key paths of one text, which is parsed once.
pub fn key_origins(text: &str, origin: &str, paths: &[Vec<String>]) -> Vec<String> {
    let root = toml::de::DeTable::parse(text).ok();
    paths
        .iter()
        .map(
            |path| match root.as_ref().and_then(|r| find_span_in(r.get_ref(), path)) {
                Some((span, _)) => {
                    let (l, c) = line_col(text, span.start);
                    format!("{origin}:{l}:{c}")
                }
                None => origin.to_string(),
            },
        )
        .collect()
}

/// `a.b.c` as a key path.
pub fn split_key(dotted: &str) -> Vec<String> {
    dotted.split('.').map(str::to_string).collect()
}
