//! Assembling a running gateway: the ledger, policy, connectors and trust
//! registry from configuration, and the transport stack in request order.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use crate::admission::AdmissionLayer;
use liaison_connectors::{ConnectorConfig, Registry};
use liaison_ledger::{Ledger, Sealer, SealerHandle, SealerOptions};
use liaison_policy::{PolicyEngine, PolicySet};
use liaison_proto::v1::{
    admin_service_server::AdminServiceServer, oversight_service_server::OversightServiceServer,
    sharing_service_server::SharingServiceServer,
};
use tokio::{net::TcpListener, task::JoinHandle};
use tower::ServiceBuilder;

use crate::{
    authn::AuthnLayer,
    config::{Config, resolve_sqlite_url},
    identity::TrustRegistry,
    services::{admin::Admin, oversight::Oversight, sharing::Sharing},
    share::ShareStackBuilder,
    subscription::Subscriptions,
    tls::Acceptor,
};

/// Streams one connection may have open at once; tonic would otherwise
/// lift hyper's cap entirely.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The ledger could not be opened; without it nothing may be shared.
    #[error("cannot open the audit ledger: {0}")]
    Ledger(#[from] liaison_ledger::LedgerError),
    /// The policy file is unreadable or invalid.
    #[error("cannot load policy from `{path}`: {message}")]
    Policy {
        /// The policy file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A connector could not be built.
    #[error("cannot start connectors: {0}")]
    Connectors(#[from] liaison_connectors::ConnectorError),
    /// The listener could not be bound or served.
    #[error("cannot listen on `{addr}`: {message}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        message: String,
    },
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Any other start-up fault.
    #[error("{0}")]
    Other(String),
}

/// A gateway serving on a socket.
#[derive(Debug)]
pub struct Running {
    /// The address actually bound.
    pub addr: SocketAddr,
    /// The ledger, for tools and tests.
    pub ledger: Arc<Ledger>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    sealer: Option<SealerHandle>,
    telemetry: Option<crate::telemetry::Telemetry>,
    tls: Option<(Acceptor, JoinHandle<()>)>,
}

impl Running {
    /// Stops accepting, lets in-flight calls finish, and waits.
    pub async fn shutdown(mut self) -> Result<(), StartError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.wait().await
    }

    /// Waits until the server stops, then stops the sealer cleanly so a
    /// standby replica can take over at once.
    pub async fn wait(mut self) -> Result<(), StartError> {
        let served = match (&mut self.task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StartError::Other(e.to_string())),
            Err(e) => Err(StartError::Other(e.to_string())),
        };
        if let Some(sealer) = self.sealer.take() {
            sealer.shutdown().await;
        }
        if let Some((_, watch)) = self.tls.take() {
            watch.abort();
        }
        if let Some(telemetry) = self.telemetry.take() {
            telemetry.shutdown().await;
        }
        served
    }

    /// What certificate reloading has done; `None` without `[server.tls]`.
    pub fn tls_status(&self) -> Option<crate::tls::ReloadStatus> {
        self.tls.as_ref().map(|(acceptor, _)| acceptor.status())
    }

    /// Sends every finished span to the collector now, rather than when the
    /// batch falls due.
    pub async fn flush_telemetry(&self) {
        if let Some(telemetry) = &self.telemetry {
            telemetry.flush().await;
        }
    }

    /// What this replica's sealer is doing; `None` when it has no signing
    /// key.
    pub fn sealer_status(&self) -> Option<liaison_ledger::SealerStatus> {
        self.sealer.as_ref().map(SealerHandle::status)
    }
}

/// Loads the policy file named by the configuration.
pub async fn load_policy(config: &Config) -> Result<PolicyEngine, StartError> {
    let path = config.policy_path();
    let err = |message: String| StartError::Policy {
        path: path.display().to_string(),
        message,
    };
    let text = tokio::fs::read_to_string(&path)
        .await
        .map_err(|e| err(e.to_string()))?;
    let set = PolicySet::from_toml(&text).map_err(|e| err(e.to_string()))?;
    PolicyEngine::compile(&set).map_err(|e| err(e.to_string()))
}

