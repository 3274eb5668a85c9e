//! A headless Chromium driven over the W3C WebDriver protocol by Debian's `chromedriver`
//! (`make browser-deps` installs both), for tests of pages in a real browser. The driver
//! runs in a process group of its own, killed with the browser it started when this is
//! dropped, whatever the test did.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, anyhow};
use base64::Engine;
use serde_json::{Value, json};

use crate::processes::{Process, free_port, wait_until};

/// How long the driver has to answer `/status` ready.
const DRIVER_READY: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    /// The session's base URL on the driver.
    session: String,
    driver: Process,
}

/// Where Debian puts them; `None` with why when either is missing.
pub fn installed() -> Result<(), String> {
    for binary in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        if !Path::new(binary).exists() {
            return Err(format!(
                "{binary} is missing: `make browser-deps` installs Debian's chromium and chromium-driver"
            ));
        }
    }
    Ok(())
}

impl Browser {
    /// Starts the driver on a free port and opens a headless session of `width` × `height`.
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Self> {
        installed().map_err(|why| anyhow!(why))?;
        let port = free_port();
        let mut command = Command::new("/usr/bin/chromedriver");
        command.arg(format!("--port={port}"));
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = Process::try_start(command)?;
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        wait_until("chromedriver is ready", DRIVER_READY, || async {
            let status = http.get(format!("{base}/status")).send().await;
            match status {
                Ok(response) => response.json::<Value>().await.is_ok_and(|body| body["value"]["ready"] == true),
                Err(_) => false,
            }
        })
        .await;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         format!("--window-size={width},{height}")],
            },
        }}});
        let created: Value = http.post(format!("{base}/session")).json(&capabilities).send().await?.json().await?;
        let id = created["value"]["sessionId"].as_str().with_context(|| format!("no session: {created}"))?;
        Ok(Self { http, session: format!("{base}/session/{id}"), driver })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await?.json().await?;
        if let Some(error) = answer["value"]["error"].as_str() {
            return Err(anyhow!("webdriver {path}: {error}: {}", answer["value"]["message"]));
        }
        Ok(answer["value"].clone())
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await.map(drop)
    }

    /// Runs `script` in the page (its `arguments` are `args`) and gives back what it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// The visible text of the first element `selector` finds, if one does.
    pub async fn text(&self, selector: &str) -> Option<String> {
        let script = "const found = document.querySelector(arguments[0]); return found ? found.innerText : null;";
        self.execute(script, vec![json!(selector)]).await.ok()?.as_str().map(str::to_string)
    }

    /// Writes a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let encoded = self.call(reqwest::Method::GET, "/screenshot", None).await?;
        let encoded = encoded.as_str().context("the screenshot is not text")?;
        let png = base64::engine::general_purpose::STANDARD.decode(encoded)?;
        std::fs::write(path, png).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Ends the session (the driver closes the browser).
    pub async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver and the browser it started share its process group.
        if let Some(group) = rustix::process::Pid::from_raw(self.driver.pid() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}
