#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    torsion_fuzz::line_parsers(data);
    torsion_fuzz::line_receiver(data);
});
