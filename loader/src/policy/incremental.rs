//! In-place changes of a set's members in the bank in force (`weir set add|del`): the planner,
//! pure (it reads through [`Store`] and returns the writes), and the set index a full apply
//! persists so that the planner needs neither the config nor a compile.
//!
//! # What the index holds (maps `pol_set_*`, `pol_bm_ids`; only the loader reads them)
//! - per set: its name, the prefix lengths its members have, the rule sets referencing it;
//! - per rule set: the rules without a positive `remote=` item, the lengths of its inline
//!   `remote=` prefixes, the sets it references with the rules naming each (plain and negated);
//! - every set member (32 networks of one length to an entry, a bit each), and every inline
//!   `remote=` prefix with its rules (per table);
//! - bitmap → id for the bank in force, and the bank's next free chunk and bitmap id.
//!
//! # How a change is computed
//! A leaf of a remote-address table stands for a key range `r` (a prefix of the slot's length)
//! inside which no stored prefix starts, so its bitmap is the fold of every *named* prefix
//! containing `r` (as [`super::prefix::PrefixBuilder::build`] folds the chain of the longest
//! match): `unconstrained ∪ pos \ neg`. Adding or removing member `P` changes only the leaves
//! inside `P`: the planner walks the table down to `P`'s level (creating the chunks a new,
//! longer `P` needs), then recomputes every leaf under `P`'s slots from the named prefixes
//! (one lookup per stored length; the index records which lengths occur). Negated sets and
//! inline prefixes, several sets per rule and several rule sets per set are all folded the same
//! way. Chunks are never removed (a removed member leaves its chunks in place, with the leaves
//! recomputed): the table stays valid, and the next full apply compacts it.
//!
//! # Write order (as `prefilter/table.rs`)
//! New bitmaps first (ids past the bank's high-water mark: no slot names them), then new chunks
//! (past the chunk high-water mark: nothing points to them yet), then the chunks rewritten in
//! place, deepest first, then root slots. A slot written in place changes from one valid value
//! to another (a leaf to a leaf, or a leaf to a new chunk already written), and every leaf
//! written holds the final bitmap of its range, so a packet walking the table meanwhile ends on
//! either the old or the new answer for its address.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use maps_schema::{pol, DirChunk, PolBitmap, PolMark, PolPrefixKey, PolSet, PolSetMeta, PolSetRs};

use crate::config::{Cidr, Config, RemoteTarget};
use crate::error::Error;

use super::bitmap::Bitmap;
use super::kernel::{BankPlan, BankSizes};
use super::prefix::Prefix;
use super::Compiled;

/// Add or remove members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    /// `weir set add`.
    Add,
    /// `weir set del`.
    Del,
}

/// What a full apply persists for `weir set`: the entries of the set index maps.
#[derive(Debug, Clone, Default)]
pub struct Index {
    /// `pol_set_meta[0]`.
    pub meta: PolSetMeta,
    /// `pol_sets`.
    pub sets: Vec<(u32, PolSet)>,
    /// `pol_set_rs`.
    pub rule_sets: Vec<(u32, PolSetRs)>,
    /// `pol_set_members` (value 1).
    pub members: Vec<PolPrefixKey>,
    /// `pol_set_inline`.
    pub inline: Vec<(PolPrefixKey, PolMark)>,
    /// `pol_bm_ids`.
    pub bitmap_ids: Vec<(PolBitmap, u32)>,
}

/// The key of prefix `p` (`bits` 32 or 128) owned by `owner` (a set id or a table).
#[must_use]
pub fn prefix_key(owner: u32, bits: u8, p: Prefix) -> PolPrefixKey {
    let mut addr = [0u8; 16];
    if bits == 32 {
        addr[..4].copy_from_slice(&(p.key as u32).to_be_bytes());
    } else {
        addr = p.key.to_be_bytes();
    }
    PolPrefixKey {
        owner,
        family: if bits == 32 { 4 } else { 6 },
        len: u16::from(p.len),
        addr,
    }
}

/// `key` as `pol_set_members` holds it (the schema layout: native-endian owner, family and
/// length, then the address).
#[must_use]
pub fn member_bytes(key: &PolPrefixKey) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..4].copy_from_slice(&key.owner.to_ne_bytes());
    out[4..6].copy_from_slice(&key.family.to_ne_bytes());
    out[6..8].copy_from_slice(&key.len.to_ne_bytes());
    out[8..].copy_from_slice(&key.addr);
    out
}

/// Low network bits a `pol_set_members` entry spans: 32 networks of one length that differ only
/// in them share one entry, whose value has bit `i` set for the `i`-th (dense sets, address
/// blocks, cost one entry per 32 members).
pub const MEMBER_GROUP_BITS: u32 = 5;

/// The `pol_set_members` entry holding member `key`, and its bit in the entry's value.
#[must_use]
pub fn member_group(key: &PolPrefixKey) -> (PolPrefixKey, u32) {
    let len = u32::from(key.len);
    let g = len.min(MEMBER_GROUP_BITS);
    if g == 0 {
        return (*key, 1);
    }
    let (bits, net) = if key.family == 4 {
        let mut a = [0u8; 4];
        a.copy_from_slice(&key.addr[..4]);
        (32u32, u128::from(u32::from_be_bytes(a)))
    } else {
        (128u32, u128::from_be_bytes(key.addr))
    };
    let shift = bits.saturating_sub(len);
    let low = (1u128 << g) - 1;
    let bit = ((net >> shift) & low) as u32;
    let group = net & !(low << shift);
    let mut out = *key;
    if key.family == 4 {
        out.addr = [0; 16];
        out.addr[..4].copy_from_slice(&(group as u32).to_be_bytes());
    } else {
        out.addr = group.to_be_bytes();
    }
    (out, 1 << bit)
}

/// A member's share of [`PolSet::digest`]: FNV-1a over its key bytes, then a 64-bit finalizer
/// (so the wrapping sum of many stays well spread).
#[must_use]
pub fn member_hash(key: &PolPrefixKey) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in member_bytes(key) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// `cidr` as a prefix of its family's key width (32 or 128 bits).
#[must_use]
pub fn cidr_prefix(cidr: &Cidr) -> (u8, Prefix) {
    match cidr.addr {
        std::net::IpAddr::V4(a) => (
            32,
            Prefix::new(32, u128::from(u32::from(a)), cidr.prefix_len),
        ),
        std::net::IpAddr::V6(a) => (128, Prefix::new(128, u128::from(a), cidr.prefix_len)),
    }
}

fn set_len(mask: &mut [u64], len: u8) {
    if let Some(w) = mask.get_mut(usize::from(len) / 64) {
        *w |= 1 << (len % 64);
    }
}

fn has_len(mask: &[u64], len: u32) -> bool {
    mask.get(len as usize / 64)
        .is_some_and(|w| w >> (len % 64) & 1 == 1)
}

