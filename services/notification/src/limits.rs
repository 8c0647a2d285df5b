//! Every size limit of notification's API, in one place. The request
//! validation in [`crate::grpc`] checks against these constants,
//! `docs/limits.md` lists them per RPC, and `tests/limits.rs` walks the
//! edge of each (the maximum accepted, one past it refused with
//! INVALID_ARGUMENT naming the field, before anything is written).

/// `request_id` of every mutating RPC: printable ASCII (`kit::validate`).
pub const REQUEST_ID: usize = wardline_kit::validate::MAX_REQUEST_ID;
/// A recipient's `subject_id` (caller ids, analyst ids, rota keys):
/// `[A-Za-z0-9._@-]`.
pub const SUBJECT_ID: usize = 128;
/// A recipient's display name.
pub const NAME: usize = 200;
/// A pager address.
pub const PAGER: usize = 64;
/// An email address (`kit::validate::is_email`).
pub const EMAIL: usize = wardline_kit::validate::MAX_EMAIL;
/// Channels of one subscription (email, SMS, pager).
pub const SUBSCRIPTION_CHANNELS: usize = 3;
/// A webhook endpoint's URL.
pub const URL: usize = 2048;
/// RotateWebhookSecret's `overlap_seconds` (7 days).
pub const OVERLAP_SECONDS: u32 = 604_800;
/// A template override's email subject: one line.
pub const TEMPLATE_SUBJECT: usize = 200;
/// A template override's body.
pub const TEMPLATE_BODY: usize = 10_000;
/// Values of one repeated filter (`kinds`, `event_kinds`, `channels`,
/// `states`, `outcomes`).
pub const FILTER_VALUES: usize = 16;
/// `page_size` of every List RPC (0: the RPC's default).
pub const PAGE_SIZE: u32 = 500;
