//! Procedurally drawn digit glyphs: a 10-class image dataset that needs no download.
//!
//! Each digit 0-9 has a hand-designed skeleton of polylines and elliptic arcs in a unit box (x to the
//! right, y down). A sample applies a random smooth deformation and a random affine map (scale, aspect,
//! rotation, shear, shift) to the skeleton, strokes it with a random width using anti-aliased distance
//! rasterisation into `side x side` pixels, scales it by a random ink intensity and adds Gaussian pixel
//! noise of a random level, clipping to [0, 1]. See `docs/datasets.md` for the ranges.

use std::f32::consts::PI;

use aimsim_sim::rng::{Pcg, Purpose, stream};
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};

use crate::data::Dataset;

/// Number of glyph classes (the digits 0-9).
pub const GLYPH_CLASSES: usize = 10;

/// Stream indices (under [`Purpose::Data`]) of the glyph training and test sets.
const TRAIN_STREAM: u64 = 0x91_0000;
const TEST_STREAM: u64 = 0x91_0001;

/// A point in the unit box.
type Pt = (f32, f32);

/// Points of the elliptic arc centred at `(cx, cy)` with radii `rx`, `ry` from angle `a0` to `a1`
/// (degrees; 0 = right, 90 = down since y points down), about one point per 15 degrees.
fn arc(cx: f32, cy: f32, rx: f32, ry: f32, a0: f32, a1: f32) -> Vec<Pt> {
    let n = ((a1 - a0).abs() / 15.0).ceil().max(1.0) as usize;
    (0..=n)
        .map(|k| {
            let a = (a0 + (a1 - a0) * k as f32 / n as f32).to_radians();
            (cx + rx * a.cos(), cy + ry * a.sin())
        })
        .collect()
}

/// Concatenates point runs into one polyline.
fn join(parts: &[Vec<Pt>]) -> Vec<Pt> {
    parts.iter().flatten().copied().collect()
}

/// The skeleton of digit `d`: a list of polylines in the unit box.
pub fn skeleton(d: usize) -> Vec<Vec<Pt>> {
    match d % GLYPH_CLASSES {
        0 => vec![arc(0.5, 0.5, 0.27, 0.4, 0.0, 360.0)],
        1 => vec![vec![(0.36, 0.24), (0.54, 0.1), (0.54, 0.9)]],
        2 => vec![join(&[
            arc(0.5, 0.32, 0.24, 0.22, 200.0, 390.0),
            vec![(0.24, 0.9), (0.8, 0.9)],
        ])],
        3 => vec![
            arc(0.48, 0.3, 0.22, 0.2, 200.0, 450.0),
            arc(0.48, 0.7, 0.25, 0.2, -90.0, 160.0),
        ],
        4 => vec![vec![(0.64, 0.9), (0.64, 0.1), (0.2, 0.64), (0.82, 0.64)]],
        5 => vec![join(&[
            vec![(0.76, 0.1), (0.33, 0.1), (0.3, 0.47)],
            arc(0.5, 0.66, 0.25, 0.23, -125.0, 150.0),
        ])],
        6 => vec![
            arc(0.72, 0.62, 0.46, 0.5, 250.0, 180.0),
            arc(0.5, 0.66, 0.24, 0.24, 0.0, 360.0),
        ],
        7 => vec![vec![(0.2, 0.1), (0.8, 0.1), (0.42, 0.9)]],
        8 => vec![
            arc(0.5, 0.29, 0.19, 0.19, 0.0, 360.0),
            arc(0.5, 0.7, 0.23, 0.21, 0.0, 360.0),
        ],
        _ => vec![
            arc(0.5, 0.33, 0.22, 0.22, 0.0, 360.0),
            arc(0.28, 0.38, 0.44, 0.52, 0.0, 70.0),
        ],
    }
}

/// The random nuisance parameters of one sample.
struct Style {
    /// Affine matrix applied to `p - 0.5` (rows).
    m: [[f32; 2]; 2],
    /// Shift of the centre, unit-box units.
    shift: Pt,
    /// Smooth deformation: amplitudes, frequencies (half-waves per box) and phases.
    warp: [(f32, f32, f32); 2],
    /// Half the stroke width, unit-box units.
    half_width: f32,
    /// Ink intensity.
    ink: f32,
    /// Standard deviation of the additive pixel noise.
    noise: f32,
}

