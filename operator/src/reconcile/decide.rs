//! What to do next for one Execution, from what was gathered. Pure: plain
//! values in, a list of steps and when to look again out. Every rule of the
//! operator's reconcile is here; `gather` only reads and `act` only does.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::SignedDuration;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::ResourceExt;
use sandrun_crds::{Execution, ExecutionStatus, Phase, StartMode};

use crate::config::OperatorConfig;
use crate::delivery;
use crate::labels::child_name;
use crate::metrics::PhaseLabels;
use crate::objects;
use crate::status::{self, Frame, Observed};
use crate::store::{JobRecord, JobSlot, PodRecord, WarmPod};
use crate::validate;

/// Safety net for missed watch events while an Execution is in flight.
pub const IN_FLIGHT_RESYNC: Duration = Duration::from_secs(300);
/// How soon to look again after reading a status older than this
/// operator's own binding of the run.
pub const STALE_STATUS_RETRY: Duration = Duration::from_millis(200);
/// How often to look again while a Job that is not this run's is in the way.
pub const IN_THE_WAY_RETRY: Duration = Duration::from_secs(2);

/// Everything a decision reads. `gather` fills only what the decision for
/// this Execution's state will read: nothing of its children once it has
/// finished, no log unless the runner exited cleanly.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    pub execution: &'a Execution,
    pub namespace: String,
    pub now: Time,
    /// The run's Job: from the store, or from the API server when the store
    /// lags a Job this operator made (its name is in the status).
    pub job: Option<JobSlot>,
    /// The newest pod of that Job.
    pub pod: Option<Arc<PodRecord>>,
    /// The runner's frame, read only from a run container that exited 0.
    pub frame: Option<Frame>,
    /// The namespace's deny-all NetworkPolicy as the store holds it.
    pub policy: Option<Arc<NetworkPolicy>>,
    /// The pod still has to mount its inputs, and the API server confirms
    /// the ConfigMap is gone (see [`must_check_inputs`]).
    pub inputs_missing: bool,
    /// Why the API server refused this run's children, applied earlier in
    /// this reconcile.
    pub refused: Option<String>,
    /// A warm pod taken for this run, which has no sandbox yet.
    pub warm: Option<Warm>,
    /// What this operator's delivery to the run's warm pod came to.
    pub delivery: Option<delivery::State>,
}

/// A warm pod of a pool that fits the run.
#[derive(Clone, Debug)]
pub struct Warm {
    pub pool: String,
    pub pod: WarmPod,
}

impl<'a> Facts<'a> {
    /// Facts with nothing gathered of the children.
    pub fn of(execution: &'a Execution, namespace: impl Into<String>, now: Time) -> Self {
        Self {
            execution,
            namespace: namespace.into(),
            now,
            job: None,
            pod: None,
            frame: None,
            policy: None,
            inputs_missing: false,
            refused: None,
            warm: None,
            delivery: None,
        }
    }
}

/// One thing to do, in order. A failed step ends the reconcile with its
/// error, so what follows it (an Event after a status write) is not done.
#[derive(Clone, Debug)]
pub enum Step {
    /// Drop a finished run's Job and pods from the stores, and what its
    /// delivery came to.
    ForgetChildren,
    /// Claim the warm pod (a write on the version taken), make its Job the
    /// run's, write the bound status (on the version read), then start
    /// delivering. A claim lost to another run feeds back; any later
    /// failure deletes the claimed Job, which never got a program.
    Bind(Box<Bind>),
    /// Deliver to the run's warm pod: nothing of this operator is (after a
    /// failover). The runner takes one program, ever, so a second delivery
    /// of the same one is harmless.
    Deliver(Box<Delivery>),
    /// Apply the namespace's policy (when missing or changed), then the
    /// inputs and the Job. What happens feeds back into the facts (the Job
    /// made, or why one of them was refused) and the reconcile decides again.
    CreateChildren(Box<Children>),
    /// Put back an inputs ConfigMap deleted before the pod mounted it.
    ApplyInputs(Box<ConfigMap>),
    /// Through the status subresource, on the resourceVersion read.
    WriteStatus(Box<ExecutionStatus>),
    /// With the Job's uid as precondition when it is known.
    DeleteJob(JobRecord),
    /// TTL expiry, with the Execution's uid as precondition.
    DeleteExecution,
    Publish(Notice),
    CountFinished(PhaseLabels),
    /// A warm run sent back to a cold start.
    CountWarmFallback,
    /// Make a bound warm pod's Job the run's: its labels and owner.
    AdoptJob(JobRecord),
}

