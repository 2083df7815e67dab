//! The share stack, written once, in request order.

use std::{sync::Arc, time::Duration};

use liaison_connectors::Registry;
use liaison_ledger::Ledger;
use tower::{ServiceBuilder, util::BoxCloneSyncService};

use crate::alerts::Alerts;

use super::{
    Refused, ShareCall, Shared,
    audit::AuditLayer,
    authorize::{AuthorizeLayer, PolicyHandle},
    fetch::Fetch,
    minimise::MinimiseLayer,
    validate::ValidateLayer,
};

/// The assembled share stack: cheap to clone, one per RPC call.
pub type ShareStack = BoxCloneSyncService<ShareCall, Shared, Refused>;

/// What the share stack needs.
#[derive(Debug, Clone)]
pub struct ShareStackBuilder {
    /// The audit ledger.
    pub ledger: Arc<Ledger>,
    /// The current policy.
    pub policy: PolicyHandle,
    /// The connectors.
    pub registry: Arc<Registry>,
    /// The most time one connector may take.
    pub connector_deadline: Duration,
    /// Where break-glass alerts go once their entries are durable.
    pub alerts: Alerts,
}

impl ShareStackBuilder {
    /// Builds the stack. Audit is outermost so that invalid requests and
    /// denials are recorded too; minimisation sits outside fetch so it
    /// always runs in the gateway, whatever a connector did.
    pub fn build(self) -> ShareStack {
        let stack = ServiceBuilder::new()
            .layer(AuditLayer::new(self.ledger).with_alerts(self.alerts))
            .layer(ValidateLayer)
            .layer(AuthorizeLayer::new(self.policy))
            .layer(MinimiseLayer)
            .service(Fetch::new(self.registry, self.connector_deadline));
        BoxCloneSyncService::new(stack)
    }
}
