use std::mem::{offset_of, size_of};

use super::*;

#[test]
fn rust_structs_match_their_layouts() {
    // Hand-written numbers: a change here is an ABI change (bump layout_version).
    assert_eq!(size_of::<IfKey>(), 8);
    assert_eq!(IfKey::LAYOUT.size as usize, size_of::<IfKey>());
    assert_eq!(IfKey::LAYOUT.c_name, "struct weir_if_key");
    let f = IfKey::LAYOUT.fields;
    assert_eq!(f.len(), 2);
    assert_eq!(
        (f[0].name, f[0].offset, f[0].size, f[0].c_type),
        ("ifindex", 0, 4, "__u32")
    );
    assert_eq!(
        (f[1].name, f[1].offset, f[1].size, f[1].c_type),
        ("hook", 4, 4, "__u32")
    );
    assert_eq!(offset_of!(IfKey, ifindex), 0);
    assert_eq!(offset_of!(IfKey, hook), 4);

    assert_eq!(size_of::<Counter>(), 16);
    assert_eq!(Counter::LAYOUT.size as usize, size_of::<Counter>());
    assert_eq!(Counter::LAYOUT.c_name, "struct weir_counter");
    let f = Counter::LAYOUT.fields;
    assert_eq!(f.len(), 2);
    assert_eq!(
        (f[0].name, f[0].offset, f[0].size, f[0].c_type),
        ("packets", 0, 8, "__u64")
    );
    assert_eq!(
        (f[1].name, f[1].offset, f[1].size, f[1].c_type),
        ("bytes", 8, 8, "__u64")
    );
    assert_eq!(offset_of!(Counter, packets), 0);
    assert_eq!(offset_of!(Counter, bytes), 8);

    assert_eq!(
        <u32 as Codec>::LAYOUT,
        Layout {
            c_name: "__u32",
            size: 4,
            fields: &[]
        }
    );
    assert_eq!(
        <u64 as Codec>::LAYOUT,
        Layout {
            c_name: "__u64",
            size: 8,
            fields: &[]
        }
    );
}

#[test]
fn layouts_are_consistent() {
    for map in MAPS {
        for layout in [map.key, map.value] {
            // Only a ring buffer has no key and no value.
            assert_eq!(
                layout.size == 0,
                map.map_type == MapType::RingBuf,
                "{}: {} has size {}",
                map.name,
                layout.c_name,
                layout.size
            );
            let mut end = 0;
            for f in layout.fields {
                assert!(
                    f.offset >= end,
                    "{}: field {} overlaps",
                    layout.c_name,
                    f.name
                );
                end = f.offset + f.size;
            }
            assert!(end <= layout.size, "{}: fields past the end", layout.c_name);
        }
    }
}

#[test]
fn round_trip() {
    let k = IfKey {
        ifindex: 0xdead_beef,
        hook: hook::TC_EGRESS,
    };
    let b = k.encode();
    assert_eq!(b.len(), 8);
    assert_eq!(&b[..4], &0xdead_beef_u32.to_ne_bytes());
    assert_eq!(IfKey::decode(&b), Ok(k));

    let c = Counter {
        packets: u64::MAX,
        bytes: 1 << 40,
    };
    let b = c.encode();
    assert_eq!(b.len(), 16);
    assert_eq!(&b[8..], &(1u64 << 40).to_ne_bytes());
    assert_eq!(Counter::decode(&b), Ok(c));

    assert_eq!(u32::decode(&7u32.encode()), Ok(7));
    assert_eq!(u64::decode(&7u64.encode()), Ok(7));
}

#[test]
fn wrong_length_is_an_error() {
    for n in [0usize, 1, 7, 9, 15, 17, 32] {
        let bytes = vec![0xa5u8; n];
        if n != 8 {
            let e = IfKey::decode(&bytes).unwrap_err();
            assert_eq!(
                e,
                DecodeError {
                    type_name: "struct weir_if_key",
                    expected: 8,
                    got: n
                }
            );
            assert_eq!(
                e.to_string(),
                format!("decoding struct weir_if_key: expected 8 bytes, got {n}")
            );
        }
        if n != 16 {
            assert!(Counter::decode(&bytes).is_err());
        }
        if n != 4 {
            assert!(u32::decode(&bytes).is_err());
        }
    }
}

