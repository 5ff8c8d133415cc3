//! Tests of `plotdir.rs` (kept apart so the module reads as its code).

use super::*;

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aimsim-plotdir-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Feeds `records` (pulse, values) to `steps_vs_g` as a trace would.
fn steps(records: &[(u64, Vec<f32>)], pulses: u64, bins: usize) -> StepCurves {
    steps_vs_g(
        |f: &mut dyn FnMut(u64, &[f32])| {
            for (p, v) in records {
                f(*p, v);
            }
            Ok(())
        },
        pulses,
        bins,
    )
    .unwrap()
}

#[test]
fn steps_are_the_differences_of_the_state_by_direction_and_state() {
    // Two devices, 4 pulses up then 4 down. Device 0 steps +1 up and -0.5 down; device 1 steps +3
    // up and -1.5 down. States run 0..12; two bins: [0, 6) and [6, 12].
    let d0 = [0.0, 1.0, 2.0, 3.0, 4.0, 3.5, 3.0, 2.5, 2.0];
    let d1 = [0.0, 3.0, 6.0, 9.0, 12.0, 10.5, 9.0, 7.5, 6.0];
    let records: Vec<(u64, Vec<f32>)> = (0..9).map(|p| (p as u64, vec![d0[p], d1[p]])).collect();
    let c = steps(&records, 4, 2);
    assert_eq!(c.devices, 2);
    // Up, low bin: device 0 (4 steps of 1 from 0..3) and device 1 (steps from 0 and 3: 3 each).
    assert_eq!(c.up.len(), 2);
    assert_eq!((c.up[0].g, c.up[0].devices), (3.0, 2));
    assert_eq!(c.up[0].mean, 2.0);
    assert_eq!((c.up[0].p10, c.up[0].p90), (1.2, 2.8));
    // Up, high bin: only device 1 (steps from 6 and 9).
    assert_eq!((c.up[1].g, c.up[1].mean, c.up[1].devices), (9.0, 3.0, 1));
    // Down: device 0 (from 4, 3.5, 3, 2.5) in the low bin; device 1 from 12, 10.5, 9, 7.5 in the
    // high one.
    let down: Vec<(f32, f32, usize)> = c.down.iter().map(|b| (b.g, b.mean, b.devices)).collect();
    assert_eq!(down, [(3.0, -0.5, 1), (9.0, -1.5, 1)]);

    // Records 3 pulses apart: steps per pulse from pairs within one phase; the pair 3 -> 6
    // (pulse 4 up, pulses 5-6 down) is skipped.
    let sparse: Vec<(u64, Vec<f32>)> = [0, 3, 6].iter().map(|&p| records[p].clone()).collect();
    let c = steps(&sparse, 4, 1);
    assert_eq!(c.up.len(), 1);
    assert_eq!(c.up[0].mean, 2.0);
    assert!(c.down.is_empty());
    // Read as a protocol of 3 pulses per direction, 3 -> 6 is all down pulses: the states (3 -> 3,
    // 9 -> 9) give steps of 0, and 0 -> 3 all up: 1 and 3 per pulse.
    let c = steps(&sparse, 3, 1);
    assert_eq!((c.up.len(), c.down.len()), (1, 1));
    assert_eq!((c.up[0].mean, c.down[0].mean), (2.0, 0.0));
}

#[test]
fn trace_plot_names_devices_and_the_unit() {
    let dir = temp("trace");
    // A training trace of weight-unit devices: 2 devices, 3 records.
    let mut csv = String::from("step,pulses,column,layer,tile,array,role,row,col,conductance\n");
    for (s, v) in [(0, 0.1), (100, 0.2), (200, 0.15)] {
        csv += &format!("{s},0,0,0,1,0,G+,2,5,{v}\n{s},0,1,1,0,1,G-,0,3,{}\n", -v);
    }
    std::fs::write(dir.join("trace.csv"), csv).unwrap();
    std::fs::write(
        dir.join("trace_devices.csv"),
        "column,layer,tile,array,role,row,col,unit\n0,0,1,0,G+,2,5,w\n1,1,0,1,G-,0,3,w\n",
    )
    .unwrap();
    let files = trace_plot(&dir, &dir, "run").unwrap();
    assert_eq!(files, ["trace.svg", "trace.png"]);
    let svg = std::fs::read_to_string(dir.join("trace.svg")).unwrap();
    for text in [
        "weight (normalized units)",
        "layer 0 tile 1 (2, 5) G+",
        "layer 1 tile 0 (0, 3) G-",
        "2 traced device(s)",
    ] {
        assert!(svg.contains(text), "trace.svg lacks {text}");
    }
    assert!(!svg.contains("or weight"), "hedged axis label");
    // A folder without a trace draws nothing.
    std::fs::remove_file(dir.join("trace.csv")).unwrap();
    assert!(trace_plot(&dir, &dir, "run").unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn thinning_keeps_the_ends_and_bounds_the_points() {
    let mut t = Thinned::new();
    for i in 0..100_001 {
        t.push((i as f32, 0.0));
    }
    let p = t.finish();
    assert!(
        p.len() <= 2 * TRACE_POINTS + 1 && p.len() >= TRACE_POINTS,
        "{}",
        p.len()
    );
    assert_eq!(p.first().unwrap().0, 0.0);
    assert_eq!(p.last().unwrap().0, 100_000.0);
    // Evenly spaced (but for the last point).
    let gaps: std::collections::BTreeSet<u32> = p[..p.len() - 1]
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) as u32)
        .collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
}
