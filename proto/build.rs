//! Compiles every `.proto` under `wardline/` with protox (pure Rust, so no
//! system `protoc` is needed) and writes the encoded descriptor set next to
//! the generated code, where gRPC server reflection and the JSON mapping
//! (`src/json.rs`) pick it up.
//!
//! Besides prost's and tonic's code it writes `wardline_json.rs`: one
//! `json_message!` line per message (serde through the descriptor set) and
//! one `proto_enum!` line per enum (its values and their labels, the value
//! names without the enum's prefix, lowercase with dashes:
//! `TICKET_STATUS_IN_PROGRESS` is `in-progress`). Both macros live in
//! `src/json.rs`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use heck::{ToShoutySnakeCase as _, ToUpperCamelCase as _};
use prost::Message;
use prost_types::FileDescriptorSet;

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

/// `crate::wardline::intake::v1` for package `wardline.intake.v1`.
fn module(package: &str) -> String {
    format!("crate::{}", package.replace('.', "::"))
}

/// The `json_message!`/`proto_enum!` lines of Wardline's own packages
/// (not `google.protobuf`, whose types are prost-types').
fn json_impls(fds: &FileDescriptorSet) -> Result<String, Box<dyn std::error::Error>> {
    let mut out = String::new();
    for file in &fds.file {
        let package = file.package();
        if !package.starts_with("wardline.") {
            continue;
        }
        let module = module(package);
        for m in &file.message_type {
            // Nested types would live in a submodule: Wardline has none.
            if !m.nested_type.is_empty() || !m.enum_type.is_empty() {
                return Err(format!("{package}.{}: nested types are not mapped", m.name()).into());
            }
            writeln!(
                out,
                "json_message!({module}::{});",
                m.name().to_upper_camel_case()
            )?;
        }
        for e in &file.enum_type {
            let prefix = format!("{}_", e.name().to_shouty_snake_case());
            let mut values = String::new();
            for v in e.value.iter().filter(|v| v.number() != 0) {
                let short = v.name().strip_prefix(&prefix).unwrap_or(v.name());
                let label = short.to_ascii_lowercase().replace('_', "-");
                write!(values, "({}, {label:?}), ", v.number())?;
            }
            writeln!(
                out,
                "proto_enum!({module}::{}, \"{package}.{}\", [{values}]);",
                e.name().to_upper_camel_case(),
                e.name()
            )?;
        }
    }
    Ok(out)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let mut files = Vec::new();
    collect(&root.join("wardline"), &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed={}", root.join("wardline").display());
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    let fds = protox::compile(&files, [&root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("wardline_descriptor.bin"), fds.encode_to_vec())?;
    std::fs::write(out_dir.join("wardline_json.rs"), json_impls(&fds)?)?;

    // Type names (`prost::Name`) let the JSON mapping find each message's
    // descriptor by its full name.
    let mut config = prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