#[test]
fn per_cpu() {
    let vals = [
        Counter {
            packets: 1,
            bytes: 100,
        },
        Counter {
            packets: 2,
            bytes: 200,
        },
        Counter {
            packets: 3,
            bytes: 300,
        },
    ];
    let buf = encode_per_cpu(&vals);
    assert_eq!(buf.len(), 48);
    let back: Vec<Counter> = decode_per_cpu(&buf, 3).unwrap();
    assert_eq!(back, vals);
    assert_eq!(
        Counter::sum(&back),
        Counter {
            packets: 6,
            bytes: 600
        }
    );
    assert_eq!(Counter::sum(&[]), Counter::default());
    assert_eq!(
        Counter::sum(&[
            Counter {
                packets: u64::MAX,
                bytes: 0
            },
            Counter {
                packets: 2,
                bytes: 0
            }
        ]),
        Counter {
            packets: 1,
            bytes: 0
        }
    );

    // A 4-byte value takes an 8-byte slot per CPU.
    let buf = encode_per_cpu(&[5u32, 6u32]);
    assert_eq!(buf.len(), 16);
    assert_eq!(&buf[4..8], &[0, 0, 0, 0]);
    assert_eq!(decode_per_cpu::<u32>(&buf, 2), Ok(vec![5, 6]));
    assert_eq!(
        decode_per_cpu::<u32>(&buf[..12], 2),
        Err(DecodeError {
            type_name: "__u32",
            expected: 16,
            got: 12
        })
    );
    assert!(decode_per_cpu::<Counter>(&buf, 2).is_err());
    assert!(decode_per_cpu::<Counter>(&[], usize::MAX).is_err());
    assert_eq!(decode_per_cpu::<Counter>(&[], 0), Ok(vec![]));
}

#[test]
fn decode_never_panics_on_any_short_input() {
    // Cheap stand-in for the fuzzer: every length up to a few slots, every CPU count.
    let data: Vec<u8> = (0..=255u8).collect();
    for n in 0..64 {
        let b = &data[..n];
        let _ = IfKey::decode(b);
        let _ = LpmV4Key::decode(b);
        let _ = LpmV6Key::decode(b);
        let _ = DenyEntry::decode(b);
        let _ = DenyV4::decode(b);
        let _ = DirChunk::decode(b);
        let _ = Counter::decode(b);
        let _ = u32::decode(b);
        for cpus in 0..10 {
            let _ = decode_per_cpu::<Counter>(b, cpus);
            let _ = decode_per_cpu::<u32>(b, cpus);
            let _ = decode_per_cpu::<IfKey>(b, cpus);
        }
    }
}

#[test]
fn map_type_values() {
    for (t, v, name) in [
        (MapType::Hash, 1, "hash"),
        (MapType::Array, 2, "array"),
        (MapType::PerCpuHash, 5, "percpu_hash"),
        (MapType::PerCpuArray, 6, "percpu_array"),
        (MapType::LruHash, 9, "lru_hash"),
        (MapType::LruPerCpuHash, 10, "lru_percpu_hash"),
        (MapType::LpmTrie, 11, "lpm_trie"),
        (MapType::SkStorage, 24, "sk_storage"),
        (MapType::RingBuf, 27, "ringbuf"),
    ] {
        assert_eq!(t as u32, v);
        assert_eq!(MapType::from_u32(v), Some(t));
        assert_eq!(t.name(), name);
        assert_eq!(
            t.c_constant(),
            format!("BPF_MAP_TYPE_{}", name.to_ascii_uppercase())
        );
    }
    assert_eq!(MapType::from_u32(0), None);
    assert_eq!(MapType::from_u32(3), None);
    assert!(MapType::PerCpuHash.is_percpu());
    assert!(MapType::PerCpuArray.is_percpu());
    assert!(MapType::LruPerCpuHash.is_percpu());
    assert!(!MapType::Hash.is_percpu());
    assert!(!MapType::RingBuf.is_percpu());
    assert!(!MapType::SkStorage.has_keys());
    assert!(!MapType::RingBuf.has_keys());
    assert!(MapType::LruHash.has_keys());
}

