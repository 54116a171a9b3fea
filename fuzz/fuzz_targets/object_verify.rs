//! Object verification must turn any input into Ok or a clear error: never a panic that escapes,
//! never an abort. aya-obj's own panics are contained inside `parse_and_verify`; the silent panic
//! hook keeps libFuzzer's abort-on-panic hook from firing for those contained panics, while a
//! panic that escapes `parse_and_verify` still reaches libFuzzer and is reported as a crash.
#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;

static QUIET: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let _ = weir::object::parse_and_verify("fuzz.o", data);
});
