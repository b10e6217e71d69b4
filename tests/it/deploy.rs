//! The files under `deploy/` agree with one another and with the service: every YAML file and
//! dashboard parses; ports, probe paths, the scrape target, the Grafana data source and the
//! dashboards' metric names line up; pods get longer to stop than Aurore takes to drain;
//! every `AURORE__*` variable set for compose, the image and Kubernetes is a setting Aurore
//! accepts; the Kubernetes base requires keys and fences the pods in; the autoscale overlay
//! owns the replica count and never scales down; and the alerts key on labels the scrape
//! configs produce. No container engine or cluster needed.

use aurore::Settings;
use aurore_telemetry::metrics::{DESCRIBED, Kind};
use serde::Deserialize as _;
use serde_json::Value as Json;
use serde_norway::Value as Yaml;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The port Aurore listens on in every deployment.
const PORT: u64 = 8080;
/// Where the image keeps the journal.
const JOURNAL_DIR: &str = "/var/lib/aurore/journal";
/// The uid the image runs as.
const UID: u64 = 10_001;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate sits in the workspace").join("deploy")
}

fn deploy(path: &str) -> PathBuf {
    deploy_dir().join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// Every file under `dir`, at any depth, whose extension is one of `extensions`; sorted.
fn files_under(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().and_then(|extension| extension.to_str()).is_some_and(|e| extensions.contains(&e))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// `path` relative to `deploy/`, with forward slashes.
fn relative(path: &Path) -> String {
    path.strip_prefix(deploy_dir()).expect("a path under deploy/").to_string_lossy().replace('\\', "/")
}

/// Every YAML document in a file; Kubernetes manifests may hold several, separated by `---`.
fn yaml_documents(path: &Path) -> Vec<Yaml> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|document| Yaml::deserialize(document).unwrap_or_else(|error| panic!("{}: {error}", path.display())))
        .filter(|document| !document.is_null())
        .collect()
}

/// The one YAML document in a file.
fn yaml(path: &Path) -> Yaml {
    let mut documents = yaml_documents(path);
    assert_eq!(documents.len(), 1, "{} should hold one YAML document", path.display());
    documents.remove(0)
}

fn json(path: &Path) -> Json {
    serde_json::from_str(&read(path)).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// A scalar as the string an environment variable would hold.
fn scalar(value: &Yaml) -> String {
    match value {
        Yaml::String(text) => text.clone(),
        Yaml::Number(number) => number.to_string(),
        Yaml::Bool(flag) => flag.to_string(),
        other => panic!("expected a scalar, found {other:?}"),
    }
}

fn text<'a>(value: &'a Yaml, what: &str) -> &'a str {
    value.as_str().unwrap_or_else(|| panic!("{what} should be a string, found {value:?}"))
}

fn number(value: &Yaml, what: &str) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("{what} should be a whole number, found {value:?}"))
}

fn sequence<'a>(value: &'a Yaml, what: &str) -> &'a [Yaml] {
    value.as_sequence().unwrap_or_else(|| panic!("{what} should be a list, found {value:?}"))
}

/// Loads Aurore's settings from `env` as the binary would, failing the test on any unknown
/// or invalid `AURORE__*` variable.
fn load_settings(source: &str, env: &HashMap<String, String>) -> Settings {
    for key in env.keys().filter(|key| key.starts_with("AURORE")) {
        assert!(key.starts_with("AURORE__"), "{source}: {key} lacks the AURORE__ prefix, so Aurore would ignore it");
    }
    Settings::load(None, env).unwrap_or_else(|error| panic!("{source}: Aurore rejects these settings: {error}"))
}

// ---- docker compose

fn compose() -> Yaml {
    yaml(&deploy("docker-compose.yml"))
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    compose["services"].get(name).unwrap_or_else(|| panic!("docker-compose.yml has no service {name}"))
}

/// A compose service's environment, written as a mapping or as a list of `KEY=value`.
fn environment(service: &Yaml) -> HashMap<String, String> {
    match &service["environment"] {
        Yaml::Mapping(variables) => variables.iter().map(|(key, value)| (scalar(key), scalar(value))).collect(),
        Yaml::Sequence(variables) => variables
            .iter()
            .map(|variable| {
                let variable = scalar(variable);
                let (key, value) = variable.split_once('=').unwrap_or_else(|| panic!("{variable} is not KEY=value"));
                (key.to_owned(), value.to_owned())
            })
            .collect(),
        Yaml::Null => HashMap::new(),
        other => panic!("environment should be a mapping or a list, found {other:?}"),
    }
}

/// The (source, target) of each volume a compose service mounts.
fn mounts(service: &Yaml) -> Vec<(String, String)> {
    let Some(volumes) = service["volumes"].as_sequence() else {
        return Vec::new();
    };
    volumes
        .iter()
        .map(|volume| match volume {
            Yaml::String(short) => {
                let mut parts = short.split(':');
                let source = parts.next().unwrap_or_default().to_owned();
                let target = parts.next().unwrap_or_else(|| panic!("volume {short} has no target")).to_owned();
                (source, target)
            }
            long => (scalar(&long["source"]), scalar(&long["target"])),
        })
        .collect()
}

/// Where a compose service mounts `source`.
fn mount_target(service: &Yaml, source: &str) -> String {
    mounts(service)
        .into_iter()
        .find_map(|(from, target)| (from == source).then_some(target))
        .unwrap_or_else(|| panic!("the service does not mount {source}"))
}

/// The container ports a compose service publishes.
fn published_ports(service: &Yaml) -> Vec<u64> {
    sequence(&service["ports"], "ports")
        .iter()
        .map(|port| match port {
            Yaml::Mapping(_) => number(&port["target"], "a port's target"),
            short => {
                let short = scalar(short);
                let container = short.rsplit(':').next().unwrap_or_default();
                let container = container.split('/').next().unwrap_or_default();
                container.parse().unwrap_or_else(|_| panic!("cannot read the container port of {short}"))
            }
        })
        .collect()
}

/// A compose duration such as `45s` or `1m30s`, in milliseconds.
fn duration_ms(duration: &str) -> u64 {
    let mut total = 0;
    let mut rest = duration.trim();
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (amount, tail) = rest.split_at(digits);
        let unit_length = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_length);
        let amount: u64 = amount.parse().unwrap_or_else(|_| panic!("cannot read the duration {duration:?}"));
        let scale = match unit {
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1_000,
            "ms" => 1,
            _ => panic!("unknown unit {unit:?} in the duration {duration:?}"),
        };
        total += amount * scale;
        rest = next;
    }
    total
}

// ---- the Dockerfile

/// The instructions of the Dockerfile's last stage, continuation lines joined:
/// (instruction, arguments).
fn runtime_instructions() -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in read(&deploy("Dockerfile")).lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(continued) = line.strip_suffix('\\') {
            current.push_str(continued);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let (instruction, arguments) = current.trim().split_once(char::is_whitespace).unwrap_or((current.trim(), ""));
        instructions.push((instruction.to_uppercase(), arguments.trim().to_owned()));
        current.clear();
    }
    let last_stage = instructions.iter().rposition(|(instruction, _)| instruction == "FROM").expect("a FROM line");
    instructions.split_off(last_stage)
}

fn dockerfile_arguments(instructions: &[(String, String)], name: &str) -> Vec<String> {
    instructions.iter().filter(|(instruction, _)| instruction == name).map(|(_, arguments)| arguments.clone()).collect()
}

