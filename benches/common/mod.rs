//! What the benchmarks share: running a Python script of Twisted's side of a benchmark.

use std::process::Command;

/// Runs `python3 benches/SCRIPT ARGS…` and gives its standard output, or why it failed
/// (Python missing, Twisted not importable: the script prints "error …" and exits 1).
pub fn python(script: &str, args: &[String]) -> Result<String, String> {
    let path = format!("{}/benches/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(path)
        .args(args)
        .output()
        .map_err(|e| format!("python3 could not be run: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{} {}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(text)
}
