//! Convolutions as matrix-vector products on a layer's weight store, and the digital pooling after
//! them.
//!
//! A 2-d convolution of a `c_in x h x w` image with `c_out` kernels of `k x k` is the `c_out x
//! c_in k k` kernel matrix applied to one patch of the image per output position (the patch unrolled
//! channel by channel, row by row: the memory order of a PyTorch `Conv2d` weight `(c_out, c_in, k,
//! k)`), so on tiles every output position is one forward read, and its error one backward read and
//! one outer-product update. [`ConvGeom`] unrolls the patches (`im2col`) and adds the backward reads'
//! patches back into an image gradient (`col2im`). Feature maps are stored channel by channel (`c x h
//! x w`, PyTorch's order, so flattening them for a dense layer is the identity).

/// The shape of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels (kernels).
    pub c_out: usize,
    /// Kernel side.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl ConvGeom {
    /// The convolution of a `c_in x h x w` input with `c_out` kernels of `k x k`, stride and padding;
    /// an error when the kernel does not fit the padded input or a size is 0.
    pub fn new(
        (c_in, h, w): (usize, usize, usize),
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self, String> {
        if c_in == 0 || h == 0 || w == 0 || c_out == 0 || k == 0 || stride == 0 {
            return Err(format!(
                "a convolution needs sizes >= 1 (input {c_in}x{h}x{w}, {c_out} channels, kernel {k}, stride {stride})"
            ));
        }
        if k > h + 2 * pad || k > w + 2 * pad {
            return Err(format!(
                "a {k}x{k} kernel does not fit a {h}x{w} input with padding {pad}"
            ));
        }
        Ok(ConvGeom {
            c_in,
            h,
            w,
            c_out,
            k,
            stride,
            pad,
            oh: (h + 2 * pad - k) / stride + 1,
            ow: (w + 2 * pad - k) / stride + 1,
        })
    }

    /// Output positions per image.
    pub fn positions(&self) -> usize {
        self.oh * self.ow
    }

    /// Values of one unrolled patch (the kernel matrix's columns): `c_in k k`.
    pub fn patch(&self) -> usize {
        self.c_in * self.k * self.k
    }

    /// Values of one input image.
    pub fn input_len(&self) -> usize {
        self.c_in * self.h * self.w
    }

    /// Values of one output map (`c_out x oh x ow`).
    pub fn output_len(&self) -> usize {
        self.c_out * self.positions()
    }

    /// The input pixel under patch entry `(c, ky, kx)` at output position `(oy, ox)`, if inside the
    /// image (else the padding, 0).
    #[inline]
    fn pixel(&self, c: usize, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<usize> {
        let y = (oy * self.stride + ky).checked_sub(self.pad)?;
        let x = (ox * self.stride + kx).checked_sub(self.pad)?;
        (y < self.h && x < self.w).then(|| (c * self.h + y) * self.w + x)
    }

    /// Unrolls `img` (`c_in x h x w`) into one row per output position (row-major positions), each of
    /// `stride_row` values: the patch, then `1.0` in the next column when `bias` (a tile bias column),
    /// zeros after.
    pub fn im2col(&self, img: &[f32], out: &mut [f32], stride_row: usize, bias: bool) {
        debug_assert!(img.len() >= self.input_len());
        debug_assert!(out.len() >= self.positions() * stride_row);
        for oy in 0..self.oh {
            for ox in 0..self.ow {
                let row = &mut out[(oy * self.ow + ox) * stride_row..][..stride_row];
                let mut j = 0;
                for c in 0..self.c_in {
                    for ky in 0..self.k {
                        for kx in 0..self.k {
                            row[j] = self.pixel(c, oy, ox, ky, kx).map_or(0.0, |i| img[i]);
                            j += 1;
                        }
                    }
                }
                if bias {
                    row[j] = 1.0;
                    j += 1;
                }
                row[j..].iter_mut().for_each(|v| *v = 0.0);
            }
        }
    }

    /// Adds the patches `rows` (one per output position, `stride_row` values each, as
    /// [`ConvGeom::im2col`] lays them out; a bias column is ignored) back onto the image gradient `img`
    /// (`c_in x h x w`), position by position in order.
    pub fn col2im_add(&self, rows: &[f32], stride_row: usize, img: &mut [f32]) {
        for oy in 0..self.oh {
            for ox in 0..self.ow {
                let row = &rows[(oy * self.ow + ox) * stride_row..][..stride_row];
                let mut j = 0;
                for c in 0..self.c_in {
                    for ky in 0..self.k {
                        for kx in 0..self.k {
                            if let Some(i) = self.pixel(c, oy, ox, ky, kx) {
                                img[i] += row[j];
                            }
                            j += 1;
                        }
                    }
                }
            }
        }
    }
}

/// Max or average pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// The largest value of each window (the first of equals gets the gradient).
    Max,
    /// The mean of each window.
    Avg,
}

