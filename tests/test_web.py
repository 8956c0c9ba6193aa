"""The web app in a real headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium) against a real server (the real ``create_app`` in a werkzeug thread): sign in, upload
real photos and follow the job, search by an edited copy, draw a region, compare, review
duplicates, a read-only session, CSRF refusals, no console error. Screenshots of each page in the
light and dark themes go to docs/web/ (docs/WEB.md shows them)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.photos import skimage_photo
from tests.support.services import free_port

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
RW_KEY, RO_KEY = "rw-key-for-browser-tests-01", "ro-key-for-browser-tests-01"
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "web"
NAMES = ("coffee", "rocket", "astronaut", "chelsea", "camera")

HAVE_BROWSER = Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()
# skipped on a machine without the browser; under CI (.ci/run installs it) a missing browser fails instead
pytestmark = pytest.mark.skipif(not HAVE_BROWSER and not os.environ.get("CI"),
                                reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver): "
                                       "apt-get install chromium chromium-driver (.ci/run installs them)")


@pytest.fixture
def server(tmp_path, tiny_model):
    from werkzeug.serving import make_server

    from api import create_app
    from dinoseek.settings import load_settings

    home = tmp_path / "home"
    settings = replace(load_settings({}), home=home, database_url=f"sqlite:///{home / 'dinoseek.db'}", model=str(tiny_model),
                       api_keys=(RW_KEY, f"{RO_KEY}:ro"), allowed_roots=(tmp_path.resolve() / "served",))
    app = create_app(settings)
    port = free_port()
    httpd = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    httpd.shutdown()
    app.extensions["dinoseek"].close()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert HAVE_BROWSER, f"CI is set but {CHROMIUM} or {CHROMEDRIVER} is missing (.ci/run installs them as root)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--hide-scrollbars", "--force-color-profile=srgb"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def _wait(driver, condition, what: str, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d), message=f"waiting for {what}")


def _css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def _open(driver, url: str, page: str) -> None:
    driver.get(url)
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.ready") == page, f"page {page}")


def _shoot(driver, name: str) -> None:
    """The page in the light theme, then (through the toggle) in the dark one."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.execute_script("localStorage.removeItem('dinoseek-theme'); document.documentElement.dataset.theme = 'light'")
    time.sleep(0.15)
    driver.save_screenshot(str(SHOTS / f"{name}-light.png"))
    _css(driver, "#theme")[0].click()
    assert driver.execute_script("return document.documentElement.dataset.theme") == "dark"
    time.sleep(0.15)
    driver.save_screenshot(str(SHOTS / f"{name}-dark.png"))
    driver.execute_script("localStorage.removeItem('dinoseek-theme'); delete document.documentElement.dataset.theme")


def _errors(driver, allowed: tuple[str, ...] = ()) -> list[str]:
    """The browser console's errors since the last call, less the ones a step caused on purpose."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)]


def _sign_in(driver, base: str, key: str) -> None:
    _open(driver, f"{base}/", "collections")
    _css(driver, "#key")[0].send_keys(key)
    _css(driver, "#signin")[0].click()
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.ready") == "collections"
          and not _css(d, "#key"), "signed in")


def _fetch(driver, method: str, path: str, csrf: bool) -> int:
    """A request made by the page's own script with the session cookie (and its CSRF token or not)."""
    return driver.execute_async_script("""
        const [method, path, csrf, done] = arguments;
        const s = await (await fetch('/api/v1/session')).json();
        const headers = {'Content-Type': 'application/json'};
        if (csrf) headers['X-CSRF-Token'] = s.csrf_token;
        const r = await fetch(path, {method, headers, body: JSON.stringify({name: 'made-by-script'})});
        done(r.status);""", method, path, csrf)


def _scan(driver, base: str) -> None:
    """Scan the collection for duplicates from the Collections page and wait for the job's end."""
    _open(driver, f"{base}/collections", "collections")
    before = driver.execute_script("return document.querySelector(\"[data-collection='lib'] .job\")?.dataset.jobId")
    _css(driver, "[data-collection='lib'] [data-action=scan]")[0].click()
    _wait(driver, lambda d: d.execute_script("""const job = document.querySelector("[data-collection='lib'] .job");
        return job && job.dataset.jobId !== arguments[0] && job.dataset.status === "succeeded"
            && job.textContent.includes("duplicates");""", before), "the scan", timeout=120)


