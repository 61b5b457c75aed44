//! What a pool needs now, from what its Jobs and pods show. Pure.

use std::time::Duration;

use sandrun_crds::SandboxPoolStatus;

/// One of a pool's Jobs, with the state of its pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub job_name: String,
    pub job_uid: String,
    /// The profile digest it was made for.
    pub profile: String,
    /// A run claimed it: from then on it is the run's, not the pool's.
    pub claimed: bool,
    /// How long it has been seen claimed (zero when it is not).
    pub claimed_for: Duration,
    /// Its pod was claimed but its Job never made the run's, for longer
    /// than a binding takes: the binding died half-way (an operator
    /// crash between the two writes). No program was ever delivered to it.
    pub abandoned: bool,
    /// The Job completed or failed.
    pub finished: bool,
    pub pod: PodState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodState {
    /// No pod yet, or not yet running.
    Starting,
    /// The runner is up and waiting for its program.
    Ready,
    /// The pod ended, failed or is being deleted.
    Ended,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Warm Jobs to make.
    pub create: u32,
    /// Unclaimed Jobs to delete: broken, of an older profile, or more than
    /// the pool's size. (name, uid)
    pub delete: Vec<(String, String)>,
    pub status: SandboxPoolStatus,
    /// Look again then: a pod taken less than `refill_delay` ago still
    /// holds its place.
    pub refill_in: Option<Duration>,
}

