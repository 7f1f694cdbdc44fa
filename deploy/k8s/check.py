"""Checks rendered Kubernetes manifests: the API schemas, then the layout's own promises.

    python check.py RENDERED.yaml...

Run by scripts/validate-k8s (with the kubernetes-validate package installed), on the output of
`kubectl kustomize` for each overlay. Every object is validated strictly (unknown fields are
errors) against the Kubernetes API schemas of release KUBERNETES_VERSION; a kind without a
schema is an error too. Then each Deployment is checked for what docs/operations.md promises:
probes on the metrics port, scrape annotations, requests and limits, a locked-down security
context, files the flags name mounted, a termination grace period above the process's drain,
a hook deadline (`hook_timeout`) on every proxy that uses shared script workers; Services and
policies must select pods that exist.

Prints one line per problem, naming the file and the object, and exits 1 if there was any.
"""

import re
import sys

import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.37.0"

# Seconds a pod gets beyond its process's drain, for the final flush (proxy) or `done` (worker).
GRACE_HEADROOM = 10

# Flags whose value is a file the container must have mounted.
FILE_FLAGS = {
    "--tls-cert", "--tls-key", "--tls-client-ca", "--token-file",
    "--grpc-ca", "--grpc-cert", "--grpc-key", "--grpc-token-file", "-s",
}

# The drain each binary does on SIGTERM, by flag, and its default when the flag is absent.
DRAIN_FLAGS = {"script-host": ("--shutdown-grace", 10), "flowtap": ("shutdown_grace", 5)}


def name_of(obj):
    kind = obj.get("kind", "?")
    meta = obj.get("metadata") or {}
    return f"{kind}/{meta.get('name', '?')}"


def schema_problems(obj):
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        return [f"does not match the Kubernetes {e.version} schema at {path or '(top)'}: {e.message}"]
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
        return [f"has no Kubernetes {KUBERNETES_VERSION} schema: {e.message}"]
    return []


def args_as_pairs(args):
    """`--flag=value` and `--flag value` (for known flags) as (flag, value) pairs."""
    pairs, i = [], 0
    while i < len(args):
        arg = str(args[i])
        if "=" in arg and arg.startswith("-"):
            flag, value = arg.split("=", 1)
            pairs.append((flag, value))
        elif arg in FILE_FLAGS | {"--set", "--shutdown-grace"} and i + 1 < len(args):
            pairs.append((arg, str(args[i + 1])))
            i += 1
        else:
            pairs.append((arg, None))
        i += 1
    return pairs


def drain_seconds(container, pairs):
    binary = (container.get("command") or ["flowtap"])[0]
    if binary not in DRAIN_FLAGS:
        return None
    flag, default = DRAIN_FLAGS[binary]
    for key, value in pairs:
        if key == flag and value is not None:
            return float(value)
        if key == "--set" and value and value.startswith(flag + "="):
            return float(value.split("=", 1)[1])
    return default


def deadline_problems(container, pairs):
    """A proxy that uses shared workers (`--script-host`) must set `hook_timeout`: without one
    a hook takes the time it takes (mitmdump's behaviour, flowtap's default for one machine),
    and one slow script would hold flows for as long as it likes (docs/operations.md)."""
    binary = (container.get("command") or ["flowtap"])[0]
    if binary != "flowtap" or not any(flag == "--script-host" for flag, _ in pairs):
        return []
    for flag, value in pairs:
        if flag == "--set" and value and value.startswith("hook_timeout="):
            try:
                if float(value.split("=", 1)[1]) > 0:
                    return []
            except ValueError:
                pass
    return [f"container {container['name']}: uses --script-host workers without a hook "
            f"deadline (--set=hook_timeout=SECONDS)"]


