//! `SharingService`: turns each RPC into a [`ShareCall`] for the share stack
//! and its answer back into a response carrying the audit receipt.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use liaison_policy::Action;
use liaison_proto::v1::{self as pb, sharing_service_server::SharingService};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tower::ServiceExt;

use crate::{
    authn,
    error::GatewayError,
    share::{
        Operation, Payload, Refused, Resume, ShareCall, ShareStack, authorize::PolicyHandle,
        validate,
    },
    status,
    subscription::{Started, Subscriptions},
};

/// What the transport knows about the caller of one RPC.
#[derive(Debug)]
struct Caller {
    principal: Arc<crate::identity::Principal>,
    client_address: String,
    trace_id: String,
    deadline: Option<Duration>,
}

impl Caller {
    fn of<T>(request: &Request<T>) -> Result<Self, Status> {
        Ok(Self {
            principal: authn::principal(request)?,
            client_address: crate::tls::peer(request.extensions())
                .remote_addr
                .map(|a| a.to_string())
                .unwrap_or_default(),
            trace_id: crate::telemetry::current_trace_id()
                .unwrap_or_else(|| trace_id(request.metadata())),
            deadline: grpc_timeout(request.metadata()),
        })
    }
}

/// The sharing service.
#[derive(Debug, Clone)]
pub struct Sharing {
    stack: ShareStack,
    policy: PolicyHandle,
    titles: Arc<BTreeMap<String, String>>,
    subscriptions: Subscriptions,
}

impl Sharing {
    /// Serves shares through `stack` and subscriptions through
    /// `subscriptions`; `titles` names each dataset served.
    pub fn new(
        stack: ShareStack,
        policy: PolicyHandle,
        titles: BTreeMap<String, String>,
        subscriptions: Subscriptions,
    ) -> Self {
        Self {
            stack,
            policy,
            titles: Arc::new(titles),
            subscriptions,
        }
    }

    async fn share(
        &self,
        caller: Caller,
        method: &'static str,
        action: Action,
        context: Option<pb::ShareContext>,
        operation: Operation,
    ) -> Result<(Payload, pb::Receipt), Status> {
        let call = ShareCall {
            principal: caller.principal,
            method,
            action,
            context,
            operation,
            client_address: caller.client_address,
            trace_id: caller.trace_id,
            deadline: caller.deadline,
        };
        match self.stack.clone().oneshot(call).await {
            Ok(shared) => Ok((shared.payload, shared.receipt)),
            Err(Refused { error, receipt }) => Err(status::refusal(error, receipt.as_ref())),
        }
    }
}

#[tonic::async_trait]
impl SharingService for Sharing {
    async fn list_datasets(
        &self,
        request: Request<pb::ListDatasetsRequest>,
    ) -> Result<Response<pb::ListDatasetsResponse>, Status> {
        let principal = authn::principal(&request)?;
        let purpose = request.into_inner().purpose;
        let engine = self.policy.borrow().clone();
        let grants = engine
            .grants_for(
                &principal.agency,
                &principal.roles,
                time::OffsetDateTime::now_utc(),
            )
            .into_iter()
            .filter(|g| purpose.is_empty() || g.purposes.contains(&purpose))
            .map(|g| pb::DatasetGrant {
                title: self.titles.get(&g.dataset).cloned().unwrap_or_default(),
                dataset_id: g.dataset,
                provider_agency_id: g.provider,
                isa_id: g.isa_id,
                isa_version: g.isa_version,
                purposes: g.purposes,
                actions: g.actions.iter().map(|a| a.to_string()).collect(),
                fields: g.fields.paths().map(str::to_owned).collect(),
                legal_basis: g.legal_basis,
            })
            .collect();
        Ok(Response::new(pb::ListDatasetsResponse { grants }))
    }

    async fn search_persons(
        &self,
        request: Request<pb::SearchPersonsRequest>,
    ) -> Result<Response<pb::SearchPersonsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let (payload, receipt) = self
            .share(
                caller,
                "/liaison.v1.SharingService/SearchPersons",
                Action::Search,
                r.context,
                Operation::Search {
                    query: r.query,
                    dataset_ids: r.dataset_ids,
                    page_size: r.page_size,
                },
            )
            .await?;
        match payload {
            Payload::Search { matches, gaps } => Ok(Response::new(pb::SearchPersonsResponse {
                matches,
                gaps,
                receipt: Some(receipt),
            })),
            Payload::Read { .. } | Payload::Subscribed { .. } => {
                Err(GatewayError::internal("search answered with records").into())
            }
        }
    }

    async fn get_records(
        &self,
        request: Request<pb::GetRecordsRequest>,
    ) -> Result<Response<pb::GetRecordsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let r = request.into_inner();
        let (payload, receipt) = self
            .share(
                caller,
                "/liaison.v1.SharingService/GetRecords",
                Action::Read,
                r.context,
                Operation::Read {
                    person_id: r.person_id,
                    kinds: r.kinds,
                },
            )
            .await?;
        match payload {
            Payload::Read {
                person,
                records,
                gaps,
            } => Ok(Response::new(pb::GetRecordsResponse {
                person,
                records,
                gaps,
                receipt: Some(receipt),
            })),
            Payload::Search { .. } | Payload::Subscribed { .. } => {
                Err(GatewayError::internal("read answered with matches").into())
            }
        }
    }

    type SubscribeStream =
        std::pin::Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = Caller::of(&request)?;
        let slot = self
            .subscriptions
            .admit(&caller.principal.agency)
            .await
            .map_err(Status::from)?;
        let mut r = request.into_inner();
        // Every entry of one subscription carries the same correlation id.
        if let Some(c) = r.context.as_mut()
            && c.correlation_id.is_empty()
        {
            c.correlation_id = uuid::Uuid::now_v7().to_string();
        }
        let isa_id = r
            .context
            .as_ref()
            .map(|c| c.isa_id.trim())
            .unwrap_or_default();
        let resume = if r.resume_cursor.is_empty() {
            Resume::Now
        } else {
            match self
                .subscriptions
                .key()
                .open(&caller.principal.agency, isa_id, &r.resume_cursor)
            {
                Ok(cursor) => Resume::From(cursor),
                Err(why) => Resume::Forged(why),
            }
        };
        let call = ShareCall {
            principal: caller.principal,
            method: "/liaison.v1.SharingService/Subscribe",
            action: Action::Subscribe,
            context: r.context,
            operation: Operation::Subscribe {
                person_ids: r.person_ids,
                resume,
            },
            client_address: caller.client_address,
            trace_id: caller.trace_id,
            deadline: caller.deadline,
        };
        let shared = match self.stack.clone().oneshot(call.clone()).await {
            Ok(shared) => shared,
            Err(Refused { error, receipt }) => {
                return Err(status::refusal(error, receipt.as_ref()));
            }
        };
        let Payload::Subscribed { plan, cursors, .. } = shared.payload else {
            return Err(GatewayError::internal("subscription answered with data").into());
        };
        // The stack validated this call already; validation is pure, so
        // this yields the same share for the subscription to re-decide.
        let validated = validate::validate(call).map_err(Status::from)?;
        let stream = self.subscriptions.run(Started {
            validated,
            plan,
            cursors,
            slot,
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The caller's deadline from the `grpc-timeout` header (e.g. `500m`).
fn grpc_timeout(meta: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let value = meta.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The trace id from a W3C `traceparent` header, if the caller sent one.
fn trace_id(meta: &tonic::metadata::MetadataMap) -> String {
    meta.get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('-').nth(1))
        .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .unwrap_or_default()
}
