//! Pillow's NEAREST resize, which `Image.resize` uses for modes `P` and `1` whatever filter
//! is asked for: `_resize` builds the affine map `a[0] = (double)(x1 - x0) / xsize` (the
//! subtraction in `f32`), `a[2] = x0`, and `ImagingScaleAffine` walks it from `x0 + a[0] / 2`
//! by repeated addition, taking source index `COORD(v)` (`-1` below zero, else truncation).
//! Indices outside the source leave the output at 0 (`fill`). Read from Pillow's
//! `src/_imaging.c` and `src/libImaging/Geometry.c`.

/// The source indices of output samples `keep` of an axis: `out_size` samples over
/// `[in0, in1)` of an `in_size`-sample axis, `None` where Pillow's index leaves the source.
pub(super) fn indices(
    (in0, in1): (f32, f32),
    in_size: u32,
    out_size: u32,
    keep: std::ops::Range<u32>,
    out: &mut Vec<Option<usize>>,
) {
    out.clear();
    let step = f64::from(in1 - in0) / f64::from(out_size);
    let mut at = f64::from(in0) + step * 0.5;
    for i in 0..keep.end {
        if i >= keep.start {
            let index = if at < 0.0 { -1 } else { at as i64 };
            out.push(
                usize::try_from(index)
                    .ok()
                    .filter(|&x| x < in_size as usize),
            );
        }
        at += step;
    }
}

/// Copies source pixels of `channels` samples into the window rows of `dst`, pixel
/// (`xs[i]`, `ys[j]`) to (`i`, `j`); missing indices give zero pixels.
pub(super) fn gather<T: Copy + Default>(
    src: &[T],
    src_w: usize,
    channels: usize,
    (xs, ys): (&[Option<usize>], &[Option<usize>]),
    dst: &mut [T],
) {
    let row_len = xs.len() * channels;
    for (out_row, y) in dst.chunks_exact_mut(row_len).zip(ys) {
        let Some(y) = *y else {
            out_row.fill(T::default());
            continue;
        };
        let in_row = &src[y * src_w * channels..][..src_w * channels];
        for (px, x) in out_row.chunks_exact_mut(channels).zip(xs) {
            match *x {
                Some(x) => px.copy_from_slice(&in_row[x * channels..][..channels]),
                None => px.fill(T::default()),
            }
        }
    }
}