/// The variables the image sets with ENV (`KEY=value` pairs or the old `KEY value` form).
fn dockerfile_env(instructions: &[(String, String)]) -> HashMap<String, String> {
    let mut env = HashMap::new();
    for arguments in dockerfile_arguments(instructions, "ENV") {
        let first = arguments.split_whitespace().next().unwrap_or_default();
        if first.contains('=') {
            for pair in arguments.split_whitespace() {
                let (key, value) = pair.split_once('=').unwrap_or_else(|| panic!("ENV {arguments}: {pair}"));
                env.insert(key.to_owned(), value.trim_matches('"').to_owned());
            }
        } else {
            let (key, value) = arguments.split_once(char::is_whitespace).expect("ENV KEY value");
            env.insert(key.to_owned(), value.trim().to_owned());
        }
    }
    env
}

// ---- Kubernetes

/// Every object in the kustomize base with the file it comes from, kustomization.yaml aside.
fn k8s_objects() -> Vec<(String, Yaml)> {
    let mut objects = Vec::new();
    for path in files_under(&deploy("k8s/base"), &["yaml", "yml"]) {
        let file = path.file_name().expect("a file name").to_string_lossy().into_owned();
        if file == "kustomization.yaml" {
            continue;
        }
        for object in yaml_documents(&path) {
            for field in ["apiVersion", "kind"] {
                text(&object[field], &format!("{file}: {field}"));
            }
            text(&object["metadata"]["name"], &format!("{file}: metadata.name"));
            objects.push((file.clone(), object));
        }
    }
    objects
}

fn kustomization() -> Yaml {
    yaml(&deploy("k8s/base/kustomization.yaml"))
}

/// The objects the kustomization applies.
fn applied_objects() -> Vec<Yaml> {
    let resources: BTreeSet<String> = sequence(&kustomization()["resources"], "resources").iter().map(scalar).collect();
    k8s_objects().into_iter().filter(|(file, _)| resources.contains(file)).map(|(_, object)| object).collect()
}

fn only<'a>(objects: &'a [Yaml], kind: &str) -> &'a Yaml {
    let mut found = objects.iter().filter(|object| object["kind"] == kind);
    let object = found.next().unwrap_or_else(|| panic!("deploy/k8s has no {kind}"));
    assert!(found.next().is_none(), "deploy/k8s has more than one {kind}");
    object
}

fn named<'a>(objects: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    objects
        .iter()
        .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("deploy/k8s has no {kind} {name}"))
}

/// The StatefulSet's `aurore` container.
fn container(statefulset: &Yaml) -> &Yaml {
    sequence(&statefulset["spec"]["template"]["spec"]["containers"], "containers")
        .iter()
        .find(|container| container["name"] == "aurore")
        .expect("the StatefulSet has a container named aurore")
}

/// The container port that `port` (a number or a port name) designates.
fn container_port(container: &Yaml, port: &Yaml) -> u64 {
    match port {
        Yaml::String(name) => sequence(&container["ports"], "container ports")
            .iter()
            .find(|candidate| candidate["name"] == name.as_str())
            .map(|candidate| number(&candidate["containerPort"], "containerPort"))
            .unwrap_or_else(|| panic!("the container has no port named {name}")),
        other => number(other, "a port"),
    }
}

