//! Every maps-schema decoder must reject bad bytes with an error, never a panic, and decoding what
//! was encoded must give the same value back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maps_schema::{Codec, Counter, DenyEntry, DenyV4, DirChunk, IfKey, LpmV4Key, LpmV6Key};

fn check<T: Codec>(data: &[u8]) {
    if let Ok(v) = T::decode(data) {
        assert_eq!(v.encode(), data, "decode/encode must round trip");
    }
}

fuzz_target!(|data: &[u8]| {
    check::<IfKey>(data);
    check::<Counter>(data);
    check::<LpmV4Key>(data);
    check::<LpmV6Key>(data);
    check::<DenyEntry>(data);
    check::<DenyV4>(data);
    check::<DirChunk>(data);
    check::<u32>(data);
    let cpus = usize::from(data.first().copied().unwrap_or(1) % 8) + 1;
    let _ = maps_schema::decode_per_cpu::<Counter>(data, cpus);
});
