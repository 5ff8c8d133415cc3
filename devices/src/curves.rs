//! Pulse-number curves: the NeuroSim exponential family and monotone interpolation of measured tables.

/// Normalized NeuroSim curve `g(x) = (1 - exp(-x/a)) / (1 - exp(-1/a))` on `x` in `[0, 1]`, and its
/// largest deviation above the line `g(x) = x`.
///
/// `g` is concave for `a > 0`; its slope equals 1 at `x* = -a ln(a (1 - exp(-1/a)))`, so the deviation
/// has the closed form `D(a) = 1/(1 - exp(-1/a)) - a - x*`. `D` falls monotonically from 1 (a -> 0) to
/// 0 (a -> inf).
pub fn max_deviation(a: f64) -> f64 {
    let t = 1.0 / a;
    let denom = -(-t).exp_m1(); // 1 - exp(-1/a), accurate for large a
    let x_star = -a * (a * denom).ln();
    // 1/(1 - e^{-t}) - 1/t stays accurate for small t by series; use the direct form otherwise.
    let head = if t < 1e-4 {
        0.5 + t / 12.0
    } else {
        1.0 / denom - a
    };
    head - x_star
}

/// Normalized NeuroSim parameter `A_norm` (A = A_norm x Pmax) for a nonlinearity label `nl`, defined by
/// `max_x (g(x) - x) = 0.099 |nl|`, solved by bisection on `ln a`. The sign of `nl` carries over to the
/// result (negative = convex curve). Returns `f64::INFINITY` for `nl == 0` (a linear curve).
///
/// `|nl|` must be below `1/0.099`; callers validate that (see [`crate::spec::NL_LIMIT`]).
pub fn a_norm(nl: f64) -> f64 {
    if nl == 0.0 {
        return f64::INFINITY;
    }
    let target = 0.099 * nl.abs();
    // Solve D(e^t) = target for t = ln a by Newton's method (central-difference slope), safeguarded by
    // bisection on a bracket where D(e^lo) > target > D(e^hi) (D falls monotonically in a). The start
    // uses D ~ 1/(8a), exact for nearly linear curves.
    let f = |t: f64| max_deviation(t.exp()) - target;
    let (mut lo, mut hi) = (1e-6f64.ln(), 1e9f64.ln());
    let mut t = (1.0 / (8.0 * target)).ln().clamp(lo + 1.0, hi - 1.0);
    for _ in 0..200 {
        let ft = f(t);
        if ft > 0.0 {
            lo = t;
        } else {
            hi = t;
        }
        let h = 1e-6;
        let slope = (f(t + h) - f(t - h)) / (2.0 * h);
        let next = t - ft / slope;
        let next = if slope < 0.0 && next > lo && next < hi {
            next
        } else {
            0.5 * (lo + hi)
        };
        let done = (next - t).abs() < 1e-13 || hi - lo < 1e-13;
        t = next;
        if done {
            break;
        }
    }
    nl.signum() * t.exp()
}

/// One NeuroSim exponential curve `G(P) = g_min + (g_max - g_min) u(P)` with
/// `u(P) = (1 - exp(-P/A)) / (1 - exp(-Pmax/A))`, `A = A_norm(NL) Pmax`; linear when `A` is infinite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpCurve {
    /// Largest pulse number (levels - 1).
    pub pmax: f64,
    /// `1/A` (0 for the linear curve).
    pub inv_a: f64,
    /// `1 - exp(-Pmax/A)`.
    pub denom: f64,
}

impl ExpCurve {
    /// Curve for `levels` levels and nonlinearity label `nl`.
    pub fn new(levels: u32, nl: f64) -> Self {
        let pmax = f64::from(levels - 1);
        let an = a_norm(nl);
        let inv_a = if an.is_finite() {
            1.0 / (an * pmax)
        } else {
            0.0
        };
        Self::from_inv_a(pmax, inv_a)
    }

    fn from_inv_a(pmax: f64, inv_a: f64) -> Self {
        let denom = if inv_a == 0.0 {
            0.0
        } else {
            -(-pmax * inv_a).exp_m1()
        };
        ExpCurve { pmax, inv_a, denom }
    }

    /// Normalized conductance in `[0, 1]` at pulse number `p` in `[0, Pmax]`.
    #[inline]
    pub fn u(&self, p: f64) -> f64 {
        if self.inv_a == 0.0 {
            p / self.pmax
        } else if self.inv_a < 0.0 {
            // Convex curve: (e^{cP'} - 1)/(e^{cPmax} - 1) with c = -1/A, written without overflow
            // (e^{cPmax} overflows f64 for |NL| close to the limit of 10).
            let c = -self.inv_a;
            ((p - self.pmax) * c).exp() * (-(-p * c).exp_m1()) / (-(-self.pmax * c).exp_m1())
        } else {
            -(-p * self.inv_a).exp_m1() / self.denom
        }
    }

