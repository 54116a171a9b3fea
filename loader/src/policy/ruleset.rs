//! From policies to rule sets: for each endpoint (interface) and direction, the ordered list of
//! rules that applies to it, and identical lists shared, so a thousand endpoints under the same
//! policies cost one rule set.

use std::collections::HashMap;

use crate::config::{Config, Direction, RuleAction};

use super::bitmap::MAX_RULES;
use super::CompileError;

/// One rule of a rule set, at its bit position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SetRule {
    /// Index of the rule in [`Config::rules`] (its id for counters and events).
    pub rule: usize,
    /// Index of its policy in [`Config::policies`].
    pub policy: usize,
    /// What it does.
    pub action: RuleAction,
    /// Whether its policy is in audit mode.
    pub audit: bool,
    /// Bit position of the last rule of the same policy in this rule set: a `pass` clears every
    /// bit up to it (the rules of a policy are contiguous).
    pub policy_last: u16,
}

/// The rules that apply to some endpoints in one direction, in evaluation order: policies by
/// (order, name), rules in file order within each. Rule `i` is bit `i` of the classifier's
/// bitmaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    /// The direction these rules look at.
    pub direction: Direction,
    /// The rules, in evaluation order (at most [`MAX_RULES`]).
    pub rules: Vec<SetRule>,
    /// At least one selecting policy enforces: what no rule allows is denied. False when only
    /// audit policies select the endpoints (then nothing is ever dropped).
    pub enforced: bool,
    /// At least one selecting policy is in audit mode.
    pub audited: bool,
    /// Indices in [`Config::interfaces`] of the endpoints using this rule set.
    pub endpoints: Vec<usize>,
}

/// An endpoint's rule sets (indices into the rule set list), `None` where no policy selects it
/// in that direction (everything is allowed there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSets {
    /// The interface name.
    pub name: String,
    /// Rule set for traffic into the endpoint.
    pub ingress: Option<usize>,
    /// Rule set for traffic out of the endpoint.
    pub egress: Option<usize>,
}

/// The rule sets of `config` and each endpoint's pair.
///
/// # Errors
///
/// [`CompileError::TooManyRules`] when an endpoint has more than [`MAX_RULES`] rules in one
/// direction.
pub fn build(config: &Config) -> Result<(Vec<RuleSet>, Vec<EndpointSets>), CompileError> {
    // Policies in evaluation order.
    let mut order: Vec<usize> = (0..config.policies.len()).collect();
    order.sort_by(|&a, &b| {
        let (pa, pb) = (&config.policies[a], &config.policies[b]);
        (pa.order, &pa.name).cmp(&(pb.order, &pb.name))
    });
    let by_name: HashMap<&str, usize> = config
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    // (policy, direction) → its rules in file order.
    let mut rules_of: HashMap<(usize, Direction), Vec<usize>> = HashMap::new();
    for (i, rule) in config.rules.iter().enumerate() {
        if let Some(&p) = by_name.get(rule.policy.as_str()) {
            rules_of.entry((p, rule.direction)).or_default().push(i);
        }
    }
    let mut sets: Vec<RuleSet> = Vec::new();
    // What makes two rule sets behave the same: the direction, the rules in order and the flags
    // (different selections can give the same list, e.g. when a policy has no rules here).
    type Key = (Direction, Vec<SetRule>, bool, bool);
    let mut known: HashMap<Key, usize> = HashMap::new();
    let mut endpoints = Vec::with_capacity(config.interfaces.len());
    for (e, interface) in config.interfaces.iter().enumerate() {
        let mut pair = [None, None];
        for (slot, direction) in pair.iter_mut().zip([Direction::Ingress, Direction::Egress]) {
            let selecting: Vec<usize> = order
                .iter()
                .copied()
                .filter(|&p| {
                    let policy = &config.policies[p];
                    policy.applies(direction) && policy.selector.matches(&interface.labels)
                })
                .collect();
            if selecting.is_empty() {
                continue;
            }
            let set = rule_set(config, direction, &selecting, &rules_of, e)?;
            let key = (direction, set.rules, set.enforced, set.audited);
            if let Some(&id) = known.get(&key) {
                sets[id].endpoints.push(e);
                *slot = Some(id);
                continue;
            }
            let (direction, rules, enforced, audited) = key.clone();
            known.insert(key, sets.len());
            *slot = Some(sets.len());
            sets.push(RuleSet {
                direction,
                rules,
                enforced,
                audited,
                endpoints: vec![e],
            });
        }
        endpoints.push(EndpointSets {
            name: interface.name.clone(),
            ingress: pair[0],
            egress: pair[1],
        });
    }
    Ok((sets, endpoints))
}

fn rule_set(
    config: &Config,
    direction: Direction,
    policies: &[usize],
    rules_of: &HashMap<(usize, Direction), Vec<usize>>,
    endpoint: usize,
) -> Result<RuleSet, CompileError> {
    let mut rules: Vec<SetRule> = Vec::new();
    for &p in policies {
        let Some(list) = rules_of.get(&(p, direction)) else {
            continue;
        };
        let audit = config.policies[p].audit;
        let last = rules.len() + list.len() - 1;
        for &r in list {
            rules.push(SetRule {
                rule: r,
                policy: p,
                action: config.rules[r].action,
                audit,
                policy_last: u16::try_from(last).unwrap_or(u16::MAX),
            });
        }
    }
    if rules.len() > MAX_RULES {
        return Err(CompileError::TooManyRules {
            endpoint: config.interfaces[endpoint].name.clone(),
            direction,
            rules: rules.len(),
            policies: policies
                .iter()
                .map(|&p| config.policies[p].name.clone())
                .collect(),
        });
    }
    Ok(RuleSet {
        direction,
        rules,
        enforced: policies.iter().any(|&p| !config.policies[p].audit),
        audited: policies.iter().any(|&p| config.policies[p].audit),
        endpoints: vec![endpoint],
    })
}
