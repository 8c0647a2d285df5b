//! Every token-signing secret written anywhere in the repository is one the
//! services refuse outside development: anyone who has read the repository
//! knows it. The refused list is `wardline_kit::auth::settings::
//! KNOWN_SECRET_SHA256`; committing a new `JWT_SECRET=<value>` (in `.env`,
//! compose, a manifest, a doc, a script) without adding its hash there fails
//! this test.

use std::path::PathBuf;
use std::process::Command;

use wardline_kit::auth::settings::is_known_secret;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_owned()
}

/// The literal values assigned to a `*JWT_SECRET` variable in `text`:
/// `JWT_SECRET=value` (shell, .env) and `JWT_SECRET: value` (YAML), quotes
/// stripped; expansions (`$VAR`, `${..}`, `$(..)`) and placeholders in
/// angle brackets are not values.
fn assigned_secrets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut rest = line;
        while let Some(i) = rest.find("JWT_SECRET") {
            rest = &rest[i + "JWT_SECRET".len()..];
            let value = if let Some(v) = rest.strip_prefix('=') {
                v
            } else if let Some(v) = rest.strip_prefix(": ") {
                v
            } else {
                continue;
            };
            let value = value
                .split(|c: char| c.is_whitespace() || c == ',' || c == ')')
                .next()
                .unwrap_or("")
                .trim_matches(|c| c == '"' || c == '\'' || c == '`');
            if value.is_empty() || value.starts_with('$') || value.starts_with('<') {
                continue;
            }
            out.push(value.to_owned());
        }
    }
    out
}

#[test]
fn every_committed_jwt_secret_is_refused_outside_development() {
    let root = repo_root();
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(&root)
        .output()
        .expect("git runs");
    assert!(listed.status.success(), "git ls-files failed");
    let mut found = Vec::new();
    for path in listed.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let relative = String::from_utf8_lossy(path).into_owned();
        if relative == "tests/repository_secrets.rs" {
            continue; // this file's own examples below
        }
        let path = root.join(relative);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // binary, or deleted in the work tree
        };
        for secret in assigned_secrets(&text) {
            found.push((path.clone(), secret));
        }
    }
    let unknown: Vec<_> = found
        .iter()
        .filter(|(_, s)| !is_known_secret(s))
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert!(
        unknown.is_empty(),
        "these files assign a JWT secret the services would accept in production; \
         add its SHA-256 to wardline_kit::auth::settings::KNOWN_SECRET_SHA256: {unknown:?}"
    );
    // The test kit's secret (a constant, not an assignment) is refused too.
    assert!(is_known_secret(wardline_testkit::SECRET));
}

#[test]
fn assignments_are_found_in_every_notation() {
    let text = "WARDLINE_JWT_SECRET=abc-1\n  WARDLINE_JWT_SECRET: \"abc-2\"\n\
                export WARDLINE_JWT_SECRET=$(cat x) WARDLINE_JWT_SECRET=${S}\n\
                WARDLINE_JWT_SECRET=<yours> # WARDLINE_JWT_SECRET is unset\n";
    assert_eq!(assigned_secrets(text), ["abc-1", "abc-2"]);
    assert!(is_known_secret(
        "change-me-dev-only-jwt-signing-secret-0123456789"
    ));
}
