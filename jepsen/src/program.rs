//! The one program a soak run submits: every workload's domains side by
//! side (a cluster runs one program at a time).
//!
//! - `Reg`: three int registers (the registers workload).
//! - `Item[name]`: one instance per appended element (the set workload);
//!   its trivial goal makes every instance show up in `ListGoals`.
//! - `Job0..`: a target `want` that workers apply through the effect
//!   `Ops.Apply` and record as `done` (the effects and convergence workloads).
//! - `Doomed`: a goal violated from the start whose effect `Ops.Fail`
//!   every worker fails, so it is FAILED (E010) after [`DOOMED_ATTEMPTS`]
//!   attempts and stays FAILED: nothing writes it (the effects workload
//!   checks that no attempt beyond the limit ran).
//! - `Thermo<i>`, `Warm<i>`, `Chill<i>`: a tug-of-war (as in
//!   `examples/tugofwar.lxm`) that stays quiet until a client sets
//!   `Thermo<i>.armed`, then is trapped (E005) by the engine alone.

/// Jobs whose targets the effects workload moves.
pub const JOBS: usize = 4;
/// Tug-of-wars the traps workload arms during a run.
pub const FIGHTS: usize = 3;
/// The effect every worker fails.
pub const FAILING_EFFECT: &str = "Ops.Fail";
/// The retry limit of `Doomed`'s transition: attempts of `Ops.Fail`
/// before the goal is FAILED.
pub const DOOMED_ATTEMPTS: u32 = 3;

/// The source of the program.
pub fn source() -> String {
    let mut source = String::from(
        "effect Ops.Apply(n: int) -> int\n\
         effect Ops.Fail(n: int) -> int\n\n\
         domain Reg {\n  state {\n    k0: int = 0\n    k1: int = 0\n    k2: int = 0\n  }\n}\n\n\
         domain Item[name] {\n  state {\n    n: int = 0\n  }\n  goal Present { n >= 0 }\n}\n",
    );
    for d in 0..JOBS {
        source.push_str(&format!(
            "\ndomain Job{d} {{\n  state {{\n    done: int = 0\n    want: int = 1\n  }}\n  goal Applied {{ done == want }}\n  \
             transition Apply for Applied retry 1000 backoff 50ms..500ms {{\n    \
             slice call {{ emit Ops.Apply(n: want) -> got }}\n    slice record {{ done = got }}\n  }}\n}}\n"
        ));
    }
    source.push_str(&format!(
        "\ndomain Doomed {{\n  state {{\n    done: int = 0\n    want: int = 1\n  }}\n  goal Applied {{ done == want }}\n  \
         transition Apply for Applied retry {DOOMED_ATTEMPTS} backoff 50ms..100ms {{\n    \
         slice call {{ emit Ops.Fail(n: want) -> got }}\n    slice record {{ done = got }}\n  }}\n}}\n"
    ));
    for i in 0..FIGHTS {
        source.push_str(&format!(
            "\ndomain Thermo{i} {{\n  state {{\n    armed: int = 0\n    heater: int = 0\n    cooler: int = 0\n  }}\n  \
             on Heat(level: int) {{\n    heater = level\n    cooler = 0\n  }}\n  \
             on Cool(level: int) {{\n    cooler = level\n    heater = 0\n  }}\n}}\n\n\
             domain Warm{i} {{\n  reads Thermo{i}\n  goal Heating {{ Thermo{i}.armed == 0 || Thermo{i}.heater >= 5 }}\n  \
             transition TurnUp for Heating {{\n    slice s {{ send Thermo{i}.Heat(level: 5) }}\n  }}\n}}\n\n\
             domain Chill{i} {{\n  reads Thermo{i}\n  goal Cooling {{ Thermo{i}.armed == 0 || Thermo{i}.cooler >= 5 }}\n  \
             transition TurnDown for Cooling {{\n    slice s {{ send Thermo{i}.Cool(level: 5) }}\n  }}\n}}\n"
        ));
    }
    source
}

/// `text` with fight `i`'s domain names replaced by fight 0's, so a trap's
/// evidence can be compared with the reference run's.
pub fn as_fight_zero(text: &str, i: usize) -> String {
    let mut text = text.to_string();
    for domain in ["Thermo", "Warm", "Chill"] {
        text = text.replace(&format!("{domain}{i}"), &format!("{domain}0"));
    }
    text
}

