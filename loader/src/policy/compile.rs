//! The whole compile step: config → rule sets → one classifier per rule set.

use std::collections::HashSet;
use std::fmt;

use crate::config::{Config, Direction};

use super::bitmap::{Bitmap, MAX_RULES};
use super::classifier::Classifier;
use super::ruleset::{self, EndpointSets, RuleSet};
use super::verdict::{Decision, Packet, Verdict};
use super::{ROOT_BITS, STRIDE};

/// Why a config's policies cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileError {
    /// An endpoint has more rules in one direction than a bitmap holds.
    TooManyRules {
        /// The interface.
        endpoint: String,
        /// The direction.
        direction: Direction,
        /// How many rules apply.
        rules: usize,
        /// The policies they come from, in evaluation order.
        policies: Vec<String>,
    },
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::TooManyRules {
                endpoint,
                direction,
                rules,
                policies,
            } => write!(
                f,
                "endpoint '{endpoint}' has {rules} {direction} rules, more than the {MAX_RULES} \
                 one endpoint may have in one direction (from policies {})",
                policies.join(", ")
            ),
        }
    }
}

impl std::error::Error for CompileError {}

/// Everything the kernel side needs: the rule sets, their classifiers (same index) and each
/// endpoint's pair of rule set ids.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// Distinct rule sets.
    pub rule_sets: Vec<RuleSet>,
    /// `classifiers[i]` classifies for `rule_sets[i]`.
    pub classifiers: Vec<Classifier>,
    /// One per `Config::interfaces` entry, same order.
    pub endpoints: Vec<EndpointSets>,
}

/// Sizes of a compiled policy, for logs, status and capacity planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Distinct rule sets.
    pub rule_sets: usize,
    /// Rules over all rule sets.
    pub rules: usize,
    /// Stored remote IPv4 prefixes over all rule sets.
    pub v4_prefixes: usize,
    /// Stored remote IPv6 prefixes over all rule sets.
    pub v6_prefixes: usize,
    /// Stored source and destination port prefixes over all rule sets.
    pub port_prefixes: usize,
    /// Stored ICMP type/code prefixes over all rule sets.
    pub icmp_prefixes: usize,
    /// Distinct bitmaps over all tables (the size of a shared bitmap table).
    pub distinct_bitmaps: usize,
    /// 16-slot chunks the proposed kernel layout needs for the remote IPv4 tables (8-bit
    /// root per table, 4 bits per chunk level).
    pub v4_chunks: usize,
    /// The same for the remote IPv6 tables.
    pub v6_chunks: usize,
    /// The same for the port and ICMP tables.
    pub port_chunks: usize,
}

/// Compiles the policies of `config`.
///
/// # Errors
///
/// [`CompileError::TooManyRules`] when an endpoint has more than [`MAX_RULES`] rules in one
/// direction.
pub fn compile(config: &Config) -> Result<Compiled, CompileError> {
    let (rule_sets, endpoints) = ruleset::build(config)?;
    let classifiers: Vec<Classifier> = rule_sets
        .iter()
        .map(|set| Classifier::build(config, set))
        .collect();

    let compiled = Compiled {
        rule_sets,
        classifiers,
        endpoints,
    };
    // Counting chunks walks every prefix again: only when someone reads it.
    if !log::log_enabled!(log::Level::Debug) {
        return Ok(compiled);
    }
    let stats = compiled.stats();
    log::debug!(
        "policy: {} endpoint(s), {} rule set(s) with {} rule(s), {} IPv4 and {} IPv6 prefixes, \
         {} port and {} ICMP prefixes, {} distinct bitmaps",
        compiled.endpoints.len(),
        stats.rule_sets,
        stats.rules,
        stats.v4_prefixes,
        stats.v6_prefixes,
        stats.port_prefixes,
        stats.icmp_prefixes,
        stats.distinct_bitmaps
    );
    Ok(compiled)
}

impl Compiled {
    /// The rule set id of `endpoint` (index in `Config::interfaces`) in `direction`.
    #[must_use]
    pub fn rule_set(&self, endpoint: usize, direction: Direction) -> Option<usize> {
        let e = self.endpoints.get(endpoint)?;
        match direction {
            Direction::Ingress => e.ingress,
            Direction::Egress => e.egress,
        }
    }

    /// The verdict for `packet` at `endpoint` (index in `Config::interfaces`) in `direction`.
    #[must_use]
    pub fn verdict(&self, endpoint: usize, direction: Direction, packet: &Packet) -> Verdict {
        match self
            .rule_set(endpoint, direction)
            .and_then(|id| self.classifiers.get(id))
        {
            Some(classifier) => classifier.classify(packet),
            None => Verdict {
                decision: Decision::Unselected,
                logged: Bitmap::EMPTY,
                audit: None,
            },
        }
    }

    /// Sizes of the compiled tables.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let mut bitmaps: HashSet<Bitmap> = HashSet::new();
        let mut stats = Stats {
            rule_sets: self.rule_sets.len(),
            rules: self.rule_sets.iter().map(|s| s.rules.len()).sum(),
            ..Stats::default()
        };
        for c in &self.classifiers {
            stats.v4_prefixes += c.remote_v4.len();
            stats.v6_prefixes += c.remote_v6.len();
            stats.port_prefixes += c.sport.len() + c.dport.len();
            stats.icmp_prefixes += c.icmp.len();
            stats.v4_chunks += c.remote_v4.chunks(ROOT_BITS, STRIDE);
            stats.v6_chunks += c.remote_v6.chunks(ROOT_BITS, STRIDE);
            stats.port_chunks += c.sport.chunks(ROOT_BITS, STRIDE)
                + c.dport.chunks(ROOT_BITS, STRIDE)
                + c.icmp.chunks(ROOT_BITS, STRIDE);
            bitmaps.extend(c.bitmaps());
        }
        stats.distinct_bitmaps = bitmaps.len();
        stats
    }
}
