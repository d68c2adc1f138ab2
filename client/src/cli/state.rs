//! `submit`, `set`, `get`: programs and domain state.

use super::check::{compile_file, read_source};
use super::output;
use super::settings::Settings;
use super::Failure;
use lexum_client::{parse_assignment, value, Client, FieldWrite, WriteOptions};
use lexum_compiler::{render, to_json, Diagnostic, Severity};
use std::path::Path;

/// Compiles locally (errors never reach the cluster), then installs.
pub async fn submit(settings: &Settings, client: &Client, path: &Path) -> Result<(), Failure> {
    let source = read_source(path).map_err(Failure::User)?;
    let name = path.display().to_string();
    let diagnostics = compile_file(&name, &source);
    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
    if has_errors {
        if settings.json() {
            output::json(&serde_json::to_value(to_json(&diagnostics, &name, &source)).unwrap_or_default());
        } else {
            eprint!("{}", render(&diagnostics, &name, &source, settings.color_stderr));
        }
        return Err(Failure::Reported);
    }
    let warnings: Vec<Diagnostic> = diagnostics.into_iter().filter(|d| d.severity == Severity::Warning).collect();
    if !settings.json() {
        eprint!("{}", render(&warnings, &name, &source, settings.color_stderr));
    }
    let submitted = client.submit_source(&name, &source).await?;
    if settings.json() {
        output::json(&serde_json::json!({
            "index": submitted.index,
            "version": submitted.version,
            "program_hash": submitted.program_hash,
            "warnings": to_json(&warnings, &name, &source),
        }));
    } else {
        println!(
            "installed {name} as version {} (hash {}) at index {}",
            submitted.version, submitted.program_hash, submitted.index
        );
    }
    Ok(())
}

/// Parses every assignment first (nothing is sent if one is malformed),
/// then writes them in one atomic mutation.
pub async fn set(
    settings: &Settings,
    client: &Client,
    assignments: &[String],
    caused_by: Vec<String>,
) -> Result<(), Failure> {
    let writes = assignments
        .iter()
        .map(|text| {
            let a = parse_assignment(text).map_err(|e| Failure::User(e.to_string()))?;
            Ok(FieldWrite::new(a.domain, a.field, a.value))
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    let index = client.mutate_with(&writes, &WriteOptions { as_name: None, caused_by }).await?;
    if settings.json() {
        output::json(&serde_json::json!({ "index": index }));
    } else {
        let what: Vec<String> =
            writes.iter().map(|w| format!("{}.{} = {}", w.domain, w.field, value::display(&w.value))).collect();
        println!("set {} at index {index}", what.join(", "));
    }
    Ok(())
}

/// Shows one domain's fields.
pub async fn get(settings: &Settings, client: &Client, domain: &str) -> Result<(), Failure> {
    let state = client.read(domain).await?;
    if settings.json() {
        let object: serde_json::Map<String, serde_json::Value> =
            state.fields.iter().map(|(name, v)| (name.clone(), value::to_json(v))).collect();
        output::json(&serde_json::Value::Object(object));
    } else {
        let rows: Vec<Vec<String>> =
            state.fields.iter().map(|(name, v)| vec![name.clone(), value::display(v)]).collect();
        output::table(&["FIELD", "VALUE"], &rows, |_, _| None);
    }
    Ok(())
}
