//! `deploy/setup.sh` run against fake machine layouts: each layout lacks
//! one thing the build needs, a stub `apt-get` records what the script asks
//! to install, and nothing is really installed. The layout that broke the
//! quick start on a fresh Debian 12 machine (only `libclang-cpp.so.14`, no
//! libclang that bindgen can load) is one of them.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The commands setup.sh checks, each with the package that brings it.
const COMMANDS: &[(&str, &str)] = &[
    ("cc", "build-essential"),
    ("c++", "g++"),
    ("make", "make"),
    ("openssl", "openssl"),
    ("ip", "iproute2"),
    ("tc", "iproute2"),
    ("nft", "nftables"),
];

/// Files of a machine where `libclang-dev` is installed (Debian 12's paths).
const LIBCLANG_DEV_FILES: &[&str] = &[
    "usr/lib/llvm-14/lib/libclang.so",
    "usr/lib/llvm-14/lib/libclang-14.so.1",
    "usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h",
    "usr/lib/x86_64-linux-gnu/libclang-14.so.1",
];

fn setup_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/setup.sh")
}

fn write_executable(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn touch(root: &Path, relative: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, b"").expect("touch");
}

/// A fake machine: a root directory for the file checks, a `bin` directory
/// of stub commands, and a stub package tool that logs its arguments.
struct FakeMachine {
    dir: tempfile::TempDir,
}

impl FakeMachine {
    /// A machine with `commands` on its PATH, `files` under its root, and
    /// always cargo (setup.sh requires Rust to be there already) and a
    /// python3 that has venv (client/python/tests/test_setup.py covers the
    /// Python detection).
    fn new(commands: &[&str], files: &[&str]) -> Self {
        let machine = Self { dir: tempfile::tempdir().expect("tempdir") };
        for command in commands.iter().chain(&["cargo", "python3"]) {
            write_executable(&machine.bin().join(command), "#!/bin/sh\nexit 0\n");
        }
        for file in files {
            touch(&machine.root(), file);
        }
        let log = machine.apt_log();
        let apt = format!("#!/bin/bash\necho \"$*\" >> '{}'\n", log.display());
        write_executable(&machine.tools().join("apt-get"), &apt);
        write_executable(&machine.tools().join("sudo"), "#!/bin/bash\nexec \"$@\"\n");
        std::os::unix::fs::symlink("/usr/bin/env", machine.tools().join("env")).expect("link env");
        machine
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("root/usr/bin")
    }

    fn tools(&self) -> PathBuf {
        self.dir.path().join("tools")
    }

    fn apt_log(&self) -> PathBuf {
        self.dir.path().join("apt.log")
    }

    /// Runs setup.sh with only this machine's commands and the stub tools on
    /// PATH; returns the packages it asked `apt-get install` for.
    fn run_setup(&self, extra_env: &[(&str, &Path)]) -> BTreeSet<String> {
        let mut command = Command::new("/bin/bash");
        command
            .arg(setup_script())
            .env_clear()
            .env("PATH", format!("{}:{}", self.bin().display(), self.tools().display()))
            .env("LEXUM_SETUP_ROOT", self.root());
        for (name, value) in extra_env {
            command.env(name, value);
        }
        let output = command.output().expect("run setup.sh");
        assert!(
            output.status.success(),
            "setup.sh failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let log = std::fs::read_to_string(self.apt_log()).unwrap_or_default();
        let calls: Vec<&str> = log.lines().collect();
        let Some(install) = calls.iter().find(|call| call.starts_with("install")) else {
            assert!(calls.is_empty(), "apt-get called without an install: {calls:?}");
            return BTreeSet::new();
        };
        assert_eq!(calls.first().copied(), Some("update -qq"), "package lists refreshed before the install: {calls:?}");
        install.split_whitespace().skip(1).filter(|word| !word.starts_with('-')).map(String::from).collect()
    }
}

fn all_commands() -> Vec<&'static str> {
    COMMANDS.iter().map(|(command, _)| *command).collect()
}

fn packages(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| name.to_string()).collect()
}

#[test]
fn a_complete_machine_installs_nothing() {
    let machine = FakeMachine::new(&all_commands(), LIBCLANG_DEV_FILES);
    assert_eq!(machine.run_setup(&[]), BTreeSet::new());
}

#[test]
fn only_libclang_cpp_is_not_libclang() {
    // The fresh Debian 12 machine of issue 10: the libclang-cpp14 package,
    // whose library bindgen's loader skips, and no libclang-dev.
    let machine = FakeMachine::new(
        &all_commands(),
        &["usr/lib/x86_64-linux-gnu/libclang-cpp.so.14", "usr/lib/llvm-14/lib/libclang-cpp.so.14"],
    );
    assert_eq!(machine.run_setup(&[]), packages(&["libclang-dev"]));
}

#[test]
fn the_libclang_runtime_without_clang_headers_is_not_enough() {
    // libclang1-14 alone: a loadable library, but no stddef.h for RocksDB's header.
    let machine = FakeMachine::new(
        &all_commands(),
        &["usr/lib/x86_64-linux-gnu/libclang-14.so.1", "usr/lib/llvm-14/lib/libclang.so.1"],
    );
    assert_eq!(machine.run_setup(&[]), packages(&["libclang-dev"]));
}