def _indexed(driver) -> int:
    """The collection's indexed count, as the API tells the page."""
    return driver.execute_async_script("""const done = arguments[arguments.length - 1];
        fetch('/api/v1/collections').then(r => r.json()).then(j => done(j.collections.find(c => c.name === 'lib').indexed));""")


def _names(group) -> list[str]:
    return [t.find_element("css selector", ".name").text for t in group.find_elements("css selector", ".member")]


def _members(group) -> list[int]:
    return [int(t.get_attribute("data-image-id")) for t in group.find_elements("css selector", ".member")]


def _group_with(driver, image_id: int):
    """The shown group holding ``image_id`` (None when none does), once the groups are shown."""
    _wait(driver, lambda d: _css(d, "#groups .group, #groups p"), "the duplicate groups")
    return next((g for g in _css(driver, "#groups .group") if image_id in _members(g)), None)


def test_the_web_app_in_a_real_browser(server, browser, tmp_path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    base, driver = server, browser
    driver.set_script_timeout(30)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in NAMES:
        skimage_photo(name).save(photos / f"{name}.jpg", quality=90)
    chelsea = skimage_photo("chelsea")
    edited = tmp_path / "edited-chelsea.jpg"  # cropped, shrunk and re-encoded hard
    chelsea.crop((20, 15, chelsea.width - 25, chelsea.height - 10)).resize((300, 200)).save(edited, quality=50)

    # sign in: the key goes in a JSON body once; the page keeps nothing of it
    _open(driver, f"{base}/", "collections")
    assert _css(driver, "#key") and not _css(driver, "#nav:not([hidden])")
    _shoot(driver, "signin")
    _sign_in(driver, base, RW_KEY)
    assert RW_KEY not in driver.execute_script("return JSON.stringify(localStorage) + JSON.stringify(sessionStorage) "
                                               "+ document.cookie + location.href")
    assert driver.get_cookie("dinoseek_session")["httpOnly"] and driver.get_cookie("dinoseek_session")["sameSite"] == "Strict"

    # a collection, five photos uploaded through the page, the job followed to its end
    _css(driver, "#new-collection")[0].send_keys("lib")
    _css(driver, "form[aria-label='Create a collection'] button")[0].click()
    _wait(driver, lambda d: _css(d, "[data-collection='lib']"), "the new collection")
    _css(driver, "[data-collection='lib'] input[type=file]")[0].send_keys("\n".join(str(p) for p in sorted(photos.iterdir())))
    _wait(driver, lambda d: _css(d, "[data-collection='lib'] [data-job-status='succeeded']"), "the upload job", timeout=120)
    assert _css(driver, "[data-collection='lib'] [data-progress]")[0].text == "5 / 5"
    _wait(driver, lambda d: _css(d, "[data-collection='lib'] [data-count='indexed'] b")[0].text == "5", "the counts")
    _shoot(driver, "collections")

    # search by the edited copy: its source first, with its verdict
    _open(driver, f"{base}/search?c=lib&k=5", "search")
    _css(driver, "input[type=file]")[0].send_keys(str(edited))
    _wait(driver, lambda d: len(_css(d, "#results .tile")) == 5, "search results")
    first = _css(driver, "#results .tile")[0]
    assert first.find_element("css selector", ".name").text == "chelsea.jpg"
    verdict = first.find_elements("css selector", "[data-verdict]")
    assert verdict and verdict[0].get_attribute("data-verdict") in ("copy", "same scene"), first.text
    chelsea_id = int(first.get_attribute("data-image-id"))
    _shoot(driver, "search")
    # "more like this" puts the indexed image's query in the URL: reload shows the same results
    first.find_element("css selector", "[data-action=more]").click()
    _wait(driver, lambda d: f"id={chelsea_id}" in d.current_url and len(_css(d, "#results .tile")) == 4, "more like this")
    shown = [t.get_attribute("data-image-id") for t in _css(driver, "#results .tile")]  # the other four
    driver.refresh()
    _wait(driver, lambda d: len(_css(d, "#results .tile")) == 4, "the reloaded search")
    assert [t.get_attribute("data-image-id") for t in _css(driver, "#results .tile")] == shown

    # region search: draw a box on the query picture; the result shows where it was found
    _open(driver, f"{base}/region?c=lib", "region")
    _css(driver, "input[type=file]")[0].send_keys(str(edited))
    stage = _wait(driver, lambda d: (_css(d, "#stage img") or [None])[0], "the query picture")
    _wait(driver, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", stage), "its pixels")
    w, h = stage.size["width"], stage.size["height"]
    ActionChains(driver).move_to_element_with_offset(stage, int(-w * 0.3), int(-h * 0.3)).click_and_hold() \
        .move_by_offset(int(w * 0.35), int(h * 0.4)).move_by_offset(int(w * 0.2), int(h * 0.2)).release().perform()
    _wait(driver, lambda d: _css(d, "#results .tile"), "region results")
    top = _css(driver, "#results .tile")[0]
    assert int(top.get_attribute("data-image-id")) == chelsea_id
    assert top.find_elements("css selector", "[data-located]"), "no located box drawn on the result"
    _shoot(driver, "region")

    # compare: side by side, metadata that differs highlighted
    other = int(_css(driver, "#results .tile")[1].get_attribute("data-image-id"))
    _open(driver, f"{base}/compare?a={chelsea_id}&b={other}", "compare")
    assert len(_css(driver, "#compare .pane img")) == 2 and _css(driver, "tr.differs")

    # duplicates: upload the edited copy, scan, review
    _open(driver, f"{base}/collections", "collections")
    _css(driver, "[data-collection='lib'] input[type=file]")[0].send_keys(str(edited))
    _wait(driver, lambda d: _css(d, "[data-collection='lib'] [data-progress='1/1']")
          and _css(d, "[data-collection='lib'] [data-job-status='succeeded']"), "the second upload", timeout=120)
    _scan(driver, base)
    _open(driver, f"{base}/duplicates?c=lib", "duplicates")
    group = _group_with(driver, chelsea_id)
    assert group is not None, "chelsea and its edited copy are not grouped"
    names = {int(t.get_attribute("data-image-id")): t.find_element("css selector", ".name").text
             for t in group.find_elements("css selector", ".member")}
    (copy_id,) = [i for i, n in names.items() if n == edited.name]

    # the match overlay explains the pair: lines between agreeing matches and a heatmap, on a crop
    _open(driver, f"{base}/compare?a={chelsea_id}&b={copy_id}", "compare")
    _wait(driver, lambda d: len(_css(d, "#compare svg.lines line")) >= 10, "the match lines")
    assert _css(driver, "#compare canvas.heat")
    assert _css(driver, "#evidence [data-verdict]")[0].get_attribute("data-verdict") == "copy"
    _shoot(driver, "compare")

    # a keep rule (largest resolution), previewed on the page, then accepted: one kept, the small copy discarded
    _open(driver, f"{base}/duplicates?c=lib", "duplicates")
    _css(driver, "#keep-rules summary")[0].click()
    _css(driver, "[data-action=preview-rules]")[0].click()
    _wait(driver, lambda d: _css(d, f"#groups .member.suggest-discard[data-image-id='{copy_id}']"), "the rule's preview")
    _css(driver, "[data-action=accept-page]")[0].click()
    _wait(driver, lambda d: _css(d, f"#groups .member[data-image-id='{copy_id}'][data-decision='discard']")
          and len(_group_with(d, copy_id).find_elements("css selector", ".member[data-decision='keep']")) == 1,
          "the accepted decisions")
    _shoot(driver, "duplicates")

    # the discarded copy goes to the trash (out of the index), then comes back from the Trash page
    _css(driver, "#decisions-panel summary")[0].click()
    _css(driver, "[data-action=trash-discarded]")[0].click()
    _wait(driver, lambda d: not _css(d, f"#groups .member[data-image-id='{copy_id}']"), "the copy gone from the groups")
    _open(driver, f"{base}/trash?c=lib", "trash")
    _wait(driver, lambda d: _css(d, "#trash [data-action=restore]"), "the trash entry")
    _shoot(driver, "trash")
    while _css(driver, "#trash [data-action=restore]"):  # every discarded picture back
        count = len(_css(driver, "#trash [data-action=restore]"))
        _css(driver, "#trash [data-action=restore]")[0].click()
        _wait(driver, lambda d: len(_css(d, "#trash [data-action=restore]")) < count, "an entry restored")
    assert _css(driver, "#trash caption")
    _wait(driver, lambda d: _indexed(d) == len(NAMES) + 1, "the restored pictures indexed again")

    # "not a duplicate": the restored copy is grouped again by a scan; its pair with the group's first
    # picture is marked apart, which splits it off, and a re-scan keeps the two apart
    _scan(driver, base)
    _open(driver, f"{base}/duplicates?c=lib", "duplicates")
    group = next((g for g in _css(driver, "#groups .group") if edited.name in _names(g)), None)
    assert group is not None, "the restored copy is not grouped again"
    first, second = _names(group)[:2]
    group.find_elements("css selector", ".member")[1].find_element("css selector", "[data-action=apart]").click()

    def together(d) -> bool:
        from selenium.common.exceptions import StaleElementReferenceException

        _wait(d, lambda d: _css(d, "#groups .group, #groups p"), "the duplicate groups")
        try:
            return any({first, second} <= set(_names(g)) for g in _css(d, "#groups .group"))
        except StaleElementReferenceException:  # the groups were being re-drawn: look again
            return True

    _wait(driver, lambda d: not together(d), "the pair split")
    _scan(driver, base)
    _open(driver, f"{base}/duplicates?c=lib", "duplicates")
    assert not together(driver), "the pair marked apart came back after a re-scan"

    assert _errors(driver) == []

    # a picture discarded by hand is removed from the index (its file stays where it is)
    _css(driver, "#groups .group .member [data-action=discard]")[-1].click()
    gone = int(_wait(driver, lambda d: _css(d, "#groups .member[data-decision='discard']"), "the discard")[0]
               .get_attribute("data-image-id"))
    _css(driver, "#decisions-panel summary")[0].click()
    _css(driver, "[data-action=unindex-discarded]")[0].click()
    _wait(driver, lambda d: not _css(d, f"#groups .member[data-image-id='{gone}']"), "the picture gone from the groups")
    assert driver.execute_async_script("""const done = arguments[arguments.length - 1];
        fetch('/api/v1/images/' + arguments[0]).then(r => done(r.status));""", gone) == 404
    _errors(driver)  # the 404 above is logged on purpose
    assert _errors(driver) == []

    # readable at phone width: no page scrolls sideways
    driver.set_window_size(390, 844)
    for page in ("collections", "search", "duplicates", "compare"):
        _open(driver, f"{base}/{page}?c=lib", page)
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1"), page
    _open(driver, f"{base}/duplicates?c=lib", "duplicates")
    driver.save_screenshot(str(SHOTS / "duplicates-phone.png"))
    driver.set_window_size(1280, 900)
    _open(driver, f"{base}/collections", "collections")
    assert _css(driver, "[data-collection='lib'] [data-action=reindex]"), "no re-index control"

    # cookie requests without the CSRF token are refused, with it they pass
    assert _fetch(driver, "POST", "/api/v1/collections", csrf=False) == 403
    assert _fetch(driver, "POST", "/api/v1/collections", csrf=True) == 201
    _errors(driver)  # the 403 above is logged on purpose

    # a read-only key: no write control on any page, and its direct writes get 403
    _css(driver, "#signout")[0].click()
    _wait(driver, lambda d: _css(d, "#key"), "signed out")
    _sign_in(driver, base, RO_KEY)
    assert _css(driver, "#who")[0].text == "read-only"
    assert not _css(driver, "#new-collection, input[type=file], [data-action=scan], form[aria-label='Create a collection']")
    _shoot(driver, "collections-read-only")
    _open(driver, f"{base}/duplicates?c=lib", "duplicates")
    _wait(driver, lambda d: _css(d, "#groups .group, #groups p"), "the groups, read-only")
    assert "null" not in _css(driver, "#main")[0].text
    assert not _css(driver, "#groups button, [data-action=apply-thresholds], #keep-rules, [data-action=trash-discarded]")
    assert _errors(driver) == []
    assert _fetch(driver, "POST", "/api/v1/collections", csrf=True) == 403
    assert _fetch(driver, "DELETE", f"/api/v1/images/{chelsea_id}", csrf=True) == 403


def test_screenshots_are_in_docs() -> None:
    """docs/WEB.md shows only screenshots the browser test writes."""
    text = (SHOTS.parent / "WEB.md").read_text()
    for name in ("signin", "collections", "search", "region", "compare", "duplicates", "trash"):
        assert f"web/{name}-light.png" in text and f"web/{name}-dark.png" in text, name
