//! The black-box suites as one test binary: one link instead of one per suite.

#![allow(clippy::unwrap_used)]

mod api;
mod console;
mod contract;
mod deploy;
mod durability;
mod edge;
mod filters;
mod nats;
mod observability;
mod privacy;
mod queue;
mod replica;
mod shippers;
mod store;
mod support;
mod tls;
