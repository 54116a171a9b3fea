//! Rule bitmaps: bit `i` stands for the `i`-th rule of a rule set (in evaluation order), so the
//! lowest set bit of a packet's bitmap is the first rule that matches it.

use std::fmt;

/// 64-bit words in a bitmap.
pub const WORDS: usize = 4;
/// The most rules one endpoint may have in one direction: the bitmap width (4 × 64 = 256 bits,
/// 32 bytes; the BPF side ANDs and scans four words per dimension).
pub const MAX_RULES: usize = WORDS * 64;

/// A set of rule positions `0..MAX_RULES`. Bit `i` is bit `i % 64` of word `i / 64`, the
/// layout the kernel side reads.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Bitmap(pub [u64; WORDS]);

impl Bitmap {
    /// No rule.
    pub const EMPTY: Bitmap = Bitmap([0; WORDS]);

    /// Rules `0..n` (`n` is clamped to [`MAX_RULES`]).
    #[must_use]
    pub fn below(n: usize) -> Bitmap {
        let mut out = Bitmap::EMPTY;
        for (w, word) in out.0.iter_mut().enumerate() {
            let lo = w * 64;
            *word = match n.saturating_sub(lo) {
                0 => 0,
                k if k >= 64 => u64::MAX,
                k => (1u64 << k) - 1,
            };
        }
        out
    }

    /// Rule `i` alone.
    #[must_use]
    pub fn bit(i: usize) -> Bitmap {
        let mut out = Bitmap::EMPTY;
        out.set(i);
        out
    }

    /// Adds rule `i` (ignored beyond [`MAX_RULES`]).
    pub fn set(&mut self, i: usize) {
        if let Some(word) = self.0.get_mut(i / 64) {
            *word |= 1 << (i % 64);
        }
    }

    /// Whether rule `i` is in the set.
    #[must_use]
    pub fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    /// The lowest rule in the set.
    #[must_use]
    pub fn first(&self) -> Option<usize> {
        self.0
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| i * 64 + w.trailing_zeros() as usize)
    }

    /// `self ∩ other`.
    #[must_use]
    pub fn and(self, other: Bitmap) -> Bitmap {
        let mut out = self;
        for (a, b) in out.0.iter_mut().zip(other.0) {
            *a &= b;
        }
        out
    }

    /// `self ∪ other`.
    #[must_use]
    pub fn or(self, other: Bitmap) -> Bitmap {
        let mut out = self;
        for (a, b) in out.0.iter_mut().zip(other.0) {
            *a |= b;
        }
        out
    }

    /// `self \ other`.
    #[must_use]
    pub fn and_not(self, other: Bitmap) -> Bitmap {
        let mut out = self;
        for (a, b) in out.0.iter_mut().zip(other.0) {
            *a &= !b;
        }
        out
    }

    /// True when no rule is in the set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// The number of rules in the set.
    #[must_use]
    pub fn count(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The rules in the set, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..MAX_RULES).filter(|&i| self.get(i))
    }
}

impl fmt::Debug for Bitmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_words_and_first() {
        let mut b = Bitmap::EMPTY;
        assert_eq!(b.first(), None);
        for i in [255, 64, 3] {
            b.set(i);
        }
        b.set(MAX_RULES); // ignored
        assert_eq!(b.0, [1 << 3, 1, 0, 1 << 63]);
        assert_eq!(b.first(), Some(3));
        assert_eq!(b.iter().collect::<Vec<_>>(), [3, 64, 255]);
        assert_eq!(b.count(), 3);
        assert_eq!(b.and_not(Bitmap::below(4)).first(), Some(64));
        assert_eq!(b.and(Bitmap::bit(64)), Bitmap::bit(64));
        assert_eq!(Bitmap::bit(1).or(Bitmap::bit(2)), Bitmap([6, 0, 0, 0]));
    }

    #[test]
    fn below() {
        assert_eq!(Bitmap::below(0), Bitmap::EMPTY);
        assert_eq!(Bitmap::below(1).0, [1, 0, 0, 0]);
        assert_eq!(Bitmap::below(64).0, [u64::MAX, 0, 0, 0]);
        assert_eq!(Bitmap::below(65).0, [u64::MAX, 1, 0, 0]);
        assert_eq!(Bitmap::below(1000).count(), MAX_RULES);
        for n in 0..=MAX_RULES {
            assert_eq!(Bitmap::below(n).count(), n);
        }
    }
}
