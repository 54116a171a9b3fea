//! From a packet's rule bitmap to a verdict: the part of the classifier that follows the table
//! lookups, written as the BPF program will run it (a bounded number of find-first-set steps,
//! never a scan over rules).

use std::net::IpAddr;

use crate::config::RuleAction;

use super::bitmap::Bitmap;
use super::ruleset::RuleSet;

/// What a rule set looks at in a packet (the first packet of a flow; conntrack handles the
/// rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Packet {
    /// The other side: the source address for ingress, the destination for egress.
    pub remote: IpAddr,
    /// IP protocol (IPv6: the upper-layer protocol after extension headers).
    pub proto: u8,
    /// Source port (TCP, UDP, SCTP; ignored otherwise).
    pub sport: u16,
    /// Destination port (TCP, UDP, SCTP; ignored otherwise).
    pub dport: u16,
    /// ICMP or ICMPv6 type (ignored for other protocols).
    pub icmp_type: u8,
    /// ICMP or ICMPv6 code (ignored for other protocols).
    pub icmp_code: u8,
}

/// How one evaluation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// No (enforcing) policy selects the endpoint in this direction: allowed.
    Unselected,
    /// The rule at this bit position allowed the packet.
    Allow(u16),
    /// The rule at this bit position denied it.
    Deny(u16),
    /// Selected, but no rule decided: denied.
    DefaultDeny,
}

impl Decision {
    /// Whether the packet goes through.
    #[must_use]
    pub const fn allows(self) -> bool {
        matches!(self, Decision::Unselected | Decision::Allow(_))
    }
}

/// A packet's verdict in one rule set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Verdict {
    /// What happens to the packet. Audit policies take no part in it.
    pub decision: Decision,
    /// `log` rules that matched on the way (in enforcing policies on the way to `decision`; in
    /// audit policies on the way to `audit`'s evaluation).
    pub logged: Bitmap,
    /// When audit policies select the endpoint and enforcing them would drop a packet that is
    /// allowed: that decision (a rule's `Deny`, or `DefaultDeny`), to be counted and reported.
    pub audit: Option<Decision>,
}

/// The per-rule facts evaluation needs, as bitmaps and arrays indexed by bit (what the kernel
/// side keeps per rule set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// Rules whose action is `log`.
    pub log: Bitmap,
    /// Rules of audit policies.
    pub audit: Bitmap,
    /// Each rule's action.
    pub actions: Vec<RuleAction>,
    /// Each rule's `policy_last` (see [`super::SetRule`]).
    pub policy_last: Vec<u16>,
    /// An enforcing policy selects the endpoints.
    pub enforced: bool,
    /// An audit policy selects them.
    pub audited: bool,
}

impl Evaluation {
    /// The evaluation facts of `set`.
    #[must_use]
    pub fn of(set: &RuleSet) -> Evaluation {
        let mut log = Bitmap::EMPTY;
        let mut audit = Bitmap::EMPTY;
        for (i, r) in set.rules.iter().enumerate() {
            if r.action == RuleAction::Log {
                log.set(i);
            }
            if r.audit {
                audit.set(i);
            }
        }
        Evaluation {
            log,
            audit,
            actions: set.rules.iter().map(|r| r.action).collect(),
            policy_last: set.rules.iter().map(|r| r.policy_last).collect(),
            enforced: set.enforced,
            audited: set.audited,
        }
    }

    /// First match wins among the `matched` rules: the first allow, deny or pass; a pass
    /// clears the rest of its policy and looks again (at most once per policy); log rules
    /// before the decision (and not skipped by a pass) are collected.
    fn run(&self, matched: Bitmap) -> (Decision, Bitmap) {
        let mut candidates = matched.and_not(self.log);
        let mut skipped = Bitmap::EMPTY;
        let logged = |upto: usize, skipped: Bitmap| {
            matched
                .and(self.log)
                .and(Bitmap::below(upto))
                .and_not(skipped)
        };
        while let Some(bit) = candidates.first() {
            let action = self.actions.get(bit).copied().unwrap_or(RuleAction::Deny);
            let decision = match action {
                RuleAction::Allow => Decision::Allow(bit as u16),
                RuleAction::Deny => Decision::Deny(bit as u16),
                // Not a candidate; here for completeness.
                RuleAction::Log => {
                    candidates = candidates.and_not(Bitmap::bit(bit));
                    continue;
                }
                RuleAction::Pass => {
                    let last = usize::from(self.policy_last.get(bit).copied().unwrap_or(0));
                    let rest = Bitmap::below(last + 1).and_not(Bitmap::below(bit + 1));
                    skipped = skipped.or(rest);
                    candidates = candidates.and_not(Bitmap::below(last + 1));
                    continue;
                }
            };
            return (decision, logged(bit, skipped));
        }
        (Decision::DefaultDeny, logged(usize::MAX, skipped))
    }

    /// The verdict for a packet whose matching rules are `matched`.
    #[must_use]
    pub fn verdict(&self, matched: Bitmap) -> Verdict {
        let (decision, mut logged) = if self.enforced {
            self.run(matched.and_not(self.audit))
        } else {
            (Decision::Unselected, Bitmap::EMPTY)
        };
        let mut audit = None;
        if self.audited {
            let (would, would_log) = self.run(matched);
            logged = logged.or(would_log.and(self.audit));
            if decision.allows() && !would.allows() {
                audit = Some(would);
            }
        }
        Verdict {
            decision,
            logged,
            audit,
        }
    }
}