#[test]
fn schema_rules() {
    let mut names = Vec::new();
    for map in MAPS {
        // The kernel keeps 15 bytes + NUL of a map name.
        assert!(
            map.name.len() <= 15,
            "map name '{}' longer than 15 bytes",
            map.name
        );
        assert!(
            map.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "map name '{}' is not a lower-case C identifier",
            map.name
        );
        assert!(
            !names.contains(&map.name),
            "map '{}' defined twice",
            map.name
        );
        names.push(map.name);
        assert_eq!(find(map.name), Some(map));
        assert!(
            !map.doc.contains("*/"),
            "{}: doc would end the C comment",
            map.name
        );
        if map.map_type == MapType::SkStorage {
            // The kernel sizes socket storage by the sockets: it wants max_entries 0, an int
            // key (its BTF is checked) and no preallocation.
            assert_eq!(
                map.max_entries, 0,
                "{}: socket storage is unsized",
                map.name
            );
            assert_eq!(map.key, <u32 as Codec>::LAYOUT, "{}", map.name);
            assert_eq!(map.flags, map_flags::NO_PREALLOC, "{}", map.name);
        } else {
            assert!(map.max_entries > 0, "{}: max_entries 0", map.name);
        }
        assert!(
            map.layout_version > 0,
            "{}: layout_version starts at 1",
            map.name
        );
        if map.map_type.is_array() {
            assert_eq!(
                map.key,
                <u32 as Codec>::LAYOUT,
                "{}: array keys are __u32",
                map.name
            );
        } else {
            // The kernel hashes every key byte: implicit padding would make equal keys differ.
            assert_eq!(
                map.key.padding(),
                0,
                "{}: key {} has padding",
                map.name,
                map.key.c_name
            );
        }
        if map.map_type == MapType::LpmTrie {
            assert_ne!(
                map.flags & map_flags::NO_PREALLOC,
                0,
                "{}: LPM needs NO_PREALLOC",
                map.name
            );
        }
        // One struct name must mean one layout across all maps.
        for other in MAPS {
            for a in [map.key, map.value] {
                for b in [other.key, other.value] {
                    if a.c_name == b.c_name {
                        assert_eq!(a, b, "{} has two layouts", a.c_name);
                    }
                }
            }
        }
    }
    assert_eq!(find("nope"), None);

    let sock = find("sock_counters").unwrap();
    for h in [sock_hook::CONNECT4, sock_hook::CONNECT6] {
        assert!(h < sock.max_entries);
    }

    let mut cnames = Vec::new();
    for c in CONSTANTS.iter().flat_map(|g| g.consts) {
        assert!(c.c_name.starts_with("WEIR_"), "{}", c.c_name);
        assert!(!CONSTANTS.iter().any(|g| g.doc.contains("*/")));
        assert!(!cnames.contains(&c.c_name), "{} defined twice", c.c_name);
        cnames.push(c.c_name);
    }
}

