//! The Aurore service: configuration and the wiring of adapters to the domain's ports.
//! No business logic lives here; it only builds, starts and stops the parts.

pub mod jobs;
pub mod settings;
pub mod startup;
pub mod wiring;

pub use settings::Settings;
pub use startup::Application;
