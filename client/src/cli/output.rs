//! Printing: aligned tables for humans, JSON for scripts, colour for goal
//! statuses.

/// Writes command output to stdout. When the reader has gone away
/// (`lexumctl goals | head -1`), `lexumctl` stops at once with exit 0, as a
/// pipeline expects, where `println!` would panic; any other write error
/// (a full disk) ends it with exit 1 and the reason.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("lexumctl: error: cannot write output: {e}");
        std::process::exit(1);
    }
}

/// Prints rows under a header, columns aligned; `paint` colours a cell
/// (after padding, so alignment ignores escape codes).
pub fn table(header: &[&str], rows: &[Vec<String>], paint: impl Fn(usize, &str) -> Option<&'static str>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>, painted: bool| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            let text = if i == last { cell.clone() } else { format!("{cell:<width$}  ", width = widths[i]) };
            match paint(i, &cell).filter(|_| painted) {
                Some(color) => out.push_str(&format!("{color}{text}\x1b[0m")),
                None => out.push_str(&text),
            }
        }
        out.trim_end().to_string()
    };
    outln!("{}", line(header.iter().map(|h| h.to_string()).collect(), false));
    for row in rows {
        outln!("{}", line(row.clone(), true));
    }
}

/// Prints one JSON value (pretty) on stdout.
pub fn json(value: &serde_json::Value) {
    outln!("{}", serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into()));
}

/// Prints one JSON value on one line (streams).
pub fn json_line(value: &serde_json::Value) {
    outln!("{}", serde_json::to_string(value).unwrap_or_else(|_| "null".into()));
}

/// ANSI colour of a goal status.
pub fn status_color(status: &str) -> Option<&'static str> {
    match status {
        "SATISFIED" => Some("\x1b[32m"),
        "VIOLATED" | "REPAIRING" => Some("\x1b[33m"),
        "FAILED" | "TRAPPED" => Some("\x1b[31;1m"),
        "DOMINATED" | "CONTESTED" => Some("\x1b[35m"),
        _ => None,
    }
}