    /// Pulse number whose normalized conductance is `u` (clamped to `[0, Pmax]`).
    #[inline]
    pub fn p(&self, u: f64) -> f64 {
        let p = if self.inv_a == 0.0 {
            u * self.pmax
        } else if self.inv_a < 0.0 {
            // Inverse of the overflow-free convex form above.
            let c = -self.inv_a;
            self.pmax + ((1.0 - u) * (-self.pmax * c).exp_m1()).ln_1p() / c
        } else {
            -(-u * self.denom).ln_1p() / self.inv_a
        };
        p.clamp(0.0, self.pmax)
    }
}

/// Monotone piecewise-cubic (Fritsch-Carlson) interpolation of a strictly monotone sequence of nodes at
/// integer abscissae `0, 1, ..., n-1`, with inverse lookup.
#[derive(Debug, Clone, PartialEq)]
pub struct MonotoneCurve {
    y: Vec<f64>,
    m: Vec<f64>,
    increasing: bool,
}

impl MonotoneCurve {
    /// Builds the interpolant; `y` must be strictly monotone with at least 2 points.
    pub fn new(y: Vec<f64>) -> Self {
        let n = y.len();
        assert!(n >= 2, "a monotone curve needs two nodes");
        let delta: Vec<f64> = y.windows(2).map(|w| w[1] - w[0]).collect();
        let mut m = vec![0.0; n];
        m[0] = delta[0];
        m[n - 1] = delta[n - 2];
        for k in 1..n - 1 {
            m[k] = if delta[k - 1] * delta[k] <= 0.0 {
                0.0
            } else {
                // Harmonic mean of neighbouring secants keeps the cubic monotone (Fritsch-Butland).
                2.0 * delta[k - 1] * delta[k] / (delta[k - 1] + delta[k])
            };
        }
        // Endpoint slopes limited to three times the secant (Fritsch-Carlson condition).
        for (k, d) in [(0usize, delta[0]), (n - 1, delta[n - 2])] {
            if m[k] * d <= 0.0 {
                m[k] = 0.0;
            } else if m[k].abs() > 3.0 * d.abs() {
                m[k] = 3.0 * d;
            }
        }
        let increasing = y[n - 1] > y[0];
        MonotoneCurve { y, m, increasing }
    }

    /// Largest abscissa (`n - 1`).
    pub fn pmax(&self) -> f64 {
        (self.y.len() - 1) as f64
    }

    /// Node values.
    pub fn nodes(&self) -> &[f64] {
        &self.y
    }

    /// Interpolated value at `p` (clamped to `[0, n-1]`); exact at integer `p`.
    #[inline]
    pub fn value(&self, p: f64) -> f64 {
        let p = p.clamp(0.0, self.pmax());
        let k = (p.floor() as usize).min(self.y.len() - 2);
        let t = p - k as f64;
        if t == 0.0 {
            return self.y[k];
        }
        self.hermite(k, t)
    }

    #[inline]
    fn hermite(&self, k: usize, t: f64) -> f64 {
        let (y0, y1, m0, m1) = (self.y[k], self.y[k + 1], self.m[k], self.m[k + 1]);
        let t2 = t * t;
        let t3 = t2 * t;
        (2.0 * t3 - 3.0 * t2 + 1.0) * y0
            + (t3 - 2.0 * t2 + t) * m0
            + (-2.0 * t3 + 3.0 * t2) * y1
            + (t3 - t2) * m1
    }