/// The set's name as stored in [`PolSet::name`].
#[must_use]
pub fn encode_name(name: &str) -> [u32; 16] {
    let mut bytes = [0u8; 64];
    let n = name.len().min(63);
    bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
    let mut out = [0u32; 16];
    for (w, c) in out.iter_mut().zip(bytes.chunks(4)) {
        *w = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
    }
    out
}

/// [`PolSet::name`] as text.
#[must_use]
pub fn decode_name(words: &[u32; 16]) -> String {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The set index of `plan` (bank `plan.bank`, planned by [`super::kernel::plan_bank`] from
/// `cfg` and `compiled`). Whether its members fit `pol_set_members`
/// ([`pol::SET_MEMBERS_PER_CHUNK`] entries per chunk of a bank, 32 networks an entry) is up to
/// the kernel when they are written.
#[must_use]
pub fn index(cfg: &Config, compiled: &Compiled, plan: &BankPlan, sizes: BankSizes) -> Index {
    let bank = plan.bank;
    let set_base = bank * sizes.rule_sets;
    let set_ids: HashMap<&str, u32> = cfg
        .ipsets
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i as u32))
        .collect();
    let mut out = Index {
        meta: PolSetMeta {
            valid: pol::SET_META_VALID,
            bank,
            next_chunk: bank * sizes.chunks + plan.chunks.len() as u32,
            next_bitmap: bank * sizes.bitmaps + plan.bitmaps.len() as u32,
        },
        ..Index::default()
    };
    let mut sets: Vec<PolSet> = cfg
        .ipsets
        .iter()
        .map(|s| PolSet {
            name: encode_name(&s.name),
            ..PolSet::default()
        })
        .collect();
    let members: usize = cfg.ipsets.iter().map(|s| s.entries.len()).sum();
    out.members.reserve(members);
    for (i, s) in cfg.ipsets.iter().enumerate() {
        for (cidr, _) in &s.entries {
            let (bits, p) = cidr_prefix(cidr);
            if bits == 32 {
                sets[i].lengths_v4 |= 1 << p.len;
            } else {
                set_len(&mut sets[i].lengths_v6, p.len);
            }
            let key = prefix_key(i as u32, bits, p);
            sets[i].digest = sets[i].digest.wrapping_add(member_hash(&key));
            sets[i].members += 1;
            out.members.push(key);
        }
    }
    let mut inline: BTreeMap<PolPrefixKey, PolMark> = BTreeMap::new();
    for (i, set) in compiled.rule_sets.iter().enumerate() {
        let id = set_base + i as u32;
        let table = id * pol::TABLES_PER_SET;
        let mut rs = PolSetRs::default();
        let mut unconstrained = Bitmap::EMPTY;
        // Set id → (pos, neg), in first-mention order.
        let mut refs: Vec<(u32, Bitmap, Bitmap)> = Vec::new();
        for (bit, r) in set.rules.iter().enumerate() {
            let rule = &cfg.rules[r.rule];
            if !rule.remote.iter().any(|x| !x.negated) {
                unconstrained.set(bit);
            }
            let me = Bitmap::bit(bit);
            for item in &rule.remote {
                let (pos, neg) = if item.negated {
                    (Bitmap::EMPTY, me)
                } else {
                    (me, Bitmap::EMPTY)
                };
                match &item.target {
                    RemoteTarget::Net(cidr) => {
                        let (bits, p) = cidr_prefix(cidr);
                        let t = table + if bits == 32 { pol::T_V4 } else { pol::T_V6 };
                        if bits == 32 {
                            rs.inline_v4 |= 1 << p.len;
                        } else {
                            set_len(&mut rs.inline_v6, p.len);
                        }
                        let m = inline.entry(prefix_key(t, bits, p)).or_default();
                        m.pos = Bitmap(m.pos).or(pos).0;
                        m.neg = Bitmap(m.neg).or(neg).0;
                    }
                    RemoteTarget::Set(name) => {
                        let Some(&s) = set_ids.get(name.as_str()) else {
                            continue;
                        };
                        match refs.iter_mut().find(|(x, _, _)| *x == s) {
                            Some((_, p, n)) => {
                                *p = p.or(pos);
                                *n = n.or(neg);
                            }
                            None => refs.push((s, pos, neg)),
                        }
                    }
                }
            }
        }
        rs.unconstrained = unconstrained.0;
        if refs.len() > pol::RS_MAX_SETS as usize {
            // The rule set's record cannot list them all: none of its sets changes in place.
            for (s, _, _) in &refs {
                sets[*s as usize].nrulesets = pol::SET_REFS_OVER;
            }
        }
        rs.nsets = refs.len().min(pol::RS_MAX_SETS as usize) as u32;
        for (k, (s, p, n)) in refs.iter().take(pol::RS_MAX_SETS as usize).enumerate() {
            rs.sets[k] = *s;
            rs.pos[4 * k..4 * k + 4].copy_from_slice(&p.0);
            rs.neg[4 * k..4 * k + 4].copy_from_slice(&n.0);
            let record = &mut sets[*s as usize];
            if record.nrulesets == pol::SET_REFS_OVER {
                continue;
            }
            if record.nrulesets >= pol::SET_MAX_RULESETS {
                record.nrulesets = pol::SET_REFS_OVER;
                continue;
            }
            record.rulesets[record.nrulesets as usize] = id;
            record.nrulesets += 1;
        }
        out.rule_sets.push((id, rs));
    }
    out.sets = sets
        .into_iter()
        .enumerate()
        .map(|(i, s)| (i as u32, s))
        .collect();
    out.inline = inline.into_iter().collect();
    out.bitmap_ids = plan.bitmaps.iter().map(|(id, b)| (*b, *id)).collect();
    out
}

/// What the planner reads: the bank in force and the set index, as the maps hold them.
pub trait Store {
    /// `pol_root[index]`.
    ///
    /// # Errors
    /// A map read error.
    fn root(&mut self, index: u32) -> Result<u32, Error>;
    /// `pol_nodes[chunk]`.
    ///
    /// # Errors
    /// A map read error.
    fn chunk(&mut self, chunk: u32) -> Result<[u32; 16], Error>;
    /// Whether `pol_set_members` holds `key`.
    ///
    /// # Errors
    /// A map read error.
    fn member(&mut self, key: &PolPrefixKey) -> Result<bool, Error>;
    /// `pol_set_inline[key]`.
    ///
    /// # Errors
    /// A map read error.
    fn inline(&mut self, key: &PolPrefixKey) -> Result<Option<PolMark>, Error>;
    /// `pol_bm_ids[bitmap]`.
    ///
    /// # Errors
    /// A map read error.
    fn bitmap_id(&mut self, bitmap: &PolBitmap) -> Result<Option<u32>, Error>;
    /// `pol_sets[id]`.
    ///
    /// # Errors
    /// A map read error.
    fn set(&mut self, id: u32) -> Result<Option<PolSet>, Error>;
    /// `pol_set_rs[id]`.
    ///
    /// # Errors
    /// A map read error.
    fn rule_set(&mut self, id: u32) -> Result<Option<PolSetRs>, Error>;
}

