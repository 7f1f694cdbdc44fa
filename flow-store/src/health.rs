//! `grpc.health.v1.Health` for the flow store, and the process's readiness.
//!
//! The store reports SERVING (for the whole server, `""`, and for `flowtap.v1.FlowStore`)
//! while its database answers a cheap query, asked every [`CHECK_INTERVAL`]; NOT_SERVING while
//! it does not (PostgreSQL down or unreachable), and for good once shutdown starts (Watch
//! streams then end, so that the server can stop). The
//! process's readiness (`/readyz` of `--metrics`) follows the same state.

use std::time::Duration;

use tokio::task::JoinHandle;
use tonic::server::NamedService as _;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::Store;
use crate::server::FlowStoreService;

/// How often the database is asked whether it answers.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// How long one check may take before the database counts as unreachable.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(1500);

/// The services whose status is reported: the whole server and the FlowStore service.
const SERVICES: [&str; 2] = [
    "",
    <flowtap_proto::v1::flow_store_server::FlowStoreServer<FlowStoreService>>::NAME,
];

/// The health service's state, checked in the background until [`Health::shut_down`].
#[derive(Debug)]
pub struct Health {
    reporter: HealthReporter,
    checks: JoinHandle<()>,
}

impl Health {
    /// Starts NOT_SERVING and checks `store` at once, then every [`CHECK_INTERVAL`]. Returns
    /// the state and the tonic service to add to the server. Call inside a tokio runtime.
    pub fn start(
        store: Store,
    ) -> (
        Health,
        tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    ) {
        let (reporter, service) = tonic_health::server::health_reporter();
        let checks = tokio::spawn(check_forever(store, reporter.clone()));
        (Health { reporter, checks }, service)
    }

    /// Shutdown started: NOT_SERVING from now on, whatever the database does. Watch streams
    /// get NOT_SERVING and then end, so that they do not hold up the server's graceful stop.
    pub async fn shut_down(mut self) {
        self.checks.abort();
        report(&self.reporter, false).await;
        // Dropping a status's sender ends its Watch streams once they have sent the last value.
        for service in SERVICES {
            self.reporter.clear_service_status(service).await;
        }
        // Checks made while the server drains still answer NOT_SERVING.
        report(&self.reporter, false).await;
    }
}

async fn check_forever(store: Store, reporter: HealthReporter) {
    // health_reporter() starts "" as SERVING: nothing is known yet.
    report(&reporter, false).await;
    let mut serving = None;
    let mut ticks = tokio::time::interval(CHECK_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let answer = tokio::time::timeout(CHECK_TIMEOUT, store.check()).await;
        let up = matches!(answer, Ok(Ok(())));
        if serving == Some(up) {
            continue;
        }
        match answer {
            Ok(Ok(())) => tracing::info!("the database answers: SERVING"),
            Ok(Err(error)) => tracing::warn!(%error, "the database does not answer: NOT_SERVING"),
            Err(_) => {
                tracing::warn!("the database did not answer within {CHECK_TIMEOUT:?}: NOT_SERVING")
            }
        }
        report(&reporter, up).await;
        serving = Some(up);
    }
}

async fn report(reporter: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for service in SERVICES {
        reporter.set_service_status(service, status).await;
    }
    flowtap_telemetry::set_ready(serving);
}
