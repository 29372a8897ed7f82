//! `sluice wasm new`: writes a ready guest project for one language and world.
//!
//! A project holds the guest's source with its logic split from the bindings glue, unit tests
//! of that logic run natively (`test.sh`: the Rust SDK's test stub, `unittest`, `node --test`,
//! a C test program), `build.sh` that makes `<name>.wasm` with the toolchains scripts/test
//! installs, `wit/pipeline.wit`, an agent config using the guest, config unit tests for
//! `sluice test` (interceptor and router) and sample events for `sluice wasm test`. The
//! templates live in `templates/guest/` and are compiled into the binary, so the project
//! matches the agent that wrote it (its WIT, and for Rust its SDK and locked crate versions).

use std::path::{Path, PathBuf};

use super::guest::Hook;

/// A guest's source language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Rust,
    C,
    Python,
    Js,
}

impl Lang {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rust" => Some(Self::Rust),
            "c" => Some(Self::C),
            "python" => Some(Self::Python),
            "js" => Some(Self::Js),
            _ => None,
        }
    }
}

/// What to write.
#[derive(Clone, Debug)]
pub struct Project {
    pub lang: Lang,
    pub world: Hook,
    /// The guest's name: the component is `<name>.wasm`.
    pub name: String,
    /// `sluice-guest-tool`, which C projects build with (its path, or the name on `PATH`).
    pub tool: PathBuf,
}

/// One file of a project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    /// Relative to the project folder.
    pub path: PathBuf,
    pub contents: Vec<u8>,
    pub executable: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "guest name `{0}`: use 1 to 64 lower-case letters, digits and `-`, starting with a letter"
    )]
    Name(String),
    #[error("{}: exists and is not an empty folder; choose a new --dir", .0.display())]
    NotEmpty(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("templates/guest/js/package-lock.json: {0}")]
    Lock(#[source] serde_json::Error),
    #[error(
        "a Python sink selector cannot be built: componentize-py (0.25) fails on a world that \
         exports a function named `select` (it panics with \"duplicate items detected\"); write \
         the sink selector in Rust, C or JavaScript"
    )]
    PythonSinkSelector,
}

const WIT: &str = include_str!("../../../wit/pipeline.wit");
/// The `wit-bindgen` requirement of the Rust SDK (the workspace's; a unit test checks).
const WIT_BINDGEN: &str = "0.57";

mod t {
    pub const README: &str = include_str!("../../../templates/guest/common/README.md");
    pub const EVENTS: &str = include_str!("../../../templates/guest/common/events.jsonl");
    pub const CONF_INTERCEPTOR: &str =
        include_str!("../../../templates/guest/common/interceptor.conf");
    pub const CONF_ROUTER: &str = include_str!("../../../templates/guest/common/router.conf");
    pub const CONF_SINK_SELECTOR: &str =
        include_str!("../../../templates/guest/common/sink-selector.conf");
    pub const TESTS_INTERCEPTOR: &str =
        include_str!("../../../templates/guest/common/interceptor.tests.toml");
    pub const TESTS_ROUTER: &str =
        include_str!("../../../templates/guest/common/router.tests.toml");

    pub const RUST_CARGO: &str = include_str!("../../../templates/guest/rust/Cargo.toml");
    pub const RUST_SDK_CARGO: &str = include_str!("../../../templates/guest/rust/sdk-Cargo.toml");
    pub const RUST_BUILD: &str = include_str!("../../../templates/guest/rust/build.sh");
    pub const RUST_TEST: &str = include_str!("../../../templates/guest/rust/test.sh");
    pub const RUST_INTERCEPTOR: &str = include_str!("../../../templates/guest/rust/interceptor.rs");
    pub const RUST_ROUTER: &str = include_str!("../../../templates/guest/rust/router.rs");
    pub const RUST_SINK_SELECTOR: &str =
        include_str!("../../../templates/guest/rust/sink-selector.rs");
    /// The example guests' lock: a new project builds with the crate versions sluice's tests
    /// build with.
    pub const RUST_LOCK: &str = include_str!("../../../examples/guests/rust/Cargo.lock");
    pub const SDK_LIB: &str = include_str!("../../../guest-sdk/src/lib.rs");
    pub const SDK_BATCH: &str = include_str!("../../../guest-sdk/src/batch.rs");
    pub const SDK_HOST: &str = include_str!("../../../guest-sdk/src/host.rs");
    pub const SDK_TESTING: &str = include_str!("../../../guest-sdk/src/testing.rs");

