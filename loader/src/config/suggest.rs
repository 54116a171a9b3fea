//! "Did you mean …?" by edit distance.

/// Longest input we compare; a megabyte-long "keyword" is not a typo.
const MAX_LEN: usize = 64;

/// The candidate closest to `word` (case-insensitive optimal-string-alignment distance, so a
/// swap of two neighbours costs 1), if it is close enough to be a plausible typo. Ties go to
/// the earlier candidate.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if word.chars().nth(MAX_LEN).is_some() {
        return None;
    }
    let word: Vec<char> = word.to_lowercase().chars().collect();
    let mut best: Option<(usize, &'a str)> = None;
    for &candidate in candidates {
        let cand: Vec<char> = candidate.chars().collect();
        let distance = osa_distance(&word, &cand);
        let limit = (cand.len() / 3).max(1);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// " (did you mean 'x'?)" or "".
pub(crate) fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    closest(word, candidates)
        .map(|c| format!(" (did you mean '{c}'?)"))
        .unwrap_or_default()
}

/// Levenshtein distance plus transposition of adjacent chars (optimal string alignment).
fn osa_distance(a: &[char], b: &[char]) -> usize {
    // Three rolling rows; `get` keeps every access checked.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        if let Some(first) = cur.first_mut() {
            *first = i + 1;
        }
        for (j, &cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let deletion = prev.get(j + 1).map_or(usize::MAX, |d| d + 1);
            let insertion = cur.get(j).map_or(usize::MAX, |d| d + 1);
            let substitution = prev.get(j).map_or(usize::MAX, |d| d + cost);
            let mut d = deletion.min(insertion).min(substitution);
            if i > 0 && j > 0 && a.get(i - 1) == Some(&cb) && b.get(j - 1) == Some(&ca) {
                d = d.min(before.get(j - 1).map_or(usize::MAX, |d| d + 1));
            }
            if let Some(slot) = cur.get_mut(j + 1) {
                *slot = d;
            }
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(a: &str, b: &str) -> usize {
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        osa_distance(&a, &b)
    }

    #[test]
    fn distances() {
        assert_eq!(dist("", ""), 0);
        assert_eq!(dist("abc", ""), 3);
        assert_eq!(dist("", "abc"), 3);
        assert_eq!(dist("xpd", "xdp"), 1);
        assert_eq!(dist("kitten", "sitting"), 3);
        assert_eq!(dist("interfce", "interface"), 1);
    }

    #[test]
    fn suggestions() {
        let kws = ["interface", "cgroup", "pin-dir"];
        assert_eq!(closest("interfce", &kws), Some("interface"));
        assert_eq!(closest("Interface", &kws), Some("interface"));
        assert_eq!(closest("pindir", &kws), Some("pin-dir"));
        assert_eq!(closest("cgroups", &kws), Some("cgroup"));
        assert_eq!(closest("route", &kws), None);
        assert_eq!(closest(&"x".repeat(10_000), &kws), None);
        assert_eq!(
            closest("xpd", &["role", "xdp", "tc", "attach"]),
            Some("xdp")
        );
        assert_eq!(
            did_you_mean("nativ", &["off", "native", "generic"]),
            " (did you mean 'native'?)"
        );
    }
}
