//! Whether and where to export traces, read from the standard OpenTelemetry
//! variables. Pure: it reads a map, so tests need no process environment.
//!
//! ```text
//! OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (as is) | OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces
//!   unset or empty -> None (export off); not an http:// URL -> error naming the variable
//! OTEL_SERVICE_NAME | service.name in OTEL_RESOURCE_ATTRIBUTES | the command's default
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

/// The collector's base URL; spans go to `<base>/v1/traces`.
pub const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The full URL spans are sent to; wins over [`ENDPOINT`].
pub const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The OTLP protocol; only `http/protobuf` is built in.
pub const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// The traces' OTLP protocol; wins over [`PROTOCOL`].
pub const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// How long one export may take, in milliseconds.
pub const TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// How long one trace export may take, in milliseconds; wins over [`TIMEOUT`].
pub const TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
/// The `service.name` resource attribute.
pub const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// Extra resource attributes (`k=v,k2=v2`; the SDK reads them itself).
pub const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// `true` turns every signal off.
pub const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// `none` turns trace export off; `otlp` (the default) keeps it.
pub const TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";

/// The OTLP default export timeout (10 s).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and as whom spans are exported (OTLP over HTTP with protobuf bodies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceExport {
    /// The URL spans are POSTed to (`…/v1/traces`).
    pub endpoint: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// How long one export request may take.
    pub timeout: Duration,
}

/// A variable that is set but unusable.
#[derive(Debug, thiserror::Error)]
#[error("failed to read {variable}={value:?}: {problem}")]
pub struct TraceConfigError {
    /// The variable's name.
    pub variable: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong and what would work.
    pub problem: &'static str,
}

impl TraceExport {
    /// Reads `vars` (the process environment, or a test's map): `Ok(None)`
    /// (export off) unless an endpoint is set; `default_service` names the
    /// binary or command (`pgcluster-agent`, `pgcluster-controller`, ...).
    pub fn from_env(
        vars: &BTreeMap<String, String>,
        default_service: &str,
    ) -> Result<Option<Self>, TraceConfigError> {
        let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        if get(SDK_DISABLED).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match get(TRACES_EXPORTER) {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(invalid(
                    TRACES_EXPORTER,
                    other,
                    "only `otlp` and `none` are supported",
                ));
            }
        }
        let endpoint = if let Some(url) = get(TRACES_ENDPOINT) {
            check_url(TRACES_ENDPOINT, url)?;
            url.to_owned()
        } else if let Some(base) = get(ENDPOINT) {
            check_url(ENDPOINT, base)?;
            format!("{}/v1/traces", base.trim_end_matches('/'))
        } else {
            return Ok(None);
        };
        let protocol = get(TRACES_PROTOCOL)
            .map(|v| (TRACES_PROTOCOL, v))
            .or_else(|| get(PROTOCOL).map(|v| (PROTOCOL, v)));
        if let Some((variable, value)) = protocol
            && value != "http/protobuf"
        {
            return Err(invalid(
                variable,
                value,
                "only `http/protobuf` is built in (the collector's port 4318, not gRPC's 4317)",
            ));
        }
        let timeout = get(TRACES_TIMEOUT)
            .map(|v| (TRACES_TIMEOUT, v))
            .or_else(|| get(TIMEOUT).map(|v| (TIMEOUT, v)));
        let timeout = match timeout {
            None => DEFAULT_TIMEOUT,
            Some((variable, value)) => match value.parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    return Err(invalid(
                        variable,
                        value,
                        "expected a positive number of milliseconds",
                    ));
                }
            },
        };
        let service_name = get(SERVICE_NAME)
            .or_else(|| get(RESOURCE_ATTRIBUTES).and_then(service_name_attribute))
            .unwrap_or(default_service)
            .to_owned();
        Ok(Some(Self {
            endpoint,
            service_name,
            timeout,
        }))
    }
}

fn invalid(variable: &'static str, value: &str, problem: &'static str) -> TraceConfigError {
    TraceConfigError {
        variable,
        value: value.to_owned(),
        problem,
    }
}

/// An `http://host[:port][/path]` URL. No TLS client is built in: export to
/// an in-cluster collector or a node-local agent over plain HTTP.
fn check_url(variable: &'static str, value: &str) -> Result<(), TraceConfigError> {
    let uri: http::Uri = value.parse().map_err(|_| {
        invalid(
            variable,
            value,
            "expected a URL such as http://otel-collector.monitoring:4318",
        )
    })?;
    match uri.scheme_str() {
        Some("http") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        Some("https") => Err(invalid(
            variable,
            value,
            "https is not supported; use http:// to an in-cluster collector or a node-local agent",
        )),
        _ => Err(invalid(
            variable,
            value,
            "expected a URL such as http://otel-collector.monitoring:4318",
        )),
    }
}

