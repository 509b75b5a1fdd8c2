//! Unit tests of the resampler.

use super::*;

const FILTERS: [Filter; 2] = [Filter::Bilinear, Filter::Bicubic];
type Size = (u32, u32);
type ErrorCase<'a> = (&'a [u8], u32, Option<SourceBox>, usize, u32, &'a str);

/// Resizes `src` to `(dw, dh)` with a fresh resizer, asserting success.
fn run(src: &[u8], (sw, sh): Size, area: Option<SourceBox>, (dw, dh): Size, f: Filter) -> Vec<u8> {
    let mut dst = vec![0; (dw * dh * 3) as usize];
    let result = Resizer::new().resize_rgb8(src, sw, sh, area, &mut dst, dw, dh, f);
    assert_eq!(result, Ok(()));
    dst
}

fn bx(x0: f64, y0: f64, x1: f64, y1: f64) -> Option<SourceBox> {
    Some(SourceBox { x0, y0, x1, y1 })
}

fn noise(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7919 % 251) as u8).collect()
}

#[test]
fn identity_size_copies_input() {
    let src = noise(13 * 7 * 3);
    for f in FILTERS {
        assert_eq!(run(&src, (13, 7), None, (13, 7), f), src);
        assert_eq!(run(&src, (13, 7), bx(0.0, 0.0, 13.0, 7.0), (13, 7), f), src);
    }
}

#[test]
fn integral_box_of_output_size_is_a_crop() {
    let src = noise(10 * 8 * 3);
    let rows = (3..5).map(|y| &src[(y * 10 + 2) * 3..(y * 10 + 6) * 3]);
    let expected: Vec<u8> = rows.flatten().copied().collect();
    let area = bx(2.0, 3.0, 6.0, 5.0);
    assert_eq!(run(&src, (10, 8), area, (4, 2), Filter::Bicubic), expected);
}

#[test]
fn solid_colour_is_preserved() {
    let colour = [12u8, 200, 255];
    let src: Vec<u8> = colour.iter().copied().cycle().take(37 * 23 * 3).collect();
    // Up, down, one axis only, vertical-first order, and a fractional box.
    let mut cases = [(80, 50), (9, 5), (37, 60), (50, 23), (36, 4)]
        .map(|s| (s, None))
        .to_vec();
    cases.push(((17, 41), bx(1.5, 2.25, 30.75, 20.0)));
    for f in FILTERS {
        for &(size, area) in &cases {
            let out = run(&src, (37, 23), area, size, f);
            assert!(out.chunks_exact(3).all(|p| p == colour), "{f:?} {size:?}");
        }
    }
}

#[test]
fn halving_two_pixels_rounds_half_up() {
    // Weights 0.5 / 0.5: (0 + 255) / 2 = 127.5, which Pillow rounds to 128.
    let out = run(
        &[0, 0, 0, 255, 255, 255],
        (2, 1),
        None,
        (1, 1),
        Filter::Bilinear,
    );
    assert_eq!(out, [128; 3]);
}

#[test]
fn invalid_requests_are_rejected() {
    let src = noise(4 * 4 * 3);
    let mut dst = vec![0u8; 2 * 2 * 3];
    let (ok, nan) = (bx(0.5, 0.5, 3.5, 3.5), bx(f64::NAN, 0.0, 2.0, 2.0));
    let cases: [ErrorCase; 11] = [
        (&[], 0, None, 12, 2, "ZeroSize"),
        (&src, 4, None, 0, 0, "ZeroSize"),
        (&src[1..], 4, ok, 12, 2, "BufferLength"),
        (&src, 4, ok, 11, 2, "BufferLength"),
        (&src, u32::MAX, None, 12, 2, "TooLarge"),
        (&src, 4, bx(-1.0, 0.0, 2.0, 2.0), 12, 2, "BoxOutOfBounds"),
        (&src, 4, bx(0.0, 0.0, 4.5, 2.0), 12, 2, "BoxOutOfBounds"),
        (&src, 4, bx(0.0, 0.0, 2.0, 4.01), 12, 2, "BoxOutOfBounds"),
        (&src, 4, nan, 12, 2, "BoxOutOfBounds"),
        (&src, 4, bx(2.0, 0.0, 2.0, 2.0), 12, 2, "EmptyBox"),
        (&src, 4, bx(0.0, 3.0, 4.0, 1.0), 12, 2, "EmptyBox"),
    ];
    let mut resizer = Resizer::new();
    for (input, sw, area, len, dw, expected) in cases {
        let result = resizer.resize_rgb8(input, sw, 4, area, &mut dst[..len], dw, 2, FILTERS[1]);
        let err = format!("{:?}", result.err());
        assert!(
            err.starts_with(&format!("Some({expected}")),
            "{err} for {area:?}"
        );
    }
    assert_eq!(dst, [0; 12], "rejected calls must not write");
}
