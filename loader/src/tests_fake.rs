//! The layers above `sys` against a fake `bpf(2)` (see `sys::fake`): map reuse and creation in
//! [`MapSet`], and [`VerifiedObject::load`] of the embedded objects, with no kernel involved.
//!
//! Attr bytes are checked at the offsets of the kernel's uapi `union bpf_attr`, independently of
//! the structs in `sys::bpf`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

use maps_schema::MapDef;

use crate::embedded::OBJECTS;
use crate::error::Error;
use crate::maps::{pin_name, MapSet, MAPS_DIR};
use crate::object::{parse_and_verify, EmbeddedObject, MapProvider};
use crate::sys::bpf::{MapInfo, ProgInfo};
use crate::sys::fake::{
    self, new_fd, Fake, BPF_BTF_LOAD, BPF_MAP_CREATE, BPF_OBJ_GET, BPF_OBJ_GET_INFO_BY_FD,
    BPF_OBJ_PIN, BPF_PROG_LOAD,
};

/// A scratch pin dir (a plain temp dir: the fake does the bpffs part), removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "weir-fake-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn if_counters() -> &'static MapDef {
    maps_schema::find("if_counters").unwrap()
}

/// What the kernel reports for a map created exactly as `def` asks.
fn info_for(def: &MapDef, max_entries: u32) -> MapInfo {
    MapInfo {
        id: 77,
        map_type: def.map_type as u32,
        key_size: def.key.size,
        value_size: def.value.size,
        max_entries,
        flags: def.flags,
        name: def.name.into(),
        ..MapInfo::default()
    }
}

/// A kernel in which a map pinned as `pinned` exists (or no pin, for `None`).
fn kernel_with_pin(pinned: Option<MapInfo>) -> Fake {
    fake::install(move |mut c| match c.cmd {
        BPF_OBJ_GET if pinned.is_some() => Ok(new_fd()),
        BPF_OBJ_GET => Err(libc::ENOENT),
        BPF_OBJ_GET_INFO_BY_FD => {
            c.answer_map_info(pinned.as_ref().expect("info only of a pinned map"));
            Ok(0)
        }
        BPF_MAP_CREATE => Ok(new_fd()),
        BPF_OBJ_PIN => Ok(0),
        other => panic!("unexpected bpf cmd {other}"),
    })
}

fn pin_path(dir: &Path, def: &MapDef) -> PathBuf {
    dir.join(MAPS_DIR).join(pin_name(def))
}

#[test]
fn a_compatible_pinned_map_is_reused() {
    let dir = TempDir::new();
    let def = if_counters();
    let f = kernel_with_pin(Some(info_for(def, def.max_entries)));
    let mut set = MapSet::pinned(&dir.0);
    let raw = set.map_fd(def, None).unwrap().as_raw_fd();
    assert_eq!(f.cmds(), vec![BPF_OBJ_GET, BPF_OBJ_GET_INFO_BY_FD]);
    let path = pin_path(&dir.0, def);
    assert_eq!(f.calls()[0].strings, vec![path.display().to_string()]);
    // The info was asked of the fd the pin gave.
    assert_eq!(f.calls()[1].u32_at(0), raw as u32); // bpf_fd
    let open = set.get(def.name).unwrap();
    assert!(open.reused);
    assert_eq!(open.pin.as_deref(), Some(path.as_path()));
    assert!(
        set.created_pins().is_empty(),
        "a reused pin is not ours to roll back"
    );

    // Asking again is served from the set.
    set.map_fd(def, None).unwrap();
    assert_eq!(f.cmds().len(), 2);
}

#[test]
fn an_incompatible_pinned_map_is_refused_naming_what_differs() {
    let dir = TempDir::new();
    let def = if_counters();
    let pinned = MapInfo {
        value_size: def.value.size + 8,
        ..info_for(def, def.max_entries)
    };
    let f = kernel_with_pin(Some(pinned));
    let mut set = MapSet::pinned(&dir.0);
    set.set_capacity(def.name, def.max_entries * 4);
    let e = set.map_fd(def, None).unwrap_err();
    let Error::Map { map, problem } = &e else {
        panic!("want Error::Map, got {e:?}");
    };
    assert_eq!(map, def.name);
    let want_value = format!(
        "value size is {} in the pinned map, {} wanted",
        def.value.size + 8,
        def.value.size
    );
    let want_max = format!(
        "max_entries is {} in the pinned map, {} wanted",
        def.max_entries,
        def.max_entries * 4
    );
    for want in [&want_value, &want_max] {
        assert!(problem.contains(want.as_str()), "{problem}");
    }
    assert!(!problem.contains("key size"), "{problem}");
    assert!(
        problem.contains(&pin_path(&dir.0, def).display().to_string()),
        "{problem}"
    );
    assert_eq!(f.cmds(), vec![BPF_OBJ_GET, BPF_OBJ_GET_INFO_BY_FD]);
    assert!(set.get(def.name).is_none());
}

