//! Peripheral pipeline of one analog matrix-vector multiplication: noise management, DAC, analog MVM
//! with output and weight-read noise, ADC with clipping, bound management, rescaling.

use aimsim_devices::normal::standard_normal;
use rand::Rng;

/// Settings of one direction (forward or backward) of a tile's periphery. Defaults follow aihwkit's
/// (7-bit DAC, 9-bit ADC, output bound 12, output noise 0.06, abs-max noise management, iterative
/// bound management).
#[derive(Debug, Clone, PartialEq)]
pub struct IoConfig {
    /// DAC bits; `None` = ideal (no input quantization).
    pub dac_bits: Option<u32>,
    /// ADC bits; `None` = ideal (no output quantization).
    pub adc_bits: Option<u32>,
    /// Inputs are clipped to `[-inp_bound, inp_bound]` after noise management.
    pub inp_bound: f32,
    /// Outputs are clipped to `[-out_bound, out_bound]` (in units of a full-scale weight times a
    /// full-scale input); `f32::INFINITY` = no clipping.
    pub out_bound: f32,
    /// Sigma of additive output noise, same units as `out_bound`.
    pub out_noise: f32,
    /// Sigma of weight-read noise, in normalized weight units; enters an output as
    /// `w_noise * ||x_q||_2 * xi` (the sum of independent per-weight fluctuations).
    pub w_noise: f32,
    /// Divide the input by `max |x|` before the DAC (and multiply it back after the ADC).
    pub noise_management: bool,
    /// When an output clips, halve the input and convert again (up to `max_bm_iterations` times).
    pub bound_management: bool,
    /// Largest number of halvings of bound management.
    pub max_bm_iterations: u32,
    /// aihwkit's resolution cap of bound management (`max_bm_res`): with a DAC, the halving stops once
    /// the input reduction exceeds `max_bm_res / inp_res`, `inp_res = 1 / (2^dac_bits - 2)` (31.5 for
    /// 0.25 and 7 bits: at most five halvings); the input would otherwise fall below a few DAC steps.
    /// 0 = no such cap.
    pub max_bm_res: f32,
    /// aihwkit's gradient rule at the output bound (its analog tiles' `handle_output_bound`): an output
    /// of a forward read whose magnitude reached `0.999 out_bound` (in the tile's own units, after noise
    /// and bound management scaled it back) passes no error into the next backward read of that tile; the
    /// error still drives the layer's own update. Only meaningful on the forward periphery.
    pub zero_grad_at_bound: bool,
}

impl Default for IoConfig {
    fn default() -> Self {
        IoConfig {
            dac_bits: Some(7),
            adc_bits: Some(9),
            inp_bound: 1.0,
            out_bound: 12.0,
            out_noise: 0.06,
            w_noise: 0.0,
            noise_management: true,
            bound_management: true,
            max_bm_iterations: 10,
            max_bm_res: 0.25,
            zero_grad_at_bound: false,
        }
    }
}

impl IoConfig {
    /// A perfect periphery: no quantization, no noise, no clipping, no scaling.
    pub fn ideal() -> Self {
        IoConfig {
            dac_bits: None,
            adc_bits: None,
            inp_bound: f32::INFINITY,
            out_bound: f32::INFINITY,
            out_noise: 0.0,
            w_noise: 0.0,
            noise_management: false,
            bound_management: false,
            max_bm_iterations: 0,
            max_bm_res: 0.0,
            zero_grad_at_bound: false,
        }
    }

