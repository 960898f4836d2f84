//! The module layers, checked: every top-level module belongs to one layer, imports only from
//! its own layer or below, and no modules import each other in a circle. A test reads `src/` and
//! fails naming the offending file and import, so the picture in `lib.rs` stays true.
//!
//! Where a lower layer must call up (a release that teaches the classifier, a held copy that
//! wakes the scheduler), it takes a trait or a channel, never the upper module.

/// The layers, bottom first, with their modules.
pub const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaves",
        &[
            "allocator",
            "clock",
            "config",
            "smtp",
            "headers",
            "html",
            "i18n",
            "keys",
            "links",
            "lists",
            "mailbox",
            "metrics",
            "mime",
            "dns",
            "domains",
            "tls",
            "systemd",
        ],
    ),
    ("message", &["verdict", "ruleset", "filter", "scoring", "stats", "classifier"]),
    ("storage", &["spool", "store"]),
    ("back services", &["learning", "relay", "quarantine", "notices", "digest"]),
    ("application", &["app", "admission"]),
    ("front services", &["session", "web"]),
    ("top", &["server", "scheduler", "control", "scan", "layers"]),
];

#[cfg(test)]
mod tests {
    use super::LAYERS;
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    fn layer_of(module: &str) -> Option<usize> {
        LAYERS.iter().position(|(_, modules)| modules.contains(&module))
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src/") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The top-level module a file of `src/` belongs to (`src/web/admin.rs` → `web`).
    fn module_of(src: &Path, file: &Path) -> String {
        let relative = file.strip_prefix(src).expect("a file under src/");
        let first = relative.components().next().expect("a path").as_os_str().to_string_lossy().into_owned();
        first.trim_end_matches(".rs").to_string()
    }

    /// Every `crate::NAME` a file mentions (in `use` lines and in paths), outside comments.
    fn imports(text: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        for line in text.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                found.insert(name);
            }
        }
        found
    }

    #[test]
    fn every_module_imports_only_its_own_layer_or_below_and_there_is_no_circle() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut problems = Vec::new();
        for file in &files {
            let module = module_of(&src, file);
            if ["lib", "main", "quarantine_cmd", "learn_cmd", "cli_out"].contains(&module.as_str()) {
                continue; // the crate root and the binary's modules sit above every layer
            }
            let Some(own) = layer_of(&module) else {
                problems.push(format!("{}: module `{module}` is in no layer of src/layers.rs", file.display()));
                continue;
            };
            let text = std::fs::read_to_string(file).expect("read a source file");
            for import in imports(&text).into_iter().filter(|i| *i != module) {
                match layer_of(&import) {
                    Some(theirs) if theirs > own => problems.push(format!(
                        "{}: `{module}` ({}) imports `crate::{import}` ({}), a higher layer",
                        file.display(),
                        LAYERS[own].0,
                        LAYERS[theirs].0
                    )),
                    Some(_) => {
                        graph.entry(module.clone()).or_default().insert(import);
                    }
                    None => {}
                }
            }
        }
        for (module, deps) in &graph {
            for dep in deps {
                if reaches(&graph, dep, module, &mut BTreeSet::new()) {
                    problems.push(format!("import circle: `{module}` imports `{dep}`, which leads back to `{module}`"));
                }
            }
        }
        assert!(problems.is_empty(), "layering problems:\n{}", problems.join("\n"));
    }

    fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str, seen: &mut BTreeSet<String>) -> bool {
        if from == to {
            return true;
        }
        if !seen.insert(from.to_string()) {
            return false;
        }
        graph.get(from).is_some_and(|deps| deps.iter().any(|d| reaches(graph, d, to, seen)))
    }

    #[test]
    fn imports_are_read_from_use_lines_and_paths_but_not_comments() {
        let text = "use crate::config::{self, Config};\n// crate::web is mentioned here\nlet x = crate::store::unix_now();";
        assert_eq!(imports(text).into_iter().collect::<Vec<_>>(), ["config", "store"]);
    }
}
