//! `aimsim sweep --emit-sbatch`: the Slurm job-array script of a sweep, quoted for the shell.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::output::{ensure_dir, write_atomic};

use super::*;

/// Quotes a word for a POSIX shell.
pub(super) fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Resources a Slurm task asks for: its wall-time limit and its memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmLimits {
    /// `#SBATCH --time`, in one of Slurm's forms (`M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`).
    pub time: String,
    /// `#SBATCH --mem`, a whole number with an optional unit `K`, `M`, `G` or `T` (megabytes without).
    pub mem: String,
}

impl Default for SlurmLimits {
    /// One day and 4 GB a task: above any shipped sweep's need on one node, below common partition caps.
    fn default() -> Self {
        SlurmLimits {
            time: "1-00:00:00".into(),
            mem: "4G".into(),
        }
    }
}

impl SlurmLimits {
    /// Checks both values against Slurm's syntax, naming the option and the accepted forms.
    pub fn validate(&self) -> Result<()> {
        let num = |s: &str| !s.is_empty() && s.len() <= 6 && s.chars().all(|c| c.is_ascii_digit());
        let clock = |s: &str| {
            let parts: Vec<&str> = s.split(':').collect();
            parts.len() <= 3 && parts.iter().all(|p| num(p))
        };
        let time_ok = match self.time.split_once('-') {
            Some((days, rest)) => num(days) && rest.split(':').count() <= 3 && clock(rest),
            None => clock(&self.time),
        };
        if !time_ok
            || self
                .time
                .split([':', '-'])
                .all(|p| p.chars().all(|c| c == '0'))
        {
            bail!(
                "--sbatch-time {:?}: give Slurm's time limit as minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S (e.g. 12:00:00 or 2-00:00:00), not zero",
                self.time
            );
        }
        let digits = self.mem.trim_end_matches(['K', 'M', 'G', 'T']);
        if !num(digits) || self.mem.len() > digits.len() + 1 || digits.chars().all(|c| c == '0') {
            bail!(
                "--sbatch-mem {:?}: give a whole number of megabytes, or one with a unit K, M, G or T (e.g. 4G)",
                self.mem
            );
        }
        Ok(())
    }
}

/// A path as one `#SBATCH` option value: Slurm reads these lines itself (no shell), expands `%`
/// patterns and takes a double-quoted value whole, so `%` is doubled and paths with blanks are quoted.
/// `pattern` (such as `%a`) is appended as it is.
pub(super) fn sbatch_value(path: &str, pattern: &str) -> Result<String> {
    if path.contains(['"', '\n', '\r']) {
        bail!(
            "--out {path:?}: Slurm cannot take a log path with a double quote or a line break; choose another folder"
        );
    }
    let v = path.replace('%', "%%") + pattern;
    Ok(if v.chars().any(char::is_whitespace) {
        format!("\"{v}\"")
    } else {
        v
    })
}

/// A Slurm job-array script that runs the sweep in `shards` tasks of `cpus` CPUs each, every task
/// writing into `<out>/shard-<i>`, plus the merge command to run when all have finished. Paths are
/// made absolute so the script runs from any folder, and quoted for the shell (and for Slurm's own
/// `#SBATCH` lines), so no character of a path or a `--set` is expanded when the job runs.
pub fn sbatch_script(
    path: &Path,
    sets: &[String],
    out: &Path,
    shards: usize,
    cpus: usize,
    limits: &SlurmLimits,
    plan: &Plan,
) -> Result<String> {
    if shards == 0 {
        bail!("--emit-sbatch needs at least 1 shard");
    }
    limits.validate()?;
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let scenario = abs(path).display().to_string();
    let out_abs = abs(out).display().to_string();
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "aimsim".into());
    let name: String = plan
        .scenario
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut set_args = String::new();
    for s in sets {
        set_args += &format!(" --set {}", sh_quote(s));
    }
    let per_shard = plan.points.len().div_ceil(shards);
    let out_q = sh_quote(&out_abs);
    let exe_q = sh_quote(&exe);
    let merge = format!("{exe_q} sweep merge {out_q}/shard-* --out {out_q}/merged");
    let log = sbatch_value(&format!("{out_abs}/logs/shard-"), "%a.log")?;
    Ok(format!(
        r#"#!/bin/bash
# Slurm job array for the sweep of {scenario}
# {points} point(s) in {shards} shard(s) (about {per_shard} each, round robin over the plan).
# Written by `aimsim sweep --emit-sbatch {shards}`. Submit with: sbatch {out_q}/sweep.sbatch
# A task that fails or is cancelled can be resubmitted (sbatch --array=<i> ...): finished points are kept.
#SBATCH --job-name=aimsim-{name}
#SBATCH --array=0-{last}
#SBATCH --cpus-per-task={cpus}
#SBATCH --time={time}
#SBATCH --mem={mem}
#SBATCH --output={log}
set -euo pipefail
AIMSIM="${{AIMSIM:-{exe_q}}}"
"$AIMSIM" sweep {scenario_q}{set_args} \
    --out {out_q}/shard-"$SLURM_ARRAY_TASK_ID" \
    --shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" \
    --threads "${{SLURM_CPUS_PER_TASK:-{cpus}}}"

# When every task has finished, merge (checks that each point is present exactly once):
#   "$AIMSIM" sweep merge {out_q}/shard-* --out {out_q}/merged
# or submit it as a dependent job:
#   sbatch --dependency=afterok:<job id> --wrap {merge_q}
"#,
        points = plan.points.len(),
        last = shards - 1,
        time = limits.time,
        mem = limits.mem,
        merge_q = sh_quote(&merge),
        scenario_q = sh_quote(&scenario),
    ))
}

/// Writes `<out>/sweep.sbatch` (and `<out>/logs/`, which Slurm needs to exist) and the plan.
pub fn emit_sbatch(
    path: &Path,
    sets: &[String],
    out: &Path,
    shards: usize,
    cpus: usize,
    limits: &SlurmLimits,
) -> Result<PathBuf> {
    limits.validate()?;
    let plan = write_plan_only(path, sets, out, None)?;
    let script = sbatch_script(path, sets, out, shards, cpus, limits, &plan)?;
    ensure_dir(&out.join("logs"))?;
    let file = out.join("sweep.sbatch");
    write_atomic(&file, script.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755));
    }
    Ok(file)
}