impl Style {
    fn draw(rng: &mut Pcg) -> Style {
        let scale = rng.random_range(0.72..1.0f32);
        let aspect = rng.random_range(0.85..1.15f32);
        let rot = rng.random_range(-0.2..0.2f32);
        let shear = rng.random_range(-0.25..0.25f32);
        let (sx, sy) = (scale * aspect.sqrt(), scale / aspect.sqrt());
        let (c, s) = (rot.cos(), rot.sin());
        // Rotation * shear * diag(sx, sy).
        let a = [[sx, shear * sy], [0.0, sy]];
        let m = [
            [c * a[0][0] - s * a[1][0], c * a[0][1] - s * a[1][1]],
            [s * a[0][0] + c * a[1][0], s * a[0][1] + c * a[1][1]],
        ];
        // Shift within the room the scale leaves, at most 0.12 of the box.
        let room = ((1.0 - scale) * 0.5).min(0.12) + 0.03;
        let shift = (rng.random_range(-room..room), rng.random_range(-room..room));
        let mut wave = || {
            (
                rng.random_range(0.0..0.035f32),
                rng.random_range(0.5..2.0f32),
                rng.random_range(0.0..2.0 * PI),
            )
        };
        let warp = [wave(), wave()];
        Style {
            m,
            shift,
            warp,
            half_width: rng.random_range(0.035..0.075),
            ink: rng.random_range(0.7..1.0),
            noise: rng.random_range(0.02..0.12),
        }
    }

    /// Where skeleton point `p` lands, in unit-box units.
    fn map(&self, (x, y): Pt) -> Pt {
        let [(ax, fx, px), (ay, fy, py)] = self.warp;
        let x = x + ax * (PI * fx * y + px).sin();
        let y = y + ay * (PI * fy * x + py).sin();
        let (u, v) = (x - 0.5, y - 0.5);
        (
            0.5 + self.shift.0 + self.m[0][0] * u + self.m[0][1] * v,
            0.5 + self.shift.1 + self.m[1][0] * u + self.m[1][1] * v,
        )
    }
}

