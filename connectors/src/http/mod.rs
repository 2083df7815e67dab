//! The JSON over HTTP connector (`kind = "json-http"`): a remote API read
//! through a declarative [`Mapping`] whose fields are JSON pointers.
//!
//! Everything the connector sends is built from its configuration: the
//! host is the configured `base_url`'s and never another (redirects are not
//! followed, and next-page links to another origin are refused), caller
//! values only ever fill a path segment or a query parameter,
//! percent-encoded, and credentials come from the environment or a file,
//! never the configuration text. Answers are read up to a byte cap and must
//! be JSON; anything else is a contained error, and malformed items are
//! skipped and reported like malformed rows.

mod dialect;
#[cfg(feature = "fuzzing")]
mod fuzzing;

use std::path::PathBuf;
use std::time::Duration;

use liaison_proto::v1::{Person, RecordKind};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;
use tracing::Instrument;
use url::Url;

use self::dialect::{ChangesPlan, Json, Request};
#[cfg(feature = "fuzzing")]
pub use self::fuzzing::FuzzRead;
use crate::config::{identity_problems, load_mapping};
use crate::error::excerpt;
use crate::map::assemble::{self, Read};
use crate::map::compile::{self, Part, Plan, Template};
use crate::map::params::Param;
use crate::map::reader::{MAX_SOURCE_ID_BYTES, RowReader};
use crate::map::row::JsonRow;
use crate::map::search::SearchTerms;
use crate::mapping::{Mapping, Pagination, SourceIdType};
use crate::resilience::ResilienceConfig;
use crate::{
    BoxFuture, Change, ChangeCursor, Changes, Connector, ConnectorError, DatasetDescriptor,
    Fetched, Found, PersonQuery, RowProblem,
};

const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;
const DEFAULT_MAX_PAGES: usize = 10;
const DEFAULT_PAGE_SIZE: usize = 50;

/// A JSON over HTTP connector's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonHttpConfig {
    /// The dataset id: lower-case letters, digits, `-`, `_` and `.`.
    pub id: String,
    /// The id of the agency that holds the data.
    pub agency: String,
    /// A human-readable title for the dataset.
    pub title: String,
    /// The legacy system's name, for provenance.
    pub system: String,
    /// The API's root, such as `https://health.example/api/v2`. Every
    /// request goes to this scheme, host and port, under this path.
    pub base_url: String,
    /// Headers sent with every request, typically credentials; each value
    /// is read from an environment variable or a file when the connector is
    /// built, so no secret sits in the configuration.
    #[serde(default)]
    pub headers: Vec<HeaderSource>,
    /// The largest answer read, in bytes; larger ones are refused.
    /// Defaults to 1 MiB.
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
    /// How long to wait for a connection, in milliseconds. Defaults to
    /// 2000; the call's deadline (`resilience.deadline_ms`) bounds the rest.
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// The mapping, inline.
    #[serde(default)]
    pub mapping: Option<Mapping>,
    /// The mapping in a file of its own, relative to the file this
    /// configuration was read from.
    #[serde(default)]
    pub mapping_file: Option<PathBuf>,
    /// Deadline, concurrency, circuit breaker and retry settings.
    #[serde(default)]
    pub resilience: ResilienceConfig,
}

/// One header sent with every request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderSource {
    /// The header's name, such as `Authorization`.
    pub name: String,
    /// The environment variable holding the value.
    #[serde(default)]
    pub value_env: Option<String>,
    /// The file holding the value (trailing whitespace is dropped).
    #[serde(default)]
    pub value_file: Option<PathBuf>,
    /// Text put before the value, such as `Bearer `.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// A connector over a JSON API.
pub struct JsonHttpConnector {
    descriptor: DatasetDescriptor,
    plan: Plan<Json>,
    client: reqwest::Client,
    base: Url,
    headers: HeaderMap,
    max_response_bytes: usize,
    max_pages: usize,
    pagination: Option<Pagination>,
    changes: Option<ChangesPlan>,
}