/// The writes of one `weir set` command, in the order they must be made (see the module
/// documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetPlan {
    /// New bitmaps (`pol_bitmaps`), at ids no slot names yet.
    pub bitmaps: Vec<(u32, PolBitmap)>,
    /// Their interning entries (`pol_bm_ids`).
    pub bitmap_ids: Vec<(PolBitmap, u32)>,
    /// `pol_nodes`: new chunks first, then chunks rewritten in place, deepest first.
    pub chunks: Vec<(u32, DirChunk)>,
    /// `pol_root`, last.
    pub root: Vec<(u32, u32)>,
    /// Members to add to `pol_set_members`.
    pub add: Vec<PolPrefixKey>,
    /// Members to remove.
    pub del: Vec<PolPrefixKey>,
    /// The set's new record (member lengths, digest and count), when members changed.
    pub set: Option<(u32, PolSet)>,
    /// The new high-water marks.
    pub meta: PolSetMeta,
    /// Members the command asked for that were already in the wanted state (`add` of a member).
    pub unchanged: usize,
    /// Tables (rule set × family) whose leaves were recomputed.
    pub tables: usize,
}

/// Why a `weir set` command cannot be planned (nothing is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetError {
    /// The set is not in the policy in force.
    UnknownSet {
        /// The name asked for.
        name: String,
        /// The sets there are.
        known: Vec<String>,
    },
    /// `del` of a network the set does not hold.
    NotMember {
        /// The set.
        set: String,
        /// The network.
        cidr: String,
    },
    /// The set is referenced too widely for its index record.
    TooManyRefs {
        /// The set.
        set: String,
    },
    /// The bank has no room for the new chunks or bitmaps.
    Capacity {
        /// `chunks` or `bitmaps`.
        what: &'static str,
        /// How many the change needs past the bank's high-water mark.
        needed: u32,
        /// How many are free.
        free: u32,
    },
    /// The index is inconsistent with itself (a record is missing).
    Index(String),
}

impl fmt::Display for SetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetError::UnknownSet { name, known } => write!(
                f,
                "set '{name}' is not in the policy in force; sets: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
            SetError::NotMember { set, cidr } => {
                write!(
                    f,
                    "{cidr} is not a member of set '{set}'; nothing was changed"
                )
            }
            SetError::TooManyRefs { set } => write!(
                f,
                "set '{set}' is referenced by more than {} rule sets, or by a rule set that \
                 references more than {} sets: `weir set` cannot change it in place; change the \
                 config and `weir apply` it",
                pol::SET_MAX_RULESETS,
                pol::RS_MAX_SETS
            ),
            SetError::Capacity { what, needed, free } => write!(
                f,
                "the change needs {needed} new classifier {what}, the bank in force has {free} \
                 free; nothing was changed. Raise `classifier capacity {what}=` (then \
                 `weir unload` and `weir load`: a pinned map cannot grow), or `weir apply` the \
                 config to compact the bank"
            ),
            SetError::Index(why) => write!(
                f,
                "the set index is inconsistent ({why}); `weir apply` the config to rebuild it"
            ),
        }
    }
}

impl std::error::Error for SetError {}

/// Where a slot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    Root(u32),
    Chunk(u32, usize),
}

/// One rule set's view for the fold: its record and the records of the sets it references.
struct RsView {
    table: u32,
    unconstrained: Bitmap,
    inline_lengths: Vec<u64>,
    /// (set id, member lengths of the family, pos, neg).
    sets: Vec<(u32, Vec<u64>, Bitmap, Bitmap)>,
}

/// The planner's state: the writes so far, over the store.
struct Planner<'a, S: Store> {
    store: &'a mut S,
    meta: PolSetMeta,
    chunk_end: u32,
    bitmap_end: u32,
    /// Chunks allocated by this plan (nothing pointed to them before), with their contents.
    fresh: BTreeMap<u32, [u32; 16]>,
    /// Chunks rewritten in place: contents and depth.
    in_place: HashMap<u32, ([u32; 16], u32)>,
    root: BTreeMap<u32, u32>,
    new_bitmaps: Vec<(u32, PolBitmap)>,
    interned: HashMap<[u64; 4], u32>,
    /// Membership changes so far: key → member afterwards.
    members: HashMap<PolPrefixKey, bool>,
    /// The changed set's record (member lengths, digest and count).
    lengths: HashMap<u32, PolSet>,
}