/// A program and the warm pod it goes to.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub pod: String,
    pub program: sandrun_runner::Delivery,
}

impl Delivery {
    fn to(pod: String, program: sandrun_runner::Delivery) -> Self {
        Self { pod, program }
    }
}

#[derive(Clone, Debug)]
pub struct Bind {
    pub warm: Warm,
    pub status: ExecutionStatus,
    pub delivery: sandrun_runner::Delivery,
}

/// What a new run is made of, applied in this order.
#[derive(Clone, Debug)]
pub struct Children {
    pub policy: Option<NetworkPolicy>,
    pub config_map: ConfigMap,
    pub job: Job,
}

/// An Event about the Execution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub type_: EventType,
    pub reason: String,
    pub note: String,
}

/// When the reconcile is done: now, with this action, or after acting on
/// a step that feeds back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Then {
    Done(Action),
    DecideAgain,
}

/// Why, for the log, where the steps alone do not say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    Waiting(&'static str),
    /// The run is ended for this reason (ResultOverdue, StartTimeout).
    Overdue(String),
}

#[derive(Clone, Debug)]
pub struct Decision {
    pub steps: Vec<Step>,
    pub then: Then,
    pub why: Option<Why>,
}

impl Decision {
    fn done(steps: Vec<Step>, action: Action) -> Self {
        Self { steps, then: Then::Done(action), why: None }
    }

    /// Keeps a reason already given: the more specific one.
    fn because(mut self, why: Why) -> Self {
        self.why.get_or_insert(why);
        self
    }
}

/// How much of a run's surroundings a decision will read, so that `gather`
/// reads no more: nothing for a run being deleted, finished or refused; the
/// stored Job for a cancel; everything otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    StoredJob,
    Everything,
}

/// The same order of rules as [`decide`].
pub fn needs(execution: &Execution, config: &OperatorConfig) -> Needs {
    let finished = execution.status.as_ref().is_some_and(ExecutionStatus::is_terminal);
    if execution.metadata.deletion_timestamp.is_some() || finished {
        Needs::Nothing
    } else if sandrun_crds::cancel_requested(execution) {
        Needs::StoredJob
    } else if validate::program(&execution.spec, config).is_err() {
        Needs::Nothing
    } else {
        Needs::Everything
    }
}

