//! The routing core (stub while the pieces land).
pub mod bins;
pub mod clock;
pub mod decision;
pub mod error;
pub mod fees;
pub mod priority;
pub mod txn;
