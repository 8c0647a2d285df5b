//! Every size limit of routing's API, in one place. The request validation
//! in [`crate::grpc`] checks against these constants, `docs/limits.md`
//! lists them per RPC, and `tests/limits.rs` walks the edge of each (the
//! maximum accepted, one past it refused with INVALID_ARGUMENT naming the
//! field, before anything is written).

/// `request_id` of every mutating RPC: printable ASCII (`kit::validate`).
pub const REQUEST_ID: usize = wardline_kit::validate::MAX_REQUEST_ID;
/// An analyst id, `[a-z0-9._-]` (the subject of the analyst's token).
pub const ANALYST_ID: usize = 64;
/// A tenant slug (2 to this many characters).
pub const TENANT_ID: usize = 32;
/// A facility slug.
pub const FACILITY_ID: usize = 64;
/// An analyst's display name.
pub const NAME: usize = 200;
/// An analyst's email address (`kit::validate::is_email`).
pub const EMAIL: usize = wardline_kit::validate::MAX_EMAIL;
/// Most digits of an analyst's phone (E.164).
pub const PHONE_DIGITS: usize = wardline_kit::validate::MAX_E164_DIGITS;
/// An analyst's pager id.
pub const PAGER: usize = 64;
/// Tenants an analyst covers.
pub const COVERAGE: usize = 500;
/// Facilities of one covered tenant.
pub const FACILITIES: usize = 200;
/// Languages an analyst speaks.
pub const LANGUAGES: usize = 20;
/// Weekly shifts of an analyst.
pub const SHIFTS: usize = 50;
/// An analyst's `max_concurrent_tickets` (1 to this).
pub const MAX_CONCURRENT_TICKETS: u32 = 100;
/// `page_size` of every List RPC and GetQueue (0: the RPC's default).
pub const PAGE_SIZE: u32 = 500;
/// ListAnalysts' and GetQueue's default page.
pub const DEFAULT_PAGE: u32 = 100;
/// ListAssignments' default page.
pub const DEFAULT_ASSIGNMENTS_PAGE: u32 = 50;
/// Values of ListAssignments' `states` filter.
pub const FILTER_VALUES: usize = 16;
