//! One pulse of a step model: the equation `w <- clip(w + dw (1 + c2c z), lo, hi)`, written once.
//!
//! Every write of a step model with multiplicative cycle-to-cycle noise applies [`pulse`] once per pulse:
//! [`Population::pulse`](crate::Population::pulse) (with `dw` the model's shaped step),
//! [`Population::pulse_with_normals`](crate::Population::pulse_with_normals), the fused loop of
//! [`ConstantStepView::write`], and the vector row kernel of `aimsim-sim` (`sim/src/kernels/rowwrite.rs`),
//! which calls [`pulse`] on eight devices at once through its own [`Arith`] type. The fast paths are
//! tested bit for bit against the single writes (the devices conformance suite for the batch,
//! `sim`'s row-kernel test for the vector kernel).

/// The arithmetic of one pulse, for one device (`f32`) or several side by side (a vector register type
/// of a kernel). Implementations must give each lane exactly the IEEE single-precision result of the
/// `f32` operation (no fused multiply-add), so that every path computes the same bits.
pub trait Arith: Copy {
    /// `1` in every lane.
    fn one() -> Self;
    /// Lane-wise `self + other`.
    fn add(self, other: Self) -> Self;
    /// Lane-wise `self * other`.
    fn mul(self, other: Self) -> Self;
    /// Lane-wise `self` limited to `[lo, hi]` (`lo <= hi`, no NaN): `lo` where `self < lo`, then `hi`
    /// where the result is `> hi`.
    fn clip(self, lo: Self, hi: Self) -> Self;
}

impl Arith for f32 {
    #[inline(always)]
    fn one() -> Self {
        1.0
    }
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        self + other
    }
    #[inline(always)]
    fn mul(self, other: Self) -> Self {
        self * other
    }
    #[inline(always)]
    fn clip(self, lo: Self, hi: Self) -> Self {
        clip(self, lo, hi)
    }
}

/// One pulse of step `dw` (signed; already shaped by the model's nonlinearity) with the standard-normal
/// draw `z` of its multiplicative cycle-to-cycle noise: `clip(w + dw (1 + c2c z), lo, hi)`. With
/// `c2c = 0` and `z = 0` the step is `dw` exactly.
#[inline(always)]
pub fn pulse<V: Arith>(w: V, dw: V, c2c: V, z: V, lo: V, hi: V) -> V {
    w.add(dw.mul(V::one().add(c2c.mul(z)))).clip(lo, hi)
}

/// `w` limited to `[lo, hi]` (`lo <= hi`, no NaN): [`f32::clamp`] without its argument check.
#[inline(always)]
pub(crate) fn clip(w: f32, lo: f32, hi: f32) -> f32 {
    let w = if w < lo { lo } else { w };
    if w > hi { hi } else { w }
}

/// A mutable view of a continuous constant-step population for fused write loops (see
/// [`Population::constant_step_view`](crate::Population::constant_step_view)): one
/// [`ConstantStepView::write`] is one device's batch of pulses, each one [`pulse`].
#[derive(Debug)]
pub struct ConstantStepView<'a> {
    pub(crate) state: &'a mut [f32],
    /// Per-device columns as (values, index mask): `values[i & mask]` is device `i`'s value.
    pub(crate) lo: (&'a [f32], usize),
    pub(crate) hi: (&'a [f32], usize),
    pub(crate) up: (&'a [f32], usize),
    pub(crate) down: (&'a [f32], usize),
    /// Up and down steps are the same column.
    pub(crate) symmetric: bool,
    pub(crate) c2c: f32,
}

impl ConstantStepView<'_> {
    /// Applies `m` pulses to device `i` (potentiation for `m > 0`), pulse `k` scaled by
    /// `1 + c2c z[k]`, and returns `(state before, state after)`. `z` must hold at least
    /// `max(|m|, 2)` values: the first two are read whatever the count, so that counts of 1 and 2
    /// (which alternate unpredictably) take the same branch-free path; longer trains continue in a
    /// loop. The polarity picks its step without a branch too.
    ///
    /// # Panics
    /// If `i` is out of range or `z` is too short.
    #[inline(always)]
    pub fn write(&mut self, i: usize, m: i32, z: &[f32]) -> (f32, f32) {
        let w0 = self.state[i];
        let (z0, z1) = (z[0], z[1]);
        // SAFETY: `i < state.len()` (checked by the read above) and every column holds either
        // `state.len()` values (mask all ones) or one value (mask 0); checked when the view was made.
        let (lo, hi, dn) = unsafe {
            (
                *self.lo.0.get_unchecked(i & self.lo.1),
                *self.hi.0.get_unchecked(i & self.hi.1),
                *self.down.0.get_unchecked(i & self.down.1),
            )
        };
        // The step is exactly `up` or `-dn`, picked with arithmetic: a select on the sign compiles to
        // a branch that random signs defeat. Symmetric devices copy the sign bit of `-m` onto `dn`
        // (`m = 0` gives `-dn`, harmless: no pulse is applied) and never read the `up` column;
        // otherwise `p` is 1 or 0 and each product is exact.
        let dw = if self.symmetric {
            f32::from_bits(dn.to_bits() | ((m.wrapping_neg() as u32) & 0x8000_0000) ^ 0x8000_0000)
        } else {
            // SAFETY: as above.
            let up = unsafe { *self.up.0.get_unchecked(i & self.up.1) };
            let p = f32::from(u8::from(m > 0));
            p * up - (1.0 - p) * dn
        };
        let pulses = m.unsigned_abs() as usize;
        let c2c = self.c2c;
        let w1 = pulse(w0, dw, c2c, z0, lo, hi);
        let w2 = pulse(w1, dw, c2c, z1, lo, hi);
        let mut w = [w0, w1, w2][pulses.min(2)];
        if pulses > 2 {
            for x in &z[2..pulses] {
                w = pulse(w, dw, c2c, *x, lo, hi);
            }
        }
        self.state[i] = w;
        (w0, w)
    }

    /// The view's columns, borrowed for a multi-device kernel.
    pub fn columns(&mut self) -> StepColumns<'_> {
        StepColumns {
            state: &mut *self.state,
            lo: self.lo,
            hi: self.hi,
            up: self.up,
            down: self.down,
            symmetric: self.symmetric,
            c2c: self.c2c,
        }
    }
}

/// The raw per-device columns of a [`ConstantStepView`], for kernels that write several neighbouring
/// devices at once with [`pulse`].
///
/// Guarantee (checked when the view was made): each parameter column holds either one value per
/// device (index mask `usize::MAX`) or a single shared value (index mask 0), so `values[i & mask]`
/// is in bounds for every `i < state.len()`.
#[derive(Debug)]
pub struct StepColumns<'a> {
    /// Device states (native units).
    pub state: &'a mut [f32],
    /// Lower bounds as (values, index mask).
    pub lo: (&'a [f32], usize),
    /// Upper bounds as (values, index mask).
    pub hi: (&'a [f32], usize),
    /// Potentiation steps as (values, index mask); not read when `symmetric`.
    pub up: (&'a [f32], usize),
    /// Depression step magnitudes as (values, index mask).
    pub down: (&'a [f32], usize),
    /// Up and down steps are the same column (`down`).
    pub symmetric: bool,
    /// Relative cycle-to-cycle spread of a step.
    pub c2c: f32,
}
