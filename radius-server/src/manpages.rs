//! The man pages: `vip-bridge(1)` and one page per command (`vip-bridge-serve(1)`, ...),
//! rendered from the command line's own definition so they cannot drift from `--help`. The
//! package ships them from `packaging/man/`; a test keeps that directory equal to this output.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{Error, Result};

/// Every page as (file name, roff text), the main page first.
pub fn render() -> Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    collect(&cmd, &mut pages)?;
    Ok(pages)
}

/// The main page's sections beyond what the command line describes.
const MAIN_PAGE_SECTIONS: &str = r#".SH FILES
.TP
\fI/etc/vip\-bridge/vip\-bridge.toml\fR
The configuration: every key, with its default and allowed range, is in the packaged file.
.TP
\fI/etc/vip\-bridge/state.key\fR, \fI/etc/vip\-bridge/vpn.secret\fR
The key sealing Challenge State and the shared secret of the packaged NAS entry, generated at
installation (root:vip\-bridge 0640) and removed on purge.
.TP
\fI/run/vip\-bridge/pam.sock\fR
The socket pam_vip.so talks to, when [pam] is configured.
.TP
\fI/usr/share/doc/vip\-bridge/\fR
README.md (install, RADIUS and proxies, SSH and sudo, troubleshooting), pam\-module/README.md,
and the pam.d/ and sshd_config.d/ recipes.
.TP
\fI/usr/share/pam\-configs/vip\-bridge\fR
The pam\-auth\-update profile (off until enabled).
.SH EXIT STATUS
0 on success; 1 on an error, with one line saying what was wrong, where, and what to do.
\fBtest\-auth\fR: 0 accept, 1 reject, 2 a challenge left unanswered.
.SH SEE ALSO
\fBvip\-bridge\-serve\fR(1), \fBvip\-bridge\-check\-config\fR(1),
\fBvip\-bridge\-test\-auth\fR(1), \fBvip\-bridge\-demo\fR(1), \fBpam\-auth\-update\fR(8),
\fBradtest\fR(1), \fBsshd_config\fR(5)
"#;

fn collect(cmd: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut text = Vec::new();
    let main_page = pages.is_empty();
    render_page(&man, cmd, main_page, &mut text).map_err(|source| Error::Io {
        what: "rendering a man page".into(),
        source,
    })?;
    pages.push((man.get_filename(), text));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, pages)?;
    }
    Ok(())
}

/// clap_mangen's page, with [`MAIN_PAGE_SECTIONS`] before the version on the main page.
fn render_page(
    man: &clap_mangen::Man,
    cmd: &clap::Command,
    main_page: bool,
    w: &mut Vec<u8>,
) -> std::io::Result<()> {
    if !main_page {
        return man.render(w);
    }
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    if cmd.has_subcommands() {
        man.render_subcommands_section(w)?;
    }
    w.extend_from_slice(MAIN_PAGE_SECTIONS.as_bytes());
    man.render_version_section(w)
}

/// Writes every page into `dir` (created if missing); returns the files written.
pub fn write_all(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |what: String| move |source| Error::Io { what, source };
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let mut written = Vec::new();
    for (name, text) in render()? {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped pages are what the command line renders today: regenerate them with
    /// `cargo run -p vip-bridge -- man packaging/man` after changing an option or its help.
    #[test]
    fn packaged_pages_are_current() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/man");
        let pages = render().unwrap();
        let mut names: Vec<String> = pages.iter().map(|(n, _)| n.clone()).collect();
        for (name, text) in &pages {
            let shipped = std::fs::read(dir.join(name)).unwrap_or_default();
            assert!(
                shipped == *text,
                "packaging/man/{name} is stale or missing: cargo run -p vip-bridge -- man packaging/man"
            );
        }
        let mut shipped: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        shipped.sort();
        names.sort();
        assert_eq!(
            shipped, names,
            "packaging/man/ holds pages no command renders"
        );
    }

    #[test]
    fn every_command_has_a_page_that_names_its_options() {
        let pages = render().unwrap();
        let find = |name: &str| {
            pages
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| String::from_utf8_lossy(t).into_owned())
                .unwrap_or_else(|| panic!("no page {name}"))
        };
        assert!(find("vip-bridge-check-config.1").contains("offline"));
        assert!(find("vip-bridge-serve.1").contains("ready"));
        assert!(find("vip-bridge-test-auth.1").contains("push"));
        assert!(find("vip-bridge-demo.1").contains("port"));
        let main = find("vip-bridge.1");
        assert!(main.contains("vip\\-bridge\\-serve(1)"), "{main}");
        assert!(
            main.contains(".SH FILES") && main.contains(".SH EXIT STATUS"),
            "{main}"
        );
    }
}
