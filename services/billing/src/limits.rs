//! Every size limit of billing's API, in one place. The request validation
//! in [`crate::grpc`] and [`crate::contract`] checks against these
//! constants, `docs/limits.md` lists them per RPC, and `tests/limits.rs`
//! walks the edge of each (the maximum accepted, one past it refused with
//! INVALID_ARGUMENT naming the field, before anything is written).

/// `request_id` of every mutating RPC: printable ASCII (`kit::validate`).
pub const REQUEST_ID: usize = wardline_kit::validate::MAX_REQUEST_ID;
/// A tenant slug (2 to this many characters).
pub const TENANT_ID: usize = 32;
/// Any amount of money in a contract, in minor units (100 million in major units).
pub const MONEY_MINOR_UNITS: i64 = 10_000_000_000;
/// A contract's `after_hours_surcharge_bps` (1000 %).
pub const SURCHARGE_BPS: u32 = 100_000;
/// A contract's `sla_credits.cap_bps` (100 %).
pub const CREDIT_CAP_BPS: u32 = 10_000;
/// Holidays of one contract version (a year's worth and some).
pub const HOLIDAYS: usize = 400;
/// Values of one repeated filter (`kinds`, `statuses`).
pub const FILTER_VALUES: usize = 16;
/// `page_size` of every List RPC (0: 100).
pub const PAGE_SIZE: u32 = 500;
/// The default page of every List RPC.
pub const DEFAULT_PAGE: u32 = 100;