/// Whether every label `selector` asks for is among `labels`.
fn selects(selector: &Yaml, labels: &Yaml) -> bool {
    let selector = selector.as_mapping().expect("a selector is a mapping of labels");
    !selector.is_empty() && selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

/// The environment a pod of the StatefulSet starts with: its ConfigMaps, then its literal
/// variables (those read from secrets are left out).
fn pod_environment(objects: &[Yaml]) -> HashMap<String, String> {
    let container = container(only(objects, "StatefulSet"));
    let mut env = HashMap::new();
    for source in container["envFrom"].as_sequence().map(Vec::as_slice).unwrap_or_default() {
        let name = text(&source["configMapRef"]["name"], "envFrom.configMapRef.name");
        env.extend(config_map_data(named(objects, "ConfigMap", name)));
    }
    for variable in container["env"].as_sequence().map(Vec::as_slice).unwrap_or_default() {
        if !variable["value"].is_null() {
            env.insert(scalar(&variable["name"]), scalar(&variable["value"]));
        }
    }
    env
}

fn config_map_data(config_map: &Yaml) -> HashMap<String, String> {
    let data = config_map["data"].as_mapping().expect("the ConfigMap has data");
    data.iter()
        .map(|(key, value)| {
            let key = scalar(key);
            // Kubernetes refuses a ConfigMap whose values are not strings.
            let value = text(value, &format!("ConfigMap value of {key}")).to_owned();
            (key, value)
        })
        .collect()
}

/// Seconds a container's preStop hook pauses before SIGTERM is sent.
fn pre_stop_pause(container: &Yaml) -> u64 {
    let pre_stop = &container["lifecycle"]["preStop"];
    if !pre_stop["sleep"].is_null() {
        return number(&pre_stop["sleep"]["seconds"], "preStop.sleep.seconds");
    }
    match pre_stop["exec"]["command"].as_sequence().map(Vec::as_slice) {
        None => 0,
        Some([program, seconds]) if program == "sleep" => {
            scalar(seconds).parse().unwrap_or_else(|_| panic!("preStop sleeps for {seconds:?}"))
        }
        Some(command) => panic!("cannot tell how long the preStop command {command:?} takes"),
    }
}

// ---- PromQL

/// The series a PromQL expression reads: identifiers outside label matchers, strings, range
/// selectors and grouping clauses that are neither functions, aggregations nor keywords.
fn metric_names(expression: &str) -> Vec<String> {
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    const KEYWORDS: &[&str] = &["bool", "offset", "and", "or", "unless", "atan2", "inf", "nan"];
    const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    let chars: Vec<char> = expression.chars().collect();
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = Vec::new();
    let mut labels_follow = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&chars, i);
        } else if c == '{' || c == '[' || (c == '(' && labels_follow) {
            let close = match c {
                '{' => '}',
                '[' => ']',
                _ => ')',
            };
            labels_follow = false;
            i = skip_until(&chars, i + 1, close);
        } else if c == '$' {
            // A Grafana variable: $name or ${name}.
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_until(&chars, i + 1, '}');
            } else {
                while i < chars.len() && is_word(chars[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if is_word(c) {
            let start = i;
            while i < chars.len() && is_word(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let calls = chars[i..].iter().find(|c| !c.is_whitespace()) == Some(&'(');
            if GROUPING.contains(&word.as_str()) {
                labels_follow = calls;
            } else if !calls && !AGGREGATIONS.contains(&word.as_str()) && !KEYWORDS.contains(&word.as_str()) {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The index just past the string literal that starts at `start`.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        if chars[i] == '\\' && quote != '`' {
            i += 2;
        } else if chars[i] == quote {
            return i + 1;
        } else {
            i += 1;
        }
    }
    chars.len()
}

/// The index just past the first `close` at or after `from`, string literals skipped.
fn skip_until(chars: &[char], from: usize, close: char) -> usize {
    let mut i = from;
    while i < chars.len() {
        if matches!(chars[i], '"' | '\'' | '`') {
            i = skip_string(chars, i);
        } else if chars[i] == close {
            return i + 1;
        } else {
            i += 1;
        }
    }
    chars.len()
}

/// A series Aurore exports: a described metric (a histogram as its `_bucket`, `_sum` and
/// `_count`), or a process metric.
fn is_exported(name: &str) -> bool {
    name.starts_with("aurore_process_")
        || DESCRIBED.iter().any(|metric| match metric.kind {
            Kind::Histogram => {
                name.strip_prefix(metric.name).is_some_and(|suffix| ["_bucket", "_sum", "_count"].contains(&suffix))
            }
            Kind::Counter | Kind::Gauge => name == metric.name,
        })
}

// ---- Grafana

/// Every panel of a dashboard, those inside rows included.
fn panels(dashboard: &Json) -> Vec<&Json> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("the dashboard has panels") {
        all.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            all.extend(nested);
        }
    }
    all
}

/// Every query expression of a dashboard's panels.
fn expressions(dashboard: &Json) -> Vec<String> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .map(|target| target["expr"].as_str().expect("every query has an expr").to_owned())
        .collect()
}

fn dashboards() -> Vec<(PathBuf, Json)> {
    let dashboards: Vec<(PathBuf, Json)> = files_under(&deploy("grafana/dashboards"), &["json"])
        .into_iter()
        .map(|path| {
            let dashboard = json(&path);
            (path, dashboard)
        })
        .collect();
    assert!(!dashboards.is_empty(), "deploy/grafana/dashboards holds no dashboard");
    dashboards
}

/// The provisioned Prometheus data source.
fn prometheus_datasource() -> Yaml {
    let mut found = Vec::new();
    for path in files_under(&deploy("grafana/provisioning/datasources"), &["yml", "yaml"]) {
        for datasource in sequence(&yaml(&path)["datasources"], "datasources") {
            if datasource["type"] == "prometheus" {
                found.push(datasource.clone());
            }
        }
    }
    assert_eq!(found.len(), 1, "exactly one Prometheus data source should be provisioned");
    found.remove(0)
}

// ---- the tests

#[test]
fn every_deployment_file_parses() {
    let yaml_files = files_under(&deploy_dir(), &["yml", "yaml"]);
    let names: BTreeSet<String> = yaml_files.iter().map(|path| relative(path)).collect();
    for expected in [
        "docker-compose.yml",
        "prometheus/prometheus.yml",
        "prometheus/alerts.yml",
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/aurore.yml",
        "prometheus/alerts.test.yml",
        "prometheus/prometheus-kubernetes.yml",
        "k8s/base/kustomization.yaml",
        "k8s/base/configmap.yaml",
        "k8s/base/service.yaml",
        "k8s/base/statefulset.yaml",
        "k8s/base/pdb.yaml",
        "k8s/base/networkpolicy.yaml",
        "k8s/base/secret.example.yaml",
        "k8s/overlays/autoscale/kustomization.yaml",
        "k8s/overlays/autoscale/hpa.yaml",
        "docker-compose.queue.yml",
        "k8s/overlays/queue/kustomization.yaml",
        "k8s/overlays/queue/writer.yaml",
        "k8s/overlays/queue/writer-hpa.yaml",
        "k8s/overlays/queue/nats-values.yaml",
        "k8s/overlays/queue/prometheus-adapter-values.yaml",
    ] {
        assert!(names.contains(expected), "deploy/{expected} is missing; found {names:?}");
    }
    for path in &yaml_files {
        let documents = yaml_documents(path);
        assert!(!documents.is_empty(), "{} holds no YAML document", path.display());
        for document in &documents {
            assert!(document.is_mapping(), "{}: a document is not a mapping: {document:?}", path.display());
        }
    }
    assert_eq!(
        yaml_documents(&deploy("k8s/base/service.yaml")).len(),
        2,
        "service.yaml holds the regular and the headless Service"
    );
    for (path, dashboard) in dashboards() {
        assert!(dashboard["panels"].is_array(), "{} is not a dashboard", path.display());
    }
}

#[test]
fn aurore_listens_on_8080_everywhere() {
    let compose = compose();
    assert!(published_ports(service(&compose, "aurore")).contains(&PORT), "compose publishes Aurore's port");
    let compose_settings = load_settings("docker-compose.yml", &environment(service(&compose, "aurore")));
    assert_eq!(u64::from(compose_settings.server.port), PORT);
    assert_eq!(compose_settings.server.host, "0.0.0.0", "in a container Aurore must listen on every interface");

    let instructions = runtime_instructions();
    let exposed = dockerfile_arguments(&instructions, "EXPOSE");
    assert_eq!(exposed, [PORT.to_string()], "the image exposes Aurore's port");
    let image_settings = load_settings("Dockerfile", &dockerfile_env(&instructions));
    assert_eq!(u64::from(image_settings.server.port), PORT);
    assert_eq!(image_settings.server.host, "0.0.0.0");

    let objects = applied_objects();
    let statefulset = only(&objects, "StatefulSet");
    let container = container(statefulset);
    assert_eq!(container_port(container, &Yaml::from("http")), PORT, "the container port named http");
    let pod_settings = load_settings("deploy/k8s", &pod_environment(&objects));
    assert_eq!(u64::from(pod_settings.server.port), PORT);
    assert_eq!(pod_settings.server.host, "0.0.0.0");

    let template_labels = &statefulset["spec"]["template"]["metadata"]["labels"];
    let services: Vec<&Yaml> = objects.iter().filter(|object| object["kind"] == "Service").collect();
    assert_eq!(services.len(), 2, "a ClusterIP Service and the headless one");
    for service in services {
        let name = text(&service["metadata"]["name"], "Service name");
        assert!(selects(&service["spec"]["selector"], template_labels), "Service {name} selects Aurore's pods");
        for port in sequence(&service["spec"]["ports"], "Service ports") {
            assert_eq!(number(&port["port"], "Service port"), PORT, "Service {name}");
            assert_eq!(container_port(container, &port["targetPort"]), PORT, "Service {name}'s targetPort");
        }
    }
    let cluster_ip = named(&objects, "Service", "aurore");
    assert!(cluster_ip["spec"]["clusterIP"].is_null(), "Service aurore gets a cluster IP");
    assert!(
        sequence(&cluster_ip["spec"]["ports"], "ports").iter().any(|port| port["name"] == "http"),
        "Service aurore names its port http"
    );
    let headless = named(&objects, "Service", text(&statefulset["spec"]["serviceName"], "serviceName"));
    assert_eq!(headless["spec"]["clusterIP"], "None", "the StatefulSet's governing Service is headless");
}

#[test]
fn probes_use_the_health_endpoints() {
    let objects = applied_objects();
    let container = container(only(&objects, "StatefulSet"));
    for (probe, path) in
        [("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready"), ("startupProbe", "/health/live")]
    {
        let check = &container[probe]["httpGet"];
        assert_eq!(check["path"], path, "{probe}");
        assert_eq!(container_port(container, &check["port"]), PORT, "{probe} port");
    }
    let startup = &container["startupProbe"];
    let period = startup["periodSeconds"].as_u64().unwrap_or(10);
    let patience = number(&startup["failureThreshold"], "startupProbe.failureThreshold") * period;
    assert!(patience >= 30, "the startup probe gives Aurore only {patience} s to start listening");

    let healthchecks = dockerfile_arguments(&runtime_instructions(), "HEALTHCHECK");
    assert_eq!(healthchecks.len(), 1, "the image has one HEALTHCHECK");
    assert!(healthchecks[0].contains("/health/live"), "the image's HEALTHCHECK asks /health/live: {}", healthchecks[0]);

    let compose = compose();
    let postgres = &service(&compose, "postgres")["healthcheck"]["test"];
    assert!(!postgres.is_null(), "compose's postgres has a healthcheck, which Aurore's depends_on waits for");
    assert_eq!(service(&compose, "aurore")["depends_on"]["postgres"]["condition"], "service_healthy");
}

#[test]
fn prometheus_scrapes_aurore_metrics() {
    let config = yaml(&deploy("prometheus/prometheus.yml"));
    let jobs = sequence(&config["scrape_configs"], "scrape_configs");
    let target = format!("aurore:{PORT}");
    let job = jobs
        .iter()
        .find(|job| {
            sequence(&job["static_configs"], "static_configs")
                .iter()
                .any(|group| sequence(&group["targets"], "targets").iter().any(|t| *t == target.as_str()))
        })
        .unwrap_or_else(|| panic!("no scrape job targets {target}"));
    let path = job["metrics_path"].as_str().unwrap_or("/metrics");
    assert_eq!(path, "/metrics");
    let interval =
        if job["scrape_interval"].is_null() { &config["global"]["scrape_interval"] } else { &job["scrape_interval"] };
    assert_eq!(interval, "15s");
    for rule_file in config["rule_files"].as_sequence().map(Vec::as_slice).unwrap_or_default() {
        let rule_file = deploy("prometheus").join(text(rule_file, "rule_files"));
        assert!(rule_file.is_file(), "the rule file {} is missing", rule_file.display());
    }

    let compose = compose();
    assert!(compose["services"].get("aurore").is_some(), "the scrape target is compose's aurore service");
    let prometheus = service(&compose, "prometheus");
    assert_eq!(mount_target(prometheus, "./prometheus"), "/etc/prometheus", "the image reads /etc/prometheus");
    assert!(published_ports(prometheus).contains(&9090));

    let statefulset = only(&applied_objects(), "StatefulSet").clone();
    let annotations = &statefulset["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], PORT.to_string().as_str());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
}

#[test]
fn alerts_use_aurore_metrics() {
    let alerts = yaml(&deploy("prometheus/alerts.yml"));
    let mut count = 0;
    for group in sequence(&alerts["groups"], "groups") {
        for rule in sequence(&group["rules"], "rules") {
            let alert = text(&rule["alert"], "alert");
            let names = metric_names(text(&rule["expr"], "expr"));
            assert!(!names.is_empty(), "{alert} reads no series");
            for name in names {
                assert!(name == "up" || is_exported(&name), "{alert} reads {name}, which Aurore does not export");
            }
            count += 1;
        }
    }
    assert!(count > 0, "alerts.yml holds no rule");
}

#[test]
fn grafana_reads_the_provisioned_prometheus() {
    let datasource = prometheus_datasource();
    assert_eq!(datasource["url"], "http://prometheus:9090");
    let uid = text(&datasource["uid"], "the data source uid");
    let compose = compose();
    assert!(compose["services"].get("prometheus").is_some(), "the data source is compose's prometheus service");
    let grafana = service(&compose, "grafana");
    assert_eq!(mount_target(grafana, "./grafana/provisioning"), "/etc/grafana/provisioning");

    let providers = yaml(&deploy("grafana/provisioning/dashboards/aurore.yml"));
    let provider = &sequence(&providers["providers"], "providers")[0];
    let dashboards_dir = mount_target(grafana, "./grafana/dashboards");
    assert_eq!(provider["options"]["path"], dashboards_dir.as_str(), "the provider reads the mounted dashboards");
    if let Some(home) = environment(grafana).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH") {
        let prefix = format!("{dashboards_dir}/");
        let file = home.strip_prefix(prefix.as_str()).expect("the home dashboard is a mounted one");
        assert!(deploy("grafana/dashboards").join(file).is_file(), "the home dashboard {file} is missing");
    }

    for (path, dashboard) in dashboards() {
        let file = path.display();
        assert!(dashboard["schemaVersion"].as_u64().is_some_and(|version| version >= 36), "{file}: schemaVersion");
        assert!(dashboard["uid"].as_str().is_some_and(|id| !id.is_empty()), "{file}: a fixed dashboard uid");
        let mut ids = BTreeSet::new();
        let mut queries = 0;
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().unwrap_or_default();
            assert!(ids.insert(panel["id"].as_u64().expect("a panel id")), "{file}: panel ids repeat at {title}");
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(panel["datasource"]["uid"], uid, "{file}: panel {title}");
            let targets = panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
            assert!(!targets.is_empty(), "{file}: panel {title} has no query");
            for target in targets {
                assert_eq!(target["datasource"]["uid"], uid, "{file}: a query of panel {title}");
                queries += 1;
            }
        }
        assert!(queries > 0, "{file}: no query");
        for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
            if !variable["datasource"].is_null() {
                assert_eq!(variable["datasource"]["uid"], uid, "{file}: variable {}", variable["name"]);
            }
        }
    }
}