impl<S: Store> Planner<'_, S> {
    fn read(&mut self, loc: Loc) -> Result<u32, Error> {
        Ok(match loc {
            Loc::Root(i) => match self.root.get(&i) {
                Some(v) => *v,
                None => self.store.root(i)?,
            },
            Loc::Chunk(c, i) => self.contents(c)?[i],
        })
    }

    fn contents(&mut self, c: u32) -> Result<[u32; 16], Error> {
        if let Some(s) = self.fresh.get(&c) {
            return Ok(*s);
        }
        if let Some((s, _)) = self.in_place.get(&c) {
            return Ok(*s);
        }
        self.store.chunk(c)
    }

    fn write(&mut self, loc: Loc, value: u32, depth: u32) -> Result<(), Error> {
        match loc {
            Loc::Root(i) => {
                self.root.insert(i, value);
            }
            Loc::Chunk(c, i) => {
                if let Some(s) = self.fresh.get_mut(&c) {
                    s[i] = value;
                } else {
                    let mut s = self.contents(c)?;
                    s[i] = value;
                    self.in_place.insert(c, (s, depth));
                }
            }
        }
        Ok(())
    }

    fn intern(&mut self, b: Bitmap) -> Result<u32, Error> {
        if let Some(&id) = self.interned.get(&b.0) {
            return Ok(id);
        }
        let key = PolBitmap { w: b.0 };
        let id = match self.store.bitmap_id(&key)? {
            Some(id) => id,
            None => {
                let id = self.meta.next_bitmap;
                self.meta.next_bitmap += 1;
                self.new_bitmaps.push((id, key));
                id
            }
        };
        self.interned.insert(b.0, id);
        Ok(id)
    }

    fn is_member(&mut self, key: &PolPrefixKey) -> Result<bool, Error> {
        match self.members.get(key) {
            Some(m) => Ok(*m),
            None => self.store.member(key),
        }
    }

    /// The named prefixes of `view` containing `key` (left-aligned) with lengths in
    /// `from..=to`, folded into `(pos, neg)`.
    fn fold(
        &mut self,
        view: &RsView,
        bits: u8,
        key: u128,
        from: u32,
        to: u32,
        acc: (Bitmap, Bitmap),
    ) -> Result<(Bitmap, Bitmap), Error> {
        let (mut pos, mut neg) = acc;
        let right = |l: u32| Prefix::new(bits, key >> (128 - u32::from(bits)), l as u8);
        for l in from..=to.min(u32::from(bits)) {
            if has_len(&view.inline_lengths, l) {
                if let Some(m) = self.store.inline(&prefix_key(view.table, bits, right(l)))? {
                    pos = pos.or(Bitmap(m.pos));
                    neg = neg.or(Bitmap(m.neg));
                }
            }
            for (set, lengths, p, n) in &view.sets {
                if has_len(lengths, l) && self.is_member(&prefix_key(*set, bits, right(l)))? {
                    pos = pos.or(*p);
                    neg = neg.or(*n);
                }
            }
        }
        Ok((pos, neg))
    }

    /// Recomputes every leaf under the slot at `loc`, whose range is the prefix of `key` of
    /// length `len`; `acc` folds the named prefixes of length below `from`.
    #[allow(clippy::too_many_arguments)]
    fn recompute(
        &mut self,
        view: &RsView,
        bits: u8,
        loc: Loc,
        key: u128,
        from: u32,
        len: u32,
        acc: (Bitmap, Bitmap),
        depth: u32,
    ) -> Result<(), Error> {
        let acc = self.fold(view, bits, key, from, len, acc)?;
        let slot = self.read(loc)?;
        if slot & pol::NODE != 0 && len < u32::from(bits) {
            let c = slot & !pol::NODE;
            for i in 0..16usize {
                let child = key | ((i as u128) << (124 - len));
                self.recompute(
                    view,
                    bits,
                    Loc::Chunk(c, i),
                    child,
                    len + 1,
                    len + pol::CHUNK_BITS,
                    acc,
                    depth + 1,
                )?;
            }
            return Ok(());
        }
        let b = view.unconstrained.or(acc.0).and_not(acc.1);
        let leaf = self.intern(b)? + 1;
        if leaf != slot {
            self.write(loc, leaf, depth)?;
        }
        Ok(())
    }

    /// Recomputes the leaves of table `view.table + T_V4/T_V6` under prefix `p`.
    fn table(&mut self, view: &RsView, bits: u8, p: Prefix) -> Result<(), Error> {
        let key = p.key << (128 - u32::from(bits));
        let len = u32::from(p.len);
        let base = view.table * pol::ROOT_SLOTS;
        let first = (key >> 120) as u32;
        if len <= pol::ROOT_BITS {
            let n = 1u32 << (pol::ROOT_BITS - len);
            for s in first..first + n {
                let k = u128::from(s) << 120;
                self.recompute(
                    view,
                    bits,
                    Loc::Root(base + s),
                    k,
                    0,
                    pol::ROOT_BITS,
                    (Bitmap::EMPTY, Bitmap::EMPTY),
                    0,
                )?;
            }
            return Ok(());
        }
        let mut loc = Loc::Root(base + first);
        let mut level = pol::ROOT_BITS;
        let mut depth = 0;
        loop {
            let slot = self.read(loc)?;
            let chunk = if slot & pol::NODE != 0 {
                slot & !pol::NODE
            } else {
                // A new chunk under a leaf: every slot inherits the leaf until recomputed.
                let c = self.meta.next_chunk;
                self.meta.next_chunk += 1;
                self.fresh.insert(c, [slot; 16]);
                self.write(loc, pol::NODE | c, depth)?;
                c
            };
            depth += 1;
            let nibble = ((key >> (124 - level)) & 0xf) as usize;
            if len <= level + pol::CHUNK_BITS {
                // The named prefixes above this chunk's range, folded once.
                let range = key & super::prefix::mask(128, level as u8);
                let acc = self.fold(view, bits, range, 0, level, (Bitmap::EMPTY, Bitmap::EMPTY))?;
                let n = 1usize << (level + pol::CHUNK_BITS - len);
                for i in nibble..nibble + n {
                    let k = range | ((i as u128) << (124 - level));
                    self.recompute(
                        view,
                        bits,
                        Loc::Chunk(chunk, i),
                        k,
                        level + 1,
                        level + pol::CHUNK_BITS,
                        acc,
                        depth,
                    )?;
                }
                return Ok(());
            }
            loc = Loc::Chunk(chunk, nibble);
            level += pol::CHUNK_BITS;
        }
    }
}

