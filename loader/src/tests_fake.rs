//! The layers above `sys` against a fake `bpf(2)` (see `sys::fake`): map reuse and creation in
//! [`MapSet`], [`VerifiedObject::load`] of the embedded objects, and map contents
//! ([`contents`], [`prefilter::apply`]) against a simulated kernel that holds the entries, with
//! no kernel involved.
//!
//! Attr bytes are checked at the offsets of the kernel's uapi `union bpf_attr`, independently of
//! the structs in `sys::bpf`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

use maps_schema::MapDef;

use crate::config::Config;
use crate::contents::{self, SetChange, Undo};
use crate::embedded::OBJECTS;
use crate::error::Error;
use crate::maps::{pin_name, MapSet, OpenMap, MAPS_DIR};
use crate::object::{parse_and_verify, EmbeddedObject, MapProvider};
use crate::prefilter::{
    self, PrefilterChange, MAP_FAILSAFE, MAP_V4, MAP_V4_NODES, MAP_V4_ROOT, MAP_V6,
};
use crate::sys::bpf::consts::{BPF_ANY, BPF_EXIST, BPF_MAP_TYPE_ARRAY, BPF_NOEXIST};
use crate::sys::bpf::{self, MapInfo, ProgInfo};
use crate::sys::fake::{
    self, new_fd, Fake, FakeCall, Seen, BPF_BTF_LOAD, BPF_MAP_CREATE, BPF_MAP_DELETE_BATCH,
    BPF_MAP_DELETE_ELEM, BPF_MAP_GET_NEXT_KEY, BPF_MAP_LOOKUP_BATCH, BPF_MAP_LOOKUP_ELEM,
    BPF_MAP_UPDATE_BATCH, BPF_MAP_UPDATE_ELEM, BPF_OBJ_GET, BPF_OBJ_GET_INFO_BY_FD, BPF_OBJ_PIN,
    BPF_PROG_LOAD,
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
fn a_pin_with_another_layout_version_is_superseded_by_load_and_refused_by_apply() {
    let dir = TempDir::new();
    let def = if_counters();
    let maps = dir.0.join(MAPS_DIR);
    std::fs::create_dir_all(&maps).unwrap();
    let other = maps.join(format!("{}@v{}", def.name, def.layout_version + 1));
    std::fs::write(&other, b"").unwrap();
    // `weir apply` opens what is pinned: refused before any call, naming the version.
    let f = fake::install(|_| panic!("no call expected"));
    let e = MapSet::open_pinned(&dir.0, |_| {}).unwrap_err();
    let Error::Map { problem, .. } = &e else {
        panic!("want Error::Map, got {e:?}");
    };
    assert!(
        problem.contains(&format!("layout version {}", def.layout_version + 1))
            && problem.contains("run `weir load`"),
        "{problem}"
    );
    assert!(f.calls().is_empty());
    drop(f);
    // `weir load` creates the map of this layout and records the old pin for removal.
    let f = kernel_with_pin(None);
    let mut set = MapSet::pinned(&dir.0);
    set.map_fd(def, None).unwrap();
    assert!(f.cmds().contains(&BPF_MAP_CREATE));
    assert_eq!(
        set.superseded(),
        [(def.name, def.layout_version + 1, other.clone())]
    );
    assert!(other.exists(), "removed only once the new dataplane runs");
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
                // Socket maps take no BTF types (the kernel refuses them).
                let sockhash = s.u32_at(0) == maps_schema::MapType::SockHash as u32;
                assert_eq!(
                    s.u32_at(48),
                    if sockhash { 0 } else { btf_fd },
                    "{}: map created with the BTF",
                    obj.name
                );
                // A ring buffer (key_size 0) has no key or value type.
                if s.u32_at(4) != 0 && !sockhash {
                    assert_ne!(s.u32_at(52), 0, "btf_key_type_id");
                    assert_ne!(s.u32_at(56), 0, "btf_value_type_id");
                }
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

// ---------------------------------------------------------------------------------------------
// Map contents (`contents`, `prefilter`) against a simulated kernel that holds the entries

/// The entries of a simulated map: key bytes → value bytes.
type Entries = Rc<RefCell<BTreeMap<Vec<u8>, Vec<u8>>>>;

struct SimMap {
    info: MapInfo,
    data: Entries,
}

impl SimMap {
    fn new(info: MapInfo) -> Self {
        let mut data = BTreeMap::new();
        if info.map_type == BPF_MAP_TYPE_ARRAY {
            // An array holds every index, zeroed, from its creation on.
            for i in 0..info.max_entries {
                data.insert(i.to_ne_bytes().to_vec(), vec![0; info.value_size as usize]);
            }
        }
        Self {
            info,
            data: Rc::new(RefCell::new(data)),
        }
    }

    fn is_array(&self) -> bool {
        self.info.map_type == BPF_MAP_TYPE_ARRAY
    }

    /// `BPF_MAP_UPDATE_ELEM` semantics for one element.
    fn put(&self, key: Vec<u8>, value: Vec<u8>, flags: u64) -> Result<(), i32> {
        let mut d = self.data.borrow_mut();
        let present = d.contains_key(&key);
        match flags {
            BPF_NOEXIST if present => return Err(libc::EEXIST),
            BPF_EXIST if !present => return Err(libc::ENOENT),
            _ => {}
        }
        if !present && (self.is_array() || d.len() >= self.info.max_entries as usize) {
            return Err(libc::E2BIG);
        }
        d.insert(key, value);
        Ok(())
    }

    /// `BPF_MAP_DELETE_ELEM` semantics for one element.
    fn remove(&self, key: &[u8]) -> Result<(), i32> {
        if self.is_array() {
            return Err(libc::EINVAL);
        }
        self.data
            .borrow_mut()
            .remove(key)
            .map(drop)
            .ok_or(libc::ENOENT)
    }
}

/// Keys a write command changed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Write {
    cmd: u32,
    keys: Vec<Vec<u8>>,
}

/// The simulated kernel: maps by id, the fds and pins that name them, and knobs that make it
/// behave like kernels (or map types) without some batch command.
#[derive(Default)]
struct SimState {
    maps: Vec<SimMap>,
    by_fd: HashMap<i32, usize>,
    /// Pin file name → map.
    pins: BTreeMap<String, usize>,
    /// `BPF_MAP_LOOKUP_BATCH` copies at most this many elements per call (0 = as asked), as a
    /// hash map stops at bucket boundaries.
    lookup_chunk: usize,
    /// `BPF_MAP_LOOKUP_BATCH` fails with this errno (no batch support).
    lookup_batch_errno: Option<i32>,
    /// `BPF_MAP_UPDATE_BATCH` applies this many elements, then fails with the errno.
    update_batch_fail: Option<(usize, i32)>,
    /// `BPF_MAP_DELETE_BATCH` deletes this many elements, then fails with the errno.
    delete_batch_fail: Option<(usize, i32)>,
    /// `BPF_MAP_UPDATE_ELEM` of this key fails with the errno.
    update_elem_fail: Option<(Vec<u8>, i32)>,
    /// `BPF_MAP_UPDATE_ELEM` of this key fails with ENOMEM this many more times (an empty
    /// element cache of a map without preallocation).
    update_elem_enomem: Option<(Vec<u8>, std::cell::Cell<u32>)>,
    /// The token the last `BPF_MAP_LOOKUP_BATCH` handed out.
    last_token: Option<Vec<u8>>,
    /// Every effective write, in order.
    writes: Vec<Write>,
}

/// Attr offsets of the kernel's uapi `union bpf_attr`, element commands.
const ELEM_MAP_FD: usize = 0;
const ELEM_KEY: usize = 8;
const ELEM_VALUE: usize = 16;
const ELEM_FLAGS: usize = 24;
/// Batch commands.
const BATCH_IN: usize = 0;
const BATCH_OUT: usize = 8;
const BATCH_KEYS: usize = 16;
const BATCH_VALUES: usize = 24;
const BATCH_COUNT: usize = 32;
const BATCH_MAP_FD: usize = 36;
const BATCH_ELEM_FLAGS: usize = 40;

impl SimState {
    fn bind(&mut self, id: usize) -> i64 {
        let fd = new_fd();
        self.by_fd.insert(fd as i32, id);
        fd
    }

    fn map(&self, fd: u32) -> &SimMap {
        let id = self.by_fd.get(&(fd as i32)).expect("fd of a simulated map");
        &self.maps[*id]
    }

    fn answer(&mut self, mut c: FakeCall<'_>) -> Result<i64, i32> {
        match c.cmd {
            BPF_OBJ_GET => {
                let file = pin_file(&c.read_str(c.u64_at(0)));
                let id = *self.pins.get(&file).ok_or(libc::ENOENT)?;
                Ok(self.bind(id))
            }
            BPF_OBJ_PIN => {
                let file = pin_file(&c.read_str(c.u64_at(0)));
                let id = self.by_fd[&(c.u32_at(8) as i32)];
                self.pins.insert(file, id);
                Ok(0)
            }
            BPF_MAP_CREATE => {
                let name = &c.attr[28..44];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(16)];
                self.maps.push(SimMap::new(MapInfo {
                    id: 1000 + self.maps.len() as u32,
                    map_type: c.u32_at(0),
                    key_size: c.u32_at(4),
                    value_size: c.u32_at(8),
                    max_entries: c.u32_at(12),
                    flags: c.u32_at(16),
                    name: String::from_utf8(name.to_vec()).unwrap(),
                    ..MapInfo::default()
                }));
                Ok(self.bind(self.maps.len() - 1))
            }
            BPF_OBJ_GET_INFO_BY_FD => {
                let info = self.map(c.u32_at(0)).info.clone();
                c.answer_map_info(&info);
                Ok(0)
            }
            BPF_MAP_LOOKUP_BATCH | BPF_MAP_UPDATE_BATCH | BPF_MAP_DELETE_BATCH => self.batch(c),
            _ => self.elem(c),
        }
    }

    fn elem(&mut self, mut c: FakeCall<'_>) -> Result<i64, i32> {
        let m = self.map(c.u32_at(ELEM_MAP_FD));
        let (ks, vs) = (m.info.key_size as usize, m.info.value_size as usize);
        let key_ptr = c.u64_at(ELEM_KEY);
        let key = (key_ptr != 0).then(|| c.read_user(key_ptr, ks));
        let value_ptr = c.u64_at(ELEM_VALUE);
        let write = match c.cmd {
            BPF_MAP_LOOKUP_ELEM => {
                let v = m.data.borrow().get(&key.unwrap()).cloned();
                c.write_user(value_ptr, &v.ok_or(libc::ENOENT)?);
                None
            }
            BPF_MAP_GET_NEXT_KEY => {
                let d = m.data.borrow();
                let next = match &key {
                    None => d.keys().next(),
                    Some(k) => d
                        .range::<Vec<u8>, _>((Bound::Excluded(k), Bound::Unbounded))
                        .next()
                        .map(|(k, _)| k),
                };
                let next = next.ok_or(libc::ENOENT)?.clone();
                drop(d);
                c.write_user(value_ptr, &next);
                None
            }
            BPF_MAP_UPDATE_ELEM => {
                let key = key.unwrap();
                if let Some((bad, errno)) = &self.update_elem_fail {
                    if *bad == key {
                        return Err(*errno);
                    }
                }
                if let Some((bad, left)) = &self.update_elem_enomem {
                    if *bad == key && left.get() > 0 {
                        left.set(left.get() - 1);
                        return Err(libc::ENOMEM);
                    }
                }
                m.put(
                    key.clone(),
                    c.read_user(value_ptr, vs),
                    c.u64_at(ELEM_FLAGS),
                )?;
                Some(key)
            }
            BPF_MAP_DELETE_ELEM => {
                let key = key.unwrap();
                m.remove(&key)?;
                Some(key)
            }
            other => panic!("unexpected bpf cmd {other}"),
        };
        if let Some(key) = write {
            self.writes.push(Write {
                cmd: c.cmd,
                keys: vec![key],
            });
        }
        Ok(0)
    }

    fn batch(&mut self, mut c: FakeCall<'_>) -> Result<i64, i32> {
        let cmd = c.cmd;
        let m = self.map(c.u32_at(BATCH_MAP_FD));
        let (ks, vs) = (m.info.key_size as usize, m.info.value_size as usize);
        let count = c.u32_at(BATCH_COUNT) as usize;
        if cmd == BPF_MAP_LOOKUP_BATCH {
            if let Some(errno) = self.lookup_batch_errno {
                return Err(errno);
            }
            // The token is the position to resume from (u32), padded to max(key_size, 4).
            let token_len = ks.max(4);
            let in_batch = c.u64_at(BATCH_IN);
            let start = if in_batch == 0 {
                0
            } else {
                let token = c.read_user(in_batch, token_len);
                assert_eq!(
                    Some(&token),
                    self.last_token.as_ref(),
                    "in_batch must be the token of the previous call"
                );
                u32::from_ne_bytes(token[..4].try_into().unwrap()) as usize
            };
            let per_call = match self.lookup_chunk {
                0 => count,
                n => n.min(count),
            };
            let (keys, values): (Vec<u8>, Vec<u8>) = {
                let d = m.data.borrow();
                let got: Vec<_> = d.iter().skip(start).take(per_call).collect();
                (
                    got.iter().flat_map(|(k, _)| k.iter().copied()).collect(),
                    got.iter().flat_map(|(_, v)| v.iter().copied()).collect(),
                )
            };
            let n = keys.len() / ks;
            c.write_user(c.u64_at(BATCH_KEYS), &keys);
            c.write_user(c.u64_at(BATCH_VALUES), &values);
            let mut token = ((start + n) as u32).to_ne_bytes().to_vec();
            token.resize(token_len, 0xab);
            c.write_user(c.u64_at(BATCH_OUT), &token);
            self.last_token = Some(token);
            c.set_u32(BATCH_COUNT, n as u32);
            // Fewer than asked: the walk reached the end.
            return if n < per_call {
                Err(libc::ENOENT)
            } else {
                Ok(0)
            };
        }
        let keys = c.read_user(c.u64_at(BATCH_KEYS), count * ks);
        let values = if cmd == BPF_MAP_UPDATE_BATCH {
            c.read_user(c.u64_at(BATCH_VALUES), count * vs)
        } else {
            Vec::new()
        };
        let fail = if cmd == BPF_MAP_UPDATE_BATCH {
            self.update_batch_fail
        } else {
            self.delete_batch_fail
        };
        let mut done = Vec::new();
        let mut result = Ok(0);
        for i in 0..count {
            let key = keys[i * ks..(i + 1) * ks].to_vec();
            let r = match fail {
                Some((k, errno)) if i == k => Err(errno),
                _ if cmd == BPF_MAP_UPDATE_BATCH => m.put(
                    key.clone(),
                    values[i * vs..(i + 1) * vs].to_vec(),
                    c.u64_at(BATCH_ELEM_FLAGS),
                ),
                _ => m.remove(&key),
            };
            if let Err(e) = r {
                result = Err(e);
                break;
            }
            done.push(key);
        }
        c.set_u32(BATCH_COUNT, done.len() as u32);
        if !done.is_empty() {
            self.writes.push(Write { cmd, keys: done });
        }
        result
    }
}