#[test]
fn map_defs() {
    let m = find("if_counters").unwrap();
    assert_eq!(m.map_type, MapType::PerCpuArray);
    assert_eq!(m.key, <u32 as Codec>::LAYOUT);
    assert_eq!(m.value, IfCounters::LAYOUT);
    assert_eq!(
        (m.max_entries, m.flags, m.layout_version),
        (if_slot::SLOTS, 0, 2)
    );
    assert_eq!(m.c_define_macro(), "WEIR_DEFINE_MAP_IF_COUNTERS");
    assert_eq!(
        m.c_layout_version_macro(),
        "WEIR_LAYOUT_VERSION_IF_COUNTERS"
    );
    assert_eq!(m.percpu_slot_size(), 72);
    // A slot index fits the u16 slot fields of fp_endpoints and pol_endpoints.
    assert!(if_slot::SLOTS <= u32::from(u16::MAX) + 1);
    assert_eq!(IfCounters::default().packets.len() as u32, if_slot::HOOKS);
    let c = IfCounters {
        ifindex: 7,
        pad: 0,
        packets: [1, 2, 3, 4],
        bytes: [10, 20, 30, 40],
    };
    let got = |h| c.hook(h).map(|c| (c.packets, c.bytes));
    assert_eq!(got(hook::TC_INGRESS), Some((1, 10)));
    assert_eq!(got(hook::TC_EGRESS), Some((2, 20)));
    assert_eq!(got(hook::FASTPATH_IN), Some((3, 30)));
    assert_eq!(got(hook::FASTPATH_OUT), Some((4, 40)));
    assert_eq!(got(hook::XDP), None);
    assert_eq!(got(5), None);
    // The slot fields took bytes that were padding (fp_endpoints) or the upper half of a u32
    // flags word (pol_endpoints): the sizes, and so the pinned maps, stay.
    assert_eq!(size_of::<FpEndpoint>(), 12);
    assert_eq!(offset_of!(FpEndpoint, slot), 10);
    assert_eq!(offset_of!(PolEndpoint, flags), 8);
    assert_eq!(offset_of!(PolEndpoint, slot), 10);

    let m = find("sock_counters").unwrap();
    assert_eq!(m.map_type, MapType::PerCpuArray);
    assert_eq!(m.key, <u32 as Codec>::LAYOUT);
    assert_eq!(m.value, Counter::LAYOUT);
    assert_eq!((m.max_entries, m.flags, m.layout_version), (16, 0, 1));
}

#[test]
fn header_contents() {
    let h = c_header();
    assert_eq!(h, c_header(), "c_header() must be deterministic");
    assert!(h.contains("DO NOT EDIT"));
    assert!(h.contains("make -C programs header"));
    assert!(h.contains("#ifndef WEIR_MAPS_H\n#define WEIR_MAPS_H\n"));
    assert!(h.ends_with("#endif /* WEIR_MAPS_H */\n"));
    assert!(h.contains(
        "struct weir_if_ctrs {\n\t__u32 ifindex;\n\t__u32 pad;\n\t__u64 packets[4];\n\t__u64 bytes[4];\n};\n"
    ));
    assert!(h.contains("struct weir_counter {\n\t__u64 packets;\n\t__u64 bytes;\n};\n"));
    assert_eq!(h.matches("struct weir_counter {").count(), 1);
    assert!(h.contains("#define WEIR_HOOK_TC_EGRESS 2\n"));
    assert!(h.contains("#define WEIR_SOCK_HOOK_CONNECT6 1\n"));
    assert!(h.contains("#define WEIR_LAYOUT_VERSION_IF_COUNTERS 2\n"));
    assert!(h.contains(
        "#define WEIR_DEFINE_MAP_IF_COUNTERS \\\n\
         \tstruct { \\\n\
         \t\t__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); \\\n\
         \t\t__type(key, __u32); \\\n\
         \t\t__type(value, struct weir_if_ctrs); \\\n\
         \t\t__uint(max_entries, 1024); \\\n\
         \t} if_counters SEC(\".maps\")\n"
    ));
    assert!(h.contains("#define WEIR_IF_SLOT_NONE 0\n#define WEIR_IF_SLOTS 1024\n"));
    assert!(h.contains("__type(key, __u32); \\\n"));
    // Flags are emitted only when non-zero.
    let block = |name: &str| {
        let start = h.find(&format!("#define WEIR_DEFINE_MAP_{name} ")).unwrap();
        let end = start + h[start..].find(" SEC(\".maps\")").unwrap();
        h[start..end].to_owned()
    };
    assert!(!block("IF_COUNTERS").contains("map_flags"));
    assert!(!block("PREFILTER_STATS").contains("map_flags"));
    assert!(h.contains(
        "#define WEIR_DEFINE_MAP_PREFILTER_V6 \\\n\
         \tstruct { \\\n\
         \t\t__uint(type, BPF_MAP_TYPE_LPM_TRIE); \\\n\
         \t\t__type(key, struct weir_lpm_v6); \\\n\
         \t\t__type(value, struct weir_deny_entry); \\\n\
         \t\t__uint(max_entries, 65536); \\\n\
         \t\t__uint(map_flags, 0x1); \\\n\
         \t} prefilter_v6 SEC(\".maps\")\n"
    ));
    assert!(h.contains("struct weir_dir_chunk {\n\t__u32 slot[16];\n};\n"));
    assert!(block("PREFILTER_V6").contains("__uint(map_flags, 0x1);"));
    assert!(h.contains("struct weir_lpm_v6 {\n\t__u32 prefixlen;\n\t__u8 addr[16];\n};\n"));
    assert!(h.contains("struct weir_lpm_v6 {\n\t__u32 prefixlen;\n\t__u8 addr[16];\n};\n"));
    assert!(h.contains("struct weir_deny_entry {\n\t__u64 hits;\n};\n"));
    assert_eq!(h.matches("struct weir_deny_entry {").count(), 1);
    assert!(block("FAILSAFE_IN").contains("__type(value, __u64);"));
    assert!(block("FAILSAFE_IN").contains("__uint(max_entries, 3072);"));
    for line in [
        "#define WEIR_PREFILTER_PASSED 0\n",
        "#define WEIR_PREFILTER_DROPPED 1\n",
        "#define WEIR_PREFILTER_FAILSAFE 2\n",
        "#define WEIR_PREFILTER_UNPARSED 3\n",
        "#define WEIR_PREFILTER_REASONS 4\n",
        "#define WEIR_FAILSAFE_SLOT_TCP 0\n",
        "#define WEIR_FAILSAFE_SLOT_UDP 1\n",
        "#define WEIR_FAILSAFE_SLOT_SCTP 2\n",
        "#define WEIR_FAILSAFE_WORDS_PER_SLOT 1024\n",
    ] {
        assert!(h.contains(line), "{line}");
    }
}