pub fn decide(facts: &Facts, config: &OperatorConfig) -> Decision {
    let execution = facts.execution;
    if execution.metadata.deletion_timestamp.is_some() {
        return Decision::done(Vec::new(), Action::await_change());
    }
    let previous = execution.status.clone().unwrap_or_default();
    if previous.is_terminal() {
        // The result is in the Execution: no reconcile reads its Job or
        // pods again.
        return expire(facts, vec![Step::ForgetChildren]);
    }
    if sandrun_crds::cancel_requested(execution) {
        return cancel(facts, &previous);
    }
    let program = match validate::program(&execution.spec, config) {
        Ok(program) => program,
        Err(problem) => return reject(facts, problem.to_string()),
    };
    if let Some(refusal) = &facts.refused {
        return reject(facts, format!("the API server rejected the {refusal}"));
    }
    let job = match &facts.job {
        // Only a finished run's Job is forgotten, and this run is not.
        Some(JobSlot::Forgotten) => {
            return wait_for_job_in_the_way(facts, config, &previous)
                .because(Why::Waiting("waiting for an earlier same-named run's Job to go away"))
        }
        Some(JobSlot::Held(job)) if !owned_by(job, execution) => {
            return wait_for_job_in_the_way(facts, config, &previous)
                .because(Why::Waiting("waiting for a Job this Execution does not own to go away"))
        }
        Some(JobSlot::Held(job)) => Some(job.as_ref()),
        None => None,
    };
    if previous.start_mode.is_none() && (facts.delivery.is_some() || job.is_some_and(|j| j.claimed_by.is_some())) {
        // This run is bound to a warm pod, but the copy read is from before
        // the binding was written: the watch brings it within milliseconds.
        return Decision::done(Vec::new(), Action::requeue(STALE_STATUS_RETRY))
            .because(Why::Waiting("the status read is from before this run's binding"));
    }
    if job.is_none() && previous.job_name.is_none() {
        if let Some(warm) = &facts.warm {
            return bind(facts, &program, warm);
        }
        return create_children(facts, &program, config);
    }
    let mut steps = Vec::new();
    if previous.start_mode == Some(StartMode::Warm) {
        // The binding adopts its Job after the program is on its way; a
        // reconcile finishes what an interrupted one did not.
        let unadopted = job.filter(|job| !adopted(job, execution));
        steps.extend(unadopted.map(|job| Step::AdoptJob(job.clone())));
        if let Some(mut decision) = warm_run(facts, &program, job, &previous) {
            decision.steps.splice(0..0, steps);
            return decision;
        }
    }

    if facts.inputs_missing {
        let config_map = objects::config_map(execution, &facts.namespace);
        let note = format!("re-created ConfigMap {}", config_map.name_any());
        steps.push(Step::ApplyInputs(Box::new(config_map)));
        steps.push(Step::Publish(Notice { type_: EventType::Warning, reason: "InputsRestored".into(), note }));
    }
    let observed = Observed {
        job,
        pod: facts.pod.as_deref(),
        frame: facts.frame.as_ref(),
        job_was_created: previous.job_name.is_some(),
    };
    let mut next = status::derive(execution, &observed, &facts.now);
    if next.stdout.is_some() || next.stderr.is_some() {
        // Only a finished run carries output; size the spec just then.
        status::fit_to_object_limit(&mut next, spec_bytes(execution));
    }
    if !next.is_terminal() {
        let (allowance, grace) = (config.startup_allowance_seconds, config.result_grace_seconds);
        match status::overdue(execution, &next, allowance, grace, &facts.now) {
            Ok(ended) => return end_run(facts, &previous, steps, job, ended),
            Err(left) => {
                write_if_worth_it(&mut steps, &previous, next);
                // Back exactly when the run would be overdue.
                return Decision::done(steps, Action::requeue(left.min(IN_FLIGHT_RESYNC)));
            }
        }
    }
    let stuck = status::leaves_stuck_pod(&next);
    write_if_worth_it(&mut steps, &previous, next);
    if let Some(job) = job.filter(|_| stuck) {
        // Stop the kubelet retrying an image that will never come.
        steps.push(Step::DeleteJob(job.clone()));
    }
    expire(facts, steps)
}

/// Whether the inputs ConfigMap must be confirmed present: the run's Job
/// exists, an earlier reconcile made it, and its pod may still have to
/// mount them. Read by `gather`, so it asks the API server only then.
pub fn must_check_inputs(execution: &Execution, job: Option<&JobSlot>, pod: Option<&PodRecord>) -> bool {
    let made_earlier = execution.status.as_ref().is_some_and(|s| s.job_name.is_some());
    made_earlier && job.is_some_and(|slot| is_ours(slot, execution)) && status::awaits_inputs(pod)
}

/// A Job this Execution owns, held in the store.
pub fn is_ours(slot: &JobSlot, execution: &Execution) -> bool {
    matches!(slot, JobSlot::Held(job) if owned_by(job, execution))
}

/// The Execution owns the Job, or the Job is the warm pod's its status was
/// bound to (written only by this operator's binding, on the Execution's
/// version) and not yet adopted.
pub fn owned_by(job: &JobRecord, execution: &Execution) -> bool {
    adopted(job, execution) || bound_warm_job(job, execution)
}

fn adopted(job: &JobRecord, execution: &Execution) -> bool {
    execution.uid().is_some_and(|uid| job.owner_uids.contains(&uid))
}

fn bound_warm_job(job: &JobRecord, execution: &Execution) -> bool {
    execution
        .status
        .as_ref()
        .is_some_and(|s| s.start_mode == Some(StartMode::Warm) && s.job_name.as_deref() == Some(job.name.as_str()))
}