fn pin_file(path: &str) -> String {
    Path::new(path)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// A simulated kernel installed as this thread's fake `bpf(2)`, and a pin dir for map sets.
struct Sim {
    st: Rc<RefCell<SimState>>,
    fake: Fake,
    dir: TempDir,
}

impl Sim {
    fn new() -> Self {
        let st = Rc::new(RefCell::new(SimState::default()));
        let answer = Rc::clone(&st);
        let fake = fake::install(move |c| answer.borrow_mut().answer(c));
        Self {
            st,
            fake,
            dir: TempDir::new(),
        }
    }

    /// A map pinned before this command, shaped as `def` with `max_entries`, holding `entries`
    /// (arrays: on top of their zeroed slots).
    fn pin(&self, def: &MapDef, max_entries: u32, entries: &[(Vec<u8>, Vec<u8>)]) {
        let mut st = self.st.borrow_mut();
        let m = SimMap::new(info_for(def, max_entries));
        m.data.borrow_mut().extend(entries.iter().cloned());
        st.maps.push(m);
        let id = st.maps.len() - 1;
        st.pins.insert(pin_name(def), id);
    }

    /// A map set pinning under this kernel's dir.
    fn map_set(&self) -> MapSet {
        MapSet::pinned(&self.dir.0)
    }

    /// The entries of the map called `name`, now.
    fn data(&self, name: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let st = self.st.borrow();
        let m = st.maps.iter().find(|m| m.info.name == name).expect(name);
        let d = m.data.borrow().clone();
        d
    }

    fn writes(&self) -> Vec<Write> {
        self.st.borrow().writes.clone()
    }

    fn set(&self, f: impl FnOnce(&mut SimState)) {
        f(&mut self.st.borrow_mut());
    }

    /// The calls made from `from` on, leaving out the map info every element wrapper asks first.
    fn calls_since(&self, from: usize) -> Vec<Seen> {
        self.fake.calls()[from..]
            .iter()
            .filter(|s| s.cmd != BPF_OBJ_GET_INFO_BY_FD)
            .cloned()
            .collect()
    }

    fn mark(&self) -> usize {
        self.fake.calls().len()
    }
}

fn cmds(calls: &[Seen]) -> Vec<u32> {
    calls.iter().map(|s| s.cmd).collect()
}

const WRITE_CMDS: [u32; 4] = [
    BPF_MAP_UPDATE_ELEM,
    BPF_MAP_DELETE_ELEM,
    BPF_MAP_UPDATE_BATCH,
    BPF_MAP_DELETE_BATCH,
];

/// An LPM trie shaped like an IPv4 deny list: the subject of the generic set tests.
static LPM_V4: MapDef = MapDef {
    name: "test_lpm_v4",
    map_type: maps_schema::MapType::LpmTrie,
    key: <maps_schema::LpmV4Key as maps_schema::Codec>::LAYOUT,
    value: <maps_schema::DenyEntry as maps_schema::Codec>::LAYOUT,
    max_entries: 262_144,
    flags: maps_schema::map_flags::NO_PREALLOC,
    layout_version: 1,
    doc: "test",
};

fn prefilter_v4() -> &'static MapDef {
    &LPM_V4
}