#[test]
fn prefilter_layouts() {
    // Hand-written numbers: a change here is an ABI change (bump layout_version).
    assert_eq!(size_of::<LpmV4Key>(), 8);
    assert_eq!(offset_of!(LpmV4Key, addr), 4);
    assert_eq!(LpmV4Key::LAYOUT.c_name, "struct weir_lpm_v4");
    let f = LpmV4Key::LAYOUT.fields;
    assert_eq!(
        (f[0].name, f[0].offset, f[0].size, f[0].c_type),
        ("prefixlen", 0, 4, "__u32")
    );
    assert_eq!(
        (f[1].name, f[1].offset, f[1].size, f[1].c_type),
        ("addr", 4, 4, "__u8[4]")
    );
    assert_eq!(size_of::<LpmV6Key>(), 20);
    assert_eq!(LpmV6Key::LAYOUT.size, 20);
    assert_eq!(LpmV6Key::LAYOUT.c_name, "struct weir_lpm_v6");
    let f = LpmV6Key::LAYOUT.fields;
    assert_eq!(
        (f[1].name, f[1].offset, f[1].size, f[1].c_type),
        ("addr", 4, 16, "__u8[16]")
    );
    assert_eq!(size_of::<DenyEntry>(), 8);
    assert_eq!(DenyEntry::LAYOUT.c_name, "struct weir_deny_entry");
    assert_eq!(DenyEntry::LAYOUT.fields.len(), 1);

    // The LPM trie wants the prefix length in native order, then the address as on the wire.
    let k = LpmV4Key {
        prefixlen: 24,
        addr: [192, 0, 2, 0],
    };
    let b = k.encode();
    assert_eq!(&b[..4], &24u32.to_ne_bytes());
    assert_eq!(&b[4..], &[192, 0, 2, 0]);
    assert_eq!(LpmV4Key::decode(&b), Ok(k));
    let k6 = LpmV6Key {
        prefixlen: 128,
        addr: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    };
    let b = k6.encode();
    assert_eq!(b.len(), 20);
    assert_eq!(&b[4..], &k6.addr);
    assert_eq!(LpmV6Key::decode(&b), Ok(k6));
    assert!(LpmV6Key::decode(&b[..19]).is_err());
    let e = DenyEntry { hits: 1 << 33 };
    assert_eq!(DenyEntry::decode(&e.encode()), Ok(e));
    assert!(DenyEntry::decode(&[0; 4]).is_err());
}

