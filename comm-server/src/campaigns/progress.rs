//! Call progress: what became of a dial, told apart from the SIP final response (and
//! from answering-machine detection once answered).

/// The outcome of one attempt to reach a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A person answered and was connected to an agent.
    Answered,
    /// A person answered but no agent was free in time: the identification message
    /// played and the call counts as abandoned.
    Abandoned,
    /// An answering machine or voicemail answered.
    Machine,
    /// The line was busy (486, 600).
    Busy,
    /// It rang out or the phone is off (408, 480, our ring timeout).
    NoAnswer,
    /// The number does not exist (404, 484, 604).
    InvalidNumber,
    /// The callee declined (603).
    Rejected,
    /// The network or the trunk failed (5xx, other errors): try later.
    Failed,
}

impl Outcome {
    /// The outcome of a call that got `status` as its final response; `ring_timeout`
    /// tells that we cancelled it ourselves after ringing too long (then the 487 means
    /// no answer). A 2xx is `Answered` until answering-machine detection says otherwise.
    pub fn from_final_status(status: u16, ring_timeout: bool) -> Outcome {
        match status {
            200..=299 => Outcome::Answered,
            _ if ring_timeout => Outcome::NoAnswer,
            486 | 600 => Outcome::Busy,
            408 | 480 | 487 => Outcome::NoAnswer,
            404 | 410 | 484 | 485 | 604 => Outcome::InvalidNumber,
            603 => Outcome::Rejected,
            _ => Outcome::Failed,
        }
    }

    /// A stable lower-case name for storage and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Abandoned => "abandoned",
            Outcome::Machine => "machine",
            Outcome::Busy => "busy",
            Outcome::NoAnswer => "no-answer",
            Outcome::InvalidNumber => "invalid-number",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome::{self, *};

    #[test]
    fn final_responses_map_to_outcomes() {
        for (status, outcome) in [
            (200, Answered),
            (486, Busy),
            (600, Busy),
            (480, NoAnswer),
            (408, NoAnswer),
            (404, InvalidNumber),
            (484, InvalidNumber),
            (604, InvalidNumber),
            (603, Rejected),
            (503, Failed),
            (500, Failed),
            (403, Failed),
        ] {
            assert_eq!(
                Outcome::from_final_status(status, false),
                outcome,
                "{status}"
            );
        }
        assert_eq!(Outcome::from_final_status(487, true), NoAnswer);
        assert_eq!(Outcome::from_final_status(200, true), Answered);
    }
}