/// Plans `op` of `cidrs` on the set called `name`, against the bank in force as `store` reads
/// it; `meta` is the index's `pol_set_meta[0]`, `sizes` the bank sizes.
///
/// # Errors
/// [`SetError`] (nothing is to be written), or a map read error.
pub fn plan(
    store: &mut impl Store,
    meta: PolSetMeta,
    sizes: BankSizes,
    name: &str,
    op: SetOp,
    cidrs: &[Cidr],
) -> Result<SetPlan, Error> {
    let fail = |e: SetError| Error::Environment(e.to_string());
    // The set: ids are dense from 0 (config order).
    let mut known = Vec::new();
    let mut found = None;
    for id in 0..pol::MAX_SETS {
        let Some(s) = store.set(id)? else { break };
        let n = decode_name(&s.name);
        if n == name {
            found = Some((id, s));
            break;
        }
        known.push(n);
    }
    let Some((set_id, mut set)) = found else {
        for id in known.len() as u32 + 1..pol::MAX_SETS {
            let Some(s) = store.set(id)? else { break };
            known.push(decode_name(&s.name));
        }
        return Err(fail(SetError::UnknownSet {
            name: name.to_owned(),
            known,
        }));
    };
    if set.nrulesets == pol::SET_REFS_OVER {
        return Err(fail(SetError::TooManyRefs {
            set: name.to_owned(),
        }));
    }
    let bank = meta.bank;
    let mut planner = Planner {
        store,
        meta,
        chunk_end: (bank + 1) * sizes.chunks,
        bitmap_end: (bank + 1) * sizes.bitmaps,
        fresh: BTreeMap::new(),
        in_place: HashMap::new(),
        root: BTreeMap::new(),
        new_bitmaps: Vec::new(),
        interned: HashMap::new(),
        members: HashMap::new(),
        lengths: HashMap::new(),
    };
    // The rule sets referencing the set, each with the records of every set it references.
    let mut views: Vec<(RsView, RsView)> = Vec::new();
    for &rs_id in &set.rulesets[..set.nrulesets as usize] {
        let rs = planner
            .store
            .rule_set(rs_id)?
            .ok_or_else(|| fail(SetError::Index(format!("rule set {rs_id} has no record"))))?;
        let mut v4 = RsView {
            table: rs_id * pol::TABLES_PER_SET + pol::T_V4,
            unconstrained: Bitmap(rs.unconstrained),
            inline_lengths: vec![rs.inline_v4],
            sets: Vec::new(),
        };
        let mut v6 = RsView {
            table: rs_id * pol::TABLES_PER_SET + pol::T_V6,
            unconstrained: Bitmap(rs.unconstrained),
            inline_lengths: rs.inline_v6.to_vec(),
            sets: Vec::new(),
        };
        for k in 0..(rs.nsets as usize).min(pol::RS_MAX_SETS as usize) {
            let s = rs.sets[k];
            let record = if s == set_id {
                set
            } else {
                planner
                    .store
                    .set(s)?
                    .ok_or_else(|| fail(SetError::Index(format!("set {s} has no record"))))?
            };
            let mut p = [0u64; 4];
            p.copy_from_slice(&rs.pos[4 * k..4 * k + 4]);
            let mut n = [0u64; 4];
            n.copy_from_slice(&rs.neg[4 * k..4 * k + 4]);
            v4.sets
                .push((s, vec![record.lengths_v4], Bitmap(p), Bitmap(n)));
            v6.sets
                .push((s, record.lengths_v6.to_vec(), Bitmap(p), Bitmap(n)));
        }
        views.push((v4, v6));
    }
    let mut out = SetPlan::default();
    // Membership first (checked before anything is planned), then the tables per network.
    let mut changes: Vec<(u8, Prefix)> = Vec::new();
    for cidr in cidrs {
        let (bits, p) = cidr_prefix(cidr);
        let key = prefix_key(set_id, bits, p);
        let member = planner.is_member(&key)?;
        match (op, member) {
            (SetOp::Add, true) => {
                out.unchanged += 1;
                continue;
            }
            (SetOp::Del, false) => {
                return Err(fail(SetError::NotMember {
                    set: name.to_owned(),
                    cidr: cidr.to_string(),
                }))
            }
            _ => {}
        }
        planner.members.insert(key, op == SetOp::Add);
        match op {
            SetOp::Add => {
                out.add.push(key);
                set.digest = set.digest.wrapping_add(member_hash(&key));
                set.members = set.members.wrapping_add(1);
                if bits == 32 {
                    set.lengths_v4 |= 1 << p.len;
                } else {
                    set_len(&mut set.lengths_v6, p.len);
                }
            }
            SetOp::Del => {
                out.del.push(key);
                set.digest = set.digest.wrapping_sub(member_hash(&key));
                set.members = set.members.wrapping_sub(1);
            }
        }
        planner.lengths.insert(set_id, set);
        changes.push((bits, p));
    }
    // The views see the set's new lengths.
    for (v4, v6) in &mut views {
        for (s, lengths, _, _) in &mut v4.sets {
            if *s == set_id {
                *lengths = vec![set.lengths_v4];
            }
        }
        for (s, lengths, _, _) in &mut v6.sets {
            if *s == set_id {
                *lengths = set.lengths_v6.to_vec();
            }
        }
    }
    for (bits, p) in &changes {
        for (v4, v6) in &views {
            let view = if *bits == 32 { v4 } else { v6 };
            planner.table(view, *bits, *p)?;
            out.tables += 1;
        }
    }
    if planner.meta.next_chunk > planner.chunk_end {
        return Err(fail(SetError::Capacity {
            what: "chunks",
            needed: planner.meta.next_chunk - meta.next_chunk,
            free: planner.chunk_end.saturating_sub(meta.next_chunk),
        }));
    }
    if planner.meta.next_bitmap > planner.bitmap_end {
        return Err(fail(SetError::Capacity {
            what: "bitmaps",
            needed: planner.meta.next_bitmap - meta.next_bitmap,
            free: planner.bitmap_end.saturating_sub(meta.next_bitmap),
        }));
    }
    out.bitmap_ids = planner.new_bitmaps.iter().map(|(i, b)| (*b, *i)).collect();
    out.bitmaps = planner.new_bitmaps;
    for (c, slot) in planner.fresh {
        out.chunks.push((c, DirChunk { slot }));
    }
    let mut in_place: Vec<(u32, u32, [u32; 16])> = planner
        .in_place
        .into_iter()
        .map(|(c, (s, d))| (d, c, s))
        .collect();
    in_place.sort_by_key(|(d, c, _)| (std::cmp::Reverse(*d), *c));
    out.chunks.extend(
        in_place
            .into_iter()
            .map(|(_, c, slot)| (c, DirChunk { slot })),
    );
    out.root = planner.root.into_iter().collect();
    out.set = planner.lengths.remove(&set_id).map(|s| (set_id, s));
    out.meta = planner.meta;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::config::parse;
    use crate::policy::compile;
    use crate::policy::kernel::plan_bank;

    /// The bank in force and the set index, in memory (what the pinned maps would hold).
    #[derive(Clone, Default)]
    struct Mem {
        root: HashMap<u32, u32>,
        chunks: HashMap<u32, [u32; 16]>,
        bitmaps: HashMap<u32, [u64; 4]>,
        bm_ids: HashMap<PolBitmap, u32>,
        /// Grouped as `pol_set_members` holds them.
        members: HashMap<PolPrefixKey, u32>,
        inline: HashMap<PolPrefixKey, PolMark>,
        sets: HashMap<u32, PolSet>,
        rs: HashMap<u32, PolSetRs>,
        meta: PolSetMeta,
        /// Store reads (to check that a change reads little).
        reads: usize,
    }

    impl Store for Mem {
        fn root(&mut self, index: u32) -> Result<u32, Error> {
            self.reads += 1;
            Ok(self.root.get(&index).copied().unwrap_or(0))
        }
        fn chunk(&mut self, chunk: u32) -> Result<[u32; 16], Error> {
            self.reads += 1;
            Ok(self.chunks.get(&chunk).copied().unwrap_or([0; 16]))
        }
        fn member(&mut self, key: &PolPrefixKey) -> Result<bool, Error> {
            self.reads += 1;
            let (group, bit) = member_group(key);
            Ok(self.members.get(&group).is_some_and(|v| v & bit != 0))
        }
        fn inline(&mut self, key: &PolPrefixKey) -> Result<Option<PolMark>, Error> {
            self.reads += 1;
            Ok(self.inline.get(key).copied())
        }
        fn bitmap_id(&mut self, bitmap: &PolBitmap) -> Result<Option<u32>, Error> {
            self.reads += 1;
            Ok(self.bm_ids.get(bitmap).copied())
        }
        fn set(&mut self, id: u32) -> Result<Option<PolSet>, Error> {
            Ok(self.sets.get(&id).copied())
        }
        fn rule_set(&mut self, id: u32) -> Result<Option<PolSetRs>, Error> {
            Ok(self.rs.get(&id).copied())
        }
    }

    /// One write of a plan, in order.
    #[derive(Debug, Clone, Copy)]
    enum Write {
        Bitmap(u32, PolBitmap),
        Chunk(u32, [u32; 16]),
        Root(u32, u32),
    }

    fn writes(p: &SetPlan) -> Vec<Write> {
        let mut w: Vec<Write> = p
            .bitmaps
            .iter()
            .map(|(i, b)| Write::Bitmap(*i, *b))
            .collect();
        w.extend(p.chunks.iter().map(|(c, d)| Write::Chunk(*c, d.slot)));
        w.extend(p.root.iter().map(|(i, v)| Write::Root(*i, *v)));
        w
    }

    impl Mem {
        fn of(plan: &BankPlan, index: &Index) -> Mem {
            Mem {
                root: plan.root.iter().copied().collect(),
                chunks: plan.chunks.iter().map(|(c, d)| (*c, d.slot)).collect(),
                bitmaps: plan.bitmaps.iter().map(|(i, b)| (*i, b.w)).collect(),
                bm_ids: index.bitmap_ids.iter().copied().collect(),
                members: {
                    let mut m = HashMap::new();
                    for k in &index.members {
                        let (g, bit) = member_group(k);
                        *m.entry(g).or_insert(0) |= bit;
                    }
                    m
                },
                inline: index.inline.iter().copied().collect(),
                sets: index.sets.iter().copied().collect(),
                rs: index.rule_sets.iter().copied().collect(),
                meta: index.meta,
                reads: 0,
            }
        }

        fn write(&mut self, w: Write) {
            match w {
                Write::Bitmap(i, b) => {
                    self.bitmaps.insert(i, b.w);
                }
                Write::Chunk(c, s) => {
                    self.chunks.insert(c, s);
                }
                Write::Root(i, v) => {
                    self.root.insert(i, v);
                }
            }
        }

        fn apply(&mut self, p: &SetPlan) {
            for w in writes(p) {
                self.write(w);
            }
            for (b, i) in &p.bitmap_ids {
                self.bm_ids.insert(*b, *i);
            }
            for k in &p.add {
                let (g, bit) = member_group(k);
                *self.members.entry(g).or_insert(0) |= bit;
            }
            for k in &p.del {
                let (g, bit) = member_group(k);
                let v = self.members.entry(g).or_insert(0);
                *v &= !bit;
                if *v == 0 {
                    self.members.remove(&g);
                }
            }
            if let Some((i, s)) = p.set {
                self.sets.insert(i, s);
            }
            self.meta = p.meta;
        }

        /// The kernel's walk: the bitmap `key` (left-aligned) ends on in `table`, `None` for a
        /// broken walk (a chunk or bitmap never written, a node where a leaf must be).
        fn walk(&self, table: u32, bits: u8, key: u128) -> Option<[u64; 4]> {
            let mut slot = *self
                .root
                .get(&(table * pol::ROOT_SLOTS + (key >> 120) as u32))?;
            let mut pos = pol::ROOT_BITS;
            while slot & pol::NODE != 0 {
                if pos >= u32::from(bits) {
                    return None;
                }
                let c = self.chunks.get(&(slot & !pol::NODE))?;
                slot = c[((key >> (124 - pos)) & 0xf) as usize];
                pos += pol::CHUNK_BITS;
            }
            if slot == 0 {
                return None;
            }
            self.bitmaps.get(&(slot - 1)).copied()
        }
    }

    const SIZES: BankSizes = BankSizes {
        rule_sets: 16,
        chunks: 8192,
        bitmaps: 1024,
    };

    fn cfg(text: &str) -> Config {
        parse("<test>", text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The bank and index a full apply of `c` writes to `bank`.
    fn full(c: &Config, bank: u32) -> (BankPlan, Index) {
        let compiled = compile(c).unwrap();
        let plan = plan_bank(c, &compiled, bank, SIZES, &|_| Some(1), &|_| 0).unwrap();
        let index = index(c, &compiled, &plan, SIZES);
        (plan, index)
    }

    /// Sets, rules naming them plainly, negated, next to inline networks and other sets; two
    /// policies so several rule sets (both directions) reference the same sets.
    const TEXT: &str = "\
interface w1 role=workload labels=app:web
interface w2 role=workload labels=app:db
interface w3 role=workload labels=app:web,tier:x
ipset a 10.1.0.0/16 10.1.2.0/24 2001:db8:1::/48
ipset b 10.1.2.128/25 192.168.0.0/16 2001:db8:1:2::/64
ipset c 172.16.0.0/12
policy web selector=\"app == 'web'\"
rule web ingress allow proto=tcp dport=80 remote=set:a
rule web ingress deny remote=set:b,!10.1.2.3
rule web ingress allow proto=udp remote=!set:a
rule web ingress allow remote=10.1.0.0/20,set:b,2001:db8::/32
rule web egress allow remote=set:a
policy x selector=\"has(tier)\"
rule x ingress log remote=!set:b,!10.0.0.0/8
policy db selector=\"app == 'db'\"
rule db ingress allow remote=set:a,set:b
rule db ingress deny remote=!set:b
rule db egress allow remote=set:c,set:a
";

    use crate::policy::tests::Rng;

    /// A random network clustered where the config's networks are, so they nest and share
    /// chunks with them.
    fn random_cidr(rng: &mut Rng) -> Cidr {
        if rng.below(4) == 0 {
            let bases: [u128; 2] = [0x2001_0db8_0001_0000 << 64, 0x2001_0db8_0001_0002 << 64];
            let base = bases[rng.below(2)];
            let len = [0u8, 16, 32, 47, 48, 49, 56, 64, 65, 96, 127, 128][rng.below(12)];
            let a = base | u128::from(rng.next()) & ((1u128 << 64) - 1);
            let p = Prefix::new(128, a, len);
            return Cidr {
                addr: std::net::IpAddr::V6(p.key.into()),
                prefix_len: len,
            };
        }
        let bases = [
            0x0a01_0000u32,
            0x0a01_0200,
            0xc0a8_0000,
            0xac10_0000,
            0x0a00_0000,
        ];
        let base = bases[rng.below(5)];
        let a = base | (rng.next() as u32 & 0x0000_0fff);
        let len = [
            0u8, 1, 7, 8, 9, 12, 15, 16, 17, 20, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
        ][rng.below(20)];
        let p = Prefix::new(32, u128::from(a), len);
        Cidr {
            addr: std::net::IpAddr::V4((p.key as u32).into()),
            prefix_len: len,
        }
    }

    /// Keys at the boundaries of every network (first, last, and just outside), left-aligned.
    fn probes(nets: &[Cidr]) -> Vec<(u8, u128)> {
        let mut out = vec![(32, 0), (32, u128::MAX << 96), (128, 0), (128, u128::MAX)];
        for n in nets {
            let (bits, p) = cidr_prefix(n);
            let size = if p.len == 0 {
                u128::MAX >> (128 - u32::from(bits))
            } else {
                (1u128 << (u32::from(bits) - u32::from(p.len))) - 1
            };
            let top = if bits == 128 {
                u128::MAX
            } else {
                (1u128 << bits) - 1
            };
            for k in [
                p.key,
                p.key | size,
                p.key.wrapping_sub(1) & top,
                (p.key | size).wrapping_add(1) & top,
                p.key | (size / 2),
            ] {
                out.push((bits, k << (128 - u32::from(bits))));
            }
        }
        out
    }

    /// Every config network (sets and inline) and `extra`.
    fn all_nets(c: &Config, extra: &[Cidr]) -> Vec<Cidr> {
        let mut v: Vec<Cidr> = c
            .ipsets
            .iter()
            .flat_map(|s| s.entries.iter().map(|(c, _)| *c))
            .collect();
        for r in &c.rules {
            for item in &r.remote {
                if let RemoteTarget::Net(n) = item.target {
                    v.push(n);
                }
            }
        }
        v.extend_from_slice(extra);
        v
    }

    /// Every remote-address walk of `mem` gives what a full apply of `c` gives.
    fn assert_same(mem: &Mem, c: &Config, bank: u32, keys: &[(u8, u128)], what: &str) {
        let (plan, index) = full(c, bank);
        let want = Mem::of(&plan, &index);
        // The set records' digests follow the members.
        for (id, s) in &index.sets {
            let got = mem.sets[id];
            assert_eq!(
                (got.digest, got.members),
                (s.digest, s.members),
                "{what}: set {id}"
            );
        }
        assert_eq!(mem.members, want.members, "{what}");
        for (id, _) in &plan.rule_sets {
            for (bits, key) in keys {
                let t = id * pol::TABLES_PER_SET + if *bits == 32 { pol::T_V4 } else { pol::T_V6 };
                assert_eq!(
                    mem.walk(t, *bits, *key),
                    want.walk(t, *bits, *key),
                    "{what}: rule set {id}, /{bits} key {key:#x}"
                );
            }
        }
    }

    fn change(c: &mut Config, set: &str, op: SetOp, cidr: Cidr) {
        let s = c.ipsets.iter_mut().find(|s| s.name == set).unwrap();
        match op {
            SetOp::Add => {
                if !s.entries.iter().any(|(x, _)| *x == cidr) {
                    let origin = crate::config::Origin {
                        source: "<weir set>".into(),
                        line: 1,
                        column: 1,
                    };
                    s.entries.push((cidr, origin));
                }
            }
            SetOp::Del => s.entries.retain(|(x, _)| *x != cidr),
        }
    }

    #[test]
    fn random_changes_walk_like_a_full_apply() {
        for (seed, bank) in [(1u64, 0u32), (7, 1), (99, 0), (1234, 1)] {
            let mut rng = Rng(seed);
            let mut c = cfg(TEXT);
            let (plan, index) = full(&c, bank);
            let mut mem = Mem::of(&plan, &index);
            let mut extra = Vec::new();
            for step in 0..60 {
                let set = ["a", "b", "c"][rng.below(3)];
                let members: Vec<Cidr> = c
                    .ipsets
                    .iter()
                    .find(|s| s.name == set)
                    .unwrap()
                    .entries
                    .iter()
                    .map(|(x, _)| *x)
                    .collect();
                let (op, cidrs) = if !members.is_empty() && rng.below(3) == 0 {
                    (SetOp::Del, vec![members[rng.below(members.len())]])
                } else {
                    let n = 1 + rng.below(3);
                    (SetOp::Add, (0..n).map(|_| random_cidr(&mut rng)).collect())
                };
                let before = mem.clone();
                let p = plan_of(&mut mem, set, op, &cidrs);
                mem.apply(&p);
                for x in &cidrs {
                    change(&mut c, set, op, *x);
                }
                extra.extend_from_slice(&cidrs);
                let keys = probes(&all_nets(&c, &extra));
                let what = format!("seed {seed} step {step}: {op:?} {set} {cidrs:?}");
                assert_same(&mem, &c, bank, &keys, &what);
                // Planning the same again changes nothing.
                if op == SetOp::Add {
                    let again = plan_of(&mut mem.clone(), set, op, &cidrs);
                    assert!(again.chunks.is_empty() && again.root.is_empty(), "{what}");
                    assert_eq!(again.unchanged, cidrs.len());
                }
                // Ids stay in the bank, and past the full apply's.
                assert!(p.chunks.iter().all(|(id, _)| *id / SIZES.chunks == bank));
                assert!(p.bitmaps.iter().all(|(id, _)| {
                    *id / SIZES.bitmaps == bank && *id >= before.meta.next_bitmap
                }));
            }
        }
    }

    fn plan_of(mem: &mut Mem, set: &str, op: SetOp, cidrs: &[Cidr]) -> SetPlan {
        let meta = mem.meta;
        plan(mem, meta, SIZES, set, op, cidrs).unwrap_or_else(|e| panic!("{e}"))
    }

    fn net(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn every_cut_of_the_writes_gives_the_old_or_the_new_answer() {
        let mut c = cfg(TEXT);
        let (plan0, index) = full(&c, 0);
        let mut mem = Mem::of(&plan0, &index);
        // Deep new paths (chunks created under leaves), a short prefix over an existing subtree,
        // and a removal, each checked at every cut.
        let steps: [(&str, SetOp, &[&str]); 5] = [
            (
                "a",
                SetOp::Add,
                &["10.1.2.3/32", "10.9.8.7/32", "2001:db8:1:2::5/128"],
            ),
            ("b", SetOp::Add, &["10.0.0.0/8"]),
            ("a", SetOp::Del, &["10.1.0.0/16"]),
            ("c", SetOp::Add, &["0.0.0.0/1", "10.1.2.0/23"]),
            ("b", SetOp::Del, &["10.0.0.0/8", "192.168.0.0/16"]),
        ];
        let mut extra = Vec::new();
        for (set, op, nets) in steps {
            let cidrs: Vec<Cidr> = nets.iter().map(|s| net(s)).collect();
            let old_cfg = c.clone();
            for x in &cidrs {
                change(&mut c, set, op, *x);
            }
            extra.extend_from_slice(&cidrs);
            let keys = probes(&all_nets(&c, &extra));
            let p = plan_of(&mut mem, set, op, &cidrs);
            let (old_plan, old_index) = full(&old_cfg, 0);
            let old = Mem::of(&old_plan, &old_index);
            let (new_plan, new_index) = full(&c, 0);
            let new = Mem::of(&new_plan, &new_index);
            let w = writes(&p);
            assert!(!w.is_empty());
            let mut partial = mem.clone();
            for cut in 0..=w.len() {
                if cut > 0 {
                    partial.write(w[cut - 1]);
                }
                for (id, _) in &old_plan.rule_sets {
                    for (bits, key) in &keys {
                        let t = id * pol::TABLES_PER_SET
                            + if *bits == 32 { pol::T_V4 } else { pol::T_V6 };
                        let got = partial.walk(t, *bits, *key);
                        assert!(
                            got.is_some(),
                            "{set} {op:?} cut {cut}: broken walk {key:#x}"
                        );
                        assert!(
                            got == old.walk(t, *bits, *key) || got == new.walk(t, *bits, *key),
                            "{set} {op:?} {nets:?} cut {cut}/{}: key {key:#x} saw {got:?}",
                            w.len()
                        );
                    }
                }
            }
            mem.apply(&p);
            assert_same(&mem, &c, 0, &keys, &format!("{set} {op:?} {nets:?}"));
        }
    }

    #[test]
    fn a_change_reads_and_writes_little() {
        // 4096 members: adding one /32 reads a few dozen entries and writes a handful.
        let mut text = String::from(
            "interface w1 labels=app:web\npolicy p selector=all()\n\
             rule p ingress allow proto=tcp dport=80 remote=set:big\nipset big",
        );
        for i in 0..4096u32 {
            text += &format!(" {}/30", std::net::Ipv4Addr::from(0x0a00_0000 + i * 4));
        }
        text.push('\n');
        let mut c = cfg(&text);
        let (plan, index) = full(&c, 1);
        let mut mem = Mem::of(&plan, &index);
        let x = net("10.0.64.0/30");
        let p = plan_of(&mut mem, "big", SetOp::Add, &[x]);
        assert!(mem.reads < 64, "{} reads", mem.reads);
        assert!(p.chunks.len() + p.root.len() <= 8, "{p:?}");
        mem.apply(&p);
        change(&mut c, "big", SetOp::Add, x);
        assert_same(&mem, &c, 1, &probes(&[x, net("10.0.63.252/30")]), "add");
        let p = plan_of(&mut mem, "big", SetOp::Del, &[x]);
        mem.apply(&p);
        change(&mut c, "big", SetOp::Del, x);
        assert_same(&mem, &c, 1, &probes(&[x]), "del");
    }

    #[test]
    fn errors_name_the_problem_and_plan_nothing() {
        let c = cfg(TEXT);
        let (plan0, index) = full(&c, 0);
        let mut mem = Mem::of(&plan0, &index);
        let meta = mem.meta;
        let e = plan(
            &mut mem,
            meta,
            SIZES,
            "nope",
            SetOp::Add,
            &[net("10.0.0.1")],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("set 'nope' is not in the policy in force; sets: a, b, c"),
            "{e}"
        );
        let e = plan(
            &mut mem,
            meta,
            SIZES,
            "a",
            SetOp::Del,
            &[net("10.9.0.0/16")],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("10.9.0.0/16 is not a member of set 'a'"),
            "{e}"
        );
        // No room: the bank's chunks are all in use.
        let full_meta = PolSetMeta {
            next_chunk: SIZES.chunks - 1,
            ..meta
        };
        let e = plan(
            &mut mem,
            full_meta,
            SIZES,
            "a",
            SetOp::Add,
            &[net("10.7.7.7")],
        )
        .unwrap_err();
        assert!(e.to_string().contains("classifier capacity chunks="), "{e}");
        // No bitmap id left, and the change needs a bitmap no table has yet (rules 0 and 1).
        let c = cfg("interface w1 labels=app:web\nipset s1 10.0.0.0/8\nipset s2 11.0.0.0/8\n\
                     policy p selector=all()\nrule p ingress allow proto=tcp dport=80 remote=set:s1\n\
                     rule p ingress deny proto=udp dport=53 remote=set:s2\n\
                     rule p ingress allow proto=icmp remote=12.0.0.0/8\n");
        let (plan0, index) = full(&c, 1);
        let mut mem = Mem::of(&plan0, &index);
        let meta = PolSetMeta {
            next_bitmap: 2 * SIZES.bitmaps,
            ..mem.meta
        };
        let e = plan(
            &mut mem,
            meta,
            SIZES,
            "s2",
            SetOp::Add,
            &[net("10.0.0.0/8")],
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("classifier capacity bitmaps="),
            "{e}"
        );
        assert_eq!(
            plan_of(&mut mem, "s2", SetOp::Add, &[net("10.0.0.0/8")])
                .bitmaps
                .len(),
            1
        );
    }

    #[test]
    fn sets_referenced_too_widely_are_refused() {
        let mut text = String::from("interface w1 labels=app:web\npolicy p selector=all()\n");
        for i in 0..9 {
            text += &format!("ipset s{i} 10.{i}.0.0/16\n");
        }
        let list: Vec<String> = (0..9).map(|i| format!("set:s{i}")).collect();
        text += &format!("rule p ingress allow remote={}\n", list.join(","));
        let c = cfg(&text);
        let (plan0, index) = full(&c, 0);
        let mut mem = Mem::of(&plan0, &index);
        let meta = mem.meta;
        let e = plan(&mut mem, meta, SIZES, "s3", SetOp::Add, &[net("10.0.0.1")]).unwrap_err();
        assert!(e.to_string().contains("cannot change it in place"), "{e}");
    }

    #[test]
    fn member_groups_cover_32_networks_each() {
        let key = |s: &str| {
            let (bits, p) = cidr_prefix(&net(s));
            prefix_key(3, bits, p)
        };
        let (g, bit) = member_group(&key("10.0.0.4/30"));
        assert_eq!((g, bit), (key("10.0.0.0/30"), 2));
        assert_eq!(member_group(&key("10.0.0.124/30")), (g, 1 << 31));
        assert_ne!(member_group(&key("10.0.0.128/30")).0, g);
        assert_eq!(member_group(&key("10.0.0.0/29")).0.len, 29);
        assert_eq!(
            member_group(&key("10.0.0.7/32")),
            (key("10.0.0.0/32"), 1 << 7)
        );
        assert_eq!(member_group(&key("0.0.0.0/0")), (key("0.0.0.0/0"), 1));
        assert_eq!(member_group(&key("128.0.0.0/1")), (key("0.0.0.0/1"), 2));
        assert_eq!(member_group(&key("192.0.0.0/2")), (key("0.0.0.0/2"), 8));
        assert_eq!(
            member_group(&key("2001:db8::1f/128")),
            (key("2001:db8::/128"), 1 << 31)
        );
        assert_eq!(member_group(&key("2001:db8:1::/48")).1, 1 << 1);
        // Every network of a length maps to exactly one (entry, bit) and back.
        let mut seen = HashSet::new();
        for i in 0..256u32 {
            let k = key(&format!("10.1.{i}.0/24"));
            assert!(seen.insert(member_group(&k)));
        }
    }

    #[test]
    fn unreferenced_sets_change_membership_only() {
        let c = cfg("interface w1 labels=app:web\nipset lone 10.0.0.0/8\n");
        let (plan0, index) = full(&c, 0);
        let mut mem = Mem::of(&plan0, &index);
        let p = plan_of(&mut mem, "lone", SetOp::Add, &[net("192.0.2.0/24")]);
        assert!(p.chunks.is_empty() && p.root.is_empty() && p.add.len() == 1);
        mem.apply(&p);
        let p = plan_of(&mut mem, "lone", SetOp::Del, &[net("10.0.0.0/8")]);
        assert_eq!(p.del.len(), 1);
    }
}
