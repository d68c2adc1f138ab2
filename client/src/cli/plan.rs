//! `lexumctl plan [NEW.lxm]`: predict what a program version will do,
//! before anything is submitted. The live state comes from one
//! linearizable snapshot (`Client::engine_snapshot`); the deterministic
//! engine then runs on a copy here, offline, with simulated workers
//! (`lexum_engine::simulate`). Nothing is proposed.
//!
//! Exit codes: 0 when nothing would be trapped or fail, 3 when something
//! would (a CI gate), 1 for a bad program or flag, 2 when the cluster is
//! unavailable.

use super::args::PlanFlags;
use super::check::read_source;
use super::output;
use super::settings::Settings;
use super::Failure;
use lexum_client::{parse_value, value, Client};
use lexum_compiler::{compile, render, CompileOptions, Diagnostic, Severity};
use lexum_engine::simulate::{
    simulate, Dispatch, FieldFate, GoalVerdict, Prediction, SimulatedOutcome, SimulationOptions,
};
use lexum_engine::{Engine, GoalStatus};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Runs `plan`: compiles, snapshots, simulates, prints; `Failure::Gated`
/// (exit 3) when something would be trapped or fail.
pub async fn run(settings: &Settings, client: &Client, flags: &PlanFlags) -> Result<(), Failure> {
    let options = options(flags)?;
    let program = match &flags.file {
        Some(path) => Some(compile_program(settings, path)?),
        None => None,
    };
    let snapshot = client.engine_snapshot().await?;
    let engine = Engine::restore(&snapshot.bytes)
        .map_err(|e| Failure::User(format!("the cluster's snapshot does not restore here (version skew?): {e}")))?;
    if program.is_none() && engine.program().is_none() {
        return Err(Failure::User("the cluster has no program yet: give plan a file".into()));
    }
    let prediction = simulate(engine, program.as_deref(), &options);
    if settings.json() {
        output::json(&to_json(&prediction));
    } else {
        out!("{}", render_text(&prediction, settings.color_stdout));
    }
    if prediction.gates() {
        Err(Failure::Gated)
    } else {
        Ok(())
    }
}

/// Validated simulation options from the flags.
fn options(flags: &PlanFlags) -> Result<SimulationOptions, Failure> {
    let effect_name = |name: &str, flag: &str| {
        let valid = name.split_once('.').is_some_and(|(ns, n)| value::is_ident(ns) && value::is_ident(n));
        if valid {
            Ok(name.to_string())
        } else {
            Err(Failure::User(format!("{flag} `{name}`: expected Namespace.Name")))
        }
    };
    let mut results = BTreeMap::new();
    for item in &flags.results {
        let Some((name, text)) = item.split_once('=') else {
            return Err(Failure::User(format!("--result `{item}`: expected Effect.Name=VALUE")));
        };
        let name = effect_name(name.trim(), "--result")?;
        let v = parse_value(text.trim()).map_err(|e| Failure::User(format!("--result `{item}`: {e}")))?;
        results.insert(name, v);
    }
    let failures = flags.fail.iter().map(|f| effect_name(f.trim(), "--fail")).collect::<Result<BTreeSet<_>, _>>()?;
    if flags.steps == 0 {
        return Err(Failure::User("--steps must be at least 1".into()));
    }
    Ok(SimulationOptions { max_entries: flags.steps, results, failures, ..SimulationOptions::default() })
}

/// Compiles `path` locally (diagnostics on stderr, as `submit`); the
/// program's bytes, or `Failure::Reported` on an error.
fn compile_program(settings: &Settings, path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    let source = read_source(path).map_err(Failure::User)?;
    let name = path.display().to_string();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(|| compile(&name, &source, &CompileOptions::default()));
    std::panic::set_hook(previous);
    let compiled = outcome.map_err(|_| Failure::User(format!("internal compiler error while compiling {name}")))?;
    let errors = compiled.diagnostics.iter().any(Diagnostic::is_error);
    let shown: Vec<Diagnostic> =
        compiled.diagnostics.into_iter().filter(|d| errors || d.severity == Severity::Warning).collect();
    if !settings.json() || errors {
        eprint!("{}", render(&shown, &name, &source, settings.color_stderr));
    }
    match compiled.program {
        Some(program) if !errors => Ok(program.encode()),
        _ => Err(Failure::Reported),
    }
}

