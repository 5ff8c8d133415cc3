//! Property-test settings shared by the test suites of the workspace (included by path).

use proptest::prelude::ProptestConfig;
use proptest::test_runner::RngSeed;

/// The seed of [`props`] when the environment names none.
pub const PROPTEST_SEED: u64 = 20_261_207;

/// Property-test settings: `cases` cases from a fixed seed, so that every run of the suite (CI included)
/// tries the same inputs; `PROPTEST_RNG_SEED=<n>` in the environment explores other inputs (see
/// docs/testing.md). Failures are not persisted: a counterexample becomes a named test.
pub fn props(cases: u32) -> ProptestConfig {
    let seeded = std::env::var_os("PROPTEST_RNG_SEED").is_some();
    let default = ProptestConfig::default();
    ProptestConfig {
        cases,
        failure_persistence: None,
        rng_seed: if seeded {
            default.rng_seed
        } else {
            RngSeed::Fixed(PROPTEST_SEED)
        },
        ..default
    }
}
