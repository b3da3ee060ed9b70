//! Agent-selection strategies: which free agent is offered a queue's item.
//!
//! Each strategy is a pure ordering of free agents. The core keeps every queue's free
//! agents sorted by `(tier level, strategy key)`, so the common strategies are "first
//! eligible agent in order" and cost one ordered walk, not a scan and a sort per call.
//! Round-robin and random look at all eligible agents of the best tier level; ring-all
//! offers to every eligible agent at once.
//!
//! A strategy's key is fixed while the agent stays free (calls, talk time and idle-since
//! only change when the agent works), which is what makes the sorted index valid.

use serde::{Deserialize, Serialize};

use super::rng::Rng;

/// How a queue chooses among free, qualified agents. Unknown names in configuration are
/// errors (see [`Strategy::from_name`]), never a silent fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The agent idle longest since their last call (or since becoming available).
    #[default]
    LongestIdle,
    /// The next agent by tier position after the one last offered, wrapping.
    RoundRobin,
    /// The agent who answered the fewest calls.
    FewestCalls,
    /// The agent with the least total talk time.
    LeastTalkTime,
    /// Every qualified free agent rings; the first to answer gets the call.
    RingAll,
    /// Always the lowest tier position first (top-down hunting).
    Linear,
    /// A uniformly random qualified agent (seeded, so runs are reproducible).
    Random,
}

/// What a strategy looks at when ordering a free agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgentFacts {
    /// When the agent became idle, in nanoseconds since the core's epoch.
    pub idle_since_ns: u64,
    /// Calls answered since login.
    pub calls: u64,
    /// Talk time since login, milliseconds.
    pub talk_ms: u64,
    /// Position in the tier.
    pub position: u32,
}

/// How many eligible agents a strategy needs to see before choosing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The first eligible agent in key order is the answer.
    First,
    /// All eligible agents of the best tier level, then [`Strategy::pick`].
    BestLevel,
    /// All eligible agents of every level: ring them all.
    All,
}

/// An eligible free agent, as seen by [`Strategy::pick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The agent's sort key within its level.
    pub key: (u64, u64),
    /// Tier position.
    pub position: u32,
}

impl Strategy {
    /// Parses a configuration name (`"longest-idle"`, `"round-robin"`, ...).
    pub fn from_name(name: &str) -> Option<Strategy> {
        Some(match name {
            "longest-idle" => Strategy::LongestIdle,
            "round-robin" => Strategy::RoundRobin,
            "fewest-calls" => Strategy::FewestCalls,
            "least-talk-time" => Strategy::LeastTalkTime,
            "ring-all" => Strategy::RingAll,
            "linear" => Strategy::Linear,
            "random" => Strategy::Random,
            _ => return None,
        })
    }

    /// The sort key of a free agent within its tier level: lower is offered first.
    /// Ties fall to idle time, then to the agent's index in the core.
    pub fn key(self, facts: &AgentFacts) -> (u64, u64) {
        match self {
            Strategy::LongestIdle => (facts.idle_since_ns, 0),
            Strategy::FewestCalls => (facts.calls, facts.idle_since_ns),
            Strategy::LeastTalkTime => (facts.talk_ms, facts.idle_since_ns),
            Strategy::RoundRobin | Strategy::Linear | Strategy::RingAll | Strategy::Random => {
                (u64::from(facts.position), facts.idle_since_ns)
            }
        }
    }

    /// How many candidates [`Strategy::pick`] must see.
    pub fn scope(self) -> Scope {
        match self {
            Strategy::LongestIdle
            | Strategy::FewestCalls
            | Strategy::LeastTalkTime
            | Strategy::Linear => Scope::First,
            Strategy::RoundRobin | Strategy::Random => Scope::BestLevel,
            Strategy::RingAll => Scope::All,
        }
    }

    /// Chooses one of `candidates` (non-empty, in key order): the index into the slice.
    /// `last_position` is the round-robin memory: the tier position last offered.
    pub fn pick(
        self,
        candidates: &[Candidate],
        last_position: Option<u32>,
        rng: &mut Rng,
    ) -> usize {
        match self {
            Strategy::RoundRobin => last_position
                .and_then(|last| candidates.iter().position(|c| c.position > last))
                .unwrap_or(0),
            Strategy::Random => rng.below(candidates.len() as u64) as usize,
            // Key order already decides the others.
            _ => 0,
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;

    /// The kebab-case names used in config files and on the command line.
    fn from_str(s: &str) -> Result<Strategy, String> {
        Ok(match s {
            "longest-idle" => Strategy::LongestIdle,
            "round-robin" => Strategy::RoundRobin,
            "fewest-calls" => Strategy::FewestCalls,
            "least-talk-time" => Strategy::LeastTalkTime,
            "ring-all" => Strategy::RingAll,
            "linear" => Strategy::Linear,
            "random" => Strategy::Random,
            other => {
                return Err(format!(
                    "unknown strategy {other:?}: use longest-idle, round-robin, fewest-calls, least-talk-time, ring-all, linear or random"
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(position: u32) -> Candidate {
        Candidate {
            key: (u64::from(position), 0),
            position,
        }
    }

    #[test]
    fn round_robin_remembers_and_wraps() {
        let c = [cand(1), cand(2), cand(3)];
        let mut rng = Rng::new(1);
        assert_eq!(Strategy::RoundRobin.pick(&c, None, &mut rng), 0);
        assert_eq!(Strategy::RoundRobin.pick(&c, Some(1), &mut rng), 1);
        assert_eq!(Strategy::RoundRobin.pick(&c, Some(3), &mut rng), 0);
    }

    #[test]
    fn keys_order_as_named() {
        let busy = AgentFacts {
            idle_since_ns: 1,
            calls: 9,
            talk_ms: 900,
            position: 2,
        };
        let quiet = AgentFacts {
            idle_since_ns: 5,
            calls: 1,
            talk_ms: 100,
            position: 1,
        };
        assert!(Strategy::LongestIdle.key(&busy) < Strategy::LongestIdle.key(&quiet));
        assert!(Strategy::FewestCalls.key(&quiet) < Strategy::FewestCalls.key(&busy));
        assert!(Strategy::LeastTalkTime.key(&quiet) < Strategy::LeastTalkTime.key(&busy));
        assert!(Strategy::Linear.key(&quiet) < Strategy::Linear.key(&busy));
    }

    #[test]
    fn names_parse_and_unknown_is_none() {
        assert_eq!(Strategy::from_name("ring-all"), Some(Strategy::RingAll));
        assert_eq!(Strategy::from_name("top-down"), None);
    }
}
