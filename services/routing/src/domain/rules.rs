//! Category rules: which skills (and credentials) a ticket category needs.
//!
//! Shipped defaults: each category requires the skill module of the same
//! name at level 1 or more (`Other` requires none); clinical categories
//! require a clinical credential when the caller is a clinician. A tenant
//! admin overrides a category over gRPC.

use super::{Category, ClinicalCredential, CredentialPolicy, SkillModule};

/// The rule in force for one category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub category: Category,
    /// Required modules with minimum levels; the first is the one candidates are ranked by.
    pub required: Vec<(SkillModule, u32)>,
    pub credential_policy: CredentialPolicy,
    /// Credentials that satisfy the policy; empty means any.
    pub accepted_credentials: Vec<ClinicalCredential>,
    /// True when the tenant has overridden the default.
    pub tenant_override: bool,
    /// Version of the override (0 for the default).
    pub version: u64,
}

/// Every category a rule exists for (all but `Unspecified`).
pub const CATEGORIES: [Category; 12] = [
    Category::Orders,
    Category::MedicationAdministration,
    Category::ClinicalDocumentation,
    Category::Results,
    Category::PatientLists,
    Category::Scheduling,
    Category::RegistrationAdt,
    Category::LoginAccess,
    Category::Devices,
    Category::Printing,
    Category::Network,
    Category::Other,
];

/// The skill module named like a category.
pub fn module_for(category: Category) -> Option<SkillModule> {
    Some(match category {
        Category::Orders => SkillModule::Orders,
        Category::MedicationAdministration => SkillModule::MedicationAdministration,
        Category::ClinicalDocumentation => SkillModule::ClinicalDocumentation,
        Category::Results => SkillModule::Results,
        Category::PatientLists => SkillModule::PatientLists,
        Category::Scheduling => SkillModule::Scheduling,
        Category::RegistrationAdt => SkillModule::RegistrationAdt,
        Category::LoginAccess => SkillModule::LoginAccess,
        Category::Devices => SkillModule::Devices,
        Category::Printing => SkillModule::Printing,
        Category::Network => SkillModule::Network,
        Category::Other | Category::Unspecified => return None,
    })
}

/// True for categories handled (and billed) as clinical.
pub fn is_clinical(category: Category) -> bool {
    matches!(
        category,
        Category::Orders
            | Category::MedicationAdministration
            | Category::ClinicalDocumentation
            | Category::Results
            | Category::PatientLists
    )
}

/// The shipped rule of `category`.
pub fn default_rule(category: Category) -> Rule {
    Rule {
        category,
        required: module_for(category)
            .map(|m| vec![(m, 1)])
            .unwrap_or_default(),
        credential_policy: if is_clinical(category) {
            CredentialPolicy::WhenCallerClinical
        } else {
            CredentialPolicy::None
        },
        accepted_credentials: Vec::new(),
        tenant_override: false,
        version: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cover_every_category() {
        for c in CATEGORIES {
            let r = default_rule(c);
            assert_eq!(r.category, c);
            if c == Category::Other {
                assert!(r.required.is_empty());
            } else {
                assert_eq!(r.required.len(), 1);
                assert_eq!(r.required[0].1, 1);
            }
            assert_eq!(
                r.credential_policy == CredentialPolicy::WhenCallerClinical,
                is_clinical(c)
            );
        }
        assert_eq!(
            default_rule(Category::MedicationAdministration).required[0].0,
            SkillModule::MedicationAdministration
        );
    }
}