fn create_children(facts: &Facts, program: &validate::Program, config: &OperatorConfig) -> Decision {
    let (execution, namespace) = (facts.execution, facts.namespace.as_str());
    let policy = objects::deny_all_network_policy(namespace);
    // Applied only when missing or changed: one per namespace.
    let in_place = facts.policy.as_ref().is_some_and(|existing| existing.spec == policy.spec);
    let step = Step::CreateChildren(Box::new(Children {
        policy: (!in_place).then_some(policy),
        config_map: objects::config_map(execution, namespace),
        job: objects::job(execution, namespace, program, config),
    }));
    Decision { steps: vec![step], then: Then::DecideAgain, why: None }
}

fn bind(facts: &Facts, program: &validate::Program, warm: &Warm) -> Decision {
    let execution = facts.execution;
    let status = status::bound(execution, &warm.pod.job_name, &warm.pod.name, &warm.pool, &facts.now);
    let delivery = objects::delivery(execution, program);
    let step = Step::Bind(Box::new(Bind { warm: warm.clone(), status, delivery }));
    Decision { steps: vec![step], then: Then::DecideAgain, why: None }
}

/// What only a warm run in flight needs, if anything: its result from the
/// stream, a cold start when the program never reached the pod, or a
/// delivery after a failover. Otherwise (`None`) the pod's own state
/// decides, as for a cold run.
fn warm_run(
    facts: &Facts,
    program: &validate::Program,
    job: Option<&JobRecord>,
    previous: &ExecutionStatus,
) -> Option<Decision> {
    let execution = facts.execution;
    let undelivered = facts.pod.as_deref().and_then(status::undelivered);
    match (&facts.delivery, undelivered) {
        (Some(delivery::State::Done(delivery::Outcome::Finished { result, accepted, finished })), _) => {
            let mut next = status::from_stream(execution, result, accepted.as_ref(), finished, &facts.now);
            status::fit_to_object_limit(&mut next, spec_bytes(execution));
            let mut steps = Vec::new();
            write_and_announce(&mut steps, previous, next);
            Some(Decision::done(steps, Action::await_change()))
        }
        (Some(delivery::State::Done(delivery::Outcome::NotSent(why))), _) => Some(start_cold(facts, job, why)),
        (_, Some(why)) => Some(start_cold(facts, job, &why)),
        (None, None) if status::waiting_for_program(facts.pod.as_deref()) => {
            let pod = facts.pod.as_deref().map(|p| p.name.clone()).unwrap_or_default();
            let steps = vec![Step::Deliver(Box::new(Delivery::to(pod, objects::delivery(execution, program))))];
            Some(Decision::done(steps, Action::requeue(IN_FLIGHT_RESYNC)))
        }
        _ => None,
    }
}

/// The program never reached the warm pod: its Job goes, and the run
/// starts over cold, once.
fn start_cold(facts: &Facts, job: Option<&JobRecord>, why: &str) -> Decision {
    // The verdict first, on the version read: should it lose to another
    // write, the warm Job must still be there for the next look, or that
    // look would take the run for one whose Job was deleted.
    let mut steps = vec![Step::WriteStatus(Box::new(status::warm_start_failed(facts.execution, why, &facts.now)))];
    steps.extend(job.map(|job| Step::DeleteJob(job.clone())));
    steps.push(Step::Publish(Notice {
        type_: EventType::Warning,
        reason: "WarmStartFailed".into(),
        note: format!("starting cold: {why}"),
    }));
    steps.push(Step::CountWarmFallback);
    Decision::done(steps, Action::await_change())
}

/// Stops the run (the Job goes, and its pod with it) and records why.
fn cancel(facts: &Facts, previous: &ExecutionStatus) -> Decision {
    let execution = facts.execution;
    let mut steps = match &facts.job {
        Some(JobSlot::Held(job)) if owned_by(job, execution) => vec![Step::DeleteJob(job.as_ref().clone())],
        // Not in the store yet: the Job has this run's name, and a Job of
        // an earlier same-named run would have been forgotten, not missing.
        Some(_) => Vec::new(),
        None => vec![Step::DeleteJob(JobRecord { name: child_name(&execution.name_any()), ..Default::default() })],
    };
    write_and_announce(&mut steps, previous, status::cancelled(execution, &facts.now));
    expire(facts, steps)
}

