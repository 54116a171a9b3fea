//! Every maps-schema decoder must reject bad bytes with an error, never a panic, and decoding what
//! was encoded must give the same value back. The policy event reader's decoder (ring buffer
//! records) must never panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maps_schema::{
    Codec, Counter, Ct, CtKey, DenyEntry, DenyV4, DirChunk, FpEndpoint, FpRoute, IfCounters, IfKey,
    LbAffinity, LbAffinityKey, LbBackend, LbRevNat, LbRevNatKey, LbService, LbServiceKey,
    LbSlotKey, LbSock, LpmV4Key, LpmV6Key, MacAddr, MeshCgroup, MeshInbound, MeshInboundPortKey,
    MeshListenerKey, MeshOrigDst, MeshPortKey, MeshTuple, PolBitmap, PolCounts, PolEndpoint,
    PolEndpointKey, PolEvent, PolMark, PolName, PolPrefixKey, PolRate, PolRule, PolRuleSet, PolSet,
    PolSetMeta, PolSetRs,
};

fn check<T: Codec>(data: &[u8]) {
    if let Ok(v) = T::decode(data) {
        assert_eq!(v.encode(), data, "decode/encode must round trip");
    }
}

fuzz_target!(|data: &[u8]| {
    check::<IfKey>(data);
    check::<IfCounters>(data);
    check::<Counter>(data);
    check::<LpmV4Key>(data);
    check::<LpmV6Key>(data);
    check::<DenyEntry>(data);
    check::<DenyV4>(data);
    check::<DirChunk>(data);
    check::<u32>(data);
    check::<u64>(data);
    check::<LbServiceKey>(data);
    check::<LbService>(data);
    check::<LbSlotKey>(data);
    check::<LbBackend>(data);
    check::<LbRevNatKey>(data);
    check::<LbRevNat>(data);
    check::<LbSock>(data);
    check::<LbAffinityKey>(data);
    check::<LbAffinity>(data);
    check::<FpRoute>(data);
    check::<FpEndpoint>(data);
    check::<MacAddr>(data);
    check::<PolEndpointKey>(data);
    check::<PolEndpoint>(data);
    check::<PolRuleSet>(data);
    check::<PolBitmap>(data);
    check::<PolRule>(data);
    check::<CtKey>(data);
    check::<Ct>(data);
    check::<PolCounts>(data);
    check::<PolRate>(data);
    check::<PolEvent>(data);
    check::<MeshCgroup>(data);
    check::<MeshPortKey>(data);
    check::<MeshOrigDst>(data);
    check::<MeshTuple>(data);
    check::<MeshInbound>(data);
    check::<MeshInboundPortKey>(data);
    check::<MeshListenerKey>(data);
    check::<PolMark>(data);
    check::<PolName>(data);
    check::<PolPrefixKey>(data);
    check::<PolSet>(data);
    check::<PolSetMeta>(data);
    check::<PolSetRs>(data);
    let cpus = usize::from(data.first().copied().unwrap_or(1) % 8) + 1;
    let _ = maps_schema::decode_per_cpu::<Counter>(data, cpus);
    let _ = maps_schema::decode_per_cpu::<IfCounters>(data, cpus);
    if let Some(e) = weir::events::Event::decode(data) {
        let _ = (e.to_string(), e.json());
    }
});