impl std::fmt::Debug for JsonHttpConnector {
    // Header values are credentials; only the dataset and host are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonHttpConnector")
            .field("dataset", &self.descriptor.id)
            .field("host", &self.base.host_str())
            .finish_non_exhaustive()
    }
}

/// Where reading a list's pages has got to.
#[derive(Debug)]
struct Pager<'r> {
    request: &'r Request,
    /// The next page's URL, if there is one.
    next: Option<Url>,
    page_number: u64,
    pages_read: usize,
    /// Whether pages were left unread because of `max_pages`.
    more: bool,
}

impl JsonHttpConnector {
    /// Builds a connector from its configuration, reading `mapping_file`
    /// and header values. The API is not reached.
    pub async fn new(config: &JsonHttpConfig) -> Result<Self, ConnectorError> {
        let mapping = load_mapping(
            &config.id,
            config.mapping.as_ref(),
            config.mapping_file.as_deref(),
        )
        .await?;
        Self::with_mapping(config, &mapping)
    }

    /// Builds a connector with the given mapping, ignoring the config's own.
    pub fn with_mapping(
        config: &JsonHttpConfig,
        mapping: &Mapping,
    ) -> Result<Self, ConnectorError> {
        let mut problems =
            identity_problems(&config.id, &config.agency, &config.title, &config.system);
        problems.extend(config.resilience.problems());
        let base = match base_url(&config.base_url) {
            Ok(base) => Some(base),
            Err(why) => {
                problems.push(format!("base_url: {why}"));
                None
            }
        };
        let headers = read_headers(&config.headers, &mut problems);
        if config.max_response_bytes == Some(0) {
            problems.push("max_response_bytes: must be at least 1".into());
        }
        let plan = compile::compile::<Json>(mapping, &config.id, &config.agency, &config.system)
            .map_err(|found| problems.extend(found));
        let changes = mapping
            .changes
            .as_ref()
            .and_then(|m| dialect::changes(m, &mut problems));
        let (plan, base) = match (plan, base) {
            (Ok(plan), Some(base)) if problems.is_empty() => (plan, base),
            _ => {
                return Err(ConnectorError::InvalidConfig {
                    dataset: config.id.clone(),
                    problems,
                });
            }
        };
        let client = reqwest::Client::builder()
            // INVARIANT: no redirect is followed, so no answer can send the
            // connector (and its credentials) to another host.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_millis(
                config.connect_timeout_ms.unwrap_or(2_000),
            ))
            .build()
            .map_err(|e| ConnectorError::InvalidConfig {
                dataset: config.id.clone(),
                problems: vec![format!("cannot build the http client: {e}")],
            })?;
        let descriptor = DatasetDescriptor {
            id: config.id.clone(),
            agency: config.agency.clone(),
            title: config.title.clone(),
            system: config.system.clone(),
            record_kinds: plan.records.iter().map(|r| r.kind).collect(),
        };
        Ok(Self {
            descriptor,
            plan,
            client,
            base,
            headers,
            max_response_bytes: config
                .max_response_bytes
                .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
            max_pages: mapping.max_pages.unwrap_or(DEFAULT_MAX_PAGES),
            pagination: mapping.pagination.clone(),
            changes,
        })
    }

    fn dataset(&self) -> String {
        self.descriptor.id.clone()
    }

    fn bad(&self, request: &Request, reason: impl Into<String>) -> ConnectorError {
        ConnectorError::BadResponse {
            dataset: self.dataset(),
            request: request.name.clone(),
            reason: reason.into(),
        }
    }

    /// The URL of `request` with its placeholders filled by `value`; a
    /// query parameter whose placeholders are all absent is left out.
    fn url(
        &self,
        request: &Request,
        value: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Url, ConnectorError> {
        let mut url = self.base.clone();
        let mut segments = Vec::with_capacity(request.segments.len());
        for template in &request.segments {
            match render(template, value) {
                Some(segment) if !matches!(segment.as_str(), "" | "." | "..") => {
                    segments.push(segment);
                }
                _ => return Err(self.bad(request, "a path segment would be empty")),
            }
        }
        url.path_segments_mut()
            .map_err(|()| self.bad(request, "the base url cannot take a path"))?
            .pop_if_empty()
            .extend(segments);
        let pairs: Vec<(&str, String)> = request
            .query
            .iter()
            .filter_map(|(name, template)| Some((name.as_str(), render(template, value)?)))
            .collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        Ok(url)
    }

    /// GETs `url` and reads the answer as JSON; `None` when the source
    /// says it has no such resource (404).
    async fn get(&self, request: &Request, url: Url) -> Result<Option<Value>, ConnectorError> {
        // The URL may hold search terms, which are personal data: spans
        // name the request only.
        let span = tracing::debug_span!(
            "connector.http.request",
            dataset = %self.descriptor.id,
            request = %request.name,
            status = tracing::field::Empty,
            bytes = tracing::field::Empty,
        );
        async {
            // INVARIANT: every request goes to the configured origin.
            if url.origin() != self.base.origin() {
                return Err(self.bad(request, "a link points to another host"));
            }
            let mut builder = self
                .client
                .get(url)
                .headers(self.headers.clone())
                .header(ACCEPT, "application/json");
            if let Some(parent) = crate::trace::current() {
                builder = builder.header("traceparent", parent.as_str());
            }
            let mut response = builder.send().await.map_err(|e| self.unreachable(&e))?;
            let status = response.status();
            tracing::Span::current().record("status", status.as_u16());
            if status == reqwest::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if status.is_redirection() {
                return Err(self.bad(request, "redirects are not followed"));
            }
            if !status.is_success() {
                return Err(ConnectorError::HttpStatus {
                    dataset: self.dataset(),
                    request: request.name.clone(),
                    status: status.as_u16(),
                });
            }
            if let Some(kind) = response.headers().get(CONTENT_TYPE) {
                let kind = kind.to_str().unwrap_or_default().to_ascii_lowercase();
                if !kind.contains("json") {
                    return Err(self.bad(
                        request,
                        format!("the answer is `{}`, not json", excerpt(&kind, 40)),
                    ));
                }
            }
            let cap = self.max_response_bytes;
            let declared = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > cap as u64) {
                return Err(self.too_large(request));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| self.unreachable(&e))? {
                if body.len() + chunk.len() > cap {
                    return Err(self.too_large(request));
                }
                body.extend_from_slice(&chunk);
            }
            tracing::Span::current().record("bytes", body.len());
            let value: Value = serde_json::from_slice(&body).map_err(|e| {
                self.bad(
                    request,
                    format!(
                        "the answer is not json (line {}, column {})",
                        e.line(),
                        e.column()
                    ),
                )
            })?;
            Ok(Some(value))
        }
        .instrument(span)
        .await
    }

    fn too_large(&self, request: &Request) -> ConnectorError {
        self.bad(
            request,
            format!(
                "the answer is larger than {} bytes",
                self.max_response_bytes
            ),
        )
    }

    fn unreachable(&self, e: &reqwest::Error) -> ConnectorError {
        // reqwest's messages name the URL, which may hold search terms.
        let mut reason = if e.is_connect() {
            "cannot connect".to_owned()
        } else if e.is_timeout() {
            "the connection timed out".to_owned()
        } else if e.is_body() || e.is_decode() {
            "the answer was cut off".to_owned()
        } else {
            "the request failed".to_owned()
        };
        let mut source = std::error::Error::source(e);
        while let Some(inner) = source {
            let text = inner.to_string();
            if !text.contains("://") {
                reason = format!("{reason}: {}", excerpt(&text, 120));
            }
            source = inner.source();
            if source.is_none() {
                break;
            }
        }
        ConnectorError::Unreachable {
            dataset: self.dataset(),
            reason,
        }
    }

    /// Starts reading a list request's pages.
    fn pager<'r>(
        &self,
        request: &'r Request,
        value: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Pager<'r>, ConnectorError> {
        let mut url = self.url(request, value)?;
        let mut page_number = 1;
        if let Some(Pagination::Page {
            page_param,
            size_param,
            size,
            first,
        }) = &self.pagination
        {
            page_number = first.unwrap_or(1);
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair(page_param, &page_number.to_string());
            if let Some(size_param) = size_param {
                pairs.append_pair(size_param, &size.unwrap_or(DEFAULT_PAGE_SIZE).to_string());
            }
        }
        Ok(Pager {
            request,
            next: Some(url),
            page_number,
            pages_read: 0,
            more: false,
        })
    }

    /// The next page's items, or `None` when the list has ended or
    /// `max_pages` pages have been read (then `pager.more` says whether
    /// pages were left unread).
    async fn next_page(&self, pager: &mut Pager<'_>) -> Result<Option<Vec<Value>>, ConnectorError> {
        let Some(url) = pager.next.take() else {
            return Ok(None);
        };
        if pager.pages_read >= self.max_pages {
            pager.more = true;
            return Ok(None);
        }
        pager.pages_read += 1;
        let request = pager.request;
        let Some(body) = self.get(request, url.clone()).await? else {
            return Ok(None);
        };
        let items = match request.items.as_deref().map(|p| body.pointer(p)) {
            // No array at all is how many APIs say "none".
            None | Some(None | Some(Value::Null)) => Vec::new(),
            Some(Some(Value::Array(items))) => items.clone(),
            Some(Some(_)) => {
                return Err(self.bad(request, "the items pointer does not point at an array"));
            }
        };
        pager.next = match &self.pagination {
            None => None,
            Some(Pagination::Page {
                page_param, size, ..
            }) => {
                if items.is_empty() || items.len() < size.unwrap_or(DEFAULT_PAGE_SIZE) {
                    None
                } else {
                    pager.page_number += 1;
                    let mut next = url.clone();
                    set_query(&mut next, page_param, &pager.page_number.to_string());
                    Some(next)
                }
            }
            Some(Pagination::Cursor { param, next }) => {
                body.pointer(next).and_then(scalar_text).map(|cursor| {
                    let mut next = url.clone();
                    set_query(&mut next, param, &cursor);
                    next
                })
            }
            Some(Pagination::NextLink { next }) => match next_link(body.pointer(next)) {
                None => None,
                Some(link) => Some(
                    url.join(&link)
                        .map_err(|_| self.bad(request, "the next link is not a url"))?,
                ),
            },
        };
        Ok(Some(items))
    }

    fn source_id(&self, source_id: &str) -> Result<String, ConnectorError> {
        let refuse = |reason: &str| ConnectorError::InvalidSourceId {
            dataset: self.dataset(),
            source_id: excerpt(source_id, 64),
            reason: reason.to_owned(),
        };
        if source_id.is_empty() {
            return Err(refuse("source ids are not empty"));
        }
        if source_id.len() > MAX_SOURCE_ID_BYTES {
            return Err(refuse("source ids are at most 256 bytes"));
        }
        if matches!(source_id, "." | "..") {
            return Err(refuse("source ids are not `.` or `..`"));
        }
        match self.plan.person.source_id_type {
            SourceIdType::Text => Ok(source_id.to_owned()),
            SourceIdType::Integer => source_id
                .parse::<i64>()
                .map(|i| i.to_string())
                .map_err(|_| refuse("this dataset's source ids are integers")),
        }
    }

    /// Reads a person from an object, with its `each` lists.
    fn person(&self, object: &Value) -> Read<(String, Person)> {
        let mut read = self.plan.read_person(&JsonRow(object));
        let Some((source_id, person)) = &mut read.value else {
            return read;
        };
        let p = &self.plan.person;
        let mut problems = Vec::new();
        let offset = self.plan.offset;
        for entry in &p.names {
            for element in self.elements(object, entry.from.as_deref(), &mut problems) {
                let row = JsonRow(element);
                let mut r = RowReader::new(&row, offset);
                let name = assemble::read_name(&mut r, &entry.plan);
                keep(r, name, &mut person.names, &mut problems);
            }
        }
        for entry in &p.addresses {
            for element in self.elements(object, entry.from.as_deref(), &mut problems) {
                let row = JsonRow(element);
                let mut r = RowReader::new(&row, offset);
                let address = assemble::read_address(&mut r, &entry.plan);
                keep(r, address, &mut person.addresses, &mut problems);
            }
        }
        for entry in &p.identifiers {
            for element in self.elements(object, entry.from.as_deref(), &mut problems) {
                let row = JsonRow(element);
                let mut r = RowReader::new(&row, offset);
                let identifier = assemble::read_identifier(&mut r, &entry.plan, &self.plan.system);
                keep(r, identifier, &mut person.identifiers, &mut problems);
            }
        }
        let source_id = source_id.clone();
        read.problems
            .extend(problems.into_iter().map(|problem| RowProblem {
                source_id: source_id.clone(),
                problem,
            }));
        read
    }

    /// The elements an `each` pointer names in `object`, at most
    /// `max_list_rows` of them; none when the entry has no pointer.
    fn elements<'v>(
        &self,
        object: &'v Value,
        pointer: Option<&str>,
        problems: &mut Vec<String>,
    ) -> Vec<&'v Value> {
        let Some(pointer) = pointer else {
            return Vec::new();
        };
        let elements = match object.pointer(pointer) {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Array(elements)) => elements.as_slice(),
            Some(one) => std::slice::from_ref(one),
        };
        let limit = self.plan.max_list_rows;
        if elements.len() > limit {
            problems.push(format!(
                "`{pointer}` holds more than {limit} entries; the rest were not read"
            ));
        }
        elements.iter().take(limit).collect()
    }

    async fn search_people(
        &self,
        query: &PersonQuery,
        limit: usize,
    ) -> Result<Found, ConnectorError> {
        let dob_format = self
            .plan
            .person
            .date_of_birth
            .as_ref()
            .and_then(|f| f.format.as_deref());
        let terms = SearchTerms::parse(&self.descriptor.id, query, dob_format)?;
        let limit = limit.min(self.plan.max_search_results);
        let mut found = Found::default();
        if limit == 0 {
            return Ok(found);
        }
        let value = |name: &str| match Param::from_name(name)? {
            Param::Limit => Some(limit.to_string()),
            param => terms.text(param),
        };
        let search = &self.plan.person.access.search;
        let mut pager = self.pager(search, &value)?;
        let mut seen = std::collections::HashSet::new();
        // Pages are read only until the limit is met, and never more than
        // `max_pages` of them.
        while found.persons.len() < limit {
            let Some(items) = self.next_page(&mut pager).await? else {
                break;
            };
            self.read_found(search, &items, &terms, limit, &mut seen, &mut found);
        }
        Ok(found)
    }

    /// Maps one page of search results, keeping those that match.
    fn read_found(
        &self,
        search: &Request,
        items: &[Value],
        terms: &SearchTerms,
        limit: usize,
        seen: &mut std::collections::HashSet<String>,
        found: &mut Found,
    ) {
        for item in items {
            if found.persons.len() >= limit {
                break;
            }
            let Some(object) = item.pointer(&search.item) else {
                found.skipped.push(RowProblem {
                    source_id: String::new(),
                    problem: format!(
                        "`{}` item has nothing at `{}`; item skipped",
                        search.name, search.item
                    ),
                });
                continue;
            };
            let read = self.person(object);
            let Some((source_id, person)) = read.value else {
                found.skipped.extend(read.problems);
                continue;
            };
            if !seen.insert(source_id) {
                continue;
            }
            if terms.matches(&person) {
                found.persons.push(person);
                found.skipped.extend(read.problems);
            }
        }
    }

    async fn fetch_person(
        &self,
        source_id: &str,
        kinds: &[RecordKind],
    ) -> Result<Fetched, ConnectorError> {
        let key = self.source_id(source_id)?;
        let value = |name: &str| match Param::from_name(name)? {
            Param::SourceId => Some(key.clone()),
            Param::Limit => Some(self.plan.max_records.to_string()),
            _ => None,
        };
        let get = &self.plan.person.access.get;
        let mut fetched = Fetched::default();
        let Some(body) = self.get(get, self.url(get, &value)?).await? else {
            return Ok(fetched);
        };
        let Some(object) = body.pointer(&get.item) else {
            return Err(self.bad(get, format!("the answer has nothing at `{}`", get.item)));
        };
        let read = self.person(object);
        fetched.skipped.extend(read.problems);
        match read.value {
            Some((id, person)) if id == key => fetched.person = Some(person),
            Some((id, _)) => {
                // Answering with someone else's record would be a disclosure
                // about the wrong person; refuse outright.
                return Err(ConnectorError::Mapping {
                    dataset: self.dataset(),
                    message: format!(
                        "request `{}` returned person `{}` when asked for `{}`",
                        get.name,
                        excerpt(&id, 64),
                        excerpt(&key, 64)
                    ),
                });
            }
            // The person could not be read; their records are still theirs.
            None => {}
        }
        let max = self.plan.max_records;
        for plan in &self.plan.records {
            if !(kinds.is_empty() || kinds.contains(&plan.kind)) {
                continue;
            }
            let mut pager = self.pager(&plan.from, &value)?;
            let mut items = Vec::new();
            while items.len() <= max {
                match self.next_page(&mut pager).await? {
                    Some(page) => items.extend(page),
                    None => break,
                }
            }
            if items.len() > max || pager.more {
                fetched.skipped.push(RowProblem {
                    source_id: key.clone(),
                    problem: format!(
                        "`{}` has more than {max} records or {} pages; the rest were not read",
                        plan.from.name, self.max_pages
                    ),
                });
            }
            items.truncate(max);
            for item in &items {
                let Some(object) = item.pointer(&plan.from.item) else {
                    fetched.skipped.push(RowProblem {
                        source_id: key.clone(),
                        problem: format!(
                            "`{}` item has nothing at `{}`; item skipped",
                            plan.from.name, plan.from.item
                        ),
                    });
                    continue;
                };
                let read = self.plan.read_record(plan, &key, &JsonRow(object));
                fetched.records.extend(read.value);
                fetched.skipped.extend(read.problems);
            }
        }
        Ok(fetched)
    }
}

