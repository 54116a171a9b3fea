//! Writing map contents as a difference against what the kernel holds, with an undo log.
//!
//! `weir load` and `weir apply` compute the entries a map should hold from the config, read what
//! it holds now, and write only the difference: unchanged entries are never touched (so their
//! in-map hit counters survive), and a large list costs only as many syscalls as it changes. Every
//! write is recorded with the value it replaced, so a failure later in the same command puts the
//! maps back exactly as they were.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, BorrowedFd};

use crate::error::Error;
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
    pub fn rollback(self, maps: &MapSet) {
        for op in self.ops.into_iter().rev() {
            let Some(m) = maps.get(op.map) else { continue };
            let r = match &op.previous {
                Some(v) => bpf::map_update(m.fd.as_fd(), &op.key, v, 0),
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

/// Makes the keys of `m` exactly `desired`: new keys get `initial` as value, keys not desired are
/// deleted, the others are left alone. Checks capacity before writing anything.
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
    let current = keys(fd, m.def.key.size, name)?;
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
    let mut value = vec![0u8; value_len(m)?];
    let mut change = SetChange {
        total: desired.len(),
        ..SetChange::default()
    };
    // Deletions first, so the additions always have room.
    for key in current.difference(desired) {
        let found = bpf::map_lookup(fd, key, &mut value)
            .map_err(|e| Error::bpf(format!("map '{name}'"), e))?;
        if bpf::map_delete(fd, key)
            .map_err(|e| Error::bpf(format!("map '{name}': deleting an entry"), e))?
        {
            undo.ops.push(UndoOp {
                map: name,
                key: key.clone(),
                previous: found.then(|| value.clone()),
            });
            change.removed += 1;
        }
    }
    for key in desired.difference(&current) {
        bpf::map_update(fd, key, initial, bpf::consts::BPF_NOEXIST)
            .map_err(|e| Error::bpf(format!("map '{name}': adding an entry"), e))?;
        undo.ops.push(UndoOp {
            map: name,
            key: key.clone(),
            previous: None,
        });
        change.added += 1;
    }
    Ok(change)
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
            bpf::map_update(fd, &key, want, 0)
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
