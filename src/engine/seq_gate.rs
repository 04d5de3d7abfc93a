//! Which of the peer's status messages to believe, by their sequence numbers.
//!
//! A TCP receiver finds status messages by scanning the byte stream, and with random payload a
//! 12-byte window that passes the scanner's rule turns up about once per tens of gigabytes. Its
//! `seq` is random. A rule like "accept anything above the last accepted seq" would adopt such a
//! number once and then reject every real status after it for the rest of the test (remote CPU
//! frozen; the 1.5x rule stuck on a random rate). So acceptance heals itself:
//!
//! * a seq a little above the last accepted one (at most [`MAX_STEP`] ahead) is taken at once:
//!   the normal case, with room for a message the scanner could not see;
//! * any other seq (a jump, or a step back) is only remembered; it is adopted when the next
//!   message continues from it, which a real peer that restarted or skipped numbers does and a
//!   lone false match practically never does;
//! * a repeat of the last seq is neither (RouterOS may repeat one; it carries nothing new).
//!
//! A false match therefore costs at most one ignored message, and never latches.

/// Largest step over the last accepted seq taken without confirmation.
pub(crate) const MAX_STEP: u32 = 4;

/// What the gate made of one sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Use the message.
    Accept,
    /// Same seq as the last accepted one.
    Repeat,
    /// Out of line; remembered in case the next message confirms it.
    Held,
}

/// The gate's memory: the last accepted seq (0 before the first) and an unconfirmed jump.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SeqGate {
    last: u32,
    pending: Option<u32>,
}

/// True when `seq` follows `base` by 1..=[`MAX_STEP`].
fn follows(base: u32, seq: u32) -> bool {
    seq.checked_sub(base)
        .is_some_and(|d| (1..=MAX_STEP).contains(&d))
}

impl SeqGate {
    /// Judges `seq` and updates the gate.
    pub(crate) fn check(&mut self, seq: u32) -> Verdict {
        if self.last != 0 && seq == self.last {
            return Verdict::Repeat;
        }
        let in_line = follows(self.last, seq);
        let confirms = self.pending.is_some_and(|p| follows(p, seq));
        if in_line || confirms {
            self.last = seq;
            self.pending = None;
            Verdict::Accept
        } else {
            self.pending = Some(seq);
            Verdict::Held
        }
    }

    /// The last accepted seq (0 before the first).
    #[cfg(test)]
    pub(crate) fn last(&self) -> u32 {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_false_jump_costs_nothing() {
        let mut g = SeqGate::default();
        for s in 1..=5 {
            assert_eq!(g.check(s), Verdict::Accept);
        }
        assert_eq!(g.check(1_000_000), Verdict::Held);
        assert_eq!(g.check(6), Verdict::Accept, "the real next one is used");
        assert_eq!(g.check(7), Verdict::Accept);
        assert_eq!(g.last(), 7);
    }

    #[test]
    fn a_real_jump_is_adopted_when_confirmed() {
        let mut g = SeqGate::default();
        assert_eq!(g.check(1), Verdict::Accept);
        assert_eq!(g.check(500), Verdict::Held);
        assert_eq!(g.check(501), Verdict::Accept);
        // A peer that starts counting anew.
        assert_eq!(g.check(1), Verdict::Held);
        assert_eq!(g.check(2), Verdict::Accept);
        assert_eq!(g.last(), 2);
    }

    #[test]
    fn repeats_and_small_gaps() {
        let mut g = SeqGate::default();
        assert_eq!(g.check(1), Verdict::Accept);
        assert_eq!(g.check(1), Verdict::Repeat);
        assert_eq!(g.check(3), Verdict::Accept, "one message missed");
        assert_eq!(g.check(3 + MAX_STEP + 1), Verdict::Held);
    }

    #[test]
    fn a_first_message_that_is_not_one_needs_a_second() {
        let mut g = SeqGate::default();
        assert_eq!(g.check(40), Verdict::Held);
        assert_eq!(g.check(41), Verdict::Accept);
    }

    #[test]
    fn a_false_match_first_does_not_block_the_peer() {
        let mut g = SeqGate::default();
        assert_eq!(g.check(900_000), Verdict::Held);
        assert_eq!(g.check(1), Verdict::Accept);
        assert_eq!(g.check(2), Verdict::Accept);
    }
}