impl JsonHttpConnector {
    /// Reads the change feed: one request per call, paged by the cursor
    /// itself (`{after}`, `{limit}`), so next links are not followed here.
    async fn read_changes(
        &self,
        after: Option<&ChangeCursor>,
        limit: usize,
    ) -> Result<Changes, ConnectorError> {
        let Some(plan) = &self.changes else {
            return Err(ConnectorError::ChangesNotOffered {
                dataset: self.dataset(),
            });
        };
        let mut out = Changes::default();
        let Some(after) = after else {
            out.cursor = ChangeCursor(self.head(plan).await?);
            return Ok(out);
        };
        let refuse = || ConnectorError::InvalidCursor {
            dataset: self.dataset(),
            cursor: excerpt(&after.0, 32),
        };
        if after.0.len() > MAX_SOURCE_ID_BYTES {
            return Err(refuse());
        }
        let floor = match plan.cursor_type {
            SourceIdType::Integer if after.0.is_empty() => None,
            SourceIdType::Integer => Some(after.0.parse::<i64>().map_err(|_| refuse())?),
            SourceIdType::Text => None,
        };
        out.cursor = after.clone();
        let limit = limit.min(self.plan.max_records);
        if limit == 0 {
            return Ok(out);
        }
        let value = |name: &str| match Param::from_name(name)? {
            // "From the start" leaves the parameter out.
            Param::After => Some(after.0.clone()).filter(|a| !a.is_empty()),
            Param::Limit => Some(limit.to_string()),
            _ => None,
        };
        let request = &plan.changes;
        let Some(body) = self.get(request, self.url(request, &value)?).await? else {
            return Err(ConnectorError::HttpStatus {
                dataset: self.dataset(),
                request: request.name.clone(),
                status: 404,
            });
        };
        let items = match request.items.as_deref().map(|p| body.pointer(p)) {
            None | Some(None | Some(Value::Null)) => Vec::new(),
            Some(Some(Value::Array(items))) => items.clone(),
            Some(Some(_)) => {
                return Err(self.bad(request, "the items pointer does not point at an array"));
            }
        };
        let mut last = floor;
        for item in items.iter().take(limit) {
            let Some(object) = item.pointer(&request.item) else {
                out.skipped.push(RowProblem {
                    source_id: String::new(),
                    problem: format!(
                        "`{}` item has nothing at `{}`; the feed stops before it",
                        request.name, request.item
                    ),
                });
                break;
            };
            let row = JsonRow(object);
            let r = RowReader::new(&row, self.plan.offset);
            let cursor = match self.change_cursor(plan, &r, last) {
                Ok((cursor, number)) => {
                    last = number.or(last);
                    ChangeCursor(cursor)
                }
                Err(why) => {
                    // Without a cursor that moves on, the feed cannot pass
                    // the item safely; stop so it is read again next time.
                    out.skipped.push(RowProblem {
                        source_id: String::new(),
                        problem: format!("`{}` item {why}; the feed stops before it", request.name),
                    });
                    break;
                }
            };
            match r.source_id(&plan.person_source_id) {
                Ok(source_id) => out.changes.push(Change {
                    cursor: cursor.clone(),
                    source_id,
                }),
                Err(why) => out.skipped.push(RowProblem {
                    source_id: String::new(),
                    problem: format!(
                        "`{}` item at cursor `{}` names no person: {why}; item skipped",
                        request.name,
                        excerpt(&cursor.0, 32)
                    ),
                }),
            }
            out.cursor = cursor;
        }
        Ok(out)
    }