fn failsafe_in() -> &'static MapDef {
    maps_schema::find(MAP_FAILSAFE).unwrap()
}

/// An IPv4 /32 LPM key: prefix length (native order), then the address 10.x.y.z.
fn v4key(i: u32) -> Vec<u8> {
    let mut k = 32u32.to_ne_bytes().to_vec();
    k.extend_from_slice(&(0x0a00_0000 + i).to_be_bytes());
    k
}

/// A deny entry value with `n` hits.
fn hits(n: u64) -> Vec<u8> {
    n.to_ne_bytes().to_vec()
}

/// Opens (creating, or reusing the pin of) the map `def` in `set`.
fn open<'a>(set: &'a mut MapSet, def: &'static MapDef) -> &'a OpenMap {
    set.map_fd(def, None).unwrap();
    set.get(def.name).unwrap()
}

/// The keys of the writes of one command.
fn keys_written(w: &[Write], cmd: u32) -> BTreeSet<Vec<u8>> {
    w.iter()
        .filter(|w| w.cmd == cmd)
        .flat_map(|w| w.keys.iter().cloned())
        .collect()
}

#[test]
fn a_fake_may_touch_element_buffers_within_the_checked_sizes() {
    let sim = Sim::new();
    let def = prefilter_v4();
    sim.pin(def, def.max_entries, &[(v4key(1), hits(5))]);
    let mut set = sim.map_set();
    let m = open(&mut set, def);
    let mut v = [0u8; 8];
    assert!(bpf::map_lookup(m.fd.as_fd(), &v4key(1), &mut v).unwrap());
    assert_eq!(v.to_vec(), hits(5));
    let mut next = [0u8; 8];
    assert!(bpf::map_next_key(m.fd.as_fd(), None, &mut next).unwrap());
    assert_eq!(next.to_vec(), v4key(1));
}