    /// Checks the settings; returns the offending field and what is allowed.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (k, b) in [("dac_bits", self.dac_bits), ("adc_bits", self.adc_bits)] {
            if let Some(b) = b
                && !(2..=24).contains(&b)
            {
                return Err((k, format!("a converter needs 2 to 24 bits, got {b}")));
            }
        }
        if self.inp_bound.is_nan() || self.inp_bound <= 0.0 {
            return Err(("inp_bound", format!("must be > 0, got {}", self.inp_bound)));
        }
        if self.out_bound.is_nan() || self.out_bound <= 0.0 {
            return Err(("out_bound", format!("must be > 0, got {}", self.out_bound)));
        }
        // A converter spreads its levels over the bound: an infinite bound leaves no finite step.
        if self.dac_bits.is_some() && !self.inp_bound.is_finite() {
            return Err((
                "inp_bound",
                "with a DAC (dac_bits > 0) the input bound must be finite; inf only with dac_bits = 0"
                    .into(),
            ));
        }
        if self.adc_bits.is_some() && !self.out_bound.is_finite() {
            return Err((
                "out_bound",
                "with an ADC (adc_bits > 0) the output bound must be finite; inf only with adc_bits = 0"
                    .into(),
            ));
        }
        for (k, v) in [("out_noise", self.out_noise), ("w_noise", self.w_noise)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err((
                    k,
                    format!("is a standard deviation and must be >= 0, got {v}"),
                ));
            }
        }
        if !(self.max_bm_res.is_finite() && self.max_bm_res >= 0.0) {
            return Err((
                "max_bm_res",
                format!("must be a finite number >= 0, got {}", self.max_bm_res),
            ));
        }
        if self.max_bm_iterations > 30 {
            return Err((
                "max_bm_iterations",
                format!(
                    "at most 30 halvings are allowed, got {}",
                    self.max_bm_iterations
                ),
            ));
        }
        Ok(())
    }

    /// Quantization step of the DAC over `[-inp_bound, inp_bound]`: `2^bits - 1` levels symmetric
    /// around 0, so the step is `2 inp_bound / (2^bits - 2)`.
    pub fn dac_step(&self) -> Option<f32> {
        self.dac_bits
            .map(|b| 2.0 * self.inp_bound / ((1u64 << b) - 2) as f32)
    }

    /// The largest input reduction bound management may reach before it accepts a clipped output
    /// (`max_bm_res (2^dac_bits - 2)`; infinite without a DAC or a cap).
    pub fn bm_reduction_cap(&self) -> f32 {
        match self.dac_bits {
            Some(b) if self.max_bm_res > 0.0 => self.max_bm_res * ((1u64 << b) - 2) as f32,
            _ => f32::INFINITY,
        }
    }

    /// Quantization step of the ADC over `[-out_bound, out_bound]`, as for the DAC.
    pub fn adc_step(&self) -> Option<f32> {
        self.adc_bits
            .map(|b| 2.0 * self.out_bound / ((1u64 << b) - 2) as f32)
    }
}

/// Rounds to the nearest multiple of `step` (ties away from zero).
#[inline]
pub fn quantize(v: f32, step: f32) -> f32 {
    (v / step).round() * step
}

/// What one converted MVM cost, for the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MvmReport {
    /// Conversions performed: 1 + number of bound-management retries (0 when the input was all zero).
    pub passes: u32,
    /// True when the last pass still clipped at least one output.
    pub clipped: bool,
}

/// Runs the periphery around an analog MVM. `analog(xq, y)` must write the ideal product of the tile's
/// weights with the quantized input `xq` into `y` (normalized weight units). The result `y` is in the
/// same units as `x` times weights. `xq` is scratch space of the input's length.
///
/// `read_sigma` is the devices' own read noise per weight (normalized weight units), drawn afresh at
/// every pass: each output `i` then carries `sum_j e_ij xq_j` with independent `e_ij ~ N(0, read_sigma)`,
/// which is exactly `read_sigma ||xq|| xi_i`, one draw per output, independent across outputs (the
/// devices of different outputs differ). It adds to the periphery's `w_noise` in quadrature.
pub fn convert<R: Rng + ?Sized>(
    io: &IoConfig,
    read_sigma: f32,
    x: &[f32],
    y: &mut [f32],
    xq: &mut [f32],
    rng: &mut R,
    mut analog: impl FnMut(&[f32], &mut [f32]),
) -> MvmReport {
    let alpha = if io.noise_management {
        x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    } else {
        1.0
    };
    if alpha == 0.0 || !alpha.is_finite() {
        y.iter_mut().for_each(|v| *v = 0.0);
        return MvmReport::default();
    }
    let cap = io.bm_reduction_cap();
    let mut scale = 1.0f32;
    let mut passes = 0;
    loop {
        passes += 1;
        let norm2 = drive(io, x, scale / alpha, xq);
        analog(xq, y);
        let clipped = sense(io, read_sigma, norm2, y, rng);
        if accept(io, clipped, passes, scale, cap) {
            let back = alpha / scale;
            y.iter_mut().for_each(|v| *v *= back);
            return MvmReport { passes, clipped };
        }
        scale *= 0.5;
    }
}

