//! Runs the Python package's own unit tests (`script-host/python/tests`) with python3.

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
