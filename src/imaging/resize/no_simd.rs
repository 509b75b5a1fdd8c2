//! Targets without the SIMD kernels: [`Simd`] has no values, so `Option<Simd>` is always
//! `None` and the scalar passes run.

use super::taps::Taps;

/// Uninhabited stand-in for the x86_64 SIMD kernels' capability token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Simd {}

impl Simd {
    /// Never any SIMD kernels on this target.
    pub(super) fn detect() -> Option<Self> {
        None
    }

    /// Unreachable: no `Simd` value exists.
    pub(super) fn horizontal<const C: usize>(self, _: &[u8], _: usize, _: &Taps, _: &mut [u8]) {
        match self {}
    }

    /// Unreachable: no `Simd` value exists.
    pub(super) fn vertical(self, _: &[u8], _: (usize, usize), _: usize, _: &Taps, _: &mut [u8]) {
        match self {}
    }
}