/// The input side of one pass: `x` scaled by `inv`, clipped to the input bound and quantized by the
/// DAC lane by lane (vectorized) into `xq`; returns the squared norm of `xq` (in input order).
#[inline]
fn drive(io: &IoConfig, x: &[f32], inv: f32, xq: &mut [f32]) -> f32 {
    let bound = io.inp_bound;
    match io.dac_step() {
        Some(s) => {
            for (q, v) in xq.iter_mut().zip(x) {
                *q = quantize((v * inv).clamp(-bound, bound), s);
            }
        }
        None => {
            for (q, v) in xq.iter_mut().zip(x) {
                *q = (v * inv).clamp(-bound, bound);
            }
        }
    }
    xq.iter().fold(0.0f32, |n, u| n + u * u)
}

/// The output side of one pass on the analog result `y`: output and weight noise, then the ADC lane
/// by lane (vectorized; clamping an output inside the bound leaves it as it is). Returns whether an
/// output reached the bound.
#[inline]
fn sense<R: Rng + ?Sized>(
    io: &IoConfig,
    read_sigma: f32,
    norm2: f32,
    y: &mut [f32],
    rng: &mut R,
) -> bool {
    let w_sigma = if read_sigma == 0.0 {
        io.w_noise
    } else {
        (io.w_noise * io.w_noise + read_sigma * read_sigma).sqrt()
    } * norm2.sqrt();
    let sigma = (io.out_noise * io.out_noise + w_sigma * w_sigma).sqrt();
    if sigma > 0.0 {
        for v in y.iter_mut() {
            let xi: f32 = standard_normal(rng);
            *v += sigma * xi;
        }
    }
    let bound = io.out_bound;
    let mut clipped = false;
    match io.adc_step() {
        Some(s) => {
            for v in y.iter_mut() {
                clipped |= v.abs() >= bound;
                *v = quantize(v.clamp(-bound, bound), s);
            }
        }
        None => {
            for v in y.iter_mut() {
                clipped |= v.abs() >= bound;
                *v = v.clamp(-bound, bound);
            }
        }
    }
    clipped
}

/// aihwkit's test: a pass is accepted when nothing clipped or the reduction already exceeds the
/// resolution cap (or the halvings run out).
#[inline]
fn accept(io: &IoConfig, clipped: bool, passes: u32, scale: f32, cap: f32) -> bool {
    !clipped || !io.bound_management || passes > io.max_bm_iterations || 1.0 / scale > cap
}

