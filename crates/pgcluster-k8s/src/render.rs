//! Multi-document YAML of a [`Bundle`], in the stable order of
//! [`Bundle::objects`]. Secrets appear as shapes, each preceded by a comment
//! saying the controller fills them; rendering refuses a Secret that carries
//! a password, so no password ever reaches a file.

use serde::Serialize;

use crate::build::secrets::PASSWORD_KEY;
use crate::build::{Bundle, Object};

/// Why a bundle could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A Secret carries a password value; files must only hold shapes.
    #[error(
        "failed to render Secret {name}: it carries a password value, which must never be written to a file"
    )]
    SecretValue {
        /// The Secret.
        name: String,
    },
    /// YAML serialization failed.
    #[error("failed to serialize {kind} {name}")]
    Serialize {
        /// Kind of the object.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The serializer's error.
        #[source]
        source: serde_norway::Error,
    },
}

impl RenderError {
    /// A bounded category, usable as a metric label.
    pub fn category(&self) -> &'static str {
        match self {
            RenderError::SecretValue { .. } => "secret_value",
            RenderError::Serialize { .. } => "serialize",
        }
    }
}

/// The comment placed before every Secret shape.
pub const SECRET_COMMENT: &str = "# Secret shape only: the pgcluster controller generates the password and fills\n# the keys named in the pgcluster.dev/filled-by-controller annotation at runtime.\n# No password is ever rendered to a file.\n";

fn yaml<T: Serialize>(object: &Object<'_>, value: &T) -> Result<String, RenderError> {
    serde_norway::to_string(value).map_err(|source| RenderError::Serialize {
        kind: object.kind(),
        name: object.name().to_owned(),
        source,
    })
}

/// One object as a YAML document (without the `---` separator).
pub fn object_yaml(object: &Object<'_>) -> Result<String, RenderError> {
    match object {
        Object::ServiceAccount(o) => yaml(object, o),
        Object::Role(o) => yaml(object, o),
        Object::RoleBinding(o) => yaml(object, o),
        Object::ConfigMap(o) => yaml(object, o),
        Object::Secret(o) => {
            if o.data
                .as_ref()
                .is_some_and(|d| d.contains_key(PASSWORD_KEY))
                || o.string_data
                    .as_ref()
                    .is_some_and(|d| d.contains_key(PASSWORD_KEY))
            {
                return Err(RenderError::SecretValue {
                    name: object.name().to_owned(),
                });
            }
            Ok(format!("{SECRET_COMMENT}{}", yaml(object, o)?))
        }
        Object::Service(o) => yaml(object, o),
        Object::StatefulSet(o) => yaml(object, o),
        Object::PodDisruptionBudget(o) => yaml(object, o),
        Object::NetworkPolicy(o) => yaml(object, o),
        Object::ServiceMonitor(o) => yaml(object, o),
        Object::PrometheusRule(o) => yaml(object, o),
    }
}

/// The whole bundle as one multi-document YAML stream.
pub fn to_yaml(bundle: &Bundle) -> Result<String, RenderError> {
    let mut out = String::new();
    for object in bundle.objects() {
        out.push_str("---\n");
        out.push_str(&object_yaml(&object)?);
    }
    Ok(out)
}

/// Each object as `(file name, YAML)`, file names `<kind>-<name>.yaml` in lowercase.
pub fn to_files(bundle: &Bundle) -> Result<Vec<(String, String)>, RenderError> {
    bundle
        .objects()
        .iter()
        .map(|object| {
            let file = format!("{}-{}.yaml", object.kind().to_lowercase(), object.name());
            Ok((file, object_yaml(object)?))
        })
        .collect()
}