    /// A change's cursor, checked to grow past `last` when cursors are
    /// integers.
    fn change_cursor(
        &self,
        plan: &ChangesPlan,
        r: &RowReader<'_>,
        last: Option<i64>,
    ) -> Result<(String, Option<i64>), String> {
        let cursor = r
            .source_id(&plan.cursor)
            .map_err(|why| format!("has no usable cursor: {why}"))?;
        match plan.cursor_type {
            SourceIdType::Text => Ok((cursor, None)),
            SourceIdType::Integer => {
                let n: i64 = cursor
                    .parse()
                    .map_err(|_| "has a cursor that is not an integer".to_owned())?;
                if last.is_some_and(|l| n <= l) {
                    return Err("has a cursor that does not grow".to_owned());
                }
                Ok((n.to_string(), Some(n)))
            }
        }
    }

    /// The feed's latest cursor, for a subscription starting "now"; empty
    /// (the start) when the source says it has had no changes.
    async fn head(&self, plan: &ChangesPlan) -> Result<String, ConnectorError> {
        let request = &plan.head;
        let value = |name: &str| match Param::from_name(name)? {
            Param::Limit => Some("1".to_owned()),
            _ => None,
        };
        let Some(body) = self.get(request, self.url(request, &value)?).await? else {
            return Err(ConnectorError::HttpStatus {
                dataset: self.dataset(),
                request: request.name.clone(),
                status: 404,
            });
        };
        let Some(object) = body.pointer(&request.item) else {
            return Err(self.bad(
                request,
                format!("the answer has nothing at `{}`", request.item),
            ));
        };
        let row = JsonRow(object);
        let r = RowReader::new(&row, self.plan.offset);
        match r.source_id(&plan.cursor) {
            Ok(cursor) => match plan.cursor_type {
                SourceIdType::Text => Ok(cursor),
                SourceIdType::Integer => cursor
                    .parse::<i64>()
                    .map(|n| n.to_string())
                    .map_err(|_| self.bad(request, "the latest cursor is not an integer")),
            },
            Err(_) if cursor_absent(object, &plan.cursor) => Ok(String::new()),
            Err(why) => Err(self.bad(request, format!("the latest cursor: {why}"))),
        }
    }
}