def probe_problems(container, pod_meta):
    problems = []
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
    if "metrics" not in ports:
        problems.append(f"container {container['name']}: no port named metrics")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = (container.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or get.get("port") != "metrics":
            problems.append(f"container {container['name']}: {probe} is not GET {path} on port metrics")
    annotations = pod_meta.get("annotations") or {}
    if annotations.get("prometheus.io/scrape") != "true" or str(
        annotations.get("prometheus.io/port")
    ) != str(ports.get("metrics")):
        problems.append("pod template lacks prometheus.io/scrape and prometheus.io/port of the metrics port")
    return problems


def container_problems(container, pod, pod_meta):
    name = container["name"]
    problems = probe_problems(container, pod_meta)
    resources = container.get("resources") or {}
    for bound in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in (resources.get(bound) or {}):
                problems.append(f"container {name}: no {resource} in resources.{bound}")
    security = container.get("securityContext") or {}
    if security.get("allowPrivilegeEscalation") is not False:
        problems.append(f"container {name}: allowPrivilegeEscalation is not false")
    if security.get("readOnlyRootFilesystem") is not True:
        problems.append(f"container {name}: readOnlyRootFilesystem is not true")
    if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
        problems.append(f"container {name}: capabilities do not drop ALL")
    mounts = [m["mountPath"] for m in container.get("volumeMounts") or []]
    env = {e["name"] for e in container.get("env") or []}
    pairs = args_as_pairs(container.get("args") or [])
    for flag, value in pairs:
        if flag in FILE_FLAGS and value and not any(
            value == m or value.startswith(m.rstrip("/") + "/") for m in mounts
        ):
            problems.append(f"container {name}: {flag} names {value}, which no volume mounts")
        for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value or ""):
            if var not in env:
                problems.append(f"container {name}: $({var}) in {flag} is not in env")
    problems += deadline_problems(container, pairs)
    drain = drain_seconds(container, pairs)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if drain is not None and grace < drain + GRACE_HEADROOM:
        problems.append(
            f"terminationGracePeriodSeconds {grace} is under the drain ({drain:g} s) "
            f"plus {GRACE_HEADROOM} s"
        )
    return problems


def deployment_problems(obj):
    template = obj["spec"]["template"]
    pod, pod_meta = template["spec"], template.get("metadata") or {}
    problems = []
    if (pod.get("securityContext") or {}).get("runAsNonRoot") is not True:
        problems.append("pod securityContext does not set runAsNonRoot")
    for container in pod.get("initContainers", []) + pod["containers"]:
        problems += container_problems(container, pod, pod_meta)
    return problems


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def cross_problems(objects):
    """Services, budgets and policies that select no pods; pods no policy covers."""
    pods = [
        (o["spec"]["template"].get("metadata", {}).get("labels") or {}, o)
        for o in objects
        if o.get("kind") == "Deployment"
    ]
    problems = []
    for o in objects:
        kind, spec = o.get("kind"), o.get("spec") or {}
        if kind == "Service":
            selector = spec.get("selector") or {}
        elif kind in ("PodDisruptionBudget", "NetworkPolicy"):
            key = "selector" if kind == "PodDisruptionBudget" else "podSelector"
            selector = (spec.get(key) or {}).get("matchLabels") or {}
        else:
            continue
        matched = [d for labels, d in pods if selects(selector, labels)]
        if not matched:
            problems.append((o, "selects no pod of any Deployment"))
        if kind == "Service":
            for port in spec.get("ports") or []:
                target = port.get("targetPort")
                for d in matched:
                    names = {
                        p.get("name")
                        for c in d["spec"]["template"]["spec"]["containers"]
                        for p in c.get("ports") or []
                    }
                    if isinstance(target, str) and target not in names:
                        problems.append((o, f"targetPort {target} is no port of {name_of(d)}"))
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    for labels, d in pods:
        if not any(
            selects((p["spec"].get("podSelector") or {}).get("matchLabels") or {}, labels)
            for p in policies
        ):
            problems.append((d, "no NetworkPolicy selects its pods"))
    return problems


def check_file(path):
    with open(path, encoding="utf-8") as f:
        objects = [o for o in yaml.safe_load_all(f) if o]
    problems = []
    for obj in objects:
        if not isinstance(obj, dict) or "kind" not in obj or "apiVersion" not in obj:
            problems.append((obj, "is not a Kubernetes object (no kind or apiVersion)"))
            continue
        found = schema_problems(obj)
        problems += [(obj, p) for p in found]
        if not found and obj["kind"] == "Deployment":
            problems += [(obj, p) for p in deployment_problems(obj)]
    problems += cross_problems([o for o in objects if isinstance(o, dict)])
    for obj, problem in problems:
        label = name_of(obj) if isinstance(obj, dict) else repr(obj)[:40]
        print(f"{path}: {label}: {problem}")
    return len(objects), len(problems)


def main(paths):
    failed = False
    for path in paths:
        count, problems = check_file(path)
        if problems or count == 0:
            failed = True
            if count == 0:
                print(f"{path}: no objects")
        else:
            print(f"{path}: {count} objects valid against Kubernetes {KUBERNETES_VERSION} (strict)")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