#[test]
fn a_missing_pin_is_created_and_pinned() {
    let dir = TempDir::new();
    let def = if_counters();
    let f = kernel_with_pin(None);
    let btf = std::fs::File::open("/dev/null").unwrap();
    let mut set = MapSet::pinned(&dir.0);
    set.set_capacity(def.name, 4096);
    let raw = set
        .map_fd(def, Some((btf.as_fd(), 11, 12)))
        .unwrap()
        .as_raw_fd();
    assert_eq!(f.cmds(), vec![BPF_OBJ_GET, BPF_MAP_CREATE, BPF_OBJ_PIN]);
    let calls = f.calls();
    let create = &calls[1];
    assert_eq!(create.u32_at(0), def.map_type as u32); // map_type
    assert_eq!(create.u32_at(4), def.key.size); // key_size
    assert_eq!(create.u32_at(8), def.value.size); // value_size
    assert_eq!(create.u32_at(12), 4096); // max_entries, from the capacity override
    assert_eq!(create.u32_at(16), def.flags); // map_flags
    let mut name = [0u8; 16];
    name[..def.name.len()].copy_from_slice(def.name.as_bytes());
    assert_eq!(create.attr[28..44], name); // map_name
    assert_eq!(create.u32_at(48), btf.as_raw_fd() as u32); // btf_fd
    assert_eq!(create.u32_at(52), 11); // btf_key_type_id
    assert_eq!(create.u32_at(56), 12); // btf_value_type_id
    assert_eq!(
        create.ret,
        Ok(i64::from(raw)),
        "the set hands out the created fd"
    );
    let pin = &calls[2];
    let path = pin_path(&dir.0, def);
    assert_eq!(pin.strings, vec![path.display().to_string()]);
    assert_eq!(pin.u32_at(8), raw as u32); // bpf_fd: the new map is what gets pinned
    let open = set.get(def.name).unwrap();
    assert!(!open.reused);
    assert_eq!(set.created_pins(), vec![path]);
}

#[test]
fn pin_errors_other_than_enoent_stop_and_name_the_pin() {
    let dir = TempDir::new();
    let def = if_counters();
    let f = fake::install(|_| Err(libc::EACCES));
    let mut set = MapSet::pinned(&dir.0);
    let e = set.map_fd(def, None).unwrap_err();
    let Error::Bpf { subject, source } = &e else {
        panic!("want Error::Bpf, got {e:?}");
    };
    assert!(subject.contains("opening pin"), "{subject}");
    assert_eq!(source.errno(), Some(libc::EACCES));
    assert_eq!(f.cmds(), vec![BPF_OBJ_GET], "no map is created over it");
}

#[test]
fn a_pin_with_another_layout_version_is_refused_before_any_call() {
    let dir = TempDir::new();
    let def = if_counters();
    let maps = dir.0.join(MAPS_DIR);
    std::fs::create_dir_all(&maps).unwrap();
    let other = maps.join(format!("{}@v{}", def.name, def.layout_version + 1));
    std::fs::write(&other, b"").unwrap();
    let f = fake::install(|_| panic!("no call expected"));
    let e = MapSet::pinned(&dir.0).map_fd(def, None).unwrap_err();
    let Error::Map { problem, .. } = &e else {
        panic!("want Error::Map, got {e:?}");
    };
    assert!(
        problem.contains(&format!("layout version {}", def.layout_version + 1)),
        "{problem}"
    );
    assert!(f.calls().is_empty());
}

#[test]
fn ephemeral_maps_are_created_but_never_pinned() {
    let def = if_counters();
    let f = kernel_with_pin(None);
    let mut set = MapSet::ephemeral();
    set.map_fd(def, None).unwrap();
    assert_eq!(f.cmds(), vec![BPF_MAP_CREATE]);
    assert_eq!(f.calls()[0].u32_at(48), 0, "no BTF fd without BTF");
    assert!(set.get(def.name).unwrap().pin.is_none());
    assert!(set.created_pins().is_empty());
}

