//! The BTF reader must never panic, whatever it is given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(btf) = weir::btf::Btf::parse(data) {
        for id in 0..btf.len().min(64) as u32 {
            let _ = btf.layout(id);
        }
    }
});