/// Marks on `img` (`side x side`, values = coverage) the anti-aliased stroke of segment `a`-`b` (pixel
/// units) of half-width `hw` pixels, keeping the larger coverage per pixel.
fn stroke_segment(img: &mut [f32], side: usize, a: Pt, b: Pt, hw: f32) {
    let reach = hw + 1.0;
    let lo = |v: f32| ((v - reach).floor().max(0.0)) as usize;
    let hi = |v: f32| ((v + reach).ceil().clamp(0.0, side as f32)) as usize;
    let (x0, x1) = (lo(a.0.min(b.0)), hi(a.0.max(b.0)));
    let (y0, y1) = (lo(a.1.min(b.1)), hi(a.1.max(b.1)));
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    for py in y0..y1 {
        for px in x0..x1 {
            let (cx, cy) = (px as f32 + 0.5, py as f32 + 0.5);
            let t = if len2 > 0.0 {
                (((cx - a.0) * dx + (cy - a.1) * dy) / len2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let (ex, ey) = (cx - a.0 - t * dx, cy - a.1 - t * dy);
            let d = (ex * ex + ey * ey).sqrt();
            let cov = (hw + 0.5 - d).clamp(0.0, 1.0);
            let p = &mut img[py * side + px];
            if cov > *p {
                *p = cov;
            }
        }
    }
}

/// Draws one sample of digit `digit` into `out` (`side * side` values, overwritten).
fn render(out: &mut [f32], side: usize, digit: usize, rng: &mut Pcg) {
    let style = Style::draw(rng);
    out.iter_mut().for_each(|v| *v = 0.0);
    let px = side as f32;
    let hw = (style.half_width * px).max(0.5);
    for line in skeleton(digit) {
        let pts: Vec<Pt> = line
            .iter()
            .map(|&p| {
                let (x, y) = style.map(p);
                (x * px, y * px)
            })
            .collect();
        for w in pts.windows(2) {
            stroke_segment(out, side, w[0], w[1], hw);
        }
    }
    for v in out.iter_mut() {
        let z: f32 = StandardNormal.sample(rng);
        *v = (style.ink * *v + style.noise * z).clamp(0.0, 1.0);
    }
}

/// `n` samples drawn from stream `index`: labels round-robin 0..9, shuffled, then one image per label.
fn draw_set(n: usize, side: usize, seed: u64, index: u64) -> (Vec<f32>, Vec<u8>) {
    let mut rng = stream(seed, Purpose::Data, index);
    let mut labels: Vec<u8> = (0..n).map(|i| (i % GLYPH_CLASSES) as u8).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        labels.swap(i, j);
    }
    let d = side * side;
    let mut xs = vec![0.0f32; n * d];
    for (i, &y) in labels.iter().enumerate() {
        render(&mut xs[i * d..(i + 1) * d], side, usize::from(y), &mut rng);
    }
    (xs, labels)
}

/// A procedurally generated 10-class digit-glyph dataset of `side x side` images (`inputs = side²`):
/// `train` training and `test` test samples.
///
/// Classes are balanced (labels assigned round-robin, then shuffled). Per sample, the digit's skeleton
/// is smoothly warped (two sinusoidal displacements of up to 0.035 of the box), scaled by 0.72-1.0 with
/// an aspect ratio of 0.85-1.15, rotated by up to ±0.2 rad, sheared by up to ±0.25, shifted by up to
/// 0.15 of the box, stroked with a half-width of 0.035-0.075 of the box (at least half a pixel) with
/// anti-aliasing, scaled by an ink intensity of 0.7-1.0, and given Gaussian pixel noise with a standard
/// deviation of 0.02-0.12; values are clipped to [0, 1].
///
/// Deterministic in `seed`: the training and test sets come from two distinct PCG64 streams derived
/// from it ([`aimsim_sim::rng::stream`] with [`Purpose::Data`]), so the test set does not depend on
/// `train`. `side = 0` gives empty images.
pub fn glyphs(train: usize, test: usize, side: usize, seed: u64) -> Dataset {
    let (train_x, train_y) = draw_set(train, side, seed, TRAIN_STREAM);
    let (test_x, test_y) = draw_set(test, side, seed, TEST_STREAM);
    Dataset {
        name: "glyphs".into(),
        inputs: side * side,
        classes: GLYPH_CLASSES,
        train_x,
        train_y,
        test_x,
        test_y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skeletons_lie_in_the_unit_box_and_differ() {
        for d in 0..GLYPH_CLASSES {
            let s = skeleton(d);
            assert!(!s.is_empty());
            for line in &s {
                assert!(line.len() >= 2, "digit {d}");
                for &(x, y) in line {
                    assert!(
                        (0.0..=1.0).contains(&x) && (0.0..=1.0).contains(&y),
                        "digit {d}"
                    );
                }
            }
        }
        for a in 0..GLYPH_CLASSES {
            for b in a + 1..GLYPH_CLASSES {
                assert_ne!(skeleton(a), skeleton(b), "digits {a} and {b}");
            }
        }
    }

    #[test]
    fn segment_coverage_is_antialiased() {
        let side = 8;
        let mut img = vec![0.0; side * side];
        // Horizontal segment through row 3's pixel centres, half-width 0.75 px.
        stroke_segment(&mut img, side, (2.5, 3.5), (5.5, 3.5), 0.75);
        assert_eq!(img[3 * side + 3], 1.0);
        // One pixel above: distance 1.0, coverage 0.25.
        assert!((img[2 * side + 3] - 0.25).abs() < 1e-6);
        assert_eq!(img[side + 3], 0.0);
        // Round end cap: one pixel past the end is partly covered, two pixels past is not.
        assert!((img[3 * side + 1] - 0.25).abs() < 1e-6);
        assert_eq!(img[3 * side], 0.0);
        assert_eq!(img[3 * side + 7], 0.0);
        // Segments reaching outside the image are clipped, not a panic.
        stroke_segment(&mut img, side, (-5.0, -5.0), (20.0, 30.0), 2.0);
    }
}
