#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| torsion_fuzz::int_string(data));
