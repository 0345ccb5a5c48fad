//! Service-account key rules. Every key that signs tokens (kube-controller-manager
//! `--service-account-private-key-file`, kube-apiserver
//! `--service-account-signing-key-file`) must have its public half among the keys that
//! kube-apiserver verifies tokens with. Those are the `--service-account-key-file`
//! keys, or the TLS serving key when that flag is absent. No CA key should sign tokens.

use super::Context;
use super::findings::{self, Finding};
use super::layout::Resolved;
use super::x509::PublicKeyInfo;

/// Runs the service-account rules.
pub fn check(ctx: &Context) -> Vec<Finding> {
    let mut found = Vec::new();
    let (verifying, source) = verification_keys(ctx);
    let cas = ctx.store.cas();
    for signer in &ctx.inventory.sa_sign {
        let Some(public) = ctx.store.private_key(&signer.label) else {
            continue;
        };
        if let Some(verifying) = &verifying
            && !verifying.iter().any(|k| k.bits == public.bits)
        {
            found.push(Finding::new(
                findings::SA_KEY_MISMATCH,
                Some(&signer.label),
                format!(
                    "{} signs service-account tokens with {}, but its public half is not among the \
                     keys kube-apiserver verifies tokens with ({source}), so every token is \
                     rejected with 401",
                    signer.origin, signer.label
                ),
                "give kube-apiserver --service-account-key-file the public half of this key, from \
                 one dedicated service-account key pair",
            ));
        }
        if let Some((ca_label, _)) = cas.iter().find(|(_, ca)| ca.public_key.bits == public.bits) {
            found.push(Finding::new(
                findings::SA_KEY_IS_CA_KEY,
                Some(&signer.label),
                format!(
                    "{} signs service-account tokens with the private key of the CA in {ca_label}, \
                     which copies the CA key to every host that signs tokens",
                    signer.origin
                ),
                "generate a dedicated service-account key pair and point the flags at it",
            ));
        }
    }
    found
}

/// Returns the keys kube-apiserver verifies tokens with, and where they come from.
/// `None` means the set is unknown (no apiserver, or an unreadable file).
fn verification_keys(ctx: &Context) -> (Option<Vec<PublicKeyInfo>>, String) {
    let Some(apiserver) = &ctx.layout.apiserver else {
        return (None, String::new());
    };
    if !ctx.inventory.sa_verify.is_empty() {
        let mut keys = Vec::new();
        let mut files = Vec::new();
        for file in &ctx.inventory.sa_verify {
            match ctx.store.public_keys.get(&file.label) {
                Some(Ok(found)) => keys.extend(found.iter().cloned()),
                _ => return (None, String::new()),
            }
            files.push(file.label.clone());
        }
        return (
            Some(keys),
            format!("--service-account-key-file {}", files.join(", ")),
        );
    }
    // kube-apiserver falls back to its TLS serving key when no verification key is set.
    let key = apiserver
        .get("tls-private-key-file")
        .map(|value| ctx.layout.resolve(value, None));
    match key {
        Some(Resolved::InTree(label)) => match ctx.store.private_key(&label) {
            Some(public) => (
                Some(vec![public.clone()]),
                format!(
                    "kube-apiserver has no --service-account-key-file and falls back to its \
                     --tls-private-key-file {label}"
                ),
            ),
            None => (None, String::new()),
        },
        _ => (None, String::new()),
    }
}
