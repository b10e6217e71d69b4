//! What Aurore is about: events, the rules they must meet, and the queries over them.

pub mod event;
pub mod filter;
pub mod histogram;
pub mod markup;
pub mod privacy;
pub mod query;
pub mod validation;
