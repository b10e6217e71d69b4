//! Running the store over time: retention, erasure, business figures, the service's lifecycle.

pub mod business;
pub mod erasure;
pub mod lifecycle;
pub mod retention;
