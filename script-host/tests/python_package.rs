//! Runs the Python package's own unit tests (`script-host/python/tests`) with python3, an
//! addon's own pytest suite written against `mitmproxy.test.taddons`, and (given a mitmproxy
//! checkout in `MITMPROXY_SRC`) mitmproxy's own tests through `scripts/mitmproxy-tests`.

use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn python_unit_tests_pass() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/python");
    let output = Command::new("python3")
        .args([
            "-W", "ignore", "-m", "unittest", "discover", "-s", "tests", "-t", ".",
        ])
        .current_dir(dir)
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python unit tests failed:\n{stderr}"
    );
    assert!(stderr.contains("OK"), "{stderr}");
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("script-host sits in the workspace")
        .to_path_buf()
}

/// The venv `scripts/mitmproxy-tests` makes (mitmproxy 12.3.1 plus pytest), or None when the
/// mitmproxy differential tests are switched off.
fn pytest_venv() -> Option<PathBuf> {
    if std::env::var("FLOWTAP_SKIP_MITMPROXY").as_deref() == Ok("1") {
        eprintln!("SKIPPED: pytest venv (FLOWTAP_SKIP_MITMPROXY=1)");
        return None;
    }
    let out = Command::new("bash")
        .arg(repo().join("scripts/mitmproxy-tests"))
        .arg("--venv")
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "scripts/mitmproxy-tests --venv failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("a path");
    Some(PathBuf::from(
        stdout.lines().last().expect("the venv path").trim(),
    ))
}

#[test]
fn an_addons_own_pytest_suite_runs_on_the_package() {
    let Some(venv) = pytest_venv() else { return };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/python");
    let output = Command::new(venv.join("bin/python"))
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/addon_suite",
        ])
        // The package here first: an installed mitmproxy must not be what the suite imports
        // (the suite's conftest.py checks).
        .env("PYTHONPATH", dir)
        .current_dir(dir)
        .output()
        .expect("pytest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "addon suite failed:\n{stdout}");
    assert!(stdout.contains("5 passed"), "{stdout}");
}

/// Parses `file  mitmproxy  flowtap  failed  note` rows of `scripts/mitmproxy-tests`.
fn counts(table: &str) -> Vec<(String, u32, u32)> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let file = cols.next()?.to_owned();
            let theirs = cols.next()?.parse().ok()?;
            let ours = cols.next()?.parse().ok()?;
            Some((file, theirs, ours))
        })
        .collect()
}

#[test]
fn mitmproxys_own_tests_pass_against_the_package() {
    let Ok(src) = std::env::var("MITMPROXY_SRC") else {
        eprintln!(
            "SKIPPED: mitmproxy's own tests need a mitmproxy checkout: set MITMPROXY_SRC \
             (PyPI's mitmproxy 12.3.1 is a wheel without test/)"
        );
        return;
    };
    // Files that pass in full here; the whole selection is measured by hand and recorded in
    // docs/compatibility.md.
    let files = [
        "test_flowfilter.py",
        "test_eventsequence.py",
        "test_connection.py",
        "net/http/test_url.py",
        "net/http/test_validate.py",
        "net/http/test_headers.py",
        "coretypes/test_serializable.py",
        "utils/test_strutils.py",
        "contentviews/test__registry.py",
    ];
    let output = Command::new("bash")
        .arg(repo().join("scripts/mitmproxy-tests"))
        .arg(&src)
        .args(files)
        .output()
        .expect("bash runs");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "mitmproxy-tests failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows = counts(&table);
    assert_eq!(
        rows.len(),
        files.len() + 1,
        "a row per file and TOTAL:\n{table}"
    );
    for (file, theirs, ours) in rows {
        assert!(
            theirs > 0,
            "{file}: no test passed on mitmproxy itself:\n{table}"
        );
        assert_eq!(
            ours, theirs,
            "{file}: not all of mitmproxy's tests pass:\n{table}"
        );
    }
}