#[test]
fn dashboards_query_aurore_metrics() {
    let mut used = BTreeSet::new();
    let mut all_expressions = Vec::new();
    for (path, dashboard) in dashboards() {
        for expression in expressions(&dashboard) {
            let names = metric_names(&expression);
            assert!(!names.is_empty(), "{}: {expression} reads no series", path.display());
            for name in names {
                assert!(name.starts_with("aurore_"), "{}: {expression} reads {name}", path.display());
                assert!(is_exported(&name), "{}: Aurore exports no {name}", path.display());
                used.insert(name);
            }
            all_expressions.push(expression);
        }
    }
    for needed in [
        "aurore_events_received_total",
        "aurore_events_stored_total",
        "aurore_buffer_events",
        "aurore_buffer_capacity_events",
        "aurore_journal_bytes",
        "aurore_journal_capacity_bytes",
        "aurore_batch_write_duration_seconds_bucket",
        "aurore_batch_size_events_bucket",
        "aurore_database_errors_total",
        "aurore_circuit_state",
        "aurore_dead_letters_total",
        "aurore_http_request_duration_seconds_bucket",
        "aurore_http_requests_total",
        "aurore_process_resident_memory_bytes",
    ] {
        assert!(used.contains(needed), "no panel shows {needed}");
    }
    let has =
        |parts: &[&str]| all_expressions.iter().any(|expression| parts.iter().all(|part| expression.contains(part)));
    assert!(has(&["aurore_buffer_events", "/ aurore_buffer_capacity_events"]), "a buffer fill ratio");
    assert!(has(&["aurore_journal_bytes", "/ aurore_journal_capacity_bytes"]), "a journal fill ratio");
    for quantile in ["0.5", "0.99"] {
        let call = format!("histogram_quantile({quantile},");
        assert!(has(&[call.as_str(), "aurore_batch_write_duration_seconds_bucket"]), "batch write latency p{quantile}");
    }
    let query_latency = [
        "histogram_quantile(0.99,",
        "aurore_http_request_duration_seconds_bucket",
        r#"route="/events""#,
        r#"method="GET""#,
    ];
    assert!(has(&query_latency), "query latency p99 of GET /events");
}

