//! The hot loops of a tile, in one place: the matrix-vector products of its reads ([`gemv`]) and the
//! row write of its batched constant-step devices ([`rowwrite`]). Each fast path (AVX2, chosen at run
//! time) is tested bit for bit against its portable or device-by-device reference. Callers outside this
//! crate reach them through [`Tile`](crate::tile::Tile) and [`FloatMatrix`](crate::float::FloatMatrix).

pub(crate) mod gemv;
pub(crate) mod rowwrite;
