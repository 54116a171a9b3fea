//! Writing map contents as a difference against what the kernel holds, with an undo log.
//!
//! `weir load` and `weir apply` compute the entries a map should hold from the config, read what
//! it holds now, and write only the difference: unchanged entries are never touched (so their
//! in-map hit counters survive), and a large list costs only as many syscalls as it changes. Every
//! write is recorded with the value it replaced, so a failure later in the same command puts the
//! maps back exactly as they were.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, BorrowedFd};

use crate::error::Error;
use maps_schema::MapDef;

use crate::maps::{MapSet, OpenMap};
use crate::sys::bpf;

/// One write that can be undone: the previous value, or `None` if the key was absent.
#[derive(Debug)]
struct UndoOp {
    map: &'static str,
    key: Vec<u8>,
    previous: Option<Vec<u8>>,
}

/// The writes of one command, newest last.
#[derive(Debug, Default)]
pub struct Undo {
    ops: Vec<UndoOp>,
}

impl Undo {
    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of writes recorded.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Puts every written entry back as it was, newest first. Errors are logged: undo goes on.
    /// Records that `key` of `map` held `previous` (`None`: absent) before a write.
    pub(crate) fn push(&mut self, map: &'static str, key: Vec<u8>, previous: Option<Vec<u8>>) {
        self.ops.push(UndoOp { map, key, previous });
    }

    pub fn rollback(self, maps: &MapSet) {
        for op in self.ops.into_iter().rev() {
            let Some(m) = maps.get(op.map) else { continue };
            let r = match &op.previous {
                Some(v) => map_update_retrying(m.fd.as_fd(), &op.key, v, 0),
                None => bpf::map_delete(m.fd.as_fd(), &op.key).map(|_| ()),
            };
            if let Err(e) = r {
                log::error!("map '{}': undoing a write failed: {e}", op.map);
            }
        }
    }
}

fn value_len(m: &OpenMap) -> Result<usize, Error> {
    bpf::value_len(m.def.map_type as u32, m.def.value.size)
        .map_err(|e| Error::io(format!("map '{}': value size", m.def.name), e))
}

/// Writes one entry (`BPF_ANY`), recording what it replaced for undo. For small maps written
/// entry by entry in an order that matters (e.g. a table before the index that points into it).
///
/// # Errors
/// Returns an error when the previous value cannot be read or the write fails.
pub fn write_entry(m: &OpenMap, key: &[u8], value: &[u8], undo: &mut Undo) -> Result<(), Error> {
    let name = m.def.name;
    let fd = m.fd.as_fd();
    let mut previous = vec![0u8; value_len(m)?];
    let existed = bpf::map_lookup(fd, key, &mut previous)
        .map_err(|e| Error::bpf(format!("map '{name}': reading an entry"), e))?;
    map_update_retrying(fd, key, value, 0)
        .map_err(|e| Error::bpf(format!("map '{name}': writing an entry"), e))?;
    undo.ops.push(UndoOp {
        map: name,
        key: key.to_vec(),
        previous: existed.then_some(previous),
    });
    Ok(())
}

/// Deletes one entry if present, recording it for undo. Returns whether it was there.
///
/// # Errors
/// Returns an error when the entry cannot be read or deleted.
pub fn delete_entry(m: &OpenMap, key: &[u8], undo: &mut Undo) -> Result<bool, Error> {
    let name = m.def.name;
    let fd = m.fd.as_fd();
    let mut previous = vec![0u8; value_len(m)?];
    let existed = bpf::map_lookup(fd, key, &mut previous)
        .map_err(|e| Error::bpf(format!("map '{name}': reading an entry"), e))?;
    if !existed {
        return Ok(false);
    }
    bpf::map_delete(fd, key)
        .map_err(|e| Error::bpf(format!("map '{name}': deleting an entry"), e))?;
    undo.ops.push(UndoOp {
        map: name,
        key: key.to_vec(),
        previous: Some(previous),
    });
    Ok(true)
}

/// Every key of a map (by walking it).
///
/// # Errors
/// Returns an error when the kernel refuses the walk.
pub fn keys(fd: BorrowedFd<'_>, key_size: u32, map: &str) -> Result<BTreeSet<Vec<u8>>, Error> {
    let mut out = BTreeSet::new();
    let mut cur: Option<Vec<u8>> = None;
    let mut next = vec![0u8; key_size as usize];
    while bpf::map_next_key(fd, cur.as_deref(), &mut next)
        .map_err(|e| Error::bpf(format!("map '{map}'"), e))?
    {
        out.insert(next.clone());
        cur = Some(next.clone());
    }
    Ok(out)
}

/// What [`sync_set`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SetChange {
    /// Entries written.
    pub added: usize,
    /// Entries removed.
    pub removed: usize,
    /// Entries present afterwards.
    pub total: usize,
}

