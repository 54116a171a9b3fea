//! The IPv4 deny table planner against arbitrary current tables (what a pinned map could hold,
//! garbage included) and arbitrary prefix lists: it never panics, and the table it plans answers
//! every probe as a longest-prefix match over the list does.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use weir::prefilter::table::{plan, Prefix, Table};

fn mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cap, rest)) = data.split_first() else {
        return;
    };
    let mut table = Table::empty(u32::from(cap % 64) + 1);
    // The first half: (slot, value) writes over the root and the chunks, as stale or corrupt
    // contents of a reused map would be.
    let (garbage, list) = rest.split_at(rest.len() / 2);
    for w in garbage.chunks_exact(8) {
        let at = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize;
        let value = u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
        if at & 1 == 0 {
            let n = table.root.len();
            table.root[(at >> 1) % n] = value;
        } else {
            let n = table.chunks.len();
            table.chunks[(at >> 5) % n][(at >> 1) % 16] = value;
        }
    }
    // The second half: 5-byte prefixes (address, length), each network once.
    let mut seen = BTreeSet::new();
    let mut prefixes = Vec::new();
    for r in list.chunks_exact(5).take(256) {
        let len = r[4] % 33;
        let addr = u32::from_be_bytes([r[0], r[1], r[2], r[3]]) & mask(len);
        if seen.insert((addr, len)) {
            let id = prefixes.len() as u32;
            prefixes.push(Prefix { addr, len, id });
        }
    }
    let Ok(p) = plan(&table, &prefixes) else {
        return;
    };
    p.apply_to(&mut table);
    let want = |a: u32| {
        prefixes
            .iter()
            .filter(|q| a & mask(q.len) == q.addr)
            .max_by_key(|q| q.len)
            .map(|q| q.id)
    };
    for q in &prefixes {
        for a in [q.addr, q.addr | !mask(q.len), q.addr.wrapping_sub(1), (q.addr | !mask(q.len)).wrapping_add(1)] {
            assert_eq!(table.lookup(a), want(a), "address {a:#010x}");
        }
    }
});
