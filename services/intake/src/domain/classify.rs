//! Keyword classification of a description into a category.
//!
//! Runs inside intake so that the free text never has to leave it: the
//! category (a code) travels in events, the words do not. Rules are checked
//! in order and the category with the most matching keywords wins; ties go to
//! the earlier (more clinical) rule. Nothing matching gives `Other`.

use wardline_proto::common::Category;

/// Keywords per category, lower case. A keyword matches a whole word or,
/// when it contains a space, a phrase.
const RULES: &[(Category, &[&str])] = &[
    (
        Category::MedicationAdministration,
        &[
            "emar",
            "mar",
            "medication",
            "medications",
            "barcode",
            "bcma",
            "dose",
            "scan",
            "scanner",
            "pharmacy",
            "infusion",
            "pump",
            "wristband scan",
        ],
    ),
    (
        Category::Orders,
        &[
            "order",
            "orders",
            "cpoe",
            "sign",
            "signing",
            "cosign",
            "order set",
            "orderset",
            "prescription",
            "prescribe",
            "verify",
            "verification",
        ],
    ),
    (
        Category::ClinicalDocumentation,
        &[
            "note",
            "notes",
            "flowsheet",
            "flowsheets",
            "documentation",
            "document",
            "charting",
            "chart",
            "assessment",
            "progress note",
            "template",
        ],
    ),
    (
        Category::Results,
        &[
            "result",
            "results",
            "lab",
            "labs",
            "imaging",
            "radiology",
            "pacs",
            "critical value",
            "pathology",
        ],
    ),
    (
        Category::PatientLists,
        &[
            "patient list",
            "patient lists",
            "census",
            "handoff",
            "list",
            "lists",
            "worklist",
            "incomplete",
        ],
    ),
    (
        Category::Scheduling,
        &[
            "schedule",
            "scheduling",
            "appointment",
            "appointments",
            "calendar",
            "slot",
            "slots",
        ],
    ),
    (
        Category::RegistrationAdt,
        &[
            "registration",
            "register",
            "admit",
            "admission",
            "discharge",
            "transfer",
            "adt",
            "mrn",
            "bed",
        ],
    ),
    (
        Category::LoginAccess,
        &[
            "login",
            "log in",
            "password",
            "locked",
            "lockout",
            "access",
            "badge",
            "sso",
            "account",
            "mfa",
            "permission",
        ],
    ),
    (
        Category::Devices,
        &[
            "device",
            "workstation",
            "wow",
            "computer",
            "monitor",
            "keyboard",
            "mouse",
            "tablet",
            "laptop",
            "wheels",
        ],
    ),
    (
        Category::Printing,
        &[
            "print",
            "printer",
            "printing",
            "label",
            "labels",
            "wristband",
            "toner",
            "jam",
            "jammed",
        ],
    ),
    (
        Category::Network,
        &[
            "network",
            "wifi",
            "wi-fi",
            "wireless",
            "internet",
            "vpn",
            "connection",
            "disconnected",
            "offline",
            "slow",
        ],
    ),
];

/// The category a description most likely belongs to.
pub fn classify(description: &str) -> Category {
    let lower = description.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '-'))
        .filter(|w| !w.is_empty())
        .collect();
    let joined = format!(" {} ", words.join(" "));
    let mut best = (0usize, Category::Other);
    for (category, keywords) in RULES {
        let score = keywords
            .iter()
            .filter(|k| {
                if k.contains(' ') {
                    joined.contains(&format!(" {k} "))
                } else {
                    words.contains(k)
                }
            })
            .count();
        if score > best.0 {
            best = (score, *category);
        }
    }
    best.1
}

/// True for the categories billed and routed as clinical.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical_calls() {
        let cases = [
            (
                "My patient list is incomplete since this morning",
                Category::PatientLists,
            ),
            (
                "I can't sign these orders, the sign button is greyed out",
                Category::Orders,
            ),
            (
                "eMAR barcode scanner won't scan the medication for bed 12",
                Category::MedicationAdministration,
            ),
            ("Wristband printer jammed again", Category::Printing),
            ("Locked out, password expired", Category::LoginAccess),
            ("Lab results not showing for my patient", Category::Results),
            ("wifi keeps dropping on 4 west", Category::Network),
            (
                "The flowsheet won't save my assessment",
                Category::ClinicalDocumentation,
            ),
            (
                "Cannot book appointment slots for clinic",
                Category::Scheduling,
            ),
            ("Admission fails with MRN error", Category::RegistrationAdt),
            ("Something odd happened", Category::Other),
            ("", Category::Other),
        ];
        for (text, want) in cases {
            assert_eq!(classify(text), want, "{text}");
        }
    }

    #[test]
    fn clinical_split() {
        assert!(is_clinical(Category::MedicationAdministration));
        assert!(is_clinical(Category::PatientLists));
        assert!(!is_clinical(Category::Printing));
        assert!(!is_clinical(Category::Other));
        assert!(!is_clinical(Category::Unspecified));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_never_unspecified(s in ".{0,400}") {
            proptest::prop_assert_ne!(classify(&s), Category::Unspecified);
        }
    }
}