fn args_text(args: &[(String, lexum_client::Value)]) -> String {
    args.iter().map(|(n, v)| format!("{n}: {}", value::display(v))).collect::<Vec<_>>().join(", ")
}

fn outcome_text(outcome: &SimulatedOutcome) -> String {
    match outcome {
        SimulatedOutcome::Succeeded { value: Some(v) } => format!("→ {}", value::display(v)),
        SimulatedOutcome::Succeeded { value: None } => "→ ok".into(),
        SimulatedOutcome::Failed => "→ fails".into(),
        SimulatedOutcome::Unanswered => "→ (no answer before the step limit)".into(),
    }
}

fn fate_text(fate: FieldFate) -> &'static str {
    match fate {
        FieldFate::Migrated => "migrated",
        FieldFate::Added => "added",
        FieldFate::Dropped => "dropped",
        FieldFate::Retyped => "retyped",
    }
}

/// The verdict's detail: a trap's goals, fields and vector, dominance,
/// contention, or the evidence.
fn detail(v: &GoalVerdict) -> String {
    let mut parts = Vec::new();
    if v.status == GoalStatus::Trapped && !v.goals.is_empty() {
        parts.push(format!("goals {}", v.goals.join(", ")));
        parts.push(format!("fields {}", v.fields.join(", ")));
        let vector: Vec<String> = v.vector.iter().map(|e| format!("{} {:+}", e.writer, e.delta)).collect();
        parts.push(format!("vector [{}]", vector.join(", ")));
    }
    if !v.dominated_by.is_empty() {
        parts.push(format!("dominated by {}", v.dominated_by.join(", ")));
    }
    for c in &v.contention {
        parts.push(format!(
            "written by outside principal {} ({} undos of {})",
            c.principal,
            c.undos,
            c.fields.join(", ")
        ));
    }
    if parts.is_empty() {
        if let Some(e) = &v.evidence {
            parts.push(e.clone());
        }
    }
    parts.join("; ")
}

/// The verdict label: CONTESTED where an outside principal writes the
/// goal's inputs now, otherwise the predicted status.
fn verdict_label(v: &GoalVerdict) -> String {
    if !v.contention.is_empty() && v.status != GoalStatus::Trapped && v.status != GoalStatus::Failed {
        "CONTESTED".into()
    } else {
        v.status.to_string()
    }
}

/// The one-line summary.
pub fn summary_line(p: &Prediction) -> String {
    let s = &p.summary;
    let contested = p.verdicts.iter().filter(|v| verdict_label(v) == "CONTESTED").count();
    let mut line = format!(
        "{} goals: {} satisfied, {} trapped, {} failed, {} dominated, {} contested, {} unsettled after {} entries{}",
        p.verdicts.len(),
        s.satisfied,
        s.trapped,
        s.failed,
        s.dominated,
        contested,
        s.unsettled,
        p.entries,
        if p.quiet { "" } else { " (step limit reached)" }
    );
    if let Some(r) = &p.rejected {
        line = format!("the cluster would refuse this program: {r}");
    }
    let verdict = if p.gates() { "would trap or fail (exit 3)" } else { "nothing would trap or fail" };
    format!("{line}; {verdict}")
}