fn reject(facts: &Facts, message: String) -> Decision {
    let next = status::invalid_spec(facts.execution, message.clone(), &facts.now);
    let counted = finished_labels(&next);
    let steps = vec![
        Step::WriteStatus(Box::new(next)),
        Step::Publish(Notice { type_: EventType::Warning, reason: "InvalidSpec".into(), note: message }),
        Step::CountFinished(counted),
    ];
    // The spec is immutable: nothing will change this verdict.
    Decision::done(steps, Action::await_change())
}

/// Ends a run the operator gave up waiting for: the terminal status says
/// why, then its Job goes (and its pod with it, once a kubelet acts).
fn end_run(
    facts: &Facts,
    previous: &ExecutionStatus,
    mut steps: Vec<Step>,
    job: Option<&JobRecord>,
    ended: ExecutionStatus,
) -> Decision {
    // The verdict first: written against the copy read, it cannot land on
    // a result that came in meanwhile (409), and then the Job must stay.
    let why = Why::Overdue(ended.reason.clone().unwrap_or_default());
    write_and_announce(&mut steps, previous, ended);
    if let Some(job) = job.filter(|job| owned_by(job, facts.execution)) {
        steps.push(Step::DeleteJob(job.clone()));
    }
    expire(facts, steps).because(why)
}

/// Waits for a Job in the way (not this run's) to go, but not past the
/// run's start bound.
fn wait_for_job_in_the_way(facts: &Facts, config: &OperatorConfig, previous: &ExecutionStatus) -> Decision {
    let (allowance, grace) = (config.startup_allowance_seconds, config.result_grace_seconds);
    match status::overdue(facts.execution, previous, allowance, grace, &facts.now) {
        Ok(ended) => end_run(facts, previous, Vec::new(), None, ended),
        Err(left) => Decision::done(Vec::new(), Action::requeue(left.min(IN_THE_WAY_RETRY))),
    }
}

/// Deletes a finished Execution once its `ttlSecondsAfterFinished` has
/// passed, reading the status this reconcile started from.
fn expire(facts: &Facts, mut steps: Vec<Step>) -> Decision {
    let execution = facts.execution;
    let (Some(ttl), Some(finished)) =
        (execution.spec.ttl_seconds_after_finished, execution.status.as_ref().and_then(|s| s.completion_time.as_ref()))
    else {
        return Decision::done(steps, Action::await_change());
    };
    let due = finished.0.saturating_add(SignedDuration::from_secs(i64::from(ttl))).unwrap_or(finished.0);
    let left = facts.now.0.duration_until(due);
    if left.is_positive() {
        return Decision::done(steps, Action::requeue(left.unsigned_abs()));
    }
    steps.push(Step::DeleteExecution);
    Decision::done(steps, Action::await_change())
}

fn write_if_worth_it(steps: &mut Vec<Step>, previous: &ExecutionStatus, next: ExecutionStatus) {
    if status::worth_writing(previous, &next) {
        write_and_announce(steps, previous, next);
    }
}

/// The status write, then the Event and count for a phase change.
fn write_and_announce(steps: &mut Vec<Step>, previous: &ExecutionStatus, next: ExecutionStatus) {
    let changed = previous.phase != next.phase;
    let notice = changed.then(|| notice_of(&next));
    let counted = (changed && next.is_terminal()).then(|| finished_labels(&next));
    steps.push(Step::WriteStatus(Box::new(next)));
    steps.extend(notice.map(Step::Publish));
    steps.extend(counted.map(Step::CountFinished));
}

fn notice_of(next: &ExecutionStatus) -> Notice {
    let note = next.message.clone().unwrap_or_else(|| next.phase.as_str().to_owned());
    let reason = next.reason.clone().unwrap_or_else(|| next.phase.as_str().to_owned());
    let type_ = match next.phase {
        Phase::Failed | Phase::TimedOut | Phase::Cancelled => EventType::Warning,
        _ => EventType::Normal,
    };
    Notice { type_, reason, note }
}

fn finished_labels(status: &ExecutionStatus) -> PhaseLabels {
    PhaseLabels { phase: status.phase.as_str().to_owned(), reason: status.reason.clone().unwrap_or_default() }
}

fn spec_bytes(execution: &Execution) -> usize {
    serde_json::to_vec(&execution.spec).map(|v| v.len()).unwrap_or(0)
}