#[test]
fn ipv4_deny_table_layouts() {
    use crate::deny_dir::*;
    // The strides cover the address exactly, and a leaf (id + 1) can never look like a node.
    assert_eq!(ROOT_BITS + LEVELS * CHUNK_BITS, 32);
    assert_eq!(MAX_ID + 1, NODE - 1);
    assert_eq!(ROOT_SLOTS, find("deny_v4_root").unwrap().max_entries);
    assert_eq!(size_of::<DirChunk>(), 64, "one cache line");
    assert_eq!(DirChunk::LAYOUT.fields[0].c_type, "__u32[16]");
    assert_eq!(size_of::<DenyV4>(), 16);
    let d = DenyV4 {
        hits: 7,
        addr: [192, 0, 2, 0],
        prefixlen: 24,
        in_use: 1,
        pad: [0; 2],
    };
    let b = d.encode();
    assert_eq!(&b[..8], &7u64.to_ne_bytes());
    assert_eq!(&b[8..14], &[192, 0, 2, 0, 24, 1]);
    assert_eq!(DenyV4::decode(&b), Ok(d));
    let mut slot = [0u32; 16];
    slot[15] = NODE | 3;
    let c = DirChunk { slot };
    assert_eq!(&c.encode()[60..], &(NODE | 3).to_ne_bytes());
    assert_eq!(DirChunk::decode(&c.encode()), Ok(c));
    assert!(DirChunk::decode(&[0; 63]).is_err());
}