#[test]
#[should_panic(expected = "outside the writable buffers")]
fn a_fake_cannot_write_past_an_element_buffer() {
    let def = prefilter_v4();
    let _f = fake::install(move |mut c| {
        if c.cmd == BPF_OBJ_GET_INFO_BY_FD {
            c.answer_map_info(&info_for(def, def.max_entries));
            return Ok(0);
        }
        // One byte more than the value size the wrapper checked its buffer against.
        let value = c.u64_at(ELEM_VALUE);
        c.write_user(value, &[0; 9]);
        Ok(0)
    });
    let map = std::fs::File::open("/dev/null").unwrap();
    let _ = bpf::map_lookup(map.as_fd(), &v4key(1), &mut [0u8; 8]);
}

#[test]
fn sync_set_on_a_fresh_map_only_adds_in_batches_of_8192() {
    let sim = Sim::new();
    let mut set = sim.map_set();
    let m = open(&mut set, prefilter_v4());
    assert!(!m.reused);
    let desired: BTreeSet<Vec<u8>> = (0..20_000).map(v4key).collect();
    let initial = hits(1);
    let mut undo = Undo::default();
    let from = sim.mark();
    let change = contents::sync_set(m, &desired, &initial, &mut undo).unwrap();
    assert_eq!(
        change,
        SetChange {
            added: 20_000,
            removed: 0,
            total: 20_000
        }
    );
    let calls = sim.calls_since(from);
    assert_eq!(
        cmds(&calls),
        vec![BPF_MAP_UPDATE_BATCH; 3],
        "only batched adds, no reads"
    );
    let counts: Vec<u32> = calls.iter().map(|s| s.u32_at(BATCH_COUNT)).collect();
    assert_eq!(counts, [8192, 8192, 20_000 - 2 * 8192]);
    for s in &calls {
        assert_eq!(s.u64_at(BATCH_ELEM_FLAGS), BPF_NOEXIST);
    }
    let want: BTreeMap<_, _> = desired.iter().map(|k| (k.clone(), hits(1))).collect();
    assert_eq!(sim.data(LPM_V4.name), want);
    assert_eq!(undo.len(), 20_000);

    let from = sim.mark();
    let before = sim.writes().len();
    undo.rollback(&set);
    assert!(cmds(&sim.calls_since(from))
        .iter()
        .all(|&c| c == BPF_MAP_DELETE_ELEM));
    let w = &sim.writes()[before..];
    assert_eq!(w.len(), 20_000, "one delete per added key");
    assert_eq!(keys_written(w, BPF_MAP_DELETE_ELEM), desired);
    assert!(sim.data(LPM_V4.name).is_empty());
}