/// [`convert`] of `batch` inputs one after another (`xs`, `n_in` values each, into `ys`, `n_out`
/// each), with every input's first pass through the analog array made together by `analog_batch`
/// (inputs `B x n_in` to outputs `B x n_out`); further passes of bound management go through `analog`.
/// The results, reports and random draws are those of [`convert`] called on each input in order,
/// provided `analog_batch` gives, per input, the bits `analog` gives. `xq` is scratch.
#[allow(clippy::too_many_arguments)]
pub fn convert_batch<R: Rng + ?Sized>(
    io: &IoConfig,
    read_sigma: f32,
    xs: &[f32],
    ys: &mut [f32],
    (n_in, n_out, batch): (usize, usize, usize),
    xq: &mut Vec<f32>,
    rng: &mut R,
    analog_batch: impl FnOnce(&[f32], &mut [f32]),
    mut analog: impl FnMut(&[f32], &mut [f32]),
) -> Vec<MvmReport> {
    assert!(xs.len() >= batch * n_in && ys.len() >= batch * n_out);
    let cap = io.bm_reduction_cap();
    xq.clear();
    xq.resize(batch * n_in, 0.0);
    let mut alphas = Vec::with_capacity(batch);
    let mut norms = Vec::with_capacity(batch);
    for b in 0..batch {
        let x = &xs[b * n_in..(b + 1) * n_in];
        let alpha = if io.noise_management {
            x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
        } else {
            1.0
        };
        let q = &mut xq[b * n_in..(b + 1) * n_in];
        let norm2 = if alpha == 0.0 || !alpha.is_finite() {
            q.iter_mut().for_each(|v| *v = 0.0);
            0.0
        } else {
            drive(io, x, 1.0 / alpha, q)
        };
        alphas.push(alpha);
        norms.push(norm2);
    }
    analog_batch(xq, &mut ys[..batch * n_out]);
    let mut reports = Vec::with_capacity(batch);
    let mut single = vec![0.0f32; n_in];
    for b in 0..batch {
        let (x, y) = (
            &xs[b * n_in..(b + 1) * n_in],
            &mut ys[b * n_out..(b + 1) * n_out],
        );
        let alpha = alphas[b];
        if alpha == 0.0 || !alpha.is_finite() {
            y.iter_mut().for_each(|v| *v = 0.0);
            reports.push(MvmReport::default());
            continue;
        }
        let mut scale = 1.0f32;
        let mut passes = 1u32;
        let mut clipped = sense(io, read_sigma, norms[b], y, rng);
        while !accept(io, clipped, passes, scale, cap) {
            scale *= 0.5;
            passes += 1;
            let norm2 = drive(io, x, scale / alpha, &mut single);
            analog(&single, y);
            clipped = sense(io, read_sigma, norm2, y, rng);
        }
        let back = alpha / scale;
        y.iter_mut().for_each(|v| *v *= back);
        reports.push(MvmReport { passes, clipped });
    }
    reports
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_pcg::Pcg64Mcg;

    fn identity(xq: &[f32], y: &mut [f32]) {
        y.copy_from_slice(xq);
    }

    #[test]
    fn dac_error_is_half_a_step() {
        let io = IoConfig {
            out_noise: 0.0,
            adc_bits: None,
            noise_management: false,
            ..IoConfig::default()
        };
        let step = io.dac_step().unwrap();
        assert!((step - 2.0 / 126.0).abs() < 1e-9);
        let x: Vec<f32> = (0..2001).map(|i| -1.0 + i as f32 * 0.001).collect();
        let mut y = vec![0.0; x.len()];
        let mut xq = vec![0.0; x.len()];
        convert(
            &io,
            0.0,
            &x,
            &mut y,
            &mut xq,
            &mut Pcg64Mcg::seed_from_u64(0),
            identity,
        );
        let worst = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst <= step / 2.0 + 1e-6, "worst {worst} step {step}");
        assert!(worst > step / 2.0 * 0.9, "quantization too fine: {worst}");
        let levels: std::collections::BTreeSet<i64> =
            y.iter().map(|v| (v / step).round() as i64).collect();
        assert_eq!(levels.len(), 127);
    }

    #[test]
    fn adc_clips_and_bound_management_recovers() {
        let io = IoConfig {
            out_noise: 0.0,
            dac_bits: None,
            noise_management: false,
            ..IoConfig::default()
        };
        // Gain 40: outputs up to 40 clip at 12 without bound management.
        let x = [1.0f32, -0.5, 0.25];
        let mut y = [0.0; 3];
        let mut xq = [0.0; 3];
        let gain = |xq: &[f32], y: &mut [f32]| {
            for (o, v) in y.iter_mut().zip(xq) {
                *o = 40.0 * v;
            }
        };
        let r = convert(
            &io,
            0.0,
            &x,
            &mut y,
            &mut xq,
            &mut Pcg64Mcg::seed_from_u64(0),
            gain,
        );
        assert_eq!(r.passes, 3, "40 -> 20 -> 10 needs two halvings");
        assert!(!r.clipped);
        let step = io.adc_step().unwrap() * 4.0;
        for (o, v) in y.iter().zip(x) {
            assert!(
                (o - 40.0 * v).abs() <= step / 2.0 + 1e-4,
                "{o} vs {}",
                40.0 * v
            );
        }
        let no_bm = IoConfig {
            bound_management: false,
            ..io
        };
        let r = convert(
            &no_bm,
            0.0,
            &x,
            &mut y,
            &mut xq,
            &mut Pcg64Mcg::seed_from_u64(0),
            gain,
        );
        assert!(r.clipped);
        assert_eq!(y[0], 12.0);
    }

    /// aihwkit's resolution cap: with a 7-bit DAC and `max_bm_res` 0.25 the pass at a reduction of 32
    /// (five halvings) is accepted even though it clips; without the cap halving goes on until it fits.
    #[test]
    fn bound_management_stops_at_the_resolution_cap() {
        let io = IoConfig {
            out_noise: 0.0,
            adc_bits: None,
            noise_management: false,
            ..IoConfig::default()
        };
        assert_eq!(io.bm_reduction_cap(), 31.5);
        let gain = |xq: &[f32], y: &mut [f32]| y[0] = 1000.0 * xq[0];
        let (x, mut y, mut xq) = ([1.0f32], [0.0f32], [0.0f32]);
        let mut rng = Pcg64Mcg::seed_from_u64(0);
        let r = convert(&io, 0.0, &x, &mut y, &mut xq, &mut rng, gain);
        assert_eq!(
            (r.passes, r.clipped),
            (6, true),
            "reductions 1, 2, 4, 8, 16, 32"
        );
        let uncapped = IoConfig {
            max_bm_res: 0.0,
            ..io
        };
        let r = convert(&uncapped, 0.0, &x, &mut y, &mut xq, &mut rng, gain);
        assert_eq!((r.passes, r.clipped), (8, false), "1000 / 128 < 12");
    }

    #[test]
    fn noise_management_scales_back() {
        let io = IoConfig {
            out_noise: 0.0,
            ..IoConfig::default()
        };
        let x = [0.002f32, -0.001, 0.0005];
        let mut y = [0.0; 3];
        let mut xq = [0.0; 3];
        convert(
            &io,
            0.0,
            &x,
            &mut y,
            &mut xq,
            &mut Pcg64Mcg::seed_from_u64(0),
            identity,
        );
        let tol = 0.002 * (io.dac_step().unwrap() + io.adc_step().unwrap()) / 2.0;
        for (o, v) in y.iter().zip(x) {
            assert!((o - v).abs() <= tol, "{o} vs {v}");
        }
        // Without noise management the same inputs fall below one DAC step and read as zero.
        let plain = IoConfig {
            noise_management: false,
            ..io
        };
        convert(
            &plain,
            0.0,
            &x,
            &mut y,
            &mut xq,
            &mut Pcg64Mcg::seed_from_u64(0),
            identity,
        );
        assert_eq!(y, [0.0; 3]);
    }

    #[test]
    fn output_noise_has_the_requested_sigma() {
        let io = IoConfig {
            dac_bits: None,
            adc_bits: None,
            noise_management: false,
            out_noise: 0.06,
            ..IoConfig::default()
        };
        let n = 100_000;
        let x = vec![0.0f32; n];
        let x1 = {
            let mut v = x.clone();
            v[0] = 1e-30; // non-zero input so the conversion runs
            v
        };
        let mut y = vec![0.0; n];
        let mut xq = vec![0.0; n];
        convert(
            &io,
            0.0,
            &x1,
            &mut y,
            &mut xq,
            &mut Pcg64Mcg::seed_from_u64(1),
            identity,
        );
        let mean = y.iter().map(|v| *v as f64).sum::<f64>() / n as f64;
        let var = y.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            (var.sqrt() - 0.06).abs() < 0.06 * 0.02,
            "sigma {}",
            var.sqrt()
        );
    }
}