    pub const C_LOGIC: &str = include_str!("../../../templates/guest/c/logic.h");
    pub const C_TEST: &str = include_str!("../../../templates/guest/c/test_logic.c");
    pub const C_BUILD: &str = include_str!("../../../templates/guest/c/build.sh");
    pub const C_TEST_SH: &str = include_str!("../../../templates/guest/c/test.sh");
    pub const C_INTERCEPTOR: &str = include_str!("../../../templates/guest/c/interceptor.c");
    pub const C_ROUTER: &str = include_str!("../../../templates/guest/c/router.c");
    pub const C_SINK_SELECTOR: &str = include_str!("../../../templates/guest/c/sink-selector.c");

    pub const PY_LOGIC: &str = include_str!("../../../templates/guest/python/logic.py");
    pub const PY_TEST: &str = include_str!("../../../templates/guest/python/test_logic.py");
    pub const PY_BUILD: &str = include_str!("../../../templates/guest/python/build.sh");
    pub const PY_TEST_SH: &str = include_str!("../../../templates/guest/python/test.sh");
    pub const PY_INTERCEPTOR: &str = include_str!("../../../templates/guest/python/interceptor.py");
    pub const PY_ROUTER: &str = include_str!("../../../templates/guest/python/router.py");

    pub const JS_LOGIC: &str = include_str!("../../../templates/guest/js/logic.js");
    pub const JS_TEST: &str = include_str!("../../../templates/guest/js/logic.test.js");
    pub const JS_PACKAGE: &str = include_str!("../../../templates/guest/js/package.json");
    pub const JS_BUILD: &str = include_str!("../../../templates/guest/js/build.sh");
    pub const JS_TEST_SH: &str = include_str!("../../../templates/guest/js/test.sh");
    pub const JS_INTERCEPTOR: &str = include_str!("../../../templates/guest/js/interceptor.js");
    pub const JS_ROUTER: &str = include_str!("../../../templates/guest/js/router.js");
    pub const JS_SINK_SELECTOR: &str = include_str!("../../../templates/guest/js/sink-selector.js");
    /// The JavaScript example's lock (componentize-js and its dependencies, as tested).
    pub const JS_LOCK: &str =
        include_str!("../../../examples/guests/js/sticky-selector/package-lock.json");
}

/// Whether `name` can name a crate, a C file, a Python module's component and an npm package.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

fn pick<'a>(world: Hook, interceptor: &'a str, router: &'a str, sink_selector: &'a str) -> &'a str {
    match world {
        Hook::Interceptor => interceptor,
        Hook::Router => router,
        Hook::SinkSelector => sink_selector,
    }
}