/// Elements per batch syscall: large enough that 100k entries take a few dozen calls.
const BATCH: usize = 8192;

/// How often a single update that failed with ENOMEM is tried again (waiting 0.2 ms, doubling,
/// at most 20 ms: about 0.3 s in all).
const ENOMEM_RETRIES: u32 = 16;

/// `bpf::map_update`, tried again on ENOMEM: a hash map without preallocation takes its
/// elements (and per-CPU values) from per-CPU caches the kernel refills asynchronously
/// (`bpf_mem_alloc`, by irq_work), so a burst of inserts from user space can find them empty
/// for a moment although memory is plentiful (seen loading 200k backends into `lb_stats`).
fn map_update_retrying(
    fd: BorrowedFd<'_>,
    key: &[u8],
    value: &[u8],
    flags: u64,
) -> Result<(), bpf::BpfError> {
    let mut delay = std::time::Duration::from_micros(200);
    for _ in 0..ENOMEM_RETRIES {
        match bpf::map_update(fd, key, value, flags) {
            Err(e) if e.errno() == Some(libc::ENOMEM) => {
                log::debug!("{e}: the map's element cache is empty; trying again in {delay:?}");
                std::thread::sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
    bpf::map_update(fd, key, value, flags)
}

/// True when a batch command failed because the map (or kernel) has no batch support for it.
fn no_batch(e: &bpf::BpfError) -> bool {
    matches!(
        e.errno(),
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(524 /* ENOTSUPP */)
    )
}

/// Every (key, value) of a map: batched reads where the map supports them, else a key walk.
///
/// # Errors
/// Returns an error when the kernel refuses the read.
pub fn entries(m: &OpenMap) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, Error> {
    entries_of(m.fd.as_fd(), m.def)
}

/// [`entries`] for a map known by fd and schema definition (as `weir status` opens them).
///
/// # Errors
/// Returns an error when the kernel refuses the read.
pub fn entries_of(fd: BorrowedFd<'_>, def: &MapDef) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, Error> {
    let mut out = BTreeMap::new();
    for_each_entry(fd, def, |k, v| {
        out.insert(k.to_vec(), v.to_vec());
    })?;
    Ok(out)
}

/// Calls `f` with every (key, value) of a map, without collecting them: batched reads where the
/// map supports them, else a key walk. For maps large enough that a copy of every entry costs
/// (a set's members).
///
/// # Errors
/// Returns an error when the kernel refuses the read.
pub fn for_each_entry(
    fd: BorrowedFd<'_>,
    def: &MapDef,
    mut f: impl FnMut(&[u8], &[u8]),
) -> Result<(), Error> {
    let name = def.name;
    let err = |e| Error::bpf(format!("map '{name}'"), e);
    let vs = bpf::value_len(def.map_type as u32, def.value.size)
        .map_err(|e| Error::io(format!("map '{name}': value size"), e))?;
    let ks = def.key.size as usize;
    let token_len = ks.max(4);
    let (mut keys, mut values) = (vec![0u8; ks * BATCH], vec![0u8; vs * BATCH]);
    let (mut token, mut next) = (vec![0u8; token_len], vec![0u8; token_len]);
    let mut first = true;
    loop {
        let r = bpf::map_lookup_batch(
            fd,
            (!first).then_some(&token[..]),
            &mut next,
            &mut keys,
            &mut values,
            BATCH as u32,
        );
        let (got, more) = match r {
            Ok(r) => r,
            Err(e) if first && no_batch(&e) => {
                log::debug!("map '{name}': no batched lookup ({e}); walking keys");
                let mut v = vec![0u8; vs];
                for key in self::keys(fd, def.key.size, name)? {
                    if bpf::map_lookup(fd, &key, &mut v).map_err(err)? {
                        f(&key, &v);
                    }
                }
                return Ok(());
            }
            Err(e) => return Err(err(e)),
        };
        for i in 0..got as usize {
            f(&keys[i * ks..(i + 1) * ks], &values[i * vs..(i + 1) * vs]);
        }
        if !more {
            return Ok(());
        }
        std::mem::swap(&mut token, &mut next);
        first = false;
    }
}

/// Makes the keys of `m` exactly `desired`: new keys get `initial` as value, keys not desired are
/// deleted, the others are left alone (their values, e.g. hit counters, survive). Capacity is
/// checked before anything is written. Writes are batched where the kernel supports it.
///
/// # Errors
/// Returns an error, with nothing written, when the result would not fit the map; a write error
/// after some writes leaves those in `undo` for the caller to roll back.
pub fn sync_set(
    m: &OpenMap,
    desired: &BTreeSet<Vec<u8>>,
    initial: &[u8],
    undo: &mut Undo,
) -> Result<SetChange, Error> {
    let name = m.def.name;
    let fd = m.fd.as_fd();
    let current = if m.reused {
        entries(m)?
    } else {
        BTreeMap::new()
    };
    let capacity = bpf::map_info(fd)
        .map_err(|e| Error::bpf(format!("map '{name}'"), e))?
        .max_entries as usize;
    if desired.len() > capacity {
        return Err(Error::map(
            name,
            format!(
                "{} entries do not fit its capacity of {capacity}; nothing was changed. Raise the capacity in the config \
                 (and run `weir unload` first: a pinned map cannot grow)",
                desired.len()
            ),
        ));
    }
    let removals: Vec<(&Vec<u8>, &Vec<u8>)> = current
        .iter()
        .filter(|(k, _)| !desired.contains(*k))
        .collect();
    let additions: Vec<&Vec<u8>> = desired
        .iter()
        .filter(|k| !current.contains_key(*k))
        .collect();
    let mut change = SetChange {
        total: desired.len(),
        ..SetChange::default()
    };

    // Deletions first, so the additions always have room.
    let removals: Vec<(Vec<u8>, Vec<u8>)> = removals
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    change.removed = remove_entries(m, &removals, undo)?;
    let additions: Vec<(Vec<u8>, Vec<u8>)> = additions
        .into_iter()
        .map(|k| (k.clone(), initial.to_vec()))
        .collect();
    change.added = put_entries(m, &additions, bpf::consts::BPF_NOEXIST, |_| None, undo)?;
    Ok(change)
}

/// Writes `entries` (`(key, value)`) in batches with `flags` (`BPF_ANY`, or `BPF_NOEXIST` for
/// keys known to be new); `previous(key)` is what the key held (`None`: absent), for the undo
/// log, as the caller read it beforehand. Returns how many were written.
///
/// # Errors
/// Returns an error when an entry cannot be written (earlier writes are in `undo`).
pub fn put_entries(
    m: &OpenMap,
    entries: &[(Vec<u8>, Vec<u8>)],
    flags: u64,
    previous: impl Fn(&[u8]) -> Option<Vec<u8>>,
    undo: &mut Undo,
) -> Result<usize, Error> {
    let name = m.def.name;
    let fd = m.fd.as_fd();
    let adding = flags == bpf::consts::BPF_NOEXIST;
    for chunk in entries.chunks(BATCH) {
        let keys: Vec<u8> = chunk.iter().flat_map(|(k, _)| k.iter().copied()).collect();
        let values: Vec<u8> = chunk.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        if let Err(e) = bpf::map_update_batch(fd, &keys, &values, chunk.len() as u32, flags) {
            // Unsupported, or failed part way: finish one by one. Rewriting an entry is
            // harmless, and EEXIST when adding means the failed batch had already added it.
            log::debug!("map '{name}': batched update failed ({e}); writing one by one");
            for (k, v) in chunk {
                match map_update_retrying(fd, k, v, flags) {
                    Ok(()) => {}
                    Err(e) if adding && e.errno() == Some(libc::EEXIST) => {}
                    Err(e) => {
                        let what = if adding { "adding" } else { "writing" };
                        return Err(Error::bpf(format!("map '{name}': {what} an entry"), e));
                    }
                }
                undo.push(name, k.clone(), previous(k));
            }
            continue;
        }
        for (k, _) in chunk {
            undo.push(name, k.clone(), previous(k));
        }
    }
    Ok(entries.len())
}

/// A map's contents as raw bytes: key → value.
pub type Bytes = BTreeMap<Vec<u8>, Vec<u8>>;

/// Writes the entries of `desired` that `current` (what the map holds) lacks or holds
/// differently, batched. Returns how many were written.
///
/// # Errors
/// As [`put_entries`].
pub fn write_diff(
    m: &OpenMap,
    current: &Bytes,
    desired: &Bytes,
    undo: &mut Undo,
) -> Result<usize, Error> {
    let writes: Vec<(Vec<u8>, Vec<u8>)> = desired
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    put_entries(m, &writes, 0, |k| current.get(k).cloned(), undo)
}

/// Deletes the entries of `current` (what the map holds) that `desired` lacks, batched.
/// Returns how many were deleted.
///
/// # Errors
/// As [`remove_entries`].
pub fn delete_diff(
    m: &OpenMap,
    current: &Bytes,
    desired: &Bytes,
    undo: &mut Undo,
) -> Result<usize, Error> {
    let gone: Vec<(Vec<u8>, Vec<u8>)> = current
        .iter()
        .filter(|(k, _)| !desired.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    remove_entries(m, &gone, undo)
}

/// Deletes `entries` (`(key, the value it held)`, as the caller read them) in batches.
/// Returns how many were deleted.
///
/// # Errors
/// Returns an error when an entry cannot be deleted (earlier deletions are in `undo`).
pub fn remove_entries(
    m: &OpenMap,
    entries: &[(Vec<u8>, Vec<u8>)],
    undo: &mut Undo,
) -> Result<usize, Error> {
    let name = m.def.name;
    let fd = m.fd.as_fd();
    for chunk in entries.chunks(BATCH) {
        let keys: Vec<u8> = chunk.iter().flat_map(|(k, _)| k.iter().copied()).collect();
        if let Err(e) = bpf::map_delete_batch(fd, &keys, chunk.len() as u32) {
            // Unsupported, or failed part way: finish one by one. ENOENT means the failed
            // batch had already removed that key.
            log::debug!("map '{name}': batched delete failed ({e}); deleting one by one");
            for (k, _) in chunk {
                match bpf::map_delete(fd, k) {
                    Ok(_) => {}
                    Err(e) if e.errno() == Some(libc::ENOENT) => {}
                    Err(e) => {
                        return Err(Error::bpf(format!("map '{name}': deleting an entry"), e))
                    }
                }
            }
        }
        for (k, v) in chunk {
            undo.push(name, k.clone(), Some(v.clone()));
        }
    }
    Ok(entries.len())
}

/// Makes the values of an array map equal `values` (index = key), writing only the slots that
/// differ. Returns the number of slots written.
///
/// # Errors
/// Returns an error when a slot cannot be read or written (earlier writes are in `undo`).
pub fn sync_array(m: &OpenMap, values: &[Vec<u8>], undo: &mut Undo) -> Result<usize, Error> {
    let name = m.def.name;
    let fd = m.fd.as_fd();
    let mut current = vec![0u8; value_len(m)?];
    let mut written = 0;
    for (index, want) in values.iter().enumerate() {
        let key = (index as u32).to_ne_bytes();
        if m.reused {
            bpf::map_lookup(fd, &key, &mut current)
                .map_err(|e| Error::bpf(format!("map '{name}'"), e))?;
        } else if want.iter().all(|&b| b == 0) {
            // A map this command created is all zeros: no need to read it slot by slot.
            continue;
        }
        if current != *want {
            map_update_retrying(fd, &key, want, 0)
                .map_err(|e| Error::bpf(format!("map '{name}': slot {index}"), e))?;
            undo.ops.push(UndoOp {
                map: name,
                key: key.to_vec(),
                previous: Some(current.clone()),
            });
            written += 1;
        }
    }
    Ok(written)
}

/// Every value of an array map, in index order, concatenated (`max_entries` × value length
/// bytes), read in batches.
///
/// # Errors
/// Returns an error when the map cannot be read.
pub fn read_array(m: &OpenMap) -> Result<Vec<u8>, Error> {
    let name = m.def.name;
    let fd = m.fd.as_fd();
    let vs = value_len(m)?;
    let max = bpf::map_info(fd)
        .map_err(|e| Error::bpf(format!("map '{name}'"), e))?
        .max_entries as usize;
    let mut out = vec![0u8; max * vs];
    for (key, value) in entries(m)? {
        let Some(index) = key.get(..4).and_then(|k| <[u8; 4]>::try_from(k).ok()) else {
            continue;
        };
        let index = u32::from_ne_bytes(index) as usize;
        if let Some(dst) = out.get_mut(index * vs..(index + 1) * vs) {
            dst.copy_from_slice(&value);
        }
    }
    Ok(out)
}

/// Writes array slots in the order given, in batches: `writes` are `(index, new value)`, and
/// `previous(index)` is what the slot held (for the undo log).
///
/// # Errors
/// Returns an error when a slot cannot be written (earlier writes are in `undo`).
pub fn write_array(
    m: &OpenMap,
    writes: &[(u32, Vec<u8>)],
    previous: impl Fn(u32) -> Vec<u8>,
    undo: &mut Undo,
) -> Result<usize, Error> {
    let name = m.def.name;
    let fd = m.fd.as_fd();
    for chunk in writes.chunks(BATCH) {
        let keys: Vec<u8> = chunk.iter().flat_map(|(i, _)| i.to_ne_bytes()).collect();
        let values: Vec<u8> = chunk.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        let batched = bpf::map_update_batch(fd, &keys, &values, chunk.len() as u32, 0);
        if let Err(e) = &batched {
            // Writing a slot twice is harmless, so redo the whole chunk one by one.
            log::debug!("map '{name}': batched update failed ({e}); writing one by one");
            for (index, value) in chunk {
                map_update_retrying(fd, &index.to_ne_bytes(), value, 0)
                    .map_err(|e| Error::bpf(format!("map '{name}': slot {index}"), e))?;
                undo.push(name, index.to_ne_bytes().to_vec(), Some(previous(*index)));
            }
            continue;
        }
        for (index, _) in chunk {
            undo.push(name, index.to_ne_bytes().to_vec(), Some(previous(*index)));
        }
    }
    Ok(writes.len())
}
