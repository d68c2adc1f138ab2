//! Compiles a file and prints its diagnostics: `cargo run -p lexum-compiler --example lxc -- file.lxm`.

use lexum_compiler::{compile, render, CompileOptions};

fn main() {
    let mut ok = true;
    for path in std::env::args().skip(1) {
        let source = match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{path}: {e}");
                ok = false;
                continue;
            }
        };
        let c = compile(&path, &source, &CompileOptions::default());
        eprint!("{}", render(&c.diagnostics, &path, &source, false));
        match &c.program {
            Some(p) => println!("{path}: ok, {} goals, hash {}", p.goals.len(), p.hash()),
            None => ok = false,
        }
    }
    std::process::exit(if ok { 0 } else { 1 });
}
