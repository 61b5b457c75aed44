//! One reconcile of one Execution, in three steps: [`gather`] reads what
//! the decision needs (stores first, the API server only where a store
//! cannot answer), [`decide`] turns it into steps (pure, table-tested),
//! [`act`] performs them. A step that teaches something (the Job just
//! made, or why the API server refused it) sends the reconcile back to
//! `decide` with it.

mod act;
mod decide;
mod gather;

#[cfg(test)]
mod act_tests;
#[cfg(test)]
mod decide_tests;

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use sandrun_crds::Execution;
use tracing::{info, instrument, warn};

use crate::config::OperatorConfig;
use crate::delivery::Deliveries;
use crate::error::{is_conflict, Error, Result};
use crate::events::EventQueue;
use crate::metrics::{ErrorLabels, Metrics};
use crate::store::{JobSlot, Stores};
use act::{act, Learned};
use decide::{decide, Then, Why};
use gather::{gather, observe_job};

const TRANSIENT_RETRY: Duration = Duration::from_secs(5);
/// After a status write lost to a newer version: the watch brings that
/// version within milliseconds.
const STALE_RETRY: Duration = Duration::from_millis(500);

pub struct Context {
    pub client: Client,
    pub config: OperatorConfig,
    pub events: EventQueue,
    pub metrics: Metrics,
    pub stores: Stores,
    pub deliveries: Deliveries,
}

#[instrument(skip_all, fields(namespace = execution.namespace().unwrap_or_default(), execution = execution.name_any()))]
pub async fn reconcile(execution: Arc<Execution>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciles.inc();
    let timer = std::time::Instant::now();
    let result = reconcile_execution(&execution, &ctx).await;
    ctx.metrics.reconcile_seconds.observe(timer.elapsed().as_secs_f64());
    result
}

pub fn error_policy(execution: Arc<Execution>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Error::WriteStatus { source, .. } = error {
        if is_conflict(source) {
            // The copy this reconcile read was stale: look again at once,
            // from a store that has caught up.
            info!(execution = execution.name_any(), "status changed since it was read; reconciling again");
            ctx.metrics.failures.get_or_create(&ErrorLabels { error: "stale_status".to_owned() }).inc();
            return Action::requeue(STALE_RETRY);
        }
    }
    warn!(execution = execution.name_any(), %error, "reconcile failed; retrying");
    ctx.metrics.failures.get_or_create(&ErrorLabels { error: error.kind().to_owned() }).inc();
    Action::requeue(TRANSIENT_RETRY)
}

async fn reconcile_execution(execution: &Execution, ctx: &Context) -> Result<Action> {
    let mut facts = gather(execution, ctx).await?;
    loop {
        let decision = decide(&facts, &ctx.config);
        match &decision.why {
            Some(Why::Waiting(why)) => info!(why),
            Some(Why::Overdue(reason)) => warn!(reason, "run overdue; ending it"),
            None => {}
        }
        let learned = act(ctx, execution, &facts.namespace, decision.steps).await?;
        match (decision.then, learned) {
            (Then::Done(action), _) => return Ok(action),
            (Then::DecideAgain, Some(Learned::Created(job))) => {
                facts.job = Some(JobSlot::Held(job));
                observe_job(ctx, &mut facts).await?;
            }
            (Then::DecideAgain, Some(Learned::Refused(why))) => facts.refused = Some(why),
            (_, Some(Learned::Bound)) => return Ok(Action::requeue(decide::IN_FLIGHT_RESYNC)),
            (Then::DecideAgain, Some(Learned::ClaimLost)) => {
                facts.warm = gather::take_warm(ctx, execution, &facts.namespace);
            }
            // Not reached: only a step that feeds back asks for another
            // decision. Should one not, looking again later is safe.
            (Then::DecideAgain, None) => return Ok(Action::requeue(TRANSIENT_RETRY)),
        }
    }
}