#[test]
fn metric_names_finds_series_only() {
    let latency = concat!(
        r#"histogram_quantile(0.99, sum by (le) "#,
        r#"(rate(aurore_x_bucket{route="/e}", method=~"GET|POST"}[$__rate_interval])))"#
    );
    assert_eq!(metric_names(latency), ["aurore_x_bucket"]);
    let joined = "sum(rate(a_total[5m])) / on (instance) group_left b_info offset 1h > 0.5";
    assert_eq!(metric_names(joined), ["a_total", "b_info"]);
    assert_eq!(metric_names(r#"max by (instance) (up{job="aurore"}) == bool 0"#), ["up"]);
    assert_eq!(metric_names("sum without (pod) (c) and ${var} d"), ["c", "d"]);
    assert!(metric_names("vector(1) * 2").is_empty());
    assert!(!is_exported("aurore_events_total"));
    assert!(is_exported("aurore_batch_size_events_count"));
    assert!(!is_exported("aurore_batch_size_events"));
}

#[test]
fn shutdown_grace_outlasts_the_drain_deadline() {
    let objects = applied_objects();
    let statefulset = only(&objects, "StatefulSet");
    let drain = load_settings("deploy/k8s", &pod_environment(&objects)).shutdown.drain_deadline.as_secs();
    let grace = number(&statefulset["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], "grace period");
    let pause = pre_stop_pause(container(statefulset));
    assert!(
        grace > drain + pause,
        "terminationGracePeriodSeconds ({grace} s) must exceed preStop ({pause} s) + drain deadline ({drain} s)"
    );

    let compose = compose();
    let aurore = service(&compose, "aurore");
    let drain = load_settings("docker-compose.yml", &environment(aurore)).shutdown.drain_deadline.as_secs();
    let grace = duration_ms(text(&aurore["stop_grace_period"], "stop_grace_period"));
    assert!(
        grace > drain * 1000,
        "compose's stop_grace_period ({grace} ms) must exceed the drain deadline ({drain} s)"
    );

    let signals = dockerfile_arguments(&runtime_instructions(), "STOPSIGNAL");
    assert_eq!(signals, ["SIGTERM"], "Aurore drains on SIGTERM");
    assert_eq!(duration_ms("1m30s"), 90_000);
}

#[test]
fn every_aurore_variable_is_a_setting() {
    // docker compose: the journal is on a named volume, traces go to the Jaeger service.
    let compose = compose();
    let aurore = service(&compose, "aurore");
    let env = environment(aurore);
    assert!(env.keys().any(|key| key.starts_with("AURORE__")), "compose sets Aurore's settings");
    let settings = load_settings("docker-compose.yml", &env);
    let journal = settings.journal.dir.to_string_lossy().into_owned();
    let volume = mounts(aurore)
        .into_iter()
        .find_map(|(source, target)| (target == journal).then_some(source))
        .unwrap_or_else(|| panic!("compose mounts no volume on the journal directory {journal}"));
    assert!(compose["volumes"].get(volume.as_str()).is_some(), "the journal volume {volume} is a named volume");
    let endpoint = env.get("AURORE__TELEMETRY__OTLP_ENDPOINT").expect("compose sends traces");
    assert_eq!(endpoint, "http://jaeger:4318/v1/traces");
    let jaeger = service(&compose, "jaeger");
    assert_eq!(environment(jaeger).get("COLLECTOR_OTLP_ENABLED").map(String::as_str), Some("true"));
    assert!(published_ports(jaeger).contains(&16686), "the Jaeger UI is published");
    let ratio: f64 = env.get("AURORE__TELEMETRY__SAMPLE_RATIO").expect("a sample ratio").parse().expect("a number");
    assert!((ratio - 1.0).abs() < f64::EPSILON, "compose traces every request");
    assert!(env.get("DATABASE_URL").is_some_and(|url| url.contains("@postgres:5432/")), "compose's database");

    // The image.
    let instructions = runtime_instructions();
    let settings = load_settings("Dockerfile", &dockerfile_env(&instructions));
    assert_eq!(settings.journal.dir, Path::new(JOURNAL_DIR));
    let volumes: Vec<String> = dockerfile_arguments(&instructions, "VOLUME")
        .iter()
        .map(|volume| volume.trim_matches(|c: char| matches!(c, '[' | ']' | '"' | ' ')).to_owned())
        .collect();
    assert_eq!(volumes, [JOURNAL_DIR], "the image declares the journal a volume");
    let user = dockerfile_arguments(&instructions, "USER");
    assert_eq!(user, [format!("{UID}:{UID}")], "the image runs as a numeric non-root user");

    // Kubernetes: the ConfigMap alone, then as the pod sees it.
    let objects = applied_objects();
    let config_map = config_map_data(only(&objects, "ConfigMap"));
    assert!(config_map.keys().all(|key| key.starts_with("AURORE__")), "the ConfigMap holds Aurore's settings only");
    load_settings("configmap.yaml", &config_map);
    let settings = load_settings("deploy/k8s", &pod_environment(&objects));
    let journal = settings.journal.dir;
    let statefulset = only(&objects, "StatefulSet");
    let claims: Vec<&str> = sequence(&statefulset["spec"]["volumeClaimTemplates"], "volumeClaimTemplates")
        .iter()
        .map(|claim| text(&claim["metadata"]["name"], "claim name"))
        .collect();
    let mount = sequence(&container(statefulset)["volumeMounts"], "volumeMounts")
        .iter()
        .find(|mount| Path::new(text(&mount["mountPath"], "mountPath")) == journal)
        .unwrap_or_else(|| panic!("nothing is mounted on the journal directory {}", journal.display()));
    let volume = text(&mount["name"], "volume name");
    assert!(claims.contains(&volume), "the journal is on a volumeClaimTemplate, not on {volume}");
}

#[test]
fn kubernetes_objects_fit_together() {
    let kustomization = kustomization();
    let resources: BTreeSet<String> = sequence(&kustomization["resources"], "resources").iter().map(scalar).collect();
    let manifests: BTreeSet<String> = k8s_objects().into_iter().map(|(file, _)| file).collect();
    assert!(!resources.contains("secret.example.yaml"), "the example secret must not be applied");
    let expected: BTreeSet<String> = manifests.into_iter().filter(|file| file != "secret.example.yaml").collect();
    assert_eq!(resources, expected, "kustomization.yaml lists every manifest but the example secret");

    let objects = applied_objects();
    let statefulset = only(&objects, "StatefulSet");
    let spec = &statefulset["spec"];
    let labels = &spec["template"]["metadata"]["labels"];
    assert!(selects(&spec["selector"]["matchLabels"], labels), "the StatefulSet selects its own pods");
    assert!(!sequence(&spec["volumeClaimTemplates"], "volumeClaimTemplates").is_empty());

    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(number(&pod["securityContext"]["runAsUser"], "runAsUser"), UID);
    assert!(pod["securityContext"]["fsGroup"].as_u64().is_some(), "an fsGroup makes the journal volume writable");
    let container = container(statefulset);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert!(container["resources"]["limits"]["memory"].is_string(), "a memory limit");
    assert!(container["resources"]["requests"]["cpu"].is_string(), "a CPU request, which the autoscaler needs");

    let secret = sequence(&container["env"], "env")
        .iter()
        .find(|variable| variable["name"] == "DATABASE_URL")
        .map(|variable| &variable["valueFrom"]["secretKeyRef"])
        .expect("DATABASE_URL comes from a secret");
    assert_eq!(secret["name"], "aurore-database");
    assert_eq!(secret["key"], "url");
    let example: Vec<Yaml> = yaml_documents(&deploy("k8s/base/secret.example.yaml"));
    let example = named(&example, "Secret", "aurore-database");
    let url = scalar(&example["stringData"]["url"]);
    load_settings("secret.example.yaml", &HashMap::from([("DATABASE_URL".to_owned(), url)]));

    let image = text(&container["image"], "image");
    let images = sequence(&kustomization["images"], "images");
    assert!(
        images.iter().any(|entry| image.split(':').next() == entry["name"].as_str()),
        "kustomization.yaml's images entry names the container image {image}"
    );

    assert!(
        objects.iter().all(|object| object["kind"] != "HorizontalPodAutoscaler"),
        "the base keeps a fixed number of pods; autoscaling is the overlay's"
    );

    let budget = only(&objects, "PodDisruptionBudget");
    assert_eq!(budget["apiVersion"], "policy/v1");
    assert!(selects(&budget["spec"]["selector"]["matchLabels"], labels), "the disruption budget covers the pods");
}

/// The secret behind a container variable: (secret name, key, optional).
fn secret_of<'a>(container: &'a Yaml, variable: &str) -> &'a Yaml {
    let reference = sequence(&container["env"], "env")
        .iter()
        .find(|entry| entry["name"] == variable)
        .map(|entry| &entry["valueFrom"]["secretKeyRef"])
        .unwrap_or_else(|| panic!("the container does not set {variable}"));
    assert!(reference.is_mapping(), "{variable} comes from a secret, not a literal");
    reference
}

#[test]
fn the_base_requires_keys_from_a_secret() {
    let objects = applied_objects();
    let container = container(only(&objects, "StatefulSet"));
    let example = yaml_documents(&deploy("k8s/base/secret.example.yaml"));
    let mut env = HashMap::new();
    for variable in ["AURORE__AUTH__API_KEYS", "AURORE__AUTH__ADMIN_KEYS"] {
        let reference = secret_of(container, variable);
        assert_eq!(reference["optional"], false, "{variable}: without the secret the pod must not start open");
        let secret = named(&example, "Secret", text(&reference["name"], "secret name"));
        let key = text(&reference["key"], "secret key");
        let value = secret["stringData"].get(key).unwrap_or_else(|| panic!("the example secret has no {key}"));
        env.insert(variable.to_owned(), scalar(value));
    }
    assert!(objects.iter().all(|object| object["kind"] != "Secret"), "no secret is applied from git");
    let settings = load_settings("secret.example.yaml", &env);
    assert!(!settings.auth.api_keys.is_empty() && !settings.auth.admin_keys.is_empty(), "the example keys are read");
}

#[test]
fn a_network_policy_fences_the_pods_in() {
    let objects = applied_objects();
    let statefulset = only(&objects, "StatefulSet");
    let policy = only(&objects, "NetworkPolicy");
    assert_eq!(policy["apiVersion"], "networking.k8s.io/v1");
    let spec = &policy["spec"];
    assert!(
        selects(&spec["podSelector"]["matchLabels"], &statefulset["spec"]["template"]["metadata"]["labels"]),
        "the policy covers Aurore's pods"
    );
    let types: BTreeSet<String> = sequence(&spec["policyTypes"], "policyTypes").iter().map(scalar).collect();
    assert_eq!(types, BTreeSet::from(["Ingress".to_owned(), "Egress".to_owned()]));
    let ports = |rules: &Yaml| -> Vec<Yaml> {
        sequence(rules, "rules")
            .iter()
            .flat_map(|rule| sequence(&rule["ports"], "ports").iter().map(|port| port["port"].clone()))
            .collect()
    };
    let container = container(statefulset);
    let open: BTreeSet<u64> = ports(&spec["ingress"]).iter().map(|port| container_port(container, port)).collect();
    assert_eq!(open, BTreeSet::from([PORT]), "only the HTTP port is reachable");
    let egress: BTreeSet<String> = ports(&spec["egress"]).iter().map(scalar).collect();
    for (port, what) in [("53", "DNS"), ("5432", "PostgreSQL")] {
        assert!(egress.contains(port), "the pods may reach {what}: {egress:?}");
    }
}

#[test]
fn the_autoscale_overlay_owns_the_replica_count_and_never_scales_down() {
    let overlay = deploy("k8s/overlays/autoscale");
    let kustomization = yaml(&overlay.join("kustomization.yaml"));
    let resources: Vec<String> = sequence(&kustomization["resources"], "resources").iter().map(scalar).collect();
    assert!(resources.contains(&"../../base".to_owned()), "the overlay builds on the base: {resources:?}");
    let autoscaler = resources
        .iter()
        .filter(|resource| resource.ends_with(".yaml"))
        .flat_map(|resource| yaml_documents(&overlay.join(resource)))
        .find(|object| object["kind"] == "HorizontalPodAutoscaler")
        .expect("the overlay adds a HorizontalPodAutoscaler");
    assert_eq!(autoscaler["apiVersion"], "autoscaling/v2");
    let statefulset = only(&applied_objects(), "StatefulSet").clone();
    let target = &autoscaler["spec"]["scaleTargetRef"];
    assert_eq!(target["kind"], "StatefulSet");
    assert_eq!(target["name"], statefulset["metadata"]["name"]);
    assert!(
        sequence(&autoscaler["spec"]["metrics"], "metrics").iter().any(|metric| metric["resource"]["name"] == "cpu"),
        "the autoscaler follows CPU"
    );
    assert_eq!(
        autoscaler["spec"]["behavior"]["scaleDown"]["selectPolicy"], "Disabled",
        "a removed pod would leave its journal on a claim nobody reads"
    );
    assert_eq!(
        statefulset["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"], "Retain",
        "a claim that may hold events outlives its pod"
    );
    // The autoscaler owns the count: the overlay takes `replicas` out of the StatefulSet.
    let removes_replicas = sequence(&kustomization["patches"], "patches").iter().any(|patch| {
        patch["target"]["kind"] == "StatefulSet"
            && patch["target"]["name"] == statefulset["metadata"]["name"]
            && serde_norway::from_str::<Yaml>(text(&patch["patch"], "patch")).is_ok_and(|operations| {
                operations.as_sequence().is_some_and(|operations| {
                    operations
                        .iter()
                        .any(|operation| operation["op"] == "remove" && operation["path"] == "/spec/replicas")
                })
            })
    });
    assert!(removes_replicas, "the overlay removes the StatefulSet's replicas");
    assert!(statefulset["spec"]["replicas"].as_u64().is_some(), "the base, without an autoscaler, fixes the count");
}

#[test]
fn alerts_key_on_labels_the_scrape_configs_produce() {
    let alerts = read(&deploy("prometheus/alerts.yml"));
    assert!(!alerts.contains("job="), "each scrape config names its own job; no alert may assume one");
    let config = yaml(&deploy("prometheus/prometheus-kubernetes.yml"));
    let job = &sequence(&config["scrape_configs"], "scrape_configs")[0];
    let relabels = sequence(&job["relabel_configs"], "relabel_configs");
    let keeps_annotated = relabels.iter().any(|rule| {
        rule["action"] == "keep"
            && sequence(&rule["source_labels"], "source_labels")
                .contains(&Yaml::from("__meta_kubernetes_pod_annotation_prometheus_io_scrape"))
    });
    assert!(keeps_annotated, "Kubernetes scraping follows the pods' prometheus.io/scrape annotation");
    let targets: BTreeSet<&str> = relabels.iter().filter_map(|rule| rule["target_label"].as_str()).collect();
    for label in ["namespace", "pod"] {
        assert!(targets.contains(label), "AuroreJournalStranded groups by {label}, which the scrape config must set");
    }
    let tests = yaml(&deploy("prometheus/alerts.test.yml"));
    let tested: BTreeSet<String> = sequence(&tests["tests"], "tests")
        .iter()
        .flat_map(|test| {
            sequence(&test["alert_rule_test"], "alert_rule_test").iter().map(|rule| scalar(&rule["alertname"]))
        })
        .collect();
    for alert in ["AuroreDown", "AuroreCircuitOpen", "AuroreJournalStranded"] {
        assert!(tested.contains(alert), "alerts.test.yml shows {alert} firing");
    }
}

// ---- ingest and writers apart

fn queue_overlay(path: &str) -> PathBuf {
    deploy("k8s/overlays/queue").join(path)
}

/// The JSON patch operations the queue overlay applies to the base's `kind` `name`.
fn overlay_operations(kind: &str, name: &str) -> Vec<Yaml> {
    let kustomization = yaml(&queue_overlay("kustomization.yaml"));
    sequence(&kustomization["patches"], "patches")
        .iter()
        .filter(|patch| patch["target"]["kind"] == kind && patch["target"]["name"] == name)
        .flat_map(|patch| {
            let operations: Yaml = serde_norway::from_str(text(&patch["patch"], "patch")).expect("a JSON patch");
            sequence(&operations, "patch operations").to_vec()
        })
        .collect()
}

/// The `value` of the patch operation `op` on `path`.
fn patched(operations: &[Yaml], op: &str, path: &str) -> Yaml {
    operations
        .iter()
        .find(|operation| operation["op"] == op && operation["path"] == path)
        .map(|operation| operation["value"].clone())
        .unwrap_or_else(|| panic!("the queue overlay does not {op} {path}"))
}

/// The ConfigMap both roles read, with the overlay's additions.
fn queue_config_map() -> HashMap<String, String> {
    let mut env = config_map_data(named(&applied_objects(), "ConfigMap", "aurore-config"));
    for operation in overlay_operations("ConfigMap", "aurore-config") {
        assert_eq!(operation["op"], "add", "the overlay only adds settings");
        let key = text(&operation["path"], "path").strip_prefix("/data/").expect("a ConfigMap data key").to_owned();
        env.insert(key, text(&operation["value"], "a ConfigMap value (a string)").to_owned());
    }
    env
}

fn writer_objects() -> Vec<Yaml> {
    yaml_documents(&queue_overlay("writer.yaml"))
}

fn arguments(container: &Yaml) -> Vec<String> {
    sequence(&container["args"], "args").iter().map(scalar).collect()
}

#[test]
fn the_queue_overlay_runs_the_base_as_ingest_and_adds_writers() {
    let kustomization = yaml(&queue_overlay("kustomization.yaml"));
    let resources: BTreeSet<String> = sequence(&kustomization["resources"], "resources").iter().map(scalar).collect();
    for resource in ["../../base", "writer.yaml", "writer-hpa.yaml"] {
        assert!(resources.contains(resource), "the queue overlay applies {resource}: {resources:?}");
    }
    let statefulset = only(&applied_objects(), "StatefulSet").clone();
    assert_eq!(container(&statefulset)["name"], "aurore", "the patch replaces the first container's args");
    let args =
        patched(&overlay_operations("StatefulSet", "aurore"), "replace", "/spec/template/spec/containers/0/args");
    let args: Vec<String> = sequence(&args, "args").iter().map(scalar).collect();
    assert_eq!(args, ["serve", "--role", "ingest"]);

    // Both roles: the same settings, over NATS on the Helm release's Service.
    let settings = load_settings("k8s/overlays/queue", &queue_config_map());
    assert_eq!(settings.queue.kind, aurore::settings::QueueKind::Nats);
    assert_eq!(settings.queue.replicas, 3, "each batch on three servers");
    assert_eq!(settings.queue.nats_url, "nats://nats:4222");

    let writers = writer_objects();
    let deployment = named(&writers, "Deployment", "aurore-writer");
    let writer = container(deployment);
    assert_eq!(arguments(writer), ["serve", "--role", "writer"]);
    let sources: Vec<&str> = sequence(&writer["envFrom"], "envFrom")
        .iter()
        .map(|source| text(&source["configMapRef"]["name"], "configMapRef"))
        .collect();
    assert_eq!(sources, ["aurore-config"], "writers read the ingest pods' settings");
    let database = secret_of(writer, "DATABASE_URL");
    assert_eq!((database["name"].clone(), database["key"].clone()), (Yaml::from("aurore-database"), Yaml::from("url")));
    assert!(writer["volumeMounts"].as_sequence().is_none_or(|mounts| mounts.iter().all(|mount| Path::new(text(
        &mount["mountPath"],
        "mountPath"
    ))
        != settings.journal.dir)));

    // No Service sends API traffic to a writer, which serves probes and metrics only.
    let spec = &deployment["spec"];
    let labels = &spec["template"]["metadata"]["labels"];
    assert!(selects(&spec["selector"]["matchLabels"], labels), "the Deployment selects its own pods");
    for service in applied_objects().iter().filter(|object| object["kind"] == "Service") {
        assert!(
            !selects(&service["spec"]["selector"], labels),
            "Service {:?} would route to writers",
            service["metadata"]["name"]
        );
    }
    for (probe, path) in
        [("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready"), ("startupProbe", "/health/live")]
    {
        assert_eq!(writer[probe]["httpGet"]["path"], path, "writer {probe}");
        assert_eq!(container_port(writer, &writer[probe]["httpGet"]["port"]), PORT, "writer {probe} port");
    }
    let annotations = &spec["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true", "writers are scraped: their backlog drives the autoscaler");
    assert_eq!(scalar(&annotations["prometheus.io/port"]), PORT.to_string());
    let pod = &spec["template"]["spec"];
    assert_eq!(number(&pod["securityContext"]["runAsUser"], "runAsUser"), UID);
    assert_eq!(writer["securityContext"]["readOnlyRootFilesystem"], true);
    let grace = number(&pod["terminationGracePeriodSeconds"], "grace period");
    assert!(grace > settings.shutdown.drain_deadline.as_secs(), "writers get {grace} s to finish their batches");

    // Both roles reach NATS through their NetworkPolicy.
    let ingest_egress = patched(&overlay_operations("NetworkPolicy", "aurore"), "add", "/spec/egress/-");
    assert_eq!(scalar(&ingest_egress["ports"][0]["port"]), "4222", "ingest pods may publish to NATS");
    let policy = named(&writers, "NetworkPolicy", "aurore-writer");
    assert!(selects(&policy["spec"]["podSelector"]["matchLabels"], labels), "the writers' policy covers them");
    let egress: BTreeSet<String> = sequence(&policy["spec"]["egress"], "egress")
        .iter()
        .flat_map(|rule| sequence(&rule["ports"], "ports").iter().map(|port| scalar(&port["port"])))
        .collect();
    for (port, what) in [("53", "DNS"), ("5432", "PostgreSQL"), ("4222", "NATS")] {
        assert!(egress.contains(port), "writers may reach {what}: {egress:?}");
    }
    let budget = named(&writers, "PodDisruptionBudget", "aurore-writer");
    assert!(selects(&budget["spec"]["selector"]["matchLabels"], labels), "the writers' disruption budget covers them");
}

#[test]
fn writers_scale_on_the_streams_backlog_in_both_directions() {
    let autoscaler = yaml(&queue_overlay("writer-hpa.yaml"));
    assert_eq!(autoscaler["apiVersion"], "autoscaling/v2");
    let target = &autoscaler["spec"]["scaleTargetRef"];
    assert_eq!(
        (target["kind"].clone(), target["name"].clone()),
        (Yaml::from("Deployment"), Yaml::from("aurore-writer"))
    );
    let external = sequence(&autoscaler["spec"]["metrics"], "metrics")
        .iter()
        .find(|metric| metric["type"] == "External")
        .expect("the autoscaler follows an external metric");
    let metric = text(&external["external"]["metric"]["name"], "external metric name");
    assert_eq!(metric, aurore_telemetry::metrics::names::QUEUE_PENDING);
    assert!(
        DESCRIBED.iter().any(|described| described.name == metric && described.kind == Kind::Gauge),
        "{metric} is a gauge Aurore exports"
    );
    assert_eq!(external["external"]["target"]["type"], "AverageValue", "the backlog is shared among the writers");
    assert_ne!(
        autoscaler["spec"]["behavior"]["scaleDown"]["selectPolicy"], "Disabled",
        "a writer holds nothing of its own: removing one is safe"
    );
    let minimum = number(&autoscaler["spec"]["minReplicas"], "minReplicas");
    assert!(minimum >= 2, "one writer down must not stop storage");

    // prometheus-adapter publishes the same name, from the series the writers export.
    let adapter = yaml(&queue_overlay("prometheus-adapter-values.yaml"));
    let rule = sequence(&adapter["rules"]["external"], "external rules")
        .iter()
        .find(|rule| rule["name"]["as"] == metric)
        .unwrap_or_else(|| panic!("prometheus-adapter publishes no external metric {metric}"));
    assert_eq!(metric_names(text(&rule["seriesQuery"], "seriesQuery")), [metric]);
    assert!(text(&rule["metricsQuery"], "metricsQuery").starts_with("max("), "every writer reports the same count");
}

#[test]
fn the_nats_values_replicate_the_stream_over_three_servers() {
    let values = yaml(&queue_overlay("nats-values.yaml"));
    let config = &values["config"];
    assert_eq!(config["cluster"]["enabled"], true);
    let servers = number(&config["cluster"]["replicas"], "config.cluster.replicas");
    let settings = load_settings("k8s/overlays/queue", &queue_config_map());
    assert!(
        servers >= settings.queue.replicas as u64,
        "a stream of {} replicas needs as many servers",
        settings.queue.replicas
    );
    assert_eq!(config["jetstream"]["enabled"], true);
    assert_eq!(config["jetstream"]["fileStore"]["pvc"]["enabled"], true, "the stream on volumes, not memory");
    assert_eq!(config["jetstream"]["memoryStore"]["enabled"], false);
    assert_eq!(config["jetstream"]["merge"]["sync_interval"], "always", "acknowledged means on disk");
}

fn queue_compose() -> Yaml {
    let mut compose = yaml(&deploy("docker-compose.queue.yml"));
    compose.apply_merge().expect("compose's merge keys resolve");
    compose
}

fn command(service: &Yaml) -> Vec<String> {
    sequence(&service["command"], "command").iter().map(scalar).collect()
}

/// The value following `flag` in a command line.
fn flag<'a>(command: &'a [String], flag: &str) -> &'a str {
    let at = command.iter().position(|argument| argument == flag).unwrap_or_else(|| panic!("{command:?} lacks {flag}"));
    command.get(at + 1).unwrap_or_else(|| panic!("{flag} has no value in {command:?}"))
}