#[test]
fn lpm_key_constructors_clear_host_bits() {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let a = Ipv4Addr::new(192, 0, 2, 255);
    assert_eq!(
        LpmV4Key::new(a, 24),
        Some(LpmV4Key {
            prefixlen: 24,
            addr: [192, 0, 2, 0]
        })
    );
    assert_eq!(LpmV4Key::new(a, 32).unwrap().addr, [192, 0, 2, 255]);
    assert_eq!(LpmV4Key::new(a, 0).unwrap().addr, [0; 4]);
    assert_eq!(LpmV4Key::new(a, 25).unwrap().addr, [192, 0, 2, 128]);
    assert_eq!(LpmV4Key::new(a, 3).unwrap().addr, [192, 0, 0, 0]);
    assert_eq!(LpmV4Key::new(a, 33), None);
    assert_eq!(LpmV4Key::new(a, u32::MAX), None);

    let a6: Ipv6Addr = "2001:db8:ffff::1".parse().unwrap();
    let k = LpmV6Key::new(a6, 36).unwrap();
    assert_eq!(k.prefixlen, 36);
    assert_eq!(
        Ipv6Addr::from(k.addr),
        "2001:db8:f000::".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(LpmV6Key::new(a6, 128).unwrap().addr, a6.octets());
    assert_eq!(LpmV6Key::new(a6, 129), None);
}

#[test]
fn prefilter_maps_and_constants() {
    let m = find("prefilter_v6").unwrap();
    assert_eq!(m.map_type, MapType::LpmTrie);
    assert_eq!((m.key, m.value), (LpmV6Key::LAYOUT, DenyEntry::LAYOUT));
    assert_eq!(
        (m.max_entries, m.flags, m.layout_version),
        (65_536, map_flags::NO_PREALLOC, 1)
    );
    for (name, value, max, version) in [
        ("prefilter_v4", DenyV4::LAYOUT, 65_536, 2),
        ("deny_v4_root", <u32 as Codec>::LAYOUT, 65_536, 1),
        ("deny_v4_nodes", DirChunk::LAYOUT, 65_536, 1),
    ] {
        let m = find(name).unwrap();
        assert_eq!(m.map_type, MapType::Array, "{name}");
        assert_eq!((m.key, m.value), (<u32 as Codec>::LAYOUT, value), "{name}");
        assert_eq!(
            (m.max_entries, m.flags, m.layout_version),
            (max, 0, version),
            "{name}"
        );
    }

    let m = find("prefilter_stats").unwrap();
    assert_eq!(m.map_type, MapType::PerCpuArray);
    assert_eq!((m.key, m.value), (<u32 as Codec>::LAYOUT, Counter::LAYOUT));
    assert_eq!((m.max_entries, m.flags, m.layout_version), (4, 0, 1));
    let reasons = [
        (prefilter_reason::PASSED, 0, "passed"),
        (prefilter_reason::DROPPED, 1, "dropped"),
        (prefilter_reason::FAILSAFE, 2, "failsafe"),
        (prefilter_reason::UNPARSED, 3, "unparsed"),
    ];
    assert_eq!(reasons.len() as u32, prefilter_reason::COUNT);
    for (r, v, name) in reasons {
        assert_eq!(r, v);
        assert!(r < m.max_entries);
        assert_eq!(prefilter_reason::name(r), Some(name));
    }
    assert_eq!(prefilter_reason::name(prefilter_reason::COUNT), None);

    let m = find("failsafe_in").unwrap();
    assert_eq!(m.map_type, MapType::Array);
    assert_eq!(
        (m.key, m.value),
        (<u32 as Codec>::LAYOUT, <u64 as Codec>::LAYOUT)
    );
    assert_eq!((m.max_entries, m.flags, m.layout_version), (3072, 0, 1));
    assert_eq!(failsafe::SLOTS * failsafe::WORDS_PER_SLOT, 3072);
    assert_eq!((failsafe::TCP, failsafe::UDP, failsafe::SCTP), (0, 1, 2));
    assert_eq!(failsafe::position(failsafe::TCP, 22), (0, 1 << 22));
    assert_eq!(failsafe::position(failsafe::UDP, 68), (1024 + 1, 1 << 4));
    assert_eq!(failsafe::position(failsafe::TCP, 0), (0, 1));
    assert_eq!(
        failsafe::position(failsafe::SCTP, u16::MAX),
        (3071, 1 << 63)
    );
    // Every (slot, port) lands inside the map.
    for slot in 0..failsafe::SLOTS {
        for port in [0u16, 63, 64, 65535] {
            assert!(failsafe::position(slot, port).0 < m.max_entries);
        }
    }
    assert_eq!(failsafe::slot_of_ip_proto(6), Some(failsafe::TCP));
    assert_eq!(failsafe::slot_of_ip_proto(17), Some(failsafe::UDP));
    assert_eq!(failsafe::slot_of_ip_proto(132), Some(failsafe::SCTP));
    assert_eq!(failsafe::slot_of_ip_proto(1), None);
}

#[test]
fn header_is_fresh() {
    let committed = include_str!("../../programs/include/weir_maps.h");
    assert!(
        c_header() == committed,
        "programs/include/weir_maps.h is out of date with maps-schema: \
         run `make -C programs header && make -C programs` and commit the result"
    );
}

#[test]
fn lb_maps_layouts_and_constants() {
    for (name, t, key, value) in [
        (
            "lb_services",
            MapType::Hash,
            LbServiceKey::LAYOUT,
            LbService::LAYOUT,
        ),
        (
            "lb_slots",
            MapType::Hash,
            LbSlotKey::LAYOUT,
            <u32 as Codec>::LAYOUT,
        ),
        (
            "lb_backends",
            MapType::Hash,
            <u32 as Codec>::LAYOUT,
            LbBackend::LAYOUT,
        ),
        (
            "lb_revnat",
            MapType::LruHash,
            LbRevNatKey::LAYOUT,
            LbRevNat::LAYOUT,
        ),
        (
            "lb_conn",
            MapType::Hash,
            <u64 as Codec>::LAYOUT,
            LbSock::LAYOUT,
        ),
        (
            "lb_sock",
            MapType::SkStorage,
            <u32 as Codec>::LAYOUT,
            LbSock::LAYOUT,
        ),
        (
            "lb_affinity",
            MapType::LruHash,
            LbAffinityKey::LAYOUT,
            LbAffinity::LAYOUT,
        ),
        (
            "lb_exclude",
            MapType::Hash,
            <u64 as Codec>::LAYOUT,
            <u32 as Codec>::LAYOUT,
        ),
    ] {
        let m = find(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!((m.map_type, m.key, m.value), (t, key, value), "{name}");
        assert_eq!(m.layout_version, 1, "{name}");
    }
    // Per-backend counters: a hash (memory only for backends that exist), sized like lb_backends.
    let m = find("lb_stats").unwrap();
    assert_eq!(
        (m.map_type, m.key, m.value, m.flags, m.layout_version),
        (
            MapType::PerCpuHash,
            <u32 as Codec>::LAYOUT,
            Counter::LAYOUT,
            map_flags::NO_PREALLOC,
            2
        )
    );
    // Sizes the C side relies on (no implicit padding anywhere in the keys).
    assert_eq!(LbServiceKey::LAYOUT.size, 20);
    assert_eq!(LbService::LAYOUT.size, 16);
    assert_eq!(LbBackend::LAYOUT.size, 24);
    assert_eq!(LbRevNatKey::LAYOUT.size, 32);
    assert_eq!(LbRevNat::LAYOUT.size, 20);
    assert_eq!(LbSock::LAYOUT.size, 36);
    assert_eq!(LbAffinityKey::LAYOUT.size, 16);
    assert_eq!(LbAffinity::LAYOUT.size, 16);
    assert_eq!(find("lb_stats").unwrap().max_entries, lb::DEFAULT_BACKENDS);
    assert_eq!(
        find("lb_backends").unwrap().max_entries,
        lb::DEFAULT_BACKENDS
    );
    assert_eq!(
        find("lb_services").unwrap().max_entries,
        lb::DEFAULT_SERVICES
    );
    assert_eq!(find("lb_slots").unwrap().max_entries, lb::DEFAULT_SLOTS);
    let sock = find("sock_counters").unwrap();
    assert!(sock_hook::GETPEERNAME6 < sock.max_entries);
    let k = LbServiceKey {
        addr: [1; 16],
        port: 80u16.to_be(),
        proto: 6,
        pad: 0,
    };
    assert_eq!(LbServiceKey::decode(&k.encode()), Ok(k));
    assert_eq!(&k.encode()[16..], &[0, 80, 6, 0]);
    let h = c_header();
    for c in [
        "#define WEIR_LB_SVC_AFFINITY 1",
        "#define WEIR_LB_SVC_EXCLUDED 2",
        "#define WEIR_LB_BACKEND_DRAINED 1",
        "#define WEIR_LB_MAX_SLOTS 1024",
        "#define WEIR_SOCK_HOOK_GETPEERNAME6 7",
        "#define WEIR_DEFINE_MAP_LB_REVNAT",
    ] {
        assert!(h.contains(c), "{c}");
    }
}

#[test]
fn policy_layouts() {
    assert_eq!(size_of::<PolEndpointKey>(), 12);
    assert_eq!(size_of::<PolEndpoint>(), 12);
    assert_eq!(size_of::<PolRuleSet>(), 32);
    assert_eq!(size_of::<PolBitmap>(), 32);
    assert_eq!(size_of::<PolRule>(), 12);
    assert_eq!(size_of::<CtKey>(), 44);
    assert_eq!(size_of::<Ct>(), 16);
    assert_eq!(size_of::<PolEvent>(), 64);
    for name in ["pol_endpoints", "pol_ct"] {
        assert_eq!(find(name).unwrap().key.padding(), 0, "{name}");
    }
    let ev = PolEvent {
        ts_ns: 1,
        ifindex: 2,
        rule: 3,
        policy: 4,
        len: 5,
        src: [6; 16],
        dst: [7; 16],
        sport: 8,
        dport: 9,
        family: 4,
        proto: 6,
        direction: 1,
        verdict: pol::EV_DENY,
    };
    assert_eq!(PolEvent::decode(&ev.encode()), Ok(ev));
    let h = c_header();
    assert!(h.contains("struct weir_pol_event {"));
    assert!(
        h.contains("\t\t__uint(type, BPF_MAP_TYPE_RINGBUF); \\\n\t\t__uint(max_entries, 262144);")
    );
    let rules = find("pol_rules").unwrap();
    let sets = find("pol_rulesets").unwrap();
    assert_eq!(rules.max_entries, sets.max_entries * pol::MAX_RULES);
    for i in 0..pol::STATS {
        assert!(pol::stat_name(i).is_some());
    }
}