    /// Abscissa at which the curve takes the value `g` (clamped to the curve's ends).
    pub fn position(&self, g: f64) -> f64 {
        let n = self.y.len();
        let (first, last) = (self.y[0], self.y[n - 1]);
        let before = if self.increasing {
            g <= first
        } else {
            g >= first
        };
        let after = if self.increasing {
            g >= last
        } else {
            g <= last
        };
        if before {
            return 0.0;
        }
        if after {
            return self.pmax();
        }
        // Segment k with g between y[k] and y[k+1].
        let k = if self.increasing {
            self.y.partition_point(|&v| v <= g) - 1
        } else {
            self.y.partition_point(|&v| v >= g) - 1
        };
        let k = k.min(n - 2);
        if self.y[k] == g {
            return k as f64;
        }
        // Newton on the cubic from the secant guess, safeguarded by bisection on the bracket [lo, hi].
        let (y0, y1) = (self.y[k], self.y[k + 1]);
        let sign = if self.increasing { 1.0 } else { -1.0 };
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        let mut t = ((g - y0) / (y1 - y0)).clamp(0.0, 1.0);
        for _ in 0..60 {
            let f = sign * (self.hermite(k, t) - g);
            if f.abs() <= 1e-13 * (y1 - y0).abs() {
                break;
            }
            if f < 0.0 {
                lo = t;
            } else {
                hi = t;
            }
            let df = sign * self.hermite_slope(k, t);
            let next = t - f / df;
            t = if df > 0.0 && next > lo && next < hi {
                next
            } else {
                0.5 * (lo + hi)
            };
            if hi - lo < 1e-15 {
                break;
            }
        }
        k as f64 + t
    }

    #[inline]
    fn hermite_slope(&self, k: usize, t: f64) -> f64 {
        let (y0, y1, m0, m1) = (self.y[k], self.y[k + 1], self.m[k], self.m[k + 1]);
        let t2 = t * t;
        (6.0 * t2 - 6.0 * t) * y0
            + (3.0 * t2 - 4.0 * t + 1.0) * m0
            + (-6.0 * t2 + 6.0 * t) * y1
            + (3.0 * t2 - 2.0 * t) * m1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_norm_matches_published_check_values() {
        for (nl, a) in [
            (0.5, 2.52),
            (1.0, 1.252),
            (2.0, 0.609),
            (2.4, 0.499),
            (3.0, 0.387),
            (4.0, 0.269),
            (4.88, 0.200),
            (6.0, 0.136),
        ] {
            let got = a_norm(nl);
            println!("NL {nl:>5}: published {a:>6}  aimsim {got:.4}");
            // The published values carry 3 significant digits.
            assert!(
                (got - a).abs() <= 0.006 * a.max(1.0),
                "NL {nl}: got {got}, want {a}"
            );
        }
        assert!((a_norm(2.4) - 0.499).abs() <= 0.001);
        assert!((a_norm(4.88) - 0.200).abs() <= 0.001);
        assert!((a_norm(-2.4) + a_norm(2.4)).abs() < 1e-12);
        assert!(a_norm(0.0).is_infinite());
    }

    #[test]
    fn max_deviation_is_what_was_asked() {
        for nl in [0.01, 0.3, 1.7, 5.0, 9.9] {
            let a = a_norm(nl);
            // Brute-force the deviation on a fine grid.
            let g = |x: f64| (1.0 - (-x / a).exp()) / (1.0 - (-1.0 / a).exp());
            let brute = (0..=100_000)
                .map(|i| {
                    let x = i as f64 / 100_000.0;
                    g(x) - x
                })
                .fold(f64::MIN, f64::max);
            assert!((brute - 0.099 * nl).abs() < 1e-6, "nl {nl}: {brute}");
        }
    }

    #[test]
    fn exp_curve_round_trips_and_hits_ends() {
        for nl in [-6.0, -0.5, 0.0, 0.04, 2.4, 4.88] {
            let c = ExpCurve::new(97, nl);
            assert_eq!(c.u(0.0), 0.0);
            assert!((c.u(96.0) - 1.0).abs() < 1e-12);
            for k in 0..=96 {
                let p = c.p(c.u(k as f64));
                assert!((p - k as f64).abs() < 1e-6, "nl {nl} k {k} p {p}");
            }
        }
    }

    #[test]
    fn monotone_curve_interpolates_nodes_and_inverts() {
        let up = vec![1.0, 3.0, 4.0, 4.5, 4.6, 4.65];
        let c = MonotoneCurve::new(up.clone());
        for (k, y) in up.iter().enumerate() {
            assert_eq!(c.value(k as f64), *y);
            assert!((c.position(*y) - k as f64).abs() < 1e-9);
        }
        let mut prev = f64::MIN;
        for i in 0..=500 {
            let p = i as f64 / 100.0;
            let v = c.value(p);
            assert!(v >= prev, "not monotone at {p}");
            prev = v;
            assert!((c.position(v) - p).abs() < 1e-6, "p {p}");
        }
        let down = MonotoneCurve::new(vec![5.0, 3.0, 2.0, 1.9]);
        assert!((down.position(2.5) - 1.5).abs() < 0.5);
        assert_eq!(down.position(10.0), 0.0);
        assert_eq!(down.position(0.0), 3.0);
    }
}
