//! Synthetic programs of any size, for the compile benchmark and for
//! engine benchmarks: `domains` domains of `goals_per_domain` goals each,
//! every goal with a transition, goals sharing fields inside a domain and
//! with the next domain (which `reads` the previous one). The program checks
//! clean: every pair of goals that share a field can hold together.

use std::fmt::Write;

/// Source text of a synthetic program.
pub fn synthetic_program(domains: usize, goals_per_domain: usize) -> String {
    let mut s = String::with_capacity(domains * (200 + goals_per_domain * 120));
    s.push_str("effect Cloud.Apply(target: string, value: int) -> int\n\n");
    for d in 0..domains {
        let _ = writeln!(s, "domain D{d} priority {} {{", ["normal", "high", "low"][d % 3]);
        if d > 0 {
            let _ = writeln!(s, "  reads D{}", d - 1);
        }
        s.push_str(
            "  state {\n    a: int = 1\n    b: int = 1\n    c: int\n    flag: bool\n    tags: list<string, 8>\n  }\n",
        );
        s.push_str("  invariant Sane { a >= 0 && b >= 0 && len(tags) <= 8 }\n");
        for g in 0..goals_per_domain {
            let k = g % 5 + 1;
            let pred = match g % 6 {
                0 => format!("a >= {k}"),
                1 => format!("a + b <= {}", 100 + k),
                2 => format!("b >= {k} || flag"),
                3 => "all t in tags: len(t) > 0".to_string(),
                4 if d > 0 => format!("D{}.a >= 0 && c <= {}", d - 1, 10 * k),
                4 => format!("c <= {}", 10 * k),
                _ => format!("a - b <= {} && c >= 0", 50 + k),
            };
            let _ = writeln!(s, "  goal G{g} {{ {pred} }}");
        }
        for g in 0..goals_per_domain {
            let _ = writeln!(
                s,
                "  transition T{g} for G{g} retry 3 backoff 100ms..2s {{\n    slice plan {{ emit Cloud.Apply(target: \"D{d}\", value: {g}) -> r }}\n    slice record {{ a = r  b = r }}\n  }}"
            );
        }
        s.push_str("  on Poke(v: int) { c = v }\n}\n\n");
    }
    s
}
