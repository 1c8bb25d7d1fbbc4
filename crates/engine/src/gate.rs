//! Roles, verbs and the role x verb gate.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The role a capability token carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Worker,
    Observer,
    Senior,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Operator, Role::Worker, Role::Observer, Role::Senior];

    /// Wire spelling (`operator`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Worker => "worker",
            Role::Observer => "observer",
            Role::Senior => "senior",
        }
    }

    /// Parse a role name, case-insensitively.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
    }

    fn variant_name(self) -> &'static str {
        match self {
            Role::Operator => "Operator",
            Role::Worker => "Worker",
            Role::Observer => "Observer",
            Role::Senior => "Senior",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.variant_name())
    }
}

macro_rules! verbs {
    ($($variant:ident => $wire:literal),* $(,)?) => {
        /// An engine operation that a token must be allowed to perform.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Verb { $($variant),* }

        impl Verb {
            pub const ALL: &'static [Verb] = &[$(Verb::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Verb::$variant => $wire),* }
            }
        }

        impl fmt::Display for Verb {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let name = match self { $(Verb::$variant => stringify!($variant)),* };
                f.write_str(name)
            }
        }
    };
}

verbs! {
    StartTask => "start_task",
    DispatchAttempt => "dispatch_attempt",
    MintWorkerToken => "mint_worker_token",
    ReadTaskState => "read_task_state",
    CancelTask => "cancel_task",
    QuerySenior => "query_senior",
    MarkPass => "mark_pass",
    MarkBlocked => "mark_blocked",
    AttachSession => "attach_session",
    DetachSession => "detach_session",
    Heartbeat => "heartbeat",
    PollTask => "poll_task",
    FetchPrompt => "fetch_prompt",
    FetchData => "fetch_data",
    PostResult => "post_result",
    VerifyToken => "verify_token",
    EmitOutput => "emit_output",
    SubscribeEvents => "subscribe_events",
    ReadTrace => "read_trace",
    AnswerQuery => "answer_query",
    OverrideVerdict => "override_verdict",
    PauseLoop => "pause_loop",
    ResumeLoop => "resume_loop",
    InjectDirective => "inject_directive",
}

/// Which verbs each role may perform. A bit set per role keeps the check O(1).
#[derive(Clone, Debug)]
pub struct RoleVerbGate {
    allowed: [u32; 4],
}

fn role_index(role: Role) -> usize {
    match role {
        Role::Operator => 0,
        Role::Worker => 1,
        Role::Observer => 2,
        Role::Senior => 3,
    }
}

impl RoleVerbGate {
    /// An empty gate (nothing allowed).
    pub fn empty() -> Self {
        Self { allowed: [0; 4] }
    }

    pub fn allow(&mut self, role: Role, verbs: &[Verb]) {
        for v in verbs {
            self.allowed[role_index(role)] |= 1 << (*v as u32);
        }
    }

    pub fn allows(&self, role: Role, verb: Verb) -> bool {
        self.allowed[role_index(role)] & (1 << (verb as u32)) != 0
    }
}

impl Default for RoleVerbGate {
    /// The reference table (engine.md section 2).
    fn default() -> Self {
        use Verb::*;
        let mut gate = Self::empty();
        gate.allow(
            Role::Operator,
            &[
                StartTask,
                DispatchAttempt,
                MintWorkerToken,
                ReadTaskState,
                CancelTask,
                QuerySenior,
                MarkPass,
                MarkBlocked,
                AttachSession,
                DetachSession,
                Heartbeat,
                PollTask,
            ],
        );
        // Worker = leaf group + swarm group.
        gate.allow(
            Role::Worker,
            &[
                FetchPrompt,
                FetchData,
                PostResult,
                VerifyToken,
                EmitOutput,
                StartTask,
                DispatchAttempt,
                ReadTaskState,
                PollTask,
                CancelTask,
            ],
        );
        gate.allow(Role::Observer, &[ReadTaskState, SubscribeEvents, ReadTrace]);
        gate.allow(
            Role::Senior,
            &[
                AnswerQuery,
                OverrideVerdict,
                PauseLoop,
                ResumeLoop,
                InjectDirective,
            ],
        );
        gate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_reference_table() {
        let g = RoleVerbGate::default();
        let table: &[(Verb, [bool; 4])] = &[
            (Verb::StartTask, [true, true, false, false]),
            (Verb::DispatchAttempt, [true, true, false, false]),
            (Verb::MintWorkerToken, [true, false, false, false]),
            (Verb::ReadTaskState, [true, true, true, false]),
            (Verb::CancelTask, [true, true, false, false]),
            (Verb::QuerySenior, [true, false, false, false]),
            (Verb::MarkPass, [true, false, false, false]),
            (Verb::MarkBlocked, [true, false, false, false]),
            (Verb::AttachSession, [true, false, false, false]),
            (Verb::DetachSession, [true, false, false, false]),
            (Verb::Heartbeat, [true, false, false, false]),
            (Verb::PollTask, [true, true, false, false]),
            (Verb::FetchPrompt, [false, true, false, false]),
            (Verb::FetchData, [false, true, false, false]),
            (Verb::PostResult, [false, true, false, false]),
            (Verb::VerifyToken, [false, true, false, false]),
            (Verb::EmitOutput, [false, true, false, false]),
            (Verb::SubscribeEvents, [false, false, true, false]),
            (Verb::ReadTrace, [false, false, true, false]),
            (Verb::AnswerQuery, [false, false, false, true]),
            (Verb::OverrideVerdict, [false, false, false, true]),
            (Verb::PauseLoop, [false, false, false, true]),
            (Verb::ResumeLoop, [false, false, false, true]),
            (Verb::InjectDirective, [false, false, false, true]),
        ];
        assert_eq!(table.len(), Verb::ALL.len());
        for (verb, row) in table {
            for (i, role) in Role::ALL.iter().enumerate() {
                assert_eq!(g.allows(*role, *verb), row[i], "{role} {verb}");
            }
        }
    }

    #[test]
    fn role_parse_is_case_insensitive() {
        assert_eq!(Role::parse("Senior"), Some(Role::Senior));
        assert_eq!(Role::parse("admin"), None);
    }
}
