//! Netlink replies come from the kernel, but a parser that trusts its input is one bug away from
//! a crash: it must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weir::sys::netlink::parse_replies(data);
});
