//! Billing's domain: money, the tenant's calendar, and the rating of a
//! month. Plain Rust over plain data, exhaustively tested.

pub mod calendar;
pub mod money;
pub mod rating;