#[test]
fn sync_set_on_a_reused_map_changes_only_the_difference_and_rolls_back_exactly() {
    // 10 entries read 3, 5 or all at a time: the last call answers ENOENT, with the rest or
    // with nothing.
    for (chunk, lookups) in [(3, 4), (5, 3), (0, 1)] {
        let sim = Sim::new();
        sim.set(|s| s.lookup_chunk = chunk);
        let old: Vec<(Vec<u8>, Vec<u8>)> =
            (0..10).map(|i| (v4key(i), hits(100 + i as u64))).collect();
        let def = prefilter_v4();
        sim.pin(def, def.max_entries, &old);
        let mut set = sim.map_set();
        let m = open(&mut set, def);
        assert!(m.reused);

        // Keep 0..6, drop 6..10, add 50..54.
        let desired: BTreeSet<Vec<u8>> = (0..6).chain(50..54).map(v4key).collect();
        let mut undo = Undo::default();
        let from = sim.mark();
        let change = contents::sync_set(m, &desired, &hits(0), &mut undo).unwrap();
        assert_eq!(
            change,
            SetChange {
                added: 4,
                removed: 4,
                total: 10
            },
            "chunk {chunk}"
        );
        let calls = sim.calls_since(from);
        let mut want_cmds = vec![BPF_MAP_LOOKUP_BATCH; lookups];
        want_cmds.extend([BPF_MAP_DELETE_BATCH, BPF_MAP_UPDATE_BATCH]);
        assert_eq!(
            cmds(&calls),
            want_cmds,
            "chunk {chunk}: deletes before adds"
        );
        // The first read starts at the beginning; the others resume from the token (the fake
        // checks it is the one it handed out).
        assert_eq!(calls[0].u64_at(BATCH_IN), 0);
        assert!(calls[1..lookups].iter().all(|s| s.u64_at(BATCH_IN) != 0));
        let last = &calls[lookups - 1];
        assert_eq!(last.ret, Err(libc::ENOENT), "chunk {chunk}");
        assert_eq!(calls[lookups].u32_at(BATCH_COUNT), 4);
        assert_eq!(calls[lookups + 1].u32_at(BATCH_COUNT), 4);
        assert_eq!(calls[lookups + 1].u64_at(BATCH_ELEM_FLAGS), BPF_NOEXIST);

        let w = sim.writes();
        let dropped: BTreeSet<_> = (6..10).map(v4key).collect();
        let added: BTreeSet<_> = (50..54).map(v4key).collect();
        assert_eq!(keys_written(&w, BPF_MAP_DELETE_BATCH), dropped);
        assert_eq!(keys_written(&w, BPF_MAP_UPDATE_BATCH), added);
        let mut want: BTreeMap<_, _> = old[..6].iter().cloned().collect();
        want.extend(added.iter().map(|k| (k.clone(), hits(0))));
        assert_eq!(
            sim.data(LPM_V4.name),
            want,
            "kept entries keep their hit counters"
        );

        assert_eq!(undo.len(), 8);
        undo.rollback(&set);
        let w = &sim.writes()[w.len()..];
        assert_eq!(keys_written(w, BPF_MAP_DELETE_ELEM), added);
        assert_eq!(keys_written(w, BPF_MAP_UPDATE_ELEM), dropped);
        assert_eq!(
            sim.data(LPM_V4.name),
            old.iter().cloned().collect(),
            "deleted keys come back with their previous values"
        );
    }
}

#[test]
fn without_batched_lookup_the_keys_are_walked() {
    for errno in [libc::EINVAL, 524 /* ENOTSUPP */, libc::EOPNOTSUPP] {
        let sim = Sim::new();
        sim.set(|s| s.lookup_batch_errno = Some(errno));
        let old: Vec<(Vec<u8>, Vec<u8>)> = (0..5).map(|i| (v4key(i), hits(7 * i as u64))).collect();
        let def = prefilter_v4();
        sim.pin(def, def.max_entries, &old);
        let mut set = sim.map_set();
        let m = open(&mut set, def);

        let from = sim.mark();
        assert_eq!(contents::entries(m).unwrap(), old.iter().cloned().collect());
        let mut want = vec![BPF_MAP_LOOKUP_BATCH];
        want.extend([BPF_MAP_GET_NEXT_KEY; 6]); // 5 keys, then ENOENT
        want.extend([BPF_MAP_LOOKUP_ELEM; 5]);
        assert_eq!(cmds(&sim.calls_since(from)), want, "errno {errno}");

        let desired: BTreeSet<Vec<u8>> = [v4key(0), v4key(9)].into();
        let mut undo = Undo::default();
        let change = contents::sync_set(m, &desired, &hits(0), &mut undo).unwrap();
        assert_eq!((change.added, change.removed, change.total), (1, 4, 2));
        assert_eq!(
            sim.data(LPM_V4.name),
            [(v4key(0), hits(0)), (v4key(9), hits(0))].into()
        );
        undo.rollback(&set);
        assert_eq!(sim.data(LPM_V4.name), old.iter().cloned().collect());
    }

    // Any other error is the caller's, not a reason to walk.
    let sim = Sim::new();
    sim.set(|s| s.lookup_batch_errno = Some(libc::EPERM));
    sim.pin(prefilter_v4(), prefilter_v4().max_entries, &[]);
    let mut set = sim.map_set();
    let m = open(&mut set, prefilter_v4());
    let e = contents::entries(m).unwrap_err();
    let Error::Bpf { subject, source } = &e else {
        panic!("want Error::Bpf, got {e:?}");
    };
    assert_eq!(subject, "map 'test_lpm_v4'");
    assert_eq!(source.errno(), Some(libc::EPERM));
    assert!(sim.fake.calls_of(BPF_MAP_GET_NEXT_KEY).is_empty());
}

#[test]
fn a_batched_add_failing_part_way_is_finished_one_by_one_and_undone_exactly() {
    let sim = Sim::new();
    // The kernel applies 3 of the batch, then fails.
    sim.set(|s| s.update_batch_fail = Some((3, libc::ENOMEM)));
    let def = prefilter_v4();
    let old = vec![(v4key(0), hits(11)), (v4key(1), hits(22))];
    sim.pin(def, def.max_entries, &old);
    let mut set = sim.map_set();
    let m = open(&mut set, def);

    // Keep 0, drop 1, add 10 new ones.
    let desired: BTreeSet<Vec<u8>> = std::iter::once(0).chain(100..110).map(v4key).collect();
    let mut undo = Undo::default();
    let from = sim.mark();
    let change = contents::sync_set(m, &desired, &hits(0), &mut undo).unwrap();
    assert_eq!((change.added, change.removed, change.total), (10, 1, 11));
    let calls = sim.calls_since(from);
    let mut want = vec![
        BPF_MAP_LOOKUP_BATCH,
        BPF_MAP_DELETE_BATCH,
        BPF_MAP_UPDATE_BATCH,
    ];
    want.extend([BPF_MAP_UPDATE_ELEM; 10]);
    assert_eq!(cmds(&calls), want);
    let elems = &calls[3..];
    // The 3 the batch applied answer EEXIST: they count as ours.
    assert!(elems[..3].iter().all(|s| s.ret == Err(libc::EEXIST)));
    assert!(elems[3..].iter().all(|s| s.ret == Ok(0)));
    assert!(elems.iter().all(|s| s.u64_at(ELEM_FLAGS) == BPF_NOEXIST));
    let mut want: BTreeMap<_, _> = desired.iter().map(|k| (k.clone(), hits(0))).collect();
    want.insert(v4key(0), hits(11));
    assert_eq!(sim.data(LPM_V4.name), want);
    assert_eq!(undo.len(), 11);

    undo.rollback(&set);
    assert_eq!(sim.data(LPM_V4.name), old.into_iter().collect());
}

