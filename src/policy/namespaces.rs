//! The namespaces a decision knows, with their labels.

use std::collections::{BTreeMap, HashMap};

use super::compiled::NAMESPACE_NAME_LABEL;

/// Labels of every known namespace, by name. Every namespace carries
/// `kubernetes.io/metadata.name=<name>` (the API server sets it, and manifests read offline get
/// it here), so selectors on it behave the same on every path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespaces {
    labels: HashMap<String, BTreeMap<String, String>>,
}

impl Namespaces {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record a namespace and its labels (the name label is set to its name).
    pub fn insert(&mut self, name: &str, mut labels: BTreeMap<String, String>) {
        labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.to_owned());
        self.labels.insert(name.to_owned(), labels);
    }

    /// Forget a namespace; returns whether it was known.
    pub fn remove(&mut self, name: &str) -> bool {
        self.labels.remove(name).is_some()
    }

    /// The labels of a known namespace.
    pub fn get(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.labels.get(name)
    }

    /// Whether the namespace is known.
    pub fn contains(&self, name: &str) -> bool {
        self.labels.contains_key(name)
    }

    /// Number of namespaces known.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether no namespace is known.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

impl FromIterator<(String, BTreeMap<String, String>)> for Namespaces {
    fn from_iter<I: IntoIterator<Item = (String, BTreeMap<String, String>)>>(iter: I) -> Self {
        let mut namespaces = Self::new();
        for (name, labels) in iter {
            namespaces.insert(&name, labels);
        }
        namespaces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_namespace_carries_its_name_label() {
        let mut n: Namespaces = [(
            "prod".to_owned(),
            BTreeMap::from([
                ("env".to_owned(), "prod".to_owned()),
                (NAMESPACE_NAME_LABEL.to_owned(), "forged".to_owned()),
            ]),
        )]
        .into_iter()
        .collect();
        assert_eq!(n.get("prod").unwrap()[NAMESPACE_NAME_LABEL], "prod");
        assert_eq!(n.get("prod").unwrap()["env"], "prod");
        assert!(n.contains("prod") && !n.contains("dev"));
        assert_eq!(n.len(), 1);
        assert!(n.remove("prod") && !n.remove("prod") && n.is_empty());
    }
}