/// Whether the template's one pointer is absent or null in `object`: a
/// feed with no changes yet.
fn cursor_absent(object: &Value, cursor: &Template) -> bool {
    cursor.parts.iter().all(|p| match p {
        Part::Column(pointer) => object.pointer(pointer).is_none_or(Value::is_null),
        Part::Text(_) => true,
    })
}

impl Connector for JsonHttpConnector {
    fn descriptor(&self) -> &DatasetDescriptor {
        &self.descriptor
    }

    fn search<'a>(
        &'a self,
        query: &'a PersonQuery,
        limit: usize,
    ) -> BoxFuture<'a, Result<Found, ConnectorError>> {
        Box::pin(self.search_people(query, limit))
    }

    fn fetch<'a>(
        &'a self,
        source_id: &'a str,
        kinds: &'a [RecordKind],
    ) -> BoxFuture<'a, Result<Fetched, ConnectorError>> {
        Box::pin(self.fetch_person(source_id, kinds))
    }

    fn changes<'a>(
        &'a self,
        after: Option<&'a ChangeCursor>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Changes, ConnectorError>> {
        Box::pin(self.read_changes(after, limit))
    }
}

/// Keeps a list value unless a required field was missing, and passes the
/// reader's problems on.
fn keep<V>(mut r: RowReader<'_>, value: Option<V>, into: &mut Vec<V>, problems: &mut Vec<String>) {
    problems.append(&mut r.problems);
    if !r.skip {
        into.extend(value);
    }
}