/// What the kernel should be asked for one program, read from a fresh parse of the object.
#[derive(Debug)]
struct WantProg {
    insn_cnt: u32,
    func_info_cnt: u32,
    line_info_cnt: u32,
}

fn want_progs(obj: &EmbeddedObject) -> BTreeMap<String, WantProg> {
    let mut parsed = aya_obj::Object::parse(obj.bytes).unwrap();
    // Programs that call global functions are loaded with those functions linked in.
    let text: std::collections::HashSet<usize> = parsed.functions.keys().map(|(s, _)| *s).collect();
    parsed.relocate_calls(&text).unwrap();
    parsed
        .programs
        .iter()
        .map(|(name, p)| {
            let f = &parsed.functions[&p.function_key()];
            let want = WantProg {
                insn_cnt: f.instructions.len() as u32,
                func_info_cnt: f.func_info.func_info.len() as u32,
                line_info_cnt: f.line_info.line_info.len() as u32,
            };
            (name.clone(), want)
        })
        .collect()
}

/// A kernel that accepts everything, recording the instructions of each program load.
fn accepting_kernel(insns: Rc<RefCell<Vec<Vec<u8>>>>) -> Fake {
    let next_id = Rc::new(AtomicU32::new(100));
    fake::install(move |mut c| match c.cmd {
        BPF_BTF_LOAD | BPF_MAP_CREATE => Ok(new_fd()),
        BPF_PROG_LOAD => {
            insns
                .borrow_mut()
                .push(c.read_user(c.u64_at(8), c.u32_at(4) as usize * 8));
            Ok(new_fd())
        }
        BPF_OBJ_GET_INFO_BY_FD => {
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            c.answer_prog_info(&ProgInfo {
                id,
                tag: [id as u8; 8],
                ..ProgInfo::default()
            });
            Ok(0)
        }
        other => panic!("unexpected bpf cmd {other}"),
    })
}

#[test]
fn embedded_objects_load_btf_then_maps_then_programs() {
    for obj in OBJECTS {
        let want = want_progs(obj);
        let verified = parse_and_verify(obj.name, obj.bytes).unwrap();
        let specs = verified.programs.clone();
        let n_maps = verified.maps.len();
        assert!(n_maps > 0, "{}: expected maps", obj.name);
        let insns = Rc::new(RefCell::new(Vec::new()));
        let f = accepting_kernel(Rc::clone(&insns));
        let mut maps = MapSet::ephemeral();
        let loaded = verified.load(&mut maps).unwrap();

        // BTF first, then every map, then each program (followed by its info).
        let mut order = vec![BPF_BTF_LOAD];
        order.extend(std::iter::repeat_n(BPF_MAP_CREATE, n_maps));
        for _ in &specs {
            order.extend([BPF_PROG_LOAD, BPF_OBJ_GET_INFO_BY_FD]);
        }
        assert_eq!(f.cmds(), order, "{}", obj.name);

        let calls = f.calls();
        let btf_fd = calls[0].ret.unwrap() as u32;
        let map_fds: Vec<i32> = f
            .calls_of(BPF_MAP_CREATE)
            .iter()
            .map(|s| {
                assert_eq!(
                    s.u32_at(48),
                    btf_fd,
                    "{}: map created with the BTF",
                    obj.name
                );
                assert_ne!(s.u32_at(52), 0, "btf_key_type_id");
                assert_ne!(s.u32_at(56), 0, "btf_value_type_id");
                s.ret.unwrap() as i32
            })
            .collect();

        let loads = f.calls_of(BPF_PROG_LOAD);
        assert_eq!(loads.len(), specs.len());
        for ((s, spec), code) in loads.iter().zip(&specs).zip(insns.borrow().iter()) {
            let w = &want[&spec.name];
            let what = format!("{} prog '{}'", obj.name, spec.name);
            assert_eq!(s.u32_at(0), spec.kind.prog_type(), "{what}: prog_type");
            assert_eq!(
                s.u32_at(68),
                spec.kind.expected_attach_type().unwrap_or(0),
                "{what}: expected_attach_type"
            );
            assert_eq!(
                s.strings,
                vec!["Dual MIT/GPL".to_string()],
                "{what}: license"
            );
            assert_eq!(s.u32_at(4), w.insn_cnt, "{what}: insn_cnt");
            let name_len = spec.name.len().min(15);
            assert_eq!(
                &s.attr[48..48 + name_len],
                &spec.name.as_bytes()[..name_len]
            );
            assert_eq!(s.u32_at(72), btf_fd, "{what}: prog_btf_fd");
            assert_eq!(s.u32_at(76), 8, "{what}: func_info_rec_size");
            assert_eq!(s.u32_at(88), w.func_info_cnt, "{what}: func_info_cnt");
            assert!(w.func_info_cnt >= 1, "{what}: BTF objects have func_info");
            assert_eq!(s.u32_at(92), 16, "{what}: line_info_rec_size");
            assert_eq!(s.u32_at(104), w.line_info_cnt, "{what}: line_info_cnt");
            assert_eq!(s.log.unwrap().level, 0, "{what}: first load has no log");

            // Map relocation put the created maps' fds into the map loads
            // (ld_imm64 with src_reg BPF_PSEUDO_MAP_FD).
            let map_refs: Vec<i32> = code
                .chunks(8)
                .filter(|i| i[0] == 0x18 && i[1] >> 4 == 1)
                .map(|i| i32::from_le_bytes([i[4], i[5], i[6], i[7]]))
                .collect();
            assert!(!map_refs.is_empty(), "{what}: uses a map");
            for fd in map_refs {
                assert!(map_fds.contains(&fd), "{what}: map fd {fd} not created");
            }
        }

        let names: Vec<&str> = loaded.iter().map(|p| p.spec.name.as_str()).collect();
        let spec_names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, spec_names);
        for p in &loaded {
            assert_eq!(p.tag, [p.id as u8; 8], "id and tag come from the info");
        }
    }
}