#[test]
fn a_failed_add_leaves_an_exact_undo_log() {
    let sim = Sim::new();
    // No batched update at all, and the 6th element is refused.
    sim.set(|s| {
        s.update_batch_fail = Some((0, libc::EINVAL));
        s.update_elem_fail = Some((v4key(105), libc::E2BIG));
    });
    let def = prefilter_v4();
    let old = vec![(v4key(0), hits(11)), (v4key(1), hits(22))];
    sim.pin(def, def.max_entries, &old);
    let mut set = sim.map_set();
    let m = open(&mut set, def);
    let desired: BTreeSet<Vec<u8>> = (100..110).map(v4key).collect();
    let mut undo = Undo::default();
    let e = contents::sync_set(m, &desired, &hits(0), &mut undo).unwrap_err();
    let Error::Bpf { subject, source } = &e else {
        panic!("want Error::Bpf, got {e:?}");
    };
    assert_eq!(subject, "map 'test_lpm_v4': adding an entry");
    assert_eq!(source.errno(), Some(libc::E2BIG));
    // Two deletions and the five adds before the refused one.
    assert_eq!(undo.len(), 2 + 5);
    let partial: BTreeMap<_, _> = (100..105).map(|i| (v4key(i), hits(0))).collect();
    assert_eq!(sim.data(LPM_V4.name), partial);
    undo.rollback(&set);
    assert_eq!(sim.data(LPM_V4.name), old.into_iter().collect());
}

#[test]
fn an_update_finding_the_element_cache_empty_is_tried_again() {
    let sim = Sim::new();
    // No batched update; the 3rd element meets an empty cache three times, then fits.
    sim.set(|s| {
        s.update_batch_fail = Some((0, libc::EINVAL));
        s.update_elem_enomem = Some((v4key(102), std::cell::Cell::new(3)));
    });
    let def = prefilter_v4();
    sim.pin(def, def.max_entries, &[]);
    let mut set = sim.map_set();
    let m = open(&mut set, def);
    let desired: BTreeSet<Vec<u8>> = (100..105).map(v4key).collect();
    let mut undo = Undo::default();
    let from = sim.mark();
    let change = contents::sync_set(m, &desired, &hits(0), &mut undo).unwrap();
    assert_eq!(change.added, 5);
    let refused = sim
        .calls_since(from)
        .iter()
        .filter(|c| c.ret == Err(libc::ENOMEM))
        .count();
    assert_eq!(refused, 3);
    let want: BTreeMap<_, _> = (100..105).map(|i| (v4key(i), hits(0))).collect();
    assert_eq!(sim.data(LPM_V4.name), want);
}

#[test]
fn a_batched_delete_failing_part_way_is_finished_one_by_one() {
    let sim = Sim::new();
    sim.set(|s| s.delete_batch_fail = Some((2, libc::EINTR)));
    let def = prefilter_v4();
    let old: Vec<_> = (0..6).map(|i| (v4key(i), hits(i as u64 + 1))).collect();
    sim.pin(def, def.max_entries, &old);
    let mut set = sim.map_set();
    let m = open(&mut set, def);
    let desired: BTreeSet<Vec<u8>> = [v4key(5)].into();
    let mut undo = Undo::default();
    let from = sim.mark();
    let change = contents::sync_set(m, &desired, &hits(0), &mut undo).unwrap();
    assert_eq!((change.added, change.removed, change.total), (0, 5, 1));
    let calls = sim.calls_since(from);
    let mut want = vec![BPF_MAP_LOOKUP_BATCH, BPF_MAP_DELETE_BATCH];
    want.extend([BPF_MAP_DELETE_ELEM; 5]);
    assert_eq!(cmds(&calls), want);
    // The two the batch removed answer ENOENT: already gone.
    let rets: Vec<_> = calls[2..].iter().map(|s| s.ret).collect();
    assert_eq!(
        rets,
        [Err(libc::ENOENT), Err(libc::ENOENT), Ok(0), Ok(0), Ok(0)]
    );
    assert_eq!(sim.data(LPM_V4.name), [(v4key(5), hits(6))].into());
    assert_eq!(undo.len(), 5);
    undo.rollback(&set);
    assert_eq!(sim.data(LPM_V4.name), old.into_iter().collect());
}

#[test]
fn a_set_larger_than_the_map_is_refused_before_any_write() {
    let def = prefilter_v4();
    let desired: BTreeSet<Vec<u8>> = (0..5).map(v4key).collect();
    for reused in [false, true] {
        let sim = Sim::new();
        let old = vec![(v4key(70), hits(3))];
        if reused {
            sim.pin(def, 4, &old);
        }
        let mut set = sim.map_set();
        set.set_capacity(def.name, 4);
        let m = open(&mut set, def);
        assert_eq!(m.reused, reused);
        let mut undo = Undo::default();
        let from = sim.mark();
        let e = contents::sync_set(m, &desired, &hits(0), &mut undo).unwrap_err();
        let Error::Map { map, problem } = &e else {
            panic!("want Error::Map, got {e:?}");
        };
        assert_eq!(map, LPM_V4.name);
        assert!(
            problem.contains("5 entries do not fit its capacity of 4"),
            "{problem}"
        );
        let calls = sim.calls_since(from);
        assert!(
            calls.iter().all(|s| !WRITE_CMDS.contains(&s.cmd)),
            "no write at all: {:?}",
            cmds(&calls)
        );
        assert!(undo.is_empty());
        let want: BTreeMap<_, _> = if reused {
            old.into_iter().collect()
        } else {
            BTreeMap::new()
        };
        assert_eq!(sim.data(LPM_V4.name), want);
    }
}

/// `n` failsafe words with `set` (index, value) non-zero.
fn words(n: usize, set: &[(usize, u64)]) -> Vec<Vec<u8>> {
    let mut w = vec![0u64; n];
    for &(i, v) in set {
        w[i] = v;
    }
    w.iter().map(|x| x.to_ne_bytes().to_vec()).collect()
}