/// Starts a gateway on `listener` (or on the configured address when
/// `None`), and runs until [`Running::shutdown`] or `stop` resolves.
pub async fn start(
    config: Config,
    listener: Option<TcpListener>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Running, StartError> {
    let config = Arc::new(config);
    let telemetry = match &config.telemetry {
        Some(tc) => Some(
            crate::telemetry::start(tc, &config.base_dir)
                .map_err(|e| StartError::Other(e.to_string()))?,
        ),
        None => None,
    };
    let ledger = Arc::new(Ledger::connect(&config.ledger_url()).await?);
    if let Some(metrics) = crate::telemetry::metrics() {
        metrics.observe_ledger(ledger.clone());
    }
    let admin_listener = match (
        &telemetry,
        config.telemetry.as_ref().and_then(|t| t.admin_listen),
    ) {
        (Some(telemetry), Some(addr)) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| StartError::Listen {
                    addr,
                    message: e.to_string(),
                })?;
            tracing::info!(addr = %addr, "admin listener serving /metrics, /healthz, /readyz");
            let router = crate::telemetry::admin::router(telemetry.clone(), ledger.clone());
            Some(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::error!(error = %e, "admin listener stopped");
                }
            }))
        }
        _ => None,
    };
    let keys = config.ledger_keys().map_err(StartError::Other)?;
    let policy_path = config.policy_path();
    let policy_err = |message: String| StartError::Policy {
        path: policy_path.display().to_string(),
        message,
    };
    let store = crate::agreements::AgreementStore::open(&config.ledger_url())
        .await
        .map_err(|e| policy_err(e.to_string()))?;
    crate::agreements::backfill_with(&ledger, &store)
        .await
        .map_err(|e| StartError::Other(e.to_string()))?;
    let (source, policy) =
        crate::agreements::PolicySource::start(store.clone(), ledger.clone(), policy_path.clone())
            .await
            .map_err(|e| policy_err(e.to_string()))?;
    let reloader = source
        .spawn(Duration::from_millis(
            *config.policy.reload_interval_ms.get_ref(),
        ))
        .await;
    let connectors: Vec<ConnectorConfig> = config
        .connectors
        .iter()
        .cloned()
        .map(|mut c| {
            c.resolve_paths(&config.base_dir);
            if let ConnectorConfig::Sql(sql) = &mut c {
                sql.url = resolve_sqlite_url(&sql.url, &config.base_dir);
            }
            c
        })
        .collect();
    let registry = Arc::new(Registry::from_configs(&connectors).await?);
    if let Some(metrics) = crate::telemetry::metrics() {
        metrics.observe_connectors(registry.clone());
    }
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| StartError::Other(format!("cannot build the HTTP client: {e}")))?;
    let trust = Arc::new(
        TrustRegistry::from_config(&config, http).map_err(|e| StartError::Other(e.to_string()))?,
    );
    // The file's issuers are imported into the trust registry, and the
    // registry's committed versions are what this replica trusts.
    let issuer_store = crate::identity::store::IssuerStore::beside(&store)
        .await
        .map_err(|e| StartError::Other(e.to_string()))?;
    let issuer_source = crate::identity::source::IssuerSource::start(
        issuer_store.clone(),
        &ledger,
        &config,
        &trust,
    )
    .await
    .map_err(|e| StartError::Other(format!("trust registry: {e}")))?;
    let issuer_reloader = issuer_source
        .spawn(Duration::from_millis(
            *config.policy.reload_interval_ms.get_ref(),
        ))
        .await;

    let console = match &config.console {
        Some(cc) => {
            let state = crate::console::ConsoleState::new(cc, &config, trust.clone())
                .map_err(|e| StartError::Other(e.to_string()))?
                .with_ledger(ledger.clone())
                .with_policy(policy.clone());
            let listener = TcpListener::bind(cc.listen)
                .await
                .map_err(|e| StartError::Listen {
                    addr: cc.listen,
                    message: e.to_string(),
                })?;
            tracing::info!(addr = %cc.listen, "console serving");
            Some(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, crate::console::router(state)).await {
                    tracing::error!(error = %e, "console stopped");
                }
            }))
        }
        None => None,
    };

    let alerts = crate::alerts::Alerts::start(config.alerts.as_ref(), &config.base_dir)
        .map_err(|e| StartError::Other(e.to_string()))?;
    let stack = ShareStackBuilder {
        ledger: ledger.clone(),
        policy: policy.clone(),
        registry: registry.clone(),
        connector_deadline: Duration::from_millis(config.server.connector_deadline_ms),
        alerts,
    }
    .build();
    let titles: BTreeMap<String, String> = registry
        .iter()
        .map(|c| (c.descriptor().id.clone(), c.descriptor().title.clone()))
        .collect();
    let max = config.server.max_message_bytes;
    let cursor_key = config
        .subscriptions
        .cursor_key(&config.base_dir)
        .map_err(StartError::Other)?;
    let subscriptions = Subscriptions::new(
        config.subscriptions.clone(),
        cursor_key,
        ledger.clone(),
        registry.clone(),
        policy.clone(),
        Duration::from_millis(config.server.connector_deadline_ms),
    );
    let draining = subscriptions.clone();
    let sharing =
        SharingServiceServer::new(Sharing::new(stack, policy.clone(), titles, subscriptions))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
    let oversight = OversightServiceServer::new(Oversight::new(ledger.clone(), keys.ring.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let admin = AdminServiceServer::new(Admin::new(
        config.clone(),
        policy.clone(),
        crate::services::admin::Register {
            store,
            ledger: ledger.clone(),
            reloader,
        },
        crate::services::admin::Trust {
            store: issuer_store,
            registry: trust.clone(),
            reloader: issuer_reloader,
        },
    ))
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<SharingServiceServer<Sharing>>()
        .await;
    health_reporter
        .set_serving::<OversightServiceServer<Oversight>>()
        .await;
    health_reporter
        .set_serving::<AdminServiceServer<Admin>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(liaison_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| StartError::Other(format!("cannot build reflection: {e}")))?;

    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(config.server.listen)
            .await
            .map_err(|e| StartError::Listen {
                addr: config.server.listen,
                message: e.to_string(),
            })?,
    };
    let addr = listener.local_addr().map_err(|e| StartError::Listen {
        addr: config.server.listen,
        message: e.to_string(),
    })?;

    // The transport stack, in request order.
    let transport = ServiceBuilder::new()
        .layer(crate::telemetry::TraceLayer)
        .layer(AuthnLayer::new(trust, ledger.clone()))
        .layer(AdmissionLayer::new(
            &config.server.limits,
            config.agencies.iter().map(|a| a.id.get_ref().as_str()),
        ));
    let router = tonic::transport::Server::builder()
        .timeout(Duration::from_millis(config.server.request_timeout_ms))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .http2_max_header_list_size(Some(16 * 1024))
        .max_frame_size(Some(16 * 1024))
        // h2's defaults, stated: a peer that resets 20 streams before they
        // are accepted, or makes the server reset 256 of its streams, gets
        // GOAWAY. Resets of accepted streams are budgeted in `transport.rs`.
        .http2_max_pending_accept_reset_streams(Some(20))
        .http2_max_local_error_reset_streams(Some(256))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .layer(transport)
        .add_service(health)
        .add_service(reflection)
        .add_service(sharing)
        .add_service(oversight)
        .add_service(admin);

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        tokio::select! {
            _ = rx => {}
            () = stop => {}
        }
        draining.drain();
        health_reporter
            .set_not_serving::<SharingServiceServer<Sharing>>()
            .await;
        if let Some(console) = console {
            console.abort();
        }
        if let Some(admin) = admin_listener {
            admin.abort();
        }
    };
    let mut tls = None;
    let task = match &config.server.tls {
        Some(tls_config) => {
            let acceptor = Acceptor::new(tls_config, config.tls_agencies(), &config.base_dir)?;
            if let Some(metrics) = crate::telemetry::metrics() {
                metrics.observe_tls(acceptor.clone());
            }
            tls = Some((acceptor.clone(), acceptor.watch()));
            tokio::spawn(router.serve_with_incoming_shutdown(acceptor.incoming(listener), signal))
        }
        None => {
            // The same deadline and reset budget as over TLS; `accept`
            // also sets `TCP_NODELAY`, which tonic's own setting does not
            // reach on connections it is handed.
            let incoming = crate::transport::accept(listener, |mut tcp, _remote| async move {
                crate::transport::read_preface(&mut tcp).await?;
                Ok(crate::transport::Guarded::new(tcp))
            });
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, signal))
        }
    };
    let sealer = keys.signing.map(|key| {
        let mut options = SealerOptions::default();
        options.interval = Duration::from_millis(*config.ledger.seal_interval_ms.get_ref());
        options.witness = config.witness_path();
        tracing::info!(key_id = %key.key_id(), "ledger sealer standing by");
        Sealer::spawn_with((*ledger).clone(), key, options)
    });
    tracing::info!(%addr, "gateway serving");
    Ok(Running {
        addr,
        ledger,
        shutdown: Some(tx),
        task,
        sealer,
        telemetry,
        tls,
    })
}
