//! Following the names of `--script-host`: every address a name resolves to is a member; the
//! names are resolved again every `Config::resolve_interval`, new addresses joined and vanished
//! ones drained (a Kubernetes headless Service: one name, one address per pod).

use std::collections::{BTreeSet, HashMap};

use futures_util::future::BoxFuture;

/// Turns a name into addresses (DNS in production, a script in unit tests).
pub(crate) trait Resolve: Send + Sync + 'static {
    /// Every address `name` stands for, as `IP:PORT` (or `name` itself for `unix:PATH`).
    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, std::io::Result<Vec<String>>>;
}

/// The system resolver (tokio's `lookup_host`: `/etc/hosts`, then DNS).
pub(crate) struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, std::io::Result<Vec<String>>> {
        Box::pin(async move {
            if name.starts_with("unix:") {
                return Ok(vec![name.to_string()]);
            }
            let (scheme, host_port) = match name.split_once("://") {
                Some((scheme, rest)) => (Some(scheme), rest.trim_end_matches('/')),
                None => (None, name),
            };
            let host = host_port
                .rsplit_once(':')
                .map_or(host_port, |(host, _)| host)
                .trim_matches(['[', ']']);
            let named = host.parse::<std::net::IpAddr>().is_err();
            Ok(tokio::net::lookup_host(host_port)
                .await?
                .map(|address| dial_address(scheme, address, named.then_some(host)))
                .collect())
        })
    }
}

/// How a resolved address is dialled: `[SCHEME://]IP:PORT`, followed by `#NAME` when it came
/// from a DNS name. TLS then checks the worker's certificate for NAME (the Service name a
/// Kubernetes operator puts in the worker certificates), not for the pod's IP, unless
/// `--grpc-server-name` says otherwise.
pub(crate) fn dial_address(
    scheme: Option<&str>,
    address: std::net::SocketAddr,
    name: Option<&str>,
) -> String {
    let mut dial = match scheme {
        Some(scheme) => format!("{scheme}://{address}"),
        None => address.to_string(),
    };
    if let Some(name) = name {
        dial.push('#');
        dial.push_str(name);
    }
    dial
}

/// Splits a [`dial_address`] into the address and the name its certificate is checked for.
pub(crate) fn split_dial_address(dial: &str) -> (&str, Option<&str>) {
    match dial.split_once('#') {
        Some((address, name)) => (address, Some(name)),
        None => (dial, None),
    }
}

/// The configured names and the addresses each last resolved to.
pub(crate) struct Names {
    names: Vec<String>,
    last: HashMap<String, BTreeSet<String>>,
}

impl Names {
    pub(crate) fn new(names: Vec<String>) -> Self {
        Self {
            names,
            last: HashMap::new(),
        }
    }

    /// Resolves every name again and returns the addresses of all of them. A name that fails
    /// to resolve (or resolves to nothing) keeps its last addresses: a DNS hiccup drains no
    /// worker. The first failure of a name is returned for the log.
    pub(crate) async fn resolve(
        &mut self,
        resolver: &dyn Resolve,
    ) -> (BTreeSet<String>, Vec<(String, String)>) {
        let mut failures = Vec::new();
        for name in &self.names {
            match resolver.resolve(name).await {
                Ok(addresses) if !addresses.is_empty() => {
                    self.last
                        .insert(name.clone(), addresses.into_iter().collect());
                }
                Ok(_) => failures.push((name.clone(), "no addresses".to_string())),
                Err(e) => failures.push((name.clone(), e.to_string())),
            }
        }
        let all = self.last.values().flatten().cloned().collect();
        (all, failures)
    }
}

/// What to change so that the members are `wanted`: the addresses to join and to drain.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) join: Vec<String>,
    pub(crate) drain: Vec<String>,
}

