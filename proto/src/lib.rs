//! Wardline's contracts: the gRPC APIs of intake, routing, billing and
//! notification, and the event envelope every service publishes on
//! JetStream. Services depend on this crate and never on each other.
//!
//! The module tree mirrors the protobuf packages (`wardline.<area>.v1`),
//! which the generated code relies on for cross-package references.
//!
//! Besides the generated code:
//! - [`json`]: every message implements `serde` with the proto3 JSON
//!   mapping (what `wardctl --json` prints and its scenario files hold);
//! - [`ProtoEnum`]: every enum knows its values and their labels
//!   (`in-progress`), and [`common::Priority::short_name`] writes `P1`;
//! - [`money`]: amounts in a currency's major unit per ISO 4217.

#![allow(clippy::all, missing_docs)]

pub mod enums;
pub mod json;
pub mod money;

pub use enums::{ProtoEnum, label, priority};

pub mod wardline {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("wardline.common.v1");
        }
    }
    pub mod events {
        pub mod v1 {
            tonic::include_proto!("wardline.events.v1");
        }
    }
    pub mod intake {
        pub mod v1 {
            tonic::include_proto!("wardline.intake.v1");
        }
    }
    pub mod routing {
        pub mod v1 {
            tonic::include_proto!("wardline.routing.v1");
        }
    }
    pub mod billing {
        pub mod v1 {
            tonic::include_proto!("wardline.billing.v1");
        }
    }
    pub mod notification {
        pub mod v1 {
            tonic::include_proto!("wardline.notification.v1");
        }
    }
}

pub use wardline::billing::v1 as billing;
pub use wardline::common::v1 as common;
pub use wardline::events::v1 as events;
pub use wardline::intake::v1 as intake;
pub use wardline::notification::v1 as notification;
pub use wardline::routing::v1 as routing;

/// Encoded `FileDescriptorSet` of every Wardline proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/wardline_descriptor.bin"));