/// The human report, in order: fields, newly violated goals, dispatch
/// sequence, verdicts, summary.
pub fn render_text(p: &Prediction, color: bool) -> String {
    let mut out = String::new();
    let hash = p.program_hash.as_deref().map(|h| &h[..h.len().min(12)]).unwrap_or("-");
    let what = if p.new_version { "new version" } else { "current version" };
    let _ = writeln!(out, "plan: {what} {hash} from the live state at index {}", p.from_index);
    if let Some(r) = &p.rejected {
        let _ = writeln!(out, "\nrefused: {r}");
    }
    if p.new_version {
        let _ = writeln!(out, "\nFields");
        if p.fields.is_empty() {
            let _ = writeln!(out, "  (none)");
        }
        for f in &p.fields {
            let values = match (&f.before, &f.after) {
                (Some(b), Some(_)) if f.fate == FieldFate::Migrated => format!("{} (kept)", value::display(b)),
                (Some(b), Some(a)) => format!("{} → {}", value::display(b), value::display(a)),
                (Some(b), None) => format!("{} (lost)", value::display(b)),
                (None, Some(a)) => format!("= {}", value::display(a)),
                (None, None) => String::new(),
            };
            let _ = writeln!(out, "  {:<9} {} {}  {}", fate_text(f.fate), f.field, f.ty, values);
        }
    }
    let _ = writeln!(out, "\nGoals that become violated");
    if p.violated.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for g in &p.violated {
        let before = match g.before {
            None => "new goal".to_string(),
            Some(s) => format!("was {s}"),
        };
        let _ = writeln!(out, "  {:<10} {}  ({before})", g.priority.to_string(), g.goal);
    }
    let _ = writeln!(out, "\nDispatch sequence");
    if p.dispatch.is_empty() {
        let _ = writeln!(out, "  (nothing to do)");
    }
    for d in &p.dispatch {
        let line = match d {
            Dispatch::Slice { index, priority, goal, transition, slice } => {
                format!("  #{index:<6} {:<10} {goal}: {transition}.{slice}", priority.to_string())
            }
            Dispatch::Delivery { index, priority, handler, args } => {
                format!("  #{index:<6} {:<10}   deliver {handler}({})", priority.to_string(), args_text(args))
            }
            Dispatch::Effect { index, priority, effect, args, attempt, outcome, .. } => format!(
                "  #{index:<6} {:<10}   effect {effect}({}) attempt {attempt} {}",
                priority.to_string(),
                args_text(args),
                outcome_text(outcome)
            ),
        };
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "\nPredicted verdicts");
    for v in &p.verdicts {
        let label = verdict_label(v);
        let painted = match output::status_color(&label).filter(|_| color) {
            Some(c) => format!("{c}{label:<10}\x1b[0m"),
            None => format!("{label:<10}"),
        };
        let code = v.code.clone().unwrap_or_else(|| "-".into());
        let _ = writeln!(out, "  {painted} {code:<5} {:<10} {}  {}", v.priority.to_string(), v.goal, detail(v));
    }
    let _ = writeln!(out, "\n{}", summary_line(p));
    out
}

