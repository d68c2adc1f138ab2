//! `submit`, `set`, `get`: programs and domain state.

use super::check::{compile_file, read_source};
use super::output;
use super::settings::Settings;
use super::Failure;
use lexum_client::value::{is_ident, parse_instance};
use lexum_client::{parse_assignment, parse_value, value, Client, FieldWrite, Value, WriteOptions};
use lexum_compiler::{render, to_json, Diagnostic, Severity};
use std::collections::BTreeMap;
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
        outln!(
            "installed {name} as version {} (hash {}) at index {}",
            submitted.version,
            submitted.program_hash,
            submitted.index
        );
    }
    Ok(())
}

/// Parses every assignment first (nothing is sent if one is malformed),
/// then writes them in one atomic mutation. With `create`, the instances
/// written are first created where missing (with the values written).
pub async fn set(
    settings: &Settings,
    client: &Client,
    assignments: &[String],
    caused_by: Vec<String>,
    create: bool,
) -> Result<(), Failure> {
    let writes = assignments
        .iter()
        .map(|text| {
            let a = parse_assignment(text).map_err(|e| Failure::User(e.to_string()))?;
            Ok(FieldWrite::new(a.domain, a.field, a.value))
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    if create {
        let mut by_kind: InstancesByKind = BTreeMap::new();
        for w in &writes {
            let Some((kind, key)) = w.domain.strip_suffix(']').and_then(|d| d.split_once('[')) else { continue };
            let instances = by_kind.entry(kind.to_string()).or_default();
            match instances.iter_mut().find(|(k, _)| k == key) {
                Some((_, values)) => values.push((w.field.clone(), w.value.clone())),
                None => instances.push((key.to_string(), vec![(w.field.clone(), w.value.clone())])),
            }
        }
        for (kind, instances) in &by_kind {
            client.create_instances(kind, instances, true).await?;
        }
    }
    let index = client.mutate_with(&writes, &WriteOptions { as_name: None, caused_by }).await?;
    if settings.json() {
        output::json(&serde_json::json!({ "index": index }));
    } else {
        let what: Vec<String> =
            writes.iter().map(|w| format!("{}.{} = {}", w.domain, w.field, value::display(&w.value))).collect();
        outln!("set {} at index {index}", what.join(", "));
    }
    Ok(())
}

/// Shows one domain's fields, or a page of a kind's instances (JSON:
/// `{instances: [{domain, fields}], total}`).
pub async fn get(settings: &Settings, client: &Client, target: &str, offset: u64, limit: u32) -> Result<(), Failure> {
    let (domain, goal) = super::goals::parse_target(target, false)?;
    if goal.is_some() {
        return Err(Failure::User(format!("get takes a domain, a kind or an instance (Kind/key), not `{target}`")));
    }
    let page = client.instances(&domain, offset, limit).await?;
    if page.total > 0 {
        return show_instances(settings, &page, offset);
    }
    let state = client.read(&domain).await?;
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

fn show_instances(settings: &Settings, page: &lexum_client::InstancePage, offset: u64) -> Result<(), Failure> {
    if settings.json() {
        let items: Vec<serde_json::Value> = page
            .instances
            .iter()
            .map(|(domain, fields)| {
                let fields: serde_json::Map<String, serde_json::Value> =
                    fields.iter().map(|(name, v)| (name.clone(), value::to_json(v))).collect();
                serde_json::json!({ "domain": domain, "fields": fields })
            })
            .collect();
        output::json(&serde_json::json!({ "instances": items, "total": page.total }));
        return Ok(());
    }
    eprintln!("instances {}-{} of {}", offset + 1, offset + page.instances.len() as u64, page.total);
    let names: Vec<String> = page
        .instances
        .first()
        .map(|(_, fields)| fields.iter().map(|(n, _)| n.to_ascii_uppercase()).collect())
        .unwrap_or_default();
    let mut header = vec!["INSTANCE"];
    header.extend(names.iter().map(String::as_str));
    let rows: Vec<Vec<String>> = page
        .instances
        .iter()
        .map(|(domain, fields)| {
            std::iter::once(domain.clone()).chain(fields.iter().map(|(_, v)| value::display(v))).collect()
        })
        .collect();
    output::table(&header, &rows, |_, _| None);
    Ok(())
}

/// Instances to create, by kind: each key with its initial values.
type InstancesByKind = BTreeMap<String, Vec<(String, Vec<(String, Value)>)>>;

/// Parses `Kind/key field=value ... Kind/key ...` into instances per kind.
fn parse_instances(items: &[String]) -> Result<InstancesByKind, Failure> {
    let mut out: InstancesByKind = BTreeMap::new();
    let mut current: Option<(String, usize)> = None;
    for item in items {
        if !item.contains('=') {
            let (kind, key) = parse_instance(item).map_err(|e| Failure::User(e.to_string()))?;
            let list = out.entry(kind.clone()).or_default();
            list.push((key, Vec::new()));
            current = Some((kind, list.len() - 1));
            continue;
        }
        let Some((kind, at)) = &current else {
            return Err(Failure::User(format!("`{item}` comes before any Kind/key")));
        };
        let (field, text) = item.split_once('=').unwrap_or_default();
        if !is_ident(field) {
            return Err(Failure::User(format!("malformed value `{item}`: expected field=value")));
        }
        let v = parse_value(text).map_err(|e| Failure::User(format!("bad value in `{item}`: {e}")))?;
        if let Some((_, values)) = out.get_mut(kind).and_then(|l| l.get_mut(*at)) {
            values.push((field.to_string(), v));
        }
    }
    Ok(out)
}

/// Creates instances: one request per kind, each all or none.
pub async fn create(settings: &Settings, client: &Client, items: &[String]) -> Result<(), Failure> {
    let by_kind = parse_instances(items)?;
    let mut indexes = Vec::new();
    for (kind, instances) in &by_kind {
        let index = client.create_instances(kind, instances, false).await?;
        indexes.push(index);
        if !settings.json() {
            let names: Vec<String> = instances.iter().map(|(key, _)| format!("{kind}[{key}]")).collect();
            outln!("created {} at index {index}", names.join(", "));
        }
    }
    if settings.json() {
        output::json(&serde_json::json!({ "indexes": indexes }));
    }
    Ok(())
}

/// Deletes instances: one request per kind.
pub async fn delete(settings: &Settings, client: &Client, instances: &[String]) -> Result<(), Failure> {
    let mut by_kind: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for text in instances {
        let (kind, key) = parse_instance(text).map_err(|e| Failure::User(e.to_string()))?;
        by_kind.entry(kind).or_default().push(key);
    }
    let mut indexes = Vec::new();
    for (kind, keys) in &by_kind {
        let index = client.delete_instances(kind, keys).await?;
        indexes.push(index);
        if !settings.json() {
            let names: Vec<String> = keys.iter().map(|key| format!("{kind}[{key}]")).collect();
            outln!("deleted {} at index {index}", names.join(", "));
        }
    }
    if settings.json() {
        output::json(&serde_json::json!({ "indexes": indexes }));
    }
    Ok(())
}
