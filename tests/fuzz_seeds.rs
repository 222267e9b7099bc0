//! Runs the fuzz targets' seed corpus (`fuzz/seeds/`) through the same checks as the fuzz
//! targets, so that stable Rust exercises them too. `cargo +nightly fuzz run TARGET
//! fuzz/corpus/TARGET fuzz/seeds/TARGET` explores from there.

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::fs;
use std::path::Path;

fn run_seeds(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut seen = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = fs::read(&path).unwrap();
        // Every prefix too: cheap, and each is an input the fuzzer could send.
        for end in 0..=data.len() {
            check(&data[..end]);
        }
        seen += 1;
    }
    assert!(seen > 0, "no seeds in {}", dir.display());
}

#[test]
fn line_receiver_seeds() {
    run_seeds("line_receiver", |data| {
        checks::line_parsers(data);
        checks::line_receiver(data);
    });
}

#[test]
fn netstring_seeds() {
    run_seeds("netstring", checks::netstring);
}

#[test]
fn int_string_seeds() {
    run_seeds("int_string", checks::int_string);
}