/// `digest` is the pool's current profile, or `Err` with why the pool's
/// spec cannot make pods (then it keeps none).
///
/// A pod a run took is replaced when that run's pod ends or `refill_delay`
/// after the claim, whichever comes first: starting a gVisor sandbox takes
/// more than a core for a second or two, which would otherwise fall on the
/// run that was just bound.
pub fn plan(size: u32, digest: Result<&str, &str>, members: &[Member], refill_delay: Duration) -> Plan {
    let mut plan = Plan::default();
    let mut healthy: Vec<&Member> = Vec::new();
    let mut held = 0;
    for member in members {
        if member.claimed && member.abandoned {
            plan.delete.push((member.job_name.clone(), member.job_uid.clone()));
            continue;
        }
        if member.claimed {
            let running = !member.finished && member.pod != PodState::Ended;
            plan.status.in_use += u32::from(running);
            if running && member.claimed_for < refill_delay {
                held += 1;
                let wait = refill_delay - member.claimed_for;
                plan.refill_in = Some(plan.refill_in.map_or(wait, |earlier| earlier.min(wait)));
            }
            continue;
        }
        let current = digest.is_ok_and(|digest| digest == member.profile);
        if member.finished || member.pod == PodState::Ended || !current {
            plan.delete.push((member.job_name.clone(), member.job_uid.clone()));
        } else {
            healthy.push(member);
        }
    }
    let size = match digest {
        Ok(_) => size as usize,
        Err(why) => {
            plan.status.message = Some(why.to_owned());
            0
        }
    };
    // Past the size, the ones still starting go first: a ready pod is
    // worth more.
    healthy.sort_by_key(|member| member.pod == PodState::Ready);
    let extra = healthy.len().saturating_sub(size);
    for member in healthy.drain(..extra) {
        plan.delete.push((member.job_name.clone(), member.job_uid.clone()));
    }
    plan.create = size.saturating_sub(healthy.len() + held) as u32;
    plan.status.ready = healthy.iter().filter(|m| m.pod == PodState::Ready).count() as u32;
    plan.status.starting = healthy.len() as u32 - plan.status.ready;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, pod: PodState) -> Member {
        Member {
            job_name: name.into(),
            job_uid: format!("{name}-uid"),
            profile: "p1".into(),
            claimed: false,
            claimed_for: Duration::ZERO,
            abandoned: false,
            finished: false,
            pod,
        }
    }

    fn deleted(plan: &Plan) -> Vec<&str> {
        plan.delete.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// Case, size, members; then: Jobs to make, Jobs deleted, (ready, starting, in use).
    type Row = (&'static str, u32, Vec<Member>, u32, Vec<&'static str>, (u32, u32, u32));

    #[test]
    fn table() {
        use PodState::{Ended, Ready, Starting};
        let claimed = |name, pod| Member { claimed: true, claimed_for: Duration::from_secs(5), ..member(name, pod) };
        let just_claimed = |name, pod| Member { claimed: true, ..member(name, pod) };
        let old = |name| Member { profile: "p0".into(), ..member(name, PodState::Ready) };
        let failed = |name| Member { finished: true, ..member(name, Starting) };
        let cases: Vec<Row> = vec![
            ("empty pool fills", 3, vec![], 3, vec![], (0, 0, 0)),
            ("full pool rests", 2, vec![member("a", Ready), member("b", Starting)], 0, vec![], (1, 1, 0)),
            ("a claimed pod is replaced", 2, vec![member("a", Ready), claimed("b", Ready)], 1, vec![], (1, 0, 1)),
            ("a finished claimed pod is not in use", 1, vec![claimed("b", Ended)], 1, vec![], (0, 0, 0)),
            ("broken pods go and are replaced", 2, vec![member("a", Ended), failed("b")], 2, vec!["a", "b"], (0, 0, 0)),
            ("an older profile goes", 1, vec![old("a")], 1, vec!["a"], (0, 0, 0)),
            (
                "scaled down: starting ones first",
                1,
                vec![member("a", Starting), member("b", Ready), member("c", Starting)],
                0,
                vec!["a", "c"],
                (1, 0, 0),
            ),
            ("scaled to zero", 0, vec![member("a", Ready), claimed("b", Ready)], 0, vec!["a"], (0, 0, 1)),
            (
                "a pod just taken holds its place",
                2,
                vec![member("a", Ready), just_claimed("b", Ready)],
                0,
                vec![],
                (1, 0, 1),
            ),
            (
                "a pod just taken that ended does not",
                2,
                vec![member("a", Ready), just_claimed("b", Ended)],
                1,
                vec![],
                (1, 0, 0),
            ),
            (
                "a claim abandoned half-way goes",
                1,
                vec![Member { abandoned: true, ..claimed("b", Ready) }],
                1,
                vec!["b"],
                (0, 0, 0),
            ),
        ];
        for (case, size, members, create, delete, (ready, starting, in_use)) in cases {
            let plan = plan(size, Ok("p1"), &members, Duration::from_secs(1));
            assert_eq!(plan.create, create, "{case}: create");
            assert_eq!(deleted(&plan), delete, "{case}: delete");
            let s = &plan.status;
            assert_eq!((s.ready, s.starting, s.in_use), (ready, starting, in_use), "{case}: status");
        }
    }

    #[test]
    fn a_pool_looks_again_when_the_first_pod_it_holds_a_place_for_is_due() {
        let taken = |name, ms| Member {
            claimed: true,
            claimed_for: Duration::from_millis(ms),
            ..member(name, PodState::Ready)
        };
        let plan = plan(3, Ok("p1"), &[taken("a", 200), taken("b", 700), taken("c", 1500)], Duration::from_secs(1));
        assert_eq!((plan.create, plan.refill_in), (1, Some(Duration::from_millis(300))));
        let none_held = super::plan(1, Ok("p1"), &[taken("a", 200)], Duration::ZERO);
        assert_eq!((none_held.create, none_held.refill_in), (1, None));
    }

    #[test]
    fn a_pool_that_cannot_make_pods_keeps_none_and_says_why() {
        let plan =
            plan(3, Err("runtimeClassName \"runc\" is not allowed"), &[member("a", PodState::Ready)], Duration::ZERO);
        assert_eq!((plan.create, deleted(&plan)), (0, vec!["a"]));
        assert!(plan.status.message.unwrap().contains("runc"));
    }
}