fn slot(i: u32) -> Vec<u8> {
    i.to_ne_bytes().to_vec()
}

#[test]
fn sync_array_on_a_fresh_map_writes_only_non_zero_slots() {
    let sim = Sim::new();
    let mut set = sim.map_set();
    let m = open(&mut set, failsafe_in());
    let values = words(16, &[(0, 1 << 22), (9, 3)]);
    let mut undo = Undo::default();
    let from = sim.mark();
    assert_eq!(contents::sync_array(m, &values, &mut undo).unwrap(), 2);
    let calls = sim.calls_since(from);
    assert_eq!(cmds(&calls), [BPF_MAP_UPDATE_ELEM; 2], "no reads");
    assert!(calls.iter().all(|s| s.u64_at(ELEM_FLAGS) == BPF_ANY));
    let w = sim.writes();
    assert_eq!(w[0].keys, [slot(0)]);
    assert_eq!(w[1].keys, [slot(9)]);
    let data = sim.data(MAP_FAILSAFE);
    assert_eq!(data[&slot(0)], (1u64 << 22).to_ne_bytes());
    assert_eq!(data[&slot(9)], 3u64.to_ne_bytes());
    assert_eq!(undo.len(), 2);
    undo.rollback(&set);
    assert!(sim.data(MAP_FAILSAFE).values().all(|v| v == &[0; 8]));
}

#[test]
fn sync_array_on_a_reused_map_writes_only_differing_slots() {
    let sim = Sim::new();
    let def = failsafe_in();
    let before = [(slot(0), hits(5)), (slot(5), hits(6)), (slot(7), hits(7))];
    sim.pin(def, def.max_entries, &before);
    let old = sim.data(MAP_FAILSAFE);
    let mut set = sim.map_set();
    let m = open(&mut set, def);
    assert!(m.reused);
    // Slot 0 stays, 5 changes, 7 is cleared, 9 is set.
    let values = words(16, &[(0, 5), (5, 60), (9, 90)]);
    let mut undo = Undo::default();
    let from = sim.mark();
    assert_eq!(contents::sync_array(m, &values, &mut undo).unwrap(), 3);
    let calls = sim.calls_since(from);
    let lookups: Vec<_> = calls
        .iter()
        .filter(|s| s.cmd == BPF_MAP_LOOKUP_ELEM)
        .collect();
    assert_eq!(lookups.len(), 16, "every slot is read");
    let w = sim.writes();
    let written: Vec<_> = w.iter().flat_map(|w| w.keys.clone()).collect();
    assert_eq!(written, [slot(5), slot(7), slot(9)]);
    let data = sim.data(MAP_FAILSAFE);
    assert_eq!(data[&slot(0)], hits(5));
    assert_eq!(data[&slot(5)], hits(60));
    assert_eq!(data[&slot(7)], hits(0));
    assert_eq!(data[&slot(9)], hits(90));
    undo.rollback(&set);
    assert_eq!(sim.data(MAP_FAILSAFE), old);
}

/// The v6 LPM key of `addr/len`, built by hand (not with `prefilter::lpm_key`).
fn lpm6(len: u32, a: [u8; 16]) -> Vec<u8> {
    let mut k = len.to_ne_bytes().to_vec();
    k.extend_from_slice(&a);
    k
}

fn config(text: &str) -> Config {
    crate::config::parse("test.conf", text).unwrap()
}

const DB8: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// The IPv4 deny entry row `a.b.c.d/len` with `hits`.
fn row4(a: [u8; 4], len: u8, hits: u64) -> Vec<u8> {
    maps_schema::Codec::encode(&maps_schema::DenyV4 {
        hits,
        addr: a,
        prefixlen: len,
        in_use: 1,
        pad: [0; 2],
    })
}

/// The non-zero slots of an array map in the fake kernel, by index.
fn nonzero(sim: &Sim, name: &str) -> BTreeMap<u32, Vec<u8>> {
    sim.data(name)
        .into_iter()
        .filter(|(_, v)| v.iter().any(|b| *b != 0))
        .map(|(k, v)| (u32::from_ne_bytes(k[..4].try_into().unwrap()), v))
        .collect()
}

/// A map set with the prefilter maps, the IPv4 deny list sized small.
fn prefilter_maps(sim: &Sim, v6_capacity: Option<u32>) -> MapSet {
    let mut set = sim.map_set();
    set.set_capacity(MAP_V4, 16);
    set.set_capacity(MAP_V4_NODES, 16);
    if let Some(n) = v6_capacity {
        set.set_capacity(MAP_V6, n);
    }
    for name in [MAP_V4, MAP_V4_ROOT, MAP_V4_NODES, MAP_V6, MAP_FAILSAFE] {
        open(&mut set, maps_schema::find(name).unwrap());
    }
    set
}

