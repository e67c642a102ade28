//! Apache httpd from the Debian package, with its default site, in the server namespace.
//!
//! A self-contained configuration (no `envvars`, no `/etc/apache2/apache2.conf`): the event
//! MPM and the three modules serving `/var/www/html` need, pid file and error log in the
//! bed's directory, no access log (so the disk is not part of what is measured).

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::Duration,
};

use super::{E2eError, cpus, wait_for};
use crate::netns::LanHost;

/// The configuration for Apache listening on `addr:80`, its files under `dir`.
///
/// `ListenBacklog 511` is Apache's default, spelled out because the no-protection runs
/// depend on it. `KeepAliveTimeout 15` (default 5) gives scenario 7 time to compare views
/// while its keep-alive connections are still open.
pub fn config_text(addr: Ipv4Addr, dir: &Path) -> String {
    let modules = "/usr/lib/apache2/modules";
    format!(
        "# xdp-guard end-to-end test bed: Apache with the Debian default site.\n\
         ServerRoot /etc/apache2\n\
         ServerName xg-e2e-srv\n\
         DefaultRuntimeDir {dir}\n\
         PidFile {dir}/apache.pid\n\
         ErrorLog {dir}/apache-error.log\n\
         LogLevel warn\n\
         LoadModule mpm_event_module {modules}/mod_mpm_event.so\n\
         LoadModule authz_core_module {modules}/mod_authz_core.so\n\
         LoadModule dir_module {modules}/mod_dir.so\n\
         LoadModule mime_module {modules}/mod_mime.so\n\
         User www-data\n\
         Group www-data\n\
         Listen {addr}:80\n\
         ListenBacklog 511\n\
         KeepAlive On\n\
         KeepAliveTimeout 15\n\
         TypesConfig /etc/mime.types\n\
         DocumentRoot /var/www/html\n\
         DirectoryIndex index.html\n\
         <Directory />\n    Require all denied\n</Directory>\n\
         <Directory /var/www/html>\n    Require all granted\n</Directory>\n",
        dir = dir.display(),
    )
}

pub struct Apache {
    child: Child,
}

impl Apache {
    /// Starts Apache in `srv` (in the foreground, so it is our child) and waits until
    /// `client` gets the default page from it.
    pub fn start(
        srv: &LanHost,
        client: &LanHost,
        addr: Ipv4Addr,
        dir: &Path,
    ) -> Result<Apache, E2eError> {
        let conf: PathBuf = dir.join("apache.conf");
        std::fs::write(&conf, config_text(addr, dir))
            .map_err(E2eError::io(format!("writing {}", conf.display())))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("apache-stderr.log"))
            .map_err(E2eError::io("opening apache-stderr.log"))?;
        let err = log
            .try_clone()
            .map_err(E2eError::io("opening apache-stderr.log"))?;
        // `ip netns exec` and taskset exec apache2 in place: the child's pid is Apache's
        // parent. Its processes stay on the server's CPUs.
        let child = srv
            .ns
            .command("taskset")
            .args(["-c", &cpus::list(&cpus::server()), "apache2"])
            .arg("-f")
            .arg(&conf)
            .arg("-DFOREGROUND")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|source| E2eError::Spawn {
                cmd: "apache2 -DFOREGROUND (installed by `cargo xtask setup`)".into(),
                source,
            })?;
        let mut apache = Apache { child };
        let url = format!("http://{addr}/");
        let ready = wait_for(
            "Apache to serve the default page",
            Duration::from_secs(20),
            Duration::from_millis(100),
            || {
                if let Ok(Some(status)) = apache.child.try_wait() {
                    return Some(Err(status));
                }
                let out = client
                    .ns
                    .command("curl")
                    .args(["-sf", "-o", "/dev/null", "--max-time", "1", &url])
                    .output()
                    .ok()?;
                out.status.success().then_some(Ok(()))
            },
        )?;
        if let Err(status) = ready {
            let log = std::fs::read_to_string(dir.join("apache-stderr.log")).unwrap_or_default();
            return Err(E2eError::Setup(format!(
                "apache2 exited at start ({status}): {}",
                log.trim()
            )));
        }
        Ok(apache)
    }

    /// SIGTERM (Apache stops its children and exits), SIGKILL after 10 s.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        super::stop_child(&mut self.child, libc::SIGTERM, Duration::from_secs(10));
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        self.terminate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_self_contained() {
        let text = config_text(Ipv4Addr::new(198, 18, 0, 1), Path::new("/tmp/x"));
        assert!(text.contains("Listen 198.18.0.1:80\n"));
        assert!(text.contains("ListenBacklog 511\n"));
        assert!(text.contains("PidFile /tmp/x/apache.pid\n"));
        assert!(
            !text.contains("Include"),
            "nothing from /etc/apache2 is pulled in"
        );
        assert!(!text.contains("${"), "no envvars needed");
    }
}
