//! Every size limit of intake's API, in one place. The request validation
//! in [`crate::grpc`] checks against these constants, `docs/limits.md`
//! lists them per RPC, and `tests/limits.rs` walks the edge of each (the
//! maximum accepted, one past it refused with INVALID_ARGUMENT naming the
//! field, before anything is written).

/// `request_id` of every mutating RPC: printable ASCII (`kit::validate`).
pub const REQUEST_ID: usize = wardline_kit::validate::MAX_REQUEST_ID;
/// `tenant_id`: a slug of 2 to this many characters.
pub const TENANT_ID: usize = 32;
/// `facility_id` (a tenant's facilities, a ticket's, a list filter): a slug.
pub const FACILITY_ID: usize = 64;
/// Display names: a tenant's, a facility's, a caller's.
pub const NAME: usize = 200;
/// `ticket_prefix`: 2 to this many uppercase letters.
pub const TICKET_PREFIX: usize = 6;
/// `reopen_window_hours` (90 days).
pub const REOPEN_WINDOW_HOURS: u32 = 24 * 90;
/// Facilities in one CreateTenant.
pub const FACILITIES: usize = 200;
/// GetTicket's `number` (`STM-000042`: prefix, dash, digits).
pub const TICKET_NUMBER: usize = 24;
/// `caller.caller_id`.
pub const CALLER_ID: usize = 64;
/// `caller.email` (RFC 5321's path limit, `kit::validate::is_email`).
pub const EMAIL: usize = wardline_kit::validate::MAX_EMAIL;
/// `caller.phone`: `+` and 8 to this many digits (E.164).
pub const PHONE_DIGITS: usize = wardline_kit::validate::MAX_E164_DIGITS;
/// `application`: `[a-z0-9_-]`.
pub const APPLICATION: usize = 64;
/// Free text: a ticket's description, a note's body.
pub const TEXT: usize = 10_000;
/// `assignee_analyst_id` filter: routing's analyst id.
pub const ANALYST_ID: usize = 64;
/// Values of one repeated filter (`statuses`, `priorities`) in ListTickets.
pub const FILTER_VALUES: usize = 16;
/// `page_size` of every List RPC (0: the RPC's default).
pub const PAGE_SIZE: u32 = 500;
/// ListTickets' default page.
pub const DEFAULT_PAGE: u32 = 50;
/// ListTenants' default page.
pub const DEFAULT_TENANTS_PAGE: u32 = 100;
/// ListNotes' default page.
pub const DEFAULT_NOTES_PAGE: u32 = 100;
