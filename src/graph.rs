//! Graph stage: the dependency graph of a model (CA -> intermediate -> leaf -> bundle,
//! kubeconfig, flag file) and its topological order.
//!
//! Nodes are keyed `kind:id`, such as `ca:server-ca` or `cert:worker-1/kubelet-client`.
//! A cycle is reported as the whole loop.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::Diagnostic;
use crate::model::Model;

/// Dependencies between the objects of a model.
#[derive(Debug, Default)]
pub struct Graph {
    /// For each node, the nodes it depends on.
    edges: BTreeMap<String, BTreeSet<String>>,
    /// Manifest path of each node, for messages.
    origins: BTreeMap<String, String>,
}

impl Graph {
    pub fn from_model(model: &Model) -> Graph {
        let mut graph = Graph::default();
        for ca in &model.cas {
            let key = format!("ca:{}", ca.id);
            graph.add(&key, format!("ca.{}", ca.id));
            if let Some(parent) = &ca.issuer {
                graph.depend(&key, format!("ca:{parent}"));
            }
        }
        for bundle in &model.bundles {
            let key = format!("bundle:{}", bundle.id);
            graph.add(&key, format!("bundle.{}", bundle.id));
            for ca in &bundle.cas {
                graph.depend(&key, format!("ca:{ca}"));
            }
        }
        for cert in &model.certs {
            let key = format!("cert:{}", cert.id);
            graph.add(&key, cert.origin.clone());
            graph.depend(&key, format!("ca:{}", cert.issuer));
        }
        for account in &model.service_accounts {
            graph.add(
                &format!("service-account:{}", account.id),
                format!("service-account.{}", account.id),
            );
        }
        for kubeconfig in &model.kubeconfigs {
            let key = format!("kubeconfig:{}", kubeconfig.id);
            graph.add(&key, kubeconfig.origin.clone());
            graph.depend(&key, format!("cert:{}", kubeconfig.user));
            let kind = if model.bundle(&kubeconfig.ca).is_some() {
                "bundle"
            } else {
                "ca"
            };
            graph.depend(&key, format!("{kind}:{}", kubeconfig.ca));
        }
        for flags in &model.flag_files {
            let key = format!("flags:{}", flags.id);
            graph.add(&key, flags.origin.clone());
            for dependency in &flags.depends_on {
                graph.depend(&key, dependency.clone());
            }
        }
        graph
    }

    fn add(&mut self, key: &str, origin: String) {
        self.edges.entry(key.to_string()).or_default();
        self.origins.insert(key.to_string(), origin);
    }

    fn depend(&mut self, key: &str, on: String) {
        self.edges.entry(key.to_string()).or_default().insert(on);
    }

    /// Returns the nodes that `key` depends on, directly, in sorted order.
    pub fn dependencies(&self, key: &str) -> Vec<&str> {
        self.edges
            .get(key)
            .map(|deps| deps.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Returns the nodes that depend on `key`, directly.
    pub fn dependents(&self, key: &str) -> Vec<&str> {
        self.edges
            .iter()
            .filter(|(_, deps)| deps.contains(key))
            .map(|(k, _)| k.as_str())
            .collect()
    }

    /// Returns every node after the nodes it depends on, or the errors that prevent it:
    /// a reference to a missing node, or a cycle.
    pub fn order(&self) -> Result<Vec<String>, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        for (key, deps) in &self.edges {
            for dep in deps {
                if !self.origins.contains_key(dep) {
                    errors.push(Diagnostic::error(
                        self.origins.get(key).cloned().unwrap_or_default(),
                        format!("`{key}` depends on `{dep}`, which is not declared"),
                    ));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut order = Vec::new();
        let mut state: BTreeMap<&str, Visit> = BTreeMap::new();
        for key in self.edges.keys() {
            let mut stack = Vec::new();
            if let Err(cycle) = self.visit(key, &mut state, &mut stack, &mut order) {
                let origin = self.origins.get(&cycle[0]).cloned().unwrap_or_default();
                return Err(vec![
                    Diagnostic::error(origin, format!("dependency cycle: {}", cycle.join(" -> ")))
                        .with_help("a CA cannot sign, directly or through others, its own issuer"),
                ]);
            }
        }
        Ok(order)
    }

    fn visit<'a>(
        &'a self,
        key: &'a str,
        state: &mut BTreeMap<&'a str, Visit>,
        stack: &mut Vec<&'a str>,
        order: &mut Vec<String>,
    ) -> Result<(), Vec<String>> {
        match state.get(key) {
            Some(Visit::Done) => return Ok(()),
            Some(Visit::Active) => {
                let start = stack.iter().position(|k| *k == key).unwrap_or(0);
                let mut cycle: Vec<String> = stack[start..].iter().map(|k| k.to_string()).collect();
                cycle.push(key.to_string());
                return Err(cycle);
            }
            None => {}
        }
        state.insert(key, Visit::Active);
        stack.push(key);
        for dep in self.edges.get(key).into_iter().flatten() {
            self.visit(dep, state, stack, order)?;
        }
        stack.pop();
        state.insert(key, Visit::Done);
        order.push(key.to_string());
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    Active,
    Done,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &str)]) -> Graph {
        let mut graph = Graph::default();
        for (from, to) in edges {
            graph.add(from, format!("origin of {from}"));
            graph.add(to, format!("origin of {to}"));
        }
        for (from, to) in edges {
            graph.depend(from, to.to_string());
        }
        graph
    }

    #[test]
    fn order_puts_issuer_first() {
        let order = graph(&[("cert:leaf", "ca:mid"), ("ca:mid", "ca:root")])
            .order()
            .unwrap();
        let position = |k: &str| order.iter().position(|o| o == k).unwrap();
        assert!(position("ca:root") < position("ca:mid"));
        assert!(position("ca:mid") < position("cert:leaf"));
    }

    #[test]
    fn cycle_reported_as_whole_loop() {
        let errors = graph(&[("ca:a", "ca:b"), ("ca:b", "ca:a")])
            .order()
            .unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("ca:a -> ca:b -> ca:a"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn dangling_reference_names_both_ends() {
        let mut g = graph(&[]);
        g.add("cert:leaf", "cert.leaf".into());
        g.depend("cert:leaf", "ca:missing".into());
        let errors = g.order().unwrap_err();
        assert!(
            errors[0]
                .message
                .contains("`cert:leaf` depends on `ca:missing`")
        );
    }
}
