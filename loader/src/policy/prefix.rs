//! One classifier dimension over a fixed-width key (a remote IPv4 or IPv6 address, a port, an
//! ICMP type and code): a set of prefixes, each carrying the bitmap of the rules that match
//! every key whose **longest** matching stored prefix it is.
//!
//! Rules constrain a dimension with prefixes: a rule matches a key when the rule is
//! unconstrained or one of its positive prefixes contains the key, and none of its negative
//! prefixes does. Every prefix any rule names is stored (and `/0`, so a lookup always finds one);
//! for two stored prefixes `q` and `s`, either one contains the other or they are disjoint, so
//! over the keys whose longest match is `s`, membership in every rule prefix is fixed: `s`'s
//! bitmap is computed once from the prefixes that contain `s` (covering prefixes folded in).
//! A longest-prefix lookup therefore gives the complete answer of the dimension, whatever the
//! number of rules or prefixes.

use super::bitmap::Bitmap;

/// A prefix of a `bits`-wide key: the key's value (host order, right-aligned in a `u128`, bits
/// beyond `len` cleared) and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    /// The prefix's first key.
    pub key: u128,
    /// Significant leading bits, `0..=bits`.
    pub len: u8,
}

/// The mask of the first `len` of `bits` bits.
pub(crate) fn mask(bits: u8, len: u8) -> u128 {
    if len == 0 {
        return 0;
    }
    let all = if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    let host = (1u128 << (bits - len.min(bits))) - 1;
    all & !host
}

impl Prefix {
    /// The prefix of length `len` containing `key` (host bits cleared).
    #[must_use]
    pub fn new(bits: u8, key: u128, len: u8) -> Prefix {
        let len = len.min(bits);
        Prefix {
            key: key & mask(bits, len),
            len,
        }
    }

    /// Whether `key` starts with this prefix.
    #[must_use]
    pub fn contains(&self, bits: u8, key: u128) -> bool {
        key & mask(bits, self.len) == self.key
    }

    /// Whether `other` lies inside this prefix.
    fn covers(&self, bits: u8, other: &Prefix) -> bool {
        self.len <= other.len && self.contains(bits, other.key)
    }
}

/// The prefixes covering `lo..=hi` exactly (at most `2 * bits` of them, disjoint, in
/// ascending order), e.g. ports 1000-1999. Empty when `lo > hi`.
#[must_use]
pub fn range_prefixes(bits: u8, lo: u128, hi: u128) -> Vec<Prefix> {
    // The last key of the block of 2^k keys starting at `at`.
    let block_last = |at: u128, k: u32| {
        if k >= 128 {
            u128::MAX
        } else {
            at.saturating_add((1u128 << k) - 1)
        }
    };
    let mut out = Vec::new();
    if lo > hi {
        return out;
    }
    let mut at = lo;
    loop {
        // The largest aligned block starting at `at` that stays inside the range.
        let mut k = at.trailing_zeros().min(u32::from(bits));
        while k > 0 && block_last(at, k) > hi {
            k -= 1;
        }
        out.push(Prefix::new(bits, at, bits - k as u8));
        let last = block_last(at, k);
        if last >= hi {
            return out;
        }
        at = last + 1;
    }
}

/// Collects what rules say about one dimension, then builds its [`PrefixTable`].
#[derive(Debug, Clone)]
pub struct PrefixBuilder {
    bits: u8,
    /// Rules that do not constrain this dimension (positively).
    unconstrained: Bitmap,
    /// (named prefix, rules listing it, rules listing it negated), merged at build time (a
    /// sort beats hashing here: one compile marks up to millions of prefixes).
    marks: Vec<(Prefix, Bitmap, Bitmap)>,
}

impl PrefixBuilder {
    /// A dimension over `bits`-bit keys (1..=128).
    #[must_use]
    pub fn new(bits: u8) -> PrefixBuilder {
        PrefixBuilder {
            bits,
            unconstrained: Bitmap::EMPTY,
            marks: Vec::new(),
        }
    }

    /// Rule `rule` matches any key, as far as positive prefixes go.
    pub fn unconstrained(&mut self, rule: usize) {
        self.unconstrained.set(rule);
    }