/// The shape of a trap's evidence, comparable across runs: the goals
/// involved, the contested fields, and each field's oscillation vector
/// without log indices and cut to one period (a busy cluster proves the
/// fight after ten cycles, an idle one at the first recurrence; the
/// signed changes repeat the same way). Text that does not parse is
/// returned whole.
pub fn evidence_shape(evidence: &str) -> String {
    let Some((head, rest)) = evidence.split_once("; contested fields ") else { return evidence.to_string() };
    let Some((fields, vector)) = rest.split_once("; oscillation vector ") else { return evidence.to_string() };
    let kind = head.split(" between ").next().unwrap_or_default();
    let mut goals: Vec<&str> = head
        .split(" between ")
        .nth(1)
        .and_then(|g| g.split(" (").next())
        .map(|g| g.split(" and ").collect())
        .unwrap_or_default();
    goals.sort_unstable();
    let mut fields: Vec<&str> = fields.split(", ").collect();
    fields.sort_unstable();
    let mut vectors: Vec<String> = Vec::new();
    for part in vector.split("]; ") {
        let Some((field, entries)) = part.split_once(": [") else { continue };
        let entries: Vec<&str> = entries
            .trim_end_matches(']')
            .split(", ")
            .map(|e| e.rsplit_once('@').map_or(e, |(change, _)| change))
            .collect();
        let period = (1..=entries.len())
            .find(|&p| (p..entries.len()).all(|i| entries[i] == entries[i - p]))
            .unwrap_or(entries.len());
        vectors.push(format!("{field}: [{}]", entries[..period].join(", ")));
    }
    vectors.sort();
    format!(
        "{kind} between {}; fields {}; vector period {}",
        goals.join(" and "),
        fields.join(", "),
        vectors.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_compiles_without_errors() {
        let source = source();
        let compiled = lexum_compiler::compile("soak.lxm", &source, &lexum_compiler::CompileOptions::default());
        let errors: Vec<String> =
            compiled.diagnostics.iter().filter(|d| d.is_error()).map(|d| format!("{d:?}")).collect();
        assert!(!compiled.has_errors(), "{errors:?}");
    }

    #[test]
    fn the_doomed_goal_allows_its_effect_the_checked_number_of_attempts() {
        let compiled = lexum_compiler::compile("soak.lxm", &source(), &lexum_compiler::CompileOptions::default());
        let program = compiled.program.expect("compiles");
        let doomed = program.transitions.iter().find(|t| program.domains[t.domain.index()].name == "Doomed");
        assert_eq!(doomed.map(|t| t.retry.max_attempts), Some(DOOMED_ATTEMPTS));
        assert!(program.effects.iter().any(|e| e.full_name() == FAILING_EFFECT));
    }

    #[test]
    fn fight_names_are_mapped_to_fight_zero() {
        assert_eq!(
            as_fight_zero("Warm2.Heating vs Chill2.Cooling on Thermo2.heater", 2),
            "Warm0.Heating vs Chill0.Cooling on Thermo0.heater"
        );
    }

    #[test]
    fn evidence_of_an_idle_and_a_busy_run_has_one_shape() {
        let idle = "tug-of-war between Warm0.Heating and Chill0.Cooling (an identical state recurred with no outside \
                    input in between); contested fields Thermo0.heater, Thermo0.cooler; oscillation vector \
                    Thermo0.heater: [Warm0.Heating +5@6, Chill0.Cooling -5@8, Warm0.Heating +5@10]; Thermo0.cooler: \
                    [Chill0.Cooling +5@6, Warm0.Heating -5@6, Chill0.Cooling +5@8, Warm0.Heating -5@10]";
        let busy =
            "tug-of-war between Chill0.Cooling and Warm0.Heating (10 cycles undid each other); contested fields \
                    Thermo0.heater, Thermo0.cooler; oscillation vector Thermo0.heater: [Warm0.Heating +5@861, \
                    Chill0.Cooling -5@863, Warm0.Heating +5@868, Chill0.Cooling -5@874]; Thermo0.cooler: \
                    [Chill0.Cooling +5@861, Warm0.Heating -5@861, Chill0.Cooling +5@863, Warm0.Heating -5@868]";
        assert_eq!(evidence_shape(idle), evidence_shape(busy));
        assert_eq!(
            evidence_shape(idle),
            "tug-of-war between Chill0.Cooling and Warm0.Heating; fields Thermo0.cooler, Thermo0.heater; vector period \
             Thermo0.cooler: [Chill0.Cooling +5, Warm0.Heating -5]; Thermo0.heater: [Warm0.Heating +5, Chill0.Cooling -5]"
        );
        let other = busy.replace("Warm0.Heating -5@868", "Warm0.Heating -4@868");
        assert_ne!(evidence_shape(&other), evidence_shape(idle), "a different change is a different vector");
    }
}
