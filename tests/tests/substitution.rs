//! `${…}` substitution and config filters on the real binary: `sluice check` shows resolved
//! values with filter secrets masked and names the line of an unset variable; an agent runs on
//! values that came from the environment, a `-D` property and an external filter.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Result, ensure};
use sluice_integration::{Sluice, sluice_bin, wait_lines};

/// An `external` config filter: prints `pw-<key>` for any key.
fn resolver(dir: &Path) -> Result<std::path::PathBuf> {
    let script = dir.join("resolve.sh");
    std::fs::write(&script, "#!/bin/sh\nprintf 'pw-%s\\n' \"$1\"\n")?;
    let mut perm = std::fs::metadata(&script)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&script, perm)?;
    Ok(script)
}

fn conf(script: &Path) -> String {
    format!(
        "a1.configfilters = f1\n\
         a1.configfilters.f1.type = external\n\
         a1.configfilters.f1.command = {}\n\
         a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = seq\n\
         a1.sources.r1.totalEvents = ${{sys:TOTAL}}\n\
         a1.sources.r1.channels = c1\n\
         a1.channels.c1.type = memory\n\
         a1.sinks.k1.type = file_roll\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.sink.directory = ${{env:SLUICE_TEST_OUT}}/${{f1['dir']}}\n\
         a1.sinks.k1.sink.rollInterval = 0\n",
        script.display()
    )
}

fn sluice(args: &[&str], out: &Path) -> Result<(i32, String, String)> {
    let o = Command::new(sluice_bin()?)
        .args(args)
        .env("SLUICE_TEST_OUT", out)
        .stdin(Stdio::null())
        .output()?;
    Ok((
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    ))
}

#[test]
fn check_resolves_masks_and_names_unset_variables() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let script = resolver(tmp.path())?;
    let file = tmp.path().join("a.conf");
    std::fs::write(&file, conf(&script))?;
    let f = file.to_string_lossy().into_owned();
    let out = tmp.path().join("out");

    let (rc, stdout, stderr) = sluice(&["check", "-n", "a1", "-f", &f, "-D", "TOTAL=7"], &out)?;
    ensure!(rc == 0, "check failed: {stderr}");
    ensure!(stdout.contains("totalEvents = 7"), "{stdout}");
    let dir_line = format!("sink.directory = {}/****", out.display());
    ensure!(
        stdout.contains(&dir_line),
        "the filter's value is masked: {stdout}"
    );
    ensure!(!stdout.contains("pw-dir"), "{stdout}");
    ensure!(
        !stderr.contains("unknown key"),
        "configfilters keys are known: {stderr}"
    );

    let (rc, _, stderr) = sluice(&["check", "-n", "a1", "-f", &f], &out)?;
    ensure!(rc != 0, "an unset -D property must fail");
    ensure!(
        stderr.contains(":8: a1.sources.r1.totalEvents: no -D TOTAL="),
        "the error names the line and key: {stderr}"
    );
    Ok(())
}

#[test]
fn agent_runs_on_substituted_values() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let script = resolver(tmp.path())?;
    let out = tmp.path().join("out");
    // `Sluice::start` passes no environment of its own: the directory is written in directly,
    // and the -D property and the external filter still resolve.
    std::fs::create_dir_all(out.join("pw-dir"))?;
    let conf = conf(&script).replace("${env:SLUICE_TEST_OUT}", &out.display().to_string());
    let _agent = Sluice::start(tmp.path(), "a", &conf, &["-D", "TOTAL=25"])?;
    let lines = wait_lines(&out.join("pw-dir"), 25, Duration::from_secs(30))?;
    ensure!(lines.len() == 25, "{} lines", lines.len());
    Ok(())
}
