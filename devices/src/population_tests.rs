//! Tests of `population.rs` (kept apart so the module reads as its code).

use super::*;
use crate::spec::{StepParams, Variation};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

#[test]
fn first_devices_do_not_depend_on_population_size() {
    let mut spec = DeviceSpec::new(Model::Step(StepParams::new(StepKind::SoftBounds, 0.01)));
    spec.d2d.push((
        Param::DwMin,
        Variation {
            dist: crate::spec::Dist::Normal,
            spread: crate::spec::Spread::Relative(0.3),
        },
    ));
    spec.stuck_max = 0.1;
    let mut a = Population::new(&spec, 10, &mut Pcg64Mcg::seed_from_u64(1)).unwrap();
    let mut b = Population::new(&spec, 1000, &mut Pcg64Mcg::seed_from_u64(1)).unwrap();
    let mut ra = Pcg64Mcg::seed_from_u64(2);
    let mut rb = Pcg64Mcg::seed_from_u64(2);
    for i in 0..10 {
        a.pulse(i, 5, &mut ra);
        b.pulse(i, 5, &mut rb);
        assert_eq!(a.state(i), b.state(i));
        assert_eq!(a.bounds(i), b.bounds(i));
    }
}

#[test]
fn states_round_trip_and_foreign_states_are_refused() {
    let spec = DeviceSpec::new(Model::Step(StepParams::new(StepKind::SoftBounds, 0.01)));
    let mut a = Population::new(&spec, 6, &mut Pcg64Mcg::seed_from_u64(1)).unwrap();
    let mut rng = Pcg64Mcg::seed_from_u64(2);
    for i in 0..6 {
        a.pulse(i, 7 * i as i32, &mut rng);
    }
    let saved = a.states().to_vec();
    let mut b = Population::new(&spec, 6, &mut Pcg64Mcg::seed_from_u64(1)).unwrap();
    b.set_states(&saved).unwrap();
    assert_eq!(a, b);
    assert!(b.set_states(&saved[..5]).is_err(), "wrong length accepted");
    let mut bad = saved.clone();
    bad[3] = 5.0;
    let e = b.set_states(&bad).unwrap_err();
    assert!(e.0.contains("device 3"), "{e}");
    bad[3] = f32::NAN;
    assert!(b.set_states(&bad).is_err(), "NaN accepted");
    assert_eq!(a, b, "a refused state changed the population");
}
