//! Running the store over time: retention, business figures, the service's lifecycle.

pub mod business;
pub mod lifecycle;
pub mod retention;