/// `service.name` from `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k2=v2`).
fn service_name_attribute(attributes: &str) -> Option<&str> {
    attributes
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| key.trim() == "service.name")
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<Option<TraceExport>, TraceConfigError> {
        TraceExport::from_env(&env(pairs), "pgcluster-agent")
    }

    /// Export is off by default: no endpoint (or an empty one) means no exporter.
    #[test]
    fn unset_or_empty_endpoint_is_off() {
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(parse(&[(ENDPOINT, "")]).unwrap(), None);
        assert_eq!(
            parse(&[(ENDPOINT, "  "), (SERVICE_NAME, "x")]).unwrap(),
            None
        );
    }

    /// The base endpoint gets `/v1/traces`; the traces endpoint is used as is and wins.
    #[test]
    fn endpoints_resolve_like_the_otlp_spec() {
        let on = parse(&[(ENDPOINT, "http://collector:4318/")])
            .unwrap()
            .unwrap();
        assert_eq!(on.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(on.service_name, "pgcluster-agent");
        assert_eq!(on.timeout, Duration::from_secs(10));
        let prefixed = parse(&[(ENDPOINT, "http://gw/otlp")]).unwrap().unwrap();
        assert_eq!(prefixed.endpoint, "http://gw/otlp/v1/traces");
        let traces = parse(&[
            (ENDPOINT, "http://ignored:4318"),
            (TRACES_ENDPOINT, "http://tempo:4318/custom"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(traces.endpoint, "http://tempo:4318/custom");
    }

    /// A bad endpoint is an error that names the variable, never a panic or a silent default.
    #[test]
    fn bad_endpoint_names_the_variable() {
        for (variable, value) in [
            (ENDPOINT, "not a url"),
            (ENDPOINT, "collector:4318"),
            (ENDPOINT, "https://collector:4318"),
            (TRACES_ENDPOINT, "ftp://collector/v1/traces"),
            (TRACES_ENDPOINT, "http://"),
        ] {
            let err = parse(&[(variable, value)]).unwrap_err();
            assert_eq!(err.variable, variable, "{value}");
            let message = err.to_string();
            assert!(message.contains(variable), "{message}");
            assert!(message.contains(value), "{message}");
        }
    }

    /// gRPC (or JSON) is refused up front instead of posting protobuf to a gRPC port.
    #[test]
    fn only_http_protobuf_is_accepted() {
        let base = (ENDPOINT, "http://collector:4318");
        assert!(
            parse(&[base, (PROTOCOL, "http/protobuf")])
                .unwrap()
                .is_some()
        );
        let err = parse(&[base, (PROTOCOL, "grpc")]).unwrap_err();
        assert_eq!(err.variable, PROTOCOL);
        let err = parse(&[
            base,
            (PROTOCOL, "http/protobuf"),
            (TRACES_PROTOCOL, "http/json"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, TRACES_PROTOCOL);
    }

    /// OTEL_SERVICE_NAME wins, then service.name in OTEL_RESOURCE_ATTRIBUTES, then the default.
    #[test]
    fn service_name_precedence() {
        let base = (ENDPOINT, "http://collector:4318");
        let attrs = (
            RESOURCE_ATTRIBUTES,
            "k8s.namespace.name=db, service.name = pg-a",
        );
        let name = |pairs: &[(&str, &str)]| parse(pairs).unwrap().unwrap().service_name;
        assert_eq!(name(&[base]), "pgcluster-agent");
        assert_eq!(name(&[base, attrs]), "pg-a");
        assert_eq!(name(&[base, attrs, (SERVICE_NAME, "pg-b")]), "pg-b");
    }

    /// The standard switches turn export off even with an endpoint; unknown exporters are errors.
    #[test]
    fn disabled_and_exporter_switches() {
        let base = (ENDPOINT, "http://collector:4318");
        assert_eq!(parse(&[base, (SDK_DISABLED, "true")]).unwrap(), None);
        assert_eq!(parse(&[base, (TRACES_EXPORTER, "none")]).unwrap(), None);
        assert!(parse(&[base, (TRACES_EXPORTER, "otlp")]).unwrap().is_some());
        let err = parse(&[base, (TRACES_EXPORTER, "zipkin")]).unwrap_err();
        assert_eq!(err.variable, TRACES_EXPORTER);
    }

    /// Timeouts are milliseconds; the traces variable wins; garbage is an error naming it.
    #[test]
    fn timeouts() {
        let base = (ENDPOINT, "http://collector:4318");
        let t = |pairs: &[(&str, &str)]| parse(pairs).unwrap().unwrap().timeout;
        assert_eq!(t(&[base, (TIMEOUT, "2500")]), Duration::from_millis(2500));
        assert_eq!(
            t(&[base, (TIMEOUT, "2500"), (TRACES_TIMEOUT, "700")]),
            Duration::from_millis(700)
        );
        let err = parse(&[base, (TRACES_TIMEOUT, "5s")]).unwrap_err();
        assert_eq!(err.variable, TRACES_TIMEOUT);
    }
}
