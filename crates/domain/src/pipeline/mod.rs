//! From accepted to stored: the buffer, the batch source in front of the writers, the
//! writers with their retry loop and circuit breaker, and the live tail they feed.

pub mod breaker;
pub mod buffer;
pub mod completion;
pub mod local_queue;
pub mod reports;
pub mod retry;
pub mod tail;
pub mod worker;