#[test]
fn the_queue_compose_file_runs_a_nats_cluster_and_both_roles() {
    let compose = queue_compose();
    let services = compose["services"].as_mapping().expect("services");
    let named_with = |prefix: &str| -> Vec<String> {
        services.keys().map(scalar).filter(|name| name.starts_with(prefix)).collect::<Vec<_>>()
    };
    let nats = named_with("nats-");
    assert_eq!(nats.len(), 3, "a 3-node NATS cluster: {nats:?}");
    for name in &nats {
        let node = service(&compose, name);
        let line = command(node);
        assert!(line.contains(&"--jetstream".to_owned()), "{name} runs JetStream");
        assert_eq!(flag(&line, "--cluster_name"), "aurore", "{name} joins the cluster");
        assert_eq!(flag(&line, "--name"), name, "JetStream needs a unique server name");
        let routes: BTreeSet<String> = flag(&line, "--routes").split(',').map(str::to_owned).collect();
        let others: BTreeSet<String> =
            nats.iter().filter(|other| *other != name).map(|other| format!("nats://{other}:6222")).collect();
        assert_eq!(routes, others, "{name} routes to the other two");
        let store = flag(&line, "--store_dir");
        assert!(mounts(node).iter().any(|(_, target)| target == store), "{name} keeps its stream on a volume");
        assert!(!node["healthcheck"]["test"].is_null(), "{name} has a healthcheck the Aurore services wait for");
    }

    let ingest = named_with("ingest-");
    let writers = named_with("writer-");
    assert_eq!((ingest.len(), writers.len()), (2, 2), "two ingest replicas and two writers");
    let mut journals = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for (name, role) in ingest.iter().map(|name| (name, "ingest")).chain(writers.iter().map(|name| (name, "writer"))) {
        let aurore = service(&compose, name);
        assert_eq!(command(aurore), ["serve", "--role", role], "{name}");
        let settings = load_settings(&format!("docker-compose.queue.yml {name}"), &environment(aurore));
        assert_eq!(settings.queue.kind, aurore::settings::QueueKind::Nats, "{name}");
        let hosts: BTreeSet<String> = settings
            .queue
            .nats_url
            .split(',')
            .map(|url| url.trim_start_matches("nats://").split(':').next().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(hosts, nats.iter().cloned().collect(), "{name} knows every NATS server");
        assert!(settings.queue.replicas as usize <= nats.len(), "{name}: more stream replicas than servers");
        for node in &nats {
            assert_eq!(aurore["depends_on"][node.as_str()]["condition"], "service_healthy", "{name} waits for {node}");
        }
        assert_eq!(aurore["depends_on"]["postgres"]["condition"], "service_healthy", "{name}");
        if role == "ingest" {
            let volume = mount_target(aurore, &format!("{name}-journal"));
            assert_eq!(Path::new(&volume), settings.journal.dir, "{name}'s journal is on its own volume");
            journals.insert(format!("{name}-journal"));
            ports.extend(published_ports(aurore).into_iter().map(|port| (name.clone(), port)));
            let host_ports: Vec<String> = sequence(&aurore["ports"], "ports").iter().map(scalar).collect();
            assert_eq!(host_ports.len(), 1, "{name} publishes its API once");
        } else {
            assert!(aurore["ports"].is_null(), "{name} takes no API traffic");
        }
    }
    for journal in &journals {
        assert!(compose["volumes"].get(journal.as_str()).is_some(), "{journal} is a named volume");
    }
    assert_eq!(journals.len(), ingest.len(), "no two ingest replicas share a journal");
    assert!(ports.iter().all(|(_, port)| *port == PORT), "each ingest replica listens on {PORT} inside: {ports:?}");
}