impl Project {
    /// The project's files, rendered.
    pub fn files(&self) -> Result<Vec<File>, ScaffoldError> {
        if !valid_name(&self.name) {
            return Err(ScaffoldError::Name(self.name.clone()));
        }
        if self.lang == Lang::Python && self.world == Hook::SinkSelector {
            return Err(ScaffoldError::PythonSinkSelector);
        }
        let world = self.world;
        let render = |s: &str| -> String {
            s.replace("{{name}}", &self.name)
                .replace("{{crate}}", &self.name.replace('-', "_"))
                .replace("{{world}}", world.world())
                .replace("{{world_c}}", &world.world().replace('-', "_"))
                .replace("{{wit_bindgen}}", WIT_BINDGEN)
                .replace("{{tool}}", &self.tool.display().to_string())
        };
        let mut files = Vec::new();
        let mut add = |path: &str, contents: &str, executable: bool| {
            files.push(File {
                path: PathBuf::from(path),
                contents: render(contents).into_bytes(),
                executable,
            });
        };
        let name = &self.name;
        add("wit/pipeline.wit", WIT, false);
        add("events.jsonl", t::EVENTS, false);
        add(
            &format!("{name}.conf"),
            pick(
                world,
                t::CONF_INTERCEPTOR,
                t::CONF_ROUTER,
                t::CONF_SINK_SELECTOR,
            ),
            false,
        );
        match world {
            Hook::Interceptor => add(&format!("{name}.tests.toml"), t::TESTS_INTERCEPTOR, false),
            Hook::Router => add(&format!("{name}.tests.toml"), t::TESTS_ROUTER, false),
            Hook::SinkSelector => {}
        }
        let (lang, logic, needs, rows) = match self.lang {
            Lang::Rust => {
                add("Cargo.toml", t::RUST_CARGO, false);
                add("Cargo.lock", t::RUST_LOCK, false);
                add(
                    "src/lib.rs",
                    pick(
                        world,
                        t::RUST_INTERCEPTOR,
                        t::RUST_ROUTER,
                        t::RUST_SINK_SELECTOR,
                    ),
                    false,
                );
                add("sluice-guest/Cargo.toml", t::RUST_SDK_CARGO, false);
                add("sluice-guest/src/lib.rs", t::SDK_LIB, false);
                add("sluice-guest/src/batch.rs", t::SDK_BATCH, false);
                add("sluice-guest/src/host.rs", t::SDK_HOST, false);
                add("sluice-guest/src/testing.rs", t::SDK_TESTING, false);
                add("build.sh", t::RUST_BUILD, true);
                add("test.sh", t::RUST_TEST, true);
                (
                    "Rust",
                    pick(world, "`decide`", "`channels_for`", "`sink_for`"),
                    "Rust with `rustup target add wasm32-wasip2`",
                    "| `src/lib.rs` | the guest, its logic and its unit tests |\n\
                     | `sluice-guest/` | sluice's guest SDK (bindings, native test stub) |\n",
                )
            }
            Lang::C => {
                add(
                    &format!("{name}.c"),
                    pick(world, t::C_INTERCEPTOR, t::C_ROUTER, t::C_SINK_SELECTOR),
                    false,
                );
                add("logic.h", t::C_LOGIC, false);
                add("test_logic.c", t::C_TEST, false);
                add("build.sh", t::C_BUILD, true);
                add("test.sh", t::C_TEST_SH, true);
                (
                    "C",
                    pick(world, "`decide`", "`channels_for`", "`sink_for`"),
                    "Zig from PyPI (`pip install --user ziglang`), `sluice-guest-tool` (built \
                     with sluice; `SLUICE_GUEST_TOOL` overrides its path), a C compiler for the \
                     tests",
                    "| `NAME.c` | the guest: bindings glue |\n\
                     | `logic.h` | its logic |\n\
                     | `test_logic.c` | the logic's unit tests |\n",
                )
            }
            Lang::Python => {
                add(
                    "app.py",
                    pick(world, t::PY_INTERCEPTOR, t::PY_ROUTER, ""),
                    false,
                );
                add("logic.py", t::PY_LOGIC, false);
                add("test_logic.py", t::PY_TEST, false);
                add("build.sh", t::PY_BUILD, true);
                add("test.sh", t::PY_TEST_SH, true);
                (
                    "Python",
                    pick(world, "`decide`", "`channels_for`", "`sink_for`"),
                    "Python 3.10+ and `pip install --user componentize-py`",
                    "| `app.py` | the guest: bindings glue |\n\
                     | `logic.py` | its logic |\n\
                     | `test_logic.py` | the logic's unit tests |\n",
                )
            }
            Lang::Js => {
                add(
                    "guest.js",
                    pick(world, t::JS_INTERCEPTOR, t::JS_ROUTER, t::JS_SINK_SELECTOR),
                    false,
                );
                add("logic.js", t::JS_LOGIC, false);
                add("logic.test.js", t::JS_TEST, false);
                add("package.json", t::JS_PACKAGE, false);
                add("build.sh", t::JS_BUILD, true);
                add("test.sh", t::JS_TEST_SH, true);
                (
                    "JavaScript",
                    pick(world, "`decide`", "`channelsFor`", "`sinkFor`"),
                    "Node.js 18+ with npm (`build.sh` installs componentize-js into \
                     node_modules)",
                    "| `guest.js` | the guest: bindings glue |\n\
                     | `logic.js` | its logic |\n\
                     | `logic.test.js` | the logic's unit tests |\n\
                     | `package.json`, `package-lock.json` | componentize-js, locked |\n",
                )
            }
        };
        let check = match world {
            Hook::SinkSelector => String::new(),
            _ => format!(
                "sluice test -n a1 -f {name}.conf {name}.tests.toml   # config unit tests\n"
            ),
        };
        let extra = match world {
            Hook::SinkSelector => "| `events.jsonl` | sample events for `sluice wasm test` |\n",
            _ => {
                "| `NAME.tests.toml` | config unit tests for `sluice test` |\n\
                  | `events.jsonl` | sample events for `sluice wasm test` |\n"
            }
        };
        let readme = t::README
            .replace("{{lang}}", lang)
            .replace("{{logic}}", logic)
            .replace("{{needs}}", needs)
            .replace("{{files}}", &rows.replace("NAME", name))
            .replace("{{extra_files}}", &extra.replace("NAME", name))
            .replace("{{check}}", &check);
        add("README.md", &readme, false);
        if self.lang == Lang::Js {
            files.push(File {
                path: PathBuf::from("package-lock.json"),
                contents: js_lock(name)?,
                executable: false,
            });
        }
        Ok(files)
    }
}

