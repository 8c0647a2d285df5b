//! Routing's domain: who may take a ticket, who should, and when the clock
//! runs out. Plain Rust over plain data; exhaustively tested.

pub mod decision;
pub mod rules;
pub mod shift;
pub mod sla;

pub use wardline_proto::common::{CallerRole, Category, Priority};
pub use wardline_proto::events::Availability;
pub use wardline_proto::routing::{
    ClinicalCredential, CredentialPolicy, IneligibilityReason, RankingKey, SkillModule,
};

/// True for callers routed to credentialed analysts on clinical topics.
pub fn is_clinician(role: CallerRole) -> bool {
    matches!(
        role,
        CallerRole::Physician
            | CallerRole::Nurse
            | CallerRole::Pharmacist
            | CallerRole::OtherClinical
    )
}
