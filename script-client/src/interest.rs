//! What the scripts want: the hooks they declare in Ready, and each hook's failure policy.

use flowtap_proto::v1::{Hook, ScriptInfo};
use flowtap_proxy_core::hooks::{HookInterest, Interest};

use crate::{Config, FailurePolicy};

/// The hooks whose outcome the flow waits for: wanted before any worker said what its scripts
/// implement, so that the failure policy applies to every HTTP flow until one does.
const HTTP_AWAITED: [Hook; 4] = [
    Hook::Requestheaders,
    Hook::Request,
    Hook::Responseheaders,
    Hook::Response,
];

/// Interest in the awaited HTTP hooks (see [`HTTP_AWAITED`]), for a client that has not yet
/// seen a Ready: no worker was reachable at start-up. A later Ready widens it.
pub(crate) fn provisional(interest: &Interest) {
    for hook in HTTP_AWAITED {
        interest.widen(
            hook,
            HookInterest {
                wanted: true,
                needs_body: false,
                awaited: true,
            },
        );
    }
}

/// Each declared hook's policy: closed if any script implementing it is closed.
pub(crate) fn policies_of(config: &Config, scripts: &[ScriptInfo]) -> Vec<(Hook, FailurePolicy)> {
    let mut policies: Vec<(Hook, FailurePolicy)> = Vec::new();
    for script in scripts {
        let policy = config
            .failure_by_script
            .get(&script.path)
            .copied()
            .unwrap_or(config.failure);
        for spec in &script.hooks {
            match policies.iter_mut().find(|(h, _)| *h == spec.hook()) {
                Some((_, existing)) if policy == FailurePolicy::Closed => *existing = policy,
                Some(_) => {}
                None => policies.push((spec.hook(), policy)),
            }
        }
    }
    policies
}

/// Adds the hooks `scripts` declare to `interest`. A WebSocket, TCP or UDP flow's end hooks are
/// added (observed) whenever a script implements one of its hooks: the worker lets go of the
/// flow object it keeps for the scripts only at its end.
pub(crate) fn declare(interest: &Interest, scripts: &[ScriptInfo]) {
    let observed = HookInterest {
        wanted: true,
        needs_body: false,
        awaited: false,
    };
    let families: [(&[Hook], &[Hook]); 3] = [
        (
            &[Hook::WebsocketStart, Hook::WebsocketMessage],
            &[Hook::WebsocketEnd],
        ),
        (
            &[Hook::TcpStart, Hook::TcpMessage],
            &[Hook::TcpEnd, Hook::TcpError],
        ),
        (
            &[Hook::UdpStart, Hook::UdpMessage],
            &[Hook::UdpEnd, Hook::UdpError],
        ),
    ];
    for script in scripts {
        for (hooks, ends) in families {
            if script.hooks.iter().any(|spec| hooks.contains(&spec.hook())) {
                for end in ends {
                    interest.widen(*end, observed);
                }
            }
        }
    }
    for script in scripts {
        for spec in &script.hooks {
            interest.widen(
                spec.hook(),
                HookInterest {
                    wanted: true,
                    needs_body: spec.needs_body,
                    awaited: spec.awaited,
                },
            );
        }
    }
}
