//! `lexumctl`: the Lexum command-line client. Glue over the `lexum_client`
//! SDK; see `lexumctl --help`.
//!
//! Exit codes (stable): 0 success; 1 user error (bad program, bad
//! arguments, unknown domain or field, rejected mutation, replay mismatch);
//! 2 cluster unavailable (no node reachable, no quorum, deadline passed, or
//! an unexpected server-side failure).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

/// A large `lexumctl check` allocates millions of small nodes; mimalloc
/// keeps that and the freeing cheap (see docs/performance.md, "Checking 10,000 domains").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