    /// Rule `rule` matches keys in `prefix`.
    pub fn positive(&mut self, prefix: Prefix, rule: usize) {
        self.mark(prefix, Bitmap::bit(rule), Bitmap::EMPTY);
    }

    /// Rules `positive` match keys in `prefix`; rules `negative` never do.
    pub fn mark(&mut self, prefix: Prefix, positive: Bitmap, negative: Bitmap) {
        let prefix = Prefix::new(self.bits, prefix.key, prefix.len);
        self.marks.push((prefix, positive, negative));
    }

    /// Rule `rule` never matches keys in `prefix`.
    pub fn negative(&mut self, prefix: Prefix, rule: usize) {
        self.mark(prefix, Bitmap::EMPTY, Bitmap::bit(rule));
    }

    /// The partition: every named prefix and `/0`, each with its full bitmap.
    #[must_use]
    pub fn build(mut self) -> PrefixTable {
        self.marks
            .push((Prefix { key: 0, len: 0 }, Bitmap::EMPTY, Bitmap::EMPTY));
        // A covering prefix sorts before everything it covers. A mark is 96 bytes: sorting
        // their indices moves 4 bytes per step instead (a third of a 100k-CIDR apply was
        // spent moving marks).
        let mut order: Vec<u32> = (0..self.marks.len() as u32).collect();
        order.sort_unstable_by_key(|&i| self.marks[i as usize].0);
        let mut named: Vec<(Prefix, (Bitmap, Bitmap))> = Vec::with_capacity(self.marks.len());
        for i in order {
            let (prefix, pos, neg) = self.marks[i as usize];
            match named.last_mut() {
                Some((last, (p, n))) if *last == prefix => {
                    *p = p.or(pos);
                    *n = n.or(neg);
                }
                _ => named.push((prefix, (pos, neg))),
            }
        }
        let bits = self.bits;
        let mut entries = Vec::with_capacity(named.len());
        // The chain of prefixes covering the current one, with the positive and negative
        // rules accumulated along it.
        let mut stack: Vec<(Prefix, Bitmap, Bitmap)> = Vec::new();
        for (prefix, (pos, neg)) in named {
            while stack
                .last()
                .is_some_and(|(p, _, _)| !p.covers(bits, &prefix))
            {
                stack.pop();
            }
            let (cum_pos, cum_neg) = stack
                .last()
                .map_or((pos, neg), |(_, p, n)| (p.or(pos), n.or(neg)));
            stack.push((prefix, cum_pos, cum_neg));
            entries.push(PrefixEntry {
                prefix,
                rules: self.unconstrained.or(cum_pos).and_not(cum_neg),
            });
        }
        PrefixTable::new(bits, entries, self.unconstrained)
    }
}

/// One stored prefix and its bitmap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixEntry {
    /// The prefix.
    pub prefix: Prefix,
    /// The rules matching keys whose longest stored match is `prefix`.
    pub rules: Bitmap,
}

/// A built dimension: stored prefixes sorted by (key, length), `/0` first.
#[derive(Debug, Clone)]
pub struct PrefixTable {
    /// Key width.
    pub bits: u8,
    /// The stored prefixes.
    pub entries: Vec<PrefixEntry>,
    /// The rules that put no (positive) condition on this dimension.
    pub unconstrained: Bitmap,
    /// Distinct stored lengths, longest first (for [`PrefixTable::lookup`]).
    lengths: Vec<u8>,
}

impl PrefixTable {
    fn new(bits: u8, entries: Vec<PrefixEntry>, unconstrained: Bitmap) -> PrefixTable {
        let mut lengths: Vec<u8> = entries.iter().map(|e| e.prefix.len).collect();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        lengths.dedup();
        PrefixTable {
            bits,
            entries,
            unconstrained,
            lengths,
        }
    }

    /// The bitmap of `key`'s longest matching stored prefix (there is always one: `/0`).
    /// Probes each stored length (a binary search each): the reference for the kernel's
    /// table walk, not its model.
    #[must_use]
    pub fn lookup(&self, key: u128) -> Bitmap {
        self.lengths
            .iter()
            .find_map(|&len| {
                let want = Prefix::new(self.bits, key, len);
                self.entries.binary_search_by(|e| e.prefix.cmp(&want)).ok()
            })
            .and_then(|i| self.entries.get(i))
            .map_or(Bitmap::EMPTY, |e| e.rules)
    }