#[test]
fn a_verifier_rejection_names_the_program_and_carries_the_log() {
    let obj = OBJECTS.iter().find(|o| o.name == "tc.o").unwrap();
    let verified = parse_and_verify(obj.name, obj.bytes).unwrap();
    let names: Vec<String> = verified.programs.iter().map(|p| p.name.clone()).collect();
    assert_eq!(names, ["tc_egress", "tc_ingress"]);
    let _f = fake::install(|mut c| match c.cmd {
        BPF_BTF_LOAD | BPF_MAP_CREATE => Ok(new_fd()),
        // tc_egress loads, tc_ingress is rejected.
        BPF_PROG_LOAD if c.attr[48..58] == *b"tc_ingress" => {
            if c.log().buf == 0 {
                return Err(libc::EACCES);
            }
            c.write_log(b"0: (61) r0 = *(u32 *)(r1 +0)\nR1 invalid mem access 'scalar'\n\0stale");
            Err(libc::EACCES)
        }
        BPF_PROG_LOAD => Ok(new_fd()),
        BPF_OBJ_GET_INFO_BY_FD => {
            c.answer_prog_info(&ProgInfo::default());
            Ok(0)
        }
        other => panic!("unexpected bpf cmd {other}"),
    });
    let e = verified.load(&mut MapSet::ephemeral()).unwrap_err();
    let text = e.to_string();
    let Error::Verifier {
        object,
        program,
        errno,
        log,
        ..
    } = e
    else {
        panic!("want Error::Verifier, got {e:?}");
    };
    assert_eq!(object, "tc.o");
    assert_eq!(program, "tc_ingress");
    assert_eq!(errno, Some(libc::EACCES));
    assert_eq!(
        log,
        "0: (61) r0 = *(u32 *)(r1 +0)\nR1 invalid mem access 'scalar'"
    );
    assert!(
        text.starts_with("prog 'tc_ingress' (object 'tc.o'): the kernel verifier rejected it"),
        "{text}"
    );
}

#[test]
fn a_btf_rejection_stops_before_any_map() {
    let obj = &OBJECTS[0];
    let verified = parse_and_verify(obj.name, obj.bytes).unwrap();
    let f = fake::install(|mut c| {
        assert_eq!(c.cmd, BPF_BTF_LOAD);
        c.write_log(b"[3] STRUCT weir_if_key size mismatch\0");
        Err(libc::EINVAL)
    });
    let e = verified.load(&mut MapSet::ephemeral()).unwrap_err();
    let Error::Bpf { subject, source } = &e else {
        panic!("want Error::Bpf, got {e:?}");
    };
    assert_eq!(subject, &format!("object '{}'", obj.name));
    assert_eq!(source.call, "BPF_BTF_LOAD");
    assert_eq!(
        source.verifier_log.as_deref(),
        Some("[3] STRUCT weir_if_key size mismatch")
    );
    assert_eq!(f.cmds(), vec![BPF_BTF_LOAD, BPF_BTF_LOAD]);
}