/// The example's npm lock under the project's name (`npm ci` checks the root package).
fn js_lock(name: &str) -> Result<Vec<u8>, ScaffoldError> {
    let mut lock: serde_json::Value =
        serde_json::from_str(t::JS_LOCK).map_err(ScaffoldError::Lock)?;
    lock["name"] = name.into();
    if let Some(root) = lock.get_mut("packages").and_then(|p| p.get_mut("")) {
        root["name"] = name.into();
    }
    let mut out = serde_json::to_vec_pretty(&lock).map_err(ScaffoldError::Lock)?;
    out.push(b'\n');
    Ok(out)
}

/// Writes `files` into `dir`, which must not exist or be empty (nothing is overwritten).
pub fn write(dir: &Path, files: &[File]) -> Result<(), ScaffoldError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScaffoldError::Io { path, source }
    };
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(ScaffoldError::NotEmpty(dir.to_path_buf()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(ScaffoldError::NotEmpty(dir.to_path_buf()));
        }
        Err(e) => return Err(io(dir)(e)),
    }
    for f in files {
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, &f.contents).map_err(io(&path))?;
        if f.executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(io(&path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(lang: Lang, world: Hook) -> Project {
        Project {
            lang,
            world,
            name: "my-guest".into(),
            tool: PathBuf::from("sluice-guest-tool"),
        }
    }

    #[test]
    fn every_language_and_world_renders_without_placeholders() -> Result<(), ScaffoldError> {
        for lang in [Lang::Rust, Lang::C, Lang::Python, Lang::Js] {
            for world in [Hook::Interceptor, Hook::Router, Hook::SinkSelector] {
                if lang == Lang::Python && world == Hook::SinkSelector {
                    assert!(matches!(
                        project(lang, world).files(),
                        Err(ScaffoldError::PythonSinkSelector)
                    ));
                    continue;
                }
                let files = project(lang, world).files()?;
                for f in &files {
                    let text = String::from_utf8_lossy(&f.contents);
                    assert!(
                        !text.contains("{{"),
                        "{lang:?} {world:?} {}: an unrendered placeholder",
                        f.path.display()
                    );
                }
                let names: Vec<String> =
                    files.iter().map(|f| f.path.display().to_string()).collect();
                for want in ["build.sh", "test.sh", "wit/pipeline.wit", "my-guest.conf"] {
                    assert!(
                        names.iter().any(|n| n == want),
                        "{lang:?} {world:?}: {names:?}"
                    );
                }
                assert!(files.iter().filter(|f| f.executable).count() == 2);
            }
        }
        Ok(())
    }

    #[test]
    fn the_js_package_asks_for_what_its_lock_holds() -> Result<(), serde_json::Error> {
        let package: serde_json::Value = serde_json::from_str(t::JS_PACKAGE)?;
        let lock: serde_json::Value = serde_json::from_str(t::JS_LOCK)?;
        assert_eq!(
            package["devDependencies"], lock["packages"][""]["devDependencies"],
            "npm ci refuses a package.json that differs from its lock"
        );
        Ok(())
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", "My", "1x", "a_b", "a-", &"a".repeat(65)] {
            let mut p = project(Lang::Rust, Hook::Router);
            p.name = bad.to_string();
            assert!(p.files().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_sdk_asks_for_the_workspace_wit_bindgen() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
        let text = std::fs::read_to_string(root).unwrap_or_default();
        assert!(
            text.contains(&format!("wit-bindgen = \"{WIT_BINDGEN}\"")),
            "WIT_BINDGEN must match the workspace's wit-bindgen"
        );
    }

    #[test]
    fn write_refuses_a_folder_with_files() -> Result<(), ScaffoldError> {
        let dir = tempfile::tempdir().map_err(|source| ScaffoldError::Io {
            path: PathBuf::from("tmp"),
            source,
        })?;
        let files = project(Lang::Python, Hook::Interceptor).files()?;
        write(dir.path(), &files)?;
        assert!(dir.path().join("build.sh").is_file());
        assert!(matches!(
            write(dir.path(), &files),
            Err(ScaffoldError::NotEmpty(_))
        ));
        Ok(())
    }
}