impl PoolKind {
    /// Scenario name.
    pub fn name(self) -> &'static str {
        match self {
            PoolKind::Max => "maxpool",
            PoolKind::Avg => "avgpool",
        }
    }
}

/// Pooling of `c` maps of `h x w` with `size x size` windows moved by `stride` (windows that do not
/// fit are dropped, as PyTorch's default), run digitally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    /// Max or average.
    pub kind: PoolKind,
    /// Window side.
    pub size: usize,
    /// Window stride.
    pub stride: usize,
    /// Maps.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl Pool {
    /// Pooling of `c x h x w` maps; an error when the window does not fit or a size is 0.
    pub fn new(
        kind: PoolKind,
        size: usize,
        stride: usize,
        (c, h, w): (usize, usize, usize),
    ) -> Result<Self, String> {
        if size == 0 || stride == 0 {
            return Err(format!(
                "pooling needs a window and a stride >= 1 (got {size} and {stride})"
            ));
        }
        if size > h || size > w {
            return Err(format!(
                "a {size}x{size} pooling window does not fit {h}x{w} maps"
            ));
        }
        Ok(Pool {
            kind,
            size,
            stride,
            c,
            h,
            w,
            oh: (h - size) / stride + 1,
            ow: (w - size) / stride + 1,
        })
    }

    /// Values of the pooled maps.
    pub fn output_len(&self) -> usize {
        self.c * self.oh * self.ow
    }

    /// Pools `maps` into `out`; for max pooling records in `arg` the input index each output took.
    pub fn forward(&self, maps: &[f32], out: &mut [f32], arg: &mut [u32]) {
        let inv = 1.0 / (self.size * self.size) as f32;
        for c in 0..self.c {
            for oy in 0..self.oh {
                for ox in 0..self.ow {
                    let o = (c * self.oh + oy) * self.ow + ox;
                    let mut best = (f32::NEG_INFINITY, 0usize);
                    let mut sum = 0.0f32;
                    for ky in 0..self.size {
                        for kx in 0..self.size {
                            let i = (c * self.h + oy * self.stride + ky) * self.w
                                + ox * self.stride
                                + kx;
                            let v = maps[i];
                            if v > best.0 || (ky, kx) == (0, 0) {
                                best = (v, i);
                            }
                            sum += v;
                        }
                    }
                    match self.kind {
                        PoolKind::Max => {
                            out[o] = best.0;
                            arg[o] = best.1 as u32;
                        }
                        PoolKind::Avg => out[o] = sum * inv,
                    }
                }
            }
        }
    }

    /// The gradient of the maps (`g_maps`, overwritten) from the gradient of the pooled maps `g_out`:
    /// to the recorded maximum, or spread evenly over the window.
    pub fn backward(&self, g_out: &[f32], arg: &[u32], g_maps: &mut [f32]) {
        g_maps.iter_mut().for_each(|v| *v = 0.0);
        let inv = 1.0 / (self.size * self.size) as f32;
        for c in 0..self.c {
            for oy in 0..self.oh {
                for ox in 0..self.ow {
                    let o = (c * self.oh + oy) * self.ow + ox;
                    match self.kind {
                        PoolKind::Max => g_maps[arg[o] as usize] += g_out[o],
                        PoolKind::Avg => {
                            for ky in 0..self.size {
                                for kx in 0..self.size {
                                    let i = (c * self.h + oy * self.stride + ky) * self.w
                                        + ox * self.stride
                                        + kx;
                                    g_maps[i] += g_out[o] * inv;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One convolutional layer of a network description: kernels and geometry, and the pooling after its
/// activation (if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    /// Output channels.
    pub channels: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Pooling after the activation: kind, window, stride.
    pub pool: Option<(PoolKind, usize, usize)>,
}

/// The convolutional layers in front of a network's dense layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvFront {
    /// Input image: channels, height, width.
    pub image: (usize, usize, usize),
    /// The layers, input side first.
    pub layers: Vec<ConvSpec>,
}

impl ConvFront {
    /// The geometry of every layer (and its pooling), input side first, and the length of the last
    /// layer's (pooled) output; an error naming the layer (1 = the first) whose shapes do not fit.
    #[allow(clippy::type_complexity)]
    pub fn shapes(&self) -> Result<(Vec<(ConvGeom, Option<Pool>)>, usize), String> {
        let mut shape = self.image;
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let g = ConvGeom::new(shape, l.channels, l.kernel, l.stride, l.padding)
                .map_err(|e| format!("convolution {}: {e}", i + 1))?;
            shape = (g.c_out, g.oh, g.ow);
            let pool = match l.pool {
                Some((kind, size, stride)) => {
                    let p = Pool::new(kind, size, stride, shape)
                        .map_err(|e| format!("pooling after convolution {}: {e}", i + 1))?;
                    shape = (p.c, p.oh, p.ow);
                    Some(p)
                }
                None => None,
            };
            out.push((g, pool));
        }
        Ok((out, shape.0 * shape.1 * shape.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3x3 image through one 2x2 kernel, worked by hand: the 4 patches and their sums.
    #[test]
    fn a_3x3_image_unrolls_into_four_2x2_patches() {
        let g = ConvGeom::new((1, 3, 3), 1, 2, 1, 0).unwrap();
        assert_eq!((g.oh, g.ow, g.positions(), g.patch()), (2, 2, 4, 4));
        let img = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let mut rows = vec![9.0; 4 * 5];
        g.im2col(&img, &mut rows, 5, true);
        #[rustfmt::skip]
        let want = [
            1.0, 2.0, 4.0, 5.0, 1.0,
            2.0, 3.0, 5.0, 6.0, 1.0,
            4.0, 5.0, 7.0, 8.0, 1.0,
            5.0, 6.0, 8.0, 9.0, 1.0,
        ];
        assert_eq!(rows, want);
        // col2im adds every patch entry back where it came from: pixel 5 sits in all four patches.
        let mut back = vec![0.0; 9];
        g.col2im_add(&rows, 5, &mut back);
        assert_eq!(back, [1.0, 4.0, 3.0, 8.0, 20.0, 12.0, 7.0, 16.0, 9.0]);
    }

    #[test]
    fn padding_and_stride_place_patches_as_pytorch_does() {
        // 1x3x3 with padding 1 and stride 2: outputs at (0,0), (0,2), (2,0), (2,2) of the padded grid.
        let g = ConvGeom::new((1, 3, 3), 1, 3, 2, 1).unwrap();
        assert_eq!((g.oh, g.ow), (2, 2));
        let img: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let mut rows = vec![0.0; 4 * 9];
        g.im2col(&img, &mut rows, 9, false);
        // The first patch is centred on pixel (0, 0): its top row and left column are padding.
        assert_eq!(&rows[..9], &[0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 4.0, 5.0]);
        // The last is centred on (2, 2).
        assert_eq!(&rows[27..], &[5.0, 6.0, 0.0, 8.0, 9.0, 0.0, 0.0, 0.0, 0.0]);
        // Two channels: channel 1's patch follows channel 0's.
        let g2 = ConvGeom::new((2, 2, 2), 3, 2, 1, 0).unwrap();
        let img2 = [1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0];
        let mut r2 = vec![0.0; 8];
        g2.im2col(&img2, &mut r2, 8, false);
        assert_eq!(r2, [1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0]);
    }

    #[test]
    fn shapes_that_do_not_fit_are_refused() {
        assert!(ConvGeom::new((1, 4, 4), 2, 5, 1, 0).is_err());
        assert!(ConvGeom::new((1, 4, 4), 2, 5, 1, 1).is_ok());
        assert!(Pool::new(PoolKind::Max, 3, 3, (1, 2, 2)).is_err());
        let front = ConvFront {
            image: (1, 28, 28),
            layers: vec![
                ConvSpec {
                    channels: 16,
                    kernel: 5,
                    stride: 1,
                    padding: 0,
                    pool: Some((PoolKind::Max, 2, 2)),
                },
                ConvSpec {
                    channels: 32,
                    kernel: 5,
                    stride: 1,
                    padding: 0,
                    pool: Some((PoolKind::Max, 2, 2)),
                },
            ],
        };
        // LeNet: 28 -> 24 -> 12 -> 8 -> 4, 32 x 4 x 4 = 512.
        let (layers, out) = front.shapes().unwrap();
        assert_eq!(out, 512);
        assert_eq!((layers[1].0.patch(), layers[1].0.positions()), (400, 64));
    }

    #[test]
    fn pooling_by_hand() {
        let p = Pool::new(PoolKind::Max, 2, 2, (1, 2, 4)).unwrap();
        let maps = [1.0, 5.0, 2.0, 2.0, 3.0, 4.0, 7.0, 0.0];
        let (mut out, mut arg) = (vec![0.0; 2], vec![0u32; 2]);
        p.forward(&maps, &mut out, &mut arg);
        assert_eq!(out, [5.0, 7.0]);
        assert_eq!(arg, [1, 6]);
        let mut g = vec![9.0; 8];
        p.backward(&[1.0, -2.0], &arg, &mut g);
        assert_eq!(g, [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -2.0, 0.0]);
        // Ties: the first of equals takes the gradient.
        p.forward(
            &[3.0, 3.0, 1.0, 1.0, 3.0, 3.0, 1.0, 1.0],
            &mut out,
            &mut arg,
        );
        assert_eq!(arg, [0, 2]);
        let a = Pool::new(PoolKind::Avg, 2, 2, (1, 2, 4)).unwrap();
        a.forward(&maps, &mut out, &mut arg);
        assert_eq!(out, [13.0 / 4.0, 11.0 / 4.0]);
        a.backward(&[4.0, 8.0], &arg, &mut g);
        assert_eq!(g, [1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
    }
}
