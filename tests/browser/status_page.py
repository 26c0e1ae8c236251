#!/usr/bin/env python3
"""Drives the registry's status page in headless Chromium through Selenium,
for tests/tests/status_page.rs, which sends it one command a line on stdin
and reads one answer a line on stdout:

  open URL                 "ok" once the page follows the registry's watch,
                           or "error <what the page shows>" after 10 s
  wait NAME STATE MS       "ok <ms>" once the page's row of node NAME shows
                           STATE (live, suspect, gone), or "timeout <state>"
                           after MS; woken by the page's own DOM changes
  group GROUP              "ok <coordinator's name>"

Chromium and chromedriver come from Debian (chromium, chromium-driver),
Selenium from PyPI.
"""
import shutil
import sys

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

# Resolves with the ms it waited once `check` holds, or -1 after `ms`,
# observing the DOM instead of polling it.
WAIT = """
const [check, ms, done] = [new Function(arguments[0]), arguments[1], arguments[arguments.length - 1]];
const started = performance.now();
if (check()) return done(0);
const observer = new MutationObserver(() => {
  if (check()) { observer.disconnect(); done(Math.round(performance.now() - started)); }
});
observer.observe(document.body, { childList: true, subtree: true, attributes: true, characterData: true });
setTimeout(() => { observer.disconnect(); done(-1); }, ms);
"""


def driver():
    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    return webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver")))


def wait(browser, check, ms):
    browser.set_script_timeout(ms / 1000 + 10)
    return browser.execute_async_script(WAIT, check, ms)


def row_state(name):
    return f"return document.querySelector('tr[data-name=\"{name}\"]')?.dataset.state"


def main():
    browser = driver()
    try:
        for line in sys.stdin:
            command = line.split()
            if command[0] == "open":
                browser.get(command[1])
                waited = wait(browser, "return document.getElementById('connection').dataset.state === 'live'", 10000)
                shown = browser.find_element("id", "connection").text
                answer = "ok" if waited >= 0 else f"error {shown}"
            elif command[0] == "wait":
                name, state, ms = command[1], command[2], int(command[3])
                waited = wait(browser, f"{row_state(name)} === '{state}'", ms)
                shown = browser.execute_script(row_state(name))
                answer = f"ok {waited}" if waited >= 0 else f"timeout {shown}"
            elif command[0] == "group":
                coordinator = browser.execute_script(
                    f"return document.querySelector('tr[data-group=\"{command[1]}\"]')?.cells[1].textContent"
                )
                answer = f"ok {coordinator}"
            else:
                answer = f"error unknown command {command[0]}"
            print(answer, flush=True)
    finally:
        browser.quit()


if __name__ == "__main__":
    main()
