"""report.html: written by every search and by `python -m lts report`, self-contained, and tried in a real browser.

The browser test drives headless Chromium (Debian packages ``chromium`` and ``chromium-driver``)
through Selenium, opening the page from a file URL with no network. Where Chromium is missing it
skips, saying so, unless ``LTS_REQUIRE_BROWSER=1`` (set by ``.ci/run``, which installs it): then a
missing browser fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from searchrun import DETERMINISTIC, REPO, search, tiny_space

from lts.core.errors import LTSError
from lts.search.htmlreport import write_report


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished two-objective search of 3 x 8 candidates, the second evaluation failing on purpose."""
    tmp = tmp_path_factory.mktemp("report")
    r = search(tmp, "--config", tiny_space(tmp), "--objectives", DETERMINISTIC, "--generations", "3",
               "--population", "8", check=True, fault="evaluate:raise@2")
    assert "report      : " in r.stdout
    return tmp / "run"


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]


@pytest.mark.heavy
def test_every_search_writes_a_self_contained_report(run):
    page = (run / "report.html").read_text()
    assert "<script src=" not in page and "cdn.plot.ly" not in page.split("</script>", 1)[1], \
        "plotly.js must be inlined, not fetched"
    recs = records(run)
    failed = [r for r in recs if r["status"] != "ok"]
    assert len(failed) == 1 and "injected fault at evaluate" in page and failed[0]["archid"] in page
    pareto = (run / "pareto.csv").read_text().splitlines()[1:]
    for line in pareto:
        assert line.split(",")[1] in page  # every front member, in the table
    assert page.count('">config.json</a>') == len(pareto), "each member links its config.json"
    info = json.loads((run / "run.json").read_text())
    assert "search.py" in info["command"] and info["wall_s"] > 0 and "onnxruntime" in info["versions"]
    assert info["command"] in page.replace("&#x27;", "'")


def test_report_of_a_killed_run_and_bad_run_folders(run, tmp_path):
    killed = tmp_path / "killed"
    shutil.copytree(run, killed)
    for name in ("report.html", "run.json", "evaluations.csv", "pareto.csv"):
        (killed / name).unlink()
    with open(killed / "evaluations.jsonl", "a") as f:
        f.write('{"generation": 2, "archid": "gpt2_cut')  # the line a kill cut short
    page = write_report(killed).read_text()
    assert "not recorded (the run did not finish)" in page

    with pytest.raises(LTSError, match="run folder not found"):
        write_report(tmp_path / "nope")
    broken = tmp_path / "broken"
    shutil.copytree(killed, broken)
    (broken / "report.html").unlink()
    lines = (broken / "evaluations.jsonl").read_text().splitlines()
    (broken / "evaluations.jsonl").write_text("\n".join([lines[0], "garbage", *lines[1:]]))
    with pytest.raises(LTSError, match="corrupt at line 2"):
        write_report(broken)
    (broken / "job.json").write_text("{")
    with pytest.raises(LTSError, match="job.json is corrupt"):
        write_report(broken)
    assert not (broken / "report.html").exists()

    proc = subprocess.run([sys.executable, "-m", "lts", "report", str(tmp_path / "nope")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "run folder not found" in proc.stderr


def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    why = None if chromium and driver else "headless Chromium is not installed (apt-get install chromium " \
                                           "chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        why = "selenium is not installed (pip install -e '.[test]')"
    if why:
        if os.environ.get("LTS_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return chromium, driver


@pytest.mark.heavy
def test_the_report_in_headless_chromium(run, tmp_path):
    chromium, chromedriver = _browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1300,2000",
                "--enable-unsafe-swiftshader", "--use-angle=swiftshader"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        driver.set_page_load_timeout(120)
        driver.get((run / "report.html").resolve().as_uri())
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        ok = sum(r["status"] == "ok" for r in records(run))
        points = driver.execute_script(
            "return Array.from(document.querySelectorAll('.scatter .plotly-graph-div'))"
            ".map(gd => gd.data.reduce((n, t) => n + t.x.length, 0))")
        assert points == [ok], (points, ok)  # two objectives: one scatter, every successful evaluation on it

        def opacities():
            return driver.execute_script(
                "const gd = document.querySelector('.scatter .plotly-graph-div');"
                "return gd.data.map(t => t.marker.opacity === undefined ? null : t.marker.opacity);")

        before = opacities()
        budget = driver.find_element("id", "budget-onnx_file_mb")
        sizes = sorted(r["values"]["onnx_file_mb"] for r in records(run) if r["status"] == "ok")
        typed = f"{sizes[len(sizes) // 2]:.6f}"
        budget.send_keys(typed)  # about half the candidates break it
        meet = sum(size <= float(typed) for size in sizes)  # the count, computed here from the record
        assert 0 < meet < ok
        after = opacities()
        assert after != before
        greyed = [v for trace in after for v in (trace or []) if v < 1]
        assert len(greyed) == ok - meet, after
        assert driver.find_element("id", "budget-count").text == f"{meet} of {ok} candidates meet the budgets"

        def column(i):
            return [tr.find_elements("tag name", "td")[i].text
                    for tr in driver.find_elements("css selector", "#table-front tbody tr")]

        headers = driver.find_elements("css selector", "#table-front th")
        ids = column(0)
        assert len(ids) > 1 and ids != sorted(ids)  # written in another order: a click must change it
        headers[0].click()
        assert column(0) == sorted(ids)
        headers[0].click()
        assert column(0) == sorted(ids, reverse=True)
        assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        driver.save_screenshot(str(tmp_path / "report.png"))
        assert (tmp_path / "report.png").stat().st_size > 10_000
    finally:
        driver.quit()
