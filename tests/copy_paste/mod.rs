//! Shared pieces of the copy-paste guard's tests.
pub mod scenes;
