//! Network policy: the compiler from the config's endpoints, IP sets, policies and rules to
//! per-endpoint classifiers. Pure (no syscalls): the BPF side (TC programs, conntrack, maps)
//! consumes what this builds.
//!
//! # Semantics
//! - An endpoint is an `interface`, with its `labels=` (and `addrs=`). A policy *selects* an
//!   endpoint in a direction when its selector matches the endpoint's labels and the policy
//!   applies in that direction (`types=`; by default the directions its rules have, ingress
//!   when it has none).
//! - An endpoint no policy selects in a direction allows everything in that direction. Once
//!   selected, what no rule allows is denied (default deny).
//! - Policies apply in ascending `order`, ties broken by name; within a policy, rules apply in
//!   file order and the first that matches decides: `allow` and `deny` stop, `log` records
//!   and goes on, `pass` skips the rest of its policy and goes on with the next policy. A
//!   policy whose rules all miss hands the packet to the next policy.
//! - **Audit** policies never change a packet's fate: the verdict is computed as if they did
//!   not exist (an endpoint selected only by audit policies allows everything). Where audit
//!   policies select an endpoint, the verdict is computed a second time as if they enforced;
//!   when that one denies a packet the first allows, the packet is reported against the
//!   deciding rule (or the default deny). `log` rules of audit policies record in that second
//!   evaluation.
//! - For host endpoints, the `failsafe in` ports are checked before any policy.
//!
//! # The classifier
//! [`ruleset`] turns the config into, for each (endpoint, direction), the ordered rule list
//! ([`RuleSet`]); identical lists are one rule set. [`Classifier`] builds per rule set one table
//! per packet dimension (protocol, remote IPv4 and IPv6 address, source and destination port,
//! ICMP type/code), each a partition of its key space into prefixes carrying the bitmap of the
//! rules that match there ([`prefix`]). A packet's matching rules are the AND of one lookup per
//! dimension; its verdict follows from the lowest set bits ([`verdict`]): per step a
//! find-first-set over [`WORDS`] words, one step per `pass` taken plus one.
//!
//! Limits: [`MAX_RULES`] (256) rules per endpoint and direction (the bitmap width); sets and
//! endpoints are limited only by memory. The `scale` test compiles 1,000 endpoints × 256 rules
//! with 10,000 CIDRs in sets (11 rule sets) in about 0.1 s in a release build, and 1,000
//! endpoints with a rule set of their own each (256,000 rules, a million prefixes) in about 1 s.
//!
//! # Kernel layout (`kernel.rs` plans it, `policy_maps.rs` writes it, `weir_policy.h` reads it)
//! Every lookup below is an array read (the verifier inlines them), and none scans rules or
//! CIDRs, so the cost of classifying a new flow is flat in the number of rules and CIDRs. The
//! kernel's LPM trie is avoided on purpose: the prefilter measured its lookup growing ~20 ns per
//! ×10 entries, which is why `prefilter/table.rs` built a multibit array table; the same idea
//! serves every dimension here.
//!
//! | map | type | key | value |
//! |---|---|---|---|
//! | `pol_active` | ARRAY | 0 | the bank in force (0 or 1) |
//! | `pol_endpoints` | HASH | `{bank u32, ifindex u32, hook u32}` | `{ruleset u32, direction u32, flags u32}` (absent: no policy, allow) |
//! | `pol_rulesets` | ARRAY | ruleset id | `{flags u32 (ENFORCED, AUDITED), nrules u32, no_ports_bm u32, no_icmp_bm u32, log_bm u32, audit_bm u32, table u32}` |
//! | `pol_root` | ARRAY | `table * 256 + first byte of the key` | slot `u32` |
//! | `pol_nodes` | ARRAY | chunk number | 16 slots `u32` (64 bytes): the next 4 key bits |
//! | `pol_bitmaps` | ARRAY | bitmap id | `u64[4]`: 256 rule bits |
//! | `pol_rules` | ARRAY | `ruleset * 256 + bit` | `{rule_id u32, policy_id u16, action u8, audit u8, policy_last u16, pad u16}` |
//! | `pol_rule_ctrs` | PERCPU_ARRAY | rule id | `{packets u64, bytes u64}` |
//! | `pol_ct` | LRU_HASH | the flow as the endpoint sees it | state, timestamps, the allowing rule |
//!
//! Every array holds two banks (ids in the second half for bank 1).
//!
//! A rule set owns six consecutive tables (`table`, `table + 1`, …): protocol (8-bit keys:
//! root only), remote IPv4 (32 bits), remote IPv6 (128 bits), source port, destination port
//! (16 bits), ICMP `type << 8 | code` (16 bits). A slot is `EMPTY`, `NODE | chunk` or a leaf
//! `bitmap id + 1`, as in the prefilter's `deny_dir`; prefixes are pushed to the leaves, so
//! the leaf a walk ends on names the full bitmap of the dimension ([`PrefixTable`]'s entries).
//! A walk is at most 1 + (bits − 8) / 4 reads: 7 for IPv4, 3 for ports and ICMP, 31 for IPv6
//! (15 for prefixes up to /64), and stops at the first leaf. Bitmaps are interned in one table
//! shared by all rule sets (`Stats::distinct_bitmaps` is its size, usually small).
//!
//! Per new flow: `pol_endpoints` (1 hash lookup) → `pol_rulesets` → one walk per dimension that
//! applies (a packet without ports takes `no_ports_bm` instead of the port walks, a packet that
//! is not ICMP `no_icmp_bm`) → at most five bitmap reads and a 4-word AND → the find-first-set
//! steps above,
//! reading `pol_rules[bit]` for the action and `policy_last` (a `pass` clears every bit up to
//! it). With audit policies present the steps run a second time over the unmasked bitmap.
//! Established and related packets skip all of it (conntrack).
//!
//! **Atomic apply.** `weir load` / `weir apply` write the whole new policy into the bank no
//! packet reads (its tables, then its `pol_endpoints` entries), then flip `pol_active`: every
//! packet reads either the old or the new policy, never a mix, and a SIGKILL leaves one of the
//! two whole. The old bank's entries stay until the next apply writes that bank (a packet that
//! read the old bank number just before the flip still finds its policy). An identical config
//! writes nothing; any change rewrites the inactive bank (O(N): B4 in BENCHMARKS.md).
//!
//! **In-place set changes.** `weir set add|del` changes a set's members in the bank in force,
//! in time proportional to the change, from a set index the full apply persists beside the
//! tables (maps `pol_set_*`, `pol_bm_ids`; [`incremental`] has the planner and its write
//! order). The next full apply puts the config's members back.
//!
//! [`ROOT_BITS`] and [`STRIDE`] are the layout's parameters; [`Stats`] counts the chunks a
//! config needs under them.

pub mod bitmap;
pub mod classifier;
pub mod compile;
pub mod incremental;
pub mod kernel;
pub mod prefix;
pub mod ruleset;
#[cfg(test)]
pub(crate) mod tests;
pub mod verdict;

pub use bitmap::{Bitmap, MAX_RULES, WORDS};
pub use classifier::Classifier;
pub use compile::{compile, CompileError, Compiled, Stats};
pub use prefix::{Prefix, PrefixEntry, PrefixTable};
pub use ruleset::{EndpointSets, RuleSet, SetRule};
pub use verdict::{Decision, Evaluation, Packet, Verdict};

/// Key bits a table's root slot indexes in the proposed kernel layout (256 slots per table).
pub const ROOT_BITS: u8 = 8;
/// Key bits each chunk level indexes (16 slots, 64 bytes per chunk).
pub const STRIDE: u8 = 4;
