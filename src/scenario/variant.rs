//! `[[variant]]`: the names and groups of the variants a scenario compares (their `set` tables are
//! applied while loading, see `load`).

use super::ScenarioError;
use super::locate::{Locator, split_key};
use super::sections::VariantSection;
use super::train::TrainSpec;

/// Names of the variants, in file order, and the group of each.
pub type Variants = (Vec<String>, Vec<Option<String>>);

/// Validates the `[[variant]]` list: names that can be folder names, each once; groups that are
/// words and have a validation split to choose by; and something to train (`[train]` or `[local]`).
pub fn variants(
    list: Option<Vec<VariantSection>>,
    train: Option<&TrainSpec>,
    has_local: bool,
    loc: &Locator,
) -> Result<Variants, ScenarioError> {
    let mut variants: Vec<String> = Vec::new();
    let mut variant_groups: Vec<Option<String>> = Vec::new();
    for (k, v) in list.unwrap_or_default().into_iter().enumerate() {
        if let Some(g) = &v.group {
            let gkey = split_key(&format!("variant.{k}.group"));
            if g.is_empty() || g.chars().any(char::is_whitespace) {
                return Err(loc.error(
                    &gkey,
                    format!("`{g}`: a group name is a word (no spaces), e.g. \"unidirectional\""),
                ));
            }
            match train {
                Some(t) if t.validation > 0 => {}
                _ => {
                    return Err(loc.error(
                        &gkey,
                        "choosing among a group's variants needs a validation split: set \
                         train.validation to the number of training samples to hold out",
                    ));
                }
            }
        }
        let key = split_key(&format!("variant.{k}.name"));
        if v.name.is_empty()
            || !v
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(loc.error(
                &key,
                format!(
                    "`{}`: a variant name becomes a folder name: use letters, digits, `-` and `_`",
                    v.name
                ),
            ));
        }
        if variants.contains(&v.name) {
            return Err(loc.error(&key, format!("two variants are named `{}`", v.name)));
        }
        let _ = v.set;
        variants.push(v.name);
        variant_groups.push(v.group);
    }
    if !variants.is_empty() && train.is_none() && !has_local {
        return Err(loc.error(
            &split_key("variant"),
            "variants compare training runs: add a [train] or [local] section",
        ));
    }
    Ok((variants, variant_groups))
}