    /// The chunks a multibit table of this dimension needs (the kernel layout in the module
    /// documentation of [`crate::policy`]): a root indexed by the first `root_bits` bits, then
    /// chunks of `stride` bits down to the deepest stored prefix of each subtree. Prefixes are
    /// pushed to the leaves, so a chunk exists exactly where some stored prefix ends below it.
    #[must_use]
    pub fn chunks(&self, root_bits: u8, stride: u8) -> usize {
        let mut nodes: std::collections::HashSet<Prefix> = std::collections::HashSet::new();
        for e in &self.entries {
            let mut above = root_bits;
            while above < e.prefix.len {
                nodes.insert(Prefix::new(self.bits, e.prefix.key, above));
                above = above.saturating_add(stride.max(1));
            }
        }
        nodes.len()
    }

    /// The number of stored prefixes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Never true: `/0` is always stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask(16, 0), 0);
        assert_eq!(mask(16, 8), 0xff00);
        assert_eq!(mask(16, 16), 0xffff);
        assert_eq!(mask(128, 128), u128::MAX);
        assert_eq!(mask(128, 1), 1 << 127);
        assert_eq!(mask(32, 24), 0xffff_ff00);
    }

    #[test]
    fn ranges_decompose_exactly() {
        let show =
            |v: Vec<Prefix>| -> Vec<(u128, u8)> { v.iter().map(|p| (p.key, p.len)).collect() };
        assert_eq!(show(range_prefixes(16, 0, 65535)), [(0, 0)]);
        assert_eq!(show(range_prefixes(16, 80, 80)), [(80, 16)]);
        assert_eq!(
            show(range_prefixes(16, 1000, 1999)),
            [
                (1000, 13),
                (1008, 12),
                (1024, 7),
                (1536, 8),
                (1792, 9),
                (1920, 10),
                (1984, 12)
            ]
        );
        assert!(range_prefixes(16, 5, 4).is_empty());
        // Exhaustive on a small width: every range is covered exactly, with disjoint prefixes.
        for lo in 0..64u128 {
            for hi in lo..64 {
                let ps = range_prefixes(6, lo, hi);
                assert!(ps.len() <= 12);
                for k in 0..64u128 {
                    let n = ps.iter().filter(|p| p.contains(6, k)).count();
                    assert_eq!(n, usize::from((lo..=hi).contains(&k)), "{lo}-{hi} {k}");
                }
            }
        }
        assert_eq!(range_prefixes(128, 0, u128::MAX).len(), 1);
    }

    #[test]
    fn longest_match_folds_covering_prefixes_and_negations() {
        // Rule 0: 10.0.0.0/8 but not 10.1.0.0/16; rule 1: anything; rule 2: 10.1.2.0/24.
        let p = |a: u32, len| Prefix::new(32, u128::from(a), len);
        let mut b = PrefixBuilder::new(32);
        b.positive(p(0x0a00_0000, 8), 0);
        b.negative(p(0x0a01_0000, 16), 0);
        b.unconstrained(1);
        b.positive(p(0x0a01_0200, 24), 2);
        let t = b.build();
        assert_eq!(t.len(), 4);
        let at = |a: u32| t.lookup(u128::from(a)).iter().collect::<Vec<_>>();
        assert_eq!(at(0x0a00_0001), [0, 1]);
        assert_eq!(at(0x0a01_0001), [1]);
        assert_eq!(at(0x0a01_0201), [1, 2]);
        assert_eq!(at(0x0b00_0000), [1]);
        // 10/8 and 10.1/16 end in the 8-bit root's subtree: 10.1/16 needs two 4-bit chunks
        // (bits 8-11, 12-15), 10.1.2/24 two more (16-19, 20-23).
        assert_eq!(t.chunks(8, 4), 4);
        assert_eq!(t.chunks(16, 4), 2);
    }
}
