//! Built-in device presets: the files under `scenarios/devices/`, compiled into the binary so that
//! `preset = "<name>"` works from any scenario, anywhere.

/// A built-in preset: its name, its scenario text, and the data files it references.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    /// Name used in `preset = "..."` (the file stem).
    pub name: &'static str,
    /// The preset's scenario file.
    pub toml: &'static str,
    /// Data files next to it: (file name, contents).
    pub files: &'static [(&'static str, &'static str)],
}

macro_rules! preset {
    ($name:literal) => {
        Preset {
            name: $name,
            toml: include_str!(concat!("../scenarios/devices/", $name, ".toml")),
            files: &[],
        }
    };
    ($name:literal, $($file:literal),+) => {
        Preset {
            name: $name,
            toml: include_str!(concat!("../scenarios/devices/", $name, ".toml")),
            files: &[$(($file, include_str!(concat!("../scenarios/devices/", $file)))),+],
        }
    };
}

/// Every built-in preset, in the order `aimsim presets` lists them.
pub const PRESETS: &[Preset] = &[
    preset!("neurosim-ag-a-si"),
    preset!("neurosim-taox-hfox"),
    preset!("neurosim-pcmo"),
    preset!("neurosim-alox-hfo2"),
    preset!("neurosim-gst-pcm"),
    preset!("neurosim-epiram"),
    preset!("neurosim-hzo-fefet"),
    preset!("aihwkit-reram-es"),
    preset!("aihwkit-reram-sb"),
    preset!("aihwkit-capacitor"),
    preset!("aihwkit-ecram"),
    preset!("aihwkit-gokmen-vlasov"),
    preset!("aihwkit-idealized"),
    preset!("measured-table-example", "measured-table-example.csv"),
];

/// The preset called `name`.
pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}
