//! The bundled DejaVu Sans for everything the service draws (eval charts, reward
//! explanations): registered with plotters once, from bytes compiled into the binary, so no
//! system font is needed at run time (assets/fonts/README.md).

use std::sync::OnceLock;

use plotters::style::FontStyle;

/// The family name plotters knows the bundled font by.
pub const SANS: &str = "psr-sans";

/// The bundled font's bytes could not be parsed (a corrupt build).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the bundled font cannot be read")]
pub struct FontError;

/// Registers [`SANS`] with plotters; later calls return the first call's outcome.
pub fn register_sans() -> Result<(), FontError> {
    static REGISTERED: OnceLock<Result<(), FontError>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes: &'static [u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
            plotters::style::register_font(SANS, FontStyle::Normal, bytes).map_err(|_| FontError)
        })
        .clone()
}