#[test]
fn clang_headers_without_a_library_are_not_enough() {
    let machine = FakeMachine::new(&all_commands(), &["usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h"]);
    assert_eq!(machine.run_setup(&[]), packages(&["libclang-dev"]));
}

#[test]
fn libclang_found_through_libclang_path_counts() {
    // Headers in a layout setup.sh knows, the library only on LIBCLANG_PATH.
    let machine = FakeMachine::new(&all_commands(), &["usr/local/lib/clang/17/include/stddef.h"]);
    let custom = machine.dir.path().join("custom-llvm");
    touch(&custom, "libclang.so");
    assert_eq!(machine.run_setup(&[("LIBCLANG_PATH", &custom)]), BTreeSet::new());
}

#[test]
fn each_missing_command_asks_for_its_package() {
    for (absent, package) in COMMANDS {
        let present: Vec<&str> = all_commands().into_iter().filter(|command| command != absent).collect();
        let machine = FakeMachine::new(&present, LIBCLANG_DEV_FILES);
        assert_eq!(machine.run_setup(&[]), packages(&[package]), "without {absent}");
    }
}

#[test]
fn an_empty_machine_asks_for_everything() {
    let machine = FakeMachine::new(&[], &[]);
    let mut wanted: Vec<&str> = COMMANDS.iter().map(|(_, package)| *package).collect();
    wanted.push("libclang-dev");
    assert_eq!(machine.run_setup(&[]), packages(&wanted));
}

#[test]
fn ip_without_tc_asks_for_iproute2_once() {
    // jepsen/run shapes the namespace links with `tc`, which iproute2 brings.
    let present: Vec<&str> = all_commands().into_iter().filter(|command| *command != "tc").collect();
    let machine = FakeMachine::new(&present, LIBCLANG_DEV_FILES);
    assert_eq!(machine.run_setup(&[]), packages(&["iproute2"]));
    let empty = FakeMachine::new(&["cc", "c++", "make", "openssl", "nft"], LIBCLANG_DEV_FILES);
    let log = {
        empty.run_setup(&[]);
        std::fs::read_to_string(empty.apt_log()).unwrap_or_default()
    };
    let install = log.lines().find(|l| l.starts_with("install")).unwrap_or_default();
    assert_eq!(install.matches("iproute2").count(), 1, "{install}");
}

#[test]
fn dry_run_lists_without_installing() {
    let machine = FakeMachine::new(&["cc", "c++", "make", "ip", "tc", "nft"], &[]);
    let output = Command::new("/bin/bash")
        .arg(setup_script())
        .arg("--dry-run")
        .env_clear()
        .env("PATH", format!("{}:{}", machine.bin().display(), machine.tools().display()))
        .env("LEXUM_SETUP_ROOT", machine.root())
        .output()
        .expect("run setup.sh --dry-run");
    assert!(output.status.success());
    let listed: BTreeSet<String> = String::from_utf8_lossy(&output.stdout).lines().map(String::from).collect();
    assert_eq!(listed, packages(&["openssl", "libclang-dev"]));
    assert!(!machine.apt_log().exists(), "a dry run installs nothing");
}

#[test]
fn bench_adds_etcd_only_when_it_is_missing() {
    let run = |commands: &[&str]| {
        let machine = FakeMachine::new(commands, LIBCLANG_DEV_FILES);
        let output = Command::new("/bin/bash")
            .arg(setup_script())
            .args(["--dry-run", "--bench"])
            .env_clear()
            .env("PATH", format!("{}:{}", machine.bin().display(), machine.tools().display()))
            .env("LEXUM_SETUP_ROOT", machine.root())
            .output()
            .expect("run setup.sh --dry-run --bench");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).lines().map(String::from).collect::<BTreeSet<String>>()
    };
    assert_eq!(run(&all_commands()), packages(&["etcd-server"]));
    let mut with_etcd = all_commands();
    with_etcd.push("etcd");
    assert_eq!(run(&with_etcd), BTreeSet::new());
    // Without --bench, etcd is never asked for.
    let machine = FakeMachine::new(&all_commands(), LIBCLANG_DEV_FILES);
    assert_eq!(machine.run_setup(&[]), BTreeSet::new());
}

#[test]
fn browser_adds_chromium_only_when_it_is_missing() {
    let run = |commands: &[&str]| {
        let machine = FakeMachine::new(commands, LIBCLANG_DEV_FILES);
        let output = Command::new("/bin/bash")
            .arg(setup_script())
            .args(["--dry-run", "--browser"])
            .env_clear()
            .env("PATH", format!("{}:{}", machine.bin().display(), machine.tools().display()))
            .env("LEXUM_SETUP_ROOT", machine.root())
            .output()
            .expect("run setup.sh --dry-run --browser");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).lines().map(String::from).collect::<BTreeSet<String>>()
    };
    assert_eq!(run(&all_commands()), packages(&["chromium"]));
    let mut with_chromium = all_commands();
    with_chromium.push("chromium");
    assert_eq!(run(&with_chromium), BTreeSet::new());
    // Without --browser, Chromium is never asked for.
    let machine = FakeMachine::new(&all_commands(), LIBCLANG_DEV_FILES);
    assert_eq!(machine.run_setup(&[]), BTreeSet::new());
}