#[test]
fn prefilter_apply_fills_the_deny_lists_and_the_failsafe_bitmap() {
    let sim = Sim::new();
    let set = prefilter_maps(&sim, None);
    let cfg = config("prefilter deny 10.0.0.0/8 2001:db8::/32\nfailsafe in tcp/22\n");
    let mut undo = Undo::default();
    let change = prefilter::apply(&set, &cfg, &mut undo).unwrap();
    let zero = hits(0);
    // Entry 0 is 10/8; its leaf (id + 1) fills the 256 root slots of 10.0/16 to 10.255/16.
    assert_eq!(
        nonzero(&sim, MAP_V4),
        [(0, row4([10, 0, 0, 0], 8, 0))].into()
    );
    let root = nonzero(&sim, MAP_V4_ROOT);
    assert_eq!(root.len(), 256);
    assert!((0x0a00..=0x0aff).all(|i| root[&i] == 1u32.to_ne_bytes()));
    assert!(
        nonzero(&sim, MAP_V4_NODES).is_empty(),
        "no prefix longer than /16"
    );
    assert_eq!(sim.data(MAP_V6), [(lpm6(32, DB8), zero.clone())].into());
    let fs = sim.data(MAP_FAILSAFE);
    assert_eq!(fs.len(), 3 * 1024);
    for (k, v) in &fs {
        let want: u64 = if *k == slot(0) { 1 << 22 } else { 0 };
        assert_eq!(*v, want.to_ne_bytes(), "slot {k:?}");
    }
    let one = SetChange {
        added: 1,
        removed: 0,
        total: 1,
    };
    assert_eq!(
        change,
        PrefilterChange {
            v4: one,
            v6: one,
            failsafe_words: 1
        }
    );
    assert_eq!(undo.len(), 1 + 256 + 1 + 1);

    // `weir apply` later: the pins are reused; 10/8 has counted hits, which survive.
    drop(set);
    let v4 = {
        let st = sim.st.borrow();
        Rc::clone(&st.maps.iter().find(|m| m.info.name == MAP_V4).unwrap().data)
    };
    v4.borrow_mut().insert(slot(0), row4([10, 0, 0, 0], 8, 42));
    let set = MapSet::open_pinned(&sim.dir.0, |set| {
        set.set_capacity(MAP_V4, 16);
        set.set_capacity(MAP_V4_NODES, 16);
    })
    .unwrap();
    assert!(set.get(MAP_V4).unwrap().reused);
    let cfg = config("prefilter deny 10.0.0.0/8 192.168.1.0/24\nfailsafe in tcp/22 udp/53\n");
    let before = sim.writes().len();
    let mut undo = Undo::default();
    let change = prefilter::apply(&set, &cfg, &mut undo).unwrap();
    assert_eq!(
        nonzero(&sim, MAP_V4),
        [
            (0, row4([10, 0, 0, 0], 8, 42)),
            (1, row4([192, 168, 1, 0], 24, 0))
        ]
        .into()
    );
    // 192.168/16 → chunk 1 (192.168.0/20) → chunk 2 (/24 slots), whose slot 1 is entry 1.
    let chunk = |slots: &[(usize, u32)]| {
        let mut c = [0u32; 16];
        for &(i, v) in slots {
            c[i] = v;
        }
        maps_schema::Codec::encode(&maps_schema::DirChunk { slot: c })
    };
    let node = maps_schema::deny_dir::NODE;
    let nodes = nonzero(&sim, MAP_V4_NODES);
    assert_eq!(nodes.len(), 2);
    let (outer, inner) = if nodes[&1] == chunk(&[(1, 2)]) {
        (2, 1)
    } else {
        (1, 2)
    };
    assert_eq!(nodes[&inner], chunk(&[(1, 2)]));
    assert_eq!(nodes[&outer], chunk(&[(0, node | inner)]));
    assert_eq!(
        nonzero(&sim, MAP_V4_ROOT)[&0xc0a8],
        (node | outer).to_ne_bytes()
    );
    assert!(sim.data(MAP_V6).is_empty());
    assert_eq!(
        sim.data(MAP_FAILSAFE)[&slot(1024)],
        (1u64 << 53).to_ne_bytes()
    );
    assert_eq!((change.v4.added, change.v4.removed), (1, 0));
    assert_eq!((change.v6.added, change.v6.removed), (0, 1));
    assert_eq!(change.failsafe_words, 1);
    let touched: BTreeSet<Vec<u8>> = sim.writes()[before..]
        .iter()
        .flat_map(|w| w.keys.clone())
        .collect();
    assert_eq!(
        touched,
        [slot(1), slot(2), slot(0xc0a8), lpm6(32, DB8), slot(1024)].into(),
        "only the difference is written: the new row, two chunks, one root slot, v6, failsafe"
    );
    undo.rollback(&set);
    assert_eq!(
        nonzero(&sim, MAP_V4),
        [(0, row4([10, 0, 0, 0], 8, 42))].into()
    );
    assert!(!nonzero(&sim, MAP_V4_ROOT).contains_key(&0xc0a8));
    assert_eq!(sim.data(MAP_V6), [(lpm6(32, DB8), zero)].into());
    assert_eq!(sim.data(MAP_FAILSAFE)[&slot(1024)], [0; 8]);
}

#[test]
fn a_v4_list_without_room_in_the_table_writes_nothing() {
    let sim = Sim::new();
    let set = prefilter_maps(&sim, None);
    // Four /32s in different /16s need 16 chunks; the table has 15 (chunk 0 is never used).
    let cfg = config("prefilter deny 10.1.1.1 10.2.1.1 10.3.1.1 10.4.1.1\n");
    let mut undo = Undo::default();
    let from = sim.mark();
    let e = prefilter::apply(&set, &cfg, &mut undo).unwrap_err();
    let Error::Map { map, problem } = &e else {
        panic!("want Error::Map, got {e:?}");
    };
    assert_eq!(map, MAP_V4_NODES);
    assert!(
        problem.contains("needs 16 table chunks, 16 of them new, and only 15 are free"),
        "{problem}"
    );
    assert!(problem.contains("v4-chunks="), "{problem}");
    let calls = sim.calls_since(from);
    assert!(calls.iter().all(|s| !WRITE_CMDS.contains(&s.cmd)));
    assert!(undo.is_empty());
}

#[test]
fn a_v6_overflow_writes_no_prefilter_map_at_all() {
    let sim = Sim::new();
    let set = prefilter_maps(&sim, Some(1));
    let cfg = config("prefilter deny 10.0.0.0/8 2001:db8::/32 2001:db9::/32\nfailsafe in tcp/22\n");
    let mut undo = Undo::default();
    let from = sim.mark();
    let e = prefilter::apply(&set, &cfg, &mut undo).unwrap_err();
    let Error::Map { map, problem } = &e else {
        panic!("want Error::Map, got {e:?}");
    };
    assert_eq!(map, MAP_V6);
    assert!(
        problem.contains("denies 2 IPv6 networks, more than the capacity of 1"),
        "{problem}"
    );
    let calls = sim.calls_since(from);
    assert!(
        calls.iter().all(|s| !WRITE_CMDS.contains(&s.cmd)),
        "{:?}",
        cmds(&calls)
    );
    assert!(sim.writes().is_empty());
    assert!(undo.is_empty());
    assert!(nonzero(&sim, MAP_V4).is_empty());
}