/// The same report as data.
pub fn to_json(p: &Prediction) -> serde_json::Value {
    let value = |v: &Option<lexum_client::Value>| v.as_ref().map(value::to_json);
    let dispatch: Vec<serde_json::Value> = p
        .dispatch
        .iter()
        .map(|d| match d {
            Dispatch::Slice { index, priority, goal, transition, slice } => serde_json::json!({
                "kind": "slice", "index": index, "priority": priority.to_string(), "goal": goal,
                "transition": transition, "slice": slice,
            }),
            Dispatch::Delivery { index, priority, handler, args } => serde_json::json!({
                "kind": "delivery", "index": index, "priority": priority.to_string(), "handler": handler,
                "args": args_json(args),
            }),
            Dispatch::Effect { index, priority, goal, effect, args, attempt, outcome } => {
                let (result, answer) = match outcome {
                    SimulatedOutcome::Succeeded { value: v } => ("succeeded", value(v)),
                    SimulatedOutcome::Failed => ("failed", None),
                    SimulatedOutcome::Unanswered => ("unanswered", None),
                };
                serde_json::json!({
                    "kind": "effect", "index": index, "priority": priority.to_string(), "goal": goal,
                    "effect": effect, "args": args_json(args), "attempt": attempt, "outcome": result,
                    "result": answer,
                })
            }
        })
        .collect();
    let verdicts: Vec<serde_json::Value> = p
        .verdicts
        .iter()
        .map(|v| {
            serde_json::json!({
                "goal": v.goal,
                "priority": v.priority.to_string(),
                "verdict": verdict_label(v),
                "status": v.status.to_string(),
                "code": v.code,
                "evidence": v.evidence,
                "goals": v.goals,
                "fields": v.fields,
                "vector": v.vector.iter().map(|e| serde_json::json!({
                    "field": e.field, "writer": e.writer, "delta": e.delta, "index": e.index,
                })).collect::<Vec<_>>(),
                "dominated_by": v.dominated_by,
                "contention": v.contention.iter().map(|c| serde_json::json!({
                    "principal": c.principal, "undos": c.undos, "fields": c.fields, "penalty": c.penalty,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "from_index": p.from_index,
        "program_hash": p.program_hash,
        "new_version": p.new_version,
        "rejected": p.rejected,
        "fields": p.fields.iter().map(|f| serde_json::json!({
            "field": f.field, "fate": fate_text(f.fate), "type": f.ty,
            "before": value(&f.before), "after": value(&f.after),
        })).collect::<Vec<_>>(),
        "violated": p.violated.iter().map(|g| serde_json::json!({
            "goal": g.goal, "priority": g.priority.to_string(), "before": g.before.map(|s| s.to_string()),
        })).collect::<Vec<_>>(),
        "dispatch": dispatch,
        "verdicts": verdicts,
        "entries": p.entries,
        "quiet": p.quiet,
        "summary": summary_line(p),
        "exit_code": if p.gates() { 3 } else { 0 },
    })
}

fn args_json(args: &[(String, lexum_client::Value)]) -> serde_json::Value {
    serde_json::Value::Object(args.iter().map(|(n, v)| (n.clone(), value::to_json(v))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lexum_engine::EngineConfig;

    fn predict(source: &str) -> Prediction {
        let program = compile("t.lxm", source, &CompileOptions::default()).program.map(|p| p.encode());
        simulate(Engine::new(EngineConfig::default()), program.as_deref(), &SimulationOptions::default())
    }

    #[test]
    fn the_tug_of_war_report_names_the_trap_and_gates() {
        let p = predict(include_str!("../../../examples/tugofwar.lxm"));
        let text = render_text(&p, false);
        let sections = ["Fields", "Goals that become violated", "Dispatch sequence", "Predicted verdicts"];
        let mut at = 0;
        for s in sections {
            let found = text[at..].find(s).unwrap_or_else(|| panic!("{s} missing or out of order in\n{text}"));
            at += found;
        }
        assert!(text.contains("TRAPPED    E005"), "{text}");
        assert!(text.contains("fields Thermostat.heater"), "{text}");
        assert!(text.contains("vector [Warm.Heating +5"), "{text}");
        assert!(text.contains("(exit 3)"), "{text}");
        let json = to_json(&p);
        assert_eq!(json["exit_code"], 3);
        assert_eq!(json["verdicts"][0]["verdict"], "TRAPPED");
        assert_eq!(json["verdicts"][0]["fields"][0], "Thermostat.heater");
    }

    #[test]
    fn effects_are_listed_with_their_arguments_and_answers() {
        let p = predict(include_str!("../../../examples/autoscaler.lxm"));
        let text = render_text(&p, false);
        assert!(text.contains("effect Cloud.SetNodeCount(pool: \"web\", count: 6) attempt 1 → 6"), "{text}");
        assert!(text.contains("nothing would trap or fail"), "{text}");
        assert_eq!(to_json(&p)["dispatch"][0]["kind"], "slice");
    }

    #[test]
    fn bad_flags_are_user_errors() {
        let flags = |results: &[&str], fail: &[&str], steps| PlanFlags {
            file: None,
            results: results.iter().map(|s| s.to_string()).collect(),
            fail: fail.iter().map(|s| s.to_string()).collect(),
            steps,
        };
        assert!(options(&flags(&["Cloud.Scale=5"], &["Pager.Notify"], 10)).is_ok());
        assert!(matches!(options(&flags(&["Cloud.Scale"], &[], 10)), Err(Failure::User(_))));
        assert!(matches!(options(&flags(&[], &["nodot"], 10)), Err(Failure::User(_))));
        assert!(matches!(options(&flags(&["Cloud.Scale=[1,"], &[], 10)), Err(Failure::User(_))));
        assert!(matches!(options(&flags(&[], &[], 0)), Err(Failure::User(_))));
    }
}
