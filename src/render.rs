//! Render stage: kubeconfigs, component flag files and RBAC manifests, through minijinja
//! templates. The defaults in `templates/` are built into the binary; a directory of
//! overrides replaces any of them by file name.

use std::path::{Path, PathBuf};

use base64::Engine;
use minijinja::{Environment, UndefinedBehavior};
use serde_json::json;
use thiserror::Error;

use crate::issue::Issued;
use crate::model::{Kubeconfig, Model, OutputFile};

const BUILTIN: [(&str, &str); 7] = [
    (
        "kubeconfig.yaml.j2",
        include_str!("../templates/kubeconfig.yaml.j2"),
    ),
    (
        "kube-apiserver.flags.j2",
        include_str!("../templates/kube-apiserver.flags.j2"),
    ),
    (
        "kube-controller-manager.flags.j2",
        include_str!("../templates/kube-controller-manager.flags.j2"),
    ),
    (
        "kube-scheduler.flags.j2",
        include_str!("../templates/kube-scheduler.flags.j2"),
    ),
    (
        "kubelet.flags.j2",
        include_str!("../templates/kubelet.flags.j2"),
    ),
    ("etcd.flags.j2", include_str!("../templates/etcd.flags.j2")),
    (
        "cluster-role-binding.yaml.j2",
        include_str!("../templates/cluster-role-binding.yaml.j2"),
    ),
];

#[derive(Debug, Error)]
pub enum RenderError {
    #[error("template `{name}` in {dir}: {source}")]
    Override {
        name: String,
        dir: String,
        source: std::io::Error,
    },
    #[error("rendering `{output}` with template `{template}` failed: {source}")]
    Template {
        output: String,
        template: String,
        source: minijinja::Error,
    },
}

/// One rendered text file.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub file: OutputFile,
    pub text: String,
    /// True when the text embeds a private key.
    pub secret: bool,
}

/// Form in which a kubeconfig refers to its certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeconfigMode {
    /// As the manifest declares: embedded data or install paths.
    AsDeclared,
    /// Always install paths, for golden files and review.
    PathsOnly,
}

/// The template set: built-in defaults, with overrides from a directory.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub fn load(overrides: Option<&Path>) -> Result<Templates, RenderError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Values are written as they are: the manifest stage rejects control characters,
        // and the model rejects kubeconfig names that YAML would read differently.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("default delimiters are valid");
        env.set_syntax(syntax);
        for (name, builtin) in BUILTIN {
            let text = match overrides.map(|dir| dir.join(name)) {
                Some(path) if path.exists() => {
                    std::fs::read_to_string(&path).map_err(|source| RenderError::Override {
                        name: name.to_string(),
                        dir: overrides
                            .map(|d| d.display().to_string())
                            .unwrap_or_default(),
                        source,
                    })?
                }
                _ => builtin.to_string(),
            };
            env.add_template_owned(name.to_string(), text)
                .map_err(|source| RenderError::Template {
                    output: "(template set)".into(),
                    template: name.to_string(),
                    source,
                })?;
        }
        Ok(Templates { env })
    }

    fn render(
        &self,
        template: &str,
        output: &Path,
        context: serde_json::Value,
    ) -> Result<String, RenderError> {
        let error = |source| RenderError::Template {
            output: output.display().to_string(),
            template: template.to_string(),
            source,
        };
        self.env
            .get_template(template)
            .map_err(error)?
            .render(minijinja::value::Serde(&context))
            .map_err(error)
    }
}

/// Renders every kubeconfig, flag file and binding of the model.
pub fn render_all(
    model: &Model,
    issued: &Issued,
    templates: &Templates,
    mode: KubeconfigMode,
) -> Result<Vec<Rendered>, RenderError> {
    let mut out = Vec::new();
    for kubeconfig in &model.kubeconfigs {
        let embed = kubeconfig.embed && mode == KubeconfigMode::AsDeclared;
        let context = kubeconfig_context(model, issued, kubeconfig, embed);
        let text = templates.render("kubeconfig.yaml.j2", &kubeconfig.file.relative, context)?;
        out.push(Rendered {
            file: kubeconfig.file.clone(),
            text,
            secret: embed,
        });
    }
    for flags in &model.flag_files {
        let template = format!("{}.flags.j2", flags.component.name());
        let text = templates.render(&template, &flags.file.relative, flags.context.clone())?;
        out.push(Rendered {
            file: flags.file.clone(),
            text: drop_blank_lines(&text),
            secret: false,
        });
    }
    for binding in &model.bindings {
        let context = json!({ "group": binding.group, "cluster_role": binding.cluster_role });
        let text = templates.render(
            "cluster-role-binding.yaml.j2",
            &binding.file.relative,
            context,
        )?;
        out.push(Rendered {
            file: binding.file.clone(),
            text,
            secret: false,
        });
    }
    Ok(out)
}

fn kubeconfig_context(
    model: &Model,
    issued: &Issued,
    kubeconfig: &Kubeconfig,
    embed: bool,
) -> serde_json::Value {
    let base64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let cert = model
        .cert(&kubeconfig.user)
        .expect("model checked the user reference");
    let ca_path = model
        .trust_file(&kubeconfig.ca)
        .map(|f| f.install.clone())
        .expect("model checked the CA reference");
    let mut context = json!({
        "cluster_name": kubeconfig.cluster_name,
        "server": kubeconfig.server,
        "user_name": kubeconfig.user_name,
        "context_name": format!("{}@{}", kubeconfig.user_name, kubeconfig.cluster_name),
        "ca_path": ca_path,
        "ca_data": null,
        "client_certificate": cert.cert_file.install,
        "client_key": cert.key_file.install,
        "client_certificate_data": null,
        "client_key_data": null,
    });
    if embed {
        let leaf = &issued.certs[&kubeconfig.user];
        context["ca_data"] = json!(base64(&trust_pem(model, issued, &kubeconfig.ca)));
        context["client_certificate_data"] =
            json!(base64(&chain_pem(model, issued, &kubeconfig.user)));
        context["client_key_data"] = json!(base64(&leaf.key.pem));
    }
    context
}

/// Returns a leaf's PEM followed by the intermediate CAs above it, leaf first and root
/// left out, as TLS servers and clients send a chain.
pub fn chain_pem(model: &Model, issued: &Issued, leaf: &str) -> String {
    let mut chain = issued.certs[leaf].pem.clone();
    let mut next = model.cert(leaf).and_then(|c| model.ca(&c.issuer));
    while let Some(ca) = next {
        let Some(parent) = &ca.issuer else { break };
        chain.push_str(&issued.cas[&ca.id].pem);
        next = model.ca(parent);
    }
    chain
}

/// Returns the PEM text of a CA or bundle: the bundle's CAs in declared order.
/// A CA in rotation contributes every certificate its trust file holds.
pub fn trust_pem(model: &Model, issued: &Issued, id: &str) -> String {
    model
        .trusted_cas(id)
        .iter()
        .map(|ca| {
            issued
                .ca_trust
                .get(ca)
                .unwrap_or(&issued.cas[ca].pem)
                .as_str()
        })
        .collect()
}

fn drop_blank_lines(text: &str) -> String {
    let mut out: String = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

/// Returns the relative paths of all rendered files, for listing.
pub fn paths(rendered: &[Rendered]) -> Vec<PathBuf> {
    rendered.iter().map(|r| r.file.relative.clone()).collect()
}