/// The plan from the members now (`current`, not draining) to `wanted`.
pub(crate) fn plan(current: &BTreeSet<String>, wanted: &BTreeSet<String>) -> Plan {
    Plan {
        join: wanted.difference(current).cloned().collect(),
        drain: current.difference(wanted).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Answers each name from a script of answers, one per resolution.
    struct Scripted {
        answers: Mutex<HashMap<String, Vec<std::io::Result<Vec<String>>>>>,
    }

    impl Scripted {
        fn new(name: &str, answers: Vec<std::io::Result<Vec<&str>>>) -> Self {
            let answers = answers
                .into_iter()
                .rev()
                .map(|a| a.map(|list| list.into_iter().map(String::from).collect()))
                .collect();
            Self {
                answers: Mutex::new(HashMap::from([(name.to_string(), answers)])),
            }
        }
    }

    impl Resolve for Scripted {
        fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, std::io::Result<Vec<String>>> {
            let answer = self
                .answers
                .lock()
                .unwrap()
                .get_mut(name)
                .and_then(|a| a.pop())
                .unwrap_or_else(|| Err(std::io::Error::other("no more answers")));
            Box::pin(async move { answer })
        }
    }

    #[tokio::test]
    async fn names_resolve_to_addresses_that_keep_the_name_for_tls() {
        let resolved = SystemResolver
            .resolve("https://localhost:9000")
            .await
            .unwrap();
        assert!(!resolved.is_empty());
        for dial in &resolved {
            let (address, name) = split_dial_address(dial);
            assert!(address.starts_with("https://"), "{dial}");
            assert!(address.ends_with(":9000"), "{dial}");
            assert_eq!(name, Some("localhost"));
        }
        let resolved = SystemResolver.resolve("127.0.0.1:9000").await.unwrap();
        assert_eq!(resolved, vec!["127.0.0.1:9000".to_string()]);
        assert_eq!(split_dial_address(&resolved[0]), ("127.0.0.1:9000", None));
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// Applies each resolution's plan to a member set, as the client's loop does.
    #[tokio::test]
    async fn re_resolving_joins_new_addresses_drains_vanished_and_survives_failures() {
        let resolver = Scripted::new(
            "workers:9000",
            vec![
                Ok(vec!["10.0.0.1:9000", "10.0.0.2:9000"]),
                Ok(vec!["10.0.0.1:9000", "10.0.0.2:9000", "10.0.0.3:9000"]),
                Err(std::io::Error::other("SERVFAIL")),
                Ok(vec![]),
                Ok(vec!["10.0.0.3:9000", "10.0.0.1:9000"]),
            ],
        );
        let mut names = Names::new(vec!["workers:9000".into()]);
        let mut members = BTreeSet::new();
        let mut plans = Vec::new();
        for _ in 0..5 {
            let (wanted, _) = names.resolve(&resolver).await;
            let plan = plan(&members, &wanted);
            for address in &plan.join {
                members.insert(address.clone());
            }
            for address in &plan.drain {
                members.remove(address);
            }
            plans.push(plan);
        }
        let joins = |list: &[&str]| Plan {
            join: list.iter().map(|s| s.to_string()).collect(),
            drain: Vec::new(),
        };
        assert_eq!(plans[0], joins(&["10.0.0.1:9000", "10.0.0.2:9000"]));
        assert_eq!(plans[1], joins(&["10.0.0.3:9000"]));
        // A failed lookup and an empty answer keep the members.
        assert_eq!(plans[2], Plan::default());
        assert_eq!(plans[3], Plan::default());
        assert_eq!(
            plans[4],
            Plan {
                join: vec![],
                drain: vec!["10.0.0.2:9000".into()]
            }
        );
        assert_eq!(members, set(&["10.0.0.1:9000", "10.0.0.3:9000"]));
    }

    #[tokio::test]
    async fn the_system_resolver_passes_unix_paths_and_resolves_literals() {
        let resolver = SystemResolver;
        assert_eq!(
            resolver.resolve("unix:/tmp/w.sock").await.unwrap(),
            vec!["unix:/tmp/w.sock".to_string()]
        );
        assert_eq!(
            resolver.resolve("127.0.0.1:9000").await.unwrap(),
            vec!["127.0.0.1:9000".to_string()]
        );
    }
}