/// Fills a template; `None` when it names values and none is present.
fn render(template: &Template, value: &(dyn Fn(&str) -> Option<String> + Sync)) -> Option<String> {
    let mut out = String::new();
    let mut any = false;
    let mut named = false;
    for part in &template.parts {
        match part {
            Part::Text(text) => out.push_str(text),
            Part::Column(name) => {
                named = true;
                if let Some(v) = value(name) {
                    any = true;
                    out.push_str(&v);
                }
            }
        }
    }
    (any || !named).then_some(out)
}

fn set_query(url: &mut Url, name: &str, value: &str) {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(name, value);
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The next page's link: a string, or the `url`/`href` of the element of
/// an array whose `relation`/`rel` is `next`.
fn next_link(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Array(links) => links.iter().find_map(|link| {
            let relation = link
                .get("relation")
                .or_else(|| link.get("rel"))
                .and_then(Value::as_str)?;
            if relation != "next" {
                return None;
            }
            link.get("url")
                .or_else(|| link.get("href"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        }),
        _ => None,
    }
}

fn base_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("not a url ({e})"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!(
            "scheme `{}` is not `https` or `http`",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("names no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold credentials; use `headers`".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    Ok(url)
}

fn read_headers(sources: &[HeaderSource], problems: &mut Vec<String>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (i, source) in sources.iter().enumerate() {
        let key = format!("headers[{i}]");
        let Ok(name) = HeaderName::try_from(source.name.as_str()) else {
            problems.push(format!(
                "{key}.name: `{}` is not a header name",
                excerpt(&source.name, 40)
            ));
            continue;
        };
        let raw = match (&source.value_env, &source.value_file) {
            (Some(var), None) => match std::env::var(var) {
                Ok(value) => value,
                Err(_) => {
                    problems.push(format!("{key}.value_env: `{var}` is not set"));
                    continue;
                }
            },
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(value) => value.trim_end().to_owned(),
                Err(e) => {
                    problems.push(format!(
                        "{key}.value_file: cannot read `{}`: {e}",
                        path.display()
                    ));
                    continue;
                }
            },
            _ => {
                problems.push(format!(
                    "{key}: needs exactly one of `value_env` and `value_file`"
                ));
                continue;
            }
        };
        let value = format!("{}{raw}", source.prefix.as_deref().unwrap_or_default());
        match HeaderValue::try_from(value) {
            Ok(mut value) => {
                value.set_sensitive(true);
                headers.append(name, value);
            }
            // The value is a secret: never quoted.
            Err(_) => problems.push(format!("{key}: the value is not a valid header value")),
        }
    }
    headers
}

#[cfg(test)]
mod tests;
